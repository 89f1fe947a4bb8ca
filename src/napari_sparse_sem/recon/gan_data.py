"""The data of partial-scan GAN training: mask patterns and coverages, random training crops with fresh masks, and
the fixed held-out validation set.

Each batch takes random square crops of random reference slices in one of the 8 flips/rotations; every crop gets a
freshly drawn mask (a pattern from ``patterns`` at a coverage drawn log-uniformly from ``coverage``, drawn on a canvas
up to twice the crop and cropped at a random place, so spirals and grids appear at every phase). The held-out slices
are reconstructed whole with fixed masks (each pattern at the geometric-mean coverage) and compared with ``linear``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_sparse_sem.recon.gan import filled_input

if TYPE_CHECKING:
    from napari_sparse_sem.recon.gan_training import GANTrainingConfig

TRAIN_PATTERNS = ("spiral", "grid", "random")
"""The ``mixed`` pattern set (Ede trained on spirals, jittered grids and other scans)."""


def parse_patterns(text: str | Sequence[str]) -> list[str]:
    """``"mixed"`` or a comma list (or list) of mask patterns → a checked list."""
    from napari_sparse_sem.sampling.spec import PATTERNS

    items = [text] if isinstance(text, str) else list(text)
    names: list[str] = []
    for item in items:
        for name in str(item).split(","):
            name = name.strip()
            if not name:
                continue
            names.extend(TRAIN_PATTERNS if name == "mixed" else [name])
    if not names:
        raise ValueError("give at least one mask pattern (or 'mixed')")
    bad = [n for n in names if n not in PATTERNS]
    if bad:
        raise ValueError(f"unknown mask pattern(s) {bad}; choose from {list(PATTERNS)} or 'mixed'")
    return list(dict.fromkeys(names))


def parse_coverage(text: str | float | Sequence[float]) -> tuple[float, float]:
    """``0.05`` (one coverage) or ``0.02:0.2`` (a range, drawn log-uniformly) → (low, high), both in (0, 1]."""
    if isinstance(text, (int, float)):
        low = high = float(text)
    elif isinstance(text, str):
        parts = text.split(":")
        if len(parts) > 2:
            raise ValueError(f"coverage must be C or LOW:HIGH (e.g. 0.05 or 0.02:0.2), got {text!r}")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"coverage must be C or LOW:HIGH (e.g. 0.05 or 0.02:0.2), got {text!r}") from None
        low, high = values[0], values[-1]
    else:
        low, high = (float(v) for v in text)
    if not (0 < low <= high <= 1):
        raise ValueError(f"coverage must satisfy 0 < low <= high <= 1 (fractions of pixels), got {low}:{high}")
    return low, high


NEIGHBOUR_DROP = 0.1
"""With ``context > 0``: the chance that a training crop's neighbour slice is blanked (as at the ends of a stack)."""


def random_mask(
    shape: tuple[int, int],
    patterns: Sequence[str],
    coverage: tuple[float, float],
    rng: np.random.Generator,
    like: tuple[str, float] | None = None,
) -> tuple[np.ndarray, str, float]:
    """A fresh mask of ``shape``: a random pattern at a log-uniform coverage (or ``like`` = (pattern, coverage)),
    drawn on a canvas up to twice as large and cropped at a random place. Returns (mask, pattern, coverage)."""
    from napari_sparse_sem.sampling.patterns import slice_mask
    from napari_sparse_sem.sampling.spec import MaskSpec

    if like is None:
        pattern = str(patterns[int(rng.integers(len(patterns)))])
        low, high = coverage
        cov = float(np.exp(rng.uniform(np.log(low), np.log(high)))) if high > low else low
    else:
        pattern, cov = like
    canvas = tuple(int(rng.integers(s, 2 * s + 1)) for s in shape)
    spec = MaskSpec(pattern, cov, seed=int(rng.integers(2**31)))
    full = slice_mask(canvas, spec, 0).mask
    y0 = int(rng.integers(canvas[0] - shape[0] + 1))
    x0 = int(rng.integers(canvas[1] - shape[1] + 1))
    mask = full[y0 : y0 + shape[0], x0 : x0 + shape[1]]
    if not mask.any():  # a tiny crop of a sparse pattern can miss every scanned pixel
        mask = mask.copy()
        mask[int(rng.integers(shape[0])), int(rng.integers(shape[1]))] = True
    return mask, pattern, cov


