"""*Compare masks* dock widget: several mask patterns × methods on the same slices, side by side.

Runs :func:`napari_sparse_sem.compare.compare_job` in a worker thread on the ground-truth layer (the slice the viewer
shows, or a range; optionally a rectangle from a Shapes layer), then shows every result in napari's grid view (one
column per pattern: mask, reconstruction(s), |error| map(s), with one contrast for all reconstructions and one for all
error maps), fitted to the canvas, every cell labelled with its pattern, coverage, method and PSNR; a metrics table and
PSNR/SSIM bars. Results of a previous comparison are replaced; the user's own layers are never changed.

The scalar fields come from :class:`~napari_sparse_sem.compare.CompareSpec` (a form, :mod:`._form`), the chosen
methods' options from their options specs (:mod:`._method_options`). *Load parameters…* fills the form from a
report's ``params.json`` (key ``spec``) or a ``compare`` run record; a comparison of a layer read from a file carries
the run record of the same ``sparse-sem compare``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, Label, Select, SpinBox
from napari.layers import Image, Shapes
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFileDialog, QGridLayout, QGroupBox, QPushButton, QSplitter

from napari_sparse_sem.compare import CompareResult, CompareRun, CompareSpec, compare_job, result_from_runs, summary
from napari_sparse_sem.io.volume import Volume, as_zyx
from napari_sparse_sem.recon.base import FitPreview
from napari_sparse_sem.runtime import Progress, available_devices
from napari_sparse_sem.sampling.spec import PATTERNS
from napari_sparse_sem.threads import with_threads
from napari_sparse_sem.widgets._base import JobWidget
from napari_sparse_sem.widgets._dialogs import write_or_ask
from napari_sparse_sem.widgets._fields import align_labels
from napari_sparse_sem.widgets._form import SpecForm, place_after, threads_field
from napari_sparse_sem.widgets._layers import (
    SEP,
    current_slice,
    image_layers,
    layer_array,
    like_layer,
    meta,
    offset_placement,
    percent,
)
from napari_sparse_sem.widgets._method_options import MethodOptions
from napari_sparse_sem.widgets._plots import LossPlot, MetricsPlot, MetricsTable
from napari_sparse_sem.widgets._records import (
    command_arguments,
    file_source,
    option_items,
    record_options,
    run_record,
    spec_arguments,
    spec_values,
)

CURRENT = "current slice"
RANGE = "range"
WHOLE = "(whole image)"
DEFAULT_PATTERNS = ("random", "grid", "spiral")
PATTERN_COLUMNS = 3  # the pattern check boxes sit in a grid of this many columns
LABEL_PX_PER_POINT_AND_CHAR = 1.1  # width of a label character per point of font size (napari's canvas font)
LABEL_PADDING_PX = 20  # the label's offset from the cell's edge, and a margin
COMMAND = "compare"
OWN_FIELDS = ("patterns", "methods", "slices", "roi")  # CompareSpec fields the widget shows its own way
ADVANCED_FIELDS = ("per_slice", "seed", "holdout_folds", "holdout_max_slices", "holdout_iterative_slices")
TABLE_COLUMNS = (
    ("pattern", "pattern"),
    ("coverage", "cov. %"),
    ("method", "method"),
    ("psnr", "PSNR"),
    ("psnr_holdout", "PSNR hold-out"),
    ("ssim", "SSIM"),
    ("seconds", "s/slice"),
)
"""The comparison table: the common columns plus the hold-out estimate (what a user without ground truth gets)."""
TABLE_TIP = (
    "means over the compared slices; PSNR in dB against the reference; PSNR hold-out: the unscanned pixels' PSNR "
    "estimated from the scanned pixels alone (k-fold hold-out, as for a real sparse scan); s/slice: reconstruction "
    "seconds per slice"
)


class OneCoverage(Container):
    """CompareSpec's ``coverages`` as one percentage (the grid shows one column per pattern, so one coverage)."""

    def __init__(self) -> None:
        self.number = FloatSpinBox(value=5.0, min=0.0, max=100.0, step=0.5)
        super().__init__(widgets=[self.number], layout="horizontal", labels=False, label="coverage (%)")
        self.margins = (0, 0, 0, 0)

    @property
    def value(self) -> list[float]:
        return [self.number.value / 100.0]

    @value.setter
    def value(self, coverages: Any) -> None:
        values = [coverages] if isinstance(coverages, int | float) else list(coverages)
        if len(values) != 1:
            raise ValueError(f"Compare masks compares one coverage at a time, got {len(values)}: {values}")
        self.number.value = float(values[0]) * 100.0


