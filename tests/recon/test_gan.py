"""GAN inference: any slice size (tiles without seams), the weights chooser's errors, and the registered methods."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from napari_sparse_sem.metrics import psnr
from napari_sparse_sem.nn.weights import card_path, read_card, save_weights
from napari_sparse_sem.recon.base import available_methods, create
from napari_sparse_sem.recon.gan import filled_input, load_generator
from napari_sparse_sem.recon.gan_training import train_gan_job
from napari_sparse_sem.runtime import run_job


@pytest.fixture(scope="module")
def tiny_weights(
    flyem_crop: np.ndarray, make_config: Callable[..., Any], tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("gan") / "tiny.safetensors"
    run_job(train_gan_job(flyem_crop[:3, :96, :96], [0, 1, 2], make_config(iterations=4), out))
    return out


def test_methods_are_registered() -> None:
    assert {"gan", "gan-mse"} <= set(available_methods())


def test_filled_input_channels() -> None:
    values = np.array([[0.5, 0.0], [0.0, 0.2]], np.float32)
    mask = np.array([[True, False], [False, True]])
    zeros = filled_input(values, mask, "zeros")
    assert zeros.shape == (2, 2, 2) and np.array_equal(zeros[1], mask.astype(np.float32))
    assert np.array_equal(zeros[0], values)
    nearest = filled_input(values, mask, "nearest")[0]
    assert np.array_equal(nearest[mask], values[mask])
    assert set(nearest[~mask].tolist()) <= set(values[mask].tolist())  # every gap takes a scanned value


def test_large_slices_go_through_seamless_tiles(tiny_weights: Path, flyem_slice125: np.ndarray) -> None:
    mask = np.random.default_rng(3).random((1, 250, 250)) < 0.1
    sparse = np.where(mask, flyem_slice125[None], 0.0).astype(np.float32)
    whole = create("gan-mse", weights=tiny_weights, tile=512).reconstruct_slice(sparse, mask, 0)
    tiled = create("gan-mse", weights=tiny_weights, tile=128, overlap=32).reconstruct_slice(sparse, mask, 0)
    assert tiled.shape == whole.shape == (250, 250)
    assert psnr(whole, tiled) > 35  # the tiles see less context but blend without visible seams
    with pytest.raises(ValueError, match=r"tile must be in \[64, inf\)"):
        create("gan", weights=tiny_weights, tile=32)


def test_a_pickle_is_refused_with_a_clear_error(tmp_path: Path) -> None:
    fake = tmp_path / "model.pt"
    with zipfile.ZipFile(fake, "w") as archive:
        archive.writestr("archive/data.pkl", b"\x80\x02}q\x00.")
    with pytest.raises(ValueError, match="only loads weights in the safetensors format"):
        create("gan", weights=fake)


def test_mismatched_weights_give_clear_errors(tiny_weights: Path, tmp_path: Path) -> None:
    import torch

    # tensors that do not fit the architecture in the card
    bad = tmp_path / "bad.safetensors"
    card = read_card(tiny_weights)
    save_weights(bad, {"mse.outer_up.3.weight": torch.zeros(1, 2, 1, 1)}, {**card, "sha256": None})
    with pytest.raises(ValueError, match="do not fit the architecture"):
        load_generator(bad, "mse")
    # a card of another kind of network (e.g. the error estimator)
    other = tmp_path / "other.safetensors"
    save_weights(other, {"w": torch.zeros(1)}, {"task": "binarized-error"})
    with pytest.raises(ValueError, match="not a partial-scan GAN generator"):
        create("gan-mse", weights=other)
    # a card without an architecture
    broken = tmp_path / "broken.safetensors"
    save_weights(broken, {"mse.w": torch.zeros(1)}, {"kind": "partial-scan-gan"})
    with pytest.raises(ValueError, match="no valid GAN architecture"):
        create("gan-mse", weights=broken)
    # a card that belongs to another weights file
    copy = tmp_path / "copy.safetensors"
    copy.write_bytes(tiny_weights.read_bytes()[:-4] + b"\0\0\0\0")
    card_path(copy).write_text(json.dumps(card))
    with pytest.raises(ValueError, match="belongs to another weights file"):
        create("gan", weights=copy)
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        create("gan", weights=tmp_path / "missing.safetensors")


def test_augment_averages_the_eight_flips_and_rotations(tiny_weights: Path, flyem_slice125: np.ndarray) -> None:
    mask = np.random.default_rng(4).random((1, 96, 80)) < 0.1  # not square: rotations change the shape
    sparse = np.where(mask, flyem_slice125[None, :96, :80], 0.0).astype(np.float32)
    plain = create("gan-mse", weights=tiny_weights)
    averaged = create("gan-mse", weights=tiny_weights, augment=True)
    inputs = filled_input(sparse[0], mask[0], plain.fill)[None]
    outputs = []
    for turns in range(4):
        for flip in (False, True):
            x = np.rot90(inputs, turns, axes=(2, 3))
            out = plain.predict(np.ascontiguousarray(x[..., ::-1] if flip else x))
            outputs.append(np.rot90(out[..., ::-1] if flip else out, -turns, axes=(1, 2)))
    expected = np.clip(np.mean(outputs, axis=0)[0], 0, 1)
    expected[mask[0]] = sparse[0][mask[0]]
    assert averaged.settings.augment and not plain.settings.augment
    image = averaged.reconstruct_slice(sparse, mask, 0)
    assert image.shape == (96, 80) and np.allclose(image, expected, atol=1e-5)
    assert not np.allclose(image, plain.reconstruct_slice(sparse, mask, 0), atol=1e-3)


def test_export_halves_the_file_and_a_context_generator_hands_lone_slices_to_its_2d_companion(
    tiny_weights: Path,
    make_config: Callable[..., Any],
    flyem_crop: np.ndarray,
    flyem_slice125: np.ndarray,
    tmp_path: Path,
) -> None:
    from napari_sparse_sem.recon.gan import DEFAULT_GAN_WEIGHTS, SHIPPED_GAN_WEIGHTS, export_weights, resolve_weights

    assert resolve_weights(None) == DEFAULT_GAN_WEIGHTS and resolve_weights("flyem") == SHIPPED_GAN_WEIGHTS["flyem"]
    assert resolve_weights(str(tiny_weights)) == tiny_weights
    flat = export_weights(tiny_weights, tmp_path / "flat.safetensors", command="sparse-sem export-gan ...")
    assert read_card(flat)["dtype"] == "float16" and flat.stat().st_size < 0.6 * tiny_weights.stat().st_size
    mask = np.random.default_rng(5).random((1, 96, 96)) < 0.1
    sparse = np.where(mask, flyem_slice125[None, :96, :96], 0.0).astype(np.float32)
    full_out = create("gan-mse", weights=tiny_weights).reconstruct_slice(sparse, mask, 0)
    half_out = create("gan-mse", weights=flat).reconstruct_slice(sparse, mask, 0)
    assert psnr(full_out, half_out) > 50

    context_file = tmp_path / "context_train.safetensors"
    config = make_config(architecture={**make_config().architecture, "context": 1}, iterations=4)
    run_job(train_gan_job(flyem_crop[:3, :96, :96], [0, 1, 2], config, context_file))
    shipped = export_weights(context_file, tmp_path / "context.safetensors", single_slice_weights="flat.safetensors")
    method = create("gan-mse", weights=shipped)
    lone = method.reconstruct_slice(sparse, mask, 0)
    assert np.array_equal(lone, half_out)  # a 2D image goes to the 2D companion
    slab_mask = np.random.default_rng(6).random((3, 96, 96)) < 0.1
    slab = np.where(slab_mask, flyem_crop[:3, :96, :96], 0.0).astype(np.float32)
    in_stack = method.reconstruct_slice(slab, slab_mask, 1)
    companion = create("gan-mse", weights=flat).reconstruct_slice(slab[1:2], slab_mask[1:2], 0)
    assert in_stack.shape == (96, 96) and not np.allclose(in_stack, companion)
    with pytest.raises(FileExistsError):
        export_weights(context_file, shipped)
