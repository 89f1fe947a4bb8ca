"""One acquisition record for every face: a sparse stack written by ``sparse-sem simulate`` keeps its parameters
when opened in napari and reconstructed by the widget, and the CLI and the widget draw the same scan for one spec."""

from __future__ import annotations

import inspect
import json

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from napari_sparse_sem.cli import app
from napari_sparse_sem.cli.simulate import simulate as simulate_command
from napari_sparse_sem.io import read_metadata
from napari_sparse_sem.io.napari_hooks import read_layers
from napari_sparse_sem.metrics import psnr
from napari_sparse_sem.params import fields_of
from napari_sparse_sem.sampling.record import RECORD_KEY, AcquisitionRecord
from napari_sparse_sem.sampling.spec import AcquisitionSpec, MaskSpec
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


def test_results_from_a_file_carry_the_run_record_of_the_same_cli_command(viewer, small_stack, tmp_path, wait_done):
    source = tmp_path / "dense.tif"
    tifffile.imwrite(source, small_stack)
    (layer,) = viewer.open(str(source), plugin="napari-sparse-sem")
    widget = AcquisitionWidget(viewer)
    widget.source.value = layer
    widget.pattern.value = "spiral"
    widget.coverage.value = 7.5
    widget.per_slice.value = False
    widget.seed.value = "4"
    widget.dose.value = "30"
    widget.run()
    wait_done(widget.panel)

    sparse = viewer.layers["dense · spiral 7.5% · sparse"]
    mask = viewer.layers["dense · spiral 7.5% · mask"]
    record = sparse.metadata["run"]
    assert mask.metadata["run"] == record and record["command"] == "simulate"
    # The arguments are the command's parameters, named and valued as the specs' fields.
    mask_spec, acq_spec = widget.specs()
    arguments = dict(record["arguments"])
    assert arguments.pop("volume") == str(source.absolute())
    expected = {f.name: getattr(mask_spec, f.name) for f in fields_of(MaskSpec)}
    expected |= {f.name: getattr(acq_spec, f.name) for f in fields_of(AcquisitionSpec) if f.name != "seed"}
    assert arguments == expected  # one seed for masks and noise, as the command takes it
    assert set(record["arguments"]) <= set(inspect.signature(simulate_command).parameters)

    # `sparse-sem run` makes the same scan from the record.
    params = tmp_path / "record.json"
    params.write_text(json.dumps({"run": record}))
    out = tmp_path / "again.tif"
    result = CliRunner().invoke(app, ["run", str(params), "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(tifffile.imread(tmp_path / "again_mask.tif").astype(bool), mask.data.astype(bool))
    np.testing.assert_allclose(tifffile.imread(out) / 255.0, sparse.data, atol=0.5 / 255)

    # Results of in-memory data carry no record: there is no file to run the command on.
    memory = viewer.add_image(small_stack.copy(), name="memory")
    widget.source.value = memory
    widget.run()
    wait_done(widget.panel)
    assert "run" not in viewer.layers["memory · spiral 7.5% · sparse"].metadata
