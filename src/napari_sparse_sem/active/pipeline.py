"""The active-acquisition loop of Mi et al. (MICCAI 2020) as one job: initial scan → reconstruction → error estimate →
rescan selection → final reconstruction, slice by slice, simulated on a dense stack that serves as the microscope.

:class:`WDPPConfig` is the one parameter model (CLI flags, widget fields, saved metadata). :func:`plan_rescan` is the
step a real microscope needs (no ground truth: sparse scan in, rescan points out); :func:`active_job` simulates the
whole loop on dense slices, scores it, and yields one :class:`ActiveSlice` per finished slice (the progress/cancel
protocol: closing the job keeps the slices already yielded).
"""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_sparse_sem.active.scan import parse_initial
from napari_sparse_sem.active.wdpp import DPP_MODES, SAMPLERS, RescanSelection, select_rescan
from napari_sparse_sem.params import Spec, param
from napari_sparse_sem.recon.base import check_finite
from napari_sparse_sem.runtime import Progress, pick_device

ESTIMATOR_NAMES: tuple[str, ...] = ("unet", "gradient", "variance", "entropy", "oracle")

RECORD_KEYS: tuple[str, ...] = (
    "slice",
    "sampler",
    "estimator",
    "initial",
    "rounds",
    "coverage",
    "initial_coverage",
    "psnr",
    "ssim",
    "l1",
    "initial_psnr",
    "error_correlation",
    "seconds",
    "sampler_seconds",
    "rescan_path_length_px",
    "rescan_acquisition_s",
)
"""Columns of every active-acquisition record (one per slice; static baselines use ``sampler = static:PATTERN``)."""


@dataclass
class WDPPConfig(Spec):
    """Parameters of an active acquisition.

    ``initial`` is the first scan (``lowres:4``, ``random:0.05`` ...); ``budget`` the *total* fraction of pixels
    scanned (initial + rescans), so its speed-up is 1/budget; ``rounds`` splits the rescan into that many
    estimate-and-select rounds. The WDPP kernel uses ``gamma`` (saliency vs spread) and ``sigma`` in pixels (``auto``:
    1.2 × the mean spacing of all scanned pixels after the rescan, or 0.8 × the rescan points' without
    ``condition``); ``mode`` is ``greedy`` (MAP, deterministic) or ``sample`` (a DPP draw);
    ``condition`` conditions the WDPP on the pixels already scanned, so rescans keep away from them too.
    ``baselines`` are static mask patterns scored at the same total coverage for comparison (e.g. ``random``,
    ``hexgrid``, ``lowres``).
    """

    kind = "WDPPConfig"

    initial: str = param("lowres:4", label="initial scan", help="The first scan, e.g. lowres:4 or random:0.05.")
    budget: float = param(
        0.10,
        percent=True,
        low=0.0,
        high=1.0,
        low_open=True,
        high_open=True,
        label="total budget",
        help="Total fraction of pixels scanned (initial scan + rescans); the speed-up is 1 / budget.",
    )
    rounds: int = param(1, low=1, help="Estimate-and-select rounds the rescan budget is split over.")
    estimator: str = param(
        "gradient", choices=ESTIMATOR_NAMES, label="error estimator", help="How the reconstruction error is estimated."
    )
    estimator_weights: str | None = param(
        None,
        label="estimator weights",
        help="Weights (.safetensors) of the unet estimator (none: the shipped ones).",
        flag="weights",
    )
    sampler: str = param("wdpp", choices=SAMPLERS, help="How rescan pixels are picked from the error estimate.")
    mode: str = param(
        "greedy", choices=DPP_MODES, label="WDPP mode", help="greedy (MAP, deterministic) or sample (a DPP draw)."
    )
    condition: bool = param(True, help="The WDPP keeps away from the pixels already scanned too.")
    gamma: float = param(1.0, low=0.0, label="γ", help="WDPP exponent: saliency (high) vs spread (low).")
    sigma: float | str = param("auto", unit="px", label="σ", help="WDPP kernel width in pixels, or auto.")
    recon: str = param("linear", label="reconstruction", help="Reconstruction method of the initial and final scans.")
    recon_options: dict[str, Any] = param(
        default_factory=dict, cli=False, widget=False, help="Options of the reconstruction method."
    )
    baselines: tuple[str, ...] = param(
        (), help="Static mask patterns scored at the same total coverage for comparison (e.g. random, hexgrid)."
    )
    seed: int = param(0, low=0, help="Random seed of the scans and the sampler.")
    device: str = param("auto", help="auto, cpu, cuda or mps.")

    def validate(self) -> None:
        from napari_sparse_sem.sampling.spec import PATTERNS

        if int(self.rounds) != self.rounds:
            raise ValueError(f"rounds must be a positive integer, got {self.rounds}")
        if int(self.seed) != self.seed:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed}")
        self.initial_spec()  # raises on a bad initial scan
        if self.sigma != "auto":
            try:
                sigma = float(self.sigma)
            except (TypeError, ValueError):
                raise ValueError(f"sigma must be a length in pixels or 'auto', got {self.sigma!r}") from None
            if not np.isfinite(sigma) or sigma <= 0:
                raise ValueError(f"sigma must be a positive length in pixels or 'auto', got {self.sigma!r}")
            self.sigma = sigma
        self.baselines = tuple(self.baselines)
        unknown = [b for b in self.baselines if b not in PATTERNS]
        if unknown:
            raise ValueError(f"unknown baseline pattern(s) {unknown}; choose from {list(PATTERNS)}")

    def initial_spec(self):  # -> MaskSpec
        return parse_initial(self.initial, seed=self.seed)


