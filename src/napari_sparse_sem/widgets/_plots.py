"""Result views of the dock widgets (matplotlib in Qt): a metrics table, grouped PSNR/SSIM bars, fit curves and
sparsification curves."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from matplotlib.backends.backend_qtagg import FigureCanvasQTAgg
from matplotlib.figure import Figure
from qtpy.QtCore import Qt, QTimer
from qtpy.QtWidgets import QAbstractItemView, QHeaderView, QTableWidget, QTableWidgetItem

TABLE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("pattern", "pattern"),
    ("coverage", "cov. %"),
    ("method", "method"),
    ("psnr", "PSNR"),
    ("ssim", "SSIM"),
    ("seconds", "s/slice"),
)


def _cell(key: str, value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    if key == "coverage":
        return f"{value * 100:.2f}"
    if key == "psnr":
        return "∞" if math.isinf(value) else f"{value:.2f}"
    if key in ("ssim", "error_correlation"):
        return f"{value:.3f}"
    if key == "l1":
        return f"{value:.4f}"
    return f"{value:.3g}"


class MetricsTable(QTableWidget):
    """One row per pattern × coverage × method: pattern, achieved coverage, method, PSNR, SSIM, seconds per slice.

    Other widgets pass their own ``columns`` ((key, title) pairs) and ``tooltip``.
    """

    def __init__(
        self,
        columns: tuple[tuple[str, str], ...] = TABLE_COLUMNS,
        tooltip: str = "means over the compared slices; PSNR in dB; s/slice: reconstruction seconds per slice",
    ) -> None:
        super().__init__(0, len(columns))
        self.columns = columns
        self.setHorizontalHeaderLabels([title for _, title in columns])
        self.setEditTriggers(QAbstractItemView.NoEditTriggers)
        self.setSortingEnabled(False)
        self.verticalHeader().setVisible(False)
        self.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeToContents)
        self.horizontalHeader().setStretchLastSection(True)
        self.setToolTip(tooltip)
        self.setMinimumHeight(150)

    def show_rows(self, rows: list[dict[str, Any]]) -> None:
        """Replace the table's contents with ``rows`` (dicts with the keys of the columns)."""
        self.setRowCount(len(rows))
        for i, row in enumerate(rows):
            for j, (key, _) in enumerate(self.columns):
                item = QTableWidgetItem(_cell(key, row.get(key)))
                item.setData(Qt.UserRole, row.get(key))  # the raw number, for tests and tools
                self.setItem(i, j, item)

    def values(self, column: str) -> list[Any]:
        """The raw values of ``column`` (a key of the columns), top to bottom."""
        j = [key for key, _ in self.columns].index(column)
        return [self.item(i, j).data(Qt.UserRole) for i in range(self.rowCount())]


class _Canvas(FigureCanvasQTAgg):
    """A matplotlib canvas whose idle redraw belongs to it.

    matplotlib's ``draw_idle`` schedules a free single-shot timer; when the canvas is deleted before it fires (its dock
    closed, the viewer closed) the redraw reaches a deleted Qt object ("wrapped C/C++ object … has been deleted").
    Here the timer is the canvas's child: it dies with the canvas, and never fires for a hidden one.
    """

    def __init__(self, figure: Figure) -> None:
        super().__init__(figure)
        self._redraw = QTimer(self)
        self._redraw.setSingleShot(True)
        self._redraw.setInterval(0)
        self._redraw.timeout.connect(self._redraw_now)

    def draw_idle(self) -> None:
        """Redraw at the next turn of the event loop (once, however often it is asked)."""
        self._redraw.start()

    def _redraw_now(self) -> None:
        if self.isVisible() and self.width() > 0 and self.height() > 0:
            self.draw()

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        self._redraw.start()  # what changed while hidden


class MetricsPlot(_Canvas):
    """PSNR and SSIM as grouped bars: one group per pattern, one bar per method."""

    def __init__(self) -> None:
        self.figure = Figure(figsize=(4.0, 2.2))
        self.figure.set_layout_engine("tight", rect=(0, 0.1, 1, 1))  # room for the methods legend below
        super().__init__(self.figure)
        self.setMinimumHeight(170)
        self.axes = self.figure.subplots(1, 2)
        self.clear()

    def clear(self) -> None:
        for legend in list(self.figure.legends):
            legend.remove()
        for ax, title in zip(self.axes, ("PSNR (dB)", "SSIM"), strict=True):
            ax.clear()
            ax.set_title(title, fontsize=9)
            ax.tick_params(labelsize=7)
        self.draw_idle()

    def show_rows(self, rows: list[dict[str, Any]]) -> None:
        """Draw the summary ``rows`` (keys pattern, method, psnr, ssim)."""
        self.clear()
        if not rows:
            return
        patterns = list(dict.fromkeys(r["pattern"] for r in rows))
        methods = list(dict.fromkeys(r["method"] for r in rows))
        width = 0.8 / len(methods)
        x = np.arange(len(patterns))
        for ax, key in zip(self.axes, ("psnr", "ssim"), strict=True):
            for k, method in enumerate(methods):
                values = [
                    next((r[key] for r in rows if r["pattern"] == p and r["method"] == method), np.nan)
                    for p in patterns
                ]
                values = [v if np.isfinite(v) else np.nan for v in values]
                ax.bar(x + (k - (len(methods) - 1) / 2) * width, values, width, label=method)
            ax.set_xticks(x, patterns, rotation=30, ha="right")
            finite = [r[key] for r in rows if np.isfinite(r[key])]
            if key == "psnr" and finite:
                ax.set_ylim(max(0.0, min(finite) - 3.0), max(finite) + 1.5)
            if key == "ssim" and finite:
                ax.set_ylim(max(0.0, min(finite) - 0.1), min(1.0, max(finite) + 0.05))
        handles, labels = self.axes[0].get_legend_handles_labels()
        self.figure.legend(handles, labels, loc="lower center", ncol=len(methods), fontsize=7, frameon=False)
        self.draw_idle()


