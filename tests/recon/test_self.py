"""Self-supervised training on a sparse scan alone (recon/self_data, recon/self_training) and method ``self``, on
real FlyEM crops with few iterations."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from napari_sparse_sem.metrics import psnr
from napari_sparse_sem.nn.weights import read_card
from napari_sparse_sem.recon.gan import WEIGHTS_DIR
from napari_sparse_sem.recon.self_data import (
    ValidationSet,
    load_scan,
    one_fixed_mask,
    parse_hidden,
    training_batch,
)
from napari_sparse_sem.recon.self_training import (
    FIXED_MASK_NOTE,
    SelfTrainingConfig,
    SelfTrainingStatus,
    train_self_job,
)
from napari_sparse_sem.recon.volume import reconstruct_volume
from napari_sparse_sem.runtime import Progress, run_job
from napari_sparse_sem.sampling.patterns import slice_mask
from napari_sparse_sem.sampling.spec import MaskSpec


def scan(volume: np.ndarray, coverage: float, fixed: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """(sparse, mask): random masks (per slice, or one for all) of ``volume``, unscanned values 0."""
    spec = MaskSpec("random", coverage, seed=0)
    mask = np.stack([slice_mask(volume.shape[1:], spec, 0 if fixed else z).mask for z in range(len(volume))])
    return np.where(mask, volume, 0.0).astype(np.float32), mask


def quick(**kw: object) -> SelfTrainingConfig:
    options = {"minutes": None, "iterations": 3, "crop": 64, "batch_size": 2, "log_every": 1, "validate_every": 2}
    return SelfTrainingConfig(**{**options, **kw})


def tensors(path: Path) -> dict:
    from safetensors.torch import load_file

    return load_file(str(path))


def test_garbage_at_unscanned_pixels_changes_nothing(flyem_crop: np.ndarray, tmp_path: Path) -> None:
    volume = flyem_crop[:3, :64, :64]
    sparse, mask = scan(volume, 0.2)
    garbage = sparse.copy()
    garbage[~mask] = np.random.default_rng(5).uniform(-3.0, 9.0, int((~mask).sum()))
    garbage[0, ~mask[0]] = np.nan
    config = quick(init="none")
    a = run_job(train_self_job(sparse, mask, config, tmp_path / "a.safetensors"))
    b = run_job(train_self_job(garbage, mask, config, tmp_path / "b.safetensors"))
    wa, wb = tensors(a["path"]), tensors(b["path"])
    assert wa.keys() == wb.keys() and all(wa[k].equal(wb[k]) for k in wa)
    assert a["card"]["metrics"] == b["card"]["metrics"]


def test_the_loss_sees_only_hidden_scanned_pixels_hidden_in_every_slice_of_the_slab(flyem_crop: np.ndarray) -> None:
    values, known = load_scan(*scan(flyem_crop[:3, :64, :64], 0.3, fixed=True), [0, 1, 2])
    rng = np.random.default_rng(0)
    x, y, w = training_batch(
        values, known, [0, 1, 2], crop=48, batch_size=16, hidden=(0.2, 0.4), context=1, fill="nearest", rng=rng
    )
    assert x.shape == (16, 6, 48, 48) and y.shape == w.shape == (16, 1, 48, 48)
    hidden = w[:, 0] > 0
    centre_mask = x[:, 3] > 0
    assert set(np.unique(w)) <= {0.0, 1.0} and hidden.any()
    for i in range(16):
        # hidden pixels are absent from every mask channel of the slab (one fixed mask: no neighbour shows them)
        assert not (x[i, [1, 3, 5]][:, hidden[i]] > 0).any()
        scanned = centre_mask[i] | hidden[i]
        assert 0.1 < hidden[i].sum() / scanned.sum() < 0.5
        assert np.all(y[i, 0][~scanned] == 0) and np.all(y[i, 0][hidden[i]] > 0)  # targets: measured values only
    assert parse_hidden("0.1:0.5") == (0.1, 0.5) and parse_hidden(0.3) == (0.3, 0.3)
    with pytest.raises(ValueError, match="0 < low <= high < 1"):
        parse_hidden("0.5:0.1")


def test_validation_pixels_never_train(flyem_crop: np.ndarray) -> None:
    values, known = load_scan(*scan(flyem_crop[:6, :80, :80], 0.1), list(range(6)))
    validation, train_known = ValidationSet.build(
        values, known, list(range(6)), fraction=0.1, max_slices=3, context=1, fill="nearest",
        rng=np.random.default_rng(0),
    )  # fmt: skip
    assert validation is not None and validation.slices == [0, 2, 5]
    removed = known & ~train_known
    assert removed.sum() == validation.count > 0 and not (train_known & ~known).any()
    assert 15 < validation.linear_psnr < 40


def test_one_fixed_mask_falls_back_to_2d_and_says_so(flyem_crop: np.ndarray, tmp_path: Path) -> None:
    sparse, mask = scan(flyem_crop[:3, :64, :64], 0.1, fixed=True)
    assert one_fixed_mask(mask) and not one_fixed_mask(scan(flyem_crop[:3, :64, :64], 0.1)[1])
    events: list[Progress] = []
    result = run_job(train_self_job(sparse, mask, quick(iterations=1), tmp_path / "f.safetensors"), events.append)
    training = result["card"]["training"]
    assert training["init_used"] == "flyem" and training["context_used"] == 0 and training["one_fixed_mask"]
    assert FIXED_MASK_NOTE in result["notes"] and any("flyem weights" in n for n in result["notes"])
    assert result["card"]["notes"] == result["notes"]
    assert isinstance(events[-1].partial, SelfTrainingStatus) and FIXED_MASK_NOTE in events[-1].partial.notes
    with pytest.raises(ValueError, match="context 1 with one fixed mask"):
        run_job(train_self_job(sparse, mask, quick(context=1), tmp_path / "g.safetensors"))


def test_fine_tuned_self_beats_linear_and_round_trips(flyem_crop: np.ndarray, tmp_path: Path) -> None:
    volume = flyem_crop[:6, :128, :128]
    sparse, mask = scan(volume, 0.05)
    config = quick(iterations=8, batch_size=4, crop=96, validate_every=4)
    events: list[Progress] = []
    result = run_job(train_self_job(sparse, mask, config, tmp_path / "s.safetensors"), events.append)
    card = read_card(result["path"])
    assert card["kind"] == "partial-scan-gan" and card["variants"] == ["mse"]
    assert card["training"]["kind"] == "self-supervised" and card["training"]["context_used"] == 1
    assert card["training"]["iterations_done"] == 8 and card["training"]["stopped"] == "iterations"
    assert result["notes"] == [] and result["validation_psnr"] > result["linear_psnr"]
    status = events[-1].partial
    assert status.validation[0][0] == 0 and status.validation[-1][0] == 8 and len(status.loss) == 8
    assert result["curves_path"].is_file() and result["path"].with_name("s.curves.json").is_file()
    own = run_job(reconstruct_volume(sparse, mask, "self", options={"weights": str(result["path"])}))
    linear = run_job(reconstruct_volume(sparse, mask, "linear"))
    score = {name: np.mean([psnr(volume[z], out[z], ~mask[z]) for z in range(6)]) for name, out in
             (("self", own), ("linear", linear))}  # fmt: skip
    assert score["self"] >= score["linear"] + 1.0, score
    np.testing.assert_array_equal(own[mask], sparse[mask])  # measured values kept
    with pytest.raises(FileExistsError, match="overwrite"):
        run_job(train_self_job(sparse, mask, config, tmp_path / "s.safetensors"))


def test_from_scratch_the_loss_falls(flyem_crop: np.ndarray, tmp_path: Path) -> None:
    sparse, mask = scan(flyem_crop[:4, :64, :64], 0.2)
    config = quick(init="none", iterations=30, batch_size=4, log_every=5, validate_every=30)
    result = run_job(train_self_job(sparse, mask, config, tmp_path / "z.safetensors"))
    curve = json.loads(result["path"].with_name("z.curves.json").read_text())["loss"]
    assert len(curve) == 6 and curve[-1][1] < 0.7 * curve[0][1], curve
    assert result["card"]["training"]["context_used"] == 1 and result["card"]["training"]["init_used"] == "none"


def test_cancel_saves_what_was_trained(flyem_crop: np.ndarray, tmp_path: Path) -> None:
    sparse, mask = scan(flyem_crop[:3, :64, :64], 0.2)
    job = train_self_job(sparse, mask, quick(iterations=50, init="none"), tmp_path / "c.safetensors")
    for event in job:
        if event.step >= 2:
            break
    job.close()
    training = read_card(tmp_path / "c.safetensors")["training"]
    assert training["stopped"] == "cancelled" and training["iterations_done"] == 2


def test_clear_errors(flyem_crop: np.ndarray, tmp_path: Path) -> None:
    sparse, mask = scan(flyem_crop[:2, :64, :64], 0.1)
    with pytest.raises(ValueError, match="no scanned pixel"):
        run_job(train_self_job(sparse, np.zeros_like(mask), quick(), tmp_path / "e.safetensors"))
    with pytest.raises(ValueError, match="init must be one of"):
        SelfTrainingConfig(init="imagenet")
    with pytest.raises(ValueError, match="train-self"):
        run_job(reconstruct_volume(sparse, mask, "self"))
    for weights, message in (
        (WEIGHTS_DIR / "error_unet_flyem.safetensors", "not a partial-scan GAN"),
        (WEIGHTS_DIR / "gan_flyem.safetensors", "dense reference slices, not on a sparse scan.*gan-mse"),
        ("flyem-context1", "shipped dense-trained weights"),
    ):
        with pytest.raises(ValueError, match=message):
            run_job(reconstruct_volume(sparse, mask, "self", options={"weights": str(weights)}))


def test_hidden_patches_hide_whole_blocks_at_the_asked_share() -> None:
    from scipy import ndimage

    from napari_sparse_sem.recon.self_data import _hidden_pixels

    rng = np.random.default_rng(0)
    single = _hidden_pixels(128, 0.3, 1, rng)
    patches = _hidden_pixels(128, 0.3, 8, rng)
    assert single.shape == patches.shape == (128, 128)
    assert abs(single.mean() - 0.3) < 0.03 and abs(patches.mean() - 0.3) < 0.1
    # patches of 8 px: far fewer, far larger connected regions than single hidden pixels
    _, n_single = ndimage.label(single)
    _, n_patches = ndimage.label(patches)
    assert n_patches * 10 < n_single
    assert ndimage.binary_erosion(patches, np.ones((5, 5))).any()  # a hidden pixel 2 px inside a patch


@pytest.mark.parametrize(("step", "fits"), [(5, False), (1, True)])
def test_the_flyem_context1_start_follows_the_domain_guard(flyem_crop, tmp_path, step, fits) -> None:
    from napari_sparse_sem.sampling.patterns import make_masks

    stack = flyem_crop[::step][:7]
    mask, _ = make_masks(stack.shape, MaskSpec(pattern="random", coverage=0.05, per_slice=True, seed=1))
    sparse = np.where(mask, stack, 0.0).astype(np.float32)
    config = SelfTrainingConfig(minutes=None, iterations=1, crop=64, batch_size=1, validation_slices=0)
    result = run_job(train_self_job(sparse, mask, config, tmp_path / "w.safetensors"))
    context = read_card(result["path"])["architecture"]["context"]
    if fits:
        assert context == 1 and not any("does not fit" in n for n in result["notes"])
    else:  # every 5th slice: neighbours too unlike FlyEM's, so the 2D start, and the user is told
        assert context == 0 and any("does not fit" in n and "2D flyem" in n for n in result["notes"])
