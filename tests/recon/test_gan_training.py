"""Training the partial-scan GAN on reference slices: both phases, the files it writes, cancel, resume, bad input."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from napari_sparse_sem.nn.weights import load_weights, read_card
from napari_sparse_sem.recon.base import create
from napari_sparse_sem.recon.gan_training import (
    GANTrainingConfig,
    GANTrainingStatus,
    curves_path,
    parse_coverage,
    parse_patterns,
    random_mask,
    state_path,
    train_gan_job,
    training_batch,
)
from napari_sparse_sem.runtime import Progress, run_job


@pytest.fixture(scope="module")
def stack(flyem_crop: np.ndarray) -> np.ndarray:
    """Four 80² crops of FlyEM slices 120-123 (float32 in [0, 1])."""
    return np.ascontiguousarray(flyem_crop[:4, 90:170, 60:140])


def test_both_phases_write_two_generators_a_card_curves_and_a_checkpoint(
    make_config: Callable[..., GANTrainingConfig], stack: np.ndarray, tmp_path: Path
) -> None:
    out = tmp_path / "gan.safetensors"
    events: list[Progress] = []
    result = run_job(train_gan_job(stack, [0, 1, 2, 3], make_config(), out, data_name="crop.tif"), events.append)
    assert result["iterations"] == 12 and result["stopped"] == "iterations"
    tensors, card = load_weights(out)
    assert card["kind"] == "partial-scan-gan" and card["variants"] == ["mse", "gan"]
    assert {name.split(".", 1)[0] for name in tensors} == {"mse", "gan"}
    assert card["data"] == {"file": "crop.tif", "slices": [0, 1, 2, 3], "train_slices": [0, 1, 2], "shape": [80, 80]}
    training = card["training"]
    assert training["pretrain_iterations"] == 6 and training["iterations_done"] == 12 and training["completed"]
    assert training["patterns"] == ["spiral", "grid", "random"] and training["coverage"] == [0.02, 0.2]
    metrics = card["metrics"]
    assert metrics["validation_slices"] == [3] and metrics["linear_psnr"] > 15
    assert set(metrics) >= {"gan-mse", "gan"} and set(metrics["gan"]["per_pattern"]) == {"spiral", "grid", "random"}
    assert curves_path(out).stat().st_size > 10_000 and state_path(out).is_file()
    curves = json.loads(out.with_name("gan.curves.json").read_text())  # the plotted numbers, beside the plot
    assert [it for it, _ in curves["loss"]] == list(range(2, 13, 2)) and curves["pretrain_iterations"] == 6
    assert GANTrainingConfig.from_dict(read_card(state_path(out))["config"]) == make_config()
    phases = [e.partial.phase for e in events if isinstance(e.partial, GANTrainingStatus)]
    assert phases[0] == "prepare" and "pretrain" in phases and phases[-1] == "adversarial"
    last = events[-1].partial
    assert [it for it, _ in last.loss] == list(range(2, 13, 2)) and [it for it, _ in last.disc_loss] == [8, 10, 12]
    # both generators load as reconstruction methods and keep the scanned pixels
    mask = np.random.default_rng(0).random((1, 80, 80)) < 0.1
    sparse = np.where(mask, stack[3:4], 0.0).astype(np.float32)
    for method in ("gan", "gan-mse"):
        image = create(method, weights=out).reconstruct_slice(sparse, mask, 0)
        assert image.shape == (80, 80) and image.dtype == np.float32 and 0 <= image.min() <= image.max() <= 1
        assert np.array_equal(image[mask[0]], stack[3][mask[0]])
    with pytest.raises(FileExistsError, match="--resume"):
        run_job(train_gan_job(stack, [0, 1, 2, 3], make_config(), out))


def test_mse_training_lowers_the_error(
    make_config: Callable[..., GANTrainingConfig], stack: np.ndarray, tmp_path: Path
) -> None:
    out = tmp_path / "g.safetensors"
    config = make_config(iterations=60, pretrain_fraction=1.0, batch_size=4, log_every=10, validate_every=60)
    result = run_job(train_gan_job(stack, [0, 1, 2, 3], config, out))
    losses = [value for _, value in read_card(state_path(out))["status"]["loss"]]
    assert len(losses) == 6 and np.mean(losses[-2:]) < 0.8 * losses[0]
    assert result["card"]["variants"] == ["mse"]  # no adversarial phase: method gan is refused, gan-mse works
    with pytest.raises(ValueError, match="trained without the adversarial phase, use gan-mse"):
        create("gan", weights=out)


def test_cancel_saves_a_checkpoint_and_resume_finishes_the_budget(
    make_config: Callable[..., GANTrainingConfig], stack: np.ndarray, tmp_path: Path
) -> None:
    out = tmp_path / "gan.safetensors"
    job = train_gan_job(stack, [0, 1, 2, 3], make_config(), out)
    for event in job:
        if event.step == 8:  # in the adversarial phase
            break
    job.close()
    card = read_card(out)
    assert card["training"]["stopped"] == "cancelled" and card["training"]["iterations_done"] == 8
    assert card["variants"] == ["mse", "gan"]
    result = run_job(train_gan_job(stack, [0, 1, 2, 3], make_config(), out, resume=True))
    assert result["iterations"] == 12 and result["card"]["training"]["completed"]
    assert result["card"]["training"]["pretrain_iterations"] == 6
    with pytest.raises(ValueError, match="same training"):
        run_job(train_gan_job(stack, [0, 1, 2], make_config(), out, resume=True))
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        run_job(train_gan_job(stack, [0, 1, 2, 3], make_config(), tmp_path / "other.safetensors", resume=True))


def test_bad_input_is_refused_before_any_work(
    make_config: Callable[..., GANTrainingConfig], stack: np.ndarray, tmp_path: Path
) -> None:
    with pytest.raises(ValueError, match="smaller than the training crop"):
        run_job(train_gan_job(stack, [0, 1], make_config(crop=96), tmp_path / "a.safetensors"))
    with pytest.raises(ValueError, match="outside the volume"):
        run_job(train_gan_job(stack, [0, 9], make_config(), tmp_path / "a.safetensors"))
    with pytest.raises(ValueError, match="largest discriminator crop"):
        make_config(crop=48)
    with pytest.raises(ValueError, match="budget"):
        make_config(iterations=None)
    with pytest.raises(ValueError, match=r"unknown gan-training field\(s\) \['batch'\]"):
        GANTrainingConfig.from_dict({"batch": 4})
    with pytest.raises(ValueError, match=r"pretrain_fraction must be in \(0, 1\]"):
        make_config(pretrain_fraction=0)
    with pytest.raises(ValueError, match="unknown mask pattern"):
        parse_patterns("spiral,zigzag")
    assert parse_patterns("mixed,lines") == ["spiral", "grid", "random", "lines"]
    assert parse_coverage("0.02:0.2") == (0.02, 0.2) and parse_coverage(0.05) == (0.05, 0.05)
    with pytest.raises(ValueError, match="0 < low <= high <= 1"):
        parse_coverage("0.2:0.02")


def test_random_masks_vary_in_pattern_and_reach_the_coverage_range() -> None:
    rng = np.random.default_rng(0)
    draws = [random_mask((128, 128), ["spiral", "grid", "random"], (0.02, 0.2), rng) for _ in range(60)]
    assert {pattern for _, pattern, _ in draws} == {"spiral", "grid", "random"}
    coverages = np.array([c for _, _, c in draws])
    assert coverages.min() >= 0.02 and coverages.max() <= 0.2 and coverages.min() < 0.04 and coverages.max() > 0.1
    achieved = np.array([m.mean() for m, _, _ in draws])
    assert np.corrcoef(np.log(coverages), np.log(achieved))[0, 1] > 0.9  # the crop of a canvas keeps the coverage


def test_context_batches_hold_the_neighbours_crops_with_their_own_masks(
    make_config: Callable[..., GANTrainingConfig], stack: np.ndarray
) -> None:
    config = make_config(architecture={**make_config().architecture, "context": 1}, batch_size=16)
    network = config.network()
    assert network.in_channels == 6 and network.center_channel == 2
    x, y = training_batch(stack, config, network, np.random.default_rng(5), numbers=[10, 11, 12, 20])
    assert x.shape == (16, 6, 64, 64) and y.shape == (16, 1, 64, 64)
    centre_masks, neighbour_masks = x[:, 3] > 0, x[:, [1, 5]] > 0
    # the restored slice's scanned values are the target's; neighbours have their own, different masks
    assert np.allclose(x[:, 2][centre_masks], y[:, 0][centre_masks])
    present = neighbour_masks.any(axis=(2, 3))
    assert present.mean() > 0.3 and not np.array_equal(
        neighbour_masks[present], np.repeat(centre_masks[:, None], 2, 1)[present]
    )
    # slice 20 has no neighbour in the set (19 and 21 are not reference slices): only blank neighbours for it
    assert (~present).any()


def test_a_context_generator_reconstructs_through_the_volume_driver(
    make_config: Callable[..., GANTrainingConfig], stack: np.ndarray, tmp_path: Path
) -> None:
    from napari_sparse_sem.recon.gan import slab_input
    from napari_sparse_sem.recon.volume import reconstruct_volume

    out = tmp_path / "ctx.safetensors"
    config = make_config(architecture={**make_config().architecture, "context": 1}, iterations=4)
    result = run_job(train_gan_job(stack, [0, 1, 2, 3], config, out))
    assert result["card"]["architecture"]["context"] == 1 and np.isfinite(result["card"]["metrics"]["gan"]["psnr"])
    method = create("gan-mse", weights=out)
    assert method.context == 1
    mask = np.random.default_rng(1).random(stack.shape) < 0.1
    sparse = np.where(mask, stack, 0.0).astype(np.float32)
    volume = run_job(reconstruct_volume(sparse, mask, "gan-mse", options={"weights": str(out)}))
    assert volume.shape == stack.shape and np.array_equal(volume[mask], stack[mask])
    first = slab_input(sparse[:2], mask[:2], 0, 1, "nearest")  # slice 0: its "previous" neighbour is missing
    assert first.shape == (6, 80, 80) and not first[:2].any() and first[3].any()


def test_a_diverging_run_rolls_back_and_halves_the_learning_rate(
    make_config: Callable[..., GANTrainingConfig], stack: np.ndarray, tmp_path: Path
) -> None:
    config = make_config(iterations=30, lr=1.0, pretrain_fraction=1.0, batch_size=4)
    result = run_job(train_gan_job(stack, [0, 1, 2, 3], config, tmp_path / "a.safetensors"))
    rollbacks = result["card"]["training"]["rollbacks"]
    assert rollbacks and rollbacks[0][1] == 0.5 and result["iterations"] == 30
    with pytest.raises(FloatingPointError, match="try a lower --lr"):
        run_job(train_gan_job(stack, [0, 1, 2, 3], make_config(lr=100.0), tmp_path / "b.safetensors"))