def matched_limits(arrays: list[np.ndarray], low: float = 0.5, high: float = 99.5) -> tuple[float, float]:
    """One pair of contrast limits (percentiles over all ``arrays`` together) so the layers compare by eye."""
    values = np.concatenate([np.ravel(a) for a in arrays]) if arrays else np.zeros(1)
    lo, hi = (float(v) for v in np.percentile(values, [low, high]))
    return (lo, hi) if hi > lo else (lo, lo + 1e-6)


def cell_name(run: CompareRun, what: str) -> str:
    """The grid cell's label (drawn in the cell) and layer name: pattern, coverage, method and, for a reconstruction,
    its PSNR, e.g. ``spiral 10% · linear 24.8 dB`` — short, so neither the cell nor the layer list cuts it."""
    head = f"{run.pattern} {percent(run.coverage_requested)}%"
    if what == "mask":
        return f"{head}{SEP}mask"
    if what == "error":
        return f"{head}{SEP}{run.method} |error|"
    psnr = summary(run.records)[0].get("psnr") if run.records else None
    score = f" {psnr:.1f} dB" if psnr is not None and np.isfinite(psnr) else ""
    return f"{head}{SEP}{run.method}{score}"


def label_font_size(canvas_width: int, columns: int, longest: int) -> float:
    """A font size (points) at which a label of ``longest`` characters fits a grid cell, between 6 and 10."""
    cell = canvas_width / max(columns, 1) - LABEL_PADDING_PX
    return float(np.clip(cell / (LABEL_PX_PER_POINT_AND_CHAR * max(longest, 1)), 6.0, 10.0))


