"""Metrics: known values (constant offsets, identical images), masks, shapes, and real FlyEM slices."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import ndimage
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from napari_sparse_sem.metrics import abs_error, psnr, slice_metrics, ssim, ssim_map, volume_metrics


def test_psnr_of_constant_offset_is_known(flyem_slice125: np.ndarray) -> None:
    ref = np.full((64, 64), 0.5, dtype=np.float32)
    assert psnr(ref, ref + 0.1) == pytest.approx(20.0, abs=1e-4)
    assert psnr(ref, ref - 0.01) == pytest.approx(40.0, abs=1e-3)
    # agrees with scikit-image on real data
    noisy = np.clip(flyem_slice125 + np.random.default_rng(0).normal(0, 0.05, flyem_slice125.shape), 0, 1)
    assert psnr(flyem_slice125, noisy) == pytest.approx(peak_signal_noise_ratio(flyem_slice125, noisy, data_range=1))


def test_psnr_identical_is_inf_and_empty_mask_is_nan(flyem_slice125: np.ndarray) -> None:
    assert psnr(flyem_slice125, flyem_slice125) == math.inf
    assert math.isnan(psnr(flyem_slice125, flyem_slice125 + 0.1, mask=np.zeros(flyem_slice125.shape, bool)))


def test_psnr_mask_selects_pixels() -> None:
    ref = np.zeros((32, 32), dtype=np.float32)
    img = ref.copy()
    img[:16] = 0.1  # error 0.1 in the top half only
    top = np.zeros(ref.shape, bool)
    top[:16] = True
    assert psnr(ref, img, mask=top) == pytest.approx(20.0, abs=1e-4)
    assert psnr(ref, img, mask=~top) == math.inf
    assert psnr(ref, img) == pytest.approx(20.0 + 10 * np.log10(2), abs=1e-4)  # half the MSE -> +3 dB


def test_ssim_identical_is_one_and_matches_skimage(flyem_slice125: np.ndarray) -> None:
    assert ssim(flyem_slice125, flyem_slice125) == pytest.approx(1.0)
    blurred = ndimage.gaussian_filter(flyem_slice125, 1.5)
    expected = structural_similarity(flyem_slice125, blurred, data_range=1.0)
    assert ssim(flyem_slice125, blurred) == pytest.approx(expected, rel=1e-5)
    assert 0.3 < expected < 0.95
    smap = ssim_map(flyem_slice125, blurred)
    assert smap.shape == flyem_slice125.shape and smap.dtype == np.float32


def test_ssim_mask_restricts_to_damaged_region(flyem_slice125: np.ndarray) -> None:
    damaged = flyem_slice125.copy()
    damaged[:, 125:] = ndimage.gaussian_filter(flyem_slice125, 3)[:, 125:]
    left = np.zeros(damaged.shape, bool)
    left[:, :115] = True  # well away from the damage (window is 7 px)
    assert ssim(flyem_slice125, damaged, mask=left) == pytest.approx(1.0)
    assert ssim(flyem_slice125, damaged, mask=~left) < 0.8


def test_abs_error_and_shape_mismatch() -> None:
    ref = np.zeros((8, 8), np.float32)
    img = np.full((8, 8), 0.25, np.float32)
    err = abs_error(ref, img)
    assert err.dtype == np.float32 and np.allclose(err, 0.25)
    with pytest.raises(ValueError, match="same shape"):
        psnr(ref, img[:4])
    with pytest.raises(ValueError, match="same shape"):
        ssim(ref, img[:, :4])
    with pytest.raises(ValueError, match="mask must have"):
        psnr(ref, img, mask=np.ones((4, 4), bool))


def test_slice_metrics_separates_scanned_pixels(flyem_slice125: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    scanned = rng.random(flyem_slice125.shape) < 0.2
    recon = np.where(scanned, flyem_slice125, np.clip(flyem_slice125 + 0.1, 0, 1))
    row = slice_metrics(flyem_slice125, recon, scanned)
    assert set(row) == {"psnr", "ssim", "psnr_unscanned", "ssim_unscanned", "mae"}
    # copied scanned pixels flatter the whole-image score; the unscanned one sees the full error
    assert row["psnr"] > row["psnr_unscanned"]
    assert 19.5 < row["psnr_unscanned"] < 21.5  # ~0.1 offset (less where clipped at 1)
    assert row["mae"] == pytest.approx(np.mean(np.abs(recon - flyem_slice125)), rel=1e-5)
    assert 0.5 < row["ssim_unscanned"] < 0.95


def test_volume_metrics_rows_and_offset(flyem_crop: np.ndarray) -> None:
    ref = flyem_crop[:3, :64, :64]
    recon = np.clip(ref + 0.1, 0, 1)
    scanned = np.zeros(ref.shape, bool)
    rows = volume_metrics(ref, recon, scanned, slices=[0, 2], offset=120)
    assert [r["slice"] for r in rows] == [120, 122]
    assert all(18 < r["psnr"] < 22 and r["psnr"] == r["psnr_unscanned"] for r in rows)
    with pytest.raises(ValueError, match="same shape"):
        volume_metrics(ref, recon[:2], scanned)
    with pytest.raises(ValueError, match="outside"):
        volume_metrics(ref, recon, scanned, slices=[5])


def test_inputs_not_modified(flyem_slice125: np.ndarray) -> None:
    ref = flyem_slice125.copy()
    img = ref + 0.05
    img_copy = img.copy()
    slice_metrics(ref, img, ref > 0.5)
    assert np.array_equal(ref, flyem_slice125) and np.array_equal(img, img_copy)


def test_tiny_images_use_a_smaller_window() -> None:
    ref = np.linspace(0, 1, 25, dtype=np.float32).reshape(5, 5)
    assert ssim(ref, ref) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="at least 3x3"):
        ssim(ref[:2], ref[:2])
