"""Surrogate against Monte Carlo, in the format of Dahmen et al.'s Tables 3 and 4 (paper 004, section 2.9).

Per signal (BSE, SE) and geometry class (held-out cubes; spheres and cylinders from geometries never trained on):
the mean pixel error in percent of the data range (the Monte Carlo images' min–max over the evaluation set, the
paper's "(0, 100)" scaling), SSIM and PSNR on that range, the time per slice of the surrogate and of the Monte Carlo.

The Monte Carlo reference is itself noisy, so the error splits into the network's systematic error s and the
reference's shot noise n (independent of the prediction): E[(p − r)²] = s² + σ². Per pixel, σ² comes from the
reference's own electrons (:func:`reference_noise`): the spread of independent replicas when the store has them
(``make-dataset --replicas 2``; any signal, no model), else the binomial variance r(1 − r)/(N − 1) of a BSE pixel
of N primaries (each one backscatters or not), else — SE without replicas — the noise measured in flat solid areas
(:mod:`~napari_sparse_sem.surrogate.noise`). Reported per record:

- ``mean_error_pct`` (total) — mean |p − r|, the paper's "total" against this reference;
- ``noise_pct`` — the reference's expected mean |n| (the paper's "influence of the noise"), ``noise_rms_pct`` its σ;
- ``systematic_error_pct`` — total − noise, the paper's definition; a *lower* bound of the systematic error that
  hides a small s under a larger σ (E|s + n| − E|n| ≈ s²/(2σ)·√(2/π) for s ≪ σ);
- ``systematic_rms_pct`` — √(mean((p − r)² − σ²)), the noise subtracted in quadrature: unbiased in s², an upper bound
  of the mean |s|, with ``systematic_rms_upper_pct`` (mean + 2 standard errors under the root) and
  ``psnr_noise_free`` (the PSNR against the noise-free truth it implies).
"""

from __future__ import annotations

import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_sparse_sem.runtime import Job, Progress
from napari_sparse_sem.surrogate.model import SIGNALS, Surrogate

GEOMETRY_CLASSES = ("cubes", "spheres", "cylinders")
MEAN_ABS_PER_SIGMA = math.sqrt(2.0 / math.pi)
"""E|n| / σ for Gaussian noise (a count of thousands of electrons is Gaussian to within a few percent)."""


def geometry_class(preset: str) -> str:
    """``cubes``, ``spheres`` or ``cylinders`` from a Table 1 preset name."""
    head = preset.split("-")[0]
    return head if head in GEOMETRY_CLASSES else "other"


def _c4(k: int) -> float:
    """E[sample standard deviation] / σ for ``k`` Gaussian values."""
    return math.sqrt(2.0 / (k - 1)) * math.exp(math.lgamma(k / 2.0) - math.lgamma((k - 1) / 2.0))


def reference_noise(
    reference: np.ndarray, signal: str, electrons_per_pixel: int | None, replicas: np.ndarray | None = None
) -> tuple[np.ndarray | None, np.ndarray | None, str]:
    """Per-pixel (variance, expected |noise|) of a Monte Carlo reference, and their source.

    ``replicas`` (k, y, x), k ≥ 2 independent runs whose mean is ``reference``: the sample variance over k (unbiased
    for the mean's variance) and √(2/π)·sd/(c4(k)·√k) (unbiased for E|n| of Gaussian noise). Otherwise a BSE image of
    ``electrons_per_pixel`` primaries: r(1 − r)/(N − 1), unbiased for the binomial variance. Otherwise (None, None).
    """
    if replicas is not None and replicas.shape[0] >= 2:
        k = replicas.shape[0]
        sd = np.asarray(replicas, dtype=np.float64).std(axis=0, ddof=1)
        return sd**2 / k, MEAN_ABS_PER_SIGMA * sd / (_c4(k) * math.sqrt(k)), "replicas"
    if signal == "bse" and electrons_per_pixel is not None and electrons_per_pixel > 1:
        r = np.clip(np.asarray(reference, dtype=np.float64), 0.0, 1.0)
        variance = r * (1.0 - r) / (electrons_per_pixel - 1)
        return variance, MEAN_ABS_PER_SIGMA * np.sqrt(variance), "binomial"
    return None, None, "flat areas"


