"""Write an active acquisition to disk: ``metrics.json`` (records, sparsification curves, the config), ``metrics.csv``,
the rescan plan of every slice for the microscope (``rescan/``), a figure (``active.png``: sparsification curves
and PSNR per sampler) and ``params.json`` (the config, whether every slice finished, the files the report owns).
The folder is written all at once (:class:`~napari_sparse_sem.outputs.ReportFolder`): nothing is overwritten unless
asked, and a replaced report leaves no stale rescan plan behind."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from napari_sparse_sem import __version__
from napari_sparse_sem.active.pipeline import RECORD_KEYS, ActiveResult, ActiveSlice, WDPPConfig, active_job
from napari_sparse_sem.compare.report import write_csv, write_json
from napari_sparse_sem.metrics import DEFAULT_FRACTIONS, sparsification_curve, sparsification_error_area
from napari_sparse_sem.outputs import PACKAGE, PARAMS_FILE, ReportFolder, owned_entries
from napari_sparse_sem.provenance import stamp
from napari_sparse_sem.runtime import Progress

ACTIVE_FILES: dict[str, str] = {
    "metrics_json": "metrics.json",
    "metrics_csv": "metrics.csv",
    "figure": "active.png",
    "rescan": "rescan",
}


def slice_curves(item: ActiveSlice, fractions: np.ndarray = DEFAULT_FRACTIONS) -> dict[str, Any]:
    """Sparsification curves of the first round's estimate and of the oracle, over the pixels not scanned initially."""
    if item.true_error is None:
        return {}
    est = item.rounds[0].estimate
    return {
        "slice": item.z,
        "estimate": sparsification_curve(item.true_error, est, fractions, item.initial_mask),
        "oracle": sparsification_curve(item.true_error, item.true_error, fractions, item.initial_mask),
        "ause": sparsification_error_area(item.true_error, est, fractions, item.initial_mask),
    }


def mean_curves(result: ActiveResult, fractions: np.ndarray = DEFAULT_FRACTIONS) -> dict[str, Any]:
    """The per-slice curves and their means over slices."""
    per_slice = [c for c in (slice_curves(s, fractions) for s in result.slices) if c]
    out: dict[str, Any] = {"fractions": fractions, "estimator": result.config.estimator, "per_slice": per_slice}
    if per_slice:
        out["estimate"] = np.mean([c["estimate"] for c in per_slice], axis=0)
        out["oracle"] = np.mean([c["oracle"] for c in per_slice], axis=0)
        out["ause"] = float(np.nanmean([c["ause"] for c in per_slice]))
    return out


