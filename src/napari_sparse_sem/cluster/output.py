"""The OME-Zarr output of a block-wise run: its chunking, creating it (or reopening it to resume), and its final
metadata.

Blocks write into the store directly, so it is created at its final path (not staged and moved like single-process
outputs); an unfinished store says ``complete: false`` in its metadata until the last block is in.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from napari_sparse_sem.cluster.store import RunRecord

__all__ = [
    "BLOCK_BYTES",
    "default_slab",
    "default_tile",
    "finish_output",
    "open_output",
    "output_chunks",
    "recorded_plan",
]

BLOCK_BYTES = 512 * 2**20
"""The float32 working set a default block aims at (values, mask and result of its slices)."""
MAX_SLAB = 16
MAX_WHOLE_SLICE = 4096
"""Slices larger than this on a side are cut into tiles by methods that allow tiles."""
DEFAULT_TILE = 2048


def default_slab(slice_shape: tuple[int, int]) -> int:
    """Slices per block: as many as keep a block's working set near :data:`BLOCK_BYTES`, 1 to :data:`MAX_SLAB`."""
    per_slice = 3 * 4 * int(slice_shape[0]) * int(slice_shape[1])
    return int(max(1, min(MAX_SLAB, BLOCK_BYTES // max(per_slice, 1))))


def default_tile(slice_shape: tuple[int, int], tile_halo: int | None) -> int | None:
    """Tile side for a method: None (whole slices) unless it allows tiles and the slice is very large."""
    if tile_halo is None or max(slice_shape) <= MAX_WHOLE_SLICE:
        return None
    return DEFAULT_TILE


def recorded_plan(out: Path) -> dict[str, Any]:
    """``slab`` and ``tile`` of the run recorded in ``out`` (empty when there is none), so ``--resume`` without them
    cuts the same blocks as the interrupted run."""
    settings = RunRecord(Path(out).expanduser()).settings() if Path(out).expanduser().is_dir() else None
    return {k: settings[k] for k in ("slab", "tile") if settings and k in settings}


def output_chunks(shape: tuple[int, int, int], tile: int | None) -> tuple[int, int, int]:
    """Chunks of a block-wise output: one slice deep (napari reads slice by slice), a tile or at most 4096² wide."""
    side = tile or MAX_WHOLE_SLICE
    return 1, min(int(shape[1]), side), min(int(shape[2]), side)


def _check_new_output(out: Path, inputs: list[Path], overwrite: bool, resume: bool) -> None:
    from napari_sparse_sem.io.writers import check_target
    from napari_sparse_sem.outputs import check_not_input, check_writable_folder

    if out.suffix.lower() != ".zarr":
        raise ValueError(f"a cluster run writes OME-Zarr: name the output *.zarr, not {out.name!r}")
    check_not_input(out, inputs)
    if not resume:
        if out.exists() and not overwrite:
            raise FileExistsError(
                f"{out} already exists; use --resume to finish an interrupted run into it, --overwrite to replace it, "
                "or choose another name"
            )
        check_target(out, overwrite=True)
    check_writable_folder(out.parent)


def open_output(
    out: Path,
    *,
    inputs: list[Path],
    shape: tuple[int, int, int],
    dtype: Any,
    chunks: tuple[int, int, int],
    voxel_size: Any,
    metadata: Mapping[str, Any],
    settings: Mapping[str, Any],
    overwrite: bool = False,
    resume: bool = False,
) -> tuple[RunRecord, str, bool]:
    """Create the store (or reopen it with ``resume``); returns its run record, this run's id and whether it resumed.

    ``settings`` decide the output (compared on resume); ``metadata`` goes into the store's attributes with
    ``complete: false`` until :func:`finish_output`. Without ``resume`` an existing output is refused unless
    ``overwrite``. ``resume`` on a missing store starts a new run, so a job script can always pass it.
    """
    from napari_sparse_sem.io.writers import checked_voxel_size, create_ome_zarr, metadata_block, remove_path

    out = Path(out).expanduser()
    _check_new_output(out, inputs, overwrite, resume)
    record = RunRecord(out)
    if resume and out.exists():
        return record, record.resume(settings), True
    remove_path(out)
    stored = np.dtype(np.uint8) if np.dtype(dtype).kind == "b" else np.dtype(dtype)
    voxel = checked_voxel_size(voxel_size)
    block = metadata_block(dtype, voxel, {**metadata, "complete": False}, stacklevel=3)
    create_ome_zarr(out, shape, stored, chunks, voxel, block, name=out.stem)
    return record, record.start(settings), False


def finish_output(out: Path, metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Write the run's final parameters (``complete``, blocks, seconds...) into the store's metadata; returns them."""
    import zarr

    from napari_sparse_sem.io.formats import METADATA_KEY
    from napari_sparse_sem.io.writers import metadata_block

    group = zarr.open_group(str(out), mode="r+")
    old = dict(group.attrs.get(METADATA_KEY) or {})
    block = metadata_block(old.get("dtype", "float32"), old.get("voxel_size_nm"), metadata, stacklevel=3)
    group.attrs[METADATA_KEY] = block
    return block["parameters"]
