"""One acquisition record for every face: a sparse stack written by ``sparse-sem simulate`` keeps its parameters
when opened in napari and reconstructed by the widget, and the CLI and the widget draw the same scan for one spec."""

from __future__ import annotations

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from napari_sparse_sem.cli import app
from napari_sparse_sem.io import read_metadata
from napari_sparse_sem.io.napari_hooks import read_layers
from napari_sparse_sem.metrics import psnr
from napari_sparse_sem.sampling.record import RECORD_KEY, AcquisitionRecord
from napari_sparse_sem.widgets.acquisition import AcquisitionWidget
from napari_sparse_sem.widgets.reconstruct import ReconstructWidget


def _simulate(tmp_path, stack: np.ndarray, *flags: str):
    """``sparse-sem simulate`` of ``stack`` (saved as a TIFF); returns the sparse and mask paths."""
    source = tmp_path / "flyem.tif"
    tifffile.imwrite(source, stack)
    out = tmp_path / "sparse.tif"
    result = CliRunner().invoke(app, ["simulate", str(source), "--out", str(out), *flags], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out, tmp_path / "sparse_mask.tif"


def _open(viewer, path):
    """Open ``path`` the way napari does with our reader: one layer-data tuple, added as its layer type."""
    data, kwargs, kind = read_layers(str(path))[0]
    return getattr(viewer, f"add_{kind}")(np.asarray(data), **kwargs)


def test_cli_sparse_file_keeps_its_record_through_the_reconstruct_widget(viewer, small_stack, tmp_path, wait_done):
    sparse_path, mask_path = _simulate(tmp_path, small_stack, "--coverage", "10%", "--seed", "2")
    saved = AcquisitionRecord.from_metadata(read_metadata(sparse_path))
    assert saved.stored_range == (0.0, 255.0)  # the CLI stores the source's units (uint8)
    sparse_layer, mask_layer = _open(viewer, sparse_path), _open(viewer, mask_path)
    assert sparse_layer.data.dtype == np.uint8

    widget = ReconstructWidget(viewer)
    widget.sparse.value, widget.mask.value = sparse_layer, mask_layer
    widget.method.value = "linear"
    widget.run()
    wait_done(widget.panel)

    layer = widget.layer
    assert layer.metadata["complete"] is True
    assert layer.metadata[RECORD_KEY] == saved.to_dict()
    assert AcquisitionRecord.from_metadata(layer.metadata) == saved
    # The stored range from the record maps the uint8 values to [0, 1]: scanned pixels are the source's values.
    mask = mask_layer.data.astype(bool)
    reference = small_stack / 255.0
    np.testing.assert_allclose(layer.data[mask], reference[mask], atol=1e-6)
    assert psnr(reference, layer.data) > 26.0  # linear at 10 % on this crop (as the widget-made acquisition)


@pytest.mark.parametrize(("pattern", "per_slice"), [("random", True), ("bluenoise", True), ("grid", False)])
def test_cli_and_widget_make_the_same_scan(viewer, sample_layer, small_stack, tmp_path, wait_done, pattern, per_slice):
    widget = AcquisitionWidget(viewer)
    assert widget.coverage.value == 5.0  # the default coverage of every face
    widget.pattern.value = pattern
    widget.coverage.value = 7.5
    widget.per_slice.value = per_slice
    widget.seed.value = 4
    widget.dose.value = 30.0
    widget.run()
    wait_done(widget.panel)
    mask_layer = viewer.layers[f"flyem · {pattern} 7.5% · mask"]
    sparse_layer = viewer.layers[f"flyem · {pattern} 7.5% · sparse"]

    fixed = [] if per_slice else ["--fixed-mask"]
    flags = ["--pattern", pattern, "--coverage", "7.5%", "--seed", "4", "--dose", "30", *fixed]
    sparse_path, mask_path = _simulate(tmp_path, small_stack, *flags)
    cli_mask = tifffile.imread(mask_path).astype(bool)
    cli_sparse = tifffile.imread(sparse_path)

    np.testing.assert_array_equal(cli_mask, mask_layer.data.astype(bool))
    # The same shot noise too: the CLI stores it rounded to the source's uint8 steps.
    np.testing.assert_allclose(cli_sparse / 255.0, sparse_layer.data, atol=0.5 / 255 + 1e-6)
    cli = AcquisitionRecord.from_metadata(read_metadata(sparse_path))
    ours = AcquisitionRecord.from_metadata(sparse_layer.metadata)
    for name in ("mask_spec", "acquisition", "coverage", "scan_s", "dense_s", "path_length_px", "value_range"):
        assert getattr(cli, name) == getattr(ours, name), name
