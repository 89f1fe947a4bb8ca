"""The Reconstruct widget's *Run on cluster*: real ``local:2`` dask clusters on small FlyEM crops.

Inputs read from files go to the workers as those files; in-memory layers go through scratch copies; the finished store
opens lazily and equals the in-memory result; Cancel keeps the finished blocks and Resume runs only the rest.
"""

from __future__ import annotations

import dask.array as da
import numpy as np
from napari.layers import Layer

from napari_sparse_sem.cluster.run import BlockDone
from napari_sparse_sem.cluster.store import RunRecord
from napari_sparse_sem.io import read_metadata, write_volume
from napari_sparse_sem.io.napari_hooks import read_layers
from napari_sparse_sem.runtime import Progress
from napari_sparse_sem.widgets._worker import ERROR_STYLE
from napari_sparse_sem.widgets.acquisition import AcquisitionWidget
from napari_sparse_sem.widgets.reconstruct import ReconstructWidget

WAIT_MS = 120_000  # how long a test waits for a worker: a bound for a stuck run, not a timing claim


def _on_cluster(widget: ReconstructWidget, out, *, slab: int = 0, resume: bool = False) -> None:
    section = widget.cluster.section
    section.enabled.value = True
    section.cluster.value = "local:2"
    section.output.value = str(out)
    section.slab.value = slab
    section.resume.value = resume


def _open(viewer, path) -> Layer:
    """Open ``path`` through our reader, as napari's File > Open does."""
    ((data, kwargs, kind),) = read_layers(str(path))
    return viewer.add_layer(Layer.create(data, kwargs, kind))


def _done_markers(out) -> list[dict]:
    """The finished-block records in the store (``<out>/.sparse-sem-run/done/``), one per block."""
    return list(RunRecord(out).done().values())


def test_file_layers_run_on_cluster_like_in_memory(viewer, acquired, wait_done, tmp_path):
    mask_layer, sparse_layer = acquired
    sparse_file = write_volume(tmp_path / "sparse.zarr", sparse_layer.data, metadata=sparse_layer.metadata)
    mask_file = write_volume(tmp_path / "mask.zarr", mask_layer.data != 0, metadata=mask_layer.metadata)
    sparse, mask = _open(viewer, sparse_file), _open(viewer, mask_file)
    widget = ReconstructWidget(viewer)
    widget.sparse.value, widget.mask.value = sparse, mask
    widget.method.value, widget.device.value = "linear", "cpu"
    widget.run()  # in memory first: the reference
    wait_done(widget.panel, WAIT_MS)
    in_memory = np.asarray(widget.layer.data).copy()

    out = tmp_path / "recon.zarr"
    _on_cluster(widget, out, slab=2)
    assert widget.panel.run_button.text() == "Reconstruct on cluster"
    widget.run()
    wait_done(widget.panel, WAIT_MS)

    assert widget.panel.status.styleSheet() != ERROR_STYLE, widget.panel.status.text()
    result = viewer.layers[f"{widget.layer.name} (cluster)"]
    assert isinstance(result.data, da.Array)  # lazy: the store, not a copy in memory
    np.testing.assert_array_equal(np.asarray(result.data), in_memory)
    np.testing.assert_array_equal(result.scale, sparse.scale)
    assert result.metadata["complete"] is True and result.metadata["store"] == str(out)
    assert result.metadata["blocks"] == {"total": 2, "done": 2, "failed": 0, "this_run": 2}
    # The workers read the files the layers came from: no scratch copies.
    assert read_metadata(out)["sparse"] == str(sparse_file)
    assert not (tmp_path / ".recon.inputs").exists()
    info = widget.cluster.info
    assert not info.isHidden() and info.openExternalLinks() and '<a href="http' in info.text()
    assert "2 worker(s)" in info.text()

    widget.run()  # the store exists now: refused without Resume, nothing runs
    assert not widget.panel.busy and "tick Resume" in widget.panel.status.text()
    again = ReconstructWidget(viewer).cluster.section  # the cluster fields are remembered with the others
    remembered = again.enabled.value, again.cluster.value, again.output.value, again.slab.value
    assert remembered == (True, "local:2", str(out), 2)


