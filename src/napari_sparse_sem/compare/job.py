"""The comparison job: every mask pattern × coverage × reconstruction method on the same slices, scored slice by slice.

One parameter model (:class:`~napari_sparse_sem.compare.spec.CompareSpec`) drives the CLI (`sparse-sem compare`), the
napari comparison widget and the Python API. :func:`compare_job` is a generator (the project's progress/cancel
protocol): it yields :class:`~napari_sparse_sem.runtime.Progress` events, one with a finished :class:`CompareRun` as
``partial`` after every run, and returns a :class:`CompareResult`. Closing it early keeps the runs already yielded.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_sparse_sem.compare.self_train import train_self_for_run, trains_self
from napari_sparse_sem.compare.spec import CompareSpec
from napari_sparse_sem.io.volume import Volume, as_zyx, to_float01, value_range
from napari_sparse_sem.metrics import abs_error, volume_metrics
from napari_sparse_sem.runtime import Progress, pick_device, sub_job
from napari_sparse_sem.sampling.spec import AcquisitionSpec, MaskSpec

RECORD_KEYS: tuple[str, ...] = (
    "pattern",
    "coverage_requested",
    "coverage",
    "method",
    "slice",
    "psnr",
    "ssim",
    "psnr_unscanned",
    "ssim_unscanned",
    "mae",
    "seconds",
    "path_length_px",
    "acquisition_s",
    "dense_acquisition_s",
    "iterations",
    "training_s",
    "psnr_holdout",
    "psnr_holdout_raw",
    "weights_note",
    "noise_sigma",
    "psnr_ceiling",
)
"""Columns of every comparison record (one record per pattern × coverage × method × slice)."""


@dataclass
class CompareRun:
    """One pattern × coverage × method run on the selected slices (arrays are (z, y, x) of the selected slices/ROI)."""

    pattern: str
    coverage_requested: float
    method: str
    mask: np.ndarray
    sparse: np.ndarray
    recon: np.ndarray
    error: np.ndarray
    coverage: float
    slices: tuple[int, int] = (0, 0)
    records: list[dict[str, Any]] = field(default_factory=list)
    reference: np.ndarray | None = None  # the same array for every run of a comparison (not a copy)

    @property
    def label(self) -> str:
        return f"{self.pattern} {100 * self.coverage_requested:g}% · {self.method}"


@dataclass
class CompareResult:
    """Everything a comparison produced: per-slice ``records``, the ``runs`` with their arrays, the ``reference``."""

    records: list[dict[str, Any]]
    spec: CompareSpec
    runs: list[CompareRun]
    reference: np.ndarray
    slices: tuple[int, int] = (0, 0)
    roi: tuple[int, int, int, int] = (0, 0, 0, 0)
    source: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> list[dict[str, Any]]:
        return summary(self.records)


def result_from_runs(runs: list[CompareRun], spec: CompareSpec, source: dict[str, Any] | None = None) -> CompareResult:
    """A :class:`CompareResult` from the runs finished so far (what a stopped comparison keeps)."""
    if not runs:
        raise ValueError("no comparison run finished yet; nothing to keep")
    first = runs[0]
    shape = first.recon.shape
    roi = spec.roi if spec.roi is not None else (0, shape[1], 0, shape[2])
    reference = first.reference if first.reference is not None else np.full(shape, np.nan, dtype=np.float32)
    records = [r for run in runs for r in run.records]
    return CompareResult(records, spec, list(runs), reference, first.slices, roi, dict(source or {}))


def summary(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Means over slices per pattern × coverage × method (first-seen order), with the PSNR spread and slice count."""
    groups: dict[tuple[str, float, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["pattern"], r["coverage_requested"], r["method"]), []).append(r)
    rows = []
    for (pattern, cov, method), rs in groups.items():

        def mean(key: str, rs: list[dict[str, Any]] = rs) -> float:
            values = np.array([r[key] for r in rs if r.get(key) is not None], dtype=np.float64)
            values = values[~np.isnan(values)]
            return float(np.mean(values)) if values.size else float("nan")

        psnrs = np.array([r["psnr"] for r in rs], dtype=np.float64)
        finite = psnrs[np.isfinite(psnrs)]
        rows.append(
            {
                "pattern": pattern,
                "coverage_requested": cov,
                "method": method,
                "n_slices": len(rs),
                "coverage": mean("coverage"),
                "psnr": mean("psnr"),
                "psnr_std": float(np.std(finite)) if finite.size else float("nan"),
                "ssim": mean("ssim"),
                "psnr_unscanned": mean("psnr_unscanned"),
                "ssim_unscanned": mean("ssim_unscanned"),
                "mae": mean("mae"),
                "seconds": mean("seconds"),
                "training_s": mean("training_s"),
                "acquisition_s": mean("acquisition_s"),
                "dense_acquisition_s": mean("dense_acquisition_s"),
                "psnr_holdout": mean("psnr_holdout"),
                "psnr_holdout_raw": mean("psnr_holdout_raw"),
                "noise_sigma": mean("noise_sigma"),
                "psnr_ceiling": mean("psnr_ceiling"),
                "weights_note": next((r["weights_note"] for r in rs if r.get("weights_note")), None),
            }
        )
    return rows


