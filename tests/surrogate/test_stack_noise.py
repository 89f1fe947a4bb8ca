"""Shot noise measured the paper's way, simulated stacks (labels, voxel size, pixel-size resampling, saving)."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sparse_sem.io.readers import read_volume
from napari_sparse_sem.runtime import run_job
from napari_sparse_sem.surrogate.geometry import GeometrySpec
from napari_sparse_sem.surrogate.noise import add_shot_noise, dose_for_snr, homogeneous_mask, measure_snr, noise_std
from napari_sparse_sem.surrogate.stack import StackSpec, save_stack, simulate_stack


def test_shot_noise_has_the_asked_snr() -> None:
    image = np.full((96, 96), 0.4, np.float32)
    mask = np.ones_like(image, bool)
    dose = dose_for_snr(image, 8.33, mask)
    assert dose == pytest.approx(8.33**2 / 0.4)
    noisy = add_shot_noise(image, dose, seed=1)
    assert noisy.mean() == pytest.approx(0.4, rel=0.01)
    assert measure_snr(noisy, mask) == pytest.approx(8.33, rel=0.05)
    assert noise_std(noisy, mask) == pytest.approx(np.sqrt(0.4 / dose), rel=0.05)
    with pytest.raises(ValueError, match="positive"):
        add_shot_noise(image, 0.0)


def test_homogeneous_mask_is_flat_solid_away_from_edges() -> None:
    hf = np.zeros((7, 40, 40), np.float32)
    hf[6] = 1.0
    hf[0, :, 20:] = 5.0  # a pore on the right half
    mask = homogeneous_mask(hf, radius=4)
    assert mask[:, :16].all() and not mask[:, 16:].any()


@pytest.fixture(scope="module")
def small_stack():
    geometry = GeometrySpec("spheres", 0.5, radius=(5, 8), seed=2)
    return run_job(simulate_stack(geometry, StackSpec(slices=5, spacing=2.0, size=48), device="cpu"))


def test_stack_labels_match_the_images(small_stack) -> None:
    stack = small_stack
    assert stack.solid.shape == stack.images["bse"].shape == stack.images["se"].shape == (5, 48, 48)
    assert stack.voxel_size_nm == (10.0, 5.0, 5.0)
    assert 0.3 < stack.metadata["porosity_voxelised"] < 0.7
    se = stack.images["se"]
    assert se[stack.solid].mean() > 1.5 * se[~stack.solid].mean()  # SE: solid bright, pores dark
    assert stack.planes[0] - stack.planes[1] == pytest.approx(2.0)
    assert stack.images["se"] is stack.clean["se"]  # no noise asked


def test_stack_saved_as_zarr_reads_back(small_stack, tmp_path) -> None:
    out = save_stack(small_stack, tmp_path / "stack.zarr")
    bse = read_volume(f"{out}:bse")
    assert bse.data.shape == (5, 48, 48) and tuple(bse.voxel_size) == (10.0, 5.0, 5.0)
    assert read_volume(out, dataset="solid").data.dtype == bool
    assert (tmp_path / "stack.primitives.npz").exists()
    with pytest.raises(FileExistsError, match="--overwrite"):
        save_stack(small_stack, out)


def test_coarser_pixels_resample_through_the_model_grid() -> None:
    geometry = GeometrySpec("spheres", 0.5, radius=(3, 4), pixel_size_nm=10.0, seed=2)
    stack = run_job(simulate_stack(geometry, StackSpec(slices=2, size=32, detector="se", snr=8.33), device="cpu"))
    assert set(stack.images) == {"se"} and stack.images["se"].shape == (2, 32, 32)
    assert stack.voxel_size_nm == (10.0, 10.0, 10.0)
    assert stack.metadata["dose_electrons_per_pixel"]["se"] > 0
    assert stack.clean["se"][stack.solid].mean() > stack.clean["se"][~stack.solid].mean()


def test_bad_stack_settings_are_clear() -> None:
    with pytest.raises(ValueError, match="not both"):
        StackSpec(dose=10.0, snr=5.0)
    with pytest.raises(ValueError, match="detector must be one of"):
        StackSpec(detector="xray")
