"""Noise estimates on real FlyEM slices with added Gaussian noise of known σ, and the PSNR ceiling."""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_sparse_sem.metrics import psnr
from napari_sparse_sem.quality.noise import estimate_noise, estimate_noise_sparse, psnr_ceiling
from napari_sparse_sem.sampling import make_masks
from napari_sparse_sem.sampling.spec import MaskSpec


@pytest.mark.parametrize("sigma", [0.03, 0.06, 0.1])
def test_dense_and_sparse_estimates_find_the_added_noise(flyem_crop: np.ndarray, sigma: float) -> None:
    clean = flyem_crop[:4].astype(np.float64)
    own = estimate_noise(clean).sigma  # FlyEM's own noise, ~0.013 of the range
    assert 0.005 < own < 0.02
    noisy = clean + np.random.default_rng(0).normal(0, sigma, clean.shape)
    expected = math.hypot(sigma, own)
    assert estimate_noise(noisy).sigma == pytest.approx(expected, rel=0.1)
    mask, _ = make_masks(clean.shape, MaskSpec(pattern="spiral", coverage=0.2, seed=0))
    sparse = estimate_noise_sparse(np.where(mask, noisy, 0), mask)
    assert sparse.sigma == pytest.approx(expected, rel=0.15)
    assert sparse.to_dict()["psnr_ceiling"] == pytest.approx(-20 * math.log10(sparse.sigma))


def test_sparse_random_scan_without_runs_is_unknown(flyem_crop: np.ndarray) -> None:
    mask, _ = make_masks((2, 250, 250), MaskSpec(pattern="random", coverage=0.02, seed=0))
    estimate = estimate_noise_sparse(np.where(mask, flyem_crop[:2], 0), mask)
    assert math.isnan(estimate.sigma) and "unknown" in estimate.how and math.isnan(estimate.ceiling)


def test_ceiling_is_what_a_perfect_reconstruction_scores(flyem_crop: np.ndarray) -> None:
    clean = flyem_crop[0].astype(np.float64)
    noisy = clean + np.random.default_rng(1).normal(0, 0.05, clean.shape)
    assert psnr(noisy, clean) == pytest.approx(psnr_ceiling(0.05), abs=0.1)
    assert psnr_ceiling(0.0) == math.inf and math.isnan(psnr_ceiling(float("nan")))
