"""A seeded corpus of valid and hostile volume files, and the napari-like way we try each one.

Shared by ``tests/io/test_fuzz_readers.py`` (which asserts every outcome is acceptable) and
``benchmarks/fuzz_readers.py`` (which counts outcomes and times them). :data:`CASES` is known without touching the
disk, so pytest can name each case; :func:`build_corpus` writes the valid files once and derives every case from them
in a folder of its own: bit flips in the header and data regions, truncations, lying headers (TIFF tags, zarr
metadata, MRC dimensions), wrong suffixes, empty files and odd folders. All offsets, bits and lengths come from
``numpy.random.default_rng(SEED)``, so the corpus is the same on every machine.
"""

from __future__ import annotations

import json
import shutil
import struct
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

SEED = 15  # issue #15
SHAPE = (6, 40, 48)  # small, not square, even z so the middle slice is not the first
HEADER_BYTES = {"tiff": 512, "png": 64, "mrc": 1024, "hdf5": 2048}
"""How many leading bytes count as the 'header region' when flipping bits, per format."""

KINDS = ("volume", "None", "ValueError", "VolumeReadError", "FileNotFoundError", "other")
"""Outcome kinds: a readable volume, None from get_reader, or the exception type (anything else is 'other')."""


# ------------------------------------------------------------------------------------------------- valid files


def _stack(dtype: Any = np.uint8) -> np.ndarray:
    """A smooth (so compressible) deterministic stack with a little noise."""
    z, y, x = np.meshgrid(*(np.arange(n) for n in SHAPE), indexing="ij")
    noise = np.random.default_rng(SEED).integers(0, 8, SHAPE)
    return ((x * 3 + y * 2 + z * 17 + noise) % 250).astype(dtype)


def _tiff(**kwargs: Any) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        import tifffile

        data = kwargs.pop("data", None)
        tifffile.imwrite(path, _stack() if data is None else data, **kwargs)

    return write


def _tiff_pages(path: Path) -> None:
    """One page per slice without shape metadata: tifffile sees a plain multi-page file."""
    import tifffile

    with tifffile.TiffWriter(path) as tif:
        for plane in _stack():
            tif.write(plane, photometric="minisblack", metadata=None, compression="zlib")


def _ours_tiff(path: Path) -> None:
    from napari_sparse_sem.io import write_volume

    write_volume(path, _stack(), voxel_size=(10.0, 5.0, 5.0), metadata={"pattern": "random"})


def _ours_zarr(path: Path) -> None:
    from napari_sparse_sem.io import write_volume

    write_volume(path, _stack(), voxel_size=(10.0, 5.0, 5.0))


def _plain_zarr(zarr_format: int) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        import zarr

        array = zarr.create_array(str(path), shape=SHAPE, chunks=(1, 20, 48), dtype="u2", zarr_format=zarr_format)
        array[:] = _stack(np.uint16)

    return write


def _png_folder(path: Path) -> None:
    import imageio.v3 as iio

    path.mkdir()
    for z, plane in enumerate(_stack()[:4]):
        iio.imwrite(path / f"slice_{z}.png", plane)


def _mrc(path: Path) -> None:
    import mrcfile

    with mrcfile.new(path) as mrc:
        mrc.set_data(_stack(np.int16))
        mrc.voxel_size = (50.0, 50.0, 100.0)


def _hdf5(chunked: bool) -> Callable[[Path], None]:
    def write(path: Path) -> None:
        import h5py

        with h5py.File(path, "w") as f:
            if chunked:
                f.create_dataset("raw", data=_stack(), chunks=(1, 20, 48), compression="gzip")
            else:
                f.create_dataset("raw", data=_stack())

    return write


