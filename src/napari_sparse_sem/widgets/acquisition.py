"""*Sparse acquisition* dock widget: simulate a sparse scan of an image layer.

Collects a :class:`MaskSpec` and an :class:`AcquisitionSpec`, runs the core's
:func:`~napari_sparse_sem.sampling.simulate.simulate_job` (masks, simulated scan, time estimate) in a worker thread,
and adds two layers over the source: ``<source> · <pattern> <cov>% · mask`` (Labels) and ``… · sparse`` (float32 in
[0, 1], the source's contrast), both with the acquisition record the CLI writes too. The source layer is only read.
"""

from __future__ import annotations

import uuid
from typing import Any

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, SpinBox
from napari.layers import Image, Labels
from qtpy.QtWidgets import QLabel

from napari_sparse_sem.sampling.simulate import SimulatedScan, simulate_job
from napari_sparse_sem.sampling.spec import PATTERNS, AcquisitionSpec, MaskSpec
from napari_sparse_sem.widgets._base import JobWidget
from napari_sparse_sem.widgets._layers import (
    contrast_01,
    image_layers,
    layer_volume,
    like_layer,
    meta,
    placement,
    result_name,
)


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

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(napari_viewer)
        self.source = ComboBox(label="image", choices=self._source_choices, tooltip="the dense image stack to scan")
        self.pattern = ComboBox(label="pattern", choices=list(PATTERNS), value=PATTERNS[0])
        self.coverage = FloatSpinBox(
            label="coverage (%)", value=5.0, min=0.0, max=100.0, step=0.5, tooltip="share of pixels the beam visits"
        )
        self.per_slice = CheckBox(text="new mask for every slice", value=True)
        self.dose = FloatSpinBox(
            label="dose (e⁻/px)", value=0.0, min=0.0, max=1e6, step=10.0, tooltip="0 = noiseless; else shot noise"
        )
        self.seed = SpinBox(label="seed", value=0, min=0, max=2**31 - 1)
        self.dwell = FloatSpinBox(label="dwell (µs)", value=3.0, min=0.0, max=1e5, step=0.5)
        self.settle = FloatSpinBox(label="settle (µs)", value=1.0, min=0.0, max=1e5, step=0.5)
        self.form = Container(
            widgets=[
                self.source,
                self.pattern,
                self.coverage,
                self.per_slice,
                self.dose,
                self.seed,
                self.dwell,
                self.settle,
            ]
        )
        self.panel = self.add_panel("Acquire", self.run)
        self.result_label = QLabel("")
        self.result_label.setWordWrap(True)

        self.body.addWidget(self.form.native)
        self.body.addWidget(self.panel)
        self.body.addWidget(self.result_label)
        self.body.addStretch(1)

        self.pick_layers(self.source)
        self.restore_settings()

    # -- parameters ------------------------------------------------------------------------------------------------
    def _source_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        # Plain images first (our own results are rarely what one wants to scan).
        return image_layers(self.viewer, first=lambda layer: meta(layer, "kind") is None)

    def remembered(self) -> dict[str, Any]:
        return {
            "pattern": self.pattern,
            "coverage": self.coverage,
            "per_slice": self.per_slice,
            "dose": self.dose,
            "seed": self.seed,
            "dwell": self.dwell,
            "settle": self.settle,
        }

    def specs(self) -> tuple[MaskSpec, AcquisitionSpec]:
        """The parameter models for the current field values (ValueError with a readable message when invalid)."""
        if self.coverage.value <= 0:
            raise ValueError("coverage must be more than 0 % (the share of pixels the beam visits); e.g. 5 %")
        mask_spec = MaskSpec(
            pattern=self.pattern.value,
            coverage=self.coverage.value / 100.0,
            per_slice=self.per_slice.value,
            seed=int(self.seed.value),
        )
        dose = float(self.dose.value)
        acq_spec = AcquisitionSpec(
            dwell_us=float(self.dwell.value),
            settle_us=float(self.settle.value),
            dose=dose if dose > 0 else None,
            seed=int(self.seed.value),
        )
        return mask_spec, acq_spec

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
        source, mask_spec, _, vrange = self._pending
        self._pending = None
        record = scan.record(source.name, vrange)  # the same record as the CLI's sparse files
        metadata = {
            "source_layer": source.name,
            "acquisition_id": uuid.uuid4().hex,
            **record.to_metadata(),
            "source_dtype": str(getattr(source.data, "dtype", "")),
        }
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
