"""Simulated sparse acquisition and shot noise."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sparse_sem.sampling import (
    AcquisitionSpec,
    MaskSpec,
    add_shot_noise,
    equal_time_dose,
    make_masks,
    simulate_acquisition,
)


@pytest.fixture
def crop(flyem_crop: np.ndarray) -> np.ndarray:
    return flyem_crop[:4, :100, :120].copy()


def test_noiseless_scan_keeps_scanned_pixels_only(crop: np.ndarray) -> None:
    before = crop.copy()
    mask, _ = make_masks(crop.shape, MaskSpec(pattern="random", coverage=0.1, seed=0))
    mask_before = mask.copy()
    sparse = simulate_acquisition(crop, mask)
    assert sparse.dtype == np.float32 and sparse.shape == crop.shape
    np.testing.assert_array_equal(sparse[mask], crop[mask])
    assert (sparse[~mask] == 0).all()
    np.testing.assert_array_equal(crop, before)  # inputs untouched
    np.testing.assert_array_equal(mask, mask_before)
    assert not np.shares_memory(sparse, crop)


def test_2d_image_integer_mask_and_shared_2d_mask(crop: np.ndarray) -> None:
    image = crop[0]
    mask01 = np.zeros(image.shape, dtype=np.uint8)
    mask01[::5, ::5] = 1
    sparse = simulate_acquisition(image, mask01)
    assert sparse.shape == image.shape
    np.testing.assert_array_equal(sparse[::5, ::5], image[::5, ::5])
    assert sparse.sum() == pytest.approx(image[::5, ::5].sum(), rel=1e-5)
    volume = simulate_acquisition(crop, mask01.astype(bool))  # one (y, x) mask for every slice
    np.testing.assert_array_equal(volume[2][::5, ::5], crop[2][::5, ::5])
    uint8 = simulate_acquisition((crop[0] * 0 + 1).astype(np.uint8), mask01)  # 0/1 integers are valid values
    assert uint8.dtype == np.float32 and uint8.max() == 1.0


@pytest.mark.parametrize("dose", [20.0, 100.0, 1000.0])
def test_shot_noise_snr_matches_poisson(dose: float) -> None:
    flat = np.full((250, 250), 0.5, dtype=np.float32)
    noisy = add_shot_noise(flat, dose, np.random.default_rng(0))
    assert noisy.dtype == np.float32
    assert (flat == 0.5).all()
    assert noisy.mean() == pytest.approx(0.5, rel=0.01)
    snr = noisy.mean() / noisy.std()
    assert snr == pytest.approx(np.sqrt(0.5 * dose), rel=0.05)
    # measured values are electron counts / dose
    counts = noisy.astype(np.float64) * dose
    np.testing.assert_allclose(counts, np.round(counts), atol=1e-3)


def test_simulated_noise_only_where_scanned_and_seeded(crop: np.ndarray) -> None:
    mask, _ = make_masks(crop.shape, MaskSpec(pattern="grid", coverage=0.2, seed=1))
    spec = AcquisitionSpec(dose=50.0, seed=3)
    a = simulate_acquisition(crop, mask, spec)
    b = simulate_acquisition(crop, mask, spec)
    c = simulate_acquisition(crop, mask, AcquisitionSpec(dose=50.0, seed=4))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert (a[~mask] == 0).all()
    assert a.min() >= 0 and a.max() <= 1
    residual = a[mask] - crop[mask]
    assert abs(residual.mean()) < 0.01  # unbiased
    # Poisson variance v/D per pixel
    expected_std = np.sqrt(np.mean(crop[mask]) / 50.0)
    assert residual.std() == pytest.approx(expected_std, rel=0.1)


def test_equal_time_sparse_scan_has_less_noise_per_pixel(crop: np.ndarray) -> None:
    """Same scan time: a 5 % scan dwells 20x longer per pixel, so its pixels are ~13 dB cleaner."""
    coverage, dense_dose = 0.05, 10.0
    mask, _ = make_masks(crop.shape, MaskSpec(pattern="random", coverage=coverage, seed=2))
    full = np.ones(crop.shape, dtype=bool)
    dense = simulate_acquisition(crop, full, AcquisitionSpec(dose=dense_dose, seed=0))
    sparse = simulate_acquisition(crop, mask, AcquisitionSpec(dose=equal_time_dose(dense_dose, coverage), seed=0))

    def psnr(values: np.ndarray, truth: np.ndarray) -> float:
        return float(10 * np.log10(1.0 / np.mean((values - truth) ** 2)))

    gain = psnr(sparse[mask], crop[mask]) - psnr(dense[mask], crop[mask])
    assert gain == pytest.approx(10 * np.log10(1 / coverage), abs=1.5)


def test_equal_time_dose() -> None:
    assert equal_time_dose(100.0, 0.05) == pytest.approx(2000.0)
    assert equal_time_dose(30.0, 1.0) == 30.0
    with pytest.raises(ValueError, match="coverage"):
        equal_time_dose(100.0, 0.0)
    with pytest.raises(ValueError, match="dose"):
        equal_time_dose(-1.0, 0.5)


def test_bad_inputs_are_clear_errors(crop: np.ndarray) -> None:
    mask = np.ones(crop.shape, dtype=bool)
    with pytest.raises(ValueError, match="does not match"):
        simulate_acquisition(crop, mask[:, :50])
    with pytest.raises(ValueError, match="boolean"):
        simulate_acquisition(crop, mask.astype(np.uint8) * 2)
    with pytest.raises(ValueError, match="boolean"):
        simulate_acquisition(crop, np.full(crop.shape, "x"))
    empty = mask.copy()
    empty[2] = False
    with pytest.raises(ValueError, match="slice 2 has no scanned pixel"):
        simulate_acquisition(crop, empty)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        simulate_acquisition(crop * 255, mask)
    bad = crop.copy()
    bad[0, 0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        simulate_acquisition(bad, mask)
    with pytest.raises(ValueError, match="shape"):
        simulate_acquisition(crop[0, 0], mask[0, 0])
    with pytest.raises(ValueError, match="dose"):
        add_shot_noise(crop, 0.0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        add_shot_noise(crop - 0.5, 10.0)


def test_slice_by_slice_equals_whole_volume(flyem_crop):
    """Streaming (one slice at a time, as the CLI does for big volumes) gives exactly the whole-volume result."""
    from napari_sparse_sem.sampling import MaskSpec, make_masks, slice_mask

    dense = flyem_crop[:4, :64, :64]
    spec = MaskSpec(pattern="bluenoise", coverage=0.1, seed=3)
    acq = AcquisitionSpec(dose=30.0, seed=5)
    masks, _ = make_masks(dense.shape, spec)
    whole = simulate_acquisition(dense, masks, acq)
    for z in range(4):
        mask_z = slice_mask(dense.shape[1:], spec, z).mask
        np.testing.assert_array_equal(mask_z, masks[z])
        np.testing.assert_array_equal(simulate_acquisition(dense[z], mask_z, acq, first_slice=z), whole[z])