class LossPlot(_Canvas):
    """The training loss and the held-out error of an iterative fit (log scale), redrawn at each preview; with
    ``with_image`` also the fit's current estimate beside the curves (for widgets that show no layer meanwhile)."""

    def __init__(self, with_image: bool = False) -> None:
        self.figure = Figure(figsize=(4.0, 1.8))
        self.figure.set_layout_engine("tight")
        super().__init__(self.figure)
        self.setMinimumHeight(140)
        if with_image:
            self.image_axes, self.axes = self.figure.subplots(1, 2, width_ratios=(1, 2))
        else:
            self.image_axes, self.axes = None, self.figure.subplots()
        self.clear()

    def clear(self, title: str = "fit") -> None:
        self.axes.clear()
        self.axes.set_title(title, fontsize=9)
        self.axes.set_xlabel("iteration", fontsize=8)
        self.axes.set_ylabel("MSE", fontsize=8)
        self.axes.tick_params(labelsize=7)
        if self.image_axes is not None:
            self.image_axes.clear()
            self.image_axes.set_axis_off()
        self.draw_idle()

    def show_curves(
        self, loss: list[float], holdout: list[tuple[int, float]], title: str, image: np.ndarray | None = None
    ) -> None:
        """Draw ``loss`` (one value per iteration) and ``holdout`` ((iteration, error) pairs) with the best point."""
        self.clear(title)
        if loss:
            steps = np.arange(1, len(loss) + 1)
            self.axes.semilogy(steps, np.maximum(loss, 1e-12), lw=0.8, label="loss (fitted pixels)")
        if holdout:
            steps, errors = zip(*holdout, strict=True)
            self.axes.semilogy(steps, np.maximum(errors, 1e-12), lw=1.2, label="held-out pixels")
            best = int(np.argmin(errors))
            self.axes.plot(steps[best], errors[best], "o", ms=4, color="C3", label=f"best: iteration {steps[best]}")
        if loss or holdout:
            self.axes.legend(fontsize=6, frameon=False, loc="upper right")
        if image is not None and self.image_axes is not None:
            self.image_axes.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        self.draw_idle()


class SparsificationPlot(_Canvas):
    """Sparsification curves of an error estimate: the mean remaining true error after removing the pixels with the
    highest estimated error first, against the oracle that removes the truly worst pixels first."""

    def __init__(self) -> None:
        self.figure = Figure(figsize=(4.0, 2.0))
        self.figure.set_layout_engine("tight")
        super().__init__(self.figure)
        self.setMinimumHeight(150)
        self.axes = self.figure.subplots()
        self.clear()

    def clear(self, title: str = "sparsification curve") -> None:
        self.axes.clear()
        self.axes.set_title(title, fontsize=9)
        self.axes.set_xlabel("pixels removed, highest error first (%)", fontsize=8)
        self.axes.set_ylabel("mean remaining error", fontsize=8)
        self.axes.tick_params(labelsize=7)
        self.draw_idle()

    def show_curves(
        self, fractions: np.ndarray, estimate: np.ndarray, oracle: np.ndarray, title: str, label: str = "estimate"
    ) -> None:
        """Draw ``estimate`` and ``oracle`` (mean remaining error at each of ``fractions``)."""
        self.clear(title)
        percent = 100.0 * np.asarray(fractions, dtype=float)
        self.axes.plot(percent, oracle, "k--", lw=1.0, label="oracle (true error)")
        self.axes.plot(percent, estimate, lw=1.4, color="C1", label=label)
        self.axes.legend(fontsize=6, frameon=False, loc="best")
        self.draw_idle()


class TrainingPlot(_Canvas):
    """A network's training: the loss per logged step (log scale) and the held-out PSNR against a baseline."""

    def __init__(self) -> None:
        self.figure = Figure(figsize=(4.0, 2.0))
        self.figure.set_layout_engine("tight")
        super().__init__(self.figure)
        self.setMinimumHeight(150)
        self.loss_axes, self.psnr_axes = self.figure.subplots(1, 2)
        self.clear()

    def clear(self) -> None:
        for axes, title in ((self.loss_axes, "training MSE"), (self.psnr_axes, "held-out PSNR (dB)")):
            axes.clear()
            axes.set_title(title, fontsize=9)
            axes.set_xlabel("iteration", fontsize=8)
            axes.tick_params(labelsize=7)
        self.draw_idle()

    def show_curves(
        self,
        loss: list[tuple[int, float]],
        validation: list[tuple[int, float]],
        baseline: float | None = None,
        switch: int | None = None,
    ) -> None:
        """Draw ``loss`` and ``validation`` ((iteration, value) pairs), the ``baseline`` PSNR as a dashed line and a
        dotted mark where the adversarial phase starts (``switch``)."""
        self.clear()
        if loss:
            steps, values = zip(*loss, strict=True)
            self.loss_axes.semilogy(steps, np.maximum(values, 1e-12), lw=0.8)
        if validation:
            steps, values = zip(*validation, strict=True)
            self.psnr_axes.plot(steps, values, "o-", ms=3, lw=1.0, label="generator")
        if baseline is not None:
            self.psnr_axes.axhline(baseline, color="C3", ls="--", lw=1.0, label="linear")
        if switch:
            for axes in (self.loss_axes, self.psnr_axes):
                axes.axvline(switch, color="0.5", ls=":", lw=0.8)
        if validation or baseline is not None:
            self.psnr_axes.legend(fontsize=6, frameon=False, loc="lower right")
        self.draw_idle()
