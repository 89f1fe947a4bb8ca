"""Beam paths over a mask and the acquisition-time model.

A scan visits the mask pixels in an order (the *path*, ``(n, 2)`` int64 ``(row, col)``). Two orders are used:

* :func:`serpentine_order` — row by row, alternating direction on every scanned row (boustrophedon), so the beam
  never flies back across the field of view. Used for every pattern except the spiral.
* :func:`spiral_path` — an Archimedean spiral ``r = b·θ`` from the image centre outward, drawn as a connected
  one-pixel (8-connected) line, as in Ede's spiral partial scans (Ede & Beanland, "Partial scanning transmission
  electron microscopy with deep learning", Sci. Rep. 10, 8332, 2020).

Time model (:func:`estimate_time`): every scanned pixel costs the dwell time; a step to a pixel that is not one of the
8 neighbours of the previous one (Chebyshev distance > 1) is a *jump* that costs the settle time plus a travel time
proportional to the Euclidean distance. Steps to neighbours cost nothing extra.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from .spec import AcquisitionSpec

__all__ = [
    "AcquisitionTime",
    "dense_scan_time",
    "estimate_time",
    "path_length",
    "serpentine_order",
    "spiral_path",
]


def _as_path(path: np.ndarray) -> np.ndarray:
    arr = np.asarray(path)
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise ValueError(f"a beam path must be an (n, 2) array of (row, col) pixel indices, got shape {arr.shape}")
    return arr


def path_length(path: np.ndarray) -> float:
    """Total Euclidean length of the beam path in pixels (sum of the distances between consecutive pixels)."""
    arr = _as_path(path).astype(np.float64)
    if len(arr) < 2:
        return 0.0
    return float(np.hypot(*np.diff(arr, axis=0).T).sum())


@dataclass(frozen=True)
class AcquisitionTime:
    """Estimated acquisition time of one scan, split into its parts (seconds) with the counts behind them."""

    seconds: float
    dwell_s: float
    settle_s: float
    move_s: float
    n_pixels: int
    n_jumps: int
    path_length_px: float

    def to_dict(self) -> dict[str, float | int]:
        return asdict(self)


def _time(spec: AcquisitionSpec, n_pixels: int, n_jumps: int, jump_px: float, length_px: float) -> AcquisitionTime:
    dwell = n_pixels * spec.dwell_us * 1e-6
    settle = n_jumps * spec.settle_us * 1e-6
    move = jump_px * spec.move_us_per_px * 1e-6
    return AcquisitionTime(
        seconds=dwell + settle + move,
        dwell_s=dwell,
        settle_s=settle,
        move_s=move,
        n_pixels=int(n_pixels),
        n_jumps=int(n_jumps),
        path_length_px=float(length_px),
    )


def estimate_time(path: np.ndarray, spec: AcquisitionSpec) -> AcquisitionTime:
    """Time to scan ``path`` with the dwell/settle/move model of ``spec`` (see the module docstring)."""
    arr = _as_path(path).astype(np.float64)
    if len(arr) < 2:
        return _time(spec, len(arr), 0, 0.0, 0.0)
    steps = np.diff(arr, axis=0)
    dist = np.hypot(steps[:, 0], steps[:, 1])
    jumps = np.abs(steps).max(axis=1) > 1
    return _time(spec, len(arr), int(jumps.sum()), float(dist[jumps].sum()), float(dist.sum()))


def dense_scan_time(shape: tuple[int, int], spec: AcquisitionSpec) -> AcquisitionTime:
    """Time of a dense serpentine raster over every pixel of a ``(H, W)`` image (no jumps)."""
    height, width = (int(s) for s in shape)
    if height < 1 or width < 1:
        raise ValueError(f"image shape must be two positive sizes (H, W), got {shape}")
    length = height * (width - 1) + (height - 1)
    return _time(spec, height * width, 0, 0.0, float(length))


def serpentine_order(mask: np.ndarray) -> np.ndarray:
    """Visit order of a 2D mask's pixels: rows top to bottom, alternating left→right and right→left.

    The direction alternates over the rows that hold scanned pixels (not over all image rows), so a mask of every
    k-th row is still scanned as a serpentine whatever k is.
    """
    m = np.asarray(mask, dtype=bool)
    if m.ndim != 2:
        raise ValueError(f"serpentine_order needs a 2D (y, x) mask, got shape {m.shape}")
    rows, cols = np.nonzero(m)  # row-major order: sorted by row, then column
    if rows.size == 0:
        return np.empty((0, 2), dtype=np.int64)
    new_row = np.r_[True, rows[1:] != rows[:-1]]
    rank = np.cumsum(new_row) - 1  # index of the scanned row each pixel sits on
    reverse = (rank % 2) == 1
    key_cols = np.where(reverse, m.shape[1] - 1 - cols, cols)
    order = np.lexsort((key_cols, rows))
    return np.stack([rows[order], cols[order]], axis=1).astype(np.int64)


def _theta_at_arclength(s: np.ndarray, b: float) -> np.ndarray:
    """Invert the arc length of the spiral r = b·θ: s(θ) = b/2·(θ·sqrt(1+θ²) + asinh θ) (Newton iterations)."""
    theta = np.sqrt(2.0 * s / b)  # large-θ approximation; an over-estimate, so Newton converges monotonically
    for _ in range(6):
        root = np.sqrt(1.0 + theta * theta)
        f = 0.5 * b * (theta * root + np.arcsinh(theta)) - s
        theta = theta - f / (b * root)
    return np.maximum(theta, 0.0)


def _thin_corners(pts: np.ndarray) -> np.ndarray:
    """Drop staircase corner pixels whose neighbours along the path already touch (keeps the path 8-connected)."""
    for _ in range(4):
        if len(pts) < 3:
            return pts
        gap = np.abs(pts[2:] - pts[:-2]).max(axis=1)
        redundant = np.r_[False, gap <= 1, False]
        # never drop two consecutive points in one pass: their common neighbours would no longer touch
        drop = redundant & ~np.r_[False, redundant[:-1]]
        if not drop.any():
            return pts
        pts = pts[~drop]
    return pts


def spiral_path(shape: tuple[int, int], arm_spacing: float, start_angle: float = 0.0) -> np.ndarray:
    """Pixels of an Archimedean spiral from the image centre outward, in visit order.

    ``arm_spacing`` is the distance between successive turns in pixels (``r = b·θ`` with ``b = arm_spacing / 2π``);
    the spiral continues until it has swept the whole ``(H, W)`` rectangle, points outside the image are dropped
    (there the beam leaves and re-enters, a jump). Each pixel is listed once (first visit). Consecutive pixels are
    8-neighbours except across such clipped stretches.
    """
    height, width = (int(s) for s in shape)
    if height < 1 or width < 1:
        raise ValueError(f"image shape must be two positive sizes (H, W), got {shape}")
    if not np.isfinite(arm_spacing) or arm_spacing <= 0:
        raise ValueError(f"arm_spacing must be a positive number of pixels, got {arm_spacing}")
    b = arm_spacing / (2.0 * np.pi)
    cy, cx = (height - 1) / 2.0, (width - 1) / 2.0
    r_max = np.hypot(cy, cx) + arm_spacing + 1.0
    theta_max = r_max / b
    s_max = 0.5 * b * (theta_max * np.sqrt(1.0 + theta_max**2) + np.arcsinh(theta_max))
    step = 0.5  # arc-length step < 1 px: consecutive rounded samples are 8-neighbours (or the same pixel)
    theta = _theta_at_arclength(np.arange(0.0, s_max + step, step), b)
    radius = b * theta
    ys = np.floor(cy + radius * np.sin(theta + start_angle) + 0.5).astype(np.int64)
    xs = np.floor(cx + radius * np.cos(theta + start_angle) + 0.5).astype(np.int64)
    inside = (ys >= 0) & (ys < height) & (xs >= 0) & (xs < width)
    pts = np.stack([ys[inside], xs[inside]], axis=1)
    if len(pts) == 0:  # cannot happen (the centre is inside), kept for safety
        return np.empty((0, 2), dtype=np.int64)
    # consecutive duplicates within a run inside the image; staircase corners; then first visits only
    pts = pts[np.r_[True, np.any(pts[1:] != pts[:-1], axis=1)]]
    pts = _thin_corners(pts)
    _, first = np.unique(pts[:, 0] * width + pts[:, 1], return_index=True)
    return pts[np.sort(first)].astype(np.int64)
