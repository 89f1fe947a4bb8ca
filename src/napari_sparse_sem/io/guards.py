"""Guards against hostile files, shared by every reader: the one error type, the size limits a header must respect,
the eager decode at open and the lazy wrapper that names the file and slice when a chunk fails to decode.

See :mod:`napari_sparse_sem.io.readers` (its module docstring) for how the readers use them.
"""

from __future__ import annotations

import linecache
import math
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

MAX_SLICE_BYTES = 2**32
"""One decoded slice at most 4 GiB: FIB-SEM slices reach about 32k x 32k uint16 (2 GiB); a header claiming more is
taken as corrupt rather than allocated (a lying TIFF claimed 32 x 1 073 741 856 px)."""

MAX_VOLUME_BYTES = 2**50
"""The whole volume at most 1 PiB decoded; more than any FIB-SEM run, and it keeps the arithmetic far from overflow."""

MAX_COMPRESSION_RATIO = {1: 1, 32773: 128, 8: 2048, 32946: 2048, 5: 4096}
"""Decoded bytes per stored byte that a TIFF compression can reach (by TIFF compression code), used to refuse
headers that claim more pixels than the file can hold. None (1): the data must fit in the file. PackBits (32773):
a run of at most 128 bytes costs 2 bytes, so at most 64:1. Deflate (8, 32946; also PNG): at most about 1032:1;
a 512 x 512 all-zero uint8 zlib TIFF reaches 493:1, a 4096 x 4096 one 910:1. LZW (5): at most about 2 730:1 (12-bit
codes for strings of up to ~4 000 bytes). Each bound has headroom over the theoretical maximum."""

DEFAULT_MAX_COMPRESSION_RATIO = 2**20
"""The bound for other codecs (zstd, LZMA, LERC, JPEG XL, ...): zstd reaches 7 500:1 on an all-zero 4096 x 4096 image
and some codecs store a constant tile in a few bytes, so only a claim a million times the file size is refused."""

EAGER_DECODE_BYTES = 64 * 2**20
"""Volumes up to 64 MiB decoded are decoded whole at open (a corrupt strip fails there, not when napari draws);
bigger ones have their middle slice (and the first one, when it is at most this size) decoded."""

MAX_COUNTED_CHUNKS = 100_000
"""zarr arrays with more chunks are not checked for missing chunks (that lists every stored key)."""

MAX_CHUNKS_PER_AXIS = 2**20
"""At most this many zarr chunks along one axis: dask keeps a tuple per axis, and a store claiming 10^63 slices of
one chunk each would exhaust memory building it."""


