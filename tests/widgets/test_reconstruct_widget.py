"""The Reconstruct widget in a real viewer: slice-by-slice filling, metrics, cancel, a responsive GUI, bad input."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import QTimer

from napari_sparse_sem.metrics import psnr
from napari_sparse_sem.recon.dip import DIPConfig
from napari_sparse_sem.sampling.record import AcquisitionRecord
from napari_sparse_sem.widgets._worker import ERROR_STYLE
from napari_sparse_sem.widgets.acquisition import AcquisitionWidget
from napari_sparse_sem.widgets.reconstruct import NO_TRUTH, ReconstructWidget

WAIT_MS = 120_000  # how long a test waits for a worker: a bound for a stuck run, not a timing claim

LINEAR_10_PERCENT_PSNR_FLOOR = 26.0  # dB on the 4 x 96 x 96 FlyEM crop (measured 27.5 dB)


def test_preselects_inputs_and_reconstructs(viewer, sample_layer, small_stack, acquired, wait_done):
    mask_layer, sparse_layer = acquired
    inputs_before = [layer.data.copy() for layer in (sample_layer, mask_layer, sparse_layer)]
    widget = ReconstructWidget(viewer)
    assert widget.sparse.value is sparse_layer
    assert widget.mask.value is mask_layer
    assert widget.truth.value is sample_layer
    widget.method.value = "linear"

    counts: list[int] = []
    widget.run()
    layer = widget.layer
    assert layer.name == "flyem · random 10% · linear"
    assert layer in viewer.layers and not layer.data.any()  # added at the start, still empty
    widget.panel.worker.yielded.connect(lambda _event: counts.append(int(layer.data.any(axis=(1, 2)).sum())))
    wait_done(widget.panel)

    # The layer filled one slice at a time while the worker ran.
    assert widget.done_slices == [0, 1, 2, 3]
    assert counts == sorted(counts) and counts[-1] == 4
    recon = layer.data
    reference = small_stack / 255.0
    mask = mask_layer.data.astype(bool)
    np.testing.assert_allclose(recon[mask], sparse_layer.data[mask], atol=1e-5)  # scanned pixels kept
    measured = psnr(reference, recon)
    assert measured > LINEAR_10_PERCENT_PSNR_FLOOR
    assert widget.metrics["psnr"] == pytest.approx(np.mean([psnr(reference[z], recon[z]) for z in range(4)]), abs=1e-6)
    assert widget.metrics["psnr_unscanned"] < widget.metrics["psnr"]
    assert 0.4 < widget.metrics["ssim"] <= 1.0
    assert "PSNR" in widget.result_label.text()

    error = viewer.layers["flyem · random 10% · linear · |error|"]
    np.testing.assert_allclose(error.data, np.abs(recon - reference), atol=1e-6)
    for result in (layer, error):
        np.testing.assert_array_equal(result.scale, sample_layer.scale)
        np.testing.assert_array_equal(result.translate, sample_layer.translate)
    assert layer.metadata["kind"] == "reconstruction" and layer.metadata["complete"] is True
    record = AcquisitionRecord.from_metadata(layer.metadata)  # the acquisition's record goes with the result
    assert record == AcquisitionRecord.from_metadata(sparse_layer.metadata) and record.mask_spec.pattern == "random"
    for layer_, before in zip((sample_layer, mask_layer, sparse_layer), inputs_before, strict=True):
        np.testing.assert_array_equal(layer_.data, before)


def _acquire(viewer, layer, wait_done):
    """Random 10 % acquisition of ``layer`` through the acquisition widget; returns the sparse layer."""
    acquisition = AcquisitionWidget(viewer)
    acquisition.source.value = layer
    acquisition.pattern.value = "random"
    acquisition.coverage.value = 10.0
    acquisition.run()
    wait_done(acquisition.panel)
    return viewer.layers[f"{layer.name} · random 10% · sparse"]


def test_cancel_keeps_finished_slices(viewer, flyem_crop_uint8, wait_done, qtbot):
    # 8 full 250 x 250 slices with the 3D linear method (~0.7 s a slice): Cancel surely lands before the end.
    stack = viewer.add_image(flyem_crop_uint8[:8].copy(), name="stack8")
    sparse = _acquire(viewer, stack, wait_done)
    widget = ReconstructWidget(viewer)
    assert widget.sparse.value is sparse
    widget.truth.value = None
    widget.method.value = "linear3d"
    widget.run()
    qtbot.waitUntil(lambda: len(widget.done_slices) >= 1, timeout=WAIT_MS)
    widget.panel.cancel_button.click()
    wait_done(widget.panel)

    done = sorted(set(widget.done_slices))
    filled = [z for z in range(8) if widget.layer.data[z].any()]
    assert filled == done == list(range(len(done)))
    assert 1 <= len(done) < 8
    assert f"cancelled after {len(done)} of 8 slices" in widget.panel.status.text()
    assert widget.layer in viewer.layers and widget.layer.metadata["complete"] is False
    assert not any("|error|" in layer.name for layer in viewer.layers)


def test_event_loop_keeps_running_during_reconstruction(viewer, flyem_crop_uint8, wait_done):
    # 4 full slices with the 3D linear method run in a worker; a QTimer on the GUI thread must keep ticking meanwhile.
    # Counted in ticks while the job runs, not in seconds: a loaded machine slows both alike.
    stack = viewer.add_image(flyem_crop_uint8[:4].copy(), name="stack4")
    _acquire(viewer, stack, wait_done)
    widget = ReconstructWidget(viewer)
    widget.truth.value = None
    widget.method.value = "linear3d"
    ticks_while_busy: list[int] = []
    timer = QTimer()
    timer.setInterval(20)
    timer.timeout.connect(lambda: ticks_while_busy.append(1) if widget.panel.busy else None)
    timer.start()
    widget.run()
    wait_done(widget.panel)
    timer.stop()

    assert widget.layer.data.any(axis=(1, 2)).all()
    # A frozen GUI would deliver no tick before the job ends; a responsive one keeps ticking while it runs.
    assert len(ticks_while_busy) >= 5


def test_bad_input_shows_error_and_adds_nothing(viewer, sample_layer, acquired):
    mask_layer, sparse_layer = acquired
    small = viewer.add_labels(np.ones((4, 32, 32), np.uint8), name="small mask")
    empty = viewer.add_labels(np.zeros(mask_layer.data.shape, np.uint8), name="empty mask")
    other = viewer.add_image(np.zeros((4, 50, 50), np.float32), name="other image")
    n_layers = len(viewer.layers)
    widget = ReconstructWidget(viewer)
    cases = [
        ({"mask": small}, "has shape (4, 32, 32)"),
        ({"mask": empty}, "marks no scanned pixel"),
        ({"mask": mask_layer, "truth": other}, "ground truth 'other image' has shape"),
    ]
    for values, message in cases:
        widget.sparse.value = sparse_layer
        for name, value in values.items():
            getattr(widget, name).value = value
        widget.run()
        assert not widget.panel.busy
        assert message in widget.panel.status.text()
        assert widget.panel.status.styleSheet() == ERROR_STYLE
        assert len(viewer.layers) == n_layers


def test_no_truth_means_no_error_layer(viewer, acquired, wait_done):
    widget = ReconstructWidget(viewer)
    assert widget.truth.choices[0] is None and widget.truth.native.itemText(0) == NO_TRUTH
    widget.truth.value = None
    widget.method.value = "nearest"
    widget.run()
    wait_done(widget.panel)
    assert widget.layer.data.any(axis=(1, 2)).all()
    assert widget.metrics is None
    assert not any("|error|" in layer.name for layer in viewer.layers)


def test_dip_parameters_live_preview_and_loss_plot(viewer, acquired, wait_done, qtbot):
    widget = ReconstructWidget(viewer)

    def shown(w) -> bool:  # the dock is not on screen in tests: ask whether the widget itself is hidden
        return not getattr(w, "native", w).isHidden()

    widget.method.value = "linear"
    assert not shown(widget.options)
    widget.method.value = "dip3d"
    group = widget.options.groups[DIPConfig]
    assert shown(widget.options) and group.title() == "dip3d options"
    assert widget.options.form("dip3d") is widget.options.form("dip")  # one options spec, one form
    widget.method.value = "dip"
    assert group.title() == "dip options"
    # A tiny fixed-count fit so the test stays fast; the preset fills the fields, our changes override them.
    form = widget.options.form("dip")
    form["preset"].value = "paper"
    assert form["iterations_first"].value == 3000 and form["stopping"].value == "fixed"
    for name, value in {"levels": 2, "channels": 8, "iterations_first": 30, "iterations_warm": 10}.items():
        form[name].value = value
    form["preview_every"].value = 10
    previews = []
    widget.run()
    widget.panel.worker.yielded.connect(
        lambda event: (
            previews.append((event.partial.z, widget.layer.data[0].copy()))
            if type(event.partial).__name__ == "FitPreview"
            else None
        )
    )
    wait_done(widget.panel)

    layer = widget.layer
    assert layer.metadata["options"] == {
        "preset": "paper",
        "levels": 2,
        "channels": 8,
        "iterations_first": 30,
        "iterations_warm": 10,
        "preview_every": 10,
    }
    assert widget.done_slices == [0, 1, 2, 3]
    # Slice 0 showed the network's estimate while it was fitted (3 previews of the cold slice, before it finished).
    first = [image for z, image in previews if z == 0]
    assert len(first) == 3 and first[0].any()
    assert shown(widget.loss_plot) and widget.loss_plot.axes.lines  # loss curve drawn
    assert "PSNR" in widget.result_label.text()


def test_cancel_during_a_dip_fit_keeps_only_finished_slices(viewer, acquired, wait_done, qtbot):
    widget = ReconstructWidget(viewer)
    widget.method.value = "dip"
    widget.options.form("dip")["preset"].value = "default"
    for name, value in {"levels": 2, "channels": 8, "iterations_first": 20, "iterations_warm": 100_000}.items():
        widget.options.form("dip")[name].value = value
    widget.options.form("dip")["stopping"].value = "fixed"
    widget.options.form("dip")["warmup_slices"].value = 0
    widget.options.form("dip")["preview_every"].value = 5
    widget.run()
    qtbot.waitUntil(lambda: widget.done_slices == [0] and widget._preview_z == 1, timeout=WAIT_MS)
    assert widget.layer.data[1].any()  # slice 1 shows its live preview
    widget.panel.cancel_button.click()
    wait_done(widget.panel)
    assert widget.done_slices == [0]
    assert widget.layer.data[0].any() and not widget.layer.data[1:].any()  # the preview-only slice is cleared


def test_holdout_quality_shows_in_text_and_metadata(viewer, sample_layer, acquired, wait_done):
    widget = ReconstructWidget(viewer)
    widget.method.value = "linear"
    widget.holdout.value = True
    widget.run()
    wait_done(widget.panel)
    holdout = widget.layer.metadata["holdout"]
    assert holdout["method"] == "linear" and holdout["folds"] == 5 and holdout["slices"] == [0, 1, 2, 3]
    # the estimate without ground truth lands near the true unscanned PSNR the ground truth gives (96² crop)
    assert abs(holdout["psnr_holdout"] - widget.metrics["psnr_unscanned"]) < 1.5
    assert "Hold-out estimate" in widget.result_label.text()
    assert f"{holdout['psnr_holdout']:.2f} dB" in widget.result_label.text()


def _torch_threads_of_a_new_thread() -> int:
    import threading

    import torch

    seen: list[int] = []
    thread = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    thread.start()
    thread.join()
    return seen[0]


def test_threads_field_applies_to_the_job_and_the_counts_come_back(viewer, acquired, wait_done, qtbot):
    from napari_sparse_sem.threads import current_threads, restore_threads, set_threads

    before = current_threads()
    set_threads(1)
    try:
        widget = ReconstructWidget(viewer)
        assert widget.threads.value == 0 and "auto" in widget.threads.label
        widget.threads.value = 2
        widget.method.value = "dip"  # a fit that runs until cancelled: the job is surely running when we look
        form = widget.options.form("dip")
        form["preset"].value = "default"
        for name, value in {"levels": 2, "channels": 8, "iterations_first": 10, "iterations_warm": 100_000}.items():
            form[name].value = value
        form["stopping"].value = "fixed"
        form["warmup_slices"].value = 0
        widget.run()
        qtbot.waitUntil(lambda: widget.done_slices == [0], timeout=WAIT_MS)
        assert set(current_threads().blas.values()) == {2}  # BLAS's count is process-wide
        assert _torch_threads_of_a_new_thread() == 2  # torch work started now begins with the job's count
        widget.panel.cancel_button.click()
        wait_done(widget.panel)
        assert set(current_threads().blas.values()) == {1} and _torch_threads_of_a_new_thread() == 1
        assert ReconstructWidget(viewer).threads.value == 2  # remembered like the other fields
    finally:
        restore_threads(before)
