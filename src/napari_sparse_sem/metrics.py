"""Image-quality metrics for reconstructions: PSNR, SSIM (+ maps), error maps, per-slice tables, and the quality of
error estimates (pixel-wise correlation with the true error, sparsification curves and their area).

Everything works on float images in [0, 1] (``data_range=1``). A ``mask`` restricts a metric to some pixels, which is
how the comparison reports quality on the *unscanned* pixels only (the scanned ones are copied, so they flatter every
method). Metrics that have no pixels to measure return NaN; identical images give a PSNR of ``inf`` (writers turn both
into JSON ``null``).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np
from skimage.metrics import structural_similarity

_DEFAULT_WIN = 7  # scikit-image's default SSIM window


def _pair(reference: Any, image: Any) -> tuple[np.ndarray, np.ndarray]:
    ref = np.asarray(reference, dtype=np.float64)
    img = np.asarray(image, dtype=np.float64)
    if ref.shape != img.shape:
        raise ValueError(f"reference and image must have the same shape, got {ref.shape} and {img.shape}")
    return ref, img


def _mask_for(mask: Any, shape: tuple[int, ...]) -> np.ndarray | None:
    if mask is None:
        return None
    m = np.asarray(mask, dtype=bool)
    if m.shape != shape:
        raise ValueError(f"mask must have the image's shape {shape}, got {m.shape}")
    return m


def psnr(reference: Any, image: Any, mask: Any = None, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB, over the pixels where ``mask`` is true (all pixels when ``None``).

    ``inf`` when the images agree exactly, NaN when the mask selects no pixel.
    """
    ref, img = _pair(reference, image)
    m = _mask_for(mask, ref.shape)
    diff = ref - img if m is None else (ref - img)[m]
    if diff.size == 0:
        return float("nan")
    mse = float(np.mean(diff * diff))
    if mse == 0.0:
        return float("inf")
    return float(10.0 * np.log10(data_range * data_range / mse))


def _win_size(shape: tuple[int, ...]) -> int:
    """scikit-image's 7-pixel window, shrunk (odd, >= 3) for tiny images."""
    smallest = min(shape)
    if smallest >= _DEFAULT_WIN:
        return _DEFAULT_WIN
    if smallest < 3:
        raise ValueError(f"SSIM needs images of at least 3x3 pixels, got shape {shape}")
    return smallest if smallest % 2 else smallest - 1


def ssim_map(reference: Any, image: Any, data_range: float = 1.0) -> np.ndarray:
    """The local SSIM of every pixel (scikit-image, 7x7 uniform window), float32 of the image's shape."""
    ref, img = _pair(reference, image)
    _, full = structural_similarity(ref, img, data_range=data_range, full=True, win_size=_win_size(ref.shape))
    return full.astype(np.float32)


def _mean_over(smap: np.ndarray, mask: np.ndarray | None) -> float:
    """Mean of an SSIM map over ``mask``, without the window's border, as scikit-image does (kept if nothing else)."""
    pad = (_win_size(smap.shape) - 1) // 2
    interior = np.zeros(smap.shape, dtype=bool)
    interior[tuple(slice(pad, s - pad) for s in smap.shape)] = True
    weight = interior if mask is None else interior & mask
    if not weight.any():
        weight = np.ones(smap.shape, dtype=bool) if mask is None else mask
    if not weight.any():
        return float("nan")
    return float(np.mean(smap[weight], dtype=np.float64))


def ssim(reference: Any, image: Any, mask: Any = None, data_range: float = 1.0) -> float:
    """Mean structural similarity over ``mask`` (all pixels when ``None``; then equal to scikit-image's value)."""
    ref, img = _pair(reference, image)
    m = _mask_for(mask, ref.shape)
    return _mean_over(ssim_map(ref, img, data_range), m)


def abs_error(reference: Any, image: Any) -> np.ndarray:
    """Per-pixel absolute error ``|image - reference|`` as float32 (what the |error| layers and figures show)."""
    ref, img = _pair(reference, image)
    return np.abs(img - ref).astype(np.float32)


def slice_metrics(reference2d: Any, image2d: Any, scanned2d: Any) -> dict[str, float]:
    """PSNR/SSIM over the whole slice and over its unscanned pixels, plus the mean absolute error.

    Returns ``dict(psnr, ssim, psnr_unscanned, ssim_unscanned, mae)``.
    """
    ref, img = _pair(reference2d, image2d)
    if ref.ndim != 2:
        raise ValueError(f"slice_metrics expects 2D slices, got shape {ref.shape}")
    scanned = _mask_for(scanned2d, ref.shape)
    unscanned = ~scanned
    smap = ssim_map(ref, img)
    return {
        "psnr": psnr(ref, img),
        "ssim": _mean_over(smap, None),
        "psnr_unscanned": psnr(ref, img, unscanned),
        "ssim_unscanned": _mean_over(smap, unscanned),
        "mae": float(np.mean(np.abs(img - ref))),
    }


