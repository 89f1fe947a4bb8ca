"""``sparse-sem info``: what a volume file holds, read lazily."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from napari_sparse_sem.cli.common import clean_errors, read_input, stdout_console


@clean_errors
def info(
    path: Annotated[Path, typer.Argument(help="Volume: tif, folder of slices, zarr/OME-Zarr, mrc or h5.")],
    dataset: Annotated[str | None, typer.Option(help="Dataset inside an h5/zarr container.")] = None,
) -> None:
    """Print shape, dtype, voxel size, format, laziness and the value range of a sample slice."""
    from napari_sparse_sem.io.volume import as_zyx

    vol = read_input(path, dataset)
    data = as_zyx(vol.data, str(path))
    nz = data.shape[0]
    sample = np.asarray(data[nz // 2])
    lazy = bool(vol.metadata.get("lazy", not isinstance(vol.data, np.ndarray)))
    kind = "numpy.memmap" if isinstance(vol.data, np.memmap) else type(vol.data).__module__.split(".")[0]
    fmt = vol.metadata.get("format") if isinstance(vol.metadata, dict) else None
    out = stdout_console()
    out.print(f"path:        {path}", markup=False)
    out.print(f"name:        {vol.name}", markup=False)
    out.print(f"shape (z, y, x): {tuple(int(s) for s in data.shape)}", markup=False)
    out.print(f"dtype:       {data.dtype}", markup=False)
    voxel = "unknown" if vol.voxel_size is None else " x ".join(f"{v:g}" for v in vol.voxel_size) + " nm (z, y, x)"
    out.print(f"voxel size:  {voxel}", markup=False)
    out.print(f"format:      {fmt or _format_of(path)}", markup=False)
    out.print(f"lazy:        {f'yes ({kind})' if lazy else 'no (in memory)'}", markup=False)
    out.print(
        f"value range: {sample.min():g} .. {sample.max():g} (slice {nz // 2}; mean {sample.mean():.4g})", markup=False
    )


def _format_of(path: Path) -> str:
    p = Path(path)
    if p.is_dir() and not p.suffix:
        return "folder of slices"
    return p.name.lower().split(".", 1)[-1] if "." in p.name else "unknown"
