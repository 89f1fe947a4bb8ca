"""What one worker does for one block: read its inputs lazily, run the ordinary single-process code on them, write its
output chunks straight into the store and record the block as finished.

The tasks are plain top-level functions of picklable arguments (a task description and a
:class:`~napari_sparse_sem.recon.blocks.Block`), so any dask worker can run them; only a small dict of figures goes back
through the scheduler, never image data. A task stops between slices when the run's stop event is set (Cancel).
"""

from __future__ import annotations

import functools
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_sparse_sem.cluster.store import RunRecord
from napari_sparse_sem.recon.blocks import Block

__all__ = ["ReconstructTask", "SimulateTask", "reconstruct_block", "simulate_block"]

STOP_POLL_S = 0.5
"""How often a running block asks the scheduler whether the run was cancelled."""


@dataclass(frozen=True)
class ReconstructTask:
    """Everything a worker needs to reconstruct any block of one run (the same object for every block)."""

    sparse: str
    mask: str
    out: str
    method: str
    options: dict[str, Any]
    device: str
    value_range: tuple[float, float]
    stored_dtype: str
    first_slice: int  # the input slice that is output slice 0 (``--slices A:B`` → A)
    run_id: str
    stop_event: str | None = None


@dataclass(frozen=True)
class SimulateTask:
    """Everything a worker needs to simulate the scan of any slab of one run."""

    volume: str
    sparse_out: str
    mask_out: str
    mask_spec: Any  # MaskSpec
    acquisition: Any  # AcquisitionSpec
    value_range: tuple[float, float]
    stored_dtype: str
    first_slice: int
    roi: tuple[int, int, int, int]  # y0, y1, x0, x1 of every input slice
    run_id: str
    stop_event: str | None = None


@functools.lru_cache(maxsize=8)
def _open(path: str, modified: float) -> Any:
    """The lazy (z, y, x) array of a volume file, opened once per worker process (and again when the file changes)."""
    from napari_sparse_sem.io import read_volume
    from napari_sparse_sem.io.volume import as_zyx

    return as_zyx(read_volume(path, lazy=True).data, path)


def open_volume(path: str) -> Any:
    """The lazy array of ``path`` (cached per process)."""
    return _open(path, os.path.getmtime(path))


def read_region(array: Any, region: tuple[slice, ...]) -> np.ndarray:
    """``array[region]`` as numpy, computed in this thread: inside a task a lazy dask read must not be sent back to
    the cluster as a graph of its own."""
    import dask

    with dask.config.set(scheduler="synchronous"):
        return np.asarray(array[region])


def _stopper(name: str | None) -> Callable[[], bool] | None:
    """``should_stop`` for :func:`run_job`: asks the scheduler at most every :data:`STOP_POLL_S` seconds."""
    if not name:
        return None
    from distributed import Event

    event = Event(name)
    last = [time.monotonic()]

    def should_stop() -> bool:
        now = time.monotonic()
        if now - last[0] < STOP_POLL_S:
            return False
        last[0] = now
        return bool(event.is_set())

    return should_stop


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _write(store: str, region: tuple[slice, ...], data: np.ndarray) -> None:
    import zarr

    array = zarr.open_array(f"{store}/0", mode="r+")
    array[region] = data


def reconstruct_block(task: ReconstructTask, block: Block) -> dict[str, Any]:
    """Reconstruct ``block`` and write it into ``task.out``; returns (and records) its figures."""
    from napari_sparse_sem.io.volume import from_float01, to_float01
    from napari_sparse_sem.recon.base import method_class
    from napari_sparse_sem.recon.volume import SliceDone, reconstruct_volume
    from napari_sparse_sem.runtime import pick_device, run_job

    started = time.perf_counter()
    device = pick_device(task.device)
    sparse, mask = open_volume(task.sparse), open_volume(task.mask)
    reconstructor = method_class(task.method)(device=device, **task.options)
    context = max(0, int(reconstructor.context))
    z0, z1 = block.z[0] + task.first_slice, block.z[1] + task.first_slice
    r0, r1 = max(0, z0 - context), min(int(sparse.shape[0]), z1 + context)
    read = (slice(r0, r1), slice(*block.read_y), slice(*block.read_x))
    values = to_float01(read_region(sparse, read), task.sparse, task.value_range)
    known = read_region(mask, read) != 0
    scanned = known[z0 - r0 : z1 - r0].reshape(z1 - z0, -1).any(axis=1)
    if not scanned.all():  # said here in input slice numbers (the volume driver counts from the block's first slice)
        reconstructor.close()
        where = "" if block.read_y == (0, sparse.shape[1]) and block.read_x == (0, sparse.shape[2]) else " in this tile"
        raise ValueError(f"input slice {z0 + int(np.argmin(scanned))} has no scanned pixels{where}; check the mask")
    slice_info: list[dict[str, Any]] = []

    def keep(event: Any) -> None:
        if isinstance(event.partial, SliceDone) and event.partial.info:
            slice_info.append({"z": int(event.partial.z) - (r0 - task.first_slice), **event.partial.info})

    job = reconstruct_volume(values, known, reconstructor, slices=range(z0 - r0, z1 - r0))
    result = run_job(job, keep, _stopper(task.stop_event))
    _, inner_y, inner_x = block.inner
    image = result[z0 - r0 : z1 - r0, inner_y, inner_x]
    _write(task.out, block.out_region, from_float01(image, task.stored_dtype, task.value_range))
    info = {
        "seconds": time.perf_counter() - started,
        "worker": _worker_name(),
        "device": device,
        "run_id": task.run_id,
        "slices": slice_info,
    }
    RunRecord(task.out).mark_done(block.key, info)
    return {"key": block.key, **info}


def simulate_block(task: SimulateTask, block: Block) -> dict[str, Any]:
    """Simulate the scan of the slab ``block`` (whole slices of the region) into both output stores."""
    from napari_sparse_sem.io.volume import SliceMap, to_float01
    from napari_sparse_sem.runtime import run_job
    from napari_sparse_sem.sampling.simulate import simulate_job

    started = time.perf_counter()
    y0, y1, x0, x1 = task.roi
    z0, z1 = block.z[0] + task.first_slice, block.z[1] + task.first_slice
    dense = read_region(open_volume(task.volume), (slice(z0, z1), slice(y0, y1), slice(x0, x1)))
    scaled = SliceMap(dense, functools.partial(to_float01, what=task.volume, value_range_=task.value_range), np.float32)
    shape = (z1 - z0, y1 - y0, x1 - x0)
    sparse = np.zeros(shape, np.dtype(task.stored_dtype))
    mask = np.zeros(shape, bool)
    job = simulate_job(
        scaled,
        task.mask_spec,
        task.acquisition,
        sparse_out=sparse,
        mask_out=mask,
        stored_range=task.value_range,
        z_offset=z0,
        first_index=block.z[0],
    )
    scan = run_job(job, None, _stopper(task.stop_event))
    _write(task.sparse_out, block.out_region, sparse)
    _write(task.mask_out, block.out_region, mask.astype(np.uint8))
    info = {
        "seconds": time.perf_counter() - started,
        "worker": _worker_name(),
        "run_id": task.run_id,
        "coverage": scan.coverage.tolist(),
        "scan_s": scan.scan_s.tolist(),
        "path_length_px": scan.path_length_px.tolist(),
        "pattern_info": scan.info if block.z[0] == 0 else {},
    }
    RunRecord(task.sparse_out).mark_done(block.key, info)
    return {"key": block.key, **info}