@dataclass
class RescanRound:
    """One estimate-and-select round: the reconstruction it started from, its error estimate and the chosen pixels."""

    recon: np.ndarray
    estimate: np.ndarray
    selection: RescanSelection


@dataclass
class ActiveSlice:
    """Everything one slice's active acquisition produced (images are float32 in [0, 1])."""

    z: int
    initial_mask: np.ndarray
    rounds: list[RescanRound]
    final_mask: np.ndarray
    final_recon: np.ndarray
    record: dict[str, Any]
    true_error: np.ndarray | None = None  # |reference − initial reconstruction|
    baselines: dict[str, tuple[np.ndarray, np.ndarray, dict[str, Any]]] = field(default_factory=dict)

    @property
    def initial_recon(self) -> np.ndarray:
        return self.rounds[0].recon

    @property
    def rescan_points(self) -> np.ndarray:
        """All rescan pixels (row, col), round after round."""
        return np.concatenate([r.selection.points for r in self.rounds])


@dataclass
class ActiveResult:
    """The finished slices and their records (what ``metrics.json`` holds), with the config that made them."""

    slices: list[ActiveSlice]
    config: WDPPConfig
    source: dict[str, Any] = field(default_factory=dict)

    @property
    def records(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for s in self.slices:
            out.append(s.record)
            out.extend(b[2] for b in s.baselines.values())
        return out


def round_counts(n_pixels: int, n_initial: int, budget: float, rounds: int) -> list[int]:
    """Rescan pixels per round: the total budget minus the initial scan, split as evenly as possible."""
    total = round(budget * n_pixels)
    rescan = total - n_initial
    if rescan < rounds:
        raise ValueError(
            f"the budget {budget:g} ({total} pixels) leaves {max(rescan, 0)} rescan pixels after the initial scan of "
            f"{n_initial} pixels ({n_initial / n_pixels:.2%}); raise the budget or use a sparser initial scan"
        )
    base, extra = divmod(rescan, rounds)
    return [base + (1 if r < extra else 0) for r in range(rounds)]


def _staged(job: Generator[Progress, None, Any], step: int, total: int) -> Generator[Progress, None, Any]:
    """Re-yield an inner job's events at one outer ``step`` (their messages and partials kept)."""
    try:
        while True:
            event = next(job)
            yield Progress(step, total, event.message, event.partial)
    except StopIteration as stop:
        return stop.value


def _reconstruct(recon: Any, sparse: np.ndarray, mask: np.ndarray) -> Generator[Progress, None, np.ndarray]:
    out = yield from recon.reconstruct_slice_job(sparse[None], mask[None], 0)
    image = check_finite(np.asarray(out, dtype=np.float32), f"the {recon.name!r} reconstruction")
    return np.clip(image, 0.0, 1.0)


def plan_rescan(
    sparse: np.ndarray,
    mask: np.ndarray,
    k: int,
    config: WDPPConfig,
    *,
    recon: Any = None,
    estimator: Any = None,
    reference: np.ndarray | None = None,
) -> Generator[Progress, None, RescanRound]:
    """One round without ground truth: reconstruct the sparse scan, estimate its error, choose ``k`` rescan pixels.

    ``recon``/``estimator`` are reused objects (made from ``config`` when not given); ``reference`` is only needed by
    the ``oracle`` estimator.
    """
    from napari_sparse_sem.active.error_estimation import make_estimator
    from napari_sparse_sem.recon.base import create

    device = pick_device(config.device)
    recon = recon or create(config.recon, device=device, **config.recon_options)
    estimator = estimator or make_estimator(config.estimator, weights=config.estimator_weights, device=device)
    image = yield from _reconstruct(recon, sparse, mask)
    estimate = np.asarray(estimator.estimate(image, sparse, mask, reference=reference), dtype=np.float32)
    check_finite(estimate, f"the {config.estimator} error estimate")
    selection = select_rescan(
        estimate,
        k,
        config.sampler,
        scanned=mask,
        sigma=config.sigma,
        gamma=config.gamma,
        mode=config.mode,
        condition=config.condition,
        seed=config.seed,
    )
    return RescanRound(recon=image, estimate=estimate, selection=selection)


def _score(reference: np.ndarray, image: np.ndarray) -> dict[str, float]:
    from napari_sparse_sem.metrics import psnr, ssim

    return {
        "psnr": psnr(reference, image),
        "ssim": ssim(reference, image),
        "l1": float(np.mean(np.abs(image - reference))),
    }


def _rescan_timing(points: np.ndarray) -> dict[str, float]:
    from napari_sparse_sem.active.export import short_path_order
    from napari_sparse_sem.sampling.path import estimate_time, path_length
    from napari_sparse_sem.sampling.spec import AcquisitionSpec

    ordered = short_path_order(points)
    return {
        "rescan_path_length_px": float(path_length(ordered)),
        "rescan_acquisition_s": float(estimate_time(ordered, AcquisitionSpec()).seconds),
    }


def active_slice_job(
    reference: np.ndarray, z: int, config: WDPPConfig, recon: Any, estimator: Any
) -> Generator[Progress, None, ActiveSlice]:
    """The whole loop on one dense slice ``reference`` (float32 in [0, 1]); ``z`` seeds the slice's masks."""
    from napari_sparse_sem.metrics import error_correlation, psnr
    from napari_sparse_sem.sampling.patterns import slice_mask

    start = time.perf_counter()
    shape = reference.shape
    initial = slice_mask(shape, config.initial_spec(), z).mask
    counts = round_counts(reference.size, int(initial.sum()), config.budget, config.rounds)
    mask = initial.copy()
    rounds: list[RescanRound] = []
    for r, k in enumerate(counts):
        yield Progress(r, len(counts) + 1, f"slice {z}: round {r + 1}/{len(counts)}: reconstruct, estimate, select")
        sparse = np.where(mask, reference, 0.0).astype(np.float32)
        planning = plan_rescan(sparse, mask, k, config, recon=recon, estimator=estimator, reference=reference)
        round_ = yield from _staged(planning, r, len(counts) + 1)
        rounds.append(round_)
        mask = mask.copy()
        mask[round_.selection.points[:, 0], round_.selection.points[:, 1]] = True
    yield Progress(len(counts), len(counts) + 1, f"slice {z}: final reconstruction")
    sparse = np.where(mask, reference, 0.0).astype(np.float32)
    final = yield from _staged(_reconstruct(recon, sparse, mask), len(counts), len(counts) + 1)
    true_error = np.abs(reference - rounds[0].recon).astype(np.float32)
    record = {
        "slice": int(z),
        "sampler": config.sampler if config.sampler != "wdpp" else f"wdpp-{config.mode}",
        "estimator": config.estimator,
        "initial": config.initial,
        "rounds": config.rounds,
        "coverage": float(mask.mean()),
        "initial_coverage": float(initial.mean()),
        **_score(reference, final),
        "initial_psnr": psnr(reference, rounds[0].recon),
        "error_correlation": error_correlation(true_error, rounds[0].estimate, initial),
        "seconds": time.perf_counter() - start,
        "sampler_seconds": float(sum(r.selection.seconds for r in rounds)),
        **_rescan_timing(np.concatenate([r.selection.points for r in rounds])),
        "gamma": float(config.gamma),
        "sigma": rounds[0].selection.info.get("sigma"),
        "recon": config.recon,
    }
    return ActiveSlice(
        z=int(z),
        initial_mask=initial,
        rounds=rounds,
        final_mask=mask,
        final_recon=final,
        record=record,
        true_error=true_error,
    )


def _baseline(
    reference: np.ndarray, z: int, pattern: str, coverage: float, config: WDPPConfig, recon: Any
) -> Generator[Progress, None, tuple[np.ndarray, np.ndarray, dict[str, Any]]]:
    """A static mask of ``pattern`` at the same total coverage, reconstructed the same way."""
    from napari_sparse_sem.sampling.patterns import slice_mask
    from napari_sparse_sem.sampling.spec import MaskSpec

    start = time.perf_counter()
    mask = slice_mask(reference.shape, MaskSpec(pattern=pattern, coverage=coverage, seed=config.seed), z).mask
    sparse = np.where(mask, reference, 0.0).astype(np.float32)
    image = yield from _reconstruct(recon, sparse, mask)
    record = {
        "slice": int(z),
        "sampler": f"static:{pattern}",
        "estimator": "",
        "initial": "",
        "rounds": 0,
        "coverage": float(mask.mean()),
        "initial_coverage": 0.0,
        **_score(reference, image),
        "seconds": time.perf_counter() - start,
        "sampler_seconds": 0.0,
        "recon": config.recon,
    }
    return mask, image, record


def active_job(
    volume: np.ndarray, config: WDPPConfig, slices: Sequence[int] | None = None, z_offset: int = 0
) -> Generator[Progress, None, ActiveResult]:
    """Simulate the active acquisition on the dense ``(z, y, x)`` float32 [0, 1] ``volume`` for ``slices``.

    ``z_offset`` is added to slice indices in the results and mask seeds, for a block cut from a larger stack.
    Yields progress; after each slice a ``Progress`` whose ``partial`` is the finished :class:`ActiveSlice`.
    """
    from napari_sparse_sem.active.error_estimation import make_estimator
    from napari_sparse_sem.io.volume import as_zyx
    from napari_sparse_sem.recon.base import create, method_class

    data = as_zyx(volume, "volume")
    zs = list(range(data.shape[0])) if slices is None else [int(z) for z in slices]
    if not zs:
        raise ValueError("no slices selected")
    bad = [z for z in zs if not 0 <= z < data.shape[0]]
    if bad:
        raise ValueError(f"slice(s) {bad} are outside the volume of {data.shape[0]} slices")
    if method_class(config.recon).context:
        raise ValueError(
            f"method {config.recon!r} needs neighbouring slices; active acquisition reconstructs one slice at a time, "
            "choose a 2D method (nearest, linear, harmonic, biharmonic, dip)"
        )
    device = pick_device(config.device)
    recon = create(config.recon, device=device, **config.recon_options)
    estimator = make_estimator(config.estimator, weights=config.estimator_weights, device=device)
    steps_per_slice = config.rounds + 1 + len(config.baselines)
    total = len(zs) * steps_per_slice
    done: list[ActiveSlice] = []
    try:
        for i, z in enumerate(zs):
            reference = np.asarray(data[z], dtype=np.float32)
            if reference.size and (reference.min() < 0 or reference.max() > 1):
                raise ValueError("active_job needs float images in [0, 1]; convert with io.volume.to_float01 first")
            z_in = z + z_offset
            job = active_slice_job(reference, z_in, config, recon, estimator)
            while True:
                try:
                    event = next(job)
                except StopIteration as stop:
                    result: ActiveSlice = stop.value
                    break
                yield Progress(i * steps_per_slice + event.step, total, event.message)
            for j, pattern in enumerate(config.baselines):
                step = i * steps_per_slice + config.rounds + 1 + j
                yield Progress(step, total, f"slice {z_in}: baseline {pattern} at {result.record['coverage']:.2%}")
                baseline = _baseline(reference, z_in, pattern, result.record["coverage"], config, recon)
                result.baselines[pattern] = yield from _staged(baseline, step, total)
            done.append(result)
            yield Progress((i + 1) * steps_per_slice, total, f"slice {z_in} done", result)
    finally:
        recon.close()
    return ActiveResult(slices=done, config=config)
