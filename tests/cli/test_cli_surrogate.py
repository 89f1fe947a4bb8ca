"""`sparse-sem surrogate backscatter | geometry | make-dataset`: JSON out, files written, clear errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import zarr
from typer.testing import CliRunner

from napari_sparse_sem.cli import app
from napari_sparse_sem.surrogate.geometry import Primitives
from napari_sparse_sem.surrogate.materials import reuter_eta

runner = CliRunner()


@pytest.mark.parametrize(("element", "z", "tolerance"), [("C", 6, 0.25), ("Al", 13, 0.25), ("Cu", 29, 0.25)])
def test_backscatter_prints_eta_near_reuter(element: str, z: int, tolerance: float) -> None:
    result = runner.invoke(app, ["surrogate", "backscatter", "--element", element, "--energy", "20"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["eta"] == pytest.approx(reuter_eta(z), rel=tolerance)
    assert data["eta_reuter"] == pytest.approx(reuter_eta(z))
    assert data["electrons"] == 20_000 and 0.6 < data["depth_p99_over_ko"] < 1.0


def test_backscatter_rejects_unknown_element() -> None:
    result = runner.invoke(app, ["surrogate", "backscatter", "--element", "Kr"])
    assert result.exit_code == 2 and "unknown element" in result.output


def test_geometry_writes_a_primitive_list(tmp_path) -> None:
    out = tmp_path / "spheres.npz"
    args = ["surrogate", "geometry", "--out", str(out), "--porosity", "0.5", "--window", "100,120,120", "--seed", "3"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert abs(summary["porosity_voxelised"] - 0.5) < 0.04 and summary["sphere"] == summary["particles"] > 50
    assert len(Primitives.load(out)) == summary["particles"]
    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "overwrite" in again.output
    bad = runner.invoke(app, ["surrogate", "geometry", "--out", str(tmp_path / "x.npz"), "--radius", "10-15"])
    assert bad.exit_code == 2 and "LOW:HIGH" in bad.output


def test_make_dataset_writes_resumable_zarr(tmp_path) -> None:
    out = tmp_path / "pairs.zarr"
    args = ["surrogate", "make-dataset", "--out", str(out), "--geometries", "1", "--held-out", "1", "--cuts", "2",
            "--size", "24", "--scale", "0.3", "--electrons", "4", "--energy", "1"]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    root = zarr.open_group(str(out), mode="r")
    assert root["inputs"].shape == (4, 7, 24, 24) and root["bse"].shape == (4, 24, 24)
    assert root["done"][:].all() and np.isfinite(root["inputs"][:]).all() and np.isfinite(root["se"][:]).all()
    splits = [s["split"] for s in root.attrs["samples"]]
    assert splits == ["train", "train", "held-out", "held-out"]
    assert root.attrs["samples"][2]["geometry"]["shape"] == "cubes"
    assert root.attrs["electrons_per_pixel"] == 4
    # the solid-phase layer just under the plane (voxel centres 0.5 below) is where solid starts within 0.5 voxel
    entry1, exit1 = root["inputs"][0, 0], root["inputs"][0, 1]
    at_half_voxel = (entry1 <= 0.5) & (exit1 > 0.5)
    assert np.mean(root["solid"][0] == at_half_voxel) > 0.995 and root["solid"][0].any()
    refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "--resume" in refused.output
    # resume: finished samples are kept, undone ones are computed
    group = zarr.open_group(str(out), mode="r+")
    kept = group["bse"][0].copy()
    group["done"][3] = False
    group["bse"][3] = np.nan
    resumed = runner.invoke(app, [*args, "--resume"])
    assert resumed.exit_code == 0, resumed.output
    final = zarr.open_group(str(out), mode="r")
    assert np.array_equal(final["bse"][0], kept) and np.isfinite(final["bse"][3]).all()


def test_simulate_stack_writes_a_readable_stack(tmp_path) -> None:
    out = tmp_path / "stack.zarr"
    args = ["surrogate", "simulate-stack", "--shape", "spheres", "--porosity", "0.5", "--radius", "5:8"]
    args += ["--slices", "3", "--size", "32", "--dose", "200", "--device", "cpu", "--out", str(out)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout.strip().splitlines()[-1])
    assert summary["shape"] == [3, 32, 32] and summary["dose_electrons_per_pixel"] == {"bse": 200.0, "se": 200.0}
    root = zarr.open_group(str(out), mode="r")
    assert {"bse", "se", "bse_clean", "se_clean", "solid"} <= set(root.array_keys())
    # the stack flows into the rest of the package like a loaded volume
    compare = runner.invoke(app, ["compare", f"{out}:se_clean", "--patterns", "random", "--coverage", "0.2",
                                  "--method", "linear", "--out", str(tmp_path / "cmp")])  # fmt: skip
    assert compare.exit_code == 0, compare.output
    again = runner.invoke(app, args)
    assert again.exit_code != 0 and "--overwrite" in again.output


def test_evaluate_writes_metrics_json(tmp_path) -> None:
    data = tmp_path / "eval.zarr"
    made = runner.invoke(app, ["surrogate", "make-dataset", "--out", str(data), "--geometries", "1", "--held-out", "1",
                               "--cuts", "1", "--size", "32", "--electrons", "10", "--seed", "2"])  # fmt: skip
    assert made.exit_code == 0, made.output
    result = runner.invoke(
        app, ["surrogate", "evaluate", "--dataset", str(data), "--out", str(tmp_path / "ev"), "--mc-rows", "1"]
    )
    assert result.exit_code == 0, result.output
    metrics = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    keys = {"signal", "geometry", "mean_error_pct", "systematic_error_pct", "ssim", "psnr", "seconds_surrogate",
            "seconds_mc"}  # fmt: skip
    assert all(keys <= set(record) for record in metrics["records"])
    assert {r["geometry"] for r in metrics["records"]} == {"cubes", metrics["samples"][0]["geometry"]}
    assert "| BSE | cubes |" in result.stdout
