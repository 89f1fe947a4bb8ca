"""Training the surrogate on a tiny make-dataset store (resumable) and scoring it against the Monte Carlo."""

from __future__ import annotations

import json

import numpy as np
import pytest

from napari_sparse_sem.nn.weights import read_card
from napari_sparse_sem.runtime import run_job
from napari_sparse_sem.surrogate.dataset import DatasetSpec, make_dataset
from napari_sparse_sem.surrogate.evaluate import evaluate_job
from napari_sparse_sem.surrogate.model import SurrogateConfig, load_surrogate
from napari_sparse_sem.surrogate.montecarlo import MCConfig
from napari_sparse_sem.surrogate.training import SurrogateTrainingConfig, read_dataset, train_surrogate_job


@pytest.fixture(scope="module")
def tiny_dataset(tmp_path_factory):
    out = tmp_path_factory.mktemp("data") / "tiny.zarr"
    spec = DatasetSpec(geometries=2, held_out=1, cuts=1, size=32, seed=2, mc=MCConfig(electrons_per_pixel=10))
    run_job(make_dataset(spec, out))
    return out


def test_training_learns_and_resumes(tiny_dataset, tmp_path) -> None:
    out = tmp_path / "tiny.safetensors"
    config = SurrogateTrainingConfig(
        model=SurrogateConfig(layout="compact"), iterations=40, batch=4, crop=32, validate_every=20, device="cpu"
    )
    result = run_job(train_surrogate_job(tiny_dataset, out, config))
    assert result["iterations"] == 40 and result["train_samples"] == 2 and result["held_out_samples"] == 1
    curves = json.loads(out.with_name("tiny.curves.json").read_text())
    losses = [v for _, v in curves["loss"]]
    assert np.mean(losses[-2:]) < losses[0]  # it learns
    assert out.with_name("tiny.curves.png").exists()
    with pytest.raises(FileExistsError, match="--resume"):
        run_job(train_surrogate_job(tiny_dataset, out, config))
    checkpoint = read_card(out.with_name("tiny.state.safetensors"))
    assert (
        checkpoint["status"]["iteration"] == 40 and SurrogateTrainingConfig.from_dict(checkpoint["training"]) == config
    )
    more = SurrogateTrainingConfig(**{**config.__dict__, "iterations": 50})
    assert run_job(train_surrogate_job(tiny_dataset, out, more, resume=True))["iterations"] == 50
    surrogate = load_surrogate(out, device="cpu")
    assert surrogate.card["iterations"] == 50 and surrogate.config.depth_scale == surrogate.config.no_surface
    data = read_dataset(tiny_dataset)
    assert data.inputs_for(surrogate.config).shape == (3, 7, 32, 32) and data.targets.shape == (3, 2, 32, 32)


def test_evaluation_records_have_the_paper_fields(tiny_dataset) -> None:
    result = run_job(evaluate_job(load_surrogate(None, device="cpu"), tiny_dataset, mc_rows=1))
    records = result["records"]
    assert {r["signal"] for r in records} == {"bse", "se"}
    assert "cubes" in {r["geometry"] for r in records}
    for record in records:
        assert 0 < record["mean_error_pct"] < 100 and -1 <= record["ssim"] <= 1
        assert record["seconds_mc"] > 0 and record["seconds_surrogate"] > 0  # their ratio: benchmarks/surrogate_speed
        assert record["speedup"] == pytest.approx(record["seconds_mc"] / record["seconds_surrogate"], rel=1e-6)
        expected = record["mean_error_pct"] - record["noise_pct"]
        assert record["systematic_error_pct"] == pytest.approx(expected, nan_ok=True)
        # one Monte Carlo run per slice: BSE noise from its electron count (binomial), SE from flat areas
        assert record["noise_source"] == ("binomial" if record["signal"] == "bse" else "flat areas")
        if record["signal"] == "bse":
            assert record["noise_pct"] > 0 and record["systematic_rms_pct"] <= record["systematic_rms_upper_pct"]
    assert result["mc_timing_electrons"] == 1000 and result["replicas"] == 1