BASES: dict[str, tuple[str, str, Callable[[Path], None]]] = {
    # name: (file name, format for header size, writer)
    "tiff_plain": ("vol.tif", "tiff", _tiff(photometric="minisblack")),
    "tiff_zlib": ("vol.tif", "tiff", _tiff(photometric="minisblack", compression="zlib")),
    "tiff_pages": ("vol.tiff", "tiff", _tiff_pages),
    "tiff_imagej": ("vol.tif", "tiff", _tiff(imagej=True, metadata={"axes": "ZYX"})),
    "tiff_ours": ("vol.tif", "tiff", _ours_tiff),
    "tiff_2d16": ("slice.tif", "tiff", _tiff(data=_stack(np.uint16)[2], photometric="minisblack")),
    "tiff_tiled_lzw": ("vol.tif", "tiff", _tiff(photometric="minisblack", tile=(16, 16), compression="lzw")),
    "png_folder": ("slices", "png", _png_folder),
    "zarr_ours": ("vol.zarr", "zarr", _ours_zarr),
    "zarr_v2": ("plain.zarr", "zarr", _plain_zarr(2)),
    "zarr_v3": ("plain.zarr", "zarr", _plain_zarr(3)),
    "mrc": ("vol.mrc", "mrc", _mrc),
    "hdf5_chunked": ("vol.h5", "hdf5", _hdf5(True)),
    "hdf5_contiguous": ("vol.h5", "hdf5", _hdf5(False)),
    "tiff_3slices": ("three.tif", "tiff", _tiff(data=_stack()[:3])),  # tifffile stores (3, y, x) as planar RGB
}


# --------------------------------------------------------------------------------------------------- mutations


def _flip(target: Path, region: str, where: float, bit: int, header: int) -> None:
    """Flip one bit at a fractional position of the header region (leading bytes) or the data region (the rest)."""
    raw = bytearray(target.read_bytes())
    head = min(header, len(raw))
    if region == "header" or head == len(raw):
        offset = int(where * head)
    else:
        offset = head + int(where * (len(raw) - head))
    offset = min(offset, len(raw) - 1)
    raw[offset] ^= 1 << bit
    target.write_bytes(bytes(raw))


def _truncate(target: Path, keep: float | int) -> None:
    raw = target.read_bytes()
    length = keep if isinstance(keep, int) else int(len(raw) * keep)
    target.write_bytes(raw[: max(0, min(length, len(raw)))])


def _chunk_files(store: Path) -> list[Path]:
    """The chunk files of a zarr store (everything that is not metadata), sorted."""
    meta = {".zarray", ".zattrs", ".zgroup", "zarr.json"}
    return sorted(p for p in store.rglob("*") if p.is_file() and p.name not in meta)


def _metadata_file(store: Path) -> Path:
    """The array metadata file of a zarr store: '.zarray' (v2) or the array's 'zarr.json' (v3)."""
    for name in (".zarray", "zarr.json"):
        found = sorted(store.rglob(name), key=lambda p: (len(p.parts), str(p)))
        if name == "zarr.json":
            found = [p for p in found if json.loads(p.read_text()).get("node_type") == "array"]
        if found:
            return found[0]
    raise FileNotFoundError(f"no array metadata in {store}")


def _patch_zarr_meta(store: Path, key: str, value: Any) -> None:
    meta_file = _metadata_file(store)
    meta = json.loads(meta_file.read_text())
    meta[key] = value
    meta_file.write_text(json.dumps(meta))


def _tiff_tag(target: Path, tag: str, value: int) -> None:
    """Overwrite the first value of ``tag`` on the first page in place (a lying header)."""
    import tifffile

    with tifffile.TiffFile(target) as tif:
        found = tif.pages.first.tags[tag]
        fmt = {3: "H", 4: "I", 16: "Q"}[int(found.dtype)]
        order, offset = tif.byteorder, found.valueoffset
    value = min(value, 2 ** (8 * struct.calcsize(fmt)) - 1)
    with open(target, "r+b") as fh:
        fh.seek(offset)
        fh.write(struct.pack(order + fmt, value))


