"""Hostile files (issue #15): every reader face gives a volume or a clear one-line error, never anything else.

The fuzz cases come from ``fuzz_corpus`` (seeded; also run by ``benchmarks/fuzz_readers.py``). Each case is read
twice, as the API does (``read_volume``) and as napari does (``get_reader`` then the reader, then the middle slice
of the layer data). The targeted tests below pin the limits, the eager decode, zarr's missing chunks and the
3/4-slice TIFF stacks that used to be refused as RGB.
"""

from __future__ import annotations

import shutil
import struct
import warnings

import numpy as np
import pytest
import tifffile
import zarr
from fuzz_corpus import CASE_NAMES, CASES, acceptable, build_corpus, try_hook, try_read_volume

from napari_sparse_sem.io import VolumeReadError, guards, read_metadata, read_volume, write_volume, zarr_reader
from napari_sparse_sem.io.napari_hooks import get_reader, read_layers

VALID = {case.name for case in CASES if case.expect_volume}


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return build_corpus(tmp_path_factory.mktemp("fuzz"))


# ------------------------------------------------------------------------------------------------------ fuzzing


@pytest.mark.timeout(120)  # a hang guard only; no case should take more than a fraction of a second
@pytest.mark.parametrize("name", CASE_NAMES)
def test_every_file_gives_a_volume_or_a_clear_error(corpus, name, record_property):
    path = corpus[name]
    direct, hook = try_read_volume(path), try_hook(path)
    record_property("read_volume", direct.kind)
    record_property("napari_hook", hook.kind)
    verdicts = (("read_volume", acceptable(direct)), ("napari hook", acceptable(hook)))
    problems = [f"{face}: {why}" for face, why in verdicts if why]
    assert not problems, "\n".join(problems)
    if name in VALID:
        assert direct.kind == "volume" and hook.kind == "volume", (direct, hook)
    # the hook either declines the path or reads it exactly as read_volume does
    assert hook.kind in ("None", direct.kind), (direct, hook)
    if direct.kind in ("ValueError", "VolumeReadError"):
        assert path.name in direct.message, "the message names the file"


def test_the_corpus_is_mostly_hostile_and_covers_every_format():
    assert 100 <= len(CASE_NAMES) <= 400
    assert len(CASE_NAMES) == len(set(CASE_NAMES))
    assert len(VALID) >= 10 and len(VALID) < len(CASE_NAMES) / 10
    bases = {case.base for case in CASES}
    for kind in ("tiff", "png", "zarr", "mrc", "hdf5"):
        assert any(kind in base for base in bases if base), kind


# ----------------------------------------------------------------------------------------------- error contract


def _zlib_stack(path, n=6):
    stack = (np.arange(n * 40 * 48).reshape(n, 40, 48) % 251).astype(np.uint8)
    tifffile.imwrite(path, stack, photometric="minisblack", compression="zlib")
    return stack


def _break_strip(path, page):
    """Overwrite the zlib header of ``page``'s first strip, so that strip (only) cannot be decoded."""
    with tifffile.TiffFile(path) as tif:
        offset = tif.pages[page].dataoffsets[0]
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\x00\x00")


def test_volume_read_error_is_a_value_error_and_exported():
    assert issubclass(VolumeReadError, ValueError)
    assert str(VolumeReadError("a\n  b")) == "a b"  # always one line


def test_corrupt_strip_fails_at_open_not_at_draw_time(tmp_path):
    path = tmp_path / "broken.tif"
    _zlib_stack(path)
    _break_strip(path, 4)
    with pytest.raises(VolumeReadError, match=r"broken\.tif: slice 4 could not be decoded.*corrupt"):
        read_volume(path)
    with pytest.raises(VolumeReadError, match="slice 4"):
        read_layers(str(path))


