"""Parameter models for masks and acquisitions.

One model per job: CLI flags, widget fields and saved metadata all use them (:class:`~napari_sparse_sem.params.Spec`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_sparse_sem.params import Spec, param

PATTERNS: tuple[str, ...] = ("random", "grid", "spiral", "lines", "lowres", "hexgrid", "bluenoise")
"""Mask patterns, in the order the comparison shows them."""

LINES_MODES: tuple[str, ...] = ("regular", "random")
"""How the ``lines`` pattern picks its lines: every k-th line, or random lines."""

DEFAULT_JITTER: dict[str, float] = {"grid": 0.5, "hexgrid": 0.0}
"""Jitter used when ``MaskSpec.jitter`` is None: Ede's randomly perturbed square grid, and an exact hexagonal lattice
(on FlyEM slices 200-240 at 10 %, linear: hexgrid 30.2 dB unjittered vs 29.6 dB with jitter 0.5)."""

DEFAULT_COVERAGE = 0.05
"""The coverage every face starts from (5 % of the pixels)."""


def _plain_numbers(spec: Any) -> None:
    """numpy scalars (``np.float32(0.05)``, ``np.int64(3)``) become Python numbers (bounds and JSON take those)."""
    for name, value in vars(spec).items():
        if isinstance(value, np.generic):
            setattr(spec, name, value.item())


def _whole_seed(seed: Any) -> Any:
    """numpy integers become ints; anything else that is not a non-negative whole number (or None) is an error."""
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ValueError(f"seed must be a non-negative integer (or None for a fresh random seed), got {seed!r}")
    return seed


@dataclass
class MaskSpec(Spec):
    """Which pixels to scan: a pattern at a requested coverage (fraction of pixels, 0 < coverage <= 1).

    ``per_slice`` draws a new mask for every slice (seeded by ``seed`` and the slice index); otherwise one mask
    serves all slices. Pattern options: ``jitter`` (grid/hexgrid, fraction of the spacing; None → the pattern's default,
    :data:`DEFAULT_JITTER`), ``lines_mode`` (``regular`` every k-th line, or ``random`` lines), ``lowres_factor``
    (lowres: every f-th pixel; derived from the coverage when ``None``).
    """

    kind = "MaskSpec"

    pattern: str = param("random", help="Mask pattern: which pixels the beam visits.", choices=PATTERNS)
    coverage: float = param(
        DEFAULT_COVERAGE,
        help="Fraction of pixels scanned, e.g. 0.05 or 5%.",
        percent=True,
        low=0.0,
        high=1.0,
        low_open=True,
    )
    per_slice: bool = param(
        True,
        help="A new mask for every slice (else one mask for all slices).",
        label="new mask per slice",
        flag="per-slice/fixed-mask",
    )
    seed: int | None = param(0, help="Seed of the masks.", low=0, nullable=True, none_means="a fresh random seed")
    jitter: float | None = param(
        None,
        help="grid/hexgrid jitter (fraction of the spacing); default: grid 0.5, hexgrid 0.",
        low=0.0,
        high=1.0,
        none_means="the pattern's default",
    )
    lines_mode: str = param("regular", help="lines pattern: regular (every k-th line) or random.", choices=LINES_MODES)
    lowres_factor: int | None = param(
        None, help="lowres: every f-th pixel (default from the coverage).", low=1, none_means="from the coverage"
    )

    def __post_init__(self) -> None:
        _plain_numbers(self)
        if self.pattern not in PATTERNS:
            raise ValueError(f"unknown mask pattern {self.pattern!r}; choose one of {list(PATTERNS)}")
        self.seed = _whole_seed(self.seed)
        if isinstance(self.coverage, int | float) and not isinstance(self.coverage, bool):
            if not np.isfinite(self.coverage) or not 0 < self.coverage <= 1:
                raise ValueError(
                    f"coverage must be in (0, 1] (a fraction of pixels, e.g. 0.05 for 5 %), got {self.coverage}"
                )
        super().__post_init__()

    @property
    def effective_jitter(self) -> float:
        """The jitter this pattern uses: the explicit value, else the pattern's default (0 for non-lattice patterns)."""
        return self.jitter if self.jitter is not None else DEFAULT_JITTER.get(self.pattern, 0.0)


def dose_param(help: str = "Electrons per scanned pixel (shot noise).") -> Any:
    """The ``dose`` field (mean detected electrons per scanned pixel; None = noiseless) of every model that has one."""
    return param(None, help=help, unit="e⁻/px", low=0.0, low_open=True, none_means="noiseless")


@dataclass
class AcquisitionSpec(Spec):
    """How the microscope acquires: timing (for time estimates) and dose (for shot noise).

    ``dose`` is the mean number of detected electrons per scanned pixel at full brightness; ``None`` means noiseless.
    Time model: every scanned pixel costs ``dwell_us``; every jump to a non-adjacent pixel costs ``settle_us`` plus
    ``move_us_per_px`` per pixel of beam travel.
    """

    kind = "AcquisitionSpec"

    dwell_us: float = param(3.0, help="Dwell time per pixel.", label="dwell", unit="µs", low=0.0, step=0.5)
    settle_us: float = param(1.0, help="Settle time per beam jump.", label="settle", unit="µs", low=0.0, step=0.5)
    move_us_per_px: float = param(
        0.001, help="Beam travel time per pixel of a jump.", label="move", unit="µs/px", low=0.0, step=0.001
    )
    dose: float | None = dose_param()
    seed: int | None = param(0, help="Seed of the shot noise.", low=0, nullable=True, none_means="a fresh random seed")

    def __post_init__(self) -> None:
        _plain_numbers(self)
        for name in ("dwell_us", "settle_us", "move_us_per_px"):
            value = getattr(self, name)
            if isinstance(value, int | float) and (not np.isfinite(value) or value < 0):
                raise ValueError(f"{name} must be a non-negative number, got {value}")
        if isinstance(self.dose, int | float) and (not np.isfinite(self.dose) or self.dose <= 0):
            raise ValueError(
                f"dose must be a positive number of electrons per pixel (or None for noiseless), got {self.dose}"
            )
        self.seed = _whole_seed(self.seed)
        super().__post_init__()


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