def test_refusals_before_any_cluster_starts(viewer, acquired, tmp_path):
    widget = ReconstructWidget(viewer)
    section = widget.cluster.section
    section.enabled.value = True
    for output, resume, message in (
        (None, False, "choose an output store"),
        (tmp_path / "recon.tif", False, "name the output *.zarr"),
        (tmp_path, True, "name the output *.zarr"),
    ):
        section.output.value, section.resume.value = output, resume
        widget.run()
        assert not widget.panel.busy and message in widget.panel.status.text()
    section.output.value, section.cluster.value = str(tmp_path / "r.zarr"), "slurm-please"
    widget.run()
    assert not widget.panel.busy and "local:N" in widget.panel.status.text()


def test_in_memory_layers_cancel_then_resume(viewer, flyem_crop_uint8, wait_done, qtbot, tmp_path):
    stack = viewer.add_image(flyem_crop_uint8[:24].copy(), name="stack24")
    acquisition = AcquisitionWidget(viewer)
    acquisition.source.value, acquisition.pattern.value, acquisition.coverage.value = stack, "random", 10.0
    acquisition.run()
    wait_done(acquisition.panel, WAIT_MS)
    widget = ReconstructWidget(viewer)
    sparse, mask = widget.sparse.value, widget.mask.value
    assert sparse.name == "stack24 · random 10% · sparse" and mask.name == "stack24 · random 10% · mask"
    before = sparse.data.copy(), mask.data.copy()
    widget.method.value, widget.device.value = "linear", "cpu"
    out = tmp_path / "recon.zarr"
    scratch = tmp_path / ".recon.inputs"
    _on_cluster(widget, out, slab=1)  # 24 blocks of one slice

    # Cancel as soon as the first block is in.
    def cancel_on_first_block(event: Progress) -> None:
        if isinstance(event.partial, BlockDone):
            widget.panel.cancel()

    widget.run()
    widget.panel.worker.yielded.connect(cancel_on_first_block)
    wait_done(widget.panel, WAIT_MS)

    first = _done_markers(out)
    assert 0 < len(first) < 24
    assert read_metadata(out)["complete"] is False
    status = widget.panel.status.text()
    assert f"cancelled: {len(first)} of 24 blocks are in recon.zarr" in status and "Resume" in status
    unfinished = viewer.layers[f"stack24 · random 10% · linear (cluster, unfinished: {len(first)} of 24 blocks)"]
    assert isinstance(unfinished.data, da.Array)
    # The in-memory layers went to the workers as scratch copies with their metadata; the layers are untouched.
    copied = read_metadata(scratch / "sparse.zarr")
    assert copied["acquisition_id"] == sparse.metadata["acquisition_id"] and "acquisition_record" in copied
    assert read_metadata(scratch / "mask.zarr")["kind"] == "mask"
    np.testing.assert_array_equal(sparse.data, before[0])
    np.testing.assert_array_equal(mask.data, before[1])

    widget.cluster.section.resume.value = True
    messages: list[str] = []
    widget.run()
    widget.panel.worker.yielded.connect(lambda event: messages.append(event.message))
    wait_done(widget.panel, WAIT_MS)

    assert widget.panel.status.styleSheet() != ERROR_STYLE, widget.panel.status.text()
    markers = _done_markers(out)
    first_run = {m["run_id"] for m in first}
    resumed = [m for m in markers if m["run_id"] not in first_run]
    assert len(markers) == 24 and len(resumed) == 24 - len(first)  # only the rest ran
    assert not any(message.startswith("writing") for message in messages)  # the scratch copies were reused
    assert read_metadata(out)["complete"] is True
    assert not scratch.exists()  # removed once complete
    result = viewer.layers["stack24 · random 10% · linear (cluster)"]
    assert unfinished not in viewer.layers  # replaced by the finished store
    assert result.metadata["acquisition_id"] == sparse.metadata["acquisition_id"]
    scanned = mask.data == 1
    np.testing.assert_allclose(np.asarray(result.data)[scanned], sparse.data[scanned], atol=1e-6)