def test_big_volumes_decode_the_middle_slice_and_later_errors_stay_clear(tmp_path, monkeypatch):
    monkeypatch.setattr(guards, "EAGER_DECODE_BYTES", 100)  # every test volume counts as big now
    path = tmp_path / "late.tif"
    stack = _zlib_stack(path)
    _break_strip(path, 5)  # neither the middle (3) nor the first slice
    volume = read_volume(path)
    assert volume.metadata["lazy"] is True and type(volume.data) is not np.ndarray
    np.testing.assert_array_equal(np.asarray(volume.data[3]), stack[3])
    with pytest.raises(VolumeReadError, match=r"late\.tif: slice 5 could not be decoded"):
        np.asarray(volume.data[5])  # what napari does when the user scrolls there
    _break_strip(path, 3)
    with pytest.raises(VolumeReadError, match="slice 3"):
        read_volume(path)


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (ZeroDivisionError("division by zero"), r"v\.tif could not be read: it may be corrupt \(ZeroDivisionError"),
        (MemoryError(), "more memory than is free"),
        (ValueError("cannot reshape array of size 3"), "cannot reshape"),  # a library's ValueError is not one of ours
        (struct.error("unpack requires a buffer of 8 bytes"), "it may be corrupt"),
    ],
)
def test_unexpected_errors_become_volume_read_errors(tmp_path, error, message):
    """The net every reader runs in: whatever a library raises while a file is read becomes one clear error."""
    path = tmp_path / "v.tif"
    path.write_bytes(b"II*\x00")
    with pytest.raises(VolumeReadError, match=message), guards.read_errors(path):
        raise error


def test_interrupts_pass_through_the_net(tmp_path):
    with pytest.raises(KeyboardInterrupt), guards.read_errors(tmp_path / "v.tif"):
        raise KeyboardInterrupt


def test_user_errors_stay_plain_value_errors(tmp_path):
    path = tmp_path / "color.tif"
    tifffile.imwrite(path, np.zeros((16, 16, 3), np.uint8), photometric="rgb")
    with pytest.raises(ValueError, match="RGB") as info:
        read_volume(path)
    assert type(info.value) is ValueError


# ------------------------------------------------------------------------------------------------------- limits


def test_lying_tiff_dimensions_are_refused_before_allocating(tmp_path):
    path = tmp_path / "liar.tif"
    _zlib_stack(path, n=1)
    with tifffile.TiffFile(path) as tif:
        tags = tif.pages.first.tags
        width, length = tags["ImageWidth"].valueoffset, tags["ImageLength"].valueoffset
    with open(path, "r+b") as fh:
        fh.seek(width)
        fh.write(struct.pack("<I", 32))
        fh.seek(length)
        fh.write(struct.pack("<I", 1_073_741_856))
    with pytest.raises(VolumeReadError, match=r"slices of 1073741856 x 32 uint8 \(32 GiB each\), more than the 4 GiB"):
        read_volume(path)
    with open(path, "r+b") as fh:  # 4 GiB: within the slice limit, far beyond what 2 KiB of deflate can hold
        fh.seek(width)
        fh.write(struct.pack("<I", 65_535))
        fh.seek(length)
        fh.write(struct.pack("<I", 65_535))
    with pytest.raises(VolumeReadError, match="expands at most 2048:1"):
        read_volume(path)