def volume_metrics(
    reference: Any,
    recon: Any,
    scanned: Any,
    slices: Iterable[int] | None = None,
    *,
    offset: int = 0,
) -> list[dict[str, float]]:
    """Per-slice :func:`slice_metrics` rows of (z, y, x) volumes, each with its ``slice`` index.

    ``slices`` picks z indices of the given arrays (all when ``None``); ``offset`` is added to the reported ``slice``
    so rows can name slices of a larger input volume the arrays were cut from.
    """
    ref = np.asarray(reference)
    rec = np.asarray(recon)
    scn = np.asarray(scanned)
    if ref.shape != rec.shape or ref.shape != scn.shape:
        raise ValueError(
            f"reference, reconstruction and mask must have the same shape, got {ref.shape}, {rec.shape}, {scn.shape}"
        )
    if ref.ndim != 3:
        raise ValueError(f"volume_metrics expects (z, y, x) volumes, got shape {ref.shape}")
    indices = range(ref.shape[0]) if slices is None else list(slices)
    rows = []
    for z in indices:
        if not 0 <= z < ref.shape[0]:
            raise ValueError(f"slice {z} is outside the volume of {ref.shape[0]} slices")
        rows.append({"slice": int(z) + offset, **slice_metrics(ref[z], rec[z], scn[z])})
    return rows


# ------------------------------------------------------------------------------------------- error-estimate quality


def _error_pair(true_error: Any, estimate: Any, mask: Any) -> tuple[np.ndarray, np.ndarray]:
    """Flattened true error and estimate over the pixels where ``mask`` (of *scanned* pixels) is false."""
    err, est = _pair(true_error, estimate)
    m = _mask_for(mask, err.shape)
    if m is None:
        return err.ravel(), est.ravel()
    return err[~m], est[~m]


def error_correlation(true_error: Any, estimate: Any, mask: Any = None) -> float:
    """Pixel-wise Pearson correlation of an error estimate with the true error (Mi et al. 2020, Table 1).

    ``mask`` marks *scanned* pixels, which are left out (their error is known to be 0); NaN when fewer than two pixels
    remain or either map is constant there.
    """
    err, est = _error_pair(true_error, estimate, mask)
    if err.size < 2:
        return float("nan")
    err = err - err.mean()
    est = est - est.mean()
    denom = float(np.sqrt(np.dot(err, err) * np.dot(est, est)))
    if denom == 0.0 or not np.isfinite(denom):
        return float("nan")
    return float(np.dot(err, est) / denom)


def sparsification_curve(true_error: Any, estimate: Any, fractions: Any, mask: Any = None) -> np.ndarray:
    """For each fraction f: the mean true error of the pixels left after removing the fraction f with the highest
    ``estimate`` (Ilg et al., "Uncertainty estimates and multi-hypotheses networks for optical flow", ECCV 2018).

    A good estimate removes the largest errors first, so its curve falls fast; passing the true error as ``estimate``
    gives the best possible (oracle) curve. f = 1 leaves no pixel and gives 0. ``mask`` marks scanned pixels, which are
    left out. Ties in the estimate are broken by pixel order.
    """
    err, est = _error_pair(true_error, estimate, mask)
    f = np.asarray(fractions, dtype=np.float64).ravel()
    if f.size and (not np.all(np.isfinite(f)) or f.min() < 0 or f.max() > 1):
        raise ValueError("fractions must lie in [0, 1]")
    n = err.size
    if n == 0:
        return np.full(f.shape, np.nan)
    order = np.argsort(-est, kind="stable")
    removed = np.concatenate([[0.0], np.cumsum(err[order])])  # error removed with the first k pixels
    k = np.minimum(np.floor(f * n + 0.5).astype(np.int64), n)
    left = n - k
    with np.errstate(invalid="ignore", divide="ignore"):
        curve = np.where(left > 0, (removed[-1] - removed[k]) / np.maximum(left, 1), 0.0)
    return curve


DEFAULT_FRACTIONS = np.linspace(0.0, 1.0, 51)
"""Fractions of the sparsification curves (every 2 %)."""


def sparsification_error_area(true_error: Any, estimate: Any, fractions: Any = None, mask: Any = None) -> float:
    """Area between the sparsification curve of ``estimate`` and the oracle's, both divided by the mean error (their
    common value at f = 0), integrated over the fractions (trapezoids): Ilg et al.'s AUSE. 0 for a perfect ranking,
    lower is better; a random ranking gives about the area under the normalised oracle curve subtracted from 1.
    NaN when there is no error to rank.
    """
    f = DEFAULT_FRACTIONS if fractions is None else np.asarray(fractions, dtype=np.float64).ravel()
    if f.size < 2 or np.any(np.diff(f) <= 0):
        raise ValueError("fractions must hold at least two increasing values")
    curve = sparsification_curve(true_error, estimate, f, mask)
    oracle = sparsification_curve(true_error, true_error, f, mask)
    err, _ = _error_pair(true_error, estimate, mask)
    scale = float(err.mean()) if err.size else 0.0
    if not scale > 0:
        return float("nan")
    gap = (curve - oracle) / scale
    return float(np.sum(0.5 * (gap[1:] + gap[:-1]) * np.diff(f)))