class VolumeReadError(ValueError):
    """A file that cannot be read: corrupt, truncated, a header that lies, or too big to be real.

    A ``ValueError`` (so ``except ValueError`` still catches it); the message is one line naming the file.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()))


def short_error(err: BaseException, limit: int = 200) -> str:
    """'Type: message' on one line, cut to ``limit`` characters (library messages can be long or multi-line)."""
    text = " ".join(str(err).split())
    if len(text) > limit:
        text = text[: limit - 1] + "…"
    return f"{type(err).__name__}: {text}" if text else type(err).__name__


def raised_by_us(err: BaseException) -> bool:
    """True for one of our worded errors: raised by a ``raise`` statement in this package.

    A ValueError that numpy, a builtin (``zip(strict=True)``, ``int()``) or a library raises while our code runs has
    its innermost frame elsewhere, or on a line that is not a ``raise``; those are reported as VolumeReadError.
    """
    tb = err.__traceback__
    if tb is None:
        return False
    while tb.tb_next is not None:
        tb = tb.tb_next
    if not str(tb.tb_frame.f_globals.get("__name__", "")).startswith("napari_sparse_sem."):
        return False
    return linecache.getline(tb.tb_frame.f_code.co_filename, tb.tb_lineno).lstrip().startswith("raise ")


@contextmanager
def read_errors(file: Path) -> Iterator[None]:
    """Let FileNotFoundError, VolumeReadError and our own worded ValueErrors through; anything else that goes wrong
    while reading ``file`` becomes a one-line VolumeReadError naming it (KeyboardInterrupt and SystemExit pass)."""
    try:
        yield
    except VolumeReadError:
        raise
    except FileNotFoundError as err:
        if not file.exists():
            raise
        raise VolumeReadError(f"{file} could not be read: a part of it is missing ({short_error(err)})") from err
    except ValueError as err:
        if raised_by_us(err):
            raise
        raise VolumeReadError(f"{file} could not be read: it may be corrupt ({short_error(err)})") from err
    except MemoryError as err:
        raise VolumeReadError(
            f"{file} could not be read: it needs more memory than is free, so its header is probably corrupt "
            f"({short_error(err)})"
        ) from err
    except OSError as err:  # permissions, a folder where a file should be, an I/O error ...
        raise VolumeReadError(f"{file} could not be read ({short_error(err)})") from err
    except Exception as err:
        raise VolumeReadError(f"{file} could not be read: it may be corrupt ({short_error(err)})") from err


def size_text(nbytes: int) -> str:
    for unit, factor in (("PiB", 2**50), ("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if nbytes >= factor:
            return f"{nbytes / factor:.3g} {unit}"
    return f"{nbytes} bytes"


def check_size(
    file: Path,
    shape: Any,
    dtype: Any,
    *,
    plane_axes: int = 2,
    stored: int | None = None,
    ratio: float | None = None,
    what: str = "its header",
) -> None:
    """Refuse a shape no real volume has, before any array of it is made (VolumeReadError saying which number).

    ``plane_axes`` trailing axes form one slice (3 when samples follow y, x). With ``stored`` (bytes in the file)
    and ``ratio`` (the most its compression can expand), the decoded size must be at most ``stored * ratio``.
    """
    dims = [int(n) for n in shape]
    itemsize = np.dtype(dtype).itemsize
    if any(n < 0 for n in dims):
        raise VolumeReadError(f"{file}: {what} gives a negative size in shape {tuple(dims)}; the file is corrupt")
    if not dims or 0 in dims:
        raise VolumeReadError(f"{file} holds no pixels: {what} gives shape {tuple(dims)}")
    plane_dims = dims[-plane_axes:]
    plane = math.prod(plane_dims) * itemsize
    total = math.prod(dims) * itemsize
    if plane > MAX_SLICE_BYTES:
        size = " x ".join(str(n) for n in plane_dims)
        raise VolumeReadError(
            f"{file}: {what} claims slices of {size} {np.dtype(dtype)} ({size_text(plane)} each), more than the "
            f"{size_text(MAX_SLICE_BYTES)} a real slice needs; the header is probably corrupt"
        )
    if total > MAX_VOLUME_BYTES:
        raise VolumeReadError(
            f"{file}: {what} claims shape {tuple(dims)} {np.dtype(dtype)} ({size_text(total)}), more than the "
            f"{size_text(MAX_VOLUME_BYTES)} limit; the header is probably corrupt"
        )
    if stored is not None and ratio is not None and total > stored * ratio:
        bound = "the data must fit in the file" if ratio <= 1 else f"its compression expands at most {ratio:g}:1"
        raise VolumeReadError(
            f"{file}: {what} claims shape {tuple(dims)} {np.dtype(dtype)} ({size_text(total)} decoded), but the file "
            f"has {size_text(stored)} and {bound}; the header is probably corrupt or the file truncated"
        )


def decode_now(data: Any, file: Path) -> None:
    """Decode the pixels napari shows first, so a corrupt chunk fails at open rather than at draw time.

    In-memory and memory-mapped arrays need no decoding. Small volumes (at most EAGER_DECODE_BYTES) are decoded
    whole; others the middle slice, and the first one when it is small. The result is dropped.
    """
    if isinstance(data, np.ndarray):
        return
    nz = int(data.shape[0])
    itemsize = np.dtype(data.dtype).itemsize
    plane = math.prod(int(n) for n in data.shape[1:]) * itemsize
    if nz * plane <= EAGER_DECODE_BYTES:
        _compute_once(data)
        return
    _compute_once(data[nz // 2])
    if nz > 1 and plane <= EAGER_DECODE_BYTES:
        _compute_once(data[0])


def _compute_once(data: Any) -> None:
    compute = getattr(data, "compute", None)
    if compute is not None:
        compute(scheduler="synchronous")  # one thread: the check runs beside the user's other work
    else:
        np.asarray(data)


class _Decoding:
    """An array-like over a decoding source (compressed TIFF, zarr, HDF5) for ``dask.array.from_array``.

    A read that fails (corrupt chunk, codec error, ...) raises a VolumeReadError naming the file and the slice, so
    napari drawing a broken slice later shows a clear message instead of a codec's exception.
    """

    def __init__(self, source: Any, file: Path) -> None:
        self.source, self.file = source, file
        self.shape = tuple(int(n) for n in source.shape)
        self.dtype = np.dtype(source.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, index: Any) -> np.ndarray:
        try:
            return np.asarray(self.source[index])
        except Exception as err:  # not KeyboardInterrupt/SystemExit: those are BaseException
            raise VolumeReadError(
                f"{self.file}: {self._where(index)} could not be decoded; the file is probably corrupt "
                f"({short_error(err)})"
            ) from err

    def _where(self, index: Any) -> str:
        """'slice 4', 'slices 0-5' or, for sources that are not (z, y, x), 'region [0:40, 0:48]'."""
        parts = index if isinstance(index, tuple) else (index,)
        spans = []
        for part, size in zip(parts, self.shape, strict=False):
            if isinstance(part, slice):
                start, stop, _ = part.indices(size)
                spans.append((start, stop))
            elif isinstance(part, (int, np.integer)):
                spans.append((int(part), int(part) + 1))
            else:
                return "a region"
        if self.ndim == 3 and spans:
            start, stop = spans[0]
            return f"slice {start}" if stop - start <= 1 else f"slices {start}-{stop - 1}"
        return "region [" + ", ".join(f"{a}:{b}" for a, b in spans) + "]"


def lazy_array(source: Any, file: Path, chunks: Any, **kwargs: Any) -> Any:
    """A dask array over ``source`` that reads through :class:`_Decoding`."""
    import dask.array as da

    wrapped = _Decoding(source, file)
    name = f"read-{uuid.uuid4().hex}"
    meta = np.empty((0,) * wrapped.ndim, dtype=wrapped.dtype)
    return da.from_array(wrapped, chunks=chunks, name=name, meta=meta, **kwargs)