def _png_size(folder: Path, width: int, height: int) -> None:
    """Make the second PNG of a folder claim another size, with a valid header checksum (a consistent lie)."""
    import zlib

    target = sorted(folder.glob("*.png"))[1]
    raw = bytearray(target.read_bytes())
    raw[16:24] = struct.pack(">II", width, height)
    raw[29:33] = struct.pack(">I", zlib.crc32(bytes(raw[12:29])))
    target.write_bytes(bytes(raw))


def _mrc_header(target: Path, offset: int, value: int) -> None:
    with open(target, "r+b") as fh:
        fh.seek(offset)
        fh.write(struct.pack("<i", value))


@dataclass(frozen=True)
class Case:
    """One file to try: built from the valid file ``base`` (or from nothing) by ``mutate(path)``.

    ``file_name`` overrides the base's name (wrong suffixes); ``expect_volume`` marks the unmodified valid files.
    """

    name: str
    base: str | None
    mutate: Callable[[Path], None] | None = None
    file_name: str | None = None
    expect_volume: bool = False


def _in_file(pick: Callable[[Path], Path], action: Callable[[Path], None]) -> Callable[[Path], None]:
    """Apply ``action`` to the file ``pick(path)`` inside a folder case (a zarr store or a folder of slices)."""
    return lambda path: action(pick(path))


def _nth_chunk(where: float) -> Callable[[Path], Path]:
    def pick(store: Path) -> Path:
        chunks = _chunk_files(store)
        return chunks[min(int(where * len(chunks)), len(chunks) - 1)]

    return pick


def _second_png(folder: Path) -> Path:
    return sorted(folder.glob("*.png"))[1]


