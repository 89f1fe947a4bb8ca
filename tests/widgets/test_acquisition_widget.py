"""The Sparse acquisition widget in a real viewer: layers, metadata, placement, errors, settings."""

from __future__ import annotations

import numpy as np
import pytest
from napari.layers import Image, Labels

from napari_sparse_sem.sampling.record import AcquisitionRecord
from napari_sparse_sem.widgets._worker import ERROR_STYLE
from napari_sparse_sem.widgets.acquisition import AcquisitionWidget


def test_adds_mask_and_sparse_over_the_source(viewer, sample_layer, small_stack, wait_done):
    before = sample_layer.data.copy()
    widget = AcquisitionWidget(viewer)
    assert widget.source.value is sample_layer
    widget.pattern.value = "random"
    widget.coverage.value = 10.0
    widget.run()
    wait_done(widget.panel)

    assert [layer.name for layer in viewer.layers] == [
        "flyem",
        "flyem · random 10% · mask",
        "flyem · random 10% · sparse",
    ]
    mask_layer, sparse_layer = viewer.layers[1], viewer.layers[2]
    assert isinstance(mask_layer, Labels) and isinstance(sparse_layer, Image)
    mask = mask_layer.data.astype(bool)
    sparse = sparse_layer.data
    assert mask.shape == sparse.shape == small_stack.shape
    assert sparse.dtype == np.float32
    # Noiseless: scanned pixels hold the source value in [0, 1], the others 0.
    np.testing.assert_allclose(sparse[mask], small_stack[mask] / 255.0, atol=1e-6)
    assert not sparse[~mask].any()
    assert abs(mask.mean() - 0.10) < 0.005
    # A new mask for every slice by default.
    assert not np.array_equal(mask[0], mask[1])
    for layer in (mask_layer, sparse_layer):
        np.testing.assert_array_equal(layer.scale, sample_layer.scale)
        np.testing.assert_array_equal(layer.translate, sample_layer.translate)
    # Source contrast (uint8 0..255) mapped to [0, 1].
    np.testing.assert_allclose(
        sparse_layer.contrast_limits, np.asarray(sample_layer.contrast_limits) / 255.0, atol=1e-6
    )

    md = sparse_layer.metadata
    assert md["kind"] == "sparse" and mask_layer.metadata["kind"] == "mask"
    assert md["source_layer"] == "flyem"
    assert md["acquisition_id"] == mask_layer.metadata["acquisition_id"]
    record = AcquisitionRecord.from_metadata(md)
    assert record == AcquisitionRecord.from_metadata(mask_layer.metadata)
    assert record.mask_spec.pattern == "random" and record.mask_spec.coverage == pytest.approx(0.1)
    assert record.acquisition.dose is None and record.source == "flyem" and record.n_slices == 4
    assert record.value_range == (0.0, 255.0) and record.stored_range == (0.0, 1.0)  # the layer holds [0, 1]
    assert record.coverage == pytest.approx(mask.mean())
    assert record.path_length_px > mask[0].sum()  # the beam jumps between scattered pixels
    assert 0 < record.scan_s < record.dense_s
    assert "coverage 10.0" in widget.result_label.text() and "faster" in widget.result_label.text()
    # The source layer is only read.
    np.testing.assert_array_equal(sample_layer.data, before)
    assert sample_layer.data.dtype == np.uint8


def test_fixed_mask_and_dose(viewer, sample_layer, small_stack, wait_done):
    widget = AcquisitionWidget(viewer)
    widget.pattern.value = "grid"
    widget.coverage.value = 25.0
    widget.per_slice.value = False
    widget.dose.value = 20.0
    widget.run()
    wait_done(widget.panel)

    mask = viewer.layers["flyem · grid 25% · mask"].data.astype(bool)
    sparse = viewer.layers["flyem · grid 25% · sparse"].data
    assert all(np.array_equal(mask[0], mask[z]) for z in range(1, len(mask)))
    noise = sparse[mask] - small_stack[mask] / 255.0
    # Shot noise at 20 electrons per pixel: clearly noisy, but centred on the clean values.
    assert 0.03 < noise.std() < 0.3
    assert abs(noise.mean()) < 0.02
    assert AcquisitionRecord.from_metadata(viewer.layers["flyem · grid 25% · sparse"].metadata).acquisition.dose == 20.0


@pytest.mark.parametrize(
    ("data", "kwargs", "message"),
    [
        (np.zeros((64, 64, 3), np.uint8), {"rgb": True}, "RGB"),
        (np.zeros((2, 3, 32, 32), np.uint8), {}, "4 dimensions"),
        (None, {}, "coverage must be more than 0"),
    ],
    ids=["rgb", "4d", "coverage-0"],
)
def test_bad_input_shows_error_and_adds_nothing(viewer, small_stack, data, kwargs, message):
    if data is None:
        layer = viewer.add_image(small_stack.copy(), name="bad")
    else:
        layer = viewer.add_image(data, name="bad", **kwargs)
    before = np.asarray(layer.data).copy()
    widget = AcquisitionWidget(viewer)
    widget.source.value = layer
    if data is None:
        widget.coverage.value = 0.0
    widget.run()

    assert not widget.panel.busy
    assert message in widget.panel.status.text()
    assert widget.panel.status.styleSheet() == ERROR_STYLE
    assert len(viewer.layers) == 1
    np.testing.assert_array_equal(layer.data, before)


def test_parameters_persist_between_sessions(viewer, sample_layer, wait_done):
    widget = AcquisitionWidget(viewer)
    widget.pattern.value = "spiral"
    widget.coverage.value = 7.5
    widget.seed.value = 3
    widget.run()
    wait_done(widget.panel)

    again = AcquisitionWidget(viewer)
    assert (again.pattern.value, again.coverage.value, again.seed.value) == ("spiral", 7.5, "3")
