"""Classical 2D reconstruction: fill the unscanned pixels of one slice from its scanned ones.

These are the baselines every learned method is compared with, and warm starts for the slower ones.

- ``nearest``: each pixel takes the value of the nearest scanned pixel (Voronoi cells). Instant, blocky.
- ``linear``: piecewise-linear on the Delaunay triangulation of the scanned pixels; pixels outside their convex hull
  take the nearest value. The standard sparse-scan baseline: fast (512² at 5 % in well under a second) and accurate.
- ``harmonic``: solve Laplace's equation with the scanned pixels as Dirichlet data (membrane interpolation). Smooth,
  but it dents towards isolated samples, so it scores below ``linear`` on random masks.
- ``biharmonic``: minimise the thin-plate energy ``sum (Δu)²`` with the scanned pixels fixed (the same model as
  ``skimage.restoration.inpaint_biharmonic``). Smooth and the best classical 2D method on SEM slices.

The two PDE methods are solved by multigrid-preconditioned CG warm-started from ``linear`` (see
:mod:`napari_sparse_sem.recon.solvers`): on a 250² FlyEM slice at 5 % biharmonic takes 0.12 s against 0.59 s for
scikit-image's direct solve, at the same 25.9 dB; 1024² takes ~3 s. The solver stays fast on masks with large gaps
(lines, spirals, unscanned regions), where plain CG crawls.

The ``fill_*`` functions work on one 2D image and are reusable on their own (e.g. as warm starts or error estimates).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.spatial import Delaunay, QhullError, cKDTree

from napari_sparse_sem.recon.base import Reconstructor, check_slab, register
from napari_sparse_sem.recon.solvers import solve_with_known

__all__ = [
    "Biharmonic",
    "Harmonic",
    "Linear",
    "Nearest",
    "fill_biharmonic",
    "fill_harmonic",
    "fill_linear",
    "fill_nearest",
    "rasterize_simplices",
]


def _check_image(values: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values = np.asarray(values)
    known = np.asarray(known, dtype=bool)
    if values.ndim != 2 or values.shape != known.shape:
        raise ValueError(f"expected a 2D image and a mask of the same shape, got {values.shape} and {known.shape}")
    if not known.any():
        raise ValueError("the slice has no scanned pixels; check the mask")
    return values, known


def _finish(filled: np.ndarray, values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """float32 in [0, 1] with the scanned pixels set back to their measured values exactly."""
    out = np.clip(filled, 0.0, 1.0).astype(np.float32)
    out[known] = values[known]
    return out


def fill_nearest(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Each unscanned pixel takes the value of its nearest scanned pixel (Euclidean distance transform)."""
    values, known = _check_image(values, known)
    _, (iy, ix) = ndimage.distance_transform_edt(~known, return_indices=True)
    return _finish(values[iy, ix], values, known)


def rasterize_simplices(
    vertices: np.ndarray,
    vertex_values: np.ndarray,
    shape: tuple[int, int],
    plane_z: float | None = None,
    *,
    chunk: int = 1_000_000,
) -> np.ndarray:
    """Evaluate piecewise-linear interpolation on the pixels of a (y, x) grid, simplex by simplex.

    ``vertices`` is (n, d+1, d): triangles in (y, x) when ``plane_z`` is None, tetrahedra in (z, y, x) otherwise,
    evaluated on the plane ``z = plane_z``. ``vertex_values`` is (n, d+1). Returns a float64 image, NaN where no
    simplex covers the pixel. Each simplex visits only the pixels of its bounding box (of its cross-section with the
    plane in 3D); barycentric coordinates decide who is inside, and where tetrahedra share a pixel the one holding it
    most interior wins (robust to slivers). Unlike ``Delaunay.find_simplex`` this never falls back to a brute-force
    search, which on integer pixel grids (many degenerate simplices) can take seconds.
    """
    vertices = np.asarray(vertices, dtype=np.float64)
    ny, nx = shape
    dim = vertices.shape[2]
    result = np.full(shape, np.nan)
    if vertices.shape[0] == 0:
        return result
    if plane_z is None:
        ys, xs = vertices[:, :, 0], vertices[:, :, 1]
        valid = np.ones(vertices.shape[0], dtype=bool)
    else:
        # Cross-section of each tetrahedron with the plane: the points where its 6 edges cross it.
        a = np.array([0, 0, 0, 1, 1, 2])
        b = np.array([1, 2, 3, 2, 3, 3])
        za, zb = vertices[:, a, 0], vertices[:, b, 0]
        with np.errstate(divide="ignore", invalid="ignore"):
            t = (plane_z - za) / (zb - za)
        crosses = np.isfinite(t) & (t >= 0) & (t <= 1)
        t = np.where(crosses, t, 0.0)
        ys = vertices[:, a, 1] + t * (vertices[:, b, 1] - vertices[:, a, 1])
        xs = vertices[:, a, 2] + t * (vertices[:, b, 2] - vertices[:, a, 2])
        valid = crosses.any(axis=1)
        ys = np.where(crosses, ys, np.nan)
        xs = np.where(crosses, xs, np.nan)
        ys[~valid] = 0.0
        xs[~valid] = 0.0
    with np.errstate(invalid="ignore"):
        y0 = np.maximum(np.ceil(np.nanmin(ys, axis=1) - 1e-9), 0).astype(np.int64)
        y1 = np.minimum(np.floor(np.nanmax(ys, axis=1) + 1e-9), ny - 1).astype(np.int64)
        x0 = np.maximum(np.ceil(np.nanmin(xs, axis=1) - 1e-9), 0).astype(np.int64)
        x1 = np.minimum(np.floor(np.nanmax(xs, axis=1) + 1e-9), nx - 1).astype(np.int64)
    edges = vertices[:, :-1, :] - vertices[:, -1:, :]  # (n, d, d), rows are edge vectors
    volume = np.abs(np.linalg.det(edges))
    scale = np.abs(edges).max(axis=(1, 2)) ** dim
    valid &= (y1 >= y0) & (x1 >= x0) & (volume > 1e-12 * np.maximum(scale, 1e-300))
    keep = np.flatnonzero(valid)
    if keep.size == 0:
        return result
    vertices, vertex_values = vertices[keep], np.asarray(vertex_values, dtype=np.float64)[keep]
    y0, y1, x0, x1 = y0[keep], y1[keep], x0[keep], x1[keep]
    # b[:d] = inv(E^T) (p - v_last), b[d] = 1 - sum(b[:d])
    inverse = np.linalg.inv(np.transpose(edges[keep], (0, 2, 1)))
    width = x1 - x0 + 1
    counts = (y1 - y0 + 1) * width
    best = np.full(ny * nx, -np.inf)
    flat = result.reshape(-1)
    ends = np.cumsum(counts)
    start = 0
    while start < keep.size:
        stop = max(int(np.searchsorted(ends, ends[start] - counts[start] + chunk, side="right")), start + 1)
        cnt = counts[start:stop]
        simplex = np.repeat(np.arange(start, stop), cnt)
        offset = np.arange(int(cnt.sum())) - np.repeat(np.cumsum(cnt) - cnt, cnt)
        py = y0[simplex] + offset // width[simplex]
        px = x0[simplex] + offset % width[simplex]
        point = np.column_stack([py, px]) if plane_z is None else np.column_stack([np.full(py.size, plane_z), py, px])
        bary = np.einsum("nij,nj->ni", inverse[simplex], point - vertices[simplex, -1, :])
        bary = np.column_stack([bary, 1.0 - bary.sum(axis=1)])
        margin = bary.min(axis=1)
        inside = np.flatnonzero(margin >= -1e-9)
        if plane_z is not None:  # 3D slivers give inaccurate barycentrics: let the most interior simplex win
            inside = inside[np.argsort(margin[inside], kind="stable")]
            pixel = py[inside] * nx + px[inside]
            better = margin[inside] > best[pixel]
            pixel, inside = pixel[better], inside[better]
            best[pixel] = margin[inside]  # last in sorted order = most interior, among duplicates too
        else:  # triangles of pixel positions are never thinner than half a pixel: any owner will do
            pixel = py[inside] * nx + px[inside]
        flat[pixel] = np.einsum("ni,ni->n", bary[inside], vertex_values[simplex[inside]])
        start = stop
    return result