def _derived_seed(seed: int, salt: int) -> int:
    return int(np.random.SeedSequence([seed, salt]).generate_state(1)[0])


def _seconds(value: Any) -> float:
    return float(getattr(value, "seconds", value))


def _context_masks(n: int, shape2d: tuple[int, int], mask_spec: MaskSpec, first: np.ndarray, salt: int) -> np.ndarray:
    """Masks for ``n`` neighbour slices: fresh ones (own seed) when per-slice, else the one fixed mask repeated."""
    from napari_sparse_sem.sampling import make_masks

    if n == 0:
        return np.zeros((0, *shape2d), dtype=bool)
    if not mask_spec.per_slice:
        return np.repeat(first[None], n, axis=0)
    spec = dataclasses.replace(mask_spec, seed=_derived_seed(mask_spec.seed or 0, salt))
    mask, _ = make_masks((n, *shape2d), spec)
    return np.asarray(mask, dtype=bool)


def _dense_scan_records(
    reference: np.ndarray, acq: AcquisitionSpec, first_slice: int, dense_s: float, noise: dict[str, float]
) -> list[dict[str, Any]]:
    """Score the noisy dense scan at ``acq.dose`` (the equal-time baseline): pattern ``dense``, method ``none``."""
    from napari_sparse_sem.sampling import simulate_acquisition

    noisy = simulate_acquisition(reference, np.ones(reference.shape, dtype=bool), acq)
    rows = volume_metrics(reference, noisy, np.zeros(reference.shape, dtype=bool), offset=first_slice)
    return [
        {
            "pattern": "dense",
            "coverage_requested": 1.0,
            "coverage": 1.0,
            "method": "none",
            "slice": row["slice"],
            "psnr": row["psnr"],
            "ssim": row["ssim"],
            "psnr_unscanned": float("nan"),
            "ssim_unscanned": float("nan"),
            "mae": row["mae"],
            "seconds": 0.0,
            "path_length_px": float("nan"),
            "acquisition_s": dense_s,
            "dense_acquisition_s": dense_s,
            "iterations": None,
            "training_s": float("nan"),
            "psnr_holdout": float("nan"),
            "psnr_holdout_raw": float("nan"),
            "weights_note": None,
            **noise,
        }
        for row in rows
    ]


