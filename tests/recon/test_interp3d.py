"""linear3d on the real FlyEM crop: the neighbours' samples (per-slice masks) must beat 2D linear clearly."""

from __future__ import annotations

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio

from napari_sparse_sem.recon import create
from napari_sparse_sem.recon.interp import fill_linear
from napari_sparse_sem.recon.interp3d import fill_linear3d


def psnr(reference: np.ndarray, image: np.ndarray) -> float:
    return float(peak_signal_noise_ratio(reference, image, data_range=1.0))


@pytest.fixture(scope="module")
def acquisition(flyem_crop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """5 % random, a different mask on every slice (as in a real sparse FIB-SEM run)."""
    mask = np.random.default_rng(0).random(flyem_crop.shape) < 0.05
    return np.where(mask, flyem_crop, 0).astype(np.float32), mask


@pytest.mark.parametrize("z", [5, 16])  # slice 125 (slab clipped at the crop's start) and slice 136 (full slab)
def test_linear3d_beats_linear_by_1db(flyem_crop: np.ndarray, acquisition, z: int) -> None:
    sparse, mask = acquisition
    method = create("linear3d")
    c = method.context
    z0, z1 = max(0, z - c), min(sparse.shape[0], z + c + 1)
    image = method.reconstruct_slice(sparse[z0:z1], mask[z0:z1], z - z0)
    flat = fill_linear(sparse[z], mask[z])
    db3, db2 = psnr(flyem_crop[z], image), psnr(flyem_crop[z], flat)
    assert db3 >= db2 + 1.0
    assert image.dtype == np.float32 and 0 <= image.min() and image.max() <= 1
    np.testing.assert_array_equal(image[mask[z]], sparse[z][mask[z]])


def test_options_and_context(acquisition) -> None:
    method = create("linear3d", context=2, z_scale=1.5)
    assert method.context == 2 and method.z_scale == 1.5
    assert create("linear3d").context == 5
    with pytest.raises(ValueError, match="context"):
        create("linear3d", context=-1)
    with pytest.raises(ValueError, match="z_scale"):
        create("linear3d", z_scale=0)
    with pytest.raises(
        ValueError, match=r"'linear3d' has no option\(s\) \['radius'\]; its options are \['context', 'z_scale'\]"
    ):
        create("linear3d", radius=3)
    with pytest.raises(ValueError, match="context must be a whole number"):
        create("linear3d", context=2.5)
    assert create("linear3d", context=3.0).context == 3  # JSON may write a whole number as 3.0


def test_thin_slab_and_anisotropy(flyem_crop: np.ndarray, acquisition) -> None:
    sparse, mask = acquisition
    z = 10
    slab = (slice(z - 2, z + 3), slice(0, 128), slice(0, 128))
    truth = flyem_crop[z, :128, :128]
    iso = fill_linear3d(sparse[slab], mask[slab], 2)
    flat_db = psnr(truth, fill_linear(sparse[slab][2], mask[slab][2]))
    assert psnr(truth, iso) > flat_db + 1.0  # even ±2 slices help a lot
    # Far-apart slices (large z_scale) make the neighbours nearly irrelevant: the result approaches 2D linear.
    far = fill_linear3d(sparse[slab], mask[slab], 2, z_scale=50.0)
    assert abs(psnr(truth, far) - flat_db) < 0.5 < abs(psnr(truth, iso) - flat_db)


def test_falls_back_to_linear_without_3d_samples(flyem_crop: np.ndarray, acquisition) -> None:
    sparse, mask = acquisition
    z = 7
    np.testing.assert_array_equal(fill_linear3d(sparse[z : z + 1], mask[z : z + 1], 0), fill_linear(sparse[z], mask[z]))
    # neighbours without any samples: nothing to add
    lonely = np.zeros((3, *mask.shape[1:]), dtype=bool)
    lonely[1] = mask[z]
    values = np.where(lonely, flyem_crop[z - 1 : z + 2], 0).astype(np.float32)
    np.testing.assert_array_equal(fill_linear3d(values, lonely, 1), fill_linear(sparse[z], mask[z]))
    with pytest.raises(ValueError, match="no scanned pixels"):
        fill_linear3d(values, lonely, 0)
