"""What every dock widget shares (widgets/_base.py) in a real viewer with real jobs on tiny crops: closing a dock or the
viewer cancels its job and drops late results, re-runs replace their layers, Compare's grid is fitted and labelled,
Reconstruct refuses inputs that are not a sparse acquisition, a DIP Cancel lands within an iteration and leaves no
black layer, and every widget fits a 1080 px screen."""

from __future__ import annotations

import re
import threading

import numpy as np
import pytest
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QGridLayout

from napari_sparse_sem.widgets._layers import NO_MASK
from napari_sparse_sem.widgets._plots import LossPlot
from napari_sparse_sem.widgets._worker import ERROR_STYLE
from napari_sparse_sem.widgets.acquisition import AcquisitionWidget
from napari_sparse_sem.widgets.active import ActiveWidget
from napari_sparse_sem.widgets.compare import CompareWidget
from napari_sparse_sem.widgets.porous import PorousWidget
from napari_sparse_sem.widgets.reconstruct import ReconstructWidget
from napari_sparse_sem.widgets.simulate import SimulateSEMWidget
from napari_sparse_sem.widgets.train_gan import TrainGANWidget
from napari_sparse_sem.widgets.train_self import TrainSelfWidget

WAIT_MS = 120_000  # how long a test waits for a worker: a bound for a stuck run, not a timing claim

ALL_WIDGETS = (
    AcquisitionWidget,
    ReconstructWidget,
    CompareWidget,
    ActiveWidget,
    TrainGANWidget,
    TrainSelfWidget,
    PorousWidget,
    SimulateSEMWidget,
)
SCREEN_BUDGET_PX = 1000  # a 1080 px screen, less the window's title and menu bars


def _slow_compare(viewer, stack) -> CompareWidget:
    """Compare 4 patterns with linear3d on full 250 x 250 slices (about a second a run): a job that is surely still
    running when the test closes its dock."""
    viewer.dims.set_current_step(0, 1)
    widget = CompareWidget(viewer)
    widget.truth.value = stack
    for pattern, box in widget.pattern_boxes.items():
        box.value = pattern in ("random", "grid", "spiral", "lowres")
    widget.methods.value = ["linear3d"]
    return widget


def test_closing_the_dock_cancels_the_job_and_drops_its_results(viewer, flyem_crop_uint8, wait_done, qtbot):
    stack = viewer.add_image(flyem_crop_uint8[:3].copy(), name="stack3")
    widget = _slow_compare(viewer, stack)
    dock = viewer.window.add_dock_widget(widget, name="Compare masks")
    widget.run()
    worker = widget.panel.worker
    qtbot.waitUntil(lambda: widget.panel.last_progress is not None, timeout=WAIT_MS)
    dock.title.close_button.click()  # the dock's ×: napari takes the widget out of its dock
    assert widget.closed and worker.abort_requested
    wait_done(widget.panel)
    qtbot.wait(300)  # anything still queued is delivered now
    assert [layer.name for layer in viewer.layers] == ["stack3"]  # no late results ...
    assert not viewer.canvas.grid.enabled  # ... and no switch to grid view
    assert widget.result is None and widget.table.rowCount() == 0


def test_closing_the_viewer_cancels_a_running_reconstruction(make_napari_viewer, flyem_crop_uint8, wait_done, qtbot):
    viewer = make_napari_viewer()
    stack = viewer.add_image(flyem_crop_uint8[:8].copy(), name="stack8")
    acquisition = AcquisitionWidget(viewer)
    acquisition.source.value = stack
    acquisition.run()
    wait_done(acquisition.panel)
    widget = ReconstructWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Reconstruct")
    widget.truth.value = None
    widget.method.value = "linear3d"
    widget.run()
    worker = widget.panel.worker
    viewer.close()
    assert widget.closed and worker.abort_requested
    wait_done(widget.panel)
    qtbot.wait(300)
    assert len(viewer.layers) == 0  # nothing was added to the closed viewer
    assert len(widget.done_slices) < 8  # it stopped early


