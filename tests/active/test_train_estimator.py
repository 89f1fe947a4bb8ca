"""Training the unet error estimator on reference slices: the loss falls, the file loads, cancel keeps a checkpoint,
and the `sparse-sem train-estimator` command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from napari_sparse_sem.active.error_estimation import make_estimator
from napari_sparse_sem.active.train_estimator import EstimatorTrainingConfig, TrainingStatus, train_estimator_job
from napari_sparse_sem.cli import app
from napari_sparse_sem.nn.weights import load_weights, read_card
from napari_sparse_sem.runtime import Progress, run_job

runner = CliRunner()


@pytest.fixture(scope="module")
def small_stack(flyem_crop: np.ndarray) -> np.ndarray:
    """Four 64² crops of FlyEM slices 120-123 (float32 in [0, 1])."""
    return np.ascontiguousarray(flyem_crop[:4, 100:164, 60:124])


def _tiny(**kw) -> EstimatorTrainingConfig:
    options = {"crop": 48, "batch_size": 4, "iterations": 40, "base_channels": 8, "levels": 2, "log_every": 5}
    return EstimatorTrainingConfig(**{**options, **kw})


def test_training_lowers_the_loss_and_saves_a_loadable_estimator(small_stack: np.ndarray, tmp_path: Path) -> None:
    out = tmp_path / "est.safetensors"
    events: list[Progress] = []
    result = run_job(
        train_estimator_job(
            small_stack, [0, 1, 2], _tiny(initial=["lowres:4", "lowres:8"], balance=True), out, data_name="crop.tif"
        ),
        events.append,
    )
    losses = result["card"]["training"]["loss_curve"]
    assert len(losses) == 8 and result["iterations"] == 40 and result["stopped"] == "iterations"
    assert np.mean(losses[-2:]) < losses[0] - 0.03
    prepare = [e for e in events if e.partial.phase == "prepare"]
    train = [e for e in events if e.partial.phase == "train"]
    assert len(prepare) == 6 and prepare[-1].step == prepare[-1].total == 6  # 3 slices x 2 initial scans
    assert isinstance(train[-1].partial, TrainingStatus) and train[-1].partial.loss == pytest.approx(losses, abs=1e-5)
    assert [e.step for e in train] == list(range(5, 41, 5)) and train[-1].total == 40

    _, card = load_weights(out)
    assert card["data"] == {"file": "crop.tif", "slices": [0, 1, 2], "shape": [64, 64]}
    assert card["initial"] == ["lowres:4", "lowres:8"] and card["recon"] == "linear"
    assert card["training"]["completed"] and card["training"]["iterations_done"] == 40
    (positive,) = card["training"]["positive_fraction"]  # measured: about 0.4 of the pixels exceed the mean error
    assert 0.2 < positive < 0.6
    assert card["training"]["pos_weight"] == [pytest.approx((1 - positive) / positive, rel=1e-3)]
    assert card["architecture"]["config"]["levels"] == 2
    est = make_estimator("unet", weights=out).estimate(small_stack[3], small_stack[3], np.zeros((64, 64), bool))
    assert est.shape == (64, 64) and 0 <= est.min() <= est.max() <= 1


def test_cancel_keeps_a_checkpoint(small_stack: np.ndarray, tmp_path: Path) -> None:
    out = tmp_path / "est.safetensors"
    job = train_estimator_job(small_stack, [0, 1], _tiny(iterations=1000), out)
    for event in job:
        if event.partial.phase == "train" and event.step >= 10:
            break
    assert not out.exists()
    job.close()  # what a widget's quit() or Ctrl-C in run_job does
    _, card = load_weights(out)
    assert card["training"]["stopped"] == "cancelled" and not card["training"]["completed"]
    assert card["training"]["iterations_done"] == 10
    make_estimator("unet", weights=out)  # loadable

    # cancelled while preparing: nothing trained, nothing written
    other = tmp_path / "early.safetensors"
    job = train_estimator_job(small_stack, [0, 1], _tiny(), other)
    next(job)
    job.close()
    assert not other.exists()


def test_time_budget_and_refusals(small_stack: np.ndarray, tmp_path: Path) -> None:
    out = tmp_path / "est.safetensors"
    result = run_job(train_estimator_job(small_stack, [0], _tiny(iterations=None, minutes=0.02), out))
    assert result["stopped"] == "time" and 1 <= result["iterations"]
    with pytest.raises(FileExistsError, match="overwrite"):
        run_job(train_estimator_job(small_stack, [0], _tiny(), out))
    with pytest.raises(ValueError, match="outside the volume"):
        run_job(train_estimator_job(small_stack, [9], _tiny(), tmp_path / "b.safetensors"))
    with pytest.raises(ValueError, match="training budget"):
        EstimatorTrainingConfig(iterations=None, minutes=None)
    with pytest.raises(ValueError, match="initial scan"):
        EstimatorTrainingConfig(initial=["lowres"])
    with pytest.raises(ValueError, match=r"unknown estimator-training field\(s\) \['epochs'\]"):
        EstimatorTrainingConfig.from_dict({"epochs": 3})
    saved = read_card(out)["training"]  # the card's training record holds the parameters: they re-create the config
    config = EstimatorTrainingConfig.from_dict({k: saved[k] for k in EstimatorTrainingConfig().to_dict()})
    assert config == _tiny(iterations=None, minutes=0.02)
    with pytest.raises(ValueError, match="unknown reconstruction method"):
        run_job(train_estimator_job(small_stack, [0], _tiny(recon="bicubic"), tmp_path / "c.safetensors"))


def test_cli_train_estimator(small_stack: np.ndarray, tmp_path: Path) -> None:
    volume = tmp_path / "crop.tif"
    tifffile.imwrite(volume, np.round(small_stack * 255).astype(np.uint8), imagej=True, metadata={"axes": "ZYX"})
    out = tmp_path / "cli.safetensors"
    args = [
        "train-estimator", str(volume), "--slices", "0:3", "--initial", "lowres:4", "--initial", "lowres:8",
        "--iterations", "12", "--crop", "48", "--batch-size", "4", "--base-channels", "8", "--levels", "2",
        "--device", "cpu", "--seed", "3", "--out", str(out),
    ]  # fmt: skip
    result = runner.invoke(app, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "12 iterations" in result.stdout and "cli.safetensors" in result.stdout
    card = read_card(out)
    assert card["data"]["file"] == "crop.tif" and card["data"]["slices"] == [0, 1, 2]
    assert card["initial"] == ["lowres:4", "lowres:8"] and card["training"]["seed"] == 3
    assert card["command"].startswith(f"sparse-sem train-estimator {volume} --out {out} --slices 0:3")
    for flags in ("--initial lowres:4 --initial lowres:8", "--iterations 12", "--levels 2", "--seed 3"):
        assert flags in card["command"], flags

    again = runner.invoke(app, args)
    assert again.exit_code == 2 and "--overwrite" in again.output
    bad = runner.invoke(app, [*args[:3], "9:12", *args[4:], "--overwrite"])
    assert bad.exit_code == 2 and "9:12" in bad.output
    pickle_out = runner.invoke(app, [*args[:-1], str(tmp_path / "model.pt")])
    assert pickle_out.exit_code == 2 and ".safetensors" in pickle_out.output