def compare_job(volume: Volume | np.ndarray, spec: CompareSpec) -> Generator[Progress, None, CompareResult]:
    """Simulate every pattern × coverage, reconstruct with every method, and score the selected slices.

    Methods with 3D context (``linear3d``) get the neighbouring slices (with their own masks) when the input has them,
    but only the selected slices are reconstructed and scored. Progress counts every slice of every run; after each
    run a ``Progress`` with ``partial=CompareRun`` is yielded (inner per-slice events carry no partial, except a
    network fit's :class:`~napari_sparse_sem.recon.base.FitPreview`, with ``z`` indexing the input volume).
    With ``spec.holdout`` every record also gets ``psnr_holdout`` (the quality estimated from the scanned pixels
    alone, :mod:`napari_sparse_sem.quality.holdout`; NaN where skipped); every record carries ``weights_note`` (what
    the method said about its weights) and the reference's ``noise_sigma``/``psnr_ceiling``.
    """
    from napari_sparse_sem.quality.holdout import holdout_job
    from napari_sparse_sem.quality.noise import estimate_noise
    from napari_sparse_sem.recon.base import FitPreview
    from napari_sparse_sem.recon.volume import SliceDone, reconstruct_volume
    from napari_sparse_sem.sampling import make_masks, simulate_acquisition
    from napari_sparse_sem.sampling.path import dense_scan_time, estimate_time, path_length

    data = volume.data if isinstance(volume, Volume) else volume
    data = as_zyx(data, "volume")
    nz, ny, nx = (int(s) for s in data.shape)
    spec.validate_for((nz, ny, nx))
    device = pick_device(spec.device)
    a, b = spec.slices if spec.slices is not None else (0, nz)
    y0, y1, x0, x1 = spec.roi if spec.roi is not None else (0, ny, 0, nx)
    h, w = y1 - y0, x1 - x0
    n_sel = b - a
    context = max(spec.context_for(m) for m in spec.methods)
    lo, hi = max(0, a - context), min(nz, b + context)
    raw = np.asarray(data[lo:hi, y0:y1, x0:x1])
    block = to_float01(raw, "volume", value_range(raw[a - lo : b - lo]))
    reference = block[a - lo : b - lo]
    sel = list(range(a - lo, b - lo))
    acq = spec.acquisition_spec()
    dense_s = _seconds(dense_scan_time((h, w), acq))
    estimate = estimate_noise(reference)
    noise = {"noise_sigma": estimate.sigma, "psnr_ceiling": estimate.ceiling}

    runs_total = len(spec.patterns) * len(spec.coverages) * len(spec.methods)
    total = runs_total * n_sel
    records: list[dict[str, Any]] = []
    if spec.equal_time:
        records.extend(_dense_scan_records(reference, acq, a, dense_s, noise))
    runs: list[CompareRun] = []
    run_index = 0
    for pattern in spec.patterns:
        for cov in spec.coverages:
            label = f"{pattern} {100 * cov:g}%"
            yield Progress(run_index * n_sel, total, f"{label}: masks and simulated acquisition")
            mask_spec = MaskSpec(pattern=pattern, coverage=cov, per_slice=spec.per_slice, seed=spec.seed)
            mask_sel, results = make_masks((n_sel, h, w), mask_spec)
            mask_sel = np.asarray(mask_sel, dtype=bool)
            acq_cov = spec.acquisition_for(cov)
            sparse_sel = np.asarray(simulate_acquisition(reference, mask_sel, acq_cov), dtype=np.float32)
            before = _context_masks(a - lo, (h, w), mask_spec, mask_sel[0], 1)
            after = _context_masks(hi - b, (h, w), mask_spec, mask_sel[-1], 2)
            mask_block = np.concatenate([before, mask_sel, after])
            sparse_block = np.zeros(block.shape, dtype=np.float32)
            sparse_block[a - lo : b - lo] = sparse_sel
            for part, z0, salt in ((before, 0, 3), (after, b - lo, 4)):
                if len(part):
                    ctx_acq = dataclasses.replace(acq_cov, seed=_derived_seed(spec.seed, salt))
                    sparse_block[z0 : z0 + len(part)] = simulate_acquisition(block[z0 : z0 + len(part)], part, ctx_acq)
            timing = []
            for i in range(n_sel):
                res = results[i] if len(results) == n_sel else results[0]
                timing.append((float(path_length(res.path)), _seconds(estimate_time(res.path, acq))))

            for method in spec.methods:
                out = np.zeros(block.shape, dtype=np.float32)
                seconds: dict[int, float] = {}
                iterations: dict[int, int | None] = {}
                notes: dict[int, str | None] = {}
                options = spec.options_for(method)
                trained = None
                if trains_self(method, options):
                    trained = yield from train_self_for_run(
                        sparse_block,
                        mask_block,
                        options,
                        minutes=float(spec.self_minutes or 0),
                        seed=spec.seed,
                        device=device,
                        step=run_index * n_sel,
                        total=total,
                        label=label,
                    )
                    options = trained.options
                job = reconstruct_volume(
                    sparse_block,
                    mask_block,
                    method,
                    device=device,
                    options=options,
                    slices=sel,
                    out=out,
                )
                inner = sub_job(job, run_index * n_sel, total, f"{label} · {method}: ")
                try:
                    while True:
                        try:
                            event = next(inner)
                        except StopIteration as stop:
                            recon_block = stop.value if stop.value is not None else out
                            break
                        message = event.message
                        if isinstance(event.partial, SliceDone):
                            seconds[int(event.partial.z)] = float(event.partial.seconds)
                            iterations[int(event.partial.z)] = event.partial.info.get("iterations")
                            notes[int(event.partial.z)] = event.partial.info.get("weights_note")
                            # Name the slice by its index in the input volume, not in the working block.
                            message = f"{label} · {method}: slice {lo + event.partial.z}: {event.partial.seconds:.2f} s"
                        preview = None
                        if isinstance(event.partial, FitPreview):  # a network's fit: pass it on, volume-indexed
                            z = None if event.partial.z is None else lo + event.partial.z
                            preview = dataclasses.replace(event.partial, z=z)
                        yield Progress(event.step, total, message, preview)
                finally:
                    inner.close()
                    job.close()
                    if trained is not None:
                        trained.close()  # the scratch weights go; the figures stay
                recon = np.asarray(recon_block, dtype=np.float32)[a - lo : b - lo]
                holdout: dict[int, tuple[float, float]] = {}
                limit = spec.holdout_slices_for(method)
                if limit != 0:
                    hjob = holdout_job(
                        sparse_block,
                        mask_block,
                        method,
                        options=spec.options_for(method),
                        device=device,
                        slices=sel,
                        folds=spec.holdout_folds,
                        seed=spec.seed,
                        max_slices=limit,
                    )
                    step = (run_index + 1) * n_sel
                    try:
                        while True:
                            try:
                                event = next(hjob)
                            except StopIteration as stop:
                                found = stop.value
                                break
                            yield Progress(step, total, f"{label} · {method}: {event.message}")
                    finally:
                        hjob.close()
                    holdout = {
                        int(r["slice"]): (float(r["psnr_holdout"]), float(r["psnr_holdout_raw"]))
                        for r in found.per_slice
                    }
                rows = volume_metrics(reference, recon, mask_sel, offset=a)
                run_records = []
                for i, row in enumerate(rows):
                    record = {
                        "pattern": pattern,
                        "coverage_requested": cov,
                        "coverage": float(mask_sel[i].mean()),
                        "method": method,
                        "slice": row["slice"],
                        "psnr": row["psnr"],
                        "ssim": row["ssim"],
                        "psnr_unscanned": row["psnr_unscanned"],
                        "ssim_unscanned": row["ssim_unscanned"],
                        "mae": row["mae"],
                        "seconds": seconds.get(sel[i], float("nan")),
                        "path_length_px": timing[i][0],
                        "acquisition_s": timing[i][1],
                        "dense_acquisition_s": dense_s,
                        "iterations": iterations.get(sel[i]),
                        "training_s": trained.seconds if trained is not None else float("nan"),
                        "psnr_holdout": holdout.get(sel[i], (float("nan"),) * 2)[0],
                        "psnr_holdout_raw": holdout.get(sel[i], (float("nan"),) * 2)[1],
                        "weights_note": notes.get(sel[i]),
                        **noise,
                    }
                    run_records.append(record)
                records.extend(run_records)
                run = CompareRun(
                    pattern=pattern,
                    coverage_requested=cov,
                    method=method,
                    mask=mask_sel,
                    sparse=sparse_sel,
                    recon=recon,
                    error=abs_error(reference, recon),
                    coverage=float(mask_sel.mean()),
                    slices=(a, b),
                    records=run_records,
                    reference=reference,
                )
                runs.append(run)
                run_index += 1
                yield Progress(run_index * n_sel, total, f"{run.label}: done", partial=run)

    name = volume.name if isinstance(volume, Volume) else "array"
    voxel = list(volume.voxel_size) if isinstance(volume, Volume) and volume.voxel_size else None
    source = {"name": name, "shape": [nz, ny, nx], "dtype": str(raw.dtype), "voxel_size": voxel}
    return CompareResult(
        records=records,
        spec=spec,
        runs=runs,
        reference=reference,
        slices=(a, b),
        roi=(y0, y1, x0, x1),
        source=source,
    )
