"""What a comparison runs: :class:`CompareSpec` (mask patterns × coverages × reconstruction methods on a region), and
the checks it shares with the other faces (method options, a region inside a volume)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_sparse_sem.params import Spec, param
from napari_sparse_sem.sampling.spec import DEFAULT_COVERAGE, PATTERNS, AcquisitionSpec, dose_param

_MIN_ROI = 8  # pixels per side; SSIM and the mask patterns need some room


def _int_pair(value: Any, what: str) -> tuple[int, int] | None:
    if value is None:
        return None
    items = tuple(value)
    if len(items) != 2:
        raise ValueError(f"{what} needs two numbers A:B, got {value!r}")
    return int(items[0]), int(items[1])


def name_list(value: Any) -> list[str]:
    """A list of names from a list or a comma-separated string (config files may use either)."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v) for v in value]


def check_method_options(method: str, options: dict[str, Any]) -> None:
    """Refuse options that ``method`` does not take, naming the ones it does (before any work starts)."""
    from napari_sparse_sem.recon.base import method_class

    cls = method_class(method)
    if not options:
        return
    if "context" in options:
        context = options["context"]
        if isinstance(context, bool) or not isinstance(context, (int, float)) or context != int(context) or context < 0:
            raise ValueError(f"{method} option context must be a whole number of slices >= 0, got {context!r}")
    cls.parse_options(options)  # the method's options spec: unknown names (listing its options) and bad values


def region_bounds(
    shape: tuple[int, ...], slices: tuple[int, int] | None, roi: tuple[int, int, int, int] | None
) -> tuple[int, int, int, int, int, int]:
    """``(a, b, y0, y1, x0, x1)`` of ``slices``/``roi`` in a volume of ``shape`` (whole extent where ``None``).

    ``shape`` is (z, y, x) or (y, x). Out-of-range requests are a ``ValueError`` that names the valid extent.
    """
    dims = tuple(int(s) for s in shape)
    if len(dims) == 2:
        dims = (1, *dims)
    if len(dims) != 3:
        raise ValueError(f"expected a (z, y, x) volume or (y, x) image shape, got {dims}")
    nz, ny, nx = dims
    a, b = (0, nz) if slices is None else (int(slices[0]), int(slices[1]))
    if not 0 <= a < b:
        raise ValueError(f"slices {a}:{b} must satisfy 0 <= A < B (half-open A:B)")
    if b > nz:
        raise ValueError(f"slices {a}:{b} lie outside the volume of {nz} slices (valid range 0:{nz})")
    y0, y1, x0, x1 = (0, ny, 0, nx) if roi is None else (int(v) for v in roi)
    if min(y0, x0) < 0 or y0 >= y1 or x0 >= x1:
        raise ValueError(f"ROI {y0}:{y1},{x0}:{x1} must be non-negative with y0 < y1 and x0 < x1")
    if y1 > ny or x1 > nx:
        raise ValueError(f"ROI {y0}:{y1},{x0}:{x1} lies outside the image of size {ny}x{nx}")
    return a, b, y0, y1, x0, x1


