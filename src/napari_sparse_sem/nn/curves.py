"""Learning curves of a training: a PNG to look at and a JSON to read back, both beside the weights file.

A trainer describes its plot as :class:`Panel`\\ s of :class:`Series` (the loss, a held-out score, a baseline) and
:func:`plot_curves` draws them side by side; :func:`write_curves_json` stores the numbers. matplotlib is imported
lazily and draws off-screen (``Agg``), so this works on a headless machine and in a worker thread.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def curves_png(path: str | Path) -> Path:
    """The learning-curve plot beside weights file ``path``: ``model.curves.png``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.curves.png")


def curves_json(path: str | Path) -> Path:
    """The learning-curve numbers beside weights file ``path``: ``model.curves.json``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.curves.json")


@dataclass
class Series:
    """One curve: ``points`` are (x, y) pairs; ``fmt`` a matplotlib format (``"-"``, ``"o-"``, ``"s-"``)."""

    points: Sequence[Sequence[float]]
    label: str = ""
    fmt: str = "-"
    color: str | None = None
    marker_size: float = 3.0
    line_width: float = 0.8


@dataclass
class Panel:
    """One plot of the figure: its curves, reference lines (``vlines``: x and label; ``hlines``: y and label) and
    axes; ``log`` draws the y axis logarithmically."""

    title: str
    series: list[Series] = field(default_factory=list)
    ylabel: str = ""
    xlabel: str = "iteration"
    log: bool = False
    vlines: list[tuple[float, str]] = field(default_factory=list)
    hlines: list[tuple[float, str]] = field(default_factory=list)
    legend: bool = True


def plot_curves(panels: Sequence[Panel], path: str | Path, size: tuple[float, float] = (8.0, 3.2)) -> Path:
    """Draw ``panels`` side by side into the PNG ``path`` and return it."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    figure = Figure(figsize=size)
    figure.set_layout_engine("tight")
    axes_list = figure.subplots(1, len(panels), squeeze=False)[0]
    for axes, panel in zip(axes_list, panels, strict=True):
        draw = axes.semilogy if panel.log else axes.plot
        for series in panel.series:
            if not series.points:
                continue
            xs, ys = zip(*[(p[0], p[1]) for p in series.points], strict=True)
            options: dict[str, Any] = {"lw": series.line_width, "label": series.label or None}
            if series.color is not None:
                options["color"] = series.color
            if series.fmt != "-":
                options["ms"] = series.marker_size
            draw(xs, ys, series.fmt, **options)
        for x, label in panel.vlines:
            axes.axvline(x, color="0.5", ls=":", lw=0.8, label=label or None)
        for y, label in panel.hlines:
            axes.axhline(y, color="C3", lw=1.0, ls="--", label=label or None)
        axes.set_title(panel.title, fontsize=9)
        axes.set_xlabel(panel.xlabel)
        if panel.ylabel:
            axes.set_ylabel(panel.ylabel)
        if panel.legend and axes.get_legend_handles_labels()[1]:
            axes.legend(fontsize=7, frameon=False)
    path = Path(path)
    figure.savefig(path, dpi=110)
    return path


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def write_curves_json(path: str | Path, curves: Mapping[str, Any]) -> Path:
    """Write ``curves`` (lists of numbers or of [iteration, value, ...] rows) as JSON, atomically; a non-finite value
    becomes ``null``."""
    from napari_sparse_sem.outputs import write_json

    path = Path(path)
    write_json(path, _finite(dict(curves)))
    return path
