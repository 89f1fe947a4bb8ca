"""The *Porous material* dock widget: a Boolean-model microstructure, its heightfield, and Monte Carlo BSE/SE images.

*Make geometry* draws the particles (:class:`~napari_sparse_sem.surrogate.geometry.GeometrySpec`, or a saved
primitive list), and adds the solid phase under the cut plane as a labels layer (top first), the four heightfield
depths and the normal map as image layers. *Run Monte Carlo* simulates the BSE and SE images of that cut plane
(:class:`~napari_sparse_sem.surrogate.montecarlo.MCConfig`) row batch by row batch; Cancel keeps the finished rows.
Both forms are generated from their models (:mod:`._form`); the window comes from the image size and depth.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import napari
import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, Label, SpinBox

from napari_sparse_sem.surrogate.geometry import GeometrySpec, Primitives
from napari_sparse_sem.surrogate.materials import ELEMENTS
from napari_sparse_sem.surrogate.montecarlo import MCConfig, MCResult, simulate_slice
from napari_sparse_sem.surrogate.scene import PorousCut, cut_job
from napari_sparse_sem.widgets._base import JobWidget
from napari_sparse_sem.widgets._fields import align_labels
from napari_sparse_sem.widgets._form import SpecForm
from napari_sparse_sem.widgets._worker import error_text

EHF_NAMES = ("entry 1", "exit 1", "entry 2", "exit 2")
GEOMETRY_ADVANCED = ("orientation", "kappa", "mixture")  # cylinder axes and mixture weights
MC_SHOWN = ("energy_kev", "electrons_per_pixel", "element", "seed")  # the rest of MCConfig behind Advanced


class PorousWidget(JobWidget):
    """Porous microstructure → solid phase, heightfield and normal map → Monte Carlo BSE and SE of one cut."""

    SETTINGS_GROUP = "porous"

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(napari_viewer)
        self.geometry_form = geometry_form()
        self.seed = self.geometry_form["seed"]
        self.size = SpinBox(label="image size (px)", value=128, min=16, max=2048, step=16)
        self.depth = SpinBox(label="window depth (vx)", value=96, min=8, max=4096, step=8)
        self.below = SpinBox(label="slices shown below", value=32, min=1, max=1024, tooltip="solid-phase layers")
        self.primitives_file = primitives_field()
        self.window_form = Container(widgets=[self.size, self.depth, self.below, self.primitives_file])
        self.mc_form = mc_form()
        self.electrons = self.mc_form["electrons_per_pixel"]
        self.mc_form["seed"].label = "MC seed"
        self.summary = Label(value="")
        align_labels(self.geometry_form, self.geometry_form.advanced, self.window_form, self.mc_form,
                     self.mc_form.advanced)  # fmt: skip
        self.geometry_panel = self.add_panel("Make geometry", self.make_geometry)
        self.mc_panel = self.add_panel("Run Monte Carlo for this cut", self.run_monte_carlo)
        for widget in (self.geometry_form.native, self.window_form.native, self.geometry_panel, self.mc_form.native,
                       self.summary.native, self.mc_panel):  # fmt: skip
            self.body.addWidget(widget)
        self.body.addStretch(1)

        self.cut: PorousCut | None = None
        self.mc_result: MCResult | None = None
        self.restore_settings()

    def remembered(self) -> dict[str, Any]:
        own = {"size": self.size, "depth": self.depth, "below": self.below}
        mc = {f"mc_{name}": widget for name, widget in self.mc_form.fields.items()}
        return {**self.geometry_form.fields, **own, **mc}

    # -- parameters ------------------------------------------------------------------------------------------------
    def geometry_spec(self) -> GeometrySpec:
        """The Boolean model of the form (ValueError with a readable message when a field is wrong)."""
        return geometry_spec_of(self, (int(self.depth.value), int(self.size.value), int(self.size.value)))

    def source(self) -> GeometrySpec | Primitives:
        """A saved primitive list when one is chosen, else the spec of the form."""
        return saved_primitives(self) or self.geometry_spec()

    def mc_config(self) -> MCConfig:
        """The Monte Carlo settings of the form."""
        return self.mc_form.spec()

    # -- geometry --------------------------------------------------------------------------------------------------
    def make_geometry(self) -> None:
        """Draw the particles and show the cut (bad input: message in the widget, nothing starts)."""
        if self.geometry_panel.busy or self.mc_panel.busy:
            return
        try:
            source = self.source()
            depth = source.window[0]
            job = cut_job(source, float(depth), int(self.below.value))
        except (ValueError, FileNotFoundError) as exc:
            self.geometry_panel.show_error(str(exc))
            return
        self.save_settings()
        self.geometry_panel.start(
            job,
            desc="porous geometry",
            on_returned=self._show_cut,
            on_errored=lambda exc: self.geometry_panel.show_error(error_text(exc)),
        )

    def _show_cut(self, cut: PorousCut) -> None:
        self.cut = cut
        prims = cut.primitives
        s = prims.pixel_size_nm
        info = {"kind": "porous", "geometry": prims.spec.to_dict() if prims.spec else None, "z0": cut.z0}
        _replace(self.viewer, "porous · solid", cut.solid.astype(np.uint8), "labels", scale=(s, s, s), metadata=info)
        for index, name in enumerate(EHF_NAMES):
            channel = cut.heightfield[index].copy()
            channel[~np.isfinite(channel)] = np.nan
            _replace(self.viewer, f"porous · {name}", channel, "image", scale=(s, s), metadata=info,
                     colormap="magma", visible=False)  # fmt: skip
        normals = np.moveaxis(cut.heightfield[4:7], 0, -1)
        rgb = np.where(np.abs(normals).sum(-1, keepdims=True) > 0, (normals + 1.0) / 2.0, 0.0).astype(np.float32)
        _replace(self.viewer, "porous · normal map", rgb, "image", scale=(s, s), metadata=info, rgb=True)
        counts = ", ".join(f"{v} {k}s" for k, v in prims.counts().items() if v)
        self.geometry_panel.notify(
            f"{len(prims)} particles ({counts}); porosity of the {cut.solid.shape[0]} slices below the cut: "
            f"{cut.porosity:.3f}"
        )

    # -- Monte Carlo -----------------------------------------------------------------------------------------------
    def run_monte_carlo(self) -> None:
        """Simulate BSE and SE of the current cut (make the geometry first)."""
        if self.mc_panel.busy or self.geometry_panel.busy:
            return
        if self.cut is None:
            self.mc_panel.show_error("make the geometry first (the Monte Carlo images the cut it shows)")
            return
        try:
            config = self.mc_config()
        except ValueError as exc:
            self.mc_panel.show_error(str(exc))
            return
        self.save_settings()
        self.mc_result = None
        self.mc_panel.start(
            simulate_slice(self.cut.primitives, self.cut.z0, config),
            desc=f"Monte Carlo, {config.electrons_per_pixel} electrons per pixel",
            on_progress=lambda event: self._show_mc(event.partial, final=False),
            on_returned=lambda result: self._show_mc(result, final=True),
            on_errored=lambda exc: self.mc_panel.show_error(error_text(exc)),
        )

    def _show_mc(self, result: MCResult | None, final: bool) -> None:
        if result is None:
            return
        s = self.cut.primitives.pixel_size_nm if self.cut else 1.0
        info = {"kind": "monte-carlo", "mc": result.config.to_dict(), "z0": self.cut.z0 if self.cut else None}
        _replace(self.viewer, "porous · MC BSE", result.bse.astype(np.float32), "image", scale=(s, s), metadata=info)
        _replace(self.viewer, "porous · MC SE", result.se.astype(np.float32), "image", scale=(s, s), metadata=info)
        if final:
            self.mc_result = result
            self.summary.value = (
                f"BSE mean {np.nanmean(result.bse):.3f}, SE mean {np.nanmean(result.se):.3f}; "
                f"{result.trajectories_per_second:,.0f} electrons/s"
            )
            self.mc_panel.notify(f"Monte Carlo done in {result.seconds:.1f} s")


def _replace(viewer: napari.viewer.Viewer, name: str, data: np.ndarray, kind: str, **kwargs: Any) -> Any:
    """Add a layer, or update the one of that name (ours) in place of a new one."""
    if name in viewer.layers:
        layer = viewer.layers[name]
        if layer.data.shape == data.shape and layer.data.dtype == data.dtype:
            layer.data = data
            layer.metadata = {**layer.metadata, **kwargs.get("metadata", {})}
            if kind == "image" and not kwargs.get("rgb") and np.isfinite(data).any():
                layer.contrast_limits = (float(np.nanmin(data)), float(np.nanmax(data)) or 1.0)
            return layer
        viewer.layers.remove(name)
    adder = viewer.add_labels if kind == "labels" else viewer.add_image
    return adder(data, name=name, **kwargs)


def geometry_form(exclude: tuple[str, ...] = ()) -> SpecForm:
    """The Boolean-model form shared by the porous and the Simulate SEM widgets (the window is theirs to set)."""
    return SpecForm(GeometrySpec, exclude=("window", *exclude), advanced=GEOMETRY_ADVANCED)


def mc_form(shown: tuple[str, ...] = MC_SHOWN, advanced: bool = True) -> SpecForm:
    """An :class:`MCConfig` form: ``shown`` fields, the others behind *Advanced* (or left out)."""
    from napari_sparse_sem.params import fields_of

    rest = tuple(view.name for view in fields_of(MCConfig) if view.name not in shown)
    element = ComboBox(label="material", choices=list(ELEMENTS)) if "element" in shown else None
    return SpecForm(
        MCConfig,
        exclude=() if advanced else rest,
        widgets={"element": element} if element is not None else None,
        advanced=rest if advanced else (),
    )


def primitives_field() -> FileEdit:
    """A saved primitive list to load instead of drawing particles (empty: draw from the form)."""
    return FileEdit(
        label="or load particles", mode="r", filter="*.npz", value="", tooltip="a list saved by 'sparse-sem "
        "surrogate geometry' or Primitives.save; empty: draw from the fields above"
    )  # fmt: skip


def geometry_spec_of(owner: Any, window: tuple[int, int, int]) -> GeometrySpec:
    """The Boolean model of ``owner``'s geometry form in ``window`` (ValueError naming a wrong field)."""
    return owner.geometry_form.spec(window=window)


def saved_primitives(owner: Any) -> Primitives | None:
    """The primitive list chosen in ``owner``'s file field, or None when it is empty."""
    value = str(owner.primitives_file.value)
    if value not in ("", ".") and Path(value).suffix == ".npz":
        return Primitives.load(Path(value))
    return None
