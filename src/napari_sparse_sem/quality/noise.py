"""A noise estimate of the data and the PSNR ceiling it implies.

PSNR against a noisy dense reference mostly measures smoothing once a method is good: a perfect, noise-free
reconstruction scored against a reference with Gaussian noise σ (in the [0, 1] range) reaches only
``10·log10(1/σ²)`` dB. :func:`estimate_noise` measures σ of a dense (z, y, x) or (y, x) image from the response to
Immerkær's 3×3 Laplacian-difference mask (which cancels smooth structure; the robust MAD spread, so edges count little;
median over slices); :func:`estimate_noise_sparse` does it for a sparse scan
from pairs of horizontally adjacent scanned pixels (lines, spirals, dense rasters have them), else says it is unknown.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["NoiseEstimate", "estimate_noise", "estimate_noise_sparse", "psnr_ceiling"]

_MIN_PAIRS = 500  # adjacent scanned pairs a sparse estimate needs


@dataclass
class NoiseEstimate:
    """``sigma`` (noise standard deviation in the [0, 1] range; NaN when unknown), the ``ceiling`` it implies (dB) and
    how it was measured (``how``)."""

    sigma: float
    how: str

    @property
    def ceiling(self) -> float:
        return psnr_ceiling(self.sigma)

    def to_dict(self) -> dict[str, Any]:
        return {"noise_sigma": self.sigma, "psnr_ceiling": self.ceiling, "noise_how": self.how}


def psnr_ceiling(sigma: float) -> float:
    """The best PSNR (dB) any noise-free reconstruction can score against a reference with noise ``sigma`` (NaN when
    unknown, inf for no noise)."""
    if sigma is None or not np.isfinite(sigma):
        return float("nan")
    if sigma <= 0:
        return float("inf")
    return float(-20.0 * np.log10(sigma))


def _slices(image: Any, max_slices: int) -> list[np.ndarray]:
    arr = image if hasattr(image, "shape") else np.asarray(image)
    if len(arr.shape) == 2:
        return [np.asarray(arr, dtype=np.float64)]
    n = int(arr.shape[0])
    picks = np.unique(np.round(np.linspace(0, n - 1, min(n, max_slices))).astype(int))
    return [np.asarray(arr[int(z)], dtype=np.float64) for z in picks]


_KERNEL = np.array([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]])  # Immerkær 1996; sum of squares 36


def _mad_sigma(response: np.ndarray, norm: float) -> float:
    return float(np.median(np.abs(response - np.median(response)))) * 1.4826 / norm


def estimate_noise(image: Any, max_slices: int = 8) -> NoiseEstimate:
    """σ of a dense image or stack in [0, 1] (Laplacian-difference mask, robust spread; median over up to
    ``max_slices`` evenly spaced slices)."""
    from scipy.signal import convolve2d

    sigmas = [
        _mad_sigma(convolve2d(s, _KERNEL, mode="valid"), 6.0) for s in _slices(image, max_slices) if min(s.shape) >= 8
    ]
    if not sigmas:
        return NoiseEstimate(float("nan"), "image too small")
    return NoiseEstimate(float(np.median(sigmas)), "Laplacian-difference mask on the dense image")


def estimate_noise_sparse(sparse: Any, mask: Any, max_slices: int = 8) -> NoiseEstimate:
    """σ of a sparse scan from its scanned pixels: where enough horizontally adjacent scanned pairs exist, the
    robust (MAD) spread of the second differences of scanned runs of three pixels, which cancels a smooth image;
    else unknown (NaN)."""
    values = _slices(sparse, max_slices)
    known = [np.asarray(m, dtype=bool) for m in _slices(mask, max_slices)]
    diffs = []
    for v, k in zip(values, known, strict=True):
        run = k[:, :-2] & k[:, 1:-1] & k[:, 2:]
        d2 = (v[:, :-2] - 2 * v[:, 1:-1] + v[:, 2:])[run]
        diffs.append(d2)
    d2 = np.concatenate(diffs) if diffs else np.zeros(0)
    if d2.size < _MIN_PAIRS:
        return NoiseEstimate(float("nan"), "unknown: too few runs of adjacent scanned pixels")
    # the second difference of white noise has variance 6 σ²
    return NoiseEstimate(_mad_sigma(d2, np.sqrt(6.0)), f"second differences of {d2.size} scanned runs of 3 pixels")
