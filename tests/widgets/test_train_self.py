"""The Train on this scan widget in a real viewer: a real (tiny) self-supervised training on a FlyEM crop's sparse
scan, the live curves, the weights file, Reconstruct this scan, Cancel that keeps the weights, notes, bad input and
Load parameters."""

from __future__ import annotations

import json
import math

import numpy as np

from napari_sparse_sem.metrics import psnr
from napari_sparse_sem.nn.weights import card_path, read_card
from napari_sparse_sem.recon.self_training import FIXED_MASK_NOTE
from napari_sparse_sem.widgets._worker import ERROR_STYLE
from napari_sparse_sem.widgets.train_self import TrainSelfWidget

WAIT_MS = 120_000  # how long a test waits for a worker: a bound for a stuck run, not a timing claim
TINY = {"log_every": 2, "validate_every": 4}  # fields the form does not show


def _tiny_widget(viewer, out, iterations: int = 12) -> TrainSelfWidget:
    widget = TrainSelfWidget(viewer)
    widget.extra = dict(TINY)
    widget.crop.value = 64
    widget.batch_size.value = 2
    widget.minutes.value = ""  # no time budget: the iterations decide
    widget.iterations.value = iterations
    widget.out.value = str(out)
    return widget


def test_trains_plots_and_reconstructs_the_scan(viewer, sample_layer, small_stack, acquired, wait_done, tmp_path):
    mask_layer, sparse_layer = acquired
    before = [layer.data.copy() for layer in (sample_layer, mask_layer, sparse_layer)]
    out = tmp_path / "self.safetensors"
    widget = _tiny_widget(viewer, out)
    assert widget.sparse.value is sparse_layer and widget.mask.value is mask_layer  # preselected pair
    assert widget.init.value == "flyem-context1" and not widget.recon_panel.run_button.isEnabled()
    widget.run()
    wait_done(widget.panel)

    card = read_card(out)
    training = card["training"]
    assert training["kind"] == "self-supervised" and training["iterations_done"] == 12
    assert training["crop"] == 64 and training["init_used"] == "flyem-context1"
    assert card["data"]["slices"] == [0, 1, 2, 3] and card["data"]["file"] == sparse_layer.name
    assert card["metrics"]["validation_pixels"] > 0
    loss_lines, psnr_lines = widget.plot.loss_axes.lines, widget.plot.psnr_axes.lines
    assert len(loss_lines) == 1 and len(loss_lines[0].get_xdata()) >= 6  # hidden-pixel MSE every 2 iterations
    assert len(psnr_lines) == 2  # validation PSNR and the linear baseline
    assert np.all(np.isfinite(psnr_lines[0].get_ydata())) and len(psnr_lines[0].get_xdata()) >= 3
    text = widget.panel.status.text()
    assert "self.safetensors" in text and "validation PSNR" in text and "linear" in text
    assert widget.notes.isHidden()  # per-slice masks: nothing to warn about
    assert widget.recon_panel.run_button.isEnabled()

    widget.reconstruct()
    wait_done(widget.recon_panel)
    layer = viewer.layers["flyem · random 10% · self"]
    assert layer is widget.layer and layer.metadata["method"] == "self" and layer.metadata["complete"] is True
    assert layer.metadata["options"] == {"weights": str(out)}
    assert widget.done_slices == [0, 1, 2, 3]
    np.testing.assert_array_equal(layer.scale, sample_layer.scale)
    mask = mask_layer.data.astype(bool)
    np.testing.assert_allclose(layer.data[mask], sparse_layer.data[mask], atol=1e-5)  # scanned pixels kept
    truth = small_stack / 255.0
    unscanned = psnr(truth[~mask], layer.data[~mask])
    assert math.isfinite(unscanned) and unscanned > 15.0  # a reconstruction, not zeros (~10 dB)
    for layer_, data in zip((sample_layer, mask_layer, sparse_layer), before, strict=True):
        np.testing.assert_array_equal(layer_.data, data)  # inputs untouched

    # The weights file is never replaced without asking.
    widget.run()
    assert widget.panel.status.styleSheet() == ERROR_STYLE and "overwrite" in widget.panel.status.text()
    assert not widget.panel.busy

    # Load parameters: the card fills the form back.
    widget.init.value = "none"
    widget.iterations.value = 99
    assert widget.load_parameters(card_path(out))
    assert widget.init.value == "flyem-context1" and int(widget.iterations.value) == 12
    assert not widget.load_parameters(_gan_card(tmp_path))
    assert "dense slices" in widget.panel.status.text()


