"""Simulate the sparse scan of a dense stack block by block on a ``dask.distributed`` cluster, into two resumable
OME-Zarr stores (the sparse stack and its mask).

The service behind ``sparse-sem simulate … --cluster``. Each block is a slab of whole slices (mask patterns are drawn
over whole slices); slice ``i`` of the requested range gets the mask and noise of index ``i``, exactly as in the
single-process path, so both give the same bytes. The per-slice figures (coverage, scan time, beam path) are kept in
the block records and make the :class:`~napari_sparse_sem.sampling.record.AcquisitionRecord` at the end.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_sparse_sem import __version__
from napari_sparse_sem.runtime import Job, Progress, run_job

__all__ = ["ClusterScan", "simulate_blocks_job", "simulate_on_cluster"]


@dataclass
class ClusterScan:
    """What a block-wise simulation produced: the record (None while blocks are missing), the per-slice figures of the
    finished blocks and the metadata saved in both stores."""

    record: Any
    coverage: np.ndarray
    scan_s: np.ndarray
    path_length_px: np.ndarray
    dense_s: float
    metadata: dict[str, Any]

    @property
    def complete(self) -> bool:
        """Every block of the run is in the stores."""
        return bool(self.metadata.get("complete"))


def mask_path_of(out: Path) -> Path:
    """Where the mask of a sparse output goes: beside it, stem + ``_mask`` (as the single-process path)."""
    return out.with_name(f"{out.stem}_mask{out.suffix}")


def simulate_blocks_job(
    volume: Path,
    out: Path,
    mask_spec: Any,
    acquisition: Any,
    *,
    cluster: str = "local",
    client: Any = None,
    slices: tuple[int, int] | None = None,
    roi: tuple[int, int, int, int] | None = None,
    overwrite: bool = False,
    resume: bool = False,
    slab: int | None = None,
    memory_limit: str | None = None,
    mask_out: Path | None = None,
) -> Job[ClusterScan]:
    """The block-wise simulation as a generator job (progress per block); returns a :class:`ClusterScan`.

    ``acquisition``'s seed is used as given (the CLI sets it to the mask seed, as in the single-process path).
    """
    from napari_sparse_sem.cluster.connect import connect
    from napari_sparse_sem.cluster.output import default_slab, finish_output, open_output, output_chunks, recorded_plan
    from napari_sparse_sem.cluster.run import new_stop_event, run_blocks
    from napari_sparse_sem.cluster.tasks import SimulateTask, simulate_block
    from napari_sparse_sem.compare.spec import region_bounds
    from napari_sparse_sem.io import read_volume
    from napari_sparse_sem.io.volume import as_zyx, value_range
    from napari_sparse_sem.recon.blocks import plan_blocks

    volume, out = Path(volume), Path(out).expanduser()
    mask_out = Path(mask_out) if mask_out is not None else mask_path_of(out)
    if not volume.exists():
        raise FileNotFoundError(f"no such file or folder: {volume}")
    vol = read_volume(volume, lazy=True)
    data = as_zyx(vol.data, str(volume))
    a, b, y0, y1, x0, x1 = region_bounds(data.shape, slices, roi)
    shape = (b - a, y1 - y0, x1 - x0)
    chunks = output_chunks(shape, None)
    slab = slab or (recorded_plan(out) if resume else {}).get("slab") or default_slab(shape[1:])
    blocks = plan_blocks(shape, chunks=chunks, slab=slab)
    vrange = value_range(data[a:b, y0:y1, x0:x1])
    stored_dtype = data.dtype if data.dtype.kind in "iuf" else np.dtype(np.float32)
    settings = {
        "kind": "sparse",
        "volume": str(volume.resolve()),
        "input_shape": list(data.shape),
        "mask_spec": mask_spec.to_dict(),
        "acquisition": acquisition.to_dict(),
        "slices": [a, b],
        "roi": [y0, y1, x0, x1],
        "value_range": [float(vrange[0]), float(vrange[1])],
        "dtype": str(stored_dtype),
        "slab": slab,
    }
    base = {"version": __version__, "source": str(volume), "slices": [a, b], "roi": [y0, y1, x0, x1]}
    common = {"inputs": [volume], "shape": shape, "chunks": chunks, "voxel_size": vol.voxel_size}
    common.update(settings=settings, overwrite=overwrite, resume=resume)
    for target in (out, mask_out):
        if not resume and target.exists() and not overwrite:
            raise FileExistsError(f"{target} already exists; use --resume, --overwrite, or choose another name")
    if resume and out.exists() != mask_out.exists():
        raise ValueError(f"cannot resume: only one of {out} and {mask_out} exists; use --overwrite to start again")
    record, run_id, resumed = open_output(
        out, dtype=stored_dtype, metadata={"kind": "sparse", **base, "mask_file": mask_out.name}, **common
    )
    open_output(mask_out, dtype=bool, metadata={"kind": "mask", **base, "sparse_file": out.name}, **common)
    stop_event = new_stop_event()
    task = SimulateTask(
        volume=str(volume.resolve()),
        sparse_out=str(out.resolve()),
        mask_out=str(mask_out.resolve()),
        mask_spec=mask_spec,
        acquisition=acquisition,
        value_range=(float(vrange[0]), float(vrange[1])),
        stored_dtype=str(stored_dtype),
        first_slice=a,
        roi=(y0, y1, x0, x1),
        run_id=run_id,
        stop_event=stop_event,
    )
    started = time.perf_counter()
    opened = nullcontext(client) if client is not None else connect(cluster, device="cpu", memory_limit=memory_limit)
    scan = None
    try:
        with opened as active:
            yield from run_blocks(active, simulate_block, task, blocks, record, stop_event=stop_event, name="simulate")
    finally:  # after the cluster we started is closed, so blocks that were still running are counted (or gone)
        scan = _finish(out, mask_out, record, blocks, mask_spec, acquisition, vrange, volume, (a, b), (y0, y1, x0, x1))
        for target in (out, mask_out):
            scan.metadata.update(seconds=time.perf_counter() - started, resumed=resumed, slab=slab)
            finish_output(target, scan.metadata | {"kind": "sparse" if target == out else "mask"})
    yield Progress(len(blocks), len(blocks), "done")
    return scan


def _finish(
    out: Path,
    mask_out: Path,
    record: Any,
    blocks: list[Any],
    mask_spec: Any,
    acquisition: Any,
    vrange: tuple[float, float],
    volume: Path,
    slices: tuple[int, int],
    roi: tuple[int, int, int, int],
) -> ClusterScan:
    """The per-slice figures of the finished blocks in slice order, and the metadata both stores get."""
    from napari_sparse_sem.sampling.path import dense_scan_time
    from napari_sparse_sem.sampling.record import AcquisitionRecord

    done = record.done()
    finished = [b for b in blocks if b.key in done]
    figures = {
        name: np.concatenate([done[b.key][name] for b in finished]) if finished else np.zeros(0)
        for name in ("coverage", "scan_s", "path_length_px")
    }
    failed = record.failed()
    complete = len(finished) == len(blocks) and not failed
    plane = (roi[1] - roi[0], roi[3] - roi[2])
    dense_slice_s = float(dense_scan_time(plane, acquisition).seconds)
    n = len(figures["coverage"])
    acq_record = None
    meta: dict[str, Any] = {
        "version": __version__,
        "complete": complete,
        "sparse_file": out.name,
        "mask_file": mask_out.name,
    }
    if complete:
        acq_record = AcquisitionRecord(
            mask_spec=mask_spec,
            acquisition=acquisition,
            coverage=float(np.mean(figures["coverage"])),
            scan_s=float(np.sum(figures["scan_s"])),
            dense_s=dense_slice_s * n,
            path_length_px=float(np.sum(figures["path_length_px"])),
            n_slices=n,
            value_range=(float(vrange[0]), float(vrange[1])),
            stored_range=(float(vrange[0]), float(vrange[1])),
            source=str(volume),
            slices=slices,
            roi=roi,
        )
        meta.update(acq_record.to_metadata())
    meta["blocks"] = {"total": len(blocks), "done": len(finished), "failed": len(failed)}
    meta["failed_blocks"] = [{"key": k, "error": e["error"].splitlines()[0]} for k, e in failed.items()]
    return ClusterScan(
        acq_record, figures["coverage"], figures["scan_s"], figures["path_length_px"], dense_slice_s * n, meta
    )


def simulate_on_cluster(
    volume: Path,
    out: Path,
    mask_spec: Any,
    acquisition: Any,
    *,
    on_progress: Callable[[Progress], None] | None = None,
    **kwargs: Any,
) -> ClusterScan:
    """Run :func:`simulate_blocks_job` to the end (``kwargs`` are its keywords)."""
    return run_job(simulate_blocks_job(volume, out, mask_spec, acquisition, **kwargs), on_progress)
