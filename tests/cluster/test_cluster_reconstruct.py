"""Block-wise reconstruction on a two-worker LocalCluster: the single-process bytes, a valid OME-Zarr store, refusals
before any write, a failing block reported while the others finish, and a cancelled run that keeps its blocks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from napari_sparse_sem.cluster.reconstruct import reconstruct_blocks_job, reconstruct_on_cluster
from napari_sparse_sem.cluster.run import BlockDone, BlockFailed, ClusterStarted
from napari_sparse_sem.cluster.store import RunRecord
from napari_sparse_sem.io import read_metadata, read_volume, write_volume
from napari_sparse_sem.recon.to_file import reconstruct_to_file
from napari_sparse_sem.runtime import Cancelled, run_job


def volume(path: Path) -> np.ndarray:
    return np.asarray(read_volume(path).data)


def snapshot(folder: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``folder`` with its size and modification time (to show that nothing was written)."""
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


@pytest.fixture(scope="module")
def slices_run(scan: dict[str, Path], client: Any, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """Slices 2:14 reconstructed with linear block-wise (slabs of 2) and in one process."""
    folder = tmp_path_factory.mktemp("slices")
    events: list[Any] = []
    meta = reconstruct_on_cluster(
        scan["sparse"],
        scan["mask"],
        "linear",
        folder / "blocks.zarr",
        client=client,
        slices=(2, 14),
        slab=2,
        on_progress=events.append,
    )
    reconstruct_to_file(scan["sparse"], scan["mask"], "linear", folder / "single.zarr", slices=(2, 14))
    return {"out": folder / "blocks.zarr", "single": folder / "single.zarr", "meta": meta, "events": events}


def test_blocks_equal_the_single_process_output(slices_run: dict[str, Any]) -> None:
    blocks, single = volume(slices_run["out"]), volume(slices_run["single"])
    assert blocks.shape == (12, 128, 128) and blocks.dtype == np.uint8
    np.testing.assert_array_equal(blocks, single)
    partials = [e.partial for e in slices_run["events"] if e.partial is not None]
    assert isinstance(partials[0], ClusterStarted) and partials[0].blocks == 6 and partials[0].workers == 2
    done = [p for p in partials if isinstance(p, BlockDone)]
    assert sorted(p.key for p in done) == sorted(f"z{z}-{z + 2}_y0-128_x0-128" for z in range(0, 12, 2))
    meta = slices_run["meta"]
    assert meta["complete"] is True and meta["blocks"] == {"total": 6, "done": 6, "failed": 0, "this_run": 6}
    assert meta["slices"] == [2, 14] and meta["failed_blocks"] == []
    # the single-process output's own parameters are there too
    single = read_metadata(slices_run["single"])
    for key in ("kind", "method", "options", "slices", "value_range", "acquisition_record"):
        assert meta[key] == single[key], key


def test_output_is_ome_zarr_with_voxel_size_and_parameters(slices_run: dict[str, Any]) -> None:
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    out = slices_run["out"]
    (image, *_) = list(Reader(parse_url(str(out)))())
    assert [a["name"] for a in image.metadata["axes"]] == ["z", "y", "x"]
    assert {a.get("unit") for a in image.metadata["axes"]} == {"nanometer"}
    assert image.metadata["coordinateTransformations"][0] == [{"type": "scale", "scale": [10.0, 10.0, 10.0]}]
    np.testing.assert_array_equal(np.asarray(image.data[0]), volume(slices_run["single"]))
    ours = read_volume(out)
    assert tuple(ours.voxel_size) == (10.0, 10.0, 10.0)
    saved = read_metadata(out)
    assert saved["complete"] is True and saved["method"] == "linear" and saved["slab"] == 2
    assert saved["blocks"]["done"] == 6


def test_pyramid_levels_are_ome_zarr_multiscales(
    scan: dict[str, Path], client: Any, tmp_path: Path, flyem_crop_uint8: np.ndarray
) -> None:
    """A complete run with the pyramid on: level 1 halves y/x, listed in the multiscales with its scale."""
    from ome_zarr.io import parse_url
    from ome_zarr.reader import Reader

    dense = np.tile(flyem_crop_uint8[:2], (1, 3, 3))  # 2 x 750 x 750: one level (375 px; levels stay >= 256 px)
    scanned = np.random.default_rng(1).random(dense.shape) < 0.2
    write_volume(tmp_path / "s.zarr", np.where(scanned, dense, 0), voxel_size=(30, 8, 8))
    write_volume(tmp_path / "m.zarr", scanned, voxel_size=(30, 8, 8))
    out = tmp_path / "r.zarr"
    meta = reconstruct_on_cluster(tmp_path / "s.zarr", tmp_path / "m.zarr", "nearest", out, client=client, slab=1)
    assert meta["complete"] is True
    (image, *_) = list(Reader(parse_url(str(out)))())
    assert [tuple(level.shape) for level in image.data] == [(2, 750, 750), (2, 375, 375)]
    scales = [t[0]["scale"] for t in image.metadata["coordinateTransformations"]]
    assert scales == [[30.0, 8.0, 8.0], [30.0, 16.0, 16.0]]
    single = tmp_path / "single.zarr"
    reconstruct_to_file(tmp_path / "s.zarr", tmp_path / "m.zarr", "nearest", single)
    np.testing.assert_array_equal(np.asarray(image.data[0]), volume(single))


@pytest.mark.parametrize(
    ("change", "named"),
    [({"method": "nearest"}, "method: was 'linear', now 'nearest'"), ({"slices": (2, 13)}, "slices: was [2, 14]")],
)
def test_resume_with_other_parameters_is_refused_before_any_write(
    slices_run: dict[str, Any], scan: dict[str, Path], client: Any, change: dict[str, Any], named: str
) -> None:
    out = slices_run["out"]
    before = snapshot(out)
    kwargs = {"slices": (2, 14), "slab": 2, "method": "linear", **change}
    with pytest.raises(ValueError, match="cannot resume") as err:
        reconstruct_on_cluster(scan["sparse"], scan["mask"], out=out, client=client, resume=True, **kwargs)
    assert named in str(err.value)
    assert snapshot(out) == before


def test_a_failing_block_is_reported_and_the_others_finish(scan: dict[str, Path], client: Any, tmp_path: Path) -> None:
    known = volume(scan["mask"]).astype(bool)
    known[6] = False  # no scanned pixel in slice 6: the block z4-8 fails, the others are fine
    bad_mask = tmp_path / "bad_mask.zarr"
    write_volume(bad_mask, known, voxel_size=(10, 10, 10))
    out = tmp_path / "r.zarr"
    events: list[Any] = []
    meta = reconstruct_on_cluster(
        scan["sparse"], bad_mask, "linear", out, client=client, slab=4, on_progress=events.append
    )
    failed = [e.partial for e in events if isinstance(e.partial, BlockFailed)]
    assert [f.key for f in failed] == ["z4-8_y0-128_x0-128"]
    assert failed[0].error == "ValueError: input slice 6 has no scanned pixels; check the mask"
    assert meta["complete"] is False and meta["blocks"]["done"] == 3 and meta["blocks"]["failed"] == 1
    assert meta["failed_blocks"] == [{"key": "z4-8_y0-128_x0-128", "error": failed[0].error}]
    assert read_metadata(out)["complete"] is False
    assert "Traceback" in RunRecord(out).failed()["z4-8_y0-128_x0-128"]["error"]
    result, single = volume(out), volume(scan["single"])
    np.testing.assert_array_equal(result[:4], single[:4])
    np.testing.assert_array_equal(result[8:], single[8:])
    assert not result[4:8].any()  # never written


def test_cancel_keeps_finished_blocks(scan: dict[str, Path], client: Any, tmp_path: Path) -> None:
    out = tmp_path / "r.zarr"
    finished: list[str] = []

    def seen(event: Any) -> None:
        if isinstance(event.partial, BlockDone):
            finished.append(event.partial.key)

    job = reconstruct_blocks_job(scan["sparse"], scan["mask"], "linear", out, client=client, slab=1)
    with pytest.raises(Cancelled):
        run_job(job, seen, should_stop=lambda: len(finished) >= 2)
    saved = read_metadata(out)
    assert saved["complete"] is False and 2 <= saved["blocks"]["done"] < 16
    done = RunRecord(out).done()
    assert set(finished) <= set(done)
    result, single = volume(out), volume(scan["single"])
    for key in done:  # every block recorded as finished has its slice in the store
        z = int(key[1:].split("-")[0])
        np.testing.assert_array_equal(result[z], single[z])
    # --resume without --slab cuts the blocks of the interrupted run (slab 1), not the default, and runs only the rest
    meta = reconstruct_on_cluster(scan["sparse"], scan["mask"], "linear", out, client=client, resume=True)
    # (blocks running at the cancel may still finish on this shared client, so "at most" the rest)
    assert meta["complete"] is True and meta["slab"] == 1 and meta["blocks"]["this_run"] <= 16 - len(done)
    np.testing.assert_array_equal(volume(out), single)