def _plan(seed: int = SEED) -> list[Case]:
    """Every case, in a fixed order; random numbers are drawn in this order so the corpus never changes."""
    rng = np.random.default_rng(seed)
    cases: list[Case] = [Case(f"{base}-valid", base, expect_volume=True) for base in BASES]

    def flips(base: str, count: int, region: str, header: int, pick: Callable[[Path], Path] | None = None) -> None:
        for i in range(count):
            where, bit = float(rng.random()), int(rng.integers(0, 8))

            def action(p: Path, region: str = region, where: float = where, bit: int = bit) -> None:
                _flip(p, region, where, bit, header)

            mutate = action if pick is None else _in_file(pick, action)
            cases.append(Case(f"{base}-flip-{region}-{i}-at{where:.3f}-bit{bit}", base, mutate))

    def cuts(base: str, keeps: list[float | int], pick: Callable[[Path], Path] | None = None) -> None:
        for keep in keeps:

            def action(p: Path, keep: float | int = keep) -> None:
                _truncate(p, keep)

            mutate = action if pick is None else _in_file(pick, action)
            label = f"{keep}B" if isinstance(keep, int) else f"{keep:.0%}"
            cases.append(Case(f"{base}-truncate-{label}", base, mutate))

    # TIFF: flips, truncations, lying tags
    for base in ("tiff_plain", "tiff_zlib", "tiff_pages", "tiff_imagej", "tiff_ours", "tiff_2d16", "tiff_tiled_lzw"):
        flips(base, 6, "header", HEADER_BYTES["tiff"])
        flips(base, 3, "data", HEADER_BYTES["tiff"])
        cuts(base, [0, 7, 0.1, 0.5, 0.9, -1])
    lies = [
        ("ImageWidth", 1_073_741_856),
        ("ImageLength", 1_073_741_856),
        ("ImageWidth", 65_535),
        ("StripByteCounts", 2**31),
        ("StripOffsets", 2**31),
        ("RowsPerStrip", 0),
        ("BitsPerSample", 64),
        ("SamplesPerPixel", 4),
        ("Compression", 9999),
    ]
    for base in ("tiff_plain", "tiff_zlib", "tiff_pages", "tiff_imagej"):
        for tag, value in lies:
            cases.append(
                Case(f"{base}-lie-{tag}-{value}", base, lambda p, tag=tag, value=value: _tiff_tag(p, tag, value))
            )
    both = lambda p: (_tiff_tag(p, "ImageWidth", 32), _tiff_tag(p, "ImageLength", 1_073_741_856))  # noqa: E731
    cases.append(Case("tiff_zlib-lie-32x1073741856", "tiff_zlib", both))
    square = lambda p: (_tiff_tag(p, "ImageWidth", 65_535), _tiff_tag(p, "ImageLength", 65_535))  # noqa: E731
    cases.append(Case("tiff_zlib-lie-65535x65535", "tiff_zlib", square))  # under the slice limit, over the ratio

    # folder of PNG slices: damage one slice, or add a foreign one
    flips("png_folder", 3, "header", HEADER_BYTES["png"], _second_png)
    flips("png_folder", 2, "data", HEADER_BYTES["png"], _second_png)
    cuts("png_folder", [0, 0.5], _second_png)

    def rgba(folder: Path) -> None:
        import imageio.v3 as iio

        iio.imwrite(folder / "slice_9.png", np.zeros((SHAPE[1], SHAPE[2], 4), np.uint8))

    def odd_size(folder: Path) -> None:
        import imageio.v3 as iio

        iio.imwrite(folder / "slice_9.png", np.zeros((7, 9), np.uint8))

    cases.append(Case("png_folder-foreign-rgba", "png_folder", rgba))
    cases.append(Case("png_folder-foreign-size", "png_folder", odd_size))
    cases.append(Case("png_folder-text-as-png", "png_folder", lambda p: (p / "slice_9.png").write_text("not a png")))
    for width, height in ((48, 2**31 - 1), (65_535, 65_535)):
        cases.append(
            Case(f"png_folder-lie-{width}x{height}", "png_folder", lambda p, w=width, h=height: _png_size(p, w, h))
        )

    # zarr: damaged chunks and metadata, deleted chunks, lying shapes
    for base in ("zarr_ours", "zarr_v2", "zarr_v3"):
        flips(base, 3, "data", 0, _nth_chunk(float(rng.random())))
        flips(base, 3, "header", 10**6, _metadata_file)
        cuts(base, [0, 0.5], _nth_chunk(0.5))
        cases.append(Case(f"{base}-chunk-deleted", base, _in_file(_nth_chunk(0.5), Path.unlink)))
        cases.append(Case(f"{base}-all-chunks-deleted", base, lambda p: [c.unlink() for c in _chunk_files(p)]))
        for shape in ([10**63, 40, 48], [6, 40, 2**40], [2**40, 40, 48], [6, -40, 48], [0, 40, 48]):
            cases.append(
                Case(f"{base}-lie-shape-{shape}", base, lambda p, s=shape: _patch_zarr_meta(p, "shape", list(s)))
            )
        cases.append(Case(f"{base}-metadata-empty", base, lambda p: _metadata_file(p).write_text("")))
        cases.append(Case(f"{base}-metadata-garbage", base, lambda p: _metadata_file(p).write_text("{not json")))
    for key, value in (("chunks", [0, 0, 0]), ("dtype", "<q99"), ("fill_value", "oops")):
        cases.append(Case(f"zarr_v2-lie-{key}", "zarr_v2", lambda p, k=key, v=value: _patch_zarr_meta(p, k, v)))
    grid = {"name": "regular", "configuration": {"chunk_shape": [0, 0, 0]}}
    cases.append(Case("zarr_v3-lie-chunk-grid", "zarr_v3", lambda p: _patch_zarr_meta(p, "chunk_grid", grid)))
    cases.append(Case("zarr_v3-lie-data-type", "zarr_v3", lambda p: _patch_zarr_meta(p, "data_type", "uint99")))

    # MRC: flips, truncations, lying dimensions, mode and extended-header size
    flips("mrc", 5, "header", HEADER_BYTES["mrc"])
    flips("mrc", 2, "data", HEADER_BYTES["mrc"])
    cuts("mrc", [0, 100, 1024, 0.5, -1])
    for label, offset, value in (
        ("nx", 0, 2**31 - 1),
        ("ny", 4, 1_073_741_856),
        ("nz", 8, 2**31 - 1),
        ("nx-negative", 0, -48),
        ("mode", 12, 77),
        ("nsymbt", 92, 2**30),
    ):
        cases.append(Case(f"mrc-lie-{label}", "mrc", lambda p, o=offset, v=value: _mrc_header(p, o, v)))

    # HDF5: flips and truncations
    for base in ("hdf5_chunked", "hdf5_contiguous"):
        flips(base, 4, "header", HEADER_BYTES["hdf5"])
        flips(base, 3, "data", HEADER_BYTES["hdf5"])
        cuts(base, [0, 512, 0.5, -1])

    # wrong suffixes: a valid file of one kind under another kind's name
    for base, name in (
        ("png_folder", "slice.tif"),
        ("hdf5_chunked", "vol.mrc"),
        ("mrc", "vol.h5"),
        ("tiff_plain", "vol.h5"),
        ("hdf5_contiguous", "vol.tif"),
        ("mrc", "vol.tif"),
        ("zarr_v2", "vol.tif"),
    ):
        cases.append(Case(f"{base}-named-{name}", base, file_name=name))
    return cases


