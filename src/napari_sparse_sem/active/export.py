"""What a microscope needs from an active acquisition: the rescan bitmap (TIFF), the coordinate list (CSV) in a short
beam-travel order, and the path length and time estimate of that order (the acquisition-time model of
:mod:`napari_sparse_sem.sampling.path`).

The order is a boustrophedon over horizontal strips (the strip heuristic for travelling-salesman tours of scattered
points, Beardwood, Halton & Hammersley 1959): points are grouped in strips of equal height, sorted along x, with the
direction alternating per strip; several strip heights are tried and the shortest tour kept.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np

from napari_sparse_sem.sampling.path import estimate_time, path_length
from napari_sparse_sem.sampling.spec import AcquisitionSpec

__all__ = ["rescan_paths", "short_path_order", "write_rescan"]


def _strip_order(points: np.ndarray, height: float) -> np.ndarray:
    strip = np.floor(points[:, 0] / height).astype(np.int64)
    x = np.where(strip % 2 == 1, -points[:, 1], points[:, 1])
    return np.lexsort((points[:, 0], x, strip))


def short_path_order(points: np.ndarray) -> np.ndarray:
    """The (n, 2) ``points`` reordered into a short beam path (see the module docstring)."""
    pts = np.asarray(points, dtype=np.int64).reshape(-1, 2)
    if len(pts) < 3:
        return pts.copy()
    extent = pts.max(axis=0) - pts.min(axis=0) + 1
    area = float(extent[0] * extent[1])
    base = np.sqrt(area / len(pts))  # mean spacing
    best: tuple[float, np.ndarray] | None = None
    for factor in (0.8, 1.0, 1.3, 1.7, 2.2, 3.0):
        order = _strip_order(pts - pts.min(axis=0), max(1.0, factor * base))
        length = path_length(pts[order])
        if best is None or length < best[0]:
            best = (length, order)
    assert best is not None
    return pts[best[1]]


def rescan_paths(out_prefix: str | Path) -> dict[str, Path]:
    """The files :func:`write_rescan` makes from a prefix: ``bitmap``, ``points`` and ``plan``."""
    prefix = Path(out_prefix)
    return {
        "bitmap": prefix.with_name(prefix.name + "_bitmap.tif"),
        "points": prefix.with_name(prefix.name + "_points.csv"),
        "plan": prefix.with_name(prefix.name + "_plan.json"),
    }


def write_rescan(
    points: np.ndarray,
    shape: tuple[int, int],
    out_prefix: str | Path,
    *,
    acquisition: AcquisitionSpec | None = None,
    metadata: dict[str, Any] | None = None,
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write ``PREFIX_bitmap.tif`` (uint8, 255 = rescan), ``PREFIX_points.csv`` (order, row, col in beam order) and
    ``PREFIX_plan.json`` (counts, path length, time estimate, ``metadata``). Existing files are kept unless
    ``overwrite``. Returns the plan dictionary."""
    import tifffile

    paths = rescan_paths(out_prefix)
    existing = [str(p) for p in paths.values() if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(f"{existing} already exist; choose another output name or allow overwriting")
    height, width = (int(s) for s in shape)
    pts = np.asarray(points, dtype=np.int64).reshape(-1, 2)
    if len(pts) and (pts.min() < 0 or pts[:, 0].max() >= height or pts[:, 1].max() >= width):
        raise ValueError(f"rescan points fall outside the {height}×{width} image")
    ordered = short_path_order(pts)
    acq = acquisition or AcquisitionSpec()
    timing = estimate_time(ordered, acq)
    bitmap = np.zeros((height, width), dtype=np.uint8)
    bitmap[pts[:, 0], pts[:, 1]] = 255
    paths["plan"].parent.mkdir(parents=True, exist_ok=True)
    tifffile.imwrite(paths["bitmap"], bitmap, compression="zlib")
    with open(paths["points"], "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["order", "row", "col"])
        for i, (row, col) in enumerate(ordered):
            writer.writerow([i, int(row), int(col)])
    plan = {
        "shape": [height, width],
        "n_points": len(pts),
        "coverage": len(pts) / float(height * width),
        "path_length_px": float(path_length(ordered)),
        "acquisition": acq.to_dict(),
        "time": timing.to_dict(),
        "files": {k: p.name for k, p in paths.items()},
        **(metadata or {}),
    }
    paths["plan"].write_text(json.dumps(plan, indent=2))
    return plan