def test_rerunning_replaces_the_widgets_own_layers(viewer, sample_layer, wait_done):
    acquisition = AcquisitionWidget(viewer)
    acquisition.pattern.value, acquisition.coverage.value = "random", 10.0
    firsts = []
    for seed in (0, 1):
        acquisition.seed.value = seed
        acquisition.run()
        wait_done(acquisition.panel)
        firsts.append(viewer.layers[-1])
    names = [layer.name for layer in viewer.layers]
    assert names == ["flyem", "flyem · random 10% · mask", "flyem · random 10% · sparse"]
    assert viewer.layers[2] is firsts[1] and firsts[0] not in viewer.layers  # the second run's layers
    assert not np.array_equal(firsts[0].data, firsts[1].data)

    reconstruct = ReconstructWidget(viewer)
    reconstruct.method.value = "nearest"
    for _ in range(2):
        reconstruct.run()
        wait_done(reconstruct.panel)
    names = [layer.name for layer in viewer.layers]
    assert names[3:] == ["flyem · random 10% · nearest", "flyem · random 10% · nearest · |error|"]
    assert not any("[1]" in name for name in names)


def test_compare_fits_the_grid_and_labels_every_cell(viewer, sample_layer, wait_done):
    viewer.scene.camera.zoom *= 7.0  # a camera far from fitting the grid
    widget = CompareWidget(viewer)
    for pattern, box in widget.pattern_boxes.items():
        box.value = pattern in ("random", "spiral")
    widget.methods.value = ["nearest", "linear"]
    widget.coverage.value = 10.0
    widget.run()
    wait_done(widget.panel)

    camera = (*viewer.scene.camera.center, viewer.scene.camera.zoom)
    viewer.reset_view()
    assert camera == pytest.approx((*viewer.scene.camera.center, viewer.scene.camera.zoom))  # already fitted
    psnr = {(r["pattern"], r["method"]): r["psnr"] for r in widget.result.records}
    for layer in widget.result_layers:
        md = layer.metadata
        assert layer.name_overlay.visible  # the name is drawn in the layer's grid cell
        assert layer.name.startswith(f"{md['pattern']} 10%") and len(layer.name) <= 40  # not cut in the layer list
        assert 6.0 <= layer.name_overlay.font_size <= 10.0
        if md["what"] == "recon":
            assert layer.name == f"{md['pattern']} 10% · {md['method']} {psnr[(md['pattern'], md['method'])]:.1f} dB"
        elif md["what"] == "error":
            assert layer.name == f"{md['pattern']} 10% · {md['method']} |error|"
        else:
            assert layer.name == f"{md['pattern']} 10% · mask"


def test_reconstruct_refuses_what_is_not_a_sparse_acquisition(viewer, sample_layer):
    widget = ReconstructWidget(viewer)
    # Only a dense image: it is offered as the sparse layer, but never preselected as its own mask.
    assert widget.sparse.value is sample_layer
    assert widget.mask.value is None and widget.mask.native.currentText() == NO_MASK
    full = viewer.add_labels(np.ones(sample_layer.data.shape, np.uint8), name="all scanned")
    n_layers = len(viewer.layers)
    cases = [
        (None, "no mask layer"),
        (full, "marks every pixel as scanned"),
        (sample_layer, "chosen as both the sparse layer and the mask"),
    ]
    for mask, message in cases:
        widget.sparse.value = sample_layer
        widget.mask.value = mask
        widget.run()
        assert not widget.panel.busy
        assert message in widget.panel.status.text()
        assert widget.panel.status.styleSheet() == ERROR_STYLE
        assert len(viewer.layers) == n_layers