def _gan_card(tmp_path):
    """A dense-trained GAN's card (the shipped one's training block)."""
    from napari_sparse_sem.recon.gan import SHIPPED_GAN_WEIGHTS

    return _write(tmp_path / "gan.json", read_card(SHIPPED_GAN_WEIGHTS["flyem"]))


def _write(path, data):
    path.write_text(json.dumps(data))
    return path


def test_cancel_keeps_the_weights_and_they_reconstruct(viewer, acquired, wait_done, qtbot, tmp_path):
    _mask_layer, sparse_layer = acquired
    out = tmp_path / "self.safetensors"
    widget = _tiny_widget(viewer, out, iterations=400)
    widget.run()
    qtbot.waitUntil(
        lambda: widget.panel.last_progress is not None and widget.panel.last_progress.step >= 6, timeout=WAIT_MS
    )
    widget.panel.cancel()
    wait_done(widget.panel)
    training = read_card(out)["training"]
    assert training["stopped"] == "cancelled" and 6 <= training["iterations_done"] < 400
    assert out.exists() and "saved" in widget.panel.status.text()
    assert widget.recon_panel.run_button.isEnabled() and widget.weights == out
    widget.reconstruct()
    wait_done(widget.recon_panel)
    layer = widget.layer
    assert layer is not None and layer.metadata["complete"] is True and layer.data.any()
    assert layer.metadata["sparse_layer"] == sparse_layer.name


def test_one_mask_for_every_slice_is_noted(viewer, sample_layer, small_stack, wait_done, tmp_path):
    mask = np.random.default_rng(0).random(small_stack.shape[1:]) < 0.1
    masks = np.broadcast_to(mask, small_stack.shape).astype(np.uint8)
    viewer.add_labels(masks, name="fixed mask")
    viewer.add_image(np.where(masks, small_stack / 255.0, 0.0).astype(np.float32), name="fixed sparse")
    widget = _tiny_widget(viewer, tmp_path / "fixed.safetensors", iterations=2)
    widget.sparse.value, widget.mask.value = viewer.layers["fixed sparse"], viewer.layers["fixed mask"]
    widget.run()
    wait_done(widget.panel)
    assert not widget.notes.isHidden() and FIXED_MASK_NOTE in widget.notes.text()
    assert read_card(tmp_path / "fixed.safetensors")["training"]["context_used"] == 0


def test_bad_input_is_reported_in_the_widget(viewer, sample_layer, acquired, tmp_path):
    mask_layer, sparse_layer = acquired
    widget = _tiny_widget(viewer, tmp_path / "a.safetensors")
    widget.mask.value = sparse_layer
    widget.run()
    assert "both the sparse layer and the mask" in widget.panel.status.text() and not widget.panel.busy
    widget.mask.value = mask_layer
    widget.first_slice.value, widget.last_slice.value = 3, 1
    widget.run()
    assert "before first slice" in widget.panel.status.text()
    widget.first_slice.value, widget.last_slice.value = 0, 9
    widget.run()
    assert "outside the stack" in widget.panel.status.text()
    widget.last_slice.value = 3
    widget.iterations.value = ""
    widget.run()
    assert "give a training budget" in widget.panel.status.text()
    widget.iterations.value = 4
    widget.init.value = "imagenet"
    widget.run()
    assert "init must be one of" in widget.panel.status.text()
    widget.init.value = "none"
    widget.out.value = str(tmp_path / "model.pt")
    widget.run()
    assert ".safetensors" in widget.panel.status.text() and not widget.panel.busy
    widget.reconstruct()  # nothing trained yet
    assert "train first" in widget.recon_panel.status.text()
