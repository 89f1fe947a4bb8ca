"""The *Simulate SEM* dock widget: a simulated FIB-SEM stack of a porous material from the neural surrogate.

*Simulate stack* draws a Boolean model (or loads a saved primitive list), moves the cut plane down slice by slice and
adds the surrogate's BSE and/or SE stacks (with shot noise for a dose or an SNR, if asked) beside the exact solid-phase
labels (:func:`~napari_sparse_sem.surrogate.stack.simulate_stack`). *Compare with Monte Carlo for this slice* runs the
teacher on the slice under napari's slider and adds the MC image and |surrogate − MC| as layers, with the error in
percent of the MC image's range. *Send to Sparse acquisition* opens that widget with the simulated stack chosen.
The forms are generated from ``GeometrySpec`` and ``StackSpec`` (noise: a dose or an SNR, empty for none); one seed
draws the particles and the noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import napari
import numpy as np
from magicgui.widgets import Container, FileEdit, Label, PushButton

from napari_sparse_sem.surrogate.geometry import GeometrySpec, Primitives
from napari_sparse_sem.surrogate.montecarlo import MCConfig, MCResult, simulate_slice
from napari_sparse_sem.surrogate.stack import SimulatedStack, StackSpec, simulate_stack
from napari_sparse_sem.widgets._base import JobWidget
from napari_sparse_sem.widgets._fields import align_labels
from napari_sparse_sem.widgets._form import SpecForm
from napari_sparse_sem.widgets._worker import error_text
from napari_sparse_sem.widgets.porous import (
    _replace,
    geometry_form,
    geometry_spec_of,
    mc_form,
    primitives_field,
    saved_primitives,
)

PLUGIN = "napari-sparse-sem"


class SimulateSEMWidget(JobWidget):
    """Geometry → simulated BSE/SE FIB-SEM stack + solid labels; MC check of one slice; hand-over to acquisition."""

    SETTINGS_GROUP = "simulate_sem"

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(napari_viewer)
        self.geometry_form = geometry_form()
        self.seed = self.geometry_form["seed"]
        self.primitives_file = primitives_field()
        self.stack_form = SpecForm(StackSpec, exclude=("seed",))  # the geometry's seed draws the noise too
        fields = self.stack_form.fields
        self.slices, self.spacing, self.size, self.detector = (
            fields[n] for n in ("slices", "spacing", "size", "detector")
        )
        self.weights = FileEdit(label="surrogate weights", mode="r", filter="*.safetensors", value="",
                                tooltip="empty: the shipped weights (carbon, 2 keV, 5 nm pixels)")  # fmt: skip
        self.summary = Label(value="")
        self.files = Container(widgets=[self.primitives_file])
        self.form = Container(widgets=[self.weights, self.summary])
        self.mc_form = mc_form(shown=("electrons_per_pixel",), advanced=False)
        self.mc_electrons = self.mc_form["electrons_per_pixel"]
        self.mc_electrons.label = "MC electrons / pixel"
        self.mc_summary = Label(value="")
        align_labels(
            self.geometry_form, self.geometry_form.advanced, self.files, self.stack_form, self.form, self.mc_form
        )
        self.stack_panel = self.add_panel("Simulate stack", self.run)
        self.send_button = PushButton(text="Send to Sparse acquisition", enabled=False)
        self.mc_panel = self.add_panel("Compare with Monte Carlo for this slice", self.compare_with_monte_carlo)
        parts = [
            self.geometry_form.native,
            self.files.native,
            self.stack_form.native,
            self.form.native,
            self.stack_panel,
        ]
        parts += [self.send_button.native, self.mc_form.native, self.mc_summary.native, self.mc_panel]
        for widget in parts:
            self.body.addWidget(widget)
        self.body.addStretch(1)

        self.stack: SimulatedStack | None = None
        self.mc_metrics: dict[str, float] | None = None
        self.restore_settings()
        self.send_button.clicked.connect(self.send_to_acquisition)

    def remembered(self) -> dict[str, Any]:
        mc = {"mc_electrons": self.mc_electrons}
        return {**self.geometry_form.fields, **self.stack_form.fields, **mc}

    # -- parameters ------------------------------------------------------------------------------------------------
    def stack_spec(self) -> StackSpec:
        """The stack settings of the form."""
        return self.stack_form.spec(seed=int(self.seed.value))

    def source(self) -> GeometrySpec | Primitives:
        """A saved primitive list when one is chosen, else the Boolean model of the form (window set by the stack)."""
        return saved_primitives(self) or geometry_spec_of(self, (8, int(self.size.value), int(self.size.value)))

    def _weights_path(self) -> Path | None:
        value = str(self.weights.value)
        return Path(value) if value not in ("", ".") else None

    # -- the stack -------------------------------------------------------------------------------------------------
    def run(self) -> None:
        """Simulate the stack (bad input: a message in the widget, nothing starts)."""
        if self.stack_panel.busy or self.mc_panel.busy:
            return
        try:
            from napari_sparse_sem.surrogate.model import load_surrogate

            spec = self.stack_spec()
            source = self.source()
            surrogate = load_surrogate(self._weights_path())
        except (ValueError, FileNotFoundError) as exc:
            self.stack_panel.show_error(str(exc))
            return
        self.save_settings()
        self.stack_panel.start(
            simulate_stack(source, spec, surrogate),
            desc=f"simulating {spec.slices} slices",
            on_returned=self._show_stack,
            on_errored=lambda exc: self.stack_panel.show_error(error_text(exc)),
        )

    def layer_name(self, what: str) -> str:
        """Names read like every other result: ``simulated · <what>``."""
        return f"simulated · {what}"

    def _show_stack(self, stack: SimulatedStack) -> None:
        self.stack = stack
        scale = stack.voxel_size_nm
        info = {"kind": "simulated-sem", **stack.metadata}
        for signal, images in stack.images.items():
            _replace(self.viewer, self.layer_name(signal.upper()), images, "image", scale=scale, metadata=info,
                     colormap="gray")  # fmt: skip
        _replace(self.viewer, self.layer_name("solid"), stack.solid.astype(np.uint8), "labels", scale=scale,
                 metadata=info, opacity=0.3)  # fmt: skip
        seconds = stack.metadata["seconds"]["total"]
        self.summary.value = (
            f"{stack.solid.shape[0]} slices of {stack.solid.shape[1]}² px in {seconds:.1f} s; "
            f"porosity {stack.metadata['porosity_voxelised']:.3f}"
        )
        self.send_button.enabled = True
        self.stack_panel.notify(self.summary.value)

    def current_slice(self) -> int:
        """The slice under napari's z slider (clipped to the stack)."""
        if self.stack is None:
            return 0
        z = int(self.viewer.dims.current_step[0]) if self.viewer.dims.ndim >= 3 else 0
        return int(np.clip(z, 0, self.stack.solid.shape[0] - 1))

    # -- Monte Carlo check -----------------------------------------------------------------------------------------
    def compare_with_monte_carlo(self) -> None:
        """Run the MC teacher on the current slice and add the MC image and |surrogate − MC| per signal."""
        if self.mc_panel.busy or self.stack_panel.busy:
            return
        if self.stack is None:
            self.mc_panel.show_error("simulate a stack first (the Monte Carlo checks one of its slices)")
            return
        config = self.stack.metadata["surrogate"]["config"]
        z = self.current_slice()
        mc = MCConfig(energy_kev=config["energy_kev"], element=config["element"],
                      electrons_per_pixel=int(self.mc_electrons.value), seed=z)  # fmt: skip
        self.save_settings()
        self.mc_panel.start(
            simulate_slice(self.stack.primitives, self.stack.planes[z], mc),
            desc=f"Monte Carlo of slice {z}",
            on_returned=lambda result: self._show_mc(result, z),
            on_errored=lambda exc: self.mc_panel.show_error(error_text(exc)),
        )

    def _show_mc(self, result: MCResult, z: int) -> None:
        assert self.stack is not None
        size = self.stack.solid.shape[1]
        scale = self.stack.voxel_size_nm[1:]
        metrics = {}
        for signal, mc_image in (("bse", result.bse), ("se", result.se)):
            if signal not in self.stack.clean:
                continue
            mc_image = mc_image[:size, :size].astype(np.float32)
            error = np.abs(self.stack.clean[signal][z] - mc_image)
            span = float(np.ptp(mc_image)) or 1.0
            metrics[signal] = 100.0 * float(error.mean()) / span
            info = {"kind": "monte-carlo", "slice": z, "mean_error_pct": metrics[signal]}
            _replace(self.viewer, self.layer_name(f"MC {signal.upper()} slice {z}"), mc_image, "image", scale=scale,
                     metadata=info, colormap="gray")  # fmt: skip
            _replace(self.viewer, self.layer_name(f"|surrogate − MC| {signal.upper()} slice {z}"), error, "image",
                     scale=scale, metadata=info, colormap="magma")  # fmt: skip
        self.mc_metrics = metrics
        text = ", ".join(f"{k.upper()} {v:.2f} %" for k, v in metrics.items())
        self.mc_summary.value = (
            f"slice {z}: mean |surrogate − MC| {text} of the MC range ({result.electrons_per_pixel} e⁻/px, "
            f"{result.seconds:.1f} s; the MC's own noise is part of it)"
        )
        self.mc_panel.notify(f"Monte Carlo done in {result.seconds:.1f} s")

    # -- hand-over -------------------------------------------------------------------------------------------------
    def send_to_acquisition(self) -> Any:
        """Open the *Sparse acquisition* widget with the simulated BSE (or SE) stack chosen as its image."""
        if self.stack is None:
            return None
        signal = "BSE" if "bse" in self.stack.images else "SE"
        layer = self.viewer.layers[self.layer_name(signal)]
        _dock, widget = self.viewer.window.add_plugin_dock_widget(PLUGIN, "Sparse acquisition", tabify=True)
        widget.source.reset_choices()
        widget.source.value = layer
        return widget
