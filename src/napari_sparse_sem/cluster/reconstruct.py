"""Reconstruct a sparse stack on disk block by block on a ``dask.distributed`` cluster, into a resumable OME-Zarr store.

The application service behind ``sparse-sem reconstruct … --cluster`` and the *Reconstruct* widget's "run on cluster":
the same method code as the single-process path (:func:`~napari_sparse_sem.recon.to_file.reconstruct_to_file`) runs
per block (:mod:`napari_sparse_sem.recon.blocks`) on the workers, which write their chunks into the output themselves.
For methods that work slice by slice on whole slices the result is bit-identical to the single-process path; a method
with a warm start (DIP) starts cold at the first slice of every slab, and tiled methods see only their tile and halo.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_sparse_sem import __version__
from napari_sparse_sem.runtime import Job, Progress, run_job

__all__ = ["reconstruct_blocks_job", "reconstruct_on_cluster"]


def reconstruct_blocks_job(
    sparse_path: Path,
    mask_path: Path,
    method: str,
    out: Path,
    *,
    cluster: str = "local",
    client: Any = None,
    slices: tuple[int, int] | None = None,
    device: str = "auto",
    options: dict[str, Any] | None = None,
    overwrite: bool = False,
    resume: bool = False,
    slab: int | None = None,
    tile: int | None = None,
    workers_per_gpu: int = 1,
    memory_limit: str | None = None,
    pyramid: bool = True,
) -> Job[dict[str, Any]]:
    """The block-wise run as a generator job (progress per block); returns the metadata saved in ``out``.

    ``client``: an open ``distributed.Client`` to use; otherwise one is opened for ``cluster`` (see
    :func:`~napari_sparse_sem.cluster.connect.connect`) and closed at the end. Everything is checked before the
    cluster starts. A run with failed blocks ends with ``complete: false`` in the metadata and the failures listed;
    resume it (``resume=True``) to run only what is missing.
    """
    from contextlib import nullcontext

    from napari_sparse_sem.cluster.connect import connect
    from napari_sparse_sem.cluster.output import (
        default_slab,
        default_tile,
        finish_output,
        open_output,
        output_chunks,
        recorded_plan,
    )
    from napari_sparse_sem.cluster.run import new_stop_event, run_blocks
    from napari_sparse_sem.cluster.tasks import ReconstructTask, reconstruct_block
    from napari_sparse_sem.compare.spec import check_method_options, region_bounds
    from napari_sparse_sem.recon.base import method_class
    from napari_sparse_sem.recon.blocks import plan_blocks
    from napari_sparse_sem.recon.to_file import read_inputs, sparse_value_range
    from napari_sparse_sem.sampling.record import AcquisitionRecord

    options = dict(options or {})
    check_method_options(method, options)
    sparse_path, mask_path, out = Path(sparse_path), Path(mask_path), Path(out).expanduser()
    sparse_vol, sparse, _, meta_in = read_inputs(sparse_path, mask_path)
    a, b, *_ = region_bounds(sparse.shape, slices, None)
    shape = (b - a, int(sparse.shape[1]), int(sparse.shape[2]))
    cls = method_class(method)
    earlier = recorded_plan(out) if resume else {}  # a resumed run keeps its blocks unless told otherwise
    tile = tile if tile is not None else earlier.get("tile", default_tile(shape[1:], cls.tile_halo))
    if tile is not None and cls.tile_halo is None:
        raise ValueError(f"{method} needs whole slices (it interpolates over the whole slice); drop --tile")
    chunks = output_chunks(shape, tile)
    slab = slab or earlier.get("slab") or default_slab(shape[1:])
    blocks = plan_blocks(shape, chunks=chunks, slab=slab, tile=tile, halo=cls.tile_halo or 0)
    record = AcquisitionRecord.from_metadata(meta_in)
    vrange = sparse_value_range(record, meta_in, sparse)
    stored_dtype = sparse.dtype if sparse.dtype.kind in "iuf" else np.dtype(np.float32)
    settings = {
        "kind": "reconstruction",
        "sparse": str(sparse_path.resolve()),
        "mask": str(mask_path.resolve()),
        "input_shape": list(sparse.shape),
        "method": method,
        "options": options,
        "slices": [a, b],
        "value_range": [float(vrange[0]), float(vrange[1])],
        "dtype": str(stored_dtype),
        "slab": slab,
        "tile": tile,
    }
    meta = {
        "kind": "reconstruction",
        "method": method,
        "options": options,
        "sparse": str(sparse_path),
        "mask": str(mask_path),
        "slices": [a, b],
        "requested_slices": [a, b],
        "value_range": [float(vrange[0]), float(vrange[1])],
        "version": __version__,
        **(record.to_metadata() if record is not None else {}),
    }
    run_record, run_id, resumed = open_output(
        out,
        inputs=[sparse_path, mask_path],
        shape=shape,
        dtype=stored_dtype,
        chunks=chunks,
        voxel_size=sparse_vol.voxel_size,
        metadata=meta,
        settings=settings,
        overwrite=overwrite,
        resume=resume,
    )
    stop_event = new_stop_event()
    task = ReconstructTask(
        sparse=str(sparse_path.resolve()),
        mask=str(mask_path.resolve()),
        out=str(out.resolve()),
        method=method,
        options=options,
        device=device,
        value_range=(float(vrange[0]), float(vrange[1])),
        stored_dtype=str(stored_dtype),
        first_slice=a,
        run_id=run_id,
        stop_event=stop_event,
    )
    started = time.perf_counter()
    opened = (
        nullcontext(client)
        if client is not None
        else connect(cluster, device=device, workers_per_gpu=workers_per_gpu, memory_limit=memory_limit)
    )
    summary = None
    try:
        with opened as active:
            summary = yield from run_blocks(
                active, reconstruct_block, task, blocks, run_record, stop_event=stop_event, name="reconstruct"
            )
            if pyramid and run_record.complete(b.key for b in blocks):
                from napari_sparse_sem.io.pyramid import build_pyramid_job

                pyramid_job = build_pyramid_job(out, client=active)  # block-wise on the same workers, stoppable
                try:
                    for event in pyramid_job:
                        yield Progress(event.step, event.total, f"pyramid: {event.message}", event.partial)
                finally:
                    pyramid_job.close()
    finally:
        # after the cluster we started is closed, so blocks that were still running are counted (or gone)
        final = _final_metadata(meta, run_record, summary, blocks, started, cluster if client is None else None)
        final.update(slab=slab, tile=tile, resumed=resumed)
        saved = finish_output(out, final)
    return saved


def _final_metadata(
    meta: dict[str, Any], record: Any, summary: Any, blocks: list[Any], started: float, cluster: str | None
) -> dict[str, Any]:
    """The metadata of the store after a run (also a stopped or failed one): complete only with every block in."""
    done = record.done()
    failed = record.failed()
    devices = sorted({str(entry.get("device")) for entry in done.values() if entry.get("device")})
    return {
        **meta,
        "complete": all(b.key in done for b in blocks) and not failed,
        "device": devices[0] if len(devices) == 1 else devices,
        "seconds": time.perf_counter() - started,
        "cluster": cluster,
        "blocks": {
            "total": len(blocks),
            "done": sum(b.key in done for b in blocks),
            "failed": len(failed),
            "this_run": len(summary.finished) if summary is not None else None,
        },
        "failed_blocks": [{"key": key, "error": entry["error"].splitlines()[0]} for key, entry in failed.items()],
    }


def reconstruct_on_cluster(
    sparse_path: Path,
    mask_path: Path,
    method: str,
    out: Path,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """Run :func:`reconstruct_blocks_job` to the end (``kwargs`` are its keywords); returns the saved metadata."""
    return run_job(reconstruct_blocks_job(sparse_path, mask_path, method, out, **kwargs), on_progress)
