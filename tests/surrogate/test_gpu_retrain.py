"""The one-command retraining driver (benchmarks/surrogate_gpu_retrain.py) end to end at toy scale on the CPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from napari_sparse_sem.nn.weights import read_card
from napari_sparse_sem.surrogate.model import load_surrogate

REPO = Path(__file__).resolve().parents[2]
TOY = ["--tiny", "--device", "cpu", "--size", "16", "--crop", "16", "--batch", "2", "--iterations", "3",
       "--train-geometries", "2", "--train-held-out", "1", "--train-electrons", "2", "--eval-geometries", "0",
       "--eval-electrons", "16", "--timing-electrons", "4", "--cpu-rows", "1", "--device-rows", "1",
       "--repeats", "1"]  # fmt: skip


def test_retrain_driver_writes_loadable_weights_card_and_figures(tmp_path, monkeypatch) -> None:
    monkeypatch.syspath_prepend(str(REPO))
    from benchmarks import surrogate_gpu_retrain as driver

    out = tmp_path / "out"
    figures = driver.main([*TOY, "--out", str(out)])
    weights = out / "surrogate_carbon.safetensors"
    for name in ("surrogate_carbon.safetensors", "surrogate_carbon.json", "retrain.md", "retrain.json"):
        assert (out / name).is_file(), name
    assert (tmp_path / "out-work" / "train.zarr").exists()  # OUT stays small: no stores, no checkpoint
    assert not (out / "eval.zarr").exists() and not (out / "surrogate_carbon.state.safetensors").exists()
    surrogate = load_surrogate(weights, device="cpu")  # the package's own loader: card, hash, architecture
    card = read_card(weights)
    assert surrogate.config.layout == "resnet34-half" and card["iterations"] == 3
    assert card["command"].startswith("python -m benchmarks.surrogate_gpu_retrain --tiny")
    assert "--replicas 2" in card["data"]["evaluation_set"] and card["device"] == "cpu"
    assert {"bse_systematic_rms_pct", "se_mean_error_pct"} <= set(card["metrics"]["held_out_cubes"])
    saved = json.loads((out / "retrain.json").read_text())
    assert saved["data"]["training"]["rate"]["slices"] == 3 and saved["data"]["evaluation"]["rate"]["slices"] == 1
    assert [(t["signal"], t["figure"]) for t in saved["targets"]] == [
        ("bse", "systematic_rms_pct"),
        ("se", "systematic_rms_pct"),
        ("bse", "mean_error_pct"),
    ]
    assert {r["noise_source"] for r in saved["evaluation"]["records"]} == {"replicas"}
    assert figures["timings"]["teacher_device_s"] > 0 and "| BSE | cubes |" in (out / "retrain.md").read_text()
    with pytest.raises(SystemExit):  # weights already there
        driver.main([*TOY, "--out", str(out)])
    with pytest.raises(SystemExit, match="no evaluation slice finished"):  # a deadline that leaves no time
        driver.main([*TOY, "--out", str(tmp_path / "late"), "--eval-by", "0"])
    with pytest.raises(SystemExit, match="inside the package"):
        driver.main([*TOY, "--out", str(Path(driver.__file__).parents[1] / "src" / "napari_sparse_sem" / "weights")])