def _standalone() -> list[tuple[str, Callable[[Path], Path]]]:
    """Cases made from nothing: empty files, text under image names, odd folders."""

    def empty(name: str) -> Callable[[Path], Path]:
        def make(folder: Path) -> Path:
            (folder / name).write_bytes(b"")
            return folder / name

        return make

    def text_zarr_dir(folder: Path) -> Path:
        (folder / "notes.zarr").mkdir()
        (folder / "notes.zarr" / "readme.txt").write_text("a folder named like a zarr store")
        return folder / "notes.zarr"

    def text_zarr_file(folder: Path) -> Path:
        (folder / "notes.zarr").write_text("a text file named like a zarr store")
        return folder / "notes.zarr"

    def empty_dir(name: str) -> Callable[[Path], Path]:
        def make(folder: Path) -> Path:
            (folder / name).mkdir()
            return folder / name

        return make

    def empty_png_folder(folder: Path) -> Path:
        (folder / "slices").mkdir()
        (folder / "slices" / "a.png").write_bytes(b"")
        return folder / "slices"

    def missing(folder: Path) -> Path:
        return folder / "gone.tif"

    def hdf5_huge_sparse(folder: Path) -> Path:
        import h5py

        with h5py.File(folder / "huge.h5", "w") as f:  # a valid file: chunks never written read as fill value
            f.create_dataset("raw", shape=(6, 2**20, 2**20), chunks=(1, 64, 64), dtype="u1")
        return folder / "huge.h5"

    def zarr_marker_only(folder: Path) -> Path:
        (folder / "store.zarr").mkdir()
        (folder / "store.zarr" / ".zgroup").write_text('{"zarr_format": 2}')
        return folder / "store.zarr"

    return [
        *((f"empty-file{suffix}", empty(f"empty{suffix}")) for suffix in (".tif", ".tiff", ".mrc", ".h5", ".png")),
        ("empty-dir.zarr", empty_dir("empty.zarr")),
        ("empty-dir", empty_dir("nothing")),
        ("empty-png-in-folder", empty_png_folder),
        ("text-dir.zarr", text_zarr_dir),
        ("text-file.zarr", text_zarr_file),
        ("zarr-group-without-arrays", zarr_marker_only),
        ("hdf5-huge-sparse-dataset", hdf5_huge_sparse),
        ("missing.tif", missing),
    ]