def training_batch(
    slices: np.ndarray,
    config: GANTrainingConfig,
    network: Any,
    rng: np.random.Generator,
    numbers: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(inputs (b, channels, c, c), targets (b, 1, c, c)): random crops, flips/rotations and fresh masks.

    With ``network.context = k`` each crop comes with the same crop of the k slices on each side, each with its own
    mask of the same pattern and coverage (per-slice masks); ``numbers`` are the slice numbers of ``slices`` (a
    neighbour exists only where they are consecutive). Neighbours are blanked with probability
    :data:`NEIGHBOUR_DROP`, and the slab's z order is reversed half of the time.
    """
    size, batch, k = int(config.crop), int(config.batch_size), int(network.context)
    count, height, width = slices.shape
    numbers = list(range(count)) if numbers is None else [int(n) for n in numbers]
    inputs = np.empty((batch, network.in_channels, size, size), dtype=np.float32)
    targets = np.empty((batch, 1, size, size), dtype=np.float32)
    for i in range(batch):
        z = int(rng.integers(count))
        y0, x0 = int(rng.integers(height - size + 1)), int(rng.integers(width - size + 1))
        turns, flip = int(rng.integers(4)), bool(rng.integers(2))
        offsets = list(range(-k, k + 1))
        if k and rng.integers(2):
            offsets.reverse()
        like = None
        for offset in [0, *[o for o in offsets if o]]:  # the restored slice first: its mask sets the pattern
            j = z + offset
            present = 0 <= j < count and numbers[j] == numbers[z] + offset
            if offset and (not present or rng.random() < NEIGHBOUR_DROP):
                plane = np.zeros((2, size, size), dtype=np.float32)
            else:
                crop = np.rot90(slices[j, y0 : y0 + size, x0 : x0 + size], turns)
                crop = np.ascontiguousarray(crop[:, ::-1] if flip else crop)
                mask, pattern, cov = random_mask((size, size), config.patterns, config.coverage, rng, like)
                like = like or (pattern, cov)
                plane = filled_input(np.where(mask, crop, 0.0), mask, network.fill)
                if offset == 0:
                    targets[i, 0] = crop
            position = offsets.index(offset)
            inputs[i, 2 * position : 2 * position + 2] = plane
    return inputs, targets


@dataclass
class Validation:
    """Fixed held-out slices and masks (and their neighbours' with ``context``), and ``linear`` on them."""

    inputs: list[np.ndarray]
    references: list[np.ndarray]
    masks: list[np.ndarray]
    labels: list[str]
    linear_psnr: float

    @classmethod
    def build(
        cls, reference: np.ndarray, numbers: Sequence[int], held_out: int, config: GANTrainingConfig, network: Any
    ) -> Validation | None:
        """The last ``held_out`` of the ``reference`` slices (slice numbers ``numbers``), each pattern at the
        geometric-mean coverage; neighbours (any reference slice, each with its own mask) where ``context > 0``."""
        from napari_sparse_sem.metrics import psnr
        from napari_sparse_sem.recon.gan import slab_input
        from napari_sparse_sem.recon.interp import fill_linear
        from napari_sparse_sem.sampling.patterns import slice_mask
        from napari_sparse_sem.sampling.spec import MaskSpec

        if not held_out:
            return None
        k = int(network.context)
        coverage = float(np.sqrt(config.coverage[0] * config.coverage[1]))
        numbers = [int(n) for n in numbers]
        validation = cls([], [], [], [], 0.0)
        scores = []
        for v in range(len(reference) - held_out, len(reference)):
            for pattern in config.patterns:
                planes, masks = [], []
                for offset in range(-k, k + 1):
                    j = v + offset
                    if 0 <= j < len(reference) and numbers[j] == numbers[v] + offset:
                        spec = MaskSpec(pattern, coverage, seed=1000)
                        mask = slice_mask(reference[j].shape, spec, numbers[j]).mask
                        planes.append(np.where(mask, reference[j], 0.0).astype(np.float32))
                    else:
                        mask = np.zeros(reference[v].shape, dtype=bool)
                        planes.append(np.zeros(reference[v].shape, dtype=np.float32))
                    masks.append(mask)
                sparse, mask_slab = np.stack(planes), np.stack(masks)
                validation.inputs.append(slab_input(sparse, mask_slab, k, k, network.fill))
                validation.references.append(reference[v])
                validation.masks.append(mask_slab[k])
                validation.labels.append(pattern)
                scores.append(psnr(reference[v], fill_linear(sparse[k], mask_slab[k])))
        validation.linear_psnr = float(np.mean(scores))
        return validation

    def score(self, net: Any, device: str) -> tuple[float, dict[str, float]]:
        """Mean PSNR of ``net`` over the held-out slices (scanned pixels kept), overall and per pattern."""
        import torch

        from napari_sparse_sem.metrics import psnr

        was_training = net.training
        net.eval()
        per: dict[str, list[float]] = {}
        with torch.inference_mode():
            for inputs, reference, mask, label in zip(
                self.inputs, self.references, self.masks, self.labels, strict=True
            ):
                out = net(torch.from_numpy(inputs[None]).to(device))[0]
                image = np.clip(out[0, 0].float().cpu().numpy(), 0.0, 1.0)
                image[mask] = reference[mask]
                per.setdefault(label, []).append(psnr(reference, image))
        net.train(was_training)
        means = {label: float(np.mean(v)) for label, v in per.items()}
        return float(np.mean([s for v in per.values() for s in v])), means


def load_reference(volume: Any, slices: Sequence[int]) -> np.ndarray:
    """The reference ``slices`` of ``volume`` as one (n, y, x) float32 array, after checking each is a 2D image of
    finite values in [0, 1] and that they share one shape."""
    from napari_sparse_sem.nn.reference import reference_plane

    planes = [reference_plane(volume, z) for z in slices]
    if len({p.shape for p in planes}) > 1:
        raise ValueError("the reference slices differ in shape")
    return np.stack(planes)
