"""The `sparse-sem` command line on real FlyEM data: outputs, numbers, round trips and clear refusals."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from napari_sparse_sem.cli import app
from napari_sparse_sem.cli.common import parse_roi, sibling_path
from napari_sparse_sem.cli.demo import previous_demo
from napari_sparse_sem.compare import RECORD_KEYS
from napari_sparse_sem.io import read_metadata, read_volume
from napari_sparse_sem.metrics import psnr
from napari_sparse_sem.recon.to_file import Interrupted, reconstruct_to_file
from napari_sparse_sem.recon.volume import SliceDone
from napari_sparse_sem.sampling.record import AcquisitionRecord

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


@pytest.fixture(scope="module")
def crop_tif(tmp_path_factory: pytest.TempPathFactory, flyem_crop_uint8: np.ndarray) -> Path:
    """4 x 128 x 128 uint8 crop of the packaged FlyEM stack (full-volume slices 130-133), 10 nm voxels."""
    path = tmp_path_factory.mktemp("data") / "crop.tif"
    tifffile.imwrite(
        path,
        flyem_crop_uint8[10:14, 60:188, 60:188],
        imagej=True,
        resolution=(0.1, 0.1),
        metadata={"spacing": 10.0, "unit": "nm", "axes": "ZYX"},
    )
    return path


def test_info_prints_the_facts(crop_tif: Path) -> None:
    result = invoke("info", crop_tif)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "(4, 128, 128)" in out and "uint8" in out and "tiff" in out
    assert "10 x 10 x 10 nm" in out
    assert "value range" in out


def test_compare_writes_report(crop_tif: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    result = invoke(
        "compare",
        crop_tif,
        "--patterns",
        "random,grid",
        "--coverage",
        "0.1",
        "--method",
        "nearest,linear",
        "--slices",
        "1:3",
        "--roi",
        "0:96,16:112",
        "--device",
        "cpu",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    records = json.loads((out / "metrics.json").read_text())
    assert len(records) == 2 * 2 * 2
    assert all(tuple(r) == RECORD_KEYS for r in records)
    assert {r["slice"] for r in records} == {1, 2}
    csv_rows = (out / "metrics.csv").read_text().strip().splitlines()
    assert len(csv_rows) == 9 and csv_rows[0].split(",") == list(RECORD_KEYS)
    params = json.loads((out / "params.json").read_text())
    assert params["spec"]["roi"] == [0, 96, 16, 112] and params["spec"]["coverages"] == [0.1]
    assert params["source"]["path"] == str(crop_tif) and params["version"]
    assert (out / "comparison.png").stat().st_size > 20_000
    assert "linear" in result.stdout and "PSNR" in result.stdout and "report written" in result.stdout

    # the same folder again is refused without --overwrite (before any work), then accepted with it
    again = invoke("compare", crop_tif, "--slices", "1:2", "--roi", "0:32,0:32", "--out", out)
    assert again.exit_code == 2
    assert "Error:" in again.stderr and "metrics.json" in again.stderr and "--overwrite" in again.stderr
    # a config file (here: the params.json just written) gives the settings; flags override it
    config = tmp_path / "config.json"
    config.write_text(json.dumps(params))
    third = invoke("compare", crop_tif, "--config", config, "--method", "nearest", "--out", out, "--overwrite")
    assert third.exit_code == 0, third.output
    records = json.loads((out / "metrics.json").read_text())
    assert {r["method"] for r in records} == {"nearest"} and {r["pattern"] for r in records} == {"random", "grid"}


def test_full_volume_slice125_all_patterns(flyem_volume_path: Path, tmp_path: Path) -> None:
    out = tmp_path / "all"
    result = invoke(
        "compare",
        flyem_volume_path,
        "--patterns",
        "all",
        "--coverage",
        "0.05",
        "--method",
        "linear",
        "--slices",
        "125:126",
        "--out",
        out,
    )
    assert result.exit_code == 0, result.output
    records = {r["pattern"]: r for r in json.loads((out / "metrics.json").read_text())}
    assert set(records) == {"random", "grid", "spiral", "lines", "lowres", "hexgrid", "bluenoise"}
    assert all(r["slice"] == 125 for r in records.values())
    assert records["random"]["psnr"] >= 24.5, records["random"]
    for pattern, r in records.items():
        if pattern != "lowres":  # lowres coverage is 1/f², so it can only hit a few coverages
            assert abs(r["coverage"] - 0.05) <= 0.15 * 0.05, (pattern, r["coverage"])


def test_simulate_reconstruct_round_trip(crop_tif: Path, flyem_crop_uint8: np.ndarray, tmp_path: Path) -> None:
    sparse = tmp_path / "sparse.tif"
    result = invoke("simulate", crop_tif, "--pattern", "random", "--coverage", "0.2", "--seed", "3", "--out", sparse)
    assert result.exit_code == 0, result.output
    mask_path = tmp_path / "sparse_mask.tif"
    assert sparse.exists() and mask_path.exists()
    assert "achieved 20.0" in result.stdout and "dense" in result.stdout
    meta = read_metadata(sparse)
    record = AcquisitionRecord.from_metadata(meta)
    assert record.mask_spec.coverage == 0.2 and record.mask_spec.seed == 3 and meta["kind"] == "sparse"
    assert record.stored_range == record.value_range == (0.0, 255.0) and record.source == str(crop_tif)
    assert 0 < record.scan_s < record.dense_s and abs(record.coverage - 0.2) < 0.01 and record.n_slices == 4
    assert AcquisitionRecord.from_metadata(read_metadata(mask_path)) == record
    truth = flyem_crop_uint8[10:14, 60:188, 60:188]
    sparse_data = np.asarray(read_volume(sparse).data)
    mask = np.asarray(read_volume(mask_path).data).astype(bool)
    assert sparse_data.dtype == np.uint8 and mask.shape == truth.shape
    assert abs(mask.mean() - 0.2) < 0.01
    np.testing.assert_array_equal(sparse_data[mask], truth[mask])  # noiseless: scanned pixels are exact
    assert not sparse_data[~mask].any()

    recon_path = tmp_path / "recon.tif"
    result = invoke("reconstruct", sparse, "--mask", mask_path, "--method", "linear", "--out", recon_path)
    assert result.exit_code == 0, result.output
    recon = np.asarray(read_volume(recon_path).data)
    assert recon.shape == truth.shape and recon.dtype == np.uint8
    for z in range(4):
        assert psnr(truth[z] / 255.0, recon[z] / 255.0) > 24.0
    assert read_metadata(recon_path)["method"] == "linear"
    assert AcquisitionRecord.from_metadata(read_metadata(recon_path)) == record  # passed on to the reconstruction

    # zarr output, a sub-range of slices, an explicit option, a fixed mask and shot noise
    sparse_zarr = tmp_path / "noisy.zarr"
    result = invoke(
        "simulate",
        crop_tif,
        "--pattern",
        "grid",
        "--coverage",
        "10%",
        "--fixed-mask",
        "--dose",
        "20",
        "--slices",
        "0:2",
        "--roi",
        "0:64,0:64",
        "--out",
        sparse_zarr,
    )
    assert result.exit_code == 0, result.output
    mask_zarr = tmp_path / "noisy_mask.zarr"
    mask2 = np.asarray(read_volume(mask_zarr).data).astype(bool)
    assert mask2.shape == (2, 64, 64) and np.array_equal(mask2[0], mask2[1])
    result = invoke(
        "reconstruct",
        sparse_zarr,
        "--mask",
        mask_zarr,
        "--method",
        "linear3d",
        "--option",
        "context=1",
        "--slices",
        "1:2",
        "--device",
        "cpu",
        "--out",
        tmp_path / "recon.zarr",
    )
    assert result.exit_code == 0, result.output
    assert np.asarray(read_volume(tmp_path / "recon.zarr").data).shape == (1, 64, 64)


def test_interrupt_keeps_finished_slices(crop_tif: Path, tmp_path: Path) -> None:
    sparse = tmp_path / "s.tif"
    assert invoke("simulate", crop_tif, "--coverage", "0.1", "--out", sparse).exit_code == 0

    def ctrl_c_after_first_slice(event) -> None:
        if isinstance(event.partial, SliceDone):
            raise KeyboardInterrupt

    out = tmp_path / "partial.tif"
    with pytest.raises(Interrupted) as stop:
        reconstruct_to_file(sparse, tmp_path / "s_mask.tif", "nearest", out, on_progress=ctrl_c_after_first_slice)
    assert stop.value.done == 1 and stop.value.total == 4 and stop.value.path == out
    saved = np.asarray(read_volume(out).data)
    assert saved.shape == (1, 128, 128)
    meta = read_metadata(out)
    assert meta["complete"] is False and meta["slices"] == [0, 1]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["simulate", "{crop}", "--coverage", "0", "--out", "{tmp}/a.tif"], "coverage must be in (0, 1]"),
        (["simulate", "{crop}", "--coverage", "1.5", "--out", "{tmp}/a.tif"], "coverage must be in (0, 1]"),
        (["compare", "{crop}", "--coverage", "0", "--out", "{tmp}/r"], "coverage must be in (0, 1]"),
        (["compare", "{crop}", "--coverage", "1.5", "--out", "{tmp}/r"], "coverage must be in (0, 1]"),
        (
            ["compare", "{crop}", "--roi", "0:300,0:64", "--out", "{tmp}/r"],
            "ROI 0:300,0:64 lies outside the image of size 128x128",
        ),
        (["simulate", "{crop}", "--roi", "0:64,100:200", "--out", "{tmp}/a.tif"], "lies outside the image"),
        (["compare", "{crop}", "--patterns", "zigzag", "--out", "{tmp}/r"], "unknown mask pattern"),
        (["simulate", "{crop}", "--pattern", "zigzag", "--out", "{tmp}/a.tif"], "unknown mask pattern"),
        (["compare", "{crop}", "--method", "magic", "--out", "{tmp}/r"], "unknown reconstruction method"),
        (["reconstruct", "{crop}", "--mask", "{crop}", "--method", "magic", "--out", "{tmp}/b.tif"], "magic"),
        (["compare", "{tmp}/missing.tif", "--out", "{tmp}/r"], "missing.tif"),
        (["info", "{tmp}/missing.tif"], "missing.tif"),
        (["compare", "{crop}", "--slices", "2:x", "--out", "{tmp}/r"], "--slices expects A:B"),
        (["compare", "{crop}", "--slices", "2:9", "--out", "{tmp}/r"], "slices 2:9 lie outside the volume of 4"),
        (["compare", "{crop}", "--roi", "0:64", "--out", "{tmp}/r"], "--roi expects Y0:Y1,X0:X1"),
        (["compare", "{crop}", "--coverage", "five", "--out", "{tmp}/r"], "--coverage expects a fraction"),
        (["reconstruct", "{crop}", "--mask", "{crop}", "--option", "ctx", "--out", "{tmp}/b.tif"], "KEY=VALUE"),
        (
            ["reconstruct", "{crop}", "--mask", "{crop}", "--option", "foo=1", "--out", "{tmp}/b.tif"],
            "method 'linear' takes no options",
        ),
        (
            ["compare", "{crop}", "--method", "linear3d", "--option", "linear3d.context=-1", "--out", "{tmp}/r"],
            "context must be a whole number",
        ),
        (
            ["compare", "{crop}", "--method", "linear3d", "--option", "linear3d.zscale=2", "--out", "{tmp}/r"],
            "its options are ['context', 'z_scale']",
        ),
        (
            ["compare", "{crop}", "--method", "linear", "--dip-preset", "paper", "--out", "{tmp}/r"],
            "add one to --method",
        ),
        (["compare", "{crop}", "--method", "dip", "--dip-preset", "fast", "--out", "{tmp}/r"], "paper"),
        (["compare", "{crop}", "--method", "dip", "--dip-config", "{tmp}/none.json", "--out", "{tmp}/r"], "not found"),
        (
            ["reconstruct", "{crop}", "--mask", "{crop}", "--dip-preset", "paper", "--out", "{tmp}/b.tif"],
            "not to 'linear'",
        ),
    ],
)
def test_bad_input_is_one_clear_line(args: list[str], message: str, crop_tif: Path, tmp_path: Path) -> None:
    result = invoke(*[a.format(crop=crop_tif, tmp=tmp_path) for a in args])
    assert result.exit_code == 2, result.output
    assert "Error: " in result.stderr and message in result.stderr, result.stderr
    assert "Traceback" not in result.output
    assert not any((tmp_path / name).exists() for name in ("r", "a.tif", "b.tif"))


def test_dip_config_file_and_preset_reach_the_method(crop_tif: Path, tmp_path: Path) -> None:
    config = tmp_path / "dip.json"
    tiny = {"levels": 2, "channels": 8, "input_channels": 4, "stopping": "fixed", "preview_every": 0}
    config.write_text(json.dumps({"preset": "paper", **tiny, "iterations_first": 6, "iterations_warm": 3}))
    out = tmp_path / "r"
    args = ["compare", crop_tif, "--method", "dip", "--slices", "0:2", "--roi", "0:32,0:32", "--out", out]
    result = invoke(*args, "--dip-config", config, "--option", "dip.iterations_warm=2")
    assert result.exit_code == 0, result.output
    records = json.loads((out / "metrics.json").read_text())
    assert [r["iterations"] for r in records] == [6, 2]  # the file's first-slice count; --option wins for warm slices
    options = json.loads((out / "params.json").read_text())["spec"]["method_options"]["dip"]
    assert options["preset"] == "paper" and options["iterations_first"] == 6
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"levles": 3}))
    result = invoke(*args, "--dip-config", bad, "--overwrite")
    assert result.exit_code == 2 and "unknown field(s) ['levles']" in result.stderr


def test_simulate_refuses_existing_outputs(crop_tif: Path, tmp_path: Path) -> None:
    out = tmp_path / "s.tif"
    (tmp_path / "s_mask.tif").write_bytes(b"keep me")
    result = invoke("simulate", crop_tif, "--out", out)
    assert result.exit_code == 2 and "s_mask.tif" in result.stderr and "--overwrite" in result.stderr
    assert (tmp_path / "s_mask.tif").read_bytes() == b"keep me" and not out.exists()
    assert invoke("simulate", crop_tif, "--out", out, "--overwrite").exit_code == 0


def test_parsers_and_paths() -> None:
    assert parse_roi("0:128, 64:192") == (0, 128, 64, 192)
    assert sibling_path(Path("a/b.ome.zarr"), "_mask") == Path("a/b_mask.ome.zarr")
    assert sibling_path(Path("x.tif"), "_mask") == Path("x_mask.tif")


def test_console_script_error_and_help(tmp_path: Path) -> None:
    script = Path(sys.executable).parent / "sparse-sem"
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run([script, "info", tmp_path / "nope.tif"], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == 2
    assert done.stderr.strip().startswith("Error:") and "nope.tif" in done.stderr and "Traceback" not in done.stderr
    helped = subprocess.run([script, "--help"], capture_output=True, text=True, env=env, timeout=60)
    assert helped.returncode == 0
    for command in ("info", "simulate", "reconstruct", "compare", "demo"):
        assert command in helped.stdout


def test_headless_demo_writes_a_report(tmp_path: Path) -> None:
    out = tmp_path / "demo"
    result = invoke("demo", "--headless", "--out", out)
    assert result.exit_code == 0, result.output
    records = json.loads((out / "metrics.json").read_text())
    assert len(records) == 7 * 3 * 3  # every pattern × nearest/linear/biharmonic × three middle slices
    assert {r["slice"] for r in records} == {15, 16, 17}
    linear = [r["psnr"] for r in records if (r["pattern"], r["method"]) == ("random", "linear")]
    assert np.mean(linear) > 23.0
    assert json.loads((out / "params.json").read_text())["source"]["demo"] is True
    assert (out / "comparison.png").stat().st_size > 100_000
    assert str(out.resolve()) in result.stdout.replace("\n", "")
    assert previous_demo(out)  # so the next demo run replaces it without --overwrite

    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "metrics.json").write_text("[]")
    refused = invoke("demo", "--headless", "--out", foreign)
    assert refused.exit_code == 2 and "metrics.json" in refused.stderr
    assert (foreign / "metrics.json").read_text() == "[]"


def test_threads_flag_reaches_torch_and_the_saved_record(crop_tif: Path, tmp_path: Path) -> None:
    import torch

    from napari_sparse_sem.threads import current_threads, restore_threads, usable_cores

    before = current_threads()
    try:
        out = tmp_path / "sparse.tif"
        result = invoke("simulate", crop_tif, "--out", out, "--coverage", "0.1", "--threads", "2")
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 2  # set before the work, in the command's thread
        record = read_metadata(out)["run"]
        assert record["arguments"]["threads"] == 2 and record["threads"] == 2  # asked for, and used

        again = tmp_path / "again.tif"
        result = invoke("run", out, "--out", again, "--threads", "1")  # this machine's choice wins over the record's
        assert result.exit_code == 0, result.output
        assert torch.get_num_threads() == 1 and read_metadata(again)["run"]["threads"] == 1

        auto = tmp_path / "auto.tif"
        result = invoke("simulate", crop_tif, "--out", auto, "--coverage", "0.1")
        assert result.exit_code == 0 and 1 <= read_metadata(auto)["run"]["threads"] <= usable_cores()

        refused = invoke("simulate", crop_tif, "--out", tmp_path / "no.tif", "--threads", "-1")
        assert refused.exit_code == 2 and "not a thread count" in refused.output
        assert not (tmp_path / "no.tif").exists()
    finally:
        restore_threads(before)
