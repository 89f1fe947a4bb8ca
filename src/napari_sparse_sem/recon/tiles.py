"""Overlapping tiles for networks on large slices: memory is bounded by the tile batch, not by the slice size.

A slice is covered by square tiles of side ``tile`` that overlap by ``overlap`` pixels (the last tile in each direction
is aligned to the image's edge). Outputs are blended with a window that ramps linearly across the overlaps and are
normalised by the summed window, so a constant image comes back exactly and tile seams do not show.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

__all__ = ["Tiling", "tile_starts"]


def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles of size ``tile`` covering ``[0, length)`` with at least ``overlap`` pixels shared."""
    if tile >= length:
        return [0]
    step = tile - overlap
    if step < 1:
        raise ValueError(f"tile ({tile}) must be larger than the overlap ({overlap})")
    starts = list(range(0, length - tile, step))
    starts.append(length - tile)
    return starts


def _ramp(size: int, overlap: int) -> np.ndarray:
    """1D window: rises linearly over the first ``overlap`` pixels, falls over the last, 1 in between (never 0)."""
    window = np.ones(size, dtype=np.float32)
    if overlap > 0 and size > 2 * overlap:
        rise = (np.arange(overlap, dtype=np.float32) + 1.0) / (overlap + 1.0)
        window[:overlap] = rise
        window[-overlap:] = rise[::-1]
    return window


@dataclass
class Tiling:
    """The tiles of a ``shape = (height, width)`` image; ``boxes`` are (y slice, x slice) pairs."""

    shape: tuple[int, int]
    tile: int
    overlap: int
    boxes: list[tuple[slice, slice]] = field(init=False)
    window: np.ndarray = field(init=False)
    norm: np.ndarray = field(init=False)

    def __post_init__(self) -> None:
        height, width = self.shape
        tile_y, tile_x = min(self.tile, height), min(self.tile, width)
        ys = tile_starts(height, tile_y, self.overlap)
        xs = tile_starts(width, tile_x, self.overlap)
        self.boxes = [(slice(y, y + tile_y), slice(x, x + tile_x)) for y in ys for x in xs]
        self.window = np.outer(_ramp(tile_y, self.overlap), _ramp(tile_x, self.overlap)).astype(np.float32)
        total = np.zeros(self.shape, dtype=np.float32)
        for box in self.boxes:
            total[box] += self.window
        self.norm = 1.0 / total  # > 0 everywhere: every pixel lies in some tile and the window is never 0

    @classmethod
    def whole(cls, shape: tuple[int, int]) -> Tiling:
        """One tile: the whole image (the untiled case through the same code)."""
        return cls(shape, max(shape), 0)

    def chunks(self, batch: int) -> list[list[tuple[slice, slice]]]:
        """The boxes in groups of at most ``batch`` (one forward/backward pass each)."""
        return [self.boxes[i : i + batch] for i in range(0, len(self.boxes), max(1, batch))]

    def blend(self, tiles: list[np.ndarray]) -> np.ndarray:
        """Assemble per-box (y, x) arrays into one image (numpy; the DIP fit does the same on the device)."""
        out = np.zeros(self.shape, dtype=np.float32)
        for box, values in zip(self.boxes, tiles, strict=True):
            out[box] += values * self.window
        return out * self.norm
