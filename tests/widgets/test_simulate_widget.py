"""The Simulate SEM widget in a real viewer: stack layers appear, the MC check adds the error map, hand-over works."""

from __future__ import annotations

import numpy as np

from napari_sparse_sem.widgets.simulate import SimulateSEMWidget


def _small(widget: SimulateSEMWidget) -> None:
    widget.size.value = 48
    widget.slices.value = 4
    widget.spacing.value = 2.0
    widget.geometry_form["radius"].value = (5.0, 8.0)
    widget.geometry_form["porosity"].value = 0.5
    widget.seed.value = 1
    widget.mc_electrons.value = 20


def test_stack_then_monte_carlo_then_acquisition(viewer, wait_done):
    widget = SimulateSEMWidget(viewer)
    _small(widget)
    widget.compare_with_monte_carlo()
    assert "simulate a stack first" in widget.mc_panel.status.text()
    widget.run()
    wait_done(widget.stack_panel, timeout=120_000)
    bse, se = viewer.layers["simulated · BSE"], viewer.layers["simulated · SE"]
    solid = viewer.layers["simulated · solid"]
    assert bse.data.shape == se.data.shape == solid.data.shape == (4, 48, 48)
    assert tuple(bse.scale) == (10.0, 5.0, 5.0)
    assert 0.3 < 1 - solid.data.mean() < 0.7
    cut = solid.data.astype(bool)
    assert se.data[cut].mean() > se.data[~cut].mean()  # pores are dark in SE
    assert "porosity" in widget.summary.value

    viewer.dims.set_current_step(0, 2)
    widget.compare_with_monte_carlo()
    wait_done(widget.mc_panel, timeout=120_000)
    mc = viewer.layers["simulated · MC SE slice 2"].data
    error = viewer.layers["simulated · |surrogate − MC| SE slice 2"].data
    assert mc.shape == error.shape == (48, 48)
    np.testing.assert_allclose(error, np.abs(se.data[2] - mc), atol=1e-6)
    # 20 electrons per pixel: the error is mostly MC noise, but the surrogate must be on the right scale
    assert widget.mc_metrics is not None and widget.mc_metrics["se"] < 25.0 and widget.mc_metrics["bse"] < 40.0
    assert "slice 2" in widget.mc_summary.value

    acquisition = widget.send_to_acquisition()
    assert acquisition.source.value is bse


def test_noise_and_bad_input(viewer, wait_done):
    widget = SimulateSEMWidget(viewer)
    _small(widget)
    widget.detector.value = "se"
    widget.stack_form["snr"].value = "8.33"  # shot noise for this SNR (empty: noise-free)
    widget.run()
    wait_done(widget.stack_panel, timeout=120_000)
    assert "simulated · SE" in viewer.layers and "simulated · BSE" not in viewer.layers
    assert widget.stack is not None and widget.stack.metadata["dose_electrons_per_pixel"]["se"] > 0
    assert not np.array_equal(widget.stack.images["se"], widget.stack.clean["se"])

    widget.stack_form["dose"].value = "20"
    widget.run()
    assert "a dose or an SNR" in widget.stack_panel.status.text()  # not both
    widget.stack_form["dose"].value = ""
    widget.geometry_form["radius"].value = (9.0, 4.0)
    widget.run()
    assert "radius must be an interval" in widget.stack_panel.status.text()
