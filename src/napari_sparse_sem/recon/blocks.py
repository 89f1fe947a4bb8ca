"""Cutting a volume into blocks for block-wise reconstruction (issue #17: many processes, GPUs or machines).

A block owns a region of the output: a z-slab, and for large slices a y/x tile. Blocks never share an output chunk, so
workers write their chunks straight into one zarr store without locks: a slab is a whole number of the store's z-chunks
and a tile a whole number of its y/x chunks. Each block also says what it reads: its region grown by a read-only halo —
the method's ``context`` slices on each side in z (3D methods), and ``halo`` pixels in y/x around a tile (networks that
fit tiles; classical interpolation needs whole slices to be exact, so it gets no tiles). Everything is clipped to the
volume. The plan is a pure function of the shapes, so a resumed run finds the same blocks under the same keys.
"""

from __future__ import annotations

from dataclasses import dataclass

Span = tuple[int, int]
"""A half-open index range ``(start, stop)``."""


@dataclass(frozen=True)
class Block:
    """One unit of work: the output region it writes (``z``, ``y``, ``x``) and the input region it reads
    (``read_z``, ``read_y``, ``read_x``: the output region plus its halo, clipped to the volume)."""

    index: int
    z: Span
    y: Span
    x: Span
    read_z: Span
    read_y: Span
    read_x: Span

    @property
    def key(self) -> str:
        """A name that stays the same between runs of the same plan (for the record of finished blocks)."""
        return f"z{self.z[0]}-{self.z[1]}_y{self.y[0]}-{self.y[1]}_x{self.x[0]}-{self.x[1]}"

    @property
    def out_region(self) -> tuple[slice, slice, slice]:
        """Where the block's result goes in the output volume."""
        return slice(*self.z), slice(*self.y), slice(*self.x)

    @property
    def read_region(self) -> tuple[slice, slice, slice]:
        """What the block reads from the inputs (output region plus halo)."""
        return slice(*self.read_z), slice(*self.read_y), slice(*self.read_x)

    @property
    def inner(self) -> tuple[slice, slice, slice]:
        """The output region within the read region (to crop a result computed on the read region)."""
        return tuple(
            slice(out[0] - read[0], out[1] - read[0])
            for out, read in ((self.z, self.read_z), (self.y, self.read_y), (self.x, self.read_x))
        )  # type: ignore[return-value]


def _spans(size: int, step: int) -> list[Span]:
    return [(start, min(start + step, size)) for start in range(0, size, step)]


def _grow(span: Span, by: int, size: int) -> Span:
    return max(0, span[0] - by), min(size, span[1] + by)


def plan_blocks(
    shape: tuple[int, int, int],
    *,
    chunks: tuple[int, int, int],
    slab: int | None = None,
    tile: int | None = None,
    context: int = 0,
    halo: int = 0,
) -> list[Block]:
    """The blocks of a ``(z, y, x)`` volume whose output is stored in ``chunks``.

    ``slab`` slices per block (default: one z-chunk) and ``tile`` pixels per block side (default: whole slices) must
    be whole numbers of chunks, so no two blocks write the same chunk; ``context`` is the number of neighbour slices a
    3D method reads on each side and ``halo`` the pixels a tiled method reads around its tile. Blocks come in z, then
    y, then x order.
    """
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"expected a (z, y, x) volume shape with every size >= 1, got {shape}")
    if len(chunks) != 3 or min(chunks) < 1:
        raise ValueError(f"expected (z, y, x) chunk sizes >= 1, got {chunks}")
    if context < 0 or halo < 0:
        raise ValueError(f"context and halo must be >= 0, got context={context}, halo={halo}")
    slab = chunks[0] if slab is None else slab
    if slab < 1 or slab % chunks[0]:
        raise ValueError(
            f"a slab of {slab} slices is not a whole number of the output's z-chunks ({chunks[0]}): two blocks would "
            "write the same chunk; choose a multiple"
        )
    if tile is not None and (tile < 1 or tile % chunks[1] or tile % chunks[2]):
        raise ValueError(
            f"a tile of {tile} px is not a whole number of the output's y/x chunks {chunks[1:]}: two blocks would "
            "write the same chunk; choose a multiple"
        )
    nz, ny, nx = shape
    ys = _spans(ny, tile) if tile else [(0, ny)]
    xs = _spans(nx, tile) if tile else [(0, nx)]
    pad = halo if tile else 0
    blocks = []
    for z in _spans(nz, slab):
        for y in ys:
            for x in xs:
                blocks.append(Block(len(blocks), z, y, x, _grow(z, context, nz), _grow(y, pad, ny), _grow(x, pad, nx)))
    return blocks
