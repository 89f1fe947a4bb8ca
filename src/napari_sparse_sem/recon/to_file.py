"""Reconstruct a sparse stack on disk into a volume file, slice by slice, keeping what finished when the run stops.

The application service behind ``sparse-sem reconstruct`` (and usable from Python): the inputs stay lazy, finished
slices go to a disk-backed scratch array and are written out slice by slice, so memory is bounded by the slabs the
method reads, not the volume. The sparse stack's :class:`~napari_sparse_sem.sampling.record.AcquisitionRecord` says
how its values are stored and is passed on to the reconstruction's metadata.
"""

from __future__ import annotations

import functools
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from napari_sparse_sem import __version__
from napari_sparse_sem.partial import Interrupted
from napari_sparse_sem.runtime import Progress, run_job

__all__ = ["Interrupted", "metrics_path", "quality_to_file", "read_inputs", "reconstruct_to_file"]


def _read(path: Path) -> Any:
    from napari_sparse_sem.io import read_volume
    from napari_sparse_sem.io.readers import split_h5_path

    if not split_h5_path(path)[0].exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    return read_volume(path, lazy=True)


def read_inputs(sparse_path: Path, mask_path: Path) -> tuple[Any, Any, Any, dict[str, Any]]:
    """The sparse volume, its lazy (z, y, x) array, the mask's and the sparse file's metadata; the two stacks must
    have the same shape (a clear error otherwise). Also the block-wise path's reader."""
    from napari_sparse_sem.io.volume import as_zyx

    sparse_vol, mask_vol = _read(sparse_path), _read(mask_path)
    sparse = as_zyx(sparse_vol.data, str(sparse_path))
    mask = as_zyx(mask_vol.data, str(mask_path))
    if tuple(sparse.shape) != tuple(mask.shape):
        raise ValueError(
            f"the sparse stack {tuple(sparse.shape)} and the mask {tuple(mask.shape)} must have the same shape"
        )
    meta = sparse_vol.metadata if isinstance(sparse_vol.metadata, dict) else {}
    return sparse_vol, sparse, mask, meta


def _nonzero(plane: np.ndarray) -> np.ndarray:
    return plane != 0


class _SlabWindow:
    """Slices ``first .. first + len(block)`` of a volume of ``shape``, stored in ``block``: the driver writes
    ``out[z]`` with volume indices while the scratch holds only the requested slices."""

    def __init__(self, block: np.ndarray, first: int, shape: tuple[int, ...]) -> None:
        self.block, self.first, self.shape = block, first, tuple(shape)

    def __setitem__(self, z: int, value: np.ndarray) -> None:
        self.block[z - self.first] = value

    def __getitem__(self, z: int) -> np.ndarray:
        return self.block[z - self.first]


def sparse_value_range(record: Any, meta: dict[str, Any], sparse: Any) -> tuple[float, float]:
    """The stored values of ``sparse`` that map to [0, 1]: from its acquisition record, else its saved value range,
    else measured."""
    from napari_sparse_sem.io.volume import value_range

    if record is not None:
        return record.stored_range
    if "value_range" in meta:
        return tuple(meta["value_range"])  # type: ignore[return-value]
    return value_range(sparse)


