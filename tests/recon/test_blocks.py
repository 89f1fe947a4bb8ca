"""Block plans for block-wise reconstruction: every output voxel written by exactly one block, no shared chunk, halos
clipped to the volume, and a result cropped from a block's read region lands where the block says."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from napari_sparse_sem.recon.blocks import plan_blocks


def tiles_the_volume(shape, blocks) -> bool:
    """The blocks' output regions are the product of a partition of each axis: every voxel in exactly one block
    (checked on the spans, not on a voxel array, so a 250 × 3000² plan costs nothing)."""
    axes = [sorted({getattr(b, name) for b in blocks}) for name in ("z", "y", "x")]
    for spans, size in zip(axes, shape, strict=True):
        if spans[0][0] != 0 or spans[-1][1] != size or any(a[1] != b[0] for a, b in itertools.pairwise(spans)):
            return False
    product = {(z, y, x) for z in axes[0] for y in axes[1] for x in axes[2]}
    return len(blocks) == len(product) and {(b.z, b.y, b.x) for b in blocks} == product


@pytest.mark.parametrize(
    ("shape", "chunks", "slab", "tile", "context", "halo"),
    [
        ((250, 250, 250), (16, 250, 250), None, None, 0, 0),  # whole slices, one z-chunk per block
        ((250, 3000, 3000), (8, 1024, 1024), 16, 1024, 1, 32),  # tiles of a big slice, a ±1 slice context
        ((5, 7, 9), (2, 3, 3), 4, 6, 5, 100),  # halos larger than the volume are clipped
    ],
)
def test_every_voxel_has_one_block_and_no_chunk_is_shared(shape, chunks, slab, tile, context, halo) -> None:
    blocks = plan_blocks(shape, chunks=chunks, slab=slab, tile=tile, context=context, halo=halo)
    assert tiles_the_volume(shape, blocks)
    assert [b.index for b in blocks] == list(range(len(blocks)))
    assert len({b.key for b in blocks}) == len(blocks)
    owner: dict[tuple[int, int, int], int] = {}
    for block in blocks:
        for cz in range(block.z[0] // chunks[0], -(-block.z[1] // chunks[0])):
            for cy in range(block.y[0] // chunks[1], -(-block.y[1] // chunks[1])):
                for cx in range(block.x[0] // chunks[2], -(-block.x[1] // chunks[2])):
                    assert owner.setdefault((cz, cy, cx), block.index) == block.index
    for block in blocks:
        for out, read, size, grow in (
            (block.z, block.read_z, shape[0], context),
            (block.y, block.read_y, shape[1], halo if tile else 0),
            (block.x, block.read_x, shape[2], halo if tile else 0),
        ):
            assert read == (max(0, out[0] - grow), min(size, out[1] + grow))


def test_a_result_cropped_to_inner_lands_in_place() -> None:
    rng = np.random.default_rng(0)
    volume = rng.random((12, 40, 50))
    out = np.zeros_like(volume)
    for block in plan_blocks(volume.shape, chunks=(4, 10, 10), slab=4, tile=20, context=2, halo=6):
        result = volume[block.read_region] * 1.0  # a method that returns its whole read region
        out[block.out_region] = result[block.inner]
    np.testing.assert_array_equal(out, volume)


def test_the_plan_is_the_same_every_time_and_refuses_shared_chunks() -> None:
    first = plan_blocks((30, 64, 64), chunks=(5, 32, 32), slab=10, tile=32, context=1, halo=8)
    assert first == plan_blocks((30, 64, 64), chunks=(5, 32, 32), slab=10, tile=32, context=1, halo=8)
    assert first[0].key == "z0-10_y0-32_x0-32" and len(first) == 3 * 2 * 2
    with pytest.raises(ValueError, match="z-chunks"):
        plan_blocks((30, 64, 64), chunks=(4, 32, 32), slab=10)
    with pytest.raises(ValueError, match="y/x chunks"):
        plan_blocks((30, 64, 64), chunks=(5, 32, 32), tile=48)
    with pytest.raises(ValueError, match="volume shape"):
        plan_blocks((0, 64, 64), chunks=(5, 32, 32))
