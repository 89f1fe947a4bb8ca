"""The Porous material widget in a real viewer: geometry → solid, heightfield, normals; Monte Carlo → BSE and SE."""

from __future__ import annotations

import numpy as np

from napari_sparse_sem.surrogate.geometry import GeometrySpec, generate
from napari_sparse_sem.widgets._worker import ERROR_STYLE
from napari_sparse_sem.widgets.porous import EHF_NAMES, PorousWidget


def _small(widget: PorousWidget) -> None:
    widget.size.value = 48
    widget.depth.value = 40
    widget.below.value = 16
    widget.geometry_form["radius"].value = (5.0, 8.0)
    widget.geometry_form["porosity"].value = 0.5
    widget.seed.value = 3
    widget.electrons.value = 8


def test_geometry_then_monte_carlo(viewer, wait_done):
    widget = PorousWidget(viewer)
    _small(widget)
    widget.run_monte_carlo()
    assert "make the geometry first" in widget.mc_panel.status.text()
    widget.make_geometry()
    wait_done(widget.geometry_panel)
    solid = viewer.layers["porous · solid"]
    assert solid.data.shape == (16, 48, 48) and 0.3 < 1 - solid.data.mean() < 0.7
    assert solid.scale[1] == 5.0 and solid.metadata["geometry"]["shape"] == "spheres"
    for name in EHF_NAMES:
        assert viewer.layers[f"porous · {name}"].data.shape == (48, 48)
    entry = viewer.layers["porous · entry 1"].data
    # the top solid layer (voxel centres 0.5 below the plane) is solid where the heightfield says so
    assert (
        np.mean(solid.data[0].astype(bool) == ((entry <= 0.5) & (viewer.layers["porous · exit 1"].data > 0.5))) > 0.99
    )
    normals = viewer.layers["porous · normal map"]
    assert normals.rgb and normals.data.shape == (48, 48, 3)
    assert "particles" in widget.geometry_panel.status.text() and "porosity" in widget.geometry_panel.status.text()

    widget.run_monte_carlo()
    wait_done(widget.mc_panel)
    bse, se = viewer.layers["porous · MC BSE"].data, viewer.layers["porous · MC SE"].data
    assert bse.shape == se.shape == (48, 48) and np.isfinite(se).all()
    cut = solid.data[0].astype(bool)
    assert se[cut].mean() > se[~cut].mean()  # pores dark in SE
    assert widget.mc_result is not None and "electrons/s" in widget.summary.value
    assert viewer.layers["porous · MC SE"].metadata["mc"]["electrons_per_pixel"] == 8

    # a second geometry replaces our layers instead of piling up new ones
    count = len(viewer.layers)
    widget.seed.value = 4
    widget.make_geometry()
    wait_done(widget.geometry_panel)
    assert len(viewer.layers) == count


def test_saved_primitive_list_and_bad_input(viewer, wait_done, tmp_path):
    path = generate(GeometrySpec("cubes", 0.5, edge=(6, 10), window=(24, 32, 32), seed=2)).save(tmp_path / "c.npz")
    widget = PorousWidget(viewer)
    _small(widget)
    widget.primitives_file.value = str(path)
    widget.make_geometry()
    wait_done(widget.geometry_panel)
    assert viewer.layers["porous · solid"].metadata["geometry"]["shape"] == "cubes"
    assert viewer.layers["porous · entry 1"].data.shape == (32, 32)

    widget.primitives_file.value = ""
    widget.geometry_form["radius"].value = (9.0, 4.0)
    widget.make_geometry()
    assert "radius must be an interval 0 < low <= high" in widget.geometry_panel.status.text()
    assert widget.geometry_panel.status.styleSheet() == ERROR_STYLE