def separated_errors(
    prediction: np.ndarray,
    reference: np.ndarray,
    data_range: float,
    variance: np.ndarray | float | None,
    noise_abs: np.ndarray | float | None,
) -> dict[str, float]:
    """Total, noise and systematic error of one image in % of ``data_range`` (see the module docstring).

    ``variance`` and ``noise_abs`` are the reference's noise per pixel (or one value for all); None gives NaN noise
    and systematic figures. Also returns the sums that pool the systematic error over images: ``excess_sum``
    (Σ of (p − r)² − σ² in %²), ``excess_sq_sum`` and ``pixels``.
    """
    unit = 100.0 / data_range
    diff = (np.asarray(prediction, dtype=np.float64) - np.asarray(reference, dtype=np.float64)) * unit
    total = float(np.abs(diff).mean())
    out = {"mean_error_pct": total, "pixels": float(diff.size)}
    if variance is None or noise_abs is None:
        nan = float("nan")
        return out | dict.fromkeys(
            ("noise_pct", "noise_rms_pct", "systematic_error_pct", "systematic_rms_pct", "excess_sum", "excess_sq_sum"),
            nan,
        )
    excess = diff * diff - np.broadcast_to(np.asarray(variance, dtype=np.float64) * unit * unit, diff.shape)
    noise = float(np.mean(noise_abs)) * unit
    out |= {
        "noise_pct": noise,
        "noise_rms_pct": math.sqrt(float(np.mean(variance))) * unit,
        "systematic_error_pct": total - noise,
        "systematic_rms_pct": math.sqrt(max(float(excess.mean()), 0.0)),
        "excess_sum": float(excess.sum()),
        "excess_sq_sum": float((excess * excess).sum()),
    }
    return out


def pooled_systematic(entries: list[dict[str, float]]) -> dict[str, float]:
    """The systematic RMS error of several images together (pixels pooled), its upper bound and the PSNR it implies.

    ``entries`` are :func:`separated_errors` results. The upper bound adds two standard errors of the mean excess
    under the root (the excess of each pixel is an independent, unbiased estimate of its s²).
    """
    usable = [e for e in entries if np.isfinite(e.get("excess_sum", np.nan))]
    if not usable:
        return {
            "systematic_rms_pct": float("nan"),
            "systematic_rms_upper_pct": float("nan"),
            "psnr_noise_free": float("nan"),
        }
    pixels = sum(e["pixels"] for e in usable)
    mean = sum(e["excess_sum"] for e in usable) / pixels
    spread = max(sum(e["excess_sq_sum"] for e in usable) / pixels - mean * mean, 0.0)
    stderr = math.sqrt(spread / pixels)
    ms = max(mean, 0.0)
    return {
        "systematic_rms_pct": math.sqrt(ms),
        "systematic_rms_upper_pct": math.sqrt(max(mean + 2.0 * stderr, 0.0)),
        "psnr_noise_free": 10.0 * math.log10(100.0**2 / ms) if ms > 0 else float("inf"),
    }


def image_metrics(
    prediction: np.ndarray,
    reference: np.ndarray,
    data_range: float,
    variance: np.ndarray | float | None,
    noise_abs: np.ndarray | float | None,
) -> dict[str, float]:
    """:func:`separated_errors` of one image plus its SSIM and PSNR against the (noisy) reference."""
    from skimage.metrics import structural_similarity

    out = separated_errors(prediction, reference, data_range, variance, noise_abs)
    diff = prediction.astype(np.float64) - reference.astype(np.float64)
    mse = float((diff * diff).mean())
    out["ssim"] = float(structural_similarity(reference, prediction, data_range=data_range))
    out["psnr"] = float(10.0 * np.log10(data_range**2 / max(mse, 1e-30)))
    return out


def teacher_seconds(attrs: dict[str, Any], index: int, rows: int, electrons: int, device: str | None) -> float:
    """Monte Carlo seconds for sample ``index`` here at ``electrons`` per pixel: ``rows`` rows, scaled to the image."""
    from napari_sparse_sem.runtime import run_job
    from napari_sparse_sem.surrogate.dataset import DatasetSpec, teacher_config
    from napari_sparse_sem.surrogate.geometry import GeometrySpec, generate
    from napari_sparse_sem.surrogate.montecarlo import simulate_slice

    dataset_spec = DatasetSpec.from_dict(attrs["spec"])
    sample = attrs["samples"][index]
    mc = dataset_spec.mc if device is None else teacher_config(dataset_spec.mc, device)
    primitives = generate(GeometrySpec.from_dict(sample["geometry"]))
    m, s = dataset_spec.margin, dataset_spec.size
    rows = max(1, min(rows, s))
    config = replace(mc, seed=mc.seed * 100_003 + index, electrons_per_pixel=electrons)
    run_job(simulate_slice(primitives, sample["z0"], config, region=(m, m + 1, m, m + 1)))  # compile, move to GPU
    started = time.perf_counter()
    run_job(simulate_slice(primitives, sample["z0"], config, region=(m, m + rows, m, m + s)))
    return (time.perf_counter() - started) * s / rows


