"""`sparse-sem active` on the packaged FlyEM crop: records, curves, rescan exports, refusals."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import tifffile
from typer.testing import CliRunner

from napari_sparse_sem.cli import app

runner = CliRunner()
PACKAGED_CROP = (
    Path(__file__).resolve().parents[2] / "src" / "napari_sparse_sem" / "data" / "flyem_medulla_crop_z120-151.tif"
)


def invoke(*args: str):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_active_writes_records_curves_and_rescan_plans(tmp_path):
    out = tmp_path / "run"
    result = invoke(
        "active", PACKAGED_CROP, "--out", out, "--slices", "5:7", "--initial", "lowres:4", "--budget", "10%",
        "--estimator", "gradient", "--baselines", "random",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads((out / "metrics.json").read_text())
    records = report["records"]
    assert [r["sampler"] for r in records] == ["wdpp-greedy", "static:random"] * 2
    assert [r["slice"] for r in records] == [5, 5, 6, 6]  # slices of the crop file
    for key in ("sampler", "estimator", "coverage", "psnr", "ssim", "l1", "seconds", "sampler_seconds"):
        assert all(key in r for r in records), key
    active_rows = [r for r in records if r["sampler"] == "wdpp-greedy"]
    assert all(abs(r["coverage"] - 0.10) < 1e-4 for r in records)
    assert np.mean([r["psnr"] for r in active_rows]) > np.mean([r["psnr"] for r in records if r not in active_rows]) + 1
    curves = report["curves"]
    assert len(curves["fractions"]) == len(curves["estimate"]) == len(curves["oracle"])
    assert curves["oracle"][0] == curves["estimate"][0]  # nothing removed yet: the same mean error
    assert all(o <= e + 1e-9 for o, e in zip(curves["oracle"], curves["estimate"], strict=True))
    assert report["config"]["initial"] == "lowres:4"
    bitmap = tifffile.imread(out / "rescan" / "slice_0005_bitmap.tif")
    assert (bitmap > 0).sum() == round(0.10 * 250 * 250) - 63 * 63
    assert (out / "active.png").stat().st_size > 10_000
    assert "wdpp-greedy" in result.output


def test_active_refuses_bad_input_and_existing_reports(tmp_path):
    bad = invoke("active", PACKAGED_CROP, "--out", tmp_path / "a", "--initial", "lowres:x")
    assert bad.exit_code == 2 and "lowres" in bad.output
    low = invoke("active", PACKAGED_CROP, "--out", tmp_path / "b", "--budget", "0.05")
    assert low.exit_code == 2 and "raise the budget" in low.output
    ok = invoke("active", PACKAGED_CROP, "--out", tmp_path / "c", "--slices", "0:1", "--roi", "0:64,0:64")
    assert ok.exit_code == 0, ok.output
    again = invoke("active", PACKAGED_CROP, "--out", tmp_path / "c", "--slices", "0:1", "--roi", "0:64,0:64")
    assert again.exit_code == 2 and "--overwrite" in again.output
