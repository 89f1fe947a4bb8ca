"""``mean-fill``: every unscanned pixel takes one value (the scanned pixels' mean, or the ``fill`` option).

A third-party method in the smallest form: a class with a name, a description and an options spec, registered by the
entry point in this folder's ``pyproject.toml``; napari-sparse-sem's faces and ``create`` find it from there.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from napari_sparse_sem.params import Spec, param
from napari_sparse_sem.recon.base import Reconstructor, check_slab


@dataclass
class MeanFillOptions(Spec):
    """Options of ``mean-fill``."""

    kind = "mean-fill options"

    fill: float | None = param(None, low=0, high=1, help="value of the unscanned pixels; empty: the scanned mean")


class MeanFill(Reconstructor):
    """Unscanned pixels get ``fill`` (default: the mean of the slice's scanned pixels); scanned ones keep theirs."""

    name = "mean-fill"
    description = "Every unscanned pixel takes the mean of the scanned ones (or the fill option): a test plugin."
    options = MeanFillOptions

    def reconstruct_slice(self, sparse: np.ndarray, mask: np.ndarray, center: int) -> np.ndarray:
        sparse, mask = check_slab(sparse, mask, center)
        values, known = sparse[center], mask[center]
        fill = self.settings.fill if self.settings.fill is not None else float(values[known].mean())
        return np.where(known, values, fill).astype(np.float32)
