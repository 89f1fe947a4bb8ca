"""Multiscale pyramids for the OME-Zarr stores we write: levels 1, 2, ... next to level ``"0"``, built block-wise.

Level *k* halves level *k*-1 in y and x only, never in z: FIB-SEM stacks are often anisotropic (slices thicker than
the pixels are wide), and halving z as well would blur away the thin axis long before the slices get small. Levels
are added while the larger side of a slice stays at least ``min_size``.

How a level is made (:func:`build_pyramid_job`): level *k*-1 is read one z-slab (the z chunk of level 0) at a time,
each 2 x 2 block of pixels becomes one pixel and the result is written into array ``str(k)``, chunked like level 0
(the same z chunk, y/x chunks of ``min(size, level-0 chunk)``), with level 0's compressor and zarr v2 format. Odd sizes
round up (ceil division) and the missing row/column repeats the edge, so an edge pixel averages with itself.

* images: the mean of the four pixels; integers round half up back to their dtype, exactly (no float detour, no
  overflow), floats average in float64;
* masks (bool arrays, or ``kind='mask'`` / dtype 'bool' in our saved block): the top-left pixel of each 2 x 2 block
  (nearest). Values stay 0/1 and a random mask keeps its coverage on average (a maximum would turn a 10 % mask into
  34 % at level 1 and 81 % at level 2). A regular pattern can alias: lines on odd rows vanish at level 1 — level 0 is
  the truth, the other levels are for viewing.

Each task (one z-slab, or one output tile of it when whole slices of the slab would exceed
:data:`MAX_BLOCK_BYTES`) writes whole output chunks that no other task touches, so tasks run in any order: in this
process, or with a ``dask.distributed`` client as tasks that open the store themselves (:func:`write_level_block`;
no pixel goes through the scheduler). The ``multiscales`` metadata lists a level only once it is complete, so a
stopped run leaves a valid, shorter pyramid. Running again replaces every level above 0.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import __version__
from ..runtime import Job, Progress, run_job
from .formats import METADATA_KEY

DEFAULT_MIN_SIZE = 256
MAX_BLOCK_BYTES = 256 * 2**20
"""One task reads whole slices of a z-slab of the level below when they hold at most this many bytes, else one output
tile at a time (four input chunks)."""

Block = tuple[int, int, int, int, int, int]
"""(z0, z1, y0, y1, x0, x1): the region of the level being written."""


def pyramid_levels(
    shape: Sequence[int], chunks: Sequence[int] | None = None, min_size: int = DEFAULT_MIN_SIZE
) -> list[tuple[int, int, int]]:
    """Shapes of levels 1, 2, ... below a level 0 of ``shape`` (z, y, x): y and x halve (rounding up), z stays.

    z is never halved because FIB-SEM stacks are often anisotropic. A level is added while the larger side of its
    slices is at least ``min_size``, so a level 0 smaller than that gets none. ``chunks`` (level 0's) is only checked:
    every level's chunks follow from it (:func:`level_chunks`).
    """
    nz, ny, nx = _three(shape, "shape", minimum=0)
    if chunks is not None:
        _three(chunks, "chunks", minimum=1)
    if int(min_size) < 1:
        raise ValueError(f"min_size must be at least 1, got {min_size}")
    levels: list[tuple[int, int, int]] = []
    while max(ny, nx) > 1:
        ny, nx = -(-ny // 2), -(-nx // 2)
        if max(ny, nx) < min_size:
            break
        levels.append((nz, ny, nx))
    return levels


def level_chunks(shape: Sequence[int], chunks: Sequence[int]) -> tuple[int, int, int]:
    """The chunks of a level of ``shape``: level 0's z chunk, y/x chunks of ``min(size, level-0 chunk)``."""
    _, ny, nx = _three(shape, "shape", minimum=0)
    cz, cy, cx = _three(chunks, "chunks", minimum=1)
    return cz, max(1, min(ny, cy)), max(1, min(nx, cx))


def build_pyramid(
    path: str | Path,
    *,
    min_size: int = DEFAULT_MIN_SIZE,
    client: Any = None,
    on_progress: Callable[[Progress], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
) -> list[tuple[int, int, int]]:
    """Build (or rebuild) the pyramid of the OME-Zarr store at ``path``; returns the shapes of all levels, 0 first.

    ``client``: a ``dask.distributed.Client`` to run each level's blocks on (None: in this process). ``on_progress``
    sees one :class:`~napari_sparse_sem.runtime.Progress` per finished block; ``should_stop()`` turning true stops the
    build between blocks (:class:`~napari_sparse_sem.runtime.Cancelled`; finished levels stay listed).
    """
    return run_job(build_pyramid_job(path, min_size=min_size, client=client), on_progress, should_stop)


def build_pyramid_job(
    path: str | Path, *, min_size: int = DEFAULT_MIN_SIZE, client: Any = None
) -> Job[list[tuple[int, int, int]]]:
    """The job behind :func:`build_pyramid`: yields a Progress per finished block, returns the shapes of all levels.

    Closing the generator stops it between blocks; on a cluster, blocks not yet started are cancelled (a block that
    is running finishes writing its own chunks into the unlisted level, which the next run replaces).
    """
    import zarr

    file = Path(path)
    try:
        root = zarr.open_group(str(file), mode="r+")
    except FileNotFoundError as err:
        raise FileNotFoundError(f"{file} is not a zarr group") from err
    multiscale = _multiscale(root, file)
    base_path = str(multiscale["datasets"][0]["path"])
    base = root[base_path]
    if not isinstance(base, zarr.Array) or base.ndim != 3:
        raise ValueError(f"{file}: level 0 ({base_path!r}) must be a (z, y, x) array")
    shape0 = tuple(int(n) for n in base.shape)
    chunks0 = tuple(int(c) for c in base.chunks)
    shapes = pyramid_levels(shape0, chunks0, min_size)
    names = [str(k) for k in range(1, len(shapes) + 1)]
    if base_path in names:
        raise ValueError(f"{file}: level 0 is named {base_path!r}, the name level {base_path} would get")
    method = _method(root, base)
    level0 = dict(multiscale["datasets"][0])
    # forget the old levels in the metadata first, so a crash in between never lists a removed array
    _set_levels(root, [level0], method, min_size)
    for name in sorted(set(root.array_keys())):
        if name != base_path and name.isdigit() and int(name) >= 1:
            del root[name]

    plans = [_blocks(shape, level_chunks(shape, chunks0), base.dtype.itemsize) for shape in shapes]
    total, done = sum(len(p) for p in plans), 0
    yield Progress(0, total, f"pyramid: {len(shapes)} level(s) below {shape0}")
    levels = [level0]
    for k, (shape, blocks) in enumerate(zip(shapes, plans, strict=True), start=1):
        source = base_path if k == 1 else names[k - 2]
        root.create_array(
            names[k - 1],
            shape=shape,
            chunks=level_chunks(shape, chunks0),
            dtype=base.dtype,
            compressors=base.compressors,
            filters=base.filters,
            fill_value=base.fill_value,
            chunk_key_encoding={"name": "v2", "separator": base.metadata.dimension_separator or "."},
            config={"write_empty_chunks": True},  # like our writers: a missing chunk means damage
        )
        if client is None:
            steps = _run_here(root[source], root[names[k - 1]], blocks, method)
        else:
            steps = _run_on(client, str(file), source, names[k - 1], blocks, method)
        for i, _ in enumerate(steps, start=1):
            done += 1
            yield Progress(done, total, f"pyramid level {k}/{len(shapes)}: block {i}/{len(blocks)}")
        levels.append({"path": names[k - 1], "coordinateTransformations": _transforms(level0, k)})
        _set_levels(root, levels, method, min_size)
    return [shape0, *shapes]


def write_level_block(path: str, source: str, target: str, block: Block, method: str) -> None:
    """Task body: open the store at ``path``, halve ``block`` of array ``target`` from array ``source``, write it.

    A plain top-level function so a dask worker can import it; it moves no pixels through the scheduler.
    """
    import zarr

    root = zarr.open_group(path, mode="r+")
    _write_block(root[source], root[target], block, method)


def halve_yx(data: np.ndarray, method: str = "mean") -> np.ndarray:
    """One 2 x 2 step on a (z, y, x) numpy block (see the module docstring): ``'mean'`` or ``'nearest'``.

    Odd y/x sizes get their last row/column repeated first, so the result has ``ceil(size / 2)`` rows/columns.
    """
    if method not in ("mean", "nearest"):
        raise ValueError(f"method must be 'mean' or 'nearest', got {method!r}")
    if method == "nearest" or data.dtype.kind == "b":
        return np.ascontiguousarray(data[:, ::2, ::2])
    pad = ((0, 0), (0, data.shape[1] % 2), (0, data.shape[2] % 2))
    if any(p[1] for p in pad):
        data = np.pad(data, pad, mode="edge")
    quads = (data[:, 0::2, 0::2], data[:, 1::2, 0::2], data[:, 0::2, 1::2], data[:, 1::2, 1::2])
    if data.dtype.kind in "iu":
        # sum = 4 q + r with q, r per pixel: round((sum) / 4) half up = q + (r + 2) // 4, all in the dtype itself
        q = sum(v // 4 for v in quads)
        r = sum(v % 4 for v in quads)
        return (q + (r + 2) // 4).astype(data.dtype)
    mean = sum(v.astype(np.float64) for v in quads) * 0.25
    return mean.astype(data.dtype)


# ------------------------------------------------------------------------------------------------------ internals


def _three(values: Sequence[int], what: str, minimum: int) -> tuple[int, int, int]:
    out = tuple(int(v) for v in values)
    if len(out) != 3 or any(v < minimum for v in out):
        raise ValueError(f"{what} must be three integers (z, y, x) of at least {minimum}, got {tuple(values)}")
    return out  # type: ignore[return-value]


def _multiscale(root: Any, file: Path) -> dict[str, Any]:
    multiscales = dict(root.attrs).get("multiscales")
    if not (isinstance(multiscales, list) and multiscales and isinstance(multiscales[0], dict)):
        raise ValueError(f"{file} has no OME-Zarr 0.4 'multiscales' metadata; write it with write_volume first")
    datasets = multiscales[0].get("datasets")
    if not (isinstance(datasets, list) and datasets and isinstance(datasets[0], dict) and "path" in datasets[0]):
        raise ValueError(f"{file}: its 'multiscales' metadata lists no level 0")
    axes = multiscales[0].get("axes")
    if axes is not None and len(axes) != 3:
        raise ValueError(f"{file}: build_pyramid works on (z, y, x) images; this one has {len(axes)} axes")
    return multiscales[0]


def _method(root: Any, base: Any) -> str:
    """'nearest' for masks (bool data, or kind='mask' / dtype 'bool' in our saved block), else 'mean'."""
    if np.dtype(base.dtype).kind == "b":
        return "nearest"
    saved = dict(root.attrs).get(METADATA_KEY)
    saved = saved if isinstance(saved, dict) else {}
    params = saved.get("parameters") if isinstance(saved.get("parameters"), dict) else {}
    return "nearest" if params.get("kind") == "mask" or saved.get("dtype") == "bool" else "mean"


def _transforms(level0: dict[str, Any], k: int) -> list[dict[str, Any]]:
    """Level 0's transforms with the y/x scale times 2**k (a missing scale counts as 1)."""
    factor = [1.0, float(2**k), float(2**k)]
    out: list[dict[str, Any]] = []
    scaled = False
    for transform in level0.get("coordinateTransformations") or []:
        transform = dict(transform)
        if transform.get("type") == "scale" and not scaled:
            transform["scale"] = [float(s) * f for s, f in zip(transform["scale"], factor, strict=True)]
            scaled = True
        out.append(transform)
    if not scaled:
        out.insert(0, {"type": "scale", "scale": factor})
    return out


def _set_levels(root: Any, levels: list[dict[str, Any]], method: str, min_size: int) -> None:
    multiscales = [dict(m) for m in dict(root.attrs)["multiscales"]]
    multiscales[0]["datasets"] = levels
    if len(levels) > 1:
        multiscales[0]["type"] = method
        multiscales[0]["metadata"] = {
            "description": "2 x 2 in y/x per level, z kept",
            "method": "napari_sparse_sem.io.pyramid.build_pyramid",
            "version": __version__,
            "kwargs": {"min_size": int(min_size), "downsampling": method},
        }
    else:
        multiscales[0].pop("type", None)
        multiscales[0].pop("metadata", None)
    root.attrs.update({"multiscales": multiscales})


def _blocks(shape: tuple[int, int, int], chunks: tuple[int, int, int], itemsize: int) -> list[Block]:
    """Regions of a level that are whole output chunks: z-slabs of whole slices, or tiles of them when big."""
    nz, ny, nx = shape
    cz, cy, cx = chunks
    if cz * (2 * ny) * (2 * nx) * itemsize <= MAX_BLOCK_BYTES:
        cy, cx = ny, nx
    return [
        (z0, min(z0 + cz, nz), y0, min(y0 + cy, ny), x0, min(x0 + cx, nx))
        for z0 in range(0, nz, cz)
        for y0 in range(0, ny, cy)
        for x0 in range(0, nx, cx)
    ]


def _write_block(source: Any, target: Any, block: Block, method: str) -> None:
    z0, z1, y0, y1, x0, x1 = block
    _, sy, sx = source.shape
    data = np.asarray(source[z0:z1, 2 * y0 : min(2 * y1, sy), 2 * x0 : min(2 * x1, sx)])
    target[z0:z1, y0:y1, x0:x1] = halve_yx(data, method)


def _run_here(source: Any, target: Any, blocks: list[Block], method: str) -> Iterator[None]:
    for block in blocks:
        _write_block(source, target, block, method)
        yield None


def _run_on(client: Any, path: str, source: str, target: str, blocks: list[Block], method: str) -> Iterator[None]:
    """Run the blocks as tasks on ``client``; yields as each finishes (in any order). A failed block raises here."""
    from distributed import as_completed

    futures = [
        client.submit(write_level_block, path, source, target, block, method, pure=False, retries=1) for block in blocks
    ]
    try:
        for future in as_completed(futures, loop=client.loop):  # loop: our client is never the default one
            future.result()
            yield None
    finally:
        pending = [f for f in futures if not f.done()]
        if pending:  # stopped or failed: blocks that have not started never will
            client.cancel(pending)
            _wait_for_running(client, {f.key for f in pending})


def _wait_for_running(client: Any, keys: set[Any], timeout_s: float = 60.0) -> None:
    """Wait until no worker still runs one of ``keys`` (a cancelled task that had started runs to its end): a rebuild
    right after a stop must not race a late block writing into the level it removes. A block is at most
    :data:`MAX_BLOCK_BYTES` of input, so this is seconds."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            running = {key for keys_on in client.processing().values() for key in keys_on}
        except Exception:  # the scheduler is gone: nothing runs any more
            return
        if not running & keys:
            return
        time.sleep(0.05)
