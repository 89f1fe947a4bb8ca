"""*Sparse acquisition* dock widget: simulate a sparse scan of an image layer.

Its form is generated from a :class:`MaskSpec` and an :class:`AcquisitionSpec` (pattern options and the beam's travel
time behind *Advanced*); it runs the core's :func:`~napari_sparse_sem.sampling.simulate.simulate_job` (masks,
simulated scan, time estimate) in a worker thread, and adds two layers over the source: ``<source> · <pattern> <cov>%
· mask`` (Labels) and ``… · sparse`` (float32 in [0, 1], the source's contrast), both with the acquisition record the
CLI writes too and — for a source read from a file — the run record of the same ``sparse-sem simulate``. The source
layer is only read. *Load parameters…* fills the form from a volume written by ``sparse-sem simulate`` (its
acquisition record) or a ``simulate`` run record.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from typing import Any

import napari
import numpy as np
from magicgui.widgets import ComboBox, Container
from napari.layers import Image, Labels
from qtpy.QtWidgets import QLabel, QVBoxLayout, QWidget

from napari_sparse_sem.sampling.record import AcquisitionRecord
from napari_sparse_sem.sampling.simulate import SimulatedScan, simulate_job
from napari_sparse_sem.sampling.spec import AcquisitionSpec, MaskSpec
from napari_sparse_sem.widgets._base import JobWidget
from napari_sparse_sem.widgets._fields import Section, align_labels
from napari_sparse_sem.widgets._form import ADVANCED, SpecForm
from napari_sparse_sem.widgets._layers import (
    contrast_01,
    image_layers,
    layer_volume,
    like_layer,
    meta,
    placement,
    result_name,
)
from napari_sparse_sem.widgets._records import (
    command_arguments,
    file_source,
    run_record,
    spec_arguments,
    spec_values,
)

COMMAND = "simulate"
"""The CLI command whose run record the results carry (and that *Load parameters…* reads)."""
MASK_ADVANCED = ("jitter", "lines_mode", "lowres_factor")
ACQUISITION_ADVANCED = ("move_us_per_px",)


def format_seconds(seconds: float) -> str:
    """Human time: '850 ms', '12.3 s', '4 min 05 s', '2 h 03 min'."""
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.3g} s"
    if seconds < 3600:
        return f"{int(seconds // 60)} min {int(seconds % 60):02d} s"
    return f"{int(seconds // 3600)} h {int(seconds % 3600 // 60):02d} min"


class AcquisitionWidget(JobWidget):
    """Simulate a sparse scan of an image layer with a chosen mask pattern, coverage and dose."""

    SETTINGS_GROUP = "acquisition"
    PARAMETERS = "a sparse volume written by `sparse-sem simulate`, or a run record of `sparse-sem simulate`"

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(napari_viewer)
        self.source = ComboBox(label="image", choices=self._source_choices, tooltip="the dense image stack to scan")
        self.inputs = Container(widgets=[self.source])
        self.mask_form = SpecForm(MaskSpec, advanced=MASK_ADVANCED, section="")
        # One seed for the masks and the shot noise, as on the command line.
        self.acquisition_form = SpecForm(AcquisitionSpec, exclude=("seed",), advanced=ACQUISITION_ADVANCED, section="")
        self.advanced = _stacked(self.mask_form.advanced, self.acquisition_form.advanced)
        self.advanced_section = Section(ADVANCED, self.advanced)
        align_labels(self.inputs, self.mask_form, self.acquisition_form, self.mask_form.advanced,
                     self.acquisition_form.advanced)  # fmt: skip
        fields = {**self.mask_form.fields, **self.acquisition_form.fields}
        self.pattern, self.coverage, self.per_slice = (fields[n] for n in ("pattern", "coverage", "per_slice"))
        self.seed, self.dose = fields["seed"], fields["dose"]
        self.panel = self.add_panel("Acquire", self.run)
        self.result_label = QLabel("")
        self.result_label.setWordWrap(True)

        self.body.addWidget(self.inputs.native)
        self.body.addWidget(self.mask_form.native)
        self.body.addWidget(self.acquisition_form.native)
        self.body.addWidget(self.advanced_section)
        self.body.addWidget(self.panel)
        self.body.addWidget(self.result_label)
        self.body.addStretch(1)

        self._pending: tuple[Any, ...] | None = None
        self.pick_layers(self.source)
        self.restore_settings()

    # -- parameters ------------------------------------------------------------------------------------------------
    def _source_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        # Plain images first (our own results are rarely what one wants to scan).
        return image_layers(self.viewer, first=lambda layer: meta(layer, "kind") is None)

    def remembered(self) -> dict[str, Any]:
        return {**self.mask_form.fields, **self.acquisition_form.fields}

    def specs(self) -> tuple[MaskSpec, AcquisitionSpec]:
        """The parameter models for the current field values (ValueError with a readable message when invalid)."""
        mask_spec = self.mask_form.spec()
        acq_spec = self.acquisition_form.spec(seed=mask_spec.seed)
        return mask_spec, acq_spec

    def parameters_from(self, data: Mapping[str, Any], where: str) -> Callable[[], None]:
        """A sparse volume's acquisition record, or the arguments of a ``simulate`` run record."""
        record = AcquisitionRecord.from_metadata(data)
        if record is not None:
            mask_spec, acq_spec = record.mask_spec, record.acquisition
        else:
            arguments = command_arguments(data, [COMMAND], where, self.PARAMETERS)
            mask_spec = MaskSpec.from_dict(spec_values(MaskSpec, arguments))
            acq_spec = AcquisitionSpec.from_dict(spec_values(AcquisitionSpec, arguments, exclude=("seed",)))

        def apply() -> None:
            self.mask_form.set_spec(mask_spec)
            self.acquisition_form.set_spec(acq_spec)

        return apply

    def run_arguments(self, source: Any, mask_spec: MaskSpec, acq_spec: AcquisitionSpec) -> dict[str, Any] | None:
        """The arguments of the ``sparse-sem simulate`` that makes this scan of ``source``'s file (None: no file)."""
        path = file_source(source)
        if path is None:
            return None
        return {"volume": path, **spec_arguments(mask_spec), **spec_arguments(acq_spec, exclude=("seed",))}

    # -- running ---------------------------------------------------------------------------------------------------
    def run(self) -> None:
        """Start the simulated acquisition (errors in the input are shown in the widget; nothing is added)."""
        if self.panel.busy:
            return
        self.result_label.setText("")
        source = self.source.value
        try:
            if source is None:
                raise ValueError("no image layer to scan; open an image stack (or File > Open Sample) first")
            mask_spec, acq_spec = self.specs()
            dense, vrange = layer_volume(source, "image")
        except ValueError as exc:
            self.panel.show_error(str(exc))
            return
        self.save_settings()
        self._pending = (source, mask_spec, acq_spec, vrange)
        self.panel.start(
            simulate_job(dense, mask_spec, acq_spec),
            desc=f"sparse acquisition of {source.name}",
            on_returned=self._on_done,
        )

    def _on_done(self, scan: SimulatedScan) -> None:
        source, mask_spec, acq_spec, vrange = self._pending
        self._pending = None
        record = scan.record(source.name, vrange)  # the same record as the CLI's sparse files
        metadata = {
            "source_layer": source.name,
            "acquisition_id": uuid.uuid4().hex,
            **record.to_metadata(),
            "source_dtype": str(getattr(source.data, "dtype", "")),
        }
        arguments = self.run_arguments(source, mask_spec, acq_spec)
        if arguments is not None:
            metadata["run"] = run_record(COMMAND, arguments)
        where = placement(source)
        mask_layer = Labels(
            like_layer(scan.mask.astype(np.uint8), source),
            name=result_name(source.name, mask_spec.pattern, mask_spec.coverage, "mask"),
            metadata={"kind": "mask", **metadata},
            opacity=0.6,
            visible=False,
            **where,
        )
        sparse_layer = Image(
            like_layer(scan.sparse, source),
            name=result_name(source.name, mask_spec.pattern, mask_spec.coverage, "sparse"),
            metadata={"kind": "sparse", **metadata},
            contrast_limits=contrast_01(source, vrange),
            colormap="gray",
            **where,
        )
        # The same acquisition again replaces its earlier layers (no '… [1]' copies); other ones are kept.
        self.add_result(mask_layer)
        self.add_result(sparse_layer)
        speedup = record.speedup or float("inf")
        self.result_label.setText(
            f"coverage {record.coverage * 100:.2f} % (asked {mask_spec.coverage * 100:.3g} %)\n"
            f"scan time ≈ {format_seconds(record.scan_s)} vs dense {format_seconds(record.dense_s)} "
            f"({speedup:.1f}× faster); beam path {record.path_length_px:,.0f} px"
        )
        self.panel.set_status(f"added mask and sparse layers for {source.name!r}")


def _stacked(*containers: Container) -> QWidget:
    """One widget holding ``containers`` one above the other (two forms' advanced fields in one section)."""
    holder = QWidget()
    layout = QVBoxLayout(holder)
    layout.setContentsMargins(0, 0, 0, 0)
    for container in containers:
        layout.addWidget(container.native)
    return holder
