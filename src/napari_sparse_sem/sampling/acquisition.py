"""Simulated sparse acquisition: keep the scanned pixels of a dense image stack, optionally with electron shot noise.

Shot noise: a pixel of true brightness ``v`` in [0, 1] scanned with a dose of ``D`` electrons (at full brightness)
detects ``Poisson(D·v)`` electrons; the measured value is that count divided by ``D`` (clipped to [0, 1]), so its
signal-to-noise ratio is ``sqrt(D·v)``. A sparse scan at coverage ``c`` done in the time of a dense scan can dwell
``1/c`` times longer on each pixel (:func:`equal_time_dose`), the trade-off studied by Trampert et al. (2018).
"""

from __future__ import annotations

import numpy as np

from .spec import AcquisitionSpec

__all__ = ["add_shot_noise", "equal_time_dose", "simulate_acquisition"]


def _check_dose(dose: float) -> float:
    if dose is None or not np.isfinite(dose) or dose <= 0:
        raise ValueError(f"dose must be a positive number of electrons per pixel, got {dose}")
    return float(dose)


def _check_unit_range(values: np.ndarray, what: str) -> None:
    if values.size == 0:
        return
    if values.dtype.kind == "f" and np.isnan(values).any():
        raise ValueError(f"{what} contains NaN values; replace them (e.g. with 0) before simulating a scan")
    lo, hi = float(values.min()), float(values.max())
    if lo < 0 or hi > 1:
        raise ValueError(
            f"{what} values must lie in [0, 1], found [{lo:g}, {hi:g}]; "
            "convert the volume first (napari_sparse_sem.io.volume.to_float01)"
        )


def add_shot_noise(image: np.ndarray, dose: float, rng: np.random.Generator | None = None) -> np.ndarray:
    """Poisson shot noise at ``dose`` electrons per pixel: ``Poisson(dose·image)/dose`` clipped to [0, 1], float32.

    ``image`` holds brightness values in [0, 1]; a new array is returned. ``rng`` defaults to fresh entropy.
    """
    dose = _check_dose(dose)
    values = np.asarray(image, dtype=np.float64)
    _check_unit_range(values, "image")
    rng = np.random.default_rng() if rng is None else rng
    noisy = rng.poisson(values * dose) / dose
    return np.clip(noisy, 0.0, 1.0).astype(np.float32)


def equal_time_dose(dense_dose: float, coverage: float) -> float:
    """Dose per pixel of a sparse scan at ``coverage`` that takes as long as a dense scan at ``dense_dose``.

    The same total time spread over a fraction ``c`` of the pixels gives each ``dense_dose / c`` electrons (beam
    jumps and settling are ignored here; see :func:`.path.estimate_time` for their cost).
    """
    dense_dose = _check_dose(dense_dose)
    if coverage is None or not np.isfinite(coverage) or not 0 < coverage <= 1:
        raise ValueError(f"coverage must be in (0, 1] (a fraction of pixels), got {coverage}")
    return dense_dose / float(coverage)


def _as_bool_mask(mask: np.ndarray) -> np.ndarray:
    m = np.asarray(mask)
    if m.dtype == bool:
        return m
    if m.dtype.kind not in "iuf":
        raise ValueError(f"mask must be boolean (True = scanned pixel), got dtype {m.dtype}")
    if not np.isin(m, (0, 1)).all():
        raise ValueError("mask must be boolean-like: only True/False or 0/1 values (True = scanned pixel)")
    return m.astype(bool)


def slice_noise_rng(seed: int | None, z: int) -> np.random.Generator:
    """The shot-noise generator of slice ``z``: ``default_rng([seed, z])`` (fresh entropy when ``seed`` is None)."""
    return np.random.default_rng() if seed is None else np.random.default_rng([seed, z])


def simulate_acquisition(
    dense: np.ndarray, mask: np.ndarray, spec: AcquisitionSpec | None = None, first_slice: int = 0
) -> np.ndarray:
    """The sparse scan of ``dense``: a float32 copy with unscanned pixels set to 0.

    ``dense`` is a ``(z, y, x)`` volume or a ``(y, x)`` image with values in [0, 1]; ``mask`` has the same shape
    (a single ``(y, x)`` mask also serves every slice of a volume). With ``spec.dose`` set, each scanned pixel gets
    shot noise (:func:`add_shot_noise`); slice ``z`` draws it from :func:`slice_noise_rng` with index
    ``first_slice + z``, so a volume simulated slice by slice (streaming) equals one simulated at once.
    Inputs are not modified.
    """
    values = np.asarray(dense)
    if values.ndim not in (2, 3):
        raise ValueError(f"dense must be a (z, y, x) volume or a (y, x) image, got shape {values.shape}")
    if values.dtype.kind not in "iuf" and values.dtype != bool:
        raise ValueError(f"dense must hold numbers in [0, 1], got dtype {values.dtype}")
    m = _as_bool_mask(mask)
    if m.shape != values.shape and not (values.ndim == 3 and m.shape == values.shape[1:]):
        raise ValueError(
            f"mask shape {m.shape} does not match the image shape {values.shape}; "
            "make the mask with the image's shape (or one (y, x) mask for all slices)"
        )
    m = np.broadcast_to(m, values.shape)
    _check_unit_range(values, "dense")
    slices_m = m.reshape((-1, *values.shape[-2:]))
    empty = np.flatnonzero(~slices_m.any(axis=(1, 2)))
    if empty.size:
        where = f"slice {int(empty[0])}" if values.ndim == 3 else "the image"
        raise ValueError(f"{where} has no scanned pixel; every slice of the mask needs at least one True pixel")
    out = np.zeros(values.shape, dtype=np.float32)
    if spec is None or spec.dose is None:
        out[m] = values[m]
        return out
    for z, (plane, plane_mask, plane_out) in enumerate(
        zip(values.reshape(slices_m.shape), slices_m, out.reshape(slices_m.shape), strict=True)
    ):
        noise_rng = slice_noise_rng(spec.seed, first_slice + z)
        plane_out[plane_mask] = add_shot_noise(plane[plane_mask], spec.dose, noise_rng)
    return out