@pytest.mark.parametrize("compression", ["zlib", "zstd", "lzw", "packbits", None])
@pytest.mark.parametrize("shape", [(512, 512), (3, 1024, 1024)])
def test_genuine_all_zero_images_pass_the_compression_bound(tmp_path, compression, shape):
    path = tmp_path / "zeros.tif"
    tifffile.imwrite(path, np.zeros(shape, np.uint8), photometric="minisblack", compression=compression)
    volume = read_volume(path)
    assert volume.shape == (shape if len(shape) == 3 else (1, *shape))
    assert not np.asarray(volume.data[volume.shape[0] // 2]).any()


def test_one_bit_masks_may_expand_eight_times(tmp_path):
    path = tmp_path / "bits.tif"
    tifffile.imwrite(path, np.zeros((256, 256), bool))  # 1 bit per pixel on disk, one byte decoded
    assert read_volume(path).shape == (1, 256, 256)


def test_zarr_with_a_huge_shape_is_refused(tmp_path):
    path = tmp_path / "huge.zarr"
    zarr.create_array(str(path), shape=(10**10, 1024, 1024), chunks=(1, 1024, 1024), dtype="u1")
    with pytest.raises(VolumeReadError, match=r"huge\.zarr.*claims shape .*more than the 1 PiB limit"):
        read_volume(path)


# ------------------------------------------------------------------------------------------------------ zarr chunks


def test_deleted_zarr_chunk_warns_and_is_recorded(tmp_path):
    path = tmp_path / "plain.zarr"
    array = zarr.create_array(str(path), shape=(4, 16, 16), chunks=(1, 16, 16), dtype="u2", fill_value=7)
    array[:] = 100
    (path / "c" / "2" / "0" / "0").unlink()
    with pytest.warns(UserWarning, match=r"plain\.zarr: 1 of 4 chunks are missing; .*fill value 7"):
        volume = read_volume(path)
    assert volume.metadata["missing_chunks"] == 1
    assert np.asarray(volume.data[2]).tolist() == np.full((16, 16), 7).tolist()


def test_our_writer_stores_every_chunk_so_a_missing_one_is_damage(tmp_path):
    # zarr 3 skips chunks equal to the fill value unless asked; our writer asks, so an all-zero slice reads silently
    data = np.ones((3, 8, 8), np.uint8)
    data[1] = 0
    path = write_volume(tmp_path / "ours.zarr", data)
    assert sorted(p.name for p in (path / "0").iterdir() if not p.name.startswith(".")) == ["0", "1", "2"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        volume = read_volume(path)
    assert volume.metadata["missing_chunks"] == 0
    np.testing.assert_array_equal(np.asarray(volume.data), data)
    shutil.rmtree(path / "0" / "1")
    with pytest.warns(UserWarning, match="1 of 3 chunks are missing"):
        damaged = read_volume(path)
    assert damaged.metadata["missing_chunks"] == 1
    copy = write_volume(tmp_path / "copy.tif", damaged.data, metadata=damaged.metadata)
    assert "missing_chunks" not in read_metadata(copy)  # a fact about one read, not a parameter


def test_complete_zarr_reads_quietly_and_large_ones_are_not_counted(tmp_path, monkeypatch):
    path = tmp_path / "full.zarr"
    zarr.create_array(str(path), shape=(3, 8, 8), chunks=(1, 8, 8), dtype="u1")[:] = 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert read_volume(path).metadata["missing_chunks"] == 0
    monkeypatch.setattr(zarr_reader, "MAX_COUNTED_CHUNKS", 2)
    assert "missing_chunks" not in read_volume(path).metadata


# ------------------------------------------------------------------------------------------ 3- and 4-slice stacks


@pytest.mark.parametrize("n", [3, 4])
@pytest.mark.parametrize(
    "kwargs",
    [{}, {"imagej": True}, {"photometric": "minisblack"}, {"imagej": True, "metadata": {"axes": "ZYX"}}],
    ids=["default", "imagej", "minisblack", "imagej-zyx"],
)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_three_and_four_slice_stacks_are_volumes_not_rgb(tmp_path, n, kwargs, dtype):
    path = tmp_path / "few.tif"
    stack = (np.arange(n * 64 * 64).reshape(n, 64, 64) % 200).astype(dtype)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # tifffile: (n, y, x) stored as planar RGB for now
        tifffile.imwrite(path, stack, **kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        volume = read_volume(path)
        eager = read_volume(path, lazy=False)
    assert volume.shape == (n, 64, 64)
    np.testing.assert_array_equal(np.asarray(volume.data), stack)
    np.testing.assert_array_equal(eager.data, stack)
    planar = not kwargs  # only tifffile's default layout is ambiguous, and says so
    assert any("planar RGB" in str(w.message) for w in caught) == planar
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        [(data, _, _)] = get_reader(str(path))(str(path))
    assert data.shape == (n, 64, 64)


@pytest.mark.parametrize(
    ("shape", "kwargs"),
    [
        ((64, 64, 3), {"photometric": "rgb"}),
        ((64, 64, 4), {"photometric": "rgb"}),
        ((3, 64, 64), {"photometric": "rgb", "planarconfig": "separate", "metadata": None}),  # planar, other writer
        ((5, 64, 64, 3), {"photometric": "rgb"}),
    ],
)
def test_real_rgb_is_still_refused_with_the_grayscale_advice(tmp_path, shape, kwargs):
    path = tmp_path / "color.tif"
    tifffile.imwrite(path, np.zeros(shape, np.uint8), **kwargs)
    with pytest.raises(ValueError, match=r"RGB.*convert it to grayscale"):
        read_volume(path)


def test_rgb_arrays_in_other_formats_are_still_refused(tmp_path):
    path = tmp_path / "color.zarr"
    zarr.create_array(str(path), shape=(64, 64, 3), chunks=(64, 64, 3), dtype="u1")[:] = 1
    with pytest.raises(ValueError, match="looks like an RGB/RGBA image; convert it to grayscale"):
        read_volume(path)
