"""The 4-extended heightfield (EHF) and normal map of a cut plane through a union of convex particles.

Dahmen et al. (paper 004 in ../shared/papers, sections 2.3–2.4) represent the sample under a FIB-SEM cut as a 2D image
with seven channels: looking down −z from the cut plane at height z0, per pixel the depths below the plane of **entry
1, exit 1, entry 2, exit 2** of the vertical line into and out of the solid, and the unit surface normal at entry 1.
Their algorithm resolves the union (CSG) per pixel as a 1D problem: every convex particle cuts the line in one
interval, and overlapping intervals merge. We do the same, vectorised with torch over tiles of pixels and the
particles binned to each tile, on CPU or CUDA.

Conventions:

- Depths are in voxels below the cut plane (``z0 − z``), ≥ 0. Entry 1 is 0 where the cut plane itself is solid.
- ``NO_SURFACE`` (+inf) marks a surface that does not exist (a column with one or no solid interval), or one at or
  deeper than ``max_depth`` when that is given.
- The solid is the union of particles intersected with the window's depth range (0 ≤ z ≤ z0): below the window's
  bottom there is nothing, so a solid interval that reaches the bottom exits there.
- Normal channels: the outward unit normal at entry 1, oriented towards the beam (n_z ≥ 0); (0, 0, 1) where the cut
  plane is solid; (0, 0, 0) where entry 1 is ``NO_SURFACE``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from napari_sparse_sem.runtime import Job, Progress
from napari_sparse_sem.surrogate.geometry import CUBE, CYLINDER, SPHERE, Primitives

NO_SURFACE = np.inf
CHANNELS = ("entry1", "exit1", "entry2", "exit2", "normal_x", "normal_y", "normal_z")
_EPS = 1e-9


def extended_heightfield(
    primitives: Primitives,
    z0: float,
    *,
    max_depth: float | None = None,
    device: str = "cpu",
    tile: int = 12,
    max_batch_elements: int = 4_000_000,
) -> np.ndarray:
    """The (7, height, width) float32 EHF + normal map of the cut plane at height ``z0`` (voxels), see the module."""
    import torch

    from napari_sparse_sem.runtime import pick_device

    depth, height, width = primitives.window
    if not 0 < z0 <= depth:
        raise ValueError(f"the cut plane z0 must lie in (0, {depth}] voxels, got {z0}")
    if tile < 1:
        raise ValueError("tile must be >= 1 pixel")
    torch_device = torch.device(pick_device(device))
    out = np.full((7, height, width), NO_SURFACE, dtype=np.float32)
    out[4:] = 0.0
    low, high = primitives.bounding_boxes()
    floor = 0.0 if max_depth is None else max(0.0, z0 - float(max_depth))
    relevant = (low[:, 2] < z0) & (high[:, 2] > floor) & (high[:, 0] > 0) & (low[:, 0] < width)
    relevant &= (high[:, 1] > 0) & (low[:, 1] < height)
    index = np.flatnonzero(relevant)
    tiles_x, tiles_y = math.ceil(width / tile), math.ceil(height / tile)
    if index.size:
        # particles per tile from their xy bounding boxes (pixel centres at +0.5)
        tx0 = np.clip(np.floor((low[index, 0] - 0.5) / tile), 0, tiles_x - 1).astype(np.int64)
        tx1 = np.clip(np.floor((high[index, 0] - 0.5) / tile), 0, tiles_x - 1).astype(np.int64)
        ty0 = np.clip(np.floor((low[index, 1] - 0.5) / tile), 0, tiles_y - 1).astype(np.int64)
        ty1 = np.clip(np.floor((high[index, 1] - 0.5) / tile), 0, tiles_y - 1).astype(np.int64)
        pairs_tile, pairs_particle = _tile_pairs(index, tx0, tx1, ty0, ty1, tiles_x)
    else:
        pairs_tile = pairs_particle = np.zeros(0, np.int64)
    params = _particle_tensor(primitives, torch_device)
    order = np.argsort(pairs_tile, kind="stable")
    pairs_tile, pairs_particle = pairs_tile[order], pairs_particle[order]
    tiles_with = np.unique(pairs_tile)
    counts = np.bincount(pairs_tile, minlength=tiles_x * tiles_y)
    starts = np.concatenate([[0], np.cumsum(counts)])
    # batches of tiles with similar counts keep the padding small
    by_count = tiles_with[np.argsort(counts[tiles_with], kind="stable")]
    position = 0
    while position < by_count.size:
        k_max = int(counts[by_count[min(by_count.size - 1, position)]])
        batch = []
        while position < by_count.size:
            k = int(counts[by_count[position]])
            if batch and (len(batch) + 1) * k * tile * tile > max_batch_elements:
                break
            batch.append(by_count[position])
            k_max = max(k_max, k)
            position += 1
        _fill_batch(out, np.array(batch), starts, pairs_particle, k_max, params, primitives, z0, floor, tile,
                    tiles_x, torch_device)  # fmt: skip
    if max_depth is not None:  # intervals were cut at max_depth, so values there are not real surfaces
        deep = out[:4] >= float(max_depth)
        out[:4][deep] = NO_SURFACE
        out[4:, deep[0]] = 0.0  # no entry within reach: no normal either
    return out


def _tile_pairs(index, tx0, tx1, ty0, ty1, tiles_x):
    """(tile, particle) pairs for every tile each particle's box overlaps."""
    nx = tx1 - tx0 + 1
    ny = ty1 - ty0 + 1
    per = nx * ny
    owner = np.repeat(np.arange(index.size), per)
    offset = np.arange(per.sum()) - np.repeat(np.cumsum(per) - per, per)
    tx = tx0[owner] + offset % nx[owner]
    ty = ty0[owner] + offset // nx[owner]
    return ty * tiles_x + tx, index[owner]


