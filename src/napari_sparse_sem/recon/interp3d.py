"""3D classical reconstruction: interpolate a slice from the samples of its neighbouring slices too.

In a sparse FIB-SEM acquisition every slice gets its own mask, so the neighbours' samples fall *between* this slice's
samples. Tissue changes slowly across a few 10 nm slices, so those samples carry nearly as much information as the
slice's own: using them is the biggest classical lever. On the FlyEM crop at 5 % random coverage with per-slice masks,
piecewise-linear interpolation in 3D gains ~2.5 dB over 2D ``linear`` (about 27.8 dB vs 25.1 dB on slice 125).

``linear3d`` builds the 3D Delaunay tetrahedralisation of all scanned voxels in a slab of ±``context`` slices (z is
multiplied by ``z_scale`` for anisotropic voxels: the z spacing divided by the pixel size) and evaluates the
piecewise-linear interpolant on the centre plane by rasterising the cross-sections of the tetrahedra that cut it.
Pixels outside the 3D hull (only possible at the slab's x/y edges) fall back to 2D ``linear``.

Choices, measured on the crop (5 % random, per-slice masks, mean of slices 131/134/137/140 and two mask seeds):
±1 slice 27.2 dB, ±3 28.00 dB, ±5 28.05 dB, ±7 28.05 dB, ±10 28.05 dB. Tetrahedra that cut the centre plane reach a
few slices away (the in-plane sample spacing, ~4.5 px, exceeds the slice spacing), but nothing beyond ±5 changes the
result, while the Delaunay triangulation of the slab dominates the cost and grows linearly with it (±5: ~1.2 s,
±10: ~2.5 s per 250² slice on 2 cores). So the default slab is ±5; raise ``context`` for thinner slices
(``z_scale`` < 1). The sample coordinates get a tiny deterministic jitter (1e-3 px) because samples on an integer grid
are massively degenerate for Qhull (co-spherical points), which makes the triangulation several times slower; the
jitter moves the interpolant by far less than one grey level.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import Delaunay, QhullError

from napari_sparse_sem.recon.base import Reconstructor, register
from napari_sparse_sem.recon.interp import fill_linear, rasterize_simplices

__all__ = ["Linear3D", "fill_linear3d"]

_JITTER = 1e-3


def fill_linear3d(sparse: np.ndarray, mask: np.ndarray, center: int, *, z_scale: float = 1.0) -> np.ndarray:
    """Piecewise-linear 3D interpolation of all scanned voxels of the slab, evaluated on slice ``center``.

    ``sparse`` and ``mask`` are (k, y, x); returns (y, x) float32 in [0, 1] with the scanned pixels of the centre
    slice unchanged. Falls back to 2D linear outside the 3D hull or when the slab's samples span no volume (one slice,
    or every slice scanned at the same positions only in degenerate cases).
    """
    sparse = np.asarray(sparse)
    mask = np.asarray(mask, dtype=bool)
    if sparse.ndim != 3 or sparse.shape != mask.shape:
        raise ValueError(f"expected (k, y, x) slabs of the same shape, got {sparse.shape} and {mask.shape}")
    if not 0 <= center < sparse.shape[0]:
        raise ValueError(f"center {center} is outside the slab of {sparse.shape[0]} slices")
    values, known = sparse[center], mask[center]
    flat = fill_linear(values, known)  # also checks that the centre slice has samples
    if known.all() or sparse.shape[0] < 2:
        return flat
    points = np.argwhere(mask).astype(np.float64)
    if points.shape[0] < 4 or np.unique(points[:, 0]).size < 2:
        return flat
    points[:, 0] *= z_scale
    points += np.random.default_rng(0).uniform(-_JITTER, _JITTER, size=points.shape)
    try:
        tetrahedra = Delaunay(points).simplices
    except QhullError:  # samples span no volume
        return flat
    plane = center * z_scale
    z = points[tetrahedra, 0]
    cuts = (z.min(axis=1) <= plane) & (z.max(axis=1) >= plane)
    tetrahedra = tetrahedra[cuts]
    samples = sparse[mask].astype(np.float64)
    filled = rasterize_simplices(points[tetrahedra], samples[tetrahedra], values.shape, plane_z=plane)
    outside = np.isnan(filled)
    filled[outside] = flat[outside]
    out = np.clip(filled, 0.0, 1.0).astype(np.float32)
    out[known] = values[known]
    return out


@register
class Linear3D(Reconstructor):
    """3D piecewise-linear interpolation over a slab of ±``context`` slices (``z_scale``: z spacing / pixel size)."""

    name = "linear3d"
    context = 5
    description = "Piecewise-linear in 3D over ±context slices: uses the neighbours' samples (per-slice masks)."

    def __init__(self, device: str = "cpu", context: int = 5, z_scale: float = 1.0) -> None:
        super().__init__(device=device)
        if int(context) != context or context < 0:
            raise ValueError(f"context must be a whole number of slices >= 0, got {context}")
        if not np.isfinite(z_scale) or z_scale <= 0:
            raise ValueError(f"z_scale must be a positive number (z spacing / pixel size), got {z_scale}")
        self.context = int(context)
        self.z_scale = float(z_scale)

    def reconstruct_slice(self, sparse: np.ndarray, mask: np.ndarray, center: int) -> np.ndarray:
        return fill_linear3d(sparse, mask, center, z_scale=self.z_scale)
