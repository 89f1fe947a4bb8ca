"""*Active acquisition* dock widget: the loop of Mi et al. (MICCAI 2020) simulated on a dense image layer.

An initial cheap scan is reconstructed, an error estimator predicts where that reconstruction is wrong, a sampler (the
weighted DPP by default) picks rescan pixels up to the total budget, and the final reconstruction uses both scans. The
form builds one :class:`~napari_sparse_sem.active.pipeline.WDPPConfig`; :func:`~napari_sparse_sem.active.pipeline.
active_job` runs in a worker thread on the chosen slices. As each slice finishes, the result layers
``<source> · active <initial>→<budget>% · <what>`` (initial recon, true error, estimated error, final recon, |error|
and the rescan points) get its plane, the metrics table its numbers and the plot its sparsification curve, so Cancel
keeps every finished slice. *Export rescan…* writes the bitmap, beam-order CSV and plan of the rescan for the
microscope. The source layer is only read. The form is generated from ``WDPPConfig`` (the sampler's finer settings
behind *Advanced*), the reconstruction's options from its options spec; *Load parameters…* reads a report's
``params.json`` (key ``config``) or an ``active`` run record, and the layers of a source read from a file carry the
run record of the same ``sparse-sem active``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import napari
import numpy as np
from magicgui.widgets import ComboBox, Container, Label, SpinBox
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QFileDialog, QHBoxLayout, QPushButton, QSplitter

from napari_sparse_sem.active.pipeline import ActiveResult, ActiveSlice, WDPPConfig, active_job, round_counts
from napari_sparse_sem.active.report import slice_curves
from napari_sparse_sem.active.summary import SUMMARY_COLUMNS, summary_rows
from napari_sparse_sem.active.summary import mean_of as _mean
from napari_sparse_sem.io.volume import as_zyx, to_float01, value_range
from napari_sparse_sem.metrics import DEFAULT_FRACTIONS
from napari_sparse_sem.runtime import Job, Progress, available_devices
from napari_sparse_sem.threads import with_threads
from napari_sparse_sem.widgets._active_layers import ActiveLayers, ActiveRun
from napari_sparse_sem.widgets._base import JobWidget
from napari_sparse_sem.widgets._dialogs import write_or_ask
from napari_sparse_sem.widgets._fields import AutoNumber, ChecksField, FileField, TextChoice, align_labels
from napari_sparse_sem.widgets._form import SpecForm, place_after, threads_field
from napari_sparse_sem.widgets._layers import current_slice, image_layers, layer_array, meta
from napari_sparse_sem.widgets._method_options import MethodOptions
from napari_sparse_sem.widgets._plots import MetricsTable, SparsificationPlot
from napari_sparse_sem.widgets._records import (
    command_arguments,
    file_source,
    option_items,
    record_options,
    run_record,
    spec_arguments,
    spec_values,
)
from napari_sparse_sem.widgets._worker import error_text

CURRENT = "current slice"
ALL = "all slices"
RANGE = "range"
EXPORT_CURRENT = "current slice"
EXPORT_ALL = "all processed slices"
INITIAL_CHOICES = ("lowres:4", "lowres:8", "lowres:16", "random:0.05", "hexgrid:0.05")
BASELINE_PATTERNS = ("random", "hexgrid")
ADVANCED_FIELDS = ("rounds", "mode", "condition", "gamma", "sigma", "seed")
COMMAND = "active"
TABLE_COLUMNS = SUMMARY_COLUMNS  # the rows of the CLI's table too (active.summary)
TABLE_TIP = (
    "means over the finished slices; PSNR in dB; L1: mean absolute error (image in [0, 1]); err. corr.: correlation "
    "of the estimated with the true error of the initial reconstruction (unscanned pixels); sampler s: seconds to "
    "choose one slice's rescan points; static rows: a fixed pattern at the same total coverage"
)


@dataclass
class FinishedSlice:
    """A finished slice and its sparsification curves (computed in the worker thread, not the GUI's)."""

    item: ActiveSlice
    curves: dict[str, Any]


def active_view_job(volume: np.ndarray, config: WDPPConfig, z_offset: int) -> Job[ActiveResult]:
    """:func:`active_job` on every slice of ``volume``, each finished slice's partial wrapped as a
    :class:`FinishedSlice`."""
    job = active_job(volume, config, None, z_offset)
    try:
        while True:
            try:
                event = next(job)
            except StopIteration as stop:
                return stop.value
            if isinstance(event.partial, ActiveSlice):
                done = FinishedSlice(event.partial, slice_curves(event.partial))
                event = Progress(event.step, event.total, event.message, done)
            yield event
    finally:
        job.close()  # Cancel closes this generator: let active_job's own clean-up run too


class ActiveWidget(JobWidget):
    """Simulate an active acquisition (initial scan, error estimate, WDPP rescan, final reconstruction)."""

    SETTINGS_GROUP = "active"
    PARAMETERS = "an active acquisition report's params.json, or a run record of `sparse-sem active`"

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(napari_viewer)
        from napari_sparse_sem.active.scan import INITIAL_HELP
        from napari_sparse_sem.recon import available_methods, method_class

        methods = [m for m in available_methods() if method_class(m).context == 0]
        self.source = ComboBox(label="image", choices=self._source_choices, tooltip="the dense image: the microscope")
        self.slice_mode = ComboBox(label="slices", choices=[CURRENT, ALL, RANGE], value=CURRENT)
        self.first_slice = SpinBox(label="first slice", value=0, min=0, max=100_000)
        self.last_slice = SpinBox(label="last slice", value=0, min=0, max=100_000)
        self.slice_label = Label(value="")
        self.inputs = Container(
            widgets=[self.source, self.slice_mode, self.first_slice, self.last_slice, self.slice_label]
        )
        self.initial = TextChoice(INITIAL_CHOICES, label="initial scan")
        self.initial.tooltip = f"the first, cheap scan: {INITIAL_HELP}; type your own"
        self.weights = FileField(filter="*.safetensors", label="estimator weights")
        self.sigma = AutoNumber(low=0.1, high=1000.0, label="σ (px)")
        self.recon = ComboBox(label="reconstruction", choices=methods, tooltip="2D methods only (one slice at a time)")
        self.baselines = ChecksField(BASELINE_PATTERNS, label="static baselines")
        self.baselines.tooltip = "fixed patterns scored at the same total coverage"
        self.device = ComboBox(label="device", choices=["auto", *available_devices()])
        self.config_form = SpecForm(
            WDPPConfig,
            widgets={
                "initial": self.initial,
                "estimator_weights": self.weights,
                "sigma": self.sigma,
                "recon": self.recon,
                "baselines": self.baselines,
                "device": self.device,
            },
            advanced=ADVANCED_FIELDS,
        )
        self.threads = threads_field()
        place_after(self.config_form, self.device, self.threads)
        fields = self.config_form.fields
        self.budget, self.rounds, self.estimator, self.sampler = (
            fields[n] for n in ("budget", "rounds", "estimator", "sampler")
        )
        self.mode, self.condition, self.gamma, self.seed = (fields[n] for n in ("mode", "condition", "gamma", "seed"))
        self.baseline_boxes = self.baselines.boxes
        align_labels(self.inputs, self.config_form, self.config_form.advanced)
        self.options = MethodOptions(methods)
        self.panel = self.add_panel("Run active acquisition", self.run)
        self.table = MetricsTable(TABLE_COLUMNS, TABLE_TIP)
        self.table.setMinimumHeight(120)
        self.plot = SparsificationPlot()
        self.export_which = ComboBox(choices=[EXPORT_ALL, EXPORT_CURRENT], value=EXPORT_ALL)
        self.export_button = QPushButton("Export rescan…")
        self.export_button.setToolTip("the rescan bitmap (TIFF), the points in beam order (CSV) and the plan (JSON)")
        self.export_button.setEnabled(False)

        layout = self.body
        layout.addWidget(self.inputs.native)
        layout.addWidget(self.config_form.native)
        layout.addWidget(self.options)
        layout.addWidget(self.panel)
        results = QSplitter(Qt.Vertical)
        results.addWidget(self.table)
        results.addWidget(self.plot)
        results.setChildrenCollapsible(False)
        layout.addWidget(results, 1)
        export = QHBoxLayout()
        export.addWidget(self.export_button, 1)
        export.addWidget(self.export_which.native, 1)
        layout.addLayout(export)

        self.run_state: ActiveRun | None = None
        self.shown: ActiveLayers | None = None  # the run's layers, once its first slice is finished
        self.rows: list[dict[str, Any]] = []
        self.pick_layers(self.source)
        self.restore_settings()
        for widget, slot in (
            (self.slice_mode, self._on_slice_mode),
            (self.estimator, self._on_estimator),
            (self.sampler, self._on_sampler),
            (self.sigma.auto, self._on_sampler),
            (self.recon, self._on_recon),
            (self.source, self._show_current_slice),
        ):
            widget.changed.connect(slot)
        self.listen(self.viewer.dims.events.current_step, self._show_current_slice)
        self._on_slice_mode()
        self._on_estimator()
        self._on_sampler()
        self._on_recon()
        self.export_button.clicked.connect(self._ask_export)

    # -- parameters ------------------------------------------------------------------------------------------------
    def _source_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return image_layers(self.viewer, first=lambda layer: meta(layer, "kind") is None)

    def remembered(self) -> dict[str, Any]:
        return {
            "slice_mode": self.slice_mode,
            **self.config_form.fields,
            "threads": self.threads,
            "export_which": self.export_which,
            **self.options.settings_widgets(),
        }

    def parameters_from(self, data: Mapping[str, Any], where: str) -> Callable[[], None]:
        """A report's ``config``, or the WDPPConfig flags (and ``--option``) of an ``active`` run record."""
        if isinstance(data.get("config"), Mapping):
            config = WDPPConfig.from_dict(data["config"])
        else:
            arguments = command_arguments(data, [COMMAND], where, self.PARAMETERS)
            values = spec_values(WDPPConfig, arguments)
            values["recon_options"] = record_options(arguments)
            config = WDPPConfig.from_dict(values)
        if config.recon not in self.recon.choices:
            raise ValueError(f"{where} reconstructs with {config.recon!r}, which is not a 2D method installed here")
        self.options.check_options(config.recon, config.recon_options)

        def apply() -> None:
            self.config_form.set_spec(config)
            self.options.set_options(config.recon, config.recon_options)

        return apply

    def _on_slice_mode(self, *_: Any) -> None:
        ranged = self.slice_mode.value == RANGE
        self.first_slice.visible = ranged
        self.last_slice.visible = ranged
        self.slice_label.visible = self.slice_mode.value == CURRENT
        self._show_current_slice()

    def _show_current_slice(self, *_: Any) -> None:
        layer = self.source.value
        self.slice_label.value = f"slice {current_slice(self.viewer, layer)}" if layer is not None else ""

    def _on_estimator(self, *_: Any) -> None:
        self.weights.enabled = self.estimator.value == "unet"

    def _on_sampler(self, *_: Any) -> None:
        wdpp = self.sampler.value == "wdpp"
        self.mode.enabled = wdpp
        self.condition.enabled = wdpp
        self.gamma.enabled = self.sampler.value != "random"
        self.sigma.auto.enabled = self.sampler.value != "random"
        self.sigma.number.enabled = self.sampler.value != "random" and not self.sigma.auto.value

    def _on_recon(self, *_: Any) -> None:
        self.options.show_for([self.recon.value])

    def config(self) -> WDPPConfig:
        """The :class:`WDPPConfig` of the form (ValueError with a readable message when a field is wrong)."""
        weights = self.weights.check() if self.estimator.value == "unet" else None
        return self.config_form.spec(estimator_weights=weights, recon_options=self.options.options(self.recon.value))

    def plan(self) -> tuple[WDPPConfig, Any, int, int]:
        """The config, the source's (z, y, x) data and the half-open slice range [a, b) to process."""
        from napari_sparse_sem.sampling.patterns import slice_mask

        source = self.source.value
        if source is None:
            raise ValueError("no image layer; open an image (or File > Open Sample) first")
        data = as_zyx(layer_array(source, "image"), what=f"image layer {source.name!r}")
        nz = int(data.shape[0])
        if self.slice_mode.value == ALL:
            a, b = 0, nz
        elif self.slice_mode.value == RANGE:
            first, last = int(self.first_slice.value), int(self.last_slice.value)
            if last < first:
                raise ValueError(f"last slice {last} is before first slice {first}; swap them")
            if last >= nz:
                raise ValueError(f"last slice {last} is outside the stack of {nz} slices (0 to {nz - 1})")
            a, b = first, last + 1
        else:
            a = current_slice(self.viewer, source)
            b = a + 1
        config = self.config()
        shape = tuple(int(s) for s in data.shape[1:])
        initial = slice_mask(shape, config.initial_spec(), a).mask
        round_counts(shape[0] * shape[1], int(initial.sum()), config.budget, config.rounds)  # budget check
        return config, data, a, b

    def run_record(self, source: Any, config: WDPPConfig, a: int, b: int) -> dict[str, Any] | None:
        """The run record of the ``sparse-sem active`` that processes slices ``a:b`` of ``source``'s file (None: the
        source has no file)."""
        path = file_source(source)
        if path is None:
            return None
        options = option_items(config.recon_options) or None
        arguments = {"volume": path, **spec_arguments(config), "option": options, "slices": f"{a}:{b}"}
        return run_record(COMMAND, arguments)

    # -- running ---------------------------------------------------------------------------------------------------
    def run(self) -> None:
        """Start the active acquisition (bad input: message in the widget, nothing starts)."""
        if self.panel.busy:
            return
        try:
            config, data, a, b = self.plan()
            source = self.source.value
            raw = np.asarray(data[a:b])
            vrange = value_range(raw)
            block = to_float01(raw, f"image layer {source.name!r}", vrange)
        except ValueError as exc:
            self.panel.show_error(str(exc))
            return
        self.save_settings()
        self.clear_results()
        self.run_state = ActiveRun(
            source=source,
            config=config,
            first=a,
            n=b - a,
            shape=tuple(block.shape[1:]),
            vrange=(float(vrange[0]), float(vrange[1])),
            block=block,
            record=self.run_record(source, config, a, b),
        )
        where = f"slice {a}" if b - a == 1 else f"slices {a}–{b - 1}"
        self.panel.start(
            with_threads(active_view_job(block, config, a), self.threads.value),
            desc=f"active acquisition of {source.name} ({where})",
            on_progress=self._on_progress,
            on_returned=self._on_done,
            on_aborted=self._on_cancelled,
            on_errored=self._on_failed,
        )

    def _on_progress(self, event: Progress) -> None:
        if isinstance(event.partial, FinishedSlice) and self.run_state is not None:
            self._add_slice(event.partial)

    def _on_done(self, _result: ActiveResult) -> None:
        self.run_state.complete = True
        if self.shown is not None:
            self.shown.update_metadata()
        self.panel.set_status(self._summary_text())

    def _on_cancelled(self) -> None:
        run = self.run_state
        self._trim_to_done()
        self.panel.set_status(
            f"cancelled after {len(run.done)} of {run.n} slices; finished slices are kept"
            + (f"\n{self._summary_text()}" if run.done else "")
        )

    def _on_failed(self, exc: BaseException) -> None:
        self._trim_to_done()
        self.panel.show_error(error_text(exc))

    def on_close(self) -> None:
        """The dock closed during a run: keep the finished slices, as Cancel does."""
        if self.run_state is not None and not self.run_state.complete:
            self._trim_to_done()

    # -- results ---------------------------------------------------------------------------------------------------
    def clear_results(self) -> None:
        """Remove the previous run's layers (only ours; user layers stay) and empty the table and plot."""
        self.remove_layers(self.result_layers.values())
        self.shown = None
        self.rows = []
        self.table.show_rows([])
        self.plot.clear()
        self.export_button.setEnabled(False)

    @property
    def finished(self) -> list[ActiveSlice]:
        """The finished slices of the current (or last) run."""
        return self.run_state.finished if self.run_state is not None else []

    @property
    def result_layers(self) -> dict[str, napari.layers.Layer]:
        """The run's layers by what they show (empty before its first slice is finished)."""
        return self.shown.layers if self.shown is not None else {}

    def _add_slice(self, done: FinishedSlice) -> None:
        """Put a finished slice into the layers, the table and the plot."""
        run = self.run_state
        item = done.item
        if self.shown is None:
            self.shown = ActiveLayers(run)
            with self.viewer.layers.batched_update():
                for layer in self.shown.layers.values():
                    self.viewer.add_layer(layer)
        self.shown.add_slice(item)
        run.done.append(done)
        self.shown.update_metadata()
        self._show_metrics()
        self.export_button.setEnabled(True)
        record = item.record
        self.panel.set_status(
            f"slice {item.z}: PSNR {record['initial_psnr']:.2f} → {record['psnr']:.2f} dB with "
            f"{len(item.rescan_points)} rescan points ({len(run.done)} of {run.n} slices)"
        )

    def _show_metrics(self) -> None:
        run = self.run_state
        items = self.finished
        self.rows = summary_rows(items, run.config)
        self.table.show_rows(self.rows)
        curves = [done.curves for done in run.done if done.curves]
        if not curves:
            return
        estimate = np.nanmean([c["estimate"] for c in curves], axis=0)
        oracle = np.nanmean([c["oracle"] for c in curves], axis=0)
        ause = float(np.nanmean([c["ause"] for c in curves]))
        where = f"slice {curves[0]['slice']}" if len(curves) == 1 else f"mean of {len(curves)} slices"
        self.plot.show_curves(
            DEFAULT_FRACTIONS,
            estimate,
            oracle,
            f"initial reconstruction, {where}",
            label=f"{run.config.estimator} estimate (AUSE {ause:.4f})",
        )

    def _trim_to_done(self) -> None:
        """After a stop: keep only the finished planes (none finished: no layers)."""
        if self.run_state is None or self.shown is None:
            return
        if not self.run_state.done:
            self.clear_results()
            return
        self.shown.trim_to_done()

    def _summary_text(self) -> str:
        initial, active = self.rows[0], self.rows[1]
        n = len(self.finished)
        seconds = _mean([item.record.get("rescan_acquisition_s") for item in self.finished])
        text = (
            f"{n} slice{'s' if n != 1 else ''}: PSNR {initial['psnr']:.2f} → {active['psnr']:.2f} dB at "
            f"{active['coverage'] * 100:.2f} % scanned"
        )
        if seconds is not None:
            text += f"; rescan ≈ {seconds:.3g} s per slice"
        return text

    # -- export ----------------------------------------------------------------------------------------------------
    def _export_items(self, which: str) -> list[ActiveSlice]:
        items = self.finished
        if not items:
            raise ValueError("no finished slice to export yet; run the active acquisition first")
        if which == EXPORT_ALL:
            return items
        z = current_slice(self.viewer, self.run_state.source)
        chosen = [item for item in items if item.z == z]
        if not chosen:
            done = ", ".join(str(item.z) for item in items)
            raise ValueError(f"slice {z} was not processed (processed: {done}); show one of those or export all")
        return chosen

    def export_rescan(self, prefix: str | Path, which: str | None = None, overwrite: bool = False) -> list[Path]:
        """Write the rescan bitmap (TIFF), points in beam order (CSV) and plan (JSON) of the processed slices
        (``which``: :data:`EXPORT_ALL` or :data:`EXPORT_CURRENT`; the form's choice by default) as
        ``PREFIX_bitmap.tif`` … for a 2D image, ``PREFIX_z0012_bitmap.tif`` … per slice of a stack. Existing files
        are refused (FileExistsError, nothing written) unless ``overwrite``. Returns the files written."""
        from napari_sparse_sem.active.export import rescan_paths, write_rescan

        run = self.run_state
        items = self._export_items(which or self.export_which.value)
        prefix = Path(prefix)
        stack = run.source.ndim >= 3
        targets = [(item, prefix.with_name(f"{prefix.name}_z{item.z:04d}") if stack else prefix) for item in items]
        files = [path for _, target in targets for path in rescan_paths(target).values()]
        existing = [str(f) for f in files if f.exists()]
        if existing and not overwrite:
            more = f" and {len(existing) - 3} more" if len(existing) > 3 else ""
            raise FileExistsError(f"{', '.join(existing[:3])}{more} already exist")
        for item, target in targets:
            metadata = {
                "slice": item.z,
                "source_layer": run.source.name,
                "config": run.config.to_dict(),
                "record": item.record,
            }
            write_rescan(item.rescan_points, item.final_mask.shape, target, metadata=metadata, overwrite=overwrite)
        return files

    def _ask_export(self) -> None:
        path, _ = QFileDialog.getSaveFileName(
            self, "Export rescan plan: file prefix (…_bitmap.tif, …_points.csv, …_plan.json)", "rescan"
        )
        if not path:
            return
        prefix = Path(path)
        if prefix.suffix.lower() in (".tif", ".tiff", ".csv", ".json"):
            prefix = prefix.with_suffix("")
        files = write_or_ask(
            self,
            self.panel,
            lambda overwrite: self.export_rescan(prefix, overwrite=overwrite),
            title="Overwrite rescan files?",
            question="Overwrite them?",
            declined="export cancelled; nothing was written",
        )
        if files is None:
            return
        self.panel.notify(f"rescan plan written: {len(files)} files in {files[0].parent}")