def fill_linear(values: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Piecewise-linear interpolation on the Delaunay triangulation of the scanned pixels; nearest outside the hull.

    Fewer than three scanned pixels, or all of them on one line, leave no triangles: nearest is used then.
    """
    values, known = _check_image(values, known)
    if known.all():
        return _finish(values, values, known)
    points = np.argwhere(known).astype(np.float64)
    filled = None
    if points.shape[0] >= 3:
        try:
            triangulation = Delaunay(points)
        except QhullError:  # collinear samples
            triangulation = None
        if triangulation is not None:
            simplices = triangulation.simplices
            filled = rasterize_simplices(points[simplices], values[known].astype(np.float64)[simplices], known.shape)
    if filled is None:
        return fill_nearest(values, known)
    outside = np.isnan(filled)
    if outside.any():  # a thin rim outside the hull: nearest sample by k-d tree (cheaper than a full EDT)
        _, nearest = cKDTree(points).query(np.argwhere(outside))
        filled[outside] = values[known][nearest]
    return _finish(filled, values, known)


def fill_harmonic(values: np.ndarray, known: np.ndarray, *, rtol: float = 1e-5) -> np.ndarray:
    """Solve Laplace's equation on the unscanned pixels with the scanned pixels as boundary values."""
    values, known = _check_image(values, known)
    start = fill_linear(values, known)
    filled = solve_with_known(values, known, start, order=1, rtol=rtol)
    return _finish(filled, values, known)


def fill_biharmonic(values: np.ndarray, known: np.ndarray, *, rtol: float = 1e-5) -> np.ndarray:
    """Minimise the discrete thin-plate energy ``sum (Δu)²`` over the unscanned pixels, scanned pixels fixed."""
    values, known = _check_image(values, known)
    start = fill_linear(values, known)
    filled = solve_with_known(values, known, start, order=2, rtol=rtol)
    return _finish(filled, values, known)


class _Slice2D(Reconstructor):
    """A purely 2D method: uses only the centre slice of the slab."""

    context = 0

    @staticmethod
    def fill(values: np.ndarray, known: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def reconstruct_slice(self, sparse: np.ndarray, mask: np.ndarray, center: int) -> np.ndarray:
        sparse, mask = check_slab(sparse, mask, center)
        return self.fill(sparse[center], mask[center])


@register
class Nearest(_Slice2D):
    name = "nearest"
    description = "Nearest scanned pixel (Voronoi cells): instant, blocky baseline."
    fill = staticmethod(fill_nearest)


@register
class Linear(_Slice2D):
    name = "linear"
    description = "Piecewise-linear on the Delaunay triangulation of the scanned pixels: fast standard baseline."
    fill = staticmethod(fill_linear)


@register
class Harmonic(_Slice2D):
    name = "harmonic"
    description = "Laplace equation with the scanned pixels as boundary values (membrane): smooth, dents at samples."
    fill = staticmethod(fill_harmonic)


@register
class Biharmonic(_Slice2D):
    name = "biharmonic"
    description = "Thin-plate (biharmonic) inpainting, multigrid solver: the best classical 2D method."
    fill = staticmethod(fill_biharmonic)
