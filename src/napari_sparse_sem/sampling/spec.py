"""Parameter models for masks and acquisitions.

One model per job: CLI flags, widget fields and saved metadata all use them.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any

import numpy as np

PATTERNS: tuple[str, ...] = ("random", "grid", "spiral", "lines", "lowres", "hexgrid", "bluenoise")
"""Mask patterns, in the order the comparison shows them."""

DEFAULT_JITTER: dict[str, float] = {"grid": 0.5, "hexgrid": 0.0}
"""Jitter used when ``MaskSpec.jitter`` is None: Ede's randomly perturbed square grid, and an exact hexagonal lattice
(on FlyEM slices 200-240 at 10 %, linear: hexgrid 30.2 dB unjittered vs 29.6 dB with jitter 0.5)."""


def _check_seed(seed: int | None) -> None:
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer (or None for a fresh random seed), got {seed!r}")


@dataclass
class MaskSpec:
    """Which pixels to scan: a pattern at a requested coverage (fraction of pixels, 0 < coverage <= 1).

    ``per_slice`` draws a new mask for every slice (seeded by ``seed`` and the slice index); otherwise one mask
    serves all slices. Pattern options: ``jitter`` (grid/hexgrid, fraction of the spacing; None → the pattern's default,
    :data:`DEFAULT_JITTER`), ``lines_mode``
    (``regular`` every k-th line, or ``random`` lines), ``lowres_factor`` (lowres: every f-th pixel; derived from the
    coverage when ``None``).
    """

    pattern: str = "random"
    coverage: float = 0.05
    per_slice: bool = True
    seed: int | None = 0
    jitter: float | None = None
    lines_mode: str = "regular"
    lowres_factor: int | None = None

    def __post_init__(self) -> None:
        if self.pattern not in PATTERNS:
            raise ValueError(f"unknown mask pattern {self.pattern!r}; choose one of {list(PATTERNS)}")
        if not np.isfinite(self.coverage) or not 0 < self.coverage <= 1:
            raise ValueError(
                f"coverage must be in (0, 1] (a fraction of pixels, e.g. 0.05 for 5 %), got {self.coverage}"
            )
        if self.jitter is not None and not 0 <= self.jitter <= 1:
            raise ValueError(f"jitter must be in [0, 1] (fraction of the grid spacing), got {self.jitter}")
        if self.lines_mode not in ("regular", "random"):
            raise ValueError(f"lines_mode must be 'regular' or 'random', got {self.lines_mode!r}")
        if self.lowres_factor is not None and self.lowres_factor < 1:
            raise ValueError(f"lowres_factor must be a positive integer, got {self.lowres_factor}")
        _check_seed(self.seed)

    @property
    def effective_jitter(self) -> float:
        """The jitter this pattern uses: the explicit value, else the pattern's default (0 for non-lattice patterns)."""
        return self.jitter if self.jitter is not None else DEFAULT_JITTER.get(self.pattern, 0.0)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> MaskSpec:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})


@dataclass
class AcquisitionSpec:
    """How the microscope acquires: timing (for time estimates) and dose (for shot noise).

    ``dose`` is the mean number of detected electrons per scanned pixel at full brightness; ``None`` means noiseless.
    Time model: every scanned pixel costs ``dwell_us``; every jump to a non-adjacent pixel costs ``settle_us`` plus
    ``move_us_per_px`` per pixel of beam travel.
    """

    dwell_us: float = 3.0
    settle_us: float = 1.0
    move_us_per_px: float = 0.001
    dose: float | None = None
    seed: int | None = 0

    def __post_init__(self) -> None:
        for name in ("dwell_us", "settle_us", "move_us_per_px"):
            value = getattr(self, name)
            if not np.isfinite(value) or value < 0:
                raise ValueError(f"{name} must be a non-negative number, got {value}")
        if self.dose is not None and (not np.isfinite(self.dose) or self.dose <= 0):
            raise ValueError(
                f"dose must be a positive number of electrons per pixel (or None for noiseless), got {self.dose}"
            )
        _check_seed(self.seed)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class MaskResult:
    """A 2D mask, the beam's visit order over its pixels, and the coverage achieved."""

    mask: np.ndarray  # (y, x) bool
    path: np.ndarray  # (n, 2) int (row, col) in visit order, n == mask.sum()
    coverage_requested: float
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def coverage(self) -> float:
        """Fraction of pixels actually scanned."""
        return float(self.mask.mean())