@dataclass
class CompareSpec(Spec):
    """What to compare: mask ``patterns`` × ``coverages`` × reconstruction ``methods``.

    ``slices`` is a half-open range ``(A, B)`` of input-volume slices (all when ``None``); ``roi`` is
    ``(y0, y1, x0, x1)`` (whole image when ``None``). ``seed`` seeds the masks and the shot noise; ``dose`` (electrons
    per scanned pixel, ``None`` = noiseless) overrides ``acquisition.dose``. ``per_slice`` draws a new mask for every
    slice. ``method_options`` maps a method name to its options, e.g. ``{"linear3d": {"context": 10}}``. The pattern
    name ``all`` expands to every pattern.

    ``holdout`` adds ``psnr_holdout`` to every record: the quality estimated without the ground truth
    (:mod:`napari_sparse_sem.quality.holdout`, ``holdout_folds`` reconstructions per run, on at most
    ``holdout_max_slices`` slices, ``holdout_iterative_slices`` for iterative methods).

    ``equal_time`` compares at equal total beam time: ``dose`` is then the dense scan's dose per pixel, each sparse scan
    at coverage c spends the same time on fewer pixels (dose / c per scanned pixel), and the noisy dense scan itself is
    scored as pattern ``dense`` (method ``none``) so a user sees whether sparse-and-slow beats dense-and-fast.
    """

    kind = "comparison"

    patterns: list[str] = param(
        default_factory=lambda: ["random"], help="Mask patterns to compare (a list, or 'all' for every pattern)."
    )
    coverages: list[float] = param(
        default_factory=lambda: [DEFAULT_COVERAGE],
        help="Fractions of pixels scanned, e.g. 0.05.",
        percent=True,
        flag="coverage",
    )
    methods: list[str] = param(
        default_factory=lambda: ["linear"], help="Reconstruction methods (`--method help` lists them).", flag="method"
    )
    slices: tuple[int, int] | None = param(None, help="Slices A:B (half-open) of the input.", none_means="all slices")
    roi: tuple[int, int, int, int] | None = param(
        None, help="Region (y0, y1, x0, x1) of every slice.", none_means="the whole slice"
    )
    seed: int = param(0, help="Seed of masks and noise.", low=0)
    device: str = param("auto", help="Where networks run: auto (cuda > mps > cpu), cpu, cuda or mps.")
    per_slice: bool = param(
        True, help="A new mask for every slice (else one mask for all slices).", flag="per-slice/fixed-mask"
    )
    dose: float | None = dose_param()
    method_options: dict[str, dict[str, Any]] = param(
        default_factory=dict, help="Options per method, e.g. {'linear3d': {'context': 10}}.", cli=False, widget=False
    )
    acquisition: AcquisitionSpec = param(
        default_factory=AcquisitionSpec,
        help="Timing of the scan (its dose when dose is empty).",
        cli=False,
        widget=False,
    )
    equal_time: bool = param(
        False,
        help="Equal total beam time: dose is the dense scan's; sparse pixels get dose/coverage; the noisy dense scan "
        "is scored too.",
        flag="equal-time/equal-dose",
    )
    holdout: bool = param(
        True,
        help="Estimate each method's quality without ground truth too (k-fold hold-out of scanned pixels: "
        "psnr_holdout).",
        flag="holdout/no-holdout",
    )
    holdout_folds: int = param(5, help="Folds of the hold-out estimate (each costs one reconstruction).", low=2)
    holdout_max_slices: int | None = param(
        None, help="Score the hold-out on at most this many slices (evenly spaced).", low=1, none_means="all slices"
    )
    holdout_iterative_slices: int = param(
        0,
        help="Hold-out slices for iterative methods (DIP: minutes per fit); 0 skips them (psnr_holdout NaN).",
        low=0,
    )
    self_minutes: float | None = param(
        None,
        unit="min",
        low=0,
        low_open=True,
        help="Train method self on each run's own sparse slices for this many minutes before it reconstructs them "
        "(no dense slice needed; without it, self needs weights).",
        none_means="self needs weights",
    )

    def __post_init__(self) -> None:
        patterns = name_list(self.patterns)
        if "all" in patterns:
            patterns = list(PATTERNS)
        self.patterns = list(dict.fromkeys(patterns))
        self.methods = list(dict.fromkeys(name_list(self.methods)))
        coverages = [self.coverages] if isinstance(self.coverages, (int, float)) else list(self.coverages)
        self.coverages = list(dict.fromkeys(float(c) for c in coverages))
        self.slices = _int_pair(self.slices, "slices")
        if self.roi is not None:
            roi = tuple(int(v) for v in self.roi)
            if len(roi) != 4:
                raise ValueError(f"roi needs four numbers (y0, y1, x0, x1), got {self.roi!r}")
            self.roi = roi  # type: ignore[assignment]
        self.seed = int(self.seed)
        self.holdout_folds = int(self.holdout_folds)
        self.holdout_iterative_slices = int(self.holdout_iterative_slices)
        if self.holdout_max_slices is not None:
            self.holdout_max_slices = int(self.holdout_max_slices)
        if self.dose is not None:
            self.dose = float(self.dose)
        if isinstance(self.acquisition, dict):
            self.acquisition = AcquisitionSpec.from_dict(self.acquisition)
        self.method_options = {k: dict(v) for k, v in (self.method_options or {}).items()}
        super().__post_init__()

    def validate(self) -> None:
        from napari_sparse_sem.recon.base import available_methods

        for name, values in (("patterns", self.patterns), ("coverages", self.coverages), ("methods", self.methods)):
            if not values:
                raise ValueError(f"{name} must not be empty; give at least one")
        unknown = [p for p in self.patterns if p not in PATTERNS]
        if unknown:
            raise ValueError(f"unknown mask pattern(s) {unknown}; choose from {[*PATTERNS, 'all']}")
        choices = available_methods()
        unknown = [m for m in self.methods if m not in choices]
        if unknown:
            raise ValueError(f"unknown reconstruction method(s) {unknown}; choose from {choices}")
        for c in self.coverages:
            if not np.isfinite(c) or not 0 < c <= 1:
                raise ValueError(f"coverage must be in (0, 1] (a fraction of pixels, e.g. 0.05 for 5 %), got {c}")
        if self.slices is not None and not 0 <= self.slices[0] < self.slices[1]:
            raise ValueError(f"slices {self.slices[0]}:{self.slices[1]} must satisfy 0 <= A < B (half-open A:B)")
        if self.roi is not None:
            y0, y1, x0, x1 = self.roi
            if min(self.roi) < 0 or y1 - y0 < _MIN_ROI or x1 - x0 < _MIN_ROI:
                raise ValueError(
                    f"ROI {y0}:{y1},{x0}:{x1} must be non-negative with y0 < y1, x0 < x1 and at least "
                    f"{_MIN_ROI}x{_MIN_ROI} pixels"
                )
        extra = [m for m in self.method_options if m not in self.methods]
        if extra:
            raise ValueError(f"method_options given for {extra}, which are not among the methods {self.methods}")
        for method, options in self.method_options.items():
            check_method_options(method, options)
        if self.holdout_folds < 2:
            raise ValueError(f"holdout_folds must be at least 2, got {self.holdout_folds}")
        if self.holdout_max_slices is not None and self.holdout_max_slices < 1:
            raise ValueError(f"holdout_max_slices must be at least 1 (or empty for all), got {self.holdout_max_slices}")
        if self.holdout_iterative_slices < 0:
            raise ValueError(f"holdout_iterative_slices must be >= 0, got {self.holdout_iterative_slices}")
        from napari_sparse_sem.compare.self_train import SELF_METHOD, trains_self

        if SELF_METHOD in self.methods and trains_self(SELF_METHOD, self.options_for(SELF_METHOD)):
            if self.self_minutes is None:
                raise ValueError(
                    "method self learns from the scan itself: give self_minutes (--self-minutes M) to train it on "
                    "each run's sparse slices, or weights from `sparse-sem train-self` (--weights W)"
                )
        self.acquisition_spec()  # validates the dose
        if self.equal_time and self.acquisition_spec().dose is None:
            raise ValueError("equal_time needs a dose: the dense scan's electrons per pixel (e.g. --dose 20)")

    def validate_for(self, shape: Iterable[int]) -> None:
        """Check that ``slices`` and ``roi`` fit a volume of ``shape`` ((z, y, x), or (y, x) for one image)."""
        region_bounds(tuple(shape), self.slices, self.roi)

    def acquisition_spec(self) -> AcquisitionSpec:
        """The acquisition model actually used: ``acquisition`` with ``dose`` and ``seed`` from this spec."""
        dose = self.dose if self.dose is not None else self.acquisition.dose
        return dataclasses.replace(self.acquisition, dose=dose, seed=self.seed)

    def acquisition_for(self, coverage: float) -> AcquisitionSpec:
        """The acquisition of a sparse scan at ``coverage`` (with ``equal_time``: the dense dose over fewer pixels)."""
        from napari_sparse_sem.sampling.acquisition import equal_time_dose

        acq = self.acquisition_spec()
        if self.equal_time and acq.dose is not None:
            return dataclasses.replace(acq, dose=equal_time_dose(acq.dose, coverage))
        return acq

    def holdout_slices_for(self, method: str) -> int | None:
        """How many slices the hold-out scores for ``method``: 0 = skipped, ``None`` = all."""
        from napari_sparse_sem.compare.self_train import trains_self
        from napari_sparse_sem.recon.base import method_class

        if not self.holdout or trains_self(method, self.options_for(method)):
            return 0  # self trained on this run saw the held-out pixels as targets: its hold-out would flatter it
        limit = self.holdout_max_slices
        if method_class(method).iterative:
            limit = self.holdout_iterative_slices if limit is None else min(limit, self.holdout_iterative_slices)
        return limit

    def options_for(self, method: str) -> dict[str, Any]:
        return dict(self.method_options.get(method, {}))

    def context_for(self, method: str) -> int:
        """Neighbour slices on each side that ``method`` reads, as configured by its options (an instance's
        ``context``; building one is cheap: methods load nothing heavy before their first slice)."""
        from napari_sparse_sem.compare.self_train import SELF_CONTEXT, trains_self
        from napari_sparse_sem.recon.base import create

        if trains_self(method, self.options_for(method)):
            return SELF_CONTEXT  # no weights yet: the comparison trains them (±1 slice by default)
        return max(0, int(create(method, device="cpu", **self.options_for(method)).context))
