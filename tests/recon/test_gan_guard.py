"""The domain guard of the shipped GAN weights: the default gan-mse drops its ±1-slice context where it does not fit."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

from napari_sparse_sem.recon.volume import reconstruct_volume
from napari_sparse_sem.runtime import run_job
from napari_sparse_sem.sampling.patterns import make_masks
from napari_sparse_sem.sampling.spec import MaskSpec


def _scan(stack: np.ndarray, per_slice: bool = True) -> tuple[np.ndarray, np.ndarray]:
    mask, _ = make_masks(stack.shape, MaskSpec(pattern="random", coverage=0.05, per_slice=per_slice, seed=1))
    return np.where(mask, stack, 0.0).astype(np.float32), mask


def _infos(sparse, mask, slices, **options) -> list[dict]:
    infos = []
    job = reconstruct_volume(sparse, mask, "gan-mse", options=options, slices=slices)
    run_job(job, on_progress=lambda event: infos.append(event.partial.info) if hasattr(event.partial, "info") else None)
    return infos


@pytest.fixture(scope="module")
def thin(flyem_crop) -> tuple[np.ndarray, np.ndarray]:
    """FlyEM keeping every 5th slice (50 nm between slices), random 5 % with one mask per slice."""
    return _scan(flyem_crop[::5])


def test_default_switches_to_2d_on_every_5th_slice_and_says_so(thin):
    infos = _infos(*thin, [2, 3])
    assert [info["weights"] for info in infos] == ["gan_flyem.safetensors"] * 2
    note = infos[0]["weights_note"]
    assert "do not fit this stack" in note and "'flyem'" in note and "--weights flyem-context1" in note


def test_default_keeps_the_context_on_flyem(flyem_crop):
    infos = _infos(*_scan(flyem_crop[:8]), [3])
    assert infos == [{"weights": "gan_flyem_context1.safetensors"}]


def test_one_mask_for_every_slice_uses_2d(flyem_crop):
    infos = _infos(*_scan(flyem_crop[:8], per_slice=False), [3])
    assert infos[0]["weights"] == "gan_flyem.safetensors"
    assert "same mask" in infos[0]["weights_note"]


def test_explicit_weights_are_never_overridden(thin):
    infos = _infos(*thin, [2], weights="flyem-context1")
    assert infos == [{"weights": "gan_flyem_context1.safetensors"}]


def test_lazy_input_gives_the_same_result(thin):
    sparse, mask = thin
    eager = run_job(reconstruct_volume(sparse, mask, "gan-mse", slices=[3]))
    infos = []
    lazy = run_job(
        reconstruct_volume(
            da.from_array(sparse, chunks=(1, 125, 125)),
            da.from_array(mask, chunks=(1, 125, 125)),
            "gan-mse",
            slices=[3],
        ),
        on_progress=lambda event: infos.append(getattr(event.partial, "info", None)),
    )
    assert infos[-1]["weights"] == "gan_flyem.safetensors"
    np.testing.assert_array_equal(lazy[3], eager[3])


def test_a_single_image_says_the_2d_weights_did_it(flyem_crop):
    sparse, mask = _scan(flyem_crop[:1])
    infos = _infos(sparse[0], mask[0], None)
    assert infos == [{"weights": "gan_flyem.safetensors"}]
