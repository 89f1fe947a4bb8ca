"""One cut through a porous sample, ready to show: the solid phase under the cut plane and its heightfield channels.

Used by the *Porous material* widget (and, later, simulated stacks): the solid is returned **top first** — index 0
is the voxel layer just below the cut plane, the next ones go deeper — because that is how a FIB-SEM user looks at a
cut face.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from napari_sparse_sem.runtime import Job, Progress
from napari_sparse_sem.surrogate.geometry import GeometrySpec, Primitives, generate, voxelize


@dataclass
class PorousCut:
    """A Boolean model cut at height ``z0``: ``solid`` (depth, y, x) top first, ``heightfield`` (7, y, x)."""

    primitives: Primitives
    z0: float
    solid: np.ndarray
    heightfield: np.ndarray

    @property
    def porosity(self) -> float:
        """Pore fraction of the solid-phase block that was voxelised."""
        return 1.0 - float(self.solid.mean())


def cut_job(source: GeometrySpec | Primitives, z0: float, depth_below: int = 32) -> Job[PorousCut]:
    """Generate (or take) a primitive list, voxelise ``depth_below`` layers under ``z0`` and compute its heightfield."""
    from napari_sparse_sem.surrogate.heightfield import extended_heightfield

    total = 3
    if isinstance(source, GeometrySpec):
        yield Progress(0, total, "drawing particles")
        primitives = generate(source)
    else:
        primitives = source
    window_depth = primitives.window[0]
    if not 0 < z0 <= window_depth:
        raise ValueError(f"the cut plane must lie in (0, {window_depth}] voxels of the window, got {z0}")
    if depth_below < 1:
        raise ValueError("show at least one slice below the cut plane")
    yield Progress(1, total, f"voxelising {len(primitives)} particles")
    top = math.floor(z0 - 0.5)  # the voxel layer whose centre lies just below the plane
    bottom = max(0, top + 1 - depth_below)
    solid = voxelize(primitives, (bottom, top + 1))[::-1].copy()
    yield Progress(2, total, "heightfield and normal map")
    heightfield = extended_heightfield(primitives, z0)
    yield Progress(3, total, "done")
    return PorousCut(primitives, z0, solid, heightfield)