def test_dip_cancel_lands_within_an_iteration_and_leaves_no_black_layer(viewer, acquired, wait_done, qtbot):
    widget = ReconstructWidget(viewer)
    widget.method.value = "dip"
    tiny = {"levels": 2, "channels": 8, "iterations_first": 100_000, "stopping": "fixed", "warmup_slices": 0}
    for name, value in {**tiny, "preview_every": 0}.items():  # no previews: only the fit's own steps report
        widget.options.form("dip")[name].value = value
    n_layers = len(viewer.layers)
    widget.run()
    assert len(viewer.layers) == n_layers + 1
    seen: list[int] = []
    lock = threading.Lock()

    def record(event) -> None:  # runs in the worker thread as the job yields (direct connection)
        match = re.search(r"iteration (\d+)", event.message)
        if match:
            with lock:
                seen.append(int(match.group(1)))

    widget.panel.worker.yielded.connect(record, Qt.DirectConnection)
    qtbot.waitUntil(lambda: len(seen) >= 3, timeout=WAIT_MS)
    with lock:
        at_cancel = seen[-1]
    widget.panel.cancel_button.click()
    wait_done(widget.panel)
    # The fit reports every iteration, so it stops within about one more (not at its 100 000th).
    assert seen[-1] - at_cancel <= 2
    assert widget.done_slices == [] and widget.layer is None
    assert len(viewer.layers) == n_layers  # the all-zero result layer is gone
    assert "no slice was finished" in widget.panel.status.text()


def test_dip_cancel_after_a_finished_slice_marks_the_kept_layer(viewer, acquired, wait_done, qtbot):
    widget = ReconstructWidget(viewer)
    widget.method.value = "dip"
    tiny = {"levels": 2, "channels": 8, "iterations_first": 10, "iterations_warm": 100_000, "stopping": "fixed"}
    for name, value in {**tiny, "warmup_slices": 0, "preview_every": 0}.items():
        widget.options.form("dip")[name].value = value
    widget.run()
    qtbot.waitUntil(lambda: widget.done_slices == [0], timeout=WAIT_MS)
    widget.panel.cancel_button.click()
    wait_done(widget.panel)
    layer = widget.layer
    assert layer in viewer.layers and layer.name.endswith("(unfinished: 1 of 4 slices)")
    assert layer.metadata["complete"] is False and layer.metadata["slices_done"] == [0]
    assert layer.data[0].any() and not layer.data[1:].any()


@pytest.mark.parametrize("cls", ALL_WIDGETS, ids=lambda cls: cls.__name__)
def test_widgets_fit_a_1080_px_screen(viewer, sample_layer, cls):
    widget = cls(viewer)
    assert widget.sizeHint().height() <= SCREEN_BUDGET_PX
    assert widget.minimumSizeHint().height() <= SCREEN_BUDGET_PX
    widget.shutdown()
    assert widget.closed


def test_compare_pattern_boxes_sit_in_a_grid_and_never_overlap(viewer, sample_layer, qtbot):
    widget = CompareWidget(viewer)
    qtbot.addWidget(widget)
    assert isinstance(widget.patterns.layout(), QGridLayout)
    widget.resize(180, 700)  # narrower than the form: it scrolls instead of squeezing
    widget.show()
    qtbot.waitExposed(widget)
    rects = [box.native.geometry() for box in widget.pattern_boxes.values()]
    rows = {rect.top() for rect in rects}
    assert len(rows) == -(-len(rects) // 3)  # three columns
    for i, a in enumerate(rects):
        assert a.width() >= a.height()  # not squeezed to nothing
        assert not any(a.intersects(b) for b in rects[i + 1 :])


def test_plots_draw_only_when_shown_and_never_after_deletion(qtbot, capfd):
    """The old noise: "wrapped C/C++ object of type LossPlot has been deleted", a redraw of a closed widget's plot."""
    plot = LossPlot(with_image=True)
    plot.show_curves([0.3, 0.2, 0.1], [(2, 0.25)], "fit", np.zeros((8, 8)))
    qtbot.wait(50)
    assert not hasattr(plot, "renderer")  # hidden: nothing drawn, so nothing can reach a deleted canvas later
    plot.show()
    qtbot.waitExposed(plot)
    qtbot.waitUntil(lambda: hasattr(plot, "renderer"))  # drawn once shown
    plot.show_curves([0.3, 0.2], [], "fit")  # a redraw pending ...
    plot.deleteLater()  # ... when the plot goes
    qtbot.wait(100)
    assert "has been deleted" not in capfd.readouterr().err


def test_the_manifest_asks_napari_to_dock_every_widget_as_a_tab():
    from npe2 import PluginManager

    manifest = PluginManager.instance().get_manifest("napari-sparse-sem")
    widgets = manifest.contributions.widgets
    assert len(widgets) == len(ALL_WIDGETS) and all(widget.tabify for widget in widgets)
