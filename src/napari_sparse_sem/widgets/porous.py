"""The *Porous material* dock widget: a Boolean-model microstructure, its heightfield, and Monte Carlo BSE/SE images.

*Make geometry* draws the particles (:class:`~napari_sparse_sem.surrogate.geometry.GeometrySpec`, or a saved
primitive list), and adds the solid phase under the cut plane as a labels layer (top first), the four heightfield
depths and the normal map as image layers. *Run Monte Carlo* simulates the BSE and SE images of that cut plane
(:class:`~napari_sparse_sem.surrogate.montecarlo.MCConfig`) row batch by row batch; Cancel keeps the finished rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import napari
import numpy as np
from magicgui.widgets import ComboBox, Container, FileEdit, FloatSpinBox, Label, SpinBox

from napari_sparse_sem.surrogate.geometry import ORIENTATIONS, SHAPES, GeometrySpec, Primitives
from napari_sparse_sem.surrogate.materials import ELEMENTS
from napari_sparse_sem.surrogate.montecarlo import MCConfig, MCResult, simulate_slice
from napari_sparse_sem.surrogate.scene import PorousCut, cut_job
from napari_sparse_sem.widgets._base import JobWidget
from napari_sparse_sem.widgets._worker import error_text

EHF_NAMES = ("entry 1", "exit 1", "entry 2", "exit 2")


class PorousWidget(JobWidget):
    """Porous microstructure → solid phase, heightfield and normal map → Monte Carlo BSE and SE of one cut."""

    SETTINGS_GROUP = "porous"

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(napari_viewer)
        geometry_fields(self)
        self.size = SpinBox(label="image size (px)", value=128, min=16, max=2048, step=16)
        self.depth = SpinBox(label="window depth (vx)", value=96, min=8, max=4096, step=8)
        self.below = SpinBox(label="slices shown below", value=32, min=1, max=1024, tooltip="solid-phase layers")
        self.element = ComboBox(label="material", choices=list(ELEMENTS), value="C")
        self.energy = FloatSpinBox(label="beam energy (keV)", value=2.0, min=0.1, max=50.0, step=0.5)
        self.electrons = SpinBox(label="electrons / pixel", value=50, min=1, max=100_000)
        self.mc_seed = SpinBox(label="MC seed", value=0, min=0, max=2**31 - 1)
        self.summary = Label(value="")
        self.geometry_form = Container(
            widgets=[
                self.shape, self.porosity, self.radius_low, self.radius_high, self.height_low, self.height_high,
                self.edge_low, self.edge_high, self.orientation, self.kappa, self.size, self.depth, self.below,
                self.pixel_size, self.seed, self.primitives_file,
            ]
        )  # fmt: skip
        self.mc_form = Container(widgets=[self.element, self.energy, self.electrons, self.mc_seed, self.summary])
        self.geometry_panel = self.add_panel("Make geometry", self.make_geometry)
        self.mc_panel = self.add_panel("Run Monte Carlo for this cut", self.run_monte_carlo)
        self.body.addWidget(self.geometry_form.native)
        self.body.addWidget(self.geometry_panel)
        self.body.addWidget(self.mc_form.native)
        self.body.addWidget(self.mc_panel)
        self.body.addStretch(1)

        self.cut: PorousCut | None = None
        self.mc_result: MCResult | None = None
        self.restore_settings()

    def remembered(self) -> dict[str, Any]:
        names = ("shape", "porosity", "radius_low", "radius_high", "height_low", "height_high", "edge_low",
                 "edge_high", "orientation", "kappa", "size", "depth", "below", "pixel_size", "seed", "element",
                 "energy", "electrons", "mc_seed")  # fmt: skip
        return {name: getattr(self, name) for name in names}

    # -- parameters ------------------------------------------------------------------------------------------------
    def geometry_spec(self) -> GeometrySpec:
        """The Boolean model of the form (ValueError with a readable message when a field is wrong)."""
        return geometry_spec_of(self, (int(self.depth.value), int(self.size.value), int(self.size.value)))

    def source(self) -> GeometrySpec | Primitives:
        """A saved primitive list when one is chosen, else the spec of the form."""
        return saved_primitives(self) or self.geometry_spec()

    def mc_config(self) -> MCConfig:
        """The Monte Carlo settings of the form."""
        return MCConfig(
            element=self.element.value,
            energy_kev=float(self.energy.value),
            electrons_per_pixel=int(self.electrons.value),
            seed=int(self.mc_seed.value),
        )

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


def geometry_fields(owner: Any) -> None:
    """Give ``owner`` the Boolean-model fields shared by the porous and the Simulate SEM widgets."""
    owner.shape = ComboBox(label="particles", choices=list(SHAPES), value="spheres")
    owner.porosity = FloatSpinBox(label="porosity Φ", value=0.5, min=0.05, max=0.95, step=0.05)
    owner.radius_low = FloatSpinBox(label="radius from (vx)", value=10.0, min=0.5, max=1000.0)
    owner.radius_high = FloatSpinBox(label="radius to (vx)", value=15.0, min=0.5, max=1000.0)
    owner.height_low = FloatSpinBox(label="cylinder height from", value=100.0, min=1.0, max=5000.0)
    owner.height_high = FloatSpinBox(label="cylinder height to", value=150.0, min=1.0, max=5000.0)
    owner.edge_low = FloatSpinBox(label="cube edge from", value=20.0, min=1.0, max=2000.0)
    owner.edge_high = FloatSpinBox(label="cube edge to", value=30.0, min=1.0, max=2000.0)
    owner.orientation = ComboBox(label="cylinder axes", choices=list(ORIENTATIONS), value="uniform")
    owner.kappa = FloatSpinBox(label="κ (vmf)", value=20.0, min=0.1, max=1000.0)
    owner.pixel_size = FloatSpinBox(label="pixel size (nm)", value=5.0, min=0.1, max=1000.0)
    owner.seed = SpinBox(label="seed", value=0, min=0, max=2**31 - 1)
    owner.primitives_file = FileEdit(
        label="or load particles", mode="r", filter="*.npz", value="", tooltip="a list saved by 'sparse-sem "
        "surrogate geometry' or Primitives.save; empty: draw from the fields above"
    )  # fmt: skip


def geometry_spec_of(owner: Any, window: tuple[int, int, int]) -> GeometrySpec:
    """The Boolean model of ``owner``'s geometry fields in ``window`` (ValueError naming a wrong field)."""
    for name in ("radius", "height", "edge"):
        low, high = getattr(owner, f"{name}_low").value, getattr(owner, f"{name}_high").value
        if high < low:
            raise ValueError(f"{name}: 'to' ({high}) is below 'from' ({low}); swap them")
    return GeometrySpec(
        shape=owner.shape.value,
        porosity=float(owner.porosity.value),
        radius=(float(owner.radius_low.value), float(owner.radius_high.value)),
        height=(float(owner.height_low.value), float(owner.height_high.value)),
        edge=(float(owner.edge_low.value), float(owner.edge_high.value)),
        orientation=owner.orientation.value,
        kappa=float(owner.kappa.value),
        window=window,
        pixel_size_nm=float(owner.pixel_size.value),
        seed=int(owner.seed.value),
    )


def saved_primitives(owner: Any) -> Primitives | None:
    """The primitive list chosen in ``owner``'s file field, or None when it is empty."""
    value = str(owner.primitives_file.value)
    if value not in ("", ".") and Path(value).suffix == ".npz":
        return Primitives.load(Path(value))
    return None
