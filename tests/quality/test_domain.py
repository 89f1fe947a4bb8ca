"""The domain statistics (quality/domain.py) on real FlyEM crops: the neighbour statistic from sparse scans only."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sparse_sem.nn.weights import read_card
from napari_sparse_sem.quality.domain import check_domain, intensity_statistics, stack_statistics
from napari_sparse_sem.recon.gan import SHIPPED_GAN_WEIGHTS
from napari_sparse_sem.sampling.patterns import make_masks
from napari_sparse_sem.sampling.spec import MaskSpec


def _sparse(stack: np.ndarray, pattern: str, coverage: float, per_slice: bool = True):
    mask, _ = make_masks(stack.shape, MaskSpec(pattern=pattern, coverage=coverage, per_slice=per_slice, seed=3))
    return np.where(mask, stack, 0.0).astype(np.float32), mask


@pytest.mark.parametrize(("pattern", "coverage", "per_slice"), [("random", 0.05, True), ("random", 0.2, False)])
def test_neighbour_step_separates_flyem_from_every_5th_slice(flyem_crop, pattern, coverage, per_slice):
    iso = stack_statistics(*_sparse(flyem_crop[:8], pattern, coverage, per_slice))
    thin = stack_statistics(*_sparse(flyem_crop[::5], pattern, coverage, per_slice))
    assert iso.slice_pairs == thin.slice_pairs == 4
    assert iso.z_step_px is not None and thin.z_step_px is not None
    assert iso.z_step_px < 2.0  # 10 nm slices of 10 nm pixels: about one pixel
    assert thin.z_step_px > 3.5  # 50 nm slices: about five pixels
    assert iso.coverage == pytest.approx(coverage, rel=0.05)


def test_check_domain_context_verdict(flyem_crop):
    card = read_card(SHIPPED_GAN_WEIGHTS["flyem-context1"])
    fits = check_domain(*_sparse(flyem_crop[:8], "random", 0.05), card, context=1)
    assert fits.context_fits is True and fits.note is None
    thin = check_domain(*_sparse(flyem_crop[::5], "random", 0.05), card, context=1)
    assert thin.context_fits is False
    assert thin.z_step_px - thin.reference_z_step_px > 1.0


def test_intensity_note_for_a_dark_and_a_flat_stack(flyem_crop):
    card = read_card(SHIPPED_GAN_WEIGHTS["flyem"])
    sparse, mask = _sparse(flyem_crop[:4], "random", 0.05)
    assert check_domain(sparse, mask, card).notes == []
    dark = check_domain(sparse * 0.3, mask, card)
    assert len(dark.notes) == 1 and "mean 0.15 vs 0.52" in dark.note
    flat = check_domain(np.where(mask, 0.5 + (sparse - 0.5) * 0.2, 0.0), mask, card)
    assert "std" in flat.note


def test_voxel_size_note_and_unmeasurable_step(flyem_crop):
    card = read_card(SHIPPED_GAN_WEIGHTS["flyem-context1"])
    sparse, mask = _sparse(flyem_crop[:4], "random", 0.05)
    check = check_domain(sparse, mask, card, voxel_size_nm=(40.0, 10.0, 10.0))
    assert "4.0x the pixel size apart" in check.note
    # one scanned pixel per slice: neighbouring slices cannot be compared, the weights are kept with a note
    few = np.zeros_like(mask)
    for z in range(4):
        few[z, 50 + 40 * z, 100] = True
    check = check_domain(np.where(few, flyem_crop[:4], 0.0), few, card, context=1)
    assert check.context_fits is None and "could not be compared" in check.note


def test_intensity_statistics_numbers():
    stats = intensity_statistics(np.linspace(0.0, 1.0, 101))
    assert stats["mean"] == pytest.approx(0.5)
    assert stats["percentiles"]["50"] == pytest.approx(0.5)
    assert stats["skewness"] == pytest.approx(0.0, abs=1e-9)


def test_unet_estimator_notes_a_dark_scan(flyem_crop):
    from napari_sparse_sem.active.error_estimation import make_estimator

    mask, _ = make_masks((1, 128, 128), MaskSpec(pattern="random", coverage=0.1, seed=0))
    image = flyem_crop[0, :128, :128]
    estimator = make_estimator("unet")
    estimator.estimate(image, np.where(mask[0], image, 0.0), mask[0])
    assert estimator.info() == {}
    dark = make_estimator("unet")
    with pytest.warns(RuntimeWarning, match="error estimator"):
        dark.estimate(image * 0.3, np.where(mask[0], image * 0.3, 0.0), mask[0])
    assert "mean 0.14 vs 0.52" in dark.info()["weights_note"]


def test_reference_step_is_kept_per_masks() -> None:
    from napari_sparse_sem.quality import domain

    rng = np.random.default_rng(5)
    masks = [(rng.random((250, 250)) < 0.05, rng.random((250, 250)) < 0.05) for _ in range(3)]
    first = domain.reference_step(masks)
    key = (domain._masks_digest(masks), 0)
    assert domain._REFERENCE_STEPS[key] == first
    assert domain.reference_step([(a.copy(), b.copy()) for a, b in masks]) == first  # same masks: same answer
    changed = [(~masks[0][0], masks[0][1]), *masks[1:]]
    assert domain._masks_digest(changed) != key[0]
    assert domain._measure_reference_step(masks, 0) == first  # the kept answer is what a fresh measurement gives
