"""Scan masks, beam paths, acquisition-time estimates and simulated (noisy) sparse acquisitions."""
