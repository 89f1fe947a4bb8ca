"""The extended heightfield and normal map against a brute-force ray march through the same particles."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from napari_sparse_sem.runtime import run_job
from napari_sparse_sem.surrogate._sdf import primitive_sdf
from napari_sparse_sem.surrogate.geometry import GeometrySpec, generate
from napari_sparse_sem.surrogate.heightfield import NO_SURFACE, extended_heightfield, stack_heightfields

STEP = 0.01  # ray-march step along z, voxels (coarser steps miss slivers thinner than the step)


@numba.njit(cache=True, parallel=True)
def _march(kind, center, radius, half_height, rotation, z0, height, width, step):
    """Walk every pixel column down from z0 to the window bottom; record the first four solid/pore transitions."""
    out = np.full((4, height, width), np.inf)
    n = kind.shape[0]
    for y in numba.prange(height):
        for x in range(width):
            found = 0
            inside = False
            z = z0
            while z >= 0.0 and found < 4:
                solid = False
                for i in range(n):
                    if primitive_sdf(kind, center, radius, half_height, rotation, i, x + 0.5, y + 0.5, z) <= 0.0:
                        solid = True
                        break
                if solid != inside:
                    out[found, y, x] = z0 - z
                    found += 1
                    inside = solid
                z -= step
            if inside and found < 4:  # the solid reaches the window's bottom: it exits there
                out[found, y, x] = z0
    return out


def _brute(prims, z0):
    return _march(prims.kind.astype(np.int64), prims.center, prims.radius, prims.half_height,
                  np.ascontiguousarray(prims.rotation), float(z0), prims.window[1], prims.window[2], STEP)  # fmt: skip


SCENES = {
    "spheres": GeometrySpec("spheres", 0.6, radius=(4, 8), window=(32, 36, 36), seed=1),
    "cylinders-uniform": GeometrySpec("cylinders", 0.6, radius=(3, 6), height=(8, 20), window=(32, 36, 36), seed=2),
    "cylinders-vmf": GeometrySpec(
        "cylinders", 0.6, radius=(3, 6), height=(8, 20), orientation="vmf", window=(32, 36, 36), seed=3
    ),
    "cubes": GeometrySpec("cubes", 0.6, edge=(6, 12), window=(32, 36, 36), seed=4),
    "mixture": GeometrySpec("mixture", 0.6, radius=(3, 6), height=(8, 16), edge=(6, 10), window=(32, 36, 36), seed=5),
}


@pytest.mark.parametrize("name", list(SCENES))
@pytest.mark.parametrize("z0", [32.0, 21.3])
def test_depths_match_a_ray_march(name: str, z0: float) -> None:
    prims = generate(SCENES[name])
    ehf = extended_heightfield(prims, z0, tile=16)
    brute = _brute(prims, z0)
    both_inf = np.isinf(ehf[:4]) & np.isinf(brute)
    close = np.abs(np.where(both_inf, 0, ehf[:4] - brute)) <= 1.0
    # a ray that grazes a surface can cut a sliver thinner than the march step: allow a tiny fraction of pixels
    assert close.all(axis=0).mean() >= 0.995, (name, z0, close.mean(axis=(1, 2)))
    assert (np.isfinite(ehf[0]) == np.isfinite(brute[0])).mean() >= 0.998


@pytest.mark.parametrize("name", list(SCENES))
def test_normals_are_unit_and_match_the_sdf_gradient(name: str) -> None:
    from napari_sparse_sem.surrogate._sdf import primitive_sdf as sdf

    prims = generate(SCENES[name])
    z0 = 27.7
    ehf = extended_heightfield(prims, z0)
    normal = ehf[4:]
    entry = ehf[0]
    surface = np.isfinite(entry) & (entry > 0)
    norms = np.linalg.norm(normal, axis=0)
    assert np.allclose(norms[np.isfinite(entry)], 1.0, atol=1e-4)
    assert (normal[2][np.isfinite(entry)] >= -1e-6).all()
    # numerical gradient of the union SDF at the entry point
    kind, center, radius = prims.kind.astype(np.int64), prims.center, prims.radius
    half, rot = prims.half_height, np.ascontiguousarray(prims.rotation)

    def union(p: np.ndarray) -> float:
        return min(sdf(kind, center, radius, half, rot, i, p[0], p[1], p[2]) for i in range(len(prims)))

    ys, xs = np.nonzero(surface)
    agree = []
    for y, x in list(zip(ys, xs, strict=True))[::7]:
        p = np.array([x + 0.5, y + 0.5, z0 - entry[y, x]])
        grad = np.array([union(p + e * 1e-3) - union(p - e * 1e-3) for e in np.eye(3)])
        grad /= np.linalg.norm(grad) + 1e-12
        agree.append(float(grad @ normal[:, y, x]) > 0.95)
    assert np.mean(agree) >= 0.97


def test_cut_plane_solid_and_empty_columns() -> None:
    prims = generate(SCENES["spheres"])
    ehf = extended_heightfield(prims, 20.0)
    at_plane = ehf[0] == 0
    assert at_plane.any()
    assert np.allclose(ehf[4:, at_plane], np.array([[0.0], [0.0], [1.0]]))
    empty = generate(GeometrySpec("spheres", 0.99, radius=(1, 1), window=(10, 12, 12), seed=0))
    empty.kind, empty.center = empty.kind[:0], empty.center[:0]
    empty.radius, empty.half_height, empty.rotation = empty.radius[:0], empty.half_height[:0], empty.rotation[:0]
    none = extended_heightfield(empty, 10.0)
    assert np.isinf(none[:4]).all() and (none[4:] == 0).all() and NO_SURFACE == np.inf


def test_max_depth_keeps_shallow_values() -> None:
    prims = generate(SCENES["mixture"])
    full = extended_heightfield(prims, 30.0)
    limited = extended_heightfield(prims, 30.0, max_depth=12.0)
    shallow = full[:4] < 12.0
    assert np.allclose(limited[:4][shallow], full[:4][shallow])
    assert np.isinf(limited[:4][~shallow]).all()
    assert np.allclose(limited[4:, shallow[0]], full[4:, shallow[0]])
    assert (limited[4:, ~shallow[0]] == 0).all()


def test_stack_moves_the_plane_down() -> None:
    prims = generate(SCENES["cylinders-vmf"])
    events = []
    stack = run_job(stack_heightfields(prims, 31.0, 3, 5.0), events.append)
    assert stack.shape == (3, 7, 36, 36) and [e.step for e in events] == [0, 1, 2, 3]
    for k in range(3):
        assert np.array_equal(stack[k], extended_heightfield(prims, 31.0 - 5.0 * k), equal_nan=True)
    with pytest.raises(ValueError, match="bottom"):
        run_job(stack_heightfields(prims, 10.0, 5, 5.0))
