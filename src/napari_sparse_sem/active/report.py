"""Write an active acquisition to disk: ``metrics.json`` (records, sparsification curves, the config), ``metrics.csv``,
the rescan plan of every slice for the microscope (``rescan/``), and a figure (``active.png``: sparsification curves
and PSNR per sampler). Nothing is overwritten unless asked."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from napari_sparse_sem import __version__
from napari_sparse_sem.active.pipeline import RECORD_KEYS, ActiveResult, ActiveSlice
from napari_sparse_sem.metrics import DEFAULT_FRACTIONS, sparsification_curve, sparsification_error_area
from napari_sparse_sem.report import _write_csv, _write_json

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


def check_active_dir(out_dir: str | Path, overwrite: bool = False) -> dict[str, Path]:
    """The output paths; an existing report is refused unless ``overwrite``."""
    out = Path(out_dir)
    paths = {key: out / name for key, name in ACTIVE_FILES.items()}
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{', '.join(existing)} already exist(s); use --overwrite to replace or choose --out")
    return paths


def write_active_report(result: ActiveResult, out_dir: str | Path, overwrite: bool = False) -> dict[str, Path]:
    """Write the files of :data:`ACTIVE_FILES` into ``out_dir``; returns their paths."""
    from napari_sparse_sem.active.export import write_rescan

    paths = check_active_dir(out_dir, overwrite)
    Path(out_dir).mkdir(parents=True, exist_ok=True)
    curves = mean_curves(result)
    _write_json(
        paths["metrics_json"],
        {
            "version": __version__,
            "config": result.config.to_dict(),
            "source": result.source,
            "records": result.records,
            "curves": curves,
        },
    )
    _write_csv(paths["metrics_csv"], result.records, RECORD_KEYS)
    paths["rescan"].mkdir(exist_ok=True)
    for item in result.slices:
        write_rescan(
            item.rescan_points,
            item.final_mask.shape,
            paths["rescan"] / f"slice_{item.z:04d}",
            metadata={"slice": item.z, "config": result.config.to_dict()},
            overwrite=overwrite,
        )
    figure = active_figure(result, curves)
    figure.savefig(paths["figure"], dpi=120)
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
