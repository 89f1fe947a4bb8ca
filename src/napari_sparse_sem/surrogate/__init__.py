"""Porous microstructures, extended heightfields and the Monte Carlo SEM teacher (Dahmen et al.); see each module."""