def _particle_tensor(primitives: Primitives, device: Any) -> dict[str, Any]:
    import torch

    def t(array: np.ndarray) -> Any:
        return torch.as_tensor(np.ascontiguousarray(array), dtype=torch.float64, device=device)

    return {
        "kind": torch.as_tensor(primitives.kind.astype(np.int64), device=device),
        "center": t(primitives.center),
        "radius": t(primitives.radius),
        "half": t(primitives.half_height),
        "rotation": t(primitives.rotation),
    }


def _fill_batch(out, batch, starts, pairs_particle, k_max, params, primitives, z0, floor, tile, tiles_x, device):
    import torch

    n_tiles = batch.size
    height, width = out.shape[1:]
    # particle index per (tile, slot), -1 padding
    slots = np.full((n_tiles, k_max), -1, dtype=np.int64)
    for row, t in enumerate(batch):
        members = pairs_particle[starts[t] : starts[t + 1]]
        slots[row, : members.size] = members
    slots_t = torch.as_tensor(slots, device=device)
    valid = slots_t >= 0
    safe = slots_t.clamp(min=0)
    ty, tx = batch // tiles_x, batch % tiles_x
    offsets = torch.arange(tile, device=device, dtype=torch.float64)
    ys = torch.as_tensor(ty * tile, device=device, dtype=torch.float64)[:, None] + offsets[None, :] + 0.5
    xs = torch.as_tensor(tx * tile, device=device, dtype=torch.float64)[:, None] + offsets[None, :] + 0.5
    px = xs[:, None, :].expand(n_tiles, tile, tile).reshape(n_tiles, 1, tile * tile)  # pixel (row, col) → x
    py = ys[:, :, None].expand(n_tiles, tile, tile).reshape(n_tiles, 1, tile * tile)
    lo, hi, normal = _intervals(params, safe, px, py)
    # clip to the window's depth range [floor, z0] and drop empty or padded intervals
    hi_c = torch.minimum(hi, torch.tensor(z0, dtype=hi.dtype, device=device))
    lo_c = torch.maximum(lo, torch.tensor(floor, dtype=lo.dtype, device=device))
    keep = valid[:, :, None] & (hi_c > lo_c)
    inf = torch.tensor(math.inf, dtype=hi.dtype, device=device)
    d_in = torch.where(keep, z0 - hi_c, inf)
    d_out = torch.where(keep, z0 - lo_c, inf)
    d_in, order = torch.sort(d_in, dim=1)
    d_out = torch.gather(d_out, 1, order)
    finite = torch.isfinite(d_in)
    running = torch.cummax(torch.where(finite, d_out, torch.zeros_like(d_out)), dim=1).values
    previous = torch.cat([torch.full_like(running[:, :1], -1.0), running[:, :-1]], dim=1)
    starts_gap = finite & (d_in > previous)  # a merged interval starts here (the first finite one always does)
    rank = torch.cumsum(starts_gap.to(torch.int64), dim=1)  # which merged interval each sorted entry belongs to
    entry1 = d_in[:, 0, :]
    first_interval = finite & (rank == 1)
    second_interval = finite & (rank == 2)
    exit1 = torch.where(first_interval, d_out, -inf).amax(dim=1)
    exit2 = torch.where(second_interval, d_out, -inf).amax(dim=1)
    entry2 = torch.where(second_interval & starts_gap, d_in, inf).amin(dim=1)
    exit1 = torch.where(torch.isfinite(entry1), exit1, inf)
    exit2 = torch.where(torch.isfinite(entry2), exit2, inf)
    # normal of the particle that gives entry 1
    first = order[:, 0, :]
    normal_first = torch.stack([torch.gather(normal[:, :, c, :], 1, first[:, None, :])[:, 0, :] for c in range(3)], 1)
    at_plane = entry1 <= 0.0
    up = torch.tensor([0.0, 0.0, 1.0], dtype=normal.dtype, device=device)[None, :, None]
    normal_first = torch.where(at_plane[:, None, :], up, normal_first)
    normal_first = torch.where(torch.isfinite(entry1)[:, None, :], normal_first, torch.zeros_like(normal_first))
    values = torch.cat([torch.stack([entry1, exit1, entry2, exit2], 1), normal_first], 1)  # (tiles, 7, pixels)
    values = values.reshape(n_tiles, 7, tile, tile).to(torch.float32).cpu().numpy()
    for row in range(n_tiles):
        y0, x0 = int(ty[row]) * tile, int(tx[row]) * tile
        h, w = min(tile, height - y0), min(tile, width - x0)
        out[:, y0 : y0 + h, x0 : x0 + w] = values[row, :, :h, :w]


