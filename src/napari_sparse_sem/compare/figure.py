"""The comparison's figure for a talk: per pattern its mask (with a zoomed inset), reconstruction and |error|, then
grouped PSNR and SSIM bars per coverage. Drawn with :class:`matplotlib.figure.Figure` on the Agg canvas, never through
pyplot, so writing a report never opens a window or needs a display.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from napari_sparse_sem.compare.job import CompareResult, CompareRun, summary


def _mask_panel(ax: Any, mask: np.ndarray) -> None:
    """The full mask with a zoomed inset of its centre (sparse patterns vanish at full scale)."""
    ax.imshow(mask, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    h, w = mask.shape
    size = max(8, min(h, w) // 6)
    y0, x0 = (h - size) // 2, (w - size) // 2
    inset = ax.inset_axes((0.58, 0.58, 0.4, 0.4))
    inset.imshow(mask[y0 : y0 + size, x0 : x0 + size], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    inset.set_xticks([])
    inset.set_yticks([])
    for spine in inset.spines.values():
        spine.set_edgecolor("tab:orange")
        spine.set_linewidth(1.5)
    from matplotlib.patches import Rectangle

    ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), size, size, fill=False, edgecolor="tab:orange", linewidth=1.2))


def _shown_runs(result: CompareResult) -> list[CompareRun]:
    """One run per pattern at the first coverage that finished for it: its best method by mean PSNR (the picture a
    reader takes away should be what the pattern can do, not what the weakest method makes of it)."""
    first_coverage: dict[str, float] = {}
    for run in result.runs:
        first_coverage.setdefault(run.pattern, run.coverage_requested)
    shown: dict[str, CompareRun] = {}
    for run in result.runs:
        if run.coverage_requested != first_coverage[run.pattern]:
            continue
        best = shown.get(run.pattern)
        if best is None or _mean_psnr(run) > _mean_psnr(best):
            shown[run.pattern] = run
    return list(shown.values())


def _mean_psnr(run: CompareRun) -> float:
    values = [r["psnr"] for r in run.records if math.isfinite(r["psnr"])]
    return float(np.mean(values)) if values else -math.inf


def comparison_figure(result: CompareResult) -> Any:
    """A :class:`matplotlib.figure.Figure`: per pattern mask / reconstruction / |error|, then PSNR and SSIM bars."""
    from matplotlib.figure import Figure

    shown = _shown_runs(result)
    coverages = list(dict.fromkeys(r["coverage_requested"] for r in result.records if r["pattern"] != "dense"))
    n_rows = len(shown)
    fig = Figure(figsize=(11.5, 3.4 * n_rows + 3.6 * len(coverages)), layout="constrained")
    subfigs = fig.subfigures(n_rows + len(coverages), 1, height_ratios=[3.4] * n_rows + [3.6] * len(coverages))
    subfigs = np.atleast_1d(subfigs)
    errors = [run.error[len(run.error) // 2] for run in shown]
    vmax = max(1e-3, float(np.percentile(np.concatenate([e.ravel() for e in errors]), 99.5)))
    for row, (run, err) in enumerate(zip(shown, errors, strict=True)):
        z = len(run.recon) // 2
        record = run.records[z]
        sub = subfigs[row]
        sub.suptitle(
            f"{run.pattern} — {100 * run.coverage_requested:.1f} % (achieved {100 * record['coverage']:.1f} %) — "
            f"PSNR {record['psnr']:.1f} dB / SSIM {record['ssim']:.2f}",
            fontsize=12,
            fontweight="bold",
        )
        axes = sub.subplots(1, 3)
        _mask_panel(axes[0], run.mask[z])
        axes[0].set_title(f"mask · slice {record['slice']}", fontsize=10)
        axes[1].imshow(run.recon[z], cmap="gray", vmin=0, vmax=1, interpolation="nearest")
        axes[1].set_title(f"{run.method} reconstruction", fontsize=10)
        image = axes[2].imshow(err, cmap="magma", vmin=0, vmax=vmax, interpolation="nearest")
        axes[2].set_title("|error|", fontsize=10)
        sub.colorbar(image, ax=axes[2], shrink=0.85, label="|error| (fraction of range)")
        for ax in axes:
            ax.set_xticks([])
            ax.set_yticks([])
    rows = summary(result.records)
    dense = next((r for r in rows if r["pattern"] == "dense"), None)
    for i, cov in enumerate(coverages):
        panel_rows = [r for r in rows if r["coverage_requested"] == cov and r["pattern"] != "dense"]
        _bar_panel(subfigs[n_rows + i], panel_rows, cov, dense)
    return fig


def _bar_panel(sub: Any, rows: list[dict[str, Any]], coverage: float, dense: dict[str, Any] | None = None) -> None:
    """Grouped bars (patterns on x, one bar per method) of mean PSNR and SSIM at one coverage.

    ``dense`` (the equal-time dense-scan summary row) is drawn as a dashed line on both axes.
    """
    patterns = list(dict.fromkeys(r["pattern"] for r in rows))
    methods = list(dict.fromkeys(r["method"] for r in rows))
    n_slices = max((r["n_slices"] for r in rows), default=0)
    sub.suptitle(
        f"Mean over {n_slices} slice{'s' if n_slices != 1 else ''} at {100 * coverage:.1f} % coverage",
        fontsize=12,
        fontweight="bold",
    )
    axes = sub.subplots(1, 2)
    lookup = {(r["pattern"], r["method"]): r for r in rows}
    finite = [r["psnr"] for r in rows if math.isfinite(r["psnr"])]
    cap = (max(finite) + 5.0) if finite else 60.0
    width = 0.8 / max(1, len(methods))
    x = np.arange(len(patterns))
    for key, ax, label in (("psnr", axes[0], "PSNR (dB)"), ("ssim", axes[1], "SSIM")):
        for j, method in enumerate(methods):
            values = []
            spread = []
            for p in patterns:
                r = lookup.get((p, method))
                v = float("nan") if r is None else r[key]
                values.append(min(v, cap) if key == "psnr" and not math.isnan(v) else v)
                s = r.get("psnr_std", 0.0) if (r is not None and key == "psnr") else 0.0
                spread.append(s if math.isfinite(s) else 0.0)
            errors = spread if any(spread) else None
            ax.bar(x + (j - (len(methods) - 1) / 2) * width, values, width, yerr=errors, label=method, capsize=2)
        ax.set_xticks(x, patterns, rotation=30, ha="right")
        ax.set_ylabel(label)
        ax.grid(axis="y", alpha=0.3)
        ax.set_axisbelow(True)
    if dense is not None:
        for key, ax in (("psnr", axes[0]), ("ssim", axes[1])):
            if math.isfinite(dense[key]):
                ax.axhline(dense[key], color="black", linestyle="--", linewidth=1.2, label="dense scan, same time")
        rows = [*rows, dense]
    valid = [r["psnr"] for r in rows if math.isfinite(r["psnr"])]
    if valid:
        axes[0].set_ylim(max(0.0, min(valid) - 5.0), cap)
    ssims = [r["ssim"] for r in rows if math.isfinite(r["ssim"])]
    if ssims:
        axes[1].set_ylim(max(0.0, min(ssims) - 0.1), 1.0)
    handles, labels = axes[0].get_legend_handles_labels()
    sub.legend(handles, labels, title="method", fontsize=9, loc="outside right center")