def reconstruct_to_file(
    sparse_path: Path,
    mask_path: Path,
    method: str,
    out: Path,
    *,
    slices: tuple[int, int] | None = None,
    device: str = "auto",
    options: dict[str, Any] | None = None,
    overwrite: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
) -> dict[str, Any]:
    """Reconstruct slices ``A:B`` of a sparse stack and write them to ``out``; returns the saved metadata.

    The output path, the free space and the inputs are checked before any work. When the run stops early — Ctrl-C or
    a stop signal (raised from anywhere, including ``on_progress``), or an error on a later slice — the finished
    leading slices are written with ``complete: false``; a stop then raises :class:`Interrupted`, an error is raised
    again saying what was kept.
    """
    from napari_sparse_sem.compare.spec import check_method_options, region_bounds
    from napari_sparse_sem.io import write_volume
    from napari_sparse_sem.io.volume import SliceMap, from_float01, to_float01
    from napari_sparse_sem.outputs import check_output_file, check_volume_space, scratch_array
    from napari_sparse_sem.recon.volume import SliceDone, reconstruct_volume
    from napari_sparse_sem.runtime import pick_device
    from napari_sparse_sem.sampling.record import AcquisitionRecord

    options = dict(options or {})
    check_method_options(method, options)
    check_output_file(out, [sparse_path, mask_path], overwrite=overwrite)
    sparse_vol, sparse, mask, meta_in = read_inputs(sparse_path, mask_path)
    resolved = pick_device(device)
    a, b, *_ = region_bounds(sparse.shape, slices, None)
    record = AcquisitionRecord.from_metadata(meta_in)
    vrange = sparse_value_range(record, meta_in, sparse)
    scaled = SliceMap(sparse, functools.partial(to_float01, what=str(sparse_path), value_range_=vrange), np.float32)
    scanned = SliceMap(mask, _nonzero, bool)
    stored_dtype = sparse.dtype if sparse.dtype.kind in "iuf" else np.dtype(np.float32)
    wanted = list(range(a, b))
    finished: set[int] = set()
    notes: list[str] = []
    scratch_dir = out.parent if out.parent.is_dir() else None

    # ignore_cleanup_errors: on Windows the memory-mapped file may still be open when the folder goes.
    with tempfile.TemporaryDirectory(prefix=".sparse-sem-", dir=scratch_dir, ignore_cleanup_errors=True) as scratch:
        block_shape = (b - a, *tuple(sparse.shape)[1:])
        out_block = scratch_array(scratch, "reconstruction", np.float32, block_shape)
        check_volume_space([(out, stored_dtype)], block_shape)

        def save(n_done: int, complete: bool, seconds: float) -> dict[str, Any]:
            to_source = functools.partial(from_float01, dtype=stored_dtype, value_range_=vrange)
            stored = SliceMap(out_block[:n_done], to_source, stored_dtype)
            meta = {
                "kind": "reconstruction",
                "method": method,
                "options": options,
                "device": resolved,
                "sparse": str(sparse_path),
                "mask": str(mask_path),
                "slices": [a, a + n_done],
                "requested_slices": [a, b],
                "complete": complete,
                "seconds": seconds,
                "value_range": [float(vrange[0]), float(vrange[1])],
                "version": __version__,
            }
            if notes:
                meta["weights_note"] = notes[0]
            if record is not None:
                meta.update(record.to_metadata())
            write_volume(out, stored, voxel_size=sparse_vol.voxel_size, metadata=meta, overwrite=True)
            return meta

        start = time.perf_counter()
        job = reconstruct_volume(
            scaled,
            scanned,
            method,
            device=resolved,
            options=options,
            slices=wanted,
            out=_SlabWindow(out_block, a, tuple(sparse.shape)),
        )

        def feed(event: Progress) -> None:
            if isinstance(event.partial, SliceDone):
                finished.add(int(event.partial.z))
                note = event.partial.info.get("weights_note")
                if note and note not in notes:
                    notes.append(note)
            if on_progress is not None:
                on_progress(event)

        try:
            run_job(job, feed)
        except BaseException as exc:
            n_done = 0
            while a + n_done in finished and n_done < len(wanted):
                n_done += 1
            written = None
            if n_done:
                try:
                    save(n_done, False, time.perf_counter() - start)
                    written = out
                except Exception:  # e.g. the disk is full: the first error says why nothing could be kept
                    if isinstance(exc, KeyboardInterrupt):
                        raise
            if isinstance(exc, KeyboardInterrupt):
                raise Interrupted(n_done, len(wanted), written, getattr(exc, "signum", 2)) from None
            if written is not None and isinstance(exc, ValueError):
                raise ValueError(
                    f"{exc} (the {n_done} slices finished before it are in {out}, marked complete: false)"
                ) from exc
            raise
        return save(len(wanted), True, time.perf_counter() - start)


def metrics_path(out: Path) -> Path:
    """``<out stem>.metrics.json`` beside a reconstruction ``out`` (``x.tif``, ``x.ome.zarr`` → ``x.metrics.json``)."""
    out = Path(out)
    name = out.name
    for suffix in (".ome.zarr", ".ome.tif", ".ome.tiff"):
        if name.lower().endswith(suffix):
            return out.with_name(name[: -len(suffix)] + ".metrics.json")
    return out.with_name(out.stem + ".metrics.json")


def quality_to_file(
    sparse_path: Path,
    mask_path: Path,
    method: str,
    out: Path,
    *,
    slices: tuple[int, int] | None = None,
    device: str = "auto",
    options: dict[str, Any] | None = None,
    folds: int = 5,
    max_slices: int | None = 5,
    seed: int = 0,
    on_progress: Callable[[Progress], None] | None = None,
) -> dict[str, Any]:
    """Estimate the quality of ``method`` on a real sparse scan without ground truth and write it to
    :func:`metrics_path` of ``out``: the hold-out PSNR per scored slice (:mod:`napari_sparse_sem.quality.holdout`, on
    at most ``max_slices`` evenly spaced slices of ``A:B``) and the scan's noise estimate. Returns what it wrote."""
    from napari_sparse_sem.compare.report import write_json
    from napari_sparse_sem.compare.spec import region_bounds
    from napari_sparse_sem.io.volume import SliceMap, to_float01
    from napari_sparse_sem.quality.holdout import holdout_job
    from napari_sparse_sem.quality.noise import estimate_noise_sparse
    from napari_sparse_sem.runtime import pick_device
    from napari_sparse_sem.sampling.record import AcquisitionRecord

    _, sparse, mask, meta_in = read_inputs(sparse_path, mask_path)
    a, b, *_ = region_bounds(sparse.shape, slices, None)
    vrange = sparse_value_range(AcquisitionRecord.from_metadata(meta_in), meta_in, sparse)
    scaled = SliceMap(sparse, functools.partial(to_float01, what=str(sparse_path), value_range_=vrange), np.float32)
    scanned = SliceMap(mask, _nonzero, bool)
    job = holdout_job(
        scaled,
        scanned,
        method,
        options=options,
        device=pick_device(device),
        slices=range(a, b),
        folds=folds,
        seed=seed,
        max_slices=max_slices,
    )
    result = run_job(job, on_progress)
    noise = estimate_noise_sparse(
        np.stack([scaled[z] for z in result.slices]), np.stack([scanned[z] for z in result.slices])
    )
    data = {
        "kind": "quality",
        "reconstruction": str(out),
        "sparse": str(sparse_path),
        "mask": str(mask_path),
        "options": dict(options or {}),
        **result.to_dict(),
        **noise.to_dict(),
        "version": __version__,
    }
    path = metrics_path(out)
    write_json(path, data)
    data["path"] = str(path)
    return data
