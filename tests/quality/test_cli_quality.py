"""Quality without ground truth on the command line: `reconstruct --holdout` and compare's hold-out column."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import tifffile
from typer.testing import CliRunner

from napari_sparse_sem.cli import app
from napari_sparse_sem.recon.to_file import metrics_path

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def test_reconstruct_holdout_writes_metrics_beside_the_output(flyem_crop_uint8: np.ndarray, tmp_path: Path) -> None:
    dense = tmp_path / "dense.tif"
    tifffile.imwrite(dense, flyem_crop_uint8[:3, :128, :128])
    sparse = tmp_path / "sparse.tif"
    assert invoke("simulate", dense, "--pattern", "spiral", "--coverage", "0.2", "--out", sparse).exit_code == 0
    out = tmp_path / "recon.tif"
    result = invoke(
        "reconstruct", sparse, "--mask", tmp_path / "sparse_mask.tif", "--out", out, "--holdout", "--holdout-folds", 3
    )
    assert result.exit_code == 0, result.output
    assert metrics_path(out) == tmp_path / "recon.metrics.json"
    data = json.loads(metrics_path(out).read_text())
    assert data["kind"] == "quality" and data["folds"] == 3 and data["slices"] == [0, 1, 2]
    assert [r["slice"] for r in data["per_slice"]] == [0, 1, 2]
    assert 20 < data["psnr_holdout"] < 40 and data["psnr_holdout_raw"] > 20
    assert 0 < data["noise_sigma"] < 0.05  # spiral runs give a noise estimate (FlyEM's own ~0.013)
    assert f"PSNR ≈ {data['psnr_holdout']:.2f} dB" in result.stdout
    assert metrics_path(Path("a/b.ome.zarr")) == Path("a/b.metrics.json")


def test_reconstruct_holdout_never_replaces_a_metrics_file_unasked(tmp_path: Path) -> None:
    out = tmp_path / "recon.tif"
    metrics_path(out).write_text("my notes")
    result = runner.invoke(app, ["reconstruct", "x.tif", "--mask", "m.tif", "--out", str(out), "--holdout"])
    assert result.exit_code == 2 and "recon.metrics.json already exists" in result.output
    assert metrics_path(out).read_text() == "my notes" and not out.exists()  # refused before any work


def test_reconstruct_holdout_refuses_cluster(tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        [
            "reconstruct",
            "x.tif",
            "--mask",
            "m.tif",
            "--out",
            str(tmp_path / "o.zarr"),
            "--holdout",
            "--cluster",
            "local:1",
        ],
    )
    assert result.exit_code != 0 and "--holdout" in result.output


def test_compare_prints_holdout_and_noise_ceiling(flyem_crop_uint8: np.ndarray, tmp_path: Path) -> None:
    dense = tmp_path / "dense.tif"
    tifffile.imwrite(dense, flyem_crop_uint8[:2, :96, :96])
    out = tmp_path / "report"
    result = invoke("compare", dense, "--out", out, "--method", "nearest,linear", "--holdout-folds", "3")
    assert result.exit_code == 0, result.output
    assert "PSNR hold-out" in result.stdout and "cannot exceed" in result.stdout
    records = json.loads((out / "metrics.json").read_text())
    assert all(r["psnr_holdout"] is not None and r["psnr_ceiling"] > 30 for r in records)
    assert all(r["weights_note"] is None for r in records)
    result = invoke("compare", dense, "--out", out, "--overwrite", "--no-holdout")
    assert result.exit_code == 0, result.output
    records = json.loads((out / "metrics.json").read_text())
    assert all(r["psnr_holdout"] is None for r in records)  # NaN → null
    assert not math.isnan(records[0]["noise_sigma"])