def _intervals(params, slots, px, py):
    """Per (tile, slot, pixel): the solid interval [lo, hi] in z of the vertical line, and the normal at ``hi``."""
    import torch

    kind = params["kind"][slots][:, :, None]
    center = params["center"][slots]  # (T, K, 3)
    radius = params["radius"][slots][:, :, None]
    half = params["half"][slots][:, :, None]
    rot = params["rotation"][slots]  # (T, K, 3, 3)
    dx = px - center[:, :, 0:1]
    dy = py - center[:, :, 1:2]
    cz = center[:, :, 2:3]
    inf = math.inf
    shape = torch.broadcast_shapes(dx.shape, kind.shape)
    lo = torch.full(shape, inf, dtype=dx.dtype, device=dx.device)
    hi = torch.full(shape, -inf, dtype=dx.dtype, device=dx.device)
    normal = torch.zeros(shape[0], shape[1], 3, shape[2], dtype=dx.dtype, device=dx.device)

    # spheres: |(dx, dy, t)| <= r
    rho2 = dx * dx + dy * dy
    h = torch.sqrt(torch.clamp(radius * radius - rho2, min=0.0))
    sphere = (kind == SPHERE) & (rho2 <= radius * radius)
    lo = torch.where(sphere, cz - h, lo)
    hi = torch.where(sphere, cz + h, hi)
    sphere_normal = torch.stack([dx, dy, h], 2) / radius[:, :, None]
    normal = torch.where(sphere[:, :, None], sphere_normal, normal)

    # slabs in the local frame: |(q0 + t e_z) · a| <= s for each local axis a (t relative to the centre's z)
    def slab(axis: int, extent: Any) -> tuple[Any, Any, Any, Any]:
        a = rot[:, :, :, axis]  # (T, K, 3)
        ax, ay, az = a[:, :, 0:1], a[:, :, 1:2], a[:, :, 2:3]
        proj = dx * ax + dy * ay
        safe_az = torch.where(az.abs() > _EPS, az, torch.full_like(az, 1.0))
        t1 = (-extent - proj) / safe_az
        t2 = (extent - proj) / safe_az
        flat = az.abs() <= _EPS
        inside = proj.abs() <= extent
        slab_lo = torch.where(flat, torch.where(inside, -inf, inf), torch.minimum(t1, t2))
        slab_hi = torch.where(flat, torch.where(inside, inf, -inf), torch.maximum(t1, t2))
        # the outward normal at the top (t = slab_hi): +a if az > 0 else −a
        sign = torch.where(az >= 0, 1.0, -1.0)
        return slab_lo, slab_hi, a * sign, flat

    # cylinders: cap slab along the axis, and the infinite cylinder |q − (q·a)a|² <= r²
    cyl = kind == CYLINDER
    if bool(cyl.any()):
        cap_lo, cap_hi, cap_normal, _ = slab(2, half)
        a = rot[:, :, :, 2]
        ax, ay, az = a[:, :, 0:1], a[:, :, 1:2], a[:, :, 2:3]
        proj = dx * ax + dy * ay
        qa = 1.0 - az * az
        qb = -2.0 * proj * az
        qc = rho2 - proj * proj - radius * radius
        vertical = qa <= 1e-12
        disc = qb * qb - 4.0 * qa * qc
        root = torch.sqrt(torch.clamp(disc, min=0.0))
        safe_qa = torch.where(vertical, torch.ones_like(qa), qa)
        side_lo = torch.where(vertical, torch.where(qc <= 0, -inf, inf), (-qb - root) / (2.0 * safe_qa))
        side_hi = torch.where(vertical, torch.where(qc <= 0, inf, -inf), (-qb + root) / (2.0 * safe_qa))
        missing = ~vertical & (disc < 0)
        side_lo = torch.where(missing, inf, side_lo)
        side_hi = torch.where(missing, -inf, side_hi)
        c_lo = torch.maximum(cap_lo, side_lo)
        c_hi = torch.minimum(cap_hi, side_hi)
        hit = cyl & (c_hi >= c_lo)
        lo = torch.where(hit, cz + c_lo, lo)
        hi = torch.where(hit, cz + c_hi, hi)
        # normal at the top: the cap if the cap bound binds, else the radial direction at that point
        t_top = c_hi
        qx, qy, qz = dx, dy, t_top
        along = qx * ax + qy * ay + qz * az
        radial = torch.stack([qx - along * ax, qy - along * ay, qz - along * az], 2)
        radial = radial / torch.clamp(torch.linalg.vector_norm(radial, dim=2, keepdim=True), min=_EPS)
        cap_binds = (cap_hi <= side_hi)[:, :, None]
        cyl_normal = torch.where(cap_binds, cap_normal[:, :, :, None].expand_as(radial), radial)
        normal = torch.where(hit[:, :, None], cyl_normal, normal)

    cube = kind == CUBE
    if bool(cube.any()):
        bounds = [slab(axis, radius) for axis in range(3)]
        b_lo = torch.maximum(torch.maximum(bounds[0][0], bounds[1][0]), bounds[2][0])
        stacked_hi = torch.stack([b[1] for b in bounds], 0)  # (3, T, K, P)
        b_hi, which = stacked_hi.min(dim=0)
        hit = cube & (b_hi >= b_lo)
        lo = torch.where(hit, cz + b_lo, lo)
        hi = torch.where(hit, cz + b_hi, hi)
        face_normals = torch.stack([b[2] for b in bounds], 0)  # (3, T, K, 3)
        chosen = torch.stack([_pick(face_normals[..., c], which) for c in range(3)], 2)
        normal = torch.where(hit[:, :, None], chosen, normal)
    return lo, hi, normal


