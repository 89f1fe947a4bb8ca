"""The data of self-supervised training (method ``self``): batches made from a sparse scan and its mask alone.

The idea is masked self-supervision, as in Noise2Self (J. Batson and L. Royer, ICML 2019) and Noise2Void (A. Krull,
T.-O. Buchholz and F. Jug, CVPR 2019): a network that never sees a pixel's own value can be trained to predict it from
the others, and the measured value is then a fair target. Here the pixels to predict are *scanned* pixels hidden from
the input, so no dense slice is needed:

* each training crop (a random slice, position and one of the 8 flips/rotations; with context ``k`` the same crop of
  the ``k`` neighbours on each side) hides a random fraction ``h`` of its scanned pixels, ``h`` drawn uniformly per
  crop from ``config.hidden``. The same (y, x) positions are hidden in every slice of the slab, so a stack scanned
  with one fixed mask cannot leak a hidden value through a neighbour;
* the input is the generator's usual input (:func:`~napari_sparse_sem.recon.gan.filled_input`) of the pixels left;
  the target is the measured value and the loss weight is 1 exactly at the hidden scanned pixels of the centre slice;
* unscanned pixels are zeroed when the stack is loaded (:func:`load_scan`), so whatever a file stores there never
  reaches an input or a loss;
* a fixed validation set — a few per cent of the scanned pixels of a few slices (inside a central crop of at most
  :data:`VALIDATION_SIDE` px) — is removed from the training data altogether and scored as PSNR with those pixels
  hidden, beside ``linear`` on the same pixels.

Training sees coverage ``c (1 - h)`` while inference sees ``c``: training over a range of ``h`` covers the shift
(docs/methods/self.md measures the choice).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_sparse_sem.recon.gan import filled_input, slab_input

VALIDATION_SIDE = 256
"""Side of the central crop of each validation slice (the whole slice when smaller)."""
NEIGHBOUR_DROP = 0.1
"""With context: the chance that a training crop's neighbour is blanked (as at the ends of a stack)."""


def parse_hidden(value: str | float | Sequence[float]) -> tuple[float, float]:
    """``0.3`` or ``0.1:0.5`` (text, a number or a pair) → (low, high) with 0 < low <= high < 1."""
    if isinstance(value, (int, float)):
        low = high = float(value)
    elif isinstance(value, str):
        parts = value.split(":")
        try:
            numbers = [float(p) for p in parts]
        except ValueError:
            numbers = []
        if len(parts) > 2 or not numbers:
            raise ValueError(
                f"hidden must be H or LOW:HIGH (fractions of the scanned pixels, e.g. 0.1:0.5), got {value!r}"
            )
        low, high = numbers[0], numbers[-1]
    else:
        low, high = (float(v) for v in value)
    if not (0 < low <= high < 1):
        raise ValueError(
            "hidden must satisfy 0 < low <= high < 1 (fractions of the scanned pixels hidden per crop), "
            f"got {low}:{high}"
        )
    return low, high


def one_fixed_mask(mask: np.ndarray) -> bool:
    """Whether every slice of a (n, y, x) mask stack is scanned at the same pixels (n >= 2)."""
    return mask.shape[0] >= 2 and bool(np.all(mask == mask[:1]))