class CompareWidget(JobWidget):
    """Compare mask patterns and reconstruction methods on the ground truth's current slice (or a range)."""

    SETTINGS_GROUP = "compare"
    PARAMETERS = "a comparison report's params.json, or a run record of `sparse-sem compare`"

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(napari_viewer)
        from napari_sparse_sem.recon import available_methods

        methods = available_methods()
        self.truth = ComboBox(label="ground truth", choices=self._truth_choices, tooltip="the dense image stack")
        self.pattern_boxes = {p: CheckBox(text=p, value=p in DEFAULT_PATTERNS) for p in PATTERNS}
        self.patterns = QGroupBox("mask patterns")  # a grid: aligned columns that never overlap when squeezed
        grid = QGridLayout(self.patterns)
        for i, box in enumerate(self.pattern_boxes.values()):
            grid.addWidget(box.native, i // PATTERN_COLUMNS, i % PATTERN_COLUMNS)
        self.coverages = OneCoverage()
        self.coverage = self.coverages.number
        self.device = ComboBox(label="device", choices=["auto", *available_devices()])
        self.spec_form = SpecForm(
            CompareSpec,
            exclude=OWN_FIELDS,
            widgets={"coverages": self.coverages, "device": self.device},
            values={"device": "auto"},  # the widget picks the GPU when there is one; the CLI's default is cpu
            advanced=ADVANCED_FIELDS,
        )
        self.threads = threads_field()
        place_after(self.spec_form, self.device, self.threads)
        fields = self.spec_form.fields
        self.seed, self.dose, self.equal_time = fields["seed"], fields["dose"], fields["equal_time"]
        self.methods = Select(
            label="methods", choices=methods, value=["linear"] if "linear" in methods else methods[:1]
        )
        self.methods.native.setMaximumHeight(90)
        self.slice_mode = ComboBox(label="slices", choices=[CURRENT, RANGE], value=CURRENT)
        self.first_slice = SpinBox(label="first slice", value=0, min=0, max=100000)
        self.last_slice = SpinBox(label="last slice", value=0, min=0, max=100000)
        self.roi = ComboBox(label="ROI", choices=self._roi_choices, tooltip="a Shapes layer: its bounding box is used")
        self.slice_label = Label(value="")
        self.truth_form = Container(widgets=[self.truth])
        self.form = Container(
            widgets=[
                self.methods,
                self.slice_mode,
                self.first_slice,
                self.last_slice,
                self.slice_label,
                self.roi,
            ]
        )
        align_labels(self.truth_form, self.spec_form, self.spec_form.advanced, self.form)
        self.options = MethodOptions(methods)
        self.fit_plot = LossPlot(with_image=True)  # an iterative method's current estimate and curves
        self.methods.changed.connect(self._on_methods)
        self._on_methods()
        self.panel = self.add_panel("Compare", self.run)
        self.table = MetricsTable(TABLE_COLUMNS, TABLE_TIP)
        self.plot = MetricsPlot()
        self.save_button = QPushButton("Save report…")
        self.save_button.setEnabled(False)
        self.save_button.setToolTip("metrics (json, csv), summary, parameters and a figure, into a folder")

        layout = self.body
        layout.addWidget(self.truth_form.native)
        layout.addWidget(self.patterns)
        layout.addWidget(self.spec_form.native)
        layout.addWidget(self.form.native)
        layout.addWidget(self.options)
        layout.addWidget(self.panel)
        layout.addWidget(self.fit_plot)
        results = QSplitter(Qt.Vertical)
        results.addWidget(self.table)
        results.addWidget(self.plot)
        results.setChildrenCollapsible(False)
        layout.addWidget(results, 1)
        layout.addWidget(self.save_button)

        self.result: CompareResult | None = None
        self.result_layers: list[napari.layers.Layer] = []
        self.partial_runs: list[CompareRun] = []
        self._pending: dict[str, Any] = {}
        self.pick_layers(self.truth, self.roi)
        self.slice_mode.changed.connect(self._on_slice_mode)
        self.listen(self.viewer.dims.events.current_step, self._show_current_slice)
        self.truth.changed.connect(self._show_current_slice)
        self.restore_settings()
        self._on_methods()
        self._on_slice_mode()
        self.save_button.clicked.connect(self._ask_save_report)

    # -- parameters ------------------------------------------------------------------------------------------------
    def _truth_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return image_layers(self.viewer, first=lambda layer: meta(layer, "kind") is None)

    def _roi_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        shapes = [layer for layer in reversed(list(self.viewer.layers)) if isinstance(layer, Shapes)]
        return [(WHOLE, None), *((layer.name, layer) for layer in shapes)]

    def remembered(self) -> dict[str, Any]:
        params: dict[str, Any] = {f"pattern_{p}": box for p, box in self.pattern_boxes.items()}
        params.update(self.spec_form.fields)
        params["threads"] = self.threads
        params.update(methods=self.methods, slice_mode=self.slice_mode)
        params.update(self.options.settings_widgets())
        return params

    def _on_methods(self, *_: Any) -> None:
        self.options.show_for(self.methods.value)
        self.fit_plot.setVisible(self.options.iterative(self.methods.value))

    def parameters_from(self, data: Mapping[str, Any], where: str) -> Callable[[], None]:
        """A report's ``spec``, or the CompareSpec flags of a ``compare`` run record."""
        if isinstance(data.get("spec"), Mapping):
            spec = CompareSpec.from_dict(data["spec"])
        else:
            arguments = command_arguments(data, [COMMAND], where, self.PARAMETERS)
            for name in ("config", "dip_config", "dip_preset", "weights"):
                if arguments.get(name):
                    raise ValueError(
                        f"{where} takes part of its parameters from --{name.replace('_', '-')}; load the params.json "
                        "of the report it wrote instead"
                    )
            values = spec_values(CompareSpec, arguments)
            values["method_options"] = record_options(arguments, per_method=True)
            spec = CompareSpec.from_dict(values)
        if len(spec.coverages) != 1:
            raise ValueError(
                f"{where} compares {len(spec.coverages)} coverages; Compare masks shows one at a time (use the CLI, "
                "or one coverage of it)"
            )
        unknown = [m for m in spec.methods if m not in self.methods.choices]
        if unknown:
            raise ValueError(f"{where} uses methods {unknown} that are not installed here")
        for method, options in spec.method_options.items():
            self.options.check_options(method, options)

        def apply() -> None:
            for pattern, box in self.pattern_boxes.items():
                box.value = pattern in spec.patterns
            self.methods.value = list(spec.methods)
            self.spec_form.set_spec(spec)
            for method, options in spec.method_options.items():
                self.options.set_options(method, options)
            if spec.slices is not None:
                self.slice_mode.value = RANGE
                self.first_slice.value, self.last_slice.value = spec.slices[0], spec.slices[1] - 1
            if spec.roi is not None:
                y0, y1, x0, x1 = spec.roi
                self.panel.notify(f"the ROI {y0}:{y1},{x0}:{x1} of {where} is not set: draw it as a Shapes rectangle")

        return apply

    def _on_slice_mode(self, *_: Any) -> None:
        ranged = self.slice_mode.value == RANGE
        self.first_slice.visible = ranged
        self.last_slice.visible = ranged
        self.slice_label.visible = not ranged
        self._show_current_slice()

    def _show_current_slice(self, *_: Any) -> None:
        layer = self.truth.value
        self.slice_label.value = f"slice {self.current_slice(layer)}" if layer is not None else ""

    def current_slice(self, layer: Any) -> int:
        """The data index of ``layer``'s slice that the viewer shows now (0 for a 2D layer)."""
        return current_slice(self.viewer, layer)

    def _roi_box(self, truth: Any, shape_yx: tuple[int, int]) -> tuple[int, int, int, int] | None:
        shapes = self.roi.value
        if shapes is None:
            return None
        if len(shapes.data) == 0:
            raise ValueError(f"ROI layer {shapes.name!r} holds no shape; draw a rectangle or choose {WHOLE}")
        vertices = np.concatenate([np.asarray(s, dtype=float) for s in shapes.data])
        world = vertices[:, -2:] * np.asarray(shapes.scale[-2:]) + np.asarray(shapes.translate[-2:])
        data = (world - np.asarray(truth.translate[-2:])) / np.asarray(truth.scale[-2:])
        (y0, x0), (y1, x1) = np.floor(data.min(axis=0)), np.ceil(data.max(axis=0))
        ny, nx = shape_yx
        box = (int(max(0, y0)), int(min(ny, y1)), int(max(0, x0)), int(min(nx, x1)))
        if box[1] <= box[0] or box[3] <= box[2]:
            raise ValueError(f"ROI layer {shapes.name!r} lies outside the image {truth.name!r}; draw it over the image")
        return box

    def spec(self) -> tuple[CompareSpec, Any]:
        """The comparison spec and the ground-truth data (a (z, y, x) view) from the fields; ValueError if invalid."""
        truth = self.truth.value
        if truth is None:
            raise ValueError("no ground-truth image layer; open an image stack (or File > Open Sample) first")
        data = as_zyx(layer_array(truth, "ground truth"), what=f"ground truth layer {truth.name!r}")
        patterns = [p for p, box in self.pattern_boxes.items() if box.value]
        if not patterns:
            raise ValueError("tick at least one mask pattern to compare")
        methods = list(self.methods.value)
        if not methods:
            raise ValueError("select at least one reconstruction method")
        if self.coverage.value <= 0:
            raise ValueError("coverage must be more than 0 % (the share of pixels the beam visits); e.g. 5 %")
        method_options = {m: options for m in methods if (options := self.options.options(m))}
        nz = int(data.shape[0])
        if self.slice_mode.value == RANGE:
            first, last = int(self.first_slice.value), int(self.last_slice.value)
            if last < first:
                raise ValueError(f"last slice {last} is before first slice {first}; swap them")
            if last >= nz:
                raise ValueError(f"last slice {last} is outside the stack of {nz} slices (0 to {nz - 1})")
        else:
            first = last = self.current_slice(truth)
        spec = self.spec_form.spec(
            patterns=patterns,
            methods=methods,
            slices=(first, last + 1),
            roi=self._roi_box(truth, tuple(data.shape[1:])),
            method_options=method_options,
        )
        spec.validate_for(data.shape)
        return spec, data

    # -- running ---------------------------------------------------------------------------------------------------
    def run_arguments(self, truth: Any, spec: CompareSpec) -> dict[str, Any] | None:
        """The arguments of the ``sparse-sem compare`` that makes this comparison (None: ``truth`` has no file)."""
        path = file_source(truth)
        if path is None:
            return None
        options = [item for m, opts in spec.method_options.items() for item in option_items(opts, m)]
        return {"volume": path, **spec_arguments(spec), "option": options or None}

    def run(self) -> None:
        """Start the comparison (bad input: message in the widget, nothing added)."""
        if self.panel.busy:
            return
        try:
            spec, data = self.spec()
        except ValueError as exc:
            self.panel.show_error(str(exc))
            return
        self.save_settings()
        truth = self.truth.value
        volume = Volume(data=data, name=truth.name, voxel_size=None, metadata=dict(truth.metadata or {}))
        self.partial_runs = []
        arguments = self.run_arguments(truth, spec)
        record = run_record(COMMAND, arguments) if arguments is not None else None
        self._pending = {"truth": truth, "spec": spec, "volume": volume, "run": record}
        n_runs = len(spec.patterns) * len(spec.methods)
        self.panel.start(
            with_threads(compare_job(volume, spec), self.threads.value),
            desc=f"comparing {n_runs} runs on {truth.name}",
            on_progress=self._on_progress,
            on_returned=self._show_result,
            on_aborted=self._on_cancelled,
        )

    def _on_progress(self, event: Progress) -> None:
        if isinstance(event.partial, CompareRun):
            self.partial_runs.append(event.partial)
        elif isinstance(event.partial, FitPreview):
            preview = event.partial
            where = "warm-up fit" if preview.z is None else f"slice {preview.z}"
            title = f"{where}: iteration {preview.iteration} of at most {preview.max_iterations}"
            self.fit_plot.show_curves(preview.loss, preview.holdout, title, preview.image)

    def _on_cancelled(self) -> None:
        spec = self._pending["spec"]
        total = len(spec.patterns) * len(spec.coverages) * len(spec.methods)
        runs = list(self.partial_runs)
        if runs:
            self._show_result(result_from_runs(runs, spec, {"name": self._pending["truth"].name}))
        self.panel.set_status(f"cancelled after {len(runs)} of {total} runs; finished runs are shown")

    # -- results ---------------------------------------------------------------------------------------------------
    def clear_results(self) -> None:
        """Remove the layers of the previous comparison (only ours; user layers stay)."""
        with self.viewer.layers.batched_update():
            self._remove_result_layers()

    def _remove_result_layers(self) -> None:
        self.remove_layers(self.result_layers)
        self.result_layers = []

    @staticmethod
    def result_layers_for(result: CompareResult, truth: Any) -> list[Image]:
        """The grid's layers in layer-list order (bottom to top); the grid (stride -1) starts at the top.

        Row by row with one column per pattern: masks, then each method's reconstructions, then its error maps.
        All reconstructions share one contrast, and all error maps another, so they compare by eye. Every layer shows
        its name (:func:`cell_name`) in its grid cell.
        """
        runs = result.runs
        patterns = list(dict.fromkeys(run.pattern for run in runs))
        methods = list(dict.fromkeys(run.method for run in runs))
        recon_limits = matched_limits([result.reference])
        error_limits = (0.0, max(matched_limits([run.error for run in runs])[1], 1e-6))
        where = offset_placement(truth, (result.slices[0], result.roi[0], result.roi[2]))
        common = {"kind": "compare", "source_layer": truth.name, "slices": list(result.slices), "roi": list(result.roi)}

        def run_of(pattern: str, method: str) -> CompareRun | None:
            return next((run for run in runs if run.pattern == pattern and run.method == method), None)

        cells: list[tuple[str, CompareRun]] = [("mask", next(r for r in runs if r.pattern == p)) for p in patterns]
        for what in ("recon", "error"):
            cells += [(what, run) for m in methods for p in patterns if (run := run_of(p, m)) is not None]
        layers = []
        for what, run in reversed(cells):
            info = {**common, "what": what, "pattern": run.pattern, "method": run.method, "coverage": run.coverage}
            if what == "mask":
                data, style = run.mask.astype(np.float32), {"colormap": "gray", "contrast_limits": (0.0, 1.0)}
                style["interpolation2d"] = "nearest"
            elif what == "recon":
                data, style = run.recon, {"colormap": "gray", "contrast_limits": recon_limits}
                info["metrics"] = summary(run.records)[0] if run.records else {}
            else:
                data, style = run.error, {"colormap": "magma", "contrast_limits": error_limits}
            layer = Image(like_layer(data, truth), name=cell_name(run, what), metadata=info, **style, **where)
            layer.name_overlay.visible = True
            layer.name_overlay.box = True
            layers.append(layer)
        return layers

    def _show_result(self, result: CompareResult) -> None:
        truth = self._pending["truth"]
        self.result = result
        layers = self.result_layers_for(result, truth)
        if self._pending.get("run") is not None:
            for layer in layers:
                layer.metadata["run"] = self._pending["run"]
        grid = self.viewer.canvas.grid
        grid.enabled = False  # re-laying out the grid for every added layer would be slow
        with self.viewer.layers.batched_update():
            self._remove_result_layers()
            for layer in layers:
                self.viewer.add_layer(layer)
        self.result_layers = layers
        grid.stride = -1
        grid.shape = (-1, len({run.pattern for run in result.runs}))
        grid.enabled = True
        self.viewer.reset_view()  # the whole grid in view, whatever the camera showed before
        columns = grid.actual_shape(list(self.viewer.layers))[1]
        size = label_font_size(self.viewer.canvas.size[1], columns, max((len(la.name) for la in layers), default=1))
        for layer in layers:
            layer.name_overlay.font_size = size

        rows = summary(result.records)
        self.table.show_rows(rows)
        self.plot.show_rows(rows)
        self.save_button.setEnabled(bool(result.records))
        first, last = result.slices[0], result.slices[1] - 1
        where = f"slice {first}" if first == last else f"slices {first}–{last}"
        status = f"{len(result.runs)} runs on {where}; grid view: one column per pattern"
        sigma = next((r.get("noise_sigma") for r in rows if r.get("noise_sigma") is not None), None)
        if sigma is not None and np.isfinite(sigma):
            status += f"; reference noise σ ≈ {sigma:.3f}: PSNR cannot exceed ≈ {-20 * np.log10(sigma):.1f} dB"
        self.panel.set_status(status)
        for note in dict.fromkeys(r["weights_note"] for r in result.records if r.get("weights_note")):
            self.panel.notify(note)

    # -- report ----------------------------------------------------------------------------------------------------
    def save_report(self, folder: str | Path, overwrite: bool = False) -> dict[str, Path]:
        """Write the last comparison's report into ``folder`` (see :func:`.compare.report.write_report`)."""
        from napari_sparse_sem.compare.report import write_report

        if self.result is None:
            raise ValueError("no comparison to save yet; run one first")
        return write_report(self.result, folder, overwrite=overwrite)

    def _ask_save_report(self) -> None:
        folder = QFileDialog.getExistingDirectory(self, "Save comparison report into folder")
        if not folder:
            return
        paths = write_or_ask(
            self,
            self.panel,
            lambda overwrite: self.save_report(folder, overwrite=overwrite),
            title="Write the report here?",
            question="Write the report anyway? Files of an earlier report are replaced; other files are kept.",
            declined="report not saved",
        )
        if paths is None:
            return
        self.panel.notify(f"report saved: {paths['figure'].parent}")
