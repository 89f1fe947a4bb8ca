"""The Train GAN widget in a real viewer: a real (tiny) training, the live plot, cancel + resume, bad input; and the
GAN weights field of the Reconstruct widget."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from napari_sparse_sem.nn.weights import read_card
from napari_sparse_sem.widgets._worker import ERROR_STYLE
from napari_sparse_sem.widgets.reconstruct import ReconstructWidget
from napari_sparse_sem.widgets.train_gan import TrainGANWidget

WAIT_MS = 120_000  # how long a test waits for a worker: a bound for a stuck run, not a timing claim


def _tiny_widget(viewer, sample_layer, architecture: dict, out: Path, iterations: int = 12) -> TrainGANWidget:
    widget = TrainGANWidget(viewer)
    widget.architecture = dict(architecture)
    widget.source.value = sample_layer
    widget.crop.value = 64
    widget.batch_size.value = 2
    widget.minutes.value = ""  # no time budget
    widget.iterations.value = iterations
    widget.pretrain.value = 0.5
    widget.out.value = str(out)
    return widget


def test_trains_saves_and_plots(viewer, sample_layer, tiny_gan_architecture, wait_done, tmp_path):
    out = tmp_path / "gan.safetensors"
    widget = _tiny_widget(viewer, sample_layer, tiny_gan_architecture, out)
    widget.run()
    wait_done(widget.panel)
    card = read_card(out)
    assert card["variants"] == ["mse", "gan"] and card["training"]["iterations_done"] == 12
    assert card["data"]["slices"] == [0, 1, 2, 3] and card["data"]["file"] == "flyem"
    assert widget.plot.loss_axes.lines and widget.plot.psnr_axes.lines  # curves and the linear baseline
    text = widget.panel.status.text()
    assert "gan.safetensors" in text and "held-out PSNR" in text and "linear" in text
    # the weights serve the Reconstruct widget's GAN weights field
    recon = ReconstructWidget(viewer)
    recon.method.value = "linear"
    assert recon.options.isHidden()
    recon.method.value = "gan-mse"
    weights = recon.options.form("gan-mse")["weights"]
    assert not recon.options.isHidden() and weights.value is None  # empty: the shipped default weights
    assert "weights" in weights.tooltip
    mask = np.random.default_rng(0).random(sample_layer.data.shape) < 0.1
    viewer.add_labels(mask.astype(np.uint8), name="mask")
    viewer.add_image(np.where(mask, sample_layer.data / 255.0, 0.0).astype(np.float32), name="sparse")
    recon.sparse.value, recon.mask.value = viewer.layers["sparse"], viewer.layers["mask"]
    weights.value = str(out)
    recon.run()
    wait_done(recon.panel)
    assert recon.layer is not None and recon.layer.data.any() and recon.layer.metadata["method"] == "gan-mse"
    weights.value = str(tmp_path / "missing.safetensors")
    recon.run()
    assert "is not a file" in recon.panel.status.text()


def test_cancel_keeps_a_checkpoint_and_resume_finishes(
    viewer, sample_layer, tiny_gan_architecture, wait_done, qtbot, tmp_path
):
    out = tmp_path / "gan.safetensors"
    widget = _tiny_widget(viewer, sample_layer, tiny_gan_architecture, out, iterations=400)
    widget.run()
    qtbot.waitUntil(
        lambda: widget.panel.last_progress is not None and widget.panel.last_progress.step >= 10, timeout=WAIT_MS
    )
    widget.panel.cancel()
    wait_done(widget.panel)
    card = read_card(out)
    assert card["training"]["stopped"] == "cancelled" and 10 <= card["training"]["iterations_done"] < 400
    assert "resume" in widget.panel.status.text()
    # without resume or overwrite the file is protected
    widget.run()
    assert widget.panel.status.styleSheet() == ERROR_STYLE and "overwrite" in widget.panel.status.text()
    widget.iterations.value = card["training"]["iterations_done"] + 4
    widget.resume.value = True
    widget.run()
    wait_done(widget.panel)
    card = read_card(out)
    assert card["training"]["completed"] and card["training"]["iterations_done"] == int(widget.iterations.value)


def test_bad_input_is_reported_in_the_widget(viewer, sample_layer, tiny_gan_architecture, tmp_path):
    widget = _tiny_widget(viewer, sample_layer, tiny_gan_architecture, tmp_path / "a.safetensors")
    widget.first_slice.value, widget.last_slice.value = 3, 1
    widget.run()
    assert "before first slice" in widget.panel.status.text() and not widget.panel.busy
    widget.first_slice.value, widget.last_slice.value = 0, 9
    widget.run()
    assert "outside the stack" in widget.panel.status.text()
    widget.last_slice.value = 3
    widget.iterations.value = ""
    widget.run()
    assert "give a training budget" in widget.panel.status.text()
    widget.iterations.value = 4
    widget.out.value = str(tmp_path / "model.pt")
    widget.run()
    assert ".safetensors" in widget.panel.status.text()


def test_closing_napari_mid_training_still_saves_the_checkpoint(
    viewer, sample_layer, tiny_gan_architecture, qtbot, tmp_path
):
    """napari's window close quits every worker and waits for them; the training's cleanup (the checkpoint) must run
    then, in the worker thread, not wait for a GUI event that a closing app may never process."""
    from napari.qt.threading import WorkerBase

    out = tmp_path / "gan.safetensors"
    widget = _tiny_widget(viewer, sample_layer, tiny_gan_architecture, out, iterations=400)
    widget.run()
    qtbot.waitUntil(
        lambda: widget.panel.last_progress is not None and widget.panel.last_progress.step >= 10, timeout=WAIT_MS
    )
    WorkerBase.await_workers(msecs=60_000)  # what napari's main window does in its closeEvent
    card = read_card(out)
    assert card["training"]["stopped"] == "cancelled" and 10 <= card["training"]["iterations_done"] < 400
    qtbot.waitUntil(lambda: not widget.panel.busy, timeout=WAIT_MS)