def _pick(per_axis: Any, which: Any) -> Any:
    """per_axis (3, T, K) values of each face axis; which (T, K, P) the binding axis per pixel → (T, K, P)."""
    import torch

    expanded = per_axis[:, :, :, None].expand(3, *which.shape)
    return torch.gather(expanded, 0, which[None]).squeeze(0)


def stack_heightfields(
    primitives: Primitives, z_top: float, n_slices: int, dz: float, **kwargs: Any
) -> Job[np.ndarray]:
    """EHF + normal maps of ``n_slices`` cut planes, the plane moving down by ``dz`` from ``z_top``; one event each."""
    if n_slices < 1 or dz <= 0:
        raise ValueError("n_slices must be >= 1 and dz positive")
    bottom = z_top - (n_slices - 1) * dz
    if bottom <= 0:
        raise ValueError(f"{n_slices} slices {dz} voxels apart from z = {z_top} go below the window's bottom")
    _, height, width = primitives.window
    out = np.empty((n_slices, 7, height, width), dtype=np.float32)
    yield Progress(0, n_slices, "heightfields")
    for k in range(n_slices):
        out[k] = extended_heightfield(primitives, z_top - k * dz, **kwargs)
        yield Progress(k + 1, n_slices, f"heightfield {k + 1}/{n_slices}", out[: k + 1])
    return out
