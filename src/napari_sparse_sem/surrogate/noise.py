"""Shot noise for the surrogate's noise-free images, and noise measured the way Dahmen et al. measure it.

The network predicts the expected detector signal; a real acquisition (and a Monte Carlo run) counts electrons. With a
dose of N primary electrons per pixel the BSE and SE counts are Poisson with means N·η and N·δ, so a noisy image is
``Poisson(N·image) / N`` in the image's own units. Dahmen et al. (paper 004, section 2.8) measure the SNR as mean over
standard deviation in homogeneous areas of the image (8.33 in their data) and the noise level as the mean pixel
error there. Here "homogeneous" is where the cut face is flat solid: the surface lies in the cut plane (entry depth 0,
normal along +z) everywhere within ``radius`` pixels. Inside such areas the expected signal varies slowly, so the
residual from a small box mean is noise; its spread is corrected for the box mean's own share of the noise.
"""

from __future__ import annotations

import math

import numpy as np


def homogeneous_mask(heightfield: np.ndarray, radius: int = 4) -> np.ndarray:
    """(y, x) bool: flat solid cut face (entry1 = 0, normal +z) with a flat solid ``radius`` neighbourhood."""
    from scipy import ndimage

    flat = (np.asarray(heightfield[0]) <= 1e-6) & (np.asarray(heightfield[6]) >= 1.0 - 1e-6)
    if radius <= 0:
        return flat
    return ndimage.binary_erosion(flat, structure=np.ones((2 * radius + 1,) * 2, bool), border_value=1)


def _residual(image: np.ndarray, mask: np.ndarray, box: int) -> np.ndarray:
    """Residuals of ``image`` from its ``box``-mean at pixels whose box lies inside ``mask``, noise-corrected."""
    from scipy import ndimage

    image = np.asarray(image, dtype=np.float64)
    inner = ndimage.binary_erosion(mask, structure=np.ones((box, box), bool), border_value=0)
    local = ndimage.uniform_filter(image, size=box, mode="reflect")
    correction = 1.0 / math.sqrt(1.0 - 1.0 / (box * box))
    return (image - local)[inner] * correction


def noise_std(image: np.ndarray, mask: np.ndarray, box: int = 5) -> float:
    """Standard deviation of the noise in the homogeneous pixels ``mask`` (NaN when too few pixels)."""
    residual = _residual(image, mask, box)
    return float(residual.std()) if residual.size >= 16 else float("nan")


def noise_mean_abs(image: np.ndarray, mask: np.ndarray, box: int = 5) -> float:
    """Mean absolute noise in the homogeneous pixels ``mask``: the paper's "influence of the noise" (NaN if too few)."""
    residual = _residual(image, mask, box)
    return float(np.abs(residual).mean()) if residual.size >= 16 else float("nan")


def measure_snr(image: np.ndarray, mask: np.ndarray, box: int = 5) -> float:
    """SNR = mean / noise standard deviation over the homogeneous pixels ``mask`` (NaN when too few)."""
    from scipy import ndimage

    inner = ndimage.binary_erosion(mask, structure=np.ones((box, box), bool), border_value=0)
    if inner.sum() < 16:
        return float("nan")
    return float(np.asarray(image, dtype=np.float64)[inner].mean() / noise_std(image, mask, box))


def dose_for_snr(image: np.ndarray, snr: float, mask: np.ndarray | None = None) -> float:
    """Electrons per pixel that give Poisson noise of ``snr`` in the homogeneous areas (whole image without a mask).

    For a Poisson count of mean N·μ the SNR is √(N·μ), so N = SNR² / μ with μ the mean signal there.
    """
    if snr <= 0:
        raise ValueError(f"the SNR must be positive, got {snr}")
    values = np.asarray(image, dtype=np.float64)
    if mask is not None and mask.any():
        values = values[mask]
    mean = float(values.mean())
    if mean <= 0:
        raise ValueError("the image has no signal in its homogeneous areas; give a dose instead of an SNR")
    return snr * snr / mean


def add_shot_noise(image: np.ndarray, dose: float, seed: int | np.random.Generator | None = 0) -> np.ndarray:
    """``Poisson(dose · image) / dose``: the image as if ``dose`` electrons per pixel had been counted."""
    if dose <= 0:
        raise ValueError(f"the dose (electrons per pixel) must be positive, got {dose}")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    expected = np.clip(np.asarray(image, dtype=np.float64), 0.0, None) * dose
    return (rng.poisson(expected) / dose).astype(np.float32)