def load_scan(sparse: Any, mask: Any, slices: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """``slices`` of a sparse stack and its mask as (n, y, x) float32 values and bool masks, unscanned values set to 0.

    Clear errors: scanned values outside [0, 1] or not finite, and a mask without any scanned pixel.
    """
    values = np.empty((len(slices), *tuple(sparse.shape[1:])), dtype=np.float32)
    known = np.empty(values.shape, dtype=bool)
    for i, z in enumerate(slices):
        known[i] = np.asarray(mask[z]).astype(bool, copy=False)
        plane = np.asarray(sparse[z], dtype=np.float32)
        values[i] = np.where(known[i], plane, 0.0)
    scanned = values[known]
    if scanned.size == 0:
        raise ValueError("the mask has no scanned pixel in the chosen slices: there is nothing to learn from")
    if not np.all(np.isfinite(scanned)) or scanned.min() < 0 or scanned.max() > 1:
        raise ValueError(
            "the scanned values must be finite and in [0, 1]; scale the stack first "
            "(napari_sparse_sem.io.volume.to_float01)"
        )
    return values, known


def _view(plane: np.ndarray, turns: int, flip: bool) -> np.ndarray:
    out = np.rot90(plane, turns)
    return np.ascontiguousarray(out[:, ::-1] if flip else out)


def _hidden_pixels(size: int, share: float, block: int, rng: np.random.Generator) -> np.ndarray:
    """A (size, size) bool map hiding a ``share`` of single pixels (``block`` 1) or of ``block``-sided patches laid
    on a grid at a random offset."""
    if block <= 1:
        return rng.random((size, size)) < share
    cells = size // block + 2
    chosen = rng.random((cells, cells)) < share
    grid = np.repeat(np.repeat(chosen, block, axis=0), block, axis=1)
    y0, x0 = int(rng.integers(block)), int(rng.integers(block))
    return np.ascontiguousarray(grid[y0 : y0 + size, x0 : x0 + size])


def training_batch(
    values: np.ndarray,
    known: np.ndarray,
    numbers: Sequence[int],
    *,
    crop: int,
    batch_size: int,
    hidden: tuple[float, float],
    context: int,
    fill: str,
    rng: np.random.Generator,
    hidden_block: int = 1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(inputs (b, 2 (2 context + 1), c, c), targets (b, 1, c, c), weights (b, 1, c, c)) of one batch.

    ``values``/``known``: the loaded scan (:func:`load_scan`, validation pixels already removed from ``known``);
    ``numbers``: their slice numbers (a neighbour exists only where they are consecutive). ``weights`` is 1 at the
    hidden scanned pixels of each centre crop and 0 elsewhere, ``targets`` the measured values (0 where unscanned).
    ``hidden_block`` > 1 hides square patches of that side (a share ``h`` of the patches) instead of single pixels.
    """
    count, height, width = values.shape
    size, k = int(crop), int(context)
    inputs = np.zeros((batch_size, 2 * (2 * k + 1), size, size), dtype=np.float32)
    targets = np.zeros((batch_size, 1, size, size), dtype=np.float32)
    weights = np.zeros((batch_size, 1, size, size), dtype=np.float32)
    for i in range(batch_size):
        z = int(rng.integers(count))
        y0, x0 = int(rng.integers(height - size + 1)), int(rng.integers(width - size + 1))
        turns, flip = int(rng.integers(4)), bool(rng.integers(2))
        h = float(rng.uniform(hidden[0], hidden[1])) if hidden[1] > hidden[0] else hidden[0]
        hide = _hidden_pixels(size, h, int(hidden_block), rng)
        offsets = list(range(-k, k + 1))
        if k and rng.integers(2):
            offsets.reverse()
        for position, offset in enumerate(offsets):
            j = z + offset
            present = 0 <= j < count and int(numbers[j]) == int(numbers[z]) + offset
            if offset and (not present or rng.random() < NEIGHBOUR_DROP):
                continue  # a missing neighbour: two zero channels
            crop_values = _view(values[j, y0 : y0 + size, x0 : x0 + size], turns, flip)
            crop_known = _view(known[j, y0 : y0 + size, x0 : x0 + size], turns, flip)
            visible = crop_known & ~hide
            inputs[i, 2 * position : 2 * position + 2] = filled_input(crop_values, visible, fill)
            if offset == 0:
                targets[i, 0] = crop_values
                weights[i, 0] = crop_known & hide
    return inputs, targets, weights


@dataclass
class ValidationSet:
    """Fixed validation pixels: for each chosen slice, the input with those pixels hidden (the same (y, x) in the
    slab's neighbours), their positions and measured values, and ``linear`` scored on them."""

    inputs: list[np.ndarray]
    pixels: list[np.ndarray]  # bool (y, x) of the crop: the validation pixels
    targets: list[np.ndarray]  # the measured values of the crop
    slices: list[int]
    count: int
    linear_psnr: float

    @classmethod
    def build(
        cls,
        values: np.ndarray,
        known: np.ndarray,
        numbers: Sequence[int],
        *,
        fraction: float,
        max_slices: int,
        context: int,
        fill: str,
        rng: np.random.Generator,
    ) -> tuple[ValidationSet | None, np.ndarray]:
        """Choose the validation pixels (``fraction`` of the scanned pixels of up to ``max_slices`` evenly spaced
        slices, in a central crop) and return the set with the training mask (``known`` without them)."""
        from napari_sparse_sem.recon.interp import fill_linear

        train_known = known.copy()
        count, height, width = values.shape
        if fraction <= 0 or max_slices <= 0:
            return None, train_known
        side_y, side_x = min(height, VALIDATION_SIDE), min(width, VALIDATION_SIDE)
        y0, x0 = (height - side_y) // 2, (width - side_x) // 2
        box = (slice(y0, y0 + side_y), slice(x0, x0 + side_x))
        chosen = sorted({round(float(v)) for v in np.linspace(0, count - 1, min(max_slices, count))})
        picked: dict[int, np.ndarray] = {}
        for i in chosen:
            scanned = known[i][box]
            pick = scanned & (rng.random(scanned.shape) < fraction)
            if pick.sum() < 3 or (scanned & ~pick).sum() < 3:
                continue
            picked[i] = pick
            train_known[i][box] &= ~pick
        if not picked:
            return None, train_known
        k = int(context)
        validation = cls([], [], [], [], 0, 0.0)
        squared = []
        for i, pick in picked.items():
            lo, hi = max(0, i - k), min(count, i + k + 1)
            slab_values = values[lo:hi][(slice(None), *box)]
            slab_known = known[lo:hi][(slice(None), *box)].copy()
            for j in range(hi - lo):
                if int(numbers[lo + j]) != int(numbers[i]) + (lo + j - i):
                    slab_known[j] = False  # not a true neighbour
            slab_known &= ~pick[None]  # hidden in every slice of the slab, as in training
            slab_values = np.where(slab_known, slab_values, 0.0).astype(np.float32)
            center = i - lo
            planes = slab_input(slab_values, slab_known, center, k, fill)
            validation.inputs.append(planes)
            validation.pixels.append(pick)
            validation.targets.append(values[i][box].copy())
            validation.slices.append(int(numbers[i]))
            validation.count += int(pick.sum())
            guess = fill_linear(slab_values[center], slab_known[center])
            squared.append((guess[pick] - values[i][box][pick]) ** 2)
        validation.linear_psnr = _psnr_of(np.concatenate(squared))
        return validation, train_known

    def score(self, net: Any, device: str) -> float:
        """PSNR (dB) of ``net``'s predictions at the validation pixels, all of them pooled."""
        import torch

        was_training = net.training
        net.eval()
        squared = []
        with torch.inference_mode():
            for planes, pick, target in zip(self.inputs, self.pixels, self.targets, strict=True):
                out = net(torch.from_numpy(planes[None]).to(device))[0]
                image = np.clip(out[0, 0].float().cpu().numpy(), 0.0, 1.0)
                squared.append((image[pick] - target[pick]) ** 2)
        net.train(was_training)
        return _psnr_of(np.concatenate(squared))


def _psnr_of(squared: np.ndarray) -> float:
    mse = float(np.mean(squared))
    return float("inf") if mse == 0 else float(10.0 * np.log10(1.0 / mse))
