"""Dense reference slices for training: every learned method (the GAN, the error estimator) trains on slices of a
dense volume, checked the same way before any work."""

from __future__ import annotations

from typing import Any

import numpy as np


def reference_plane(volume: Any, z: int) -> np.ndarray:
    """Slice ``z`` of ``volume`` as float32, after checking it is a 2D image of finite values in [0, 1]."""
    plane = np.asarray(volume[z], dtype=np.float32)
    if plane.ndim != 2:
        raise ValueError(f"slice {z} is not a 2D image (shape {plane.shape})")
    if not np.all(np.isfinite(plane)) or plane.min() < 0 or plane.max() > 1:
        raise ValueError(f"slice {z} must hold finite values in [0, 1] (scale the volume first)")
    return plane
