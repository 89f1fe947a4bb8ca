"""Surrogate against Monte Carlo, in the format of Dahmen et al.'s Tables 3 and 4 (paper 004, section 2.8).

Per signal (BSE, SE) and geometry class (held-out cubes; spheres and cylinders from geometries never trained on):
the mean pixel error in percent of the data range (the Monte Carlo images' min–max over the evaluation set, the
paper's "(0, 100)" scaling), the systematic part (total minus the mean noise of the Monte Carlo reference, measured in
homogeneous flat-solid areas: :mod:`~napari_sparse_sem.surrogate.noise`), SSIM and PSNR on that range, and the time
per slice of the surrogate and of the Monte Carlo on this machine.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_sparse_sem.runtime import Job, Progress
from napari_sparse_sem.surrogate.model import SIGNALS, Surrogate

GEOMETRY_CLASSES = ("cubes", "spheres", "cylinders")


def geometry_class(preset: str) -> str:
    """``cubes``, ``spheres`` or ``cylinders`` from a Table 1 preset name."""
    head = preset.split("-")[0]
    return head if head in GEOMETRY_CLASSES else "other"


def image_metrics(prediction: np.ndarray, reference: np.ndarray, data_range: float, noise: float) -> dict[str, float]:
    """Mean error and systematic error (% of ``data_range``), SSIM and PSNR of one image against its reference."""
    from skimage.metrics import structural_similarity

    diff = prediction.astype(np.float64) - reference.astype(np.float64)
    mean_error = 100.0 * float(np.abs(diff).mean()) / data_range
    mse = float((diff * diff).mean())
    ssim = float(structural_similarity(reference, prediction, data_range=data_range))
    psnr = 10.0 * np.log10(data_range**2 / max(mse, 1e-30))
    return {"mean_error_pct": mean_error, "noise_pct": noise, "ssim": ssim, "psnr": float(psnr)}


def _mc_seconds(attrs: dict[str, Any], index: int, rows: int) -> float:
    """Monte Carlo seconds for sample ``index`` on this machine: ``rows`` rows traced, scaled to the whole image."""
    from napari_sparse_sem.runtime import run_job
    from napari_sparse_sem.surrogate.dataset import DatasetSpec
    from napari_sparse_sem.surrogate.geometry import GeometrySpec, generate
    from napari_sparse_sem.surrogate.montecarlo import simulate_slice

    spec = attrs["spec"]
    sample = attrs["samples"][index]
    dataset_spec = DatasetSpec.from_dict(spec)
    mc = dataset_spec.mc
    primitives = generate(GeometrySpec.from_dict(sample["geometry"]))
    m, s = dataset_spec.margin, dataset_spec.size
    rows = max(1, min(rows, s))
    config = replace(mc, seed=mc.seed * 100_003 + index)
    started = time.perf_counter()
    run_job(simulate_slice(primitives, sample["z0"], config, region=(m, m + rows, m, m + s)))
    return (time.perf_counter() - started) * s / rows


def evaluate_job(surrogate: Surrogate, dataset: str | Path, mc_rows: int = 8) -> Job[dict[str, Any]]:
    """Records per (signal, geometry class) plus per-sample details for the dataset's finished samples.

    ``mc_rows`` > 0 times the Monte Carlo here on that many rows of one sample per geometry class and scales to the
    whole slice (0 skips it and uses the times the dataset recorded, which may come from another machine).
    """
    from napari_sparse_sem.surrogate.noise import homogeneous_mask, noise_mean_abs
    from napari_sparse_sem.surrogate.training import read_dataset

    data = read_dataset(dataset)
    attrs = data.attrs
    done = data.store_index
    total = len(done) + (len(GEOMETRY_CLASSES) if mc_rows > 0 else 0)
    predictions, references, masks, per_sample = {}, {}, {}, []
    for step, index in enumerate(done):
        heightfield = data.heightfields[step]
        t0 = time.perf_counter()
        predictions[index] = surrogate.predict(heightfield)
        seconds = time.perf_counter() - t0
        references[index] = data.targets[step]
        masks[index] = homogeneous_mask(heightfield)
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
                mc_here[name] = _mc_seconds(attrs, first, mc_rows)
            yield Progress(len(done) + k + 1, total, f"timing the Monte Carlo on {name}")
    data_range = {
        s: float(max(np.ptp(np.stack([references[i][k] for i in done])), 1e-12)) for k, s in enumerate(SIGNALS)
    }
    for entry in per_sample:
        i = entry["index"]
        for k, signal in enumerate(SIGNALS):
            noise = 100.0 * noise_mean_abs(references[i][k], masks[i]) / data_range[signal]
            entry[signal] = image_metrics(predictions[i][k], references[i][k], data_range[signal], noise)
    records = []
    for signal in SIGNALS:
        for name in GEOMETRY_CLASSES:
            group = [p for p in per_sample if p["geometry"] == name]
            if not group:
                continue
            metrics = {key: float(np.nanmean([p[signal][key] for p in group])) for key in group[0][signal]}
            seconds_mc = mc_here.get(name, float(np.nanmean([p["seconds_mc_recorded"] for p in group])))
            seconds_surrogate = float(np.median([p["seconds_surrogate"] for p in group]))
            records.append(
                {
                    "signal": signal,
                    "geometry": name,
                    "samples": len(group),
                    "mean_error_pct": metrics["mean_error_pct"],
                    "systematic_error_pct": metrics["mean_error_pct"] - metrics["noise_pct"],
                    "noise_pct": metrics["noise_pct"],
                    "ssim": metrics["ssim"],
                    "psnr": metrics["psnr"],
                    "seconds_surrogate": seconds_surrogate,
                    "seconds_mc": seconds_mc,
                    "speedup": seconds_mc / seconds_surrogate if seconds_surrogate > 0 else float("nan"),
                }
            )
    return {
        "records": records,
        "samples": per_sample,
        "data_range": data_range,
        "electrons_per_pixel": attrs.get("electrons_per_pixel"),
        "image_size": int(data.heightfields.shape[-1]),
        "device": str(surrogate.device),
        "mc_seconds_measured_here": bool(mc_here),
    }