def evaluate_job(
    surrogate: Surrogate,
    dataset: str | Path,
    mc_rows: int = 8,
    mc_electrons: int = 1000,
    mc_device: str | None = "cpu",
) -> Job[dict[str, Any]]:
    """Records per (signal, geometry class) plus per-sample details for the dataset's finished samples.

    ``mc_rows`` > 0 times the Monte Carlo here (on ``mc_device``; None: the dataset's own setting) on that many rows
    of one sample per geometry class at ``mc_electrons`` per pixel (the paper's 1 000) and scales to the whole slice;
    0 uses the times the dataset recorded, scaled to ``mc_electrons`` (they may come from another machine).
    """
    from napari_sparse_sem.surrogate.dataset import read_replicas
    from napari_sparse_sem.surrogate.noise import homogeneous_mask, noise_mean_abs, noise_std
    from napari_sparse_sem.surrogate.training import read_dataset

    data = read_dataset(dataset)
    attrs = data.attrs
    electrons = attrs.get("electrons_per_pixel")
    replicas = read_replicas(dataset, data.store_index)
    done = data.store_index
    total = len(done) + (len(GEOMETRY_CLASSES) if mc_rows > 0 else 0)
    predictions, per_sample = {}, []
    for step, index in enumerate(done):
        t0 = time.perf_counter()
        predictions[index] = surrogate.predict(data.heightfields[step])
        seconds = time.perf_counter() - t0
        per_sample.append(
            {
                "index": int(index),
                "preset": data.preset[step],
                "geometry": geometry_class(data.preset[step]),
                "seconds_surrogate": seconds,
                "seconds_mc_recorded": float(data.seconds[step]),
            }
        )
        yield Progress(step + 1, total, f"surrogate on sample {step + 1}/{len(done)}")
    mc_here: dict[str, float] = {}
    if mc_rows > 0:
        for k, name in enumerate(GEOMETRY_CLASSES):
            first = next((p["index"] for p in per_sample if p["geometry"] == name), None)
            if first is not None:
                mc_here[name] = teacher_seconds(attrs, first, mc_rows, mc_electrons, mc_device)
            yield Progress(len(done) + k + 1, total, f"timing the Monte Carlo on {name}")
    data_range = {s: float(max(np.ptp(data.targets[:, k]), 1e-12)) for k, s in enumerate(SIGNALS)}
    sources: dict[str, set[str]] = {s: set() for s in SIGNALS}
    for step, entry in enumerate(per_sample):
        for k, signal in enumerate(SIGNALS):
            reference = data.targets[step, k]
            runs = None if replicas is None else replicas[signal][step]
            variance, noise_abs, source = reference_noise(reference, signal, electrons, runs)
            if variance is None:  # SE without replicas: the noise of flat solid areas, the same for every pixel
                mask = homogeneous_mask(data.heightfields[step])
                variance, noise_abs = noise_std(reference, mask) ** 2, noise_mean_abs(reference, mask)
                variance, noise_abs = (None, None) if not np.isfinite(variance) else (variance, noise_abs)
            sources[signal].add(source)
            entry[signal] = image_metrics(
                predictions[done[step]][k], reference, data_range[signal], variance, noise_abs
            )
    scale = mc_electrons / electrons if electrons else float("nan")
    records = [
        _record(signal, name, group, mc_here.get(name), scale, sorted(sources[signal]))
        for signal in SIGNALS
        for name in GEOMETRY_CLASSES
        if (group := [p for p in per_sample if p["geometry"] == name])
    ]
    return {
        "records": records,
        "samples": per_sample,
        "data_range": data_range,
        "electrons_per_pixel": electrons,
        "replicas": int(attrs.get("replicas", 1)),
        "mc_timing_electrons": mc_electrons,
        "image_size": int(data.heightfields.shape[-1]),
        "device": str(surrogate.device),
        "mc_seconds_measured_here": bool(mc_here),
    }


def _record(
    signal: str, name: str, group: list[dict], mc_here: float | None, scale: float, sources: list[str]
) -> dict[str, Any]:
    """One (signal, geometry class) row: means over its samples, the systematic RMS pooled over their pixels."""
    keys = ("mean_error_pct", "noise_pct", "noise_rms_pct", "ssim", "psnr")
    metrics = {key: float(np.nanmean([p[signal][key] for p in group])) for key in keys}
    seconds_mc = (
        mc_here if mc_here is not None else float(np.nanmean([p["seconds_mc_recorded"] for p in group])) * scale
    )
    seconds_surrogate = float(np.median([p["seconds_surrogate"] for p in group]))
    return {
        "signal": signal,
        "geometry": name,
        "samples": len(group),
        **{k: metrics[k] for k in ("mean_error_pct", "noise_pct", "noise_rms_pct")},
        "systematic_error_pct": metrics["mean_error_pct"] - metrics["noise_pct"],
        **pooled_systematic([p[signal] for p in group]),
        "noise_source": "+".join(sources),
        "ssim": metrics["ssim"],
        "psnr": metrics["psnr"],
        "seconds_surrogate": seconds_surrogate,
        "seconds_mc": seconds_mc,
        "speedup": seconds_mc / seconds_surrogate if seconds_surrogate > 0 else float("nan"),
    }