CASES: list[Case] = _plan()
STANDALONE: dict[str, Callable[[Path], Path]] = dict(_standalone())
CASE_NAMES: list[str] = [case.name for case in CASES] + list(STANDALONE)


def build_corpus(root: Path) -> dict[str, Path]:
    """Write every case under ``root``; returns case name -> path to read (each case in a folder of its own)."""
    base_paths: dict[str, Path] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tifffile's deprecation notes, zarr's v2 notes
        for name, (file_name, _, write) in BASES.items():
            folder = root / "base" / name
            folder.mkdir(parents=True)
            write(folder / file_name)
            base_paths[name] = folder / file_name
    paths: dict[str, Path] = {}
    for case in CASES:
        source = base_paths[case.base]  # type: ignore[index]
        folder = root / "cases" / case.name
        folder.mkdir(parents=True)
        target = folder / (case.file_name or source.name)
        if source.is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copyfile(source, target)
        if case.mutate is not None:
            case.mutate(target)
        paths[case.name] = target
    for name, make in STANDALONE.items():
        folder = root / "cases" / name
        folder.mkdir(parents=True)
        paths[name] = make(folder)
    return paths


# ------------------------------------------------------------------------------------------------------ trying


@dataclass
class Outcome:
    """What happened to one path: ``kind`` (see :data:`KINDS`), the message, where it happened and how long it took."""

    kind: str
    message: str = ""
    stage: str = ""
    seconds: float = 0.0


def _classify(err: BaseException) -> str:
    from napari_sparse_sem.io.readers import VolumeReadError

    if isinstance(err, VolumeReadError):
        return "VolumeReadError"
    if isinstance(err, FileNotFoundError):
        return "FileNotFoundError"
    if type(err) is ValueError:
        return "ValueError"
    return "other"


def _touch(data: Any) -> None:
    """Read the middle slice as napari does when it first draws a 3D layer."""
    plane = np.asarray(data[int(data.shape[0]) // 2])
    if plane.ndim != 2:
        raise AssertionError(f"the middle slice has shape {plane.shape}, expected 2D")


def try_read_volume(path: Path) -> Outcome:
    """``read_volume(path)``, then touch the middle slice."""
    from napari_sparse_sem.io import read_volume

    start = time.perf_counter()
    stage = "read_volume"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            volume = read_volume(path)
            stage = "middle slice"
            _touch(volume.data)
    except Exception as err:
        return Outcome(_classify(err), f"{type(err).__name__}: {err}", stage, time.perf_counter() - start)
    return Outcome("volume", str(volume.shape), "", time.perf_counter() - start)


def try_hook(path: Path) -> Outcome:
    """napari's path: ``get_reader(path)``, then the reader it returned, then touch the middle slice of the layer."""
    from napari_sparse_sem.io.napari_hooks import get_reader

    start = time.perf_counter()
    stage = "get_reader"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            reader = get_reader(str(path))
            if reader is None:
                return Outcome("None", "", stage, time.perf_counter() - start)
            stage = "read_layers"
            layers = reader(str(path))
            stage = "middle slice"
            for data, _, _ in layers:
                _touch(data)
    except Exception as err:
        return Outcome(_classify(err), f"{type(err).__name__}: {err}", stage, time.perf_counter() - start)
    return Outcome("volume", "", "", time.perf_counter() - start)


def acceptable(outcome: Outcome) -> str | None:
    """None when ``outcome`` is one a user can live with; else why not."""
    if outcome.kind == "other":
        return f"unexpected exception at {outcome.stage}: {outcome.message}"
    if outcome.kind in ("ValueError", "VolumeReadError", "FileNotFoundError"):
        text = outcome.message.split(": ", 1)[1] if ": " in outcome.message else ""
        if not text.strip():
            return f"{outcome.kind} without a message at {outcome.stage}"
        if "\n" in text:
            return f"{outcome.kind} message spans several lines: {text!r}"
    return None
