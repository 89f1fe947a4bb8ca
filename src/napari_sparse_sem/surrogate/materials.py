"""Target materials for the Monte Carlo (atomic number, atomic weight, density) and the measured reference curves.

Reuter's fit of measured backscatter coefficients at normal incidence (W. Reuter, Proc. 6th Int. Conf. X-ray Optics
and Microanalysis, 1972) and the Kanaya–Okayama electron range (K. Kanaya, S. Okayama, J. Phys. D 5, 43, 1972) are what
``benchmarks/montecarlo.py`` and the tests validate the physics against.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Material:
    """A pure element as the Monte Carlo sees it: ``z`` atomic number, ``a`` g/mol, ``density`` g/cm³."""

    symbol: str
    z: int
    a: float
    density: float

    def __post_init__(self) -> None:
        if self.z < 1 or self.a <= 0 or self.density <= 0:
            raise ValueError(f"a material needs Z >= 1, A > 0 and density > 0, got {self}")


ELEMENTS: dict[str, Material] = {
    m.symbol: m
    for m in (
        Material("C", 6, 12.011, 2.0),  # amorphous / porous-matrix carbon (graphite is 2.26)
        Material("Al", 13, 26.982, 2.70),
        Material("Si", 14, 28.086, 2.33),
        Material("Cu", 29, 63.546, 8.96),
        Material("Ag", 47, 107.868, 10.49),
        Material("Au", 79, 196.967, 19.32),
    )
}


def material(symbol: str) -> Material:
    """The element called ``symbol`` (case-insensitive), or a clear error listing the known ones."""
    for key, value in ELEMENTS.items():
        if key.lower() == symbol.strip().lower():
            return value
    raise ValueError(f"unknown element {symbol!r}; known: {', '.join(ELEMENTS)} (or give Z, A and density)")


def reuter_eta(z: float) -> float:
    """Backscatter coefficient at normal incidence from Reuter's fit to measurements (energy-independent, 5–30 keV)."""
    return -0.0254 + 0.016 * z - 1.86e-4 * z**2 + 8.3e-7 * z**3


def kanaya_okayama_range_nm(m: Material, energy_kev: float) -> float:
    """Kanaya–Okayama electron range in nm: R = 27.6 A E^1.67 / (Z^0.889 ρ) (nm, E in keV, ρ in g/cm³)."""
    return 27.6 * m.a * energy_kev**1.67 / (m.z**0.889 * m.density)