def _legacy_active(folder: Path) -> set[str]:
    """An active report written before ``params.json`` listed its files: our metrics.json marks the usual names."""
    try:
        metrics = json.loads((folder / ACTIVE_FILES["metrics_json"]).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    ours = isinstance(metrics, dict) and {"config", "records", "curves"} <= set(metrics)
    return set(ACTIVE_FILES.values()) if ours else set()


def check_active_dir(
    out_dir: str | Path, overwrite: bool = False, inputs: Iterable[str | Path | None] = ()
) -> ReportFolder:
    """Check ``out_dir`` before the work (never an input; a previous report or other files only with ``overwrite``)
    and open its staging folder: write with :func:`write_active_files` into ``.stage``, then ``commit()``."""
    names = [*ACTIVE_FILES.values(), PARAMS_FILE]
    return ReportFolder(out_dir, "active", inputs=inputs, overwrite=overwrite, legacy=_legacy_active, names=names)


def write_active_report(
    result: ActiveResult,
    out_dir: str | Path,
    overwrite: bool = False,
    inputs: Iterable[str | Path | None] = (),
    complete: bool = True,
) -> dict[str, Path]:
    """Write the files of :data:`ACTIVE_FILES` and ``params.json`` into ``out_dir`` all at once; returns their paths.

    ``overwrite`` replaces exactly what the previous active report there wrote (a stale rescan plan never survives
    beside a new one); ``complete`` is recorded in ``params.json`` (false for an interrupted run).
    """
    with check_active_dir(out_dir, overwrite, inputs) as folder:
        write_active_files(result, folder.stage, complete)
        out = folder.commit()
    return {key: out / name for key, name in ACTIVE_FILES.items()}


def run_active(
    volume: np.ndarray,
    config: WDPPConfig,
    out_dir: str | Path,
    slices: list[int],
    z_offset: int,
    *,
    overwrite: bool = False,
    source: dict[str, Any] | None = None,
    inputs: Iterable[str | Path | None] = (),
    on_progress: Callable[[Progress], None] | None = None,
) -> ActiveResult:
    """Run :func:`active_job` on ``slices`` of ``volume`` (float32 in [0, 1]) and write the report into ``out_dir`` all
    at once (checked before the work; never one of ``inputs``). A stop or an error after some slices finished writes
    those (``complete: false``): a stop raises :class:`~napari_sparse_sem.partial.Interrupted`, an error is raised
    again saying what was kept."""
    from napari_sparse_sem.partial import run_into_report

    source = dict(source or {})
    with check_active_dir(out_dir, overwrite, inputs) as folder:
        result = run_into_report(
            active_job(volume, config, slices, z_offset),
            ActiveSlice,
            folder,
            lambda done: write_active_files(ActiveResult(done, config, source), folder.stage, complete=False),
            len(slices),
            "slice",
            on_progress,
        )
        result.source.update(source)
        write_active_files(result, folder.stage, complete=True)
        folder.commit()
    return result


def write_active_files(result: ActiveResult, folder: str | Path, complete: bool = True) -> dict[str, Path]:
    """Write the report into the existing ``folder``; ``params.json`` (config, completeness, owned files) last."""
    from napari_sparse_sem.active.export import write_rescan

    out = Path(folder)
    paths = {key: out / name for key, name in ACTIVE_FILES.items()}
    curves = mean_curves(result)
    write_json(
        paths["metrics_json"],
        {
            "version": __version__,
            "config": result.config.to_dict(),
            "source": result.source,
            "records": result.records,
            "curves": curves,
        },
    )
    write_csv(paths["metrics_csv"], result.records, RECORD_KEYS)
    paths["rescan"].mkdir(exist_ok=True)
    for item in result.slices:
        write_rescan(
            item.rescan_points,
            item.final_mask.shape,
            paths["rescan"] / f"slice_{item.z:04d}",
            metadata={"slice": item.z, "config": result.config.to_dict()},
        )
    figure = active_figure(result, curves)
    figure.savefig(paths["figure"], dpi=120)
    params = {
        "command": "active",
        "config": result.config.to_dict(),
        "source": result.source,
        "slices_done": [item.z for item in result.slices],
        "package": PACKAGE,
        "version": __version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "complete": bool(complete),
        "files": owned_entries(out),
    }
    write_json(out / PARAMS_FILE, stamp(params))
    return paths


def active_figure(result: ActiveResult, curves: dict[str, Any] | None = None) -> Any:
    """Left: sparsification curves (estimate vs oracle); right: mean PSNR per sampler (and static baselines)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    curves = curves if curves is not None else mean_curves(result)
    fig = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(fig)
    left, right = fig.subplots(1, 2)
    if "estimate" in curves:
        f = 100 * np.asarray(curves["fractions"])
        left.plot(f, curves["oracle"], "k--", label="oracle (true error)")
        left.plot(f, curves["estimate"], label=f"{curves['estimator']} (AUSE {curves['ause']:.3f})")
        left.set_xlabel("pixels removed, highest estimated error first (%)")
        left.set_ylabel("mean remaining error")
        left.set_title("Sparsification curve of the initial reconstruction")
        left.legend()
    by_sampler: dict[str, list[float]] = {}
    for record in result.records:
        by_sampler.setdefault(record["sampler"], []).append(record["psnr"])
    names = list(by_sampler)
    means = [float(np.mean(by_sampler[n])) for n in names]
    right.barh(names, means, color=["C0" if not n.startswith("static:") else "C7" for n in names])
    if means:
        right.set_xlim(min(means) - 1.0, max(means) + 0.5)
    for y, value in enumerate(means):
        right.text(value, y, f" {value:.2f}", va="center")
    coverage = np.mean([r["coverage"] for r in result.records]) if result.records else float("nan")
    right.set_xlabel("PSNR (dB)")
    right.set_title(f"Final reconstruction ({result.config.recon}) at {100 * coverage:.1f} % total")
    return fig
