"""3D classical reconstruction: interpolate a slice from the samples of its neighbouring slices too.

In a sparse FIB-SEM acquisition every slice gets its own mask, so the neighbours' samples fall *between* this slice's
samples. Tissue changes slowly across a few 10 nm slices, so those samples carry nearly as much information as the
slice's own: with per-slice masks, 3D context is the biggest classical lever. On FlyEM slice 125 at 5 % random,
piecewise-linear interpolation in 3D reaches 27.8 dB against 25.0 dB for 2D ``linear`` (and 25.9 dB for biharmonic).

``linear3d`` builds the 3D Delaunay tetrahedralisation of all scanned voxels in a slab of ±``context`` slices (z is
multiplied by ``z_scale`` for anisotropic voxels: the z spacing divided by the pixel size) and evaluates the
piecewise-linear interpolant on the centre plane by rasterising the cross-sections of the tetrahedra that cut it
(:func:`~napari_sparse_sem.recon.interp.rasterize_simplices`; ``Delaunay.find_simplex`` falls back to brute force on
these degenerate point sets and took up to 30 s). Pixels outside the 3D hull fall back to 2D ``linear``.

Slab depth, measured on slice 125 of the full volume (5 %, per-slice masks): ±2 slices 27.68 dB in 0.35 s, ±5 27.78 dB
in 0.85 s, ±10 27.81 dB in 1.6 s (250² slice, 2 cores); on the crop's middle slices ±5 and ±10 agree within 0.01 dB.
Tetrahedra that cut the centre plane reach a few slices away (the in-plane sample spacing, ~4.5 px, exceeds the slice
spacing), but little beyond ±5 matters, while the triangulation dominates the cost and grows linearly with the number
of samples (~30 µs each: a 512² slice at ±5 takes ~5 s). So the default slab is ±5 rather than ±10; raise ``context``
for thinner slices (``z_scale`` < 1). The sample coordinates get a tiny deterministic jitter (1e-3 px): samples on an
integer grid are massively degenerate for Qhull (co-spherical points), which made the triangulation ~5x slower; the
jitter moves the interpolant by far less than one grey level.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import Delaunay, QhullError

from napari_sparse_sem.params import Spec, param
from napari_sparse_sem.recon.base import Reconstructor, check_slab, register
from napari_sparse_sem.recon.interp import fill_linear, rasterize_simplices

__all__ = ["Linear3D", "Linear3DOptions", "fill_linear3d"]

_JITTER = 1e-3


def fill_linear3d(sparse: np.ndarray, mask: np.ndarray, center: int, *, z_scale: float = 1.0) -> np.ndarray:
    """Piecewise-linear 3D interpolation of all scanned voxels of the slab, evaluated on slice ``center``.

    ``sparse`` and ``mask`` are (k, y, x); returns (y, x) float32 in [0, 1] with the scanned pixels of the centre
    slice unchanged. Falls back to 2D linear outside the 3D hull or when the slab's samples span no volume (one slice,
    or every slice scanned at the same positions only in degenerate cases).
    """
    sparse, mask = check_slab(sparse, mask, center)
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


@dataclass
class Linear3DOptions(Spec):
    """Options of ``linear3d``: the slab depth and the voxel anisotropy."""

    kind = "linear3d options"

    context: int = param(
        5,
        low=0,
        unit="slices",
        help="slices on each side whose samples enter the triangulation; little beyond 5 matters, the cost grows",
    )
    z_scale: float = param(
        1.0,
        low=0,
        low_open=True,
        label="z scale",
        help="z spacing divided by the pixel size (anisotropic voxels; < 1 for slices thinner than a pixel)",
    )

    def validate(self) -> None:
        if int(self.context) != self.context:
            raise ValueError(f"context must be a whole number of slices >= 0, got {self.context}")


@register
class Linear3D(Reconstructor):
    """3D piecewise-linear interpolation over a slab of ±``context`` slices (``z_scale``: z spacing / pixel size)."""

    name = "linear3d"
    context = 5
    description = "Piecewise-linear in 3D over ±context slices: uses the neighbours' samples (per-slice masks)."
    options = Linear3DOptions

    def __init__(self, device: str = "cpu", **options: object) -> None:
        super().__init__(device, **options)
        self.context = int(self.settings.context)
        self.z_scale = float(self.settings.z_scale)

    def reconstruct_slice(self, sparse: np.ndarray, mask: np.ndarray, center: int) -> np.ndarray:
        return fill_linear3d(sparse, mask, center, z_scale=self.z_scale)
