"""Partial-scan GAN evaluation on held-out FlyEM slices (the shipped weights saw slices 0-199 only).

For every pattern × coverage and slice, the scan is simulated (noiseless, the same seeded masks as ``compare``) and
reconstructed by each method; scores are means over slices:

* PSNR, SSIM, and the RMS error in % of the data range (Ede's unit), against the unblurred ground truth;
* the same RMS error with reconstruction and ground truth both blurred by a Gaussian of σ = 2.5 px — Ede trained on
  and scored against blurred micrographs, so this column is the one to set beside his 3.8 % (1/17.9) and 6.2 % (1/87);
* seconds per slice (wall time of the method, this machine);
* realism: the radially averaged power spectrum of each output against the ground truth's, as the mean |log10 ratio|
  over the upper half of the frequencies (0 = the same texture; MSE-trained outputs lose power there, i.e. look
  smooth).

``dip`` is slow on a CPU: it runs on every ``--dip-every``-th slice only (its row says on how many).

Run: .venv/bin/python -m benchmarks.gan --slices 200:250 --patterns spiral,grid,random --coverages 0.05,0.02
     [--methods linear,harmonic,biharmonic,gan-mse,gan,dip --dip-every 10] [--weights FILE] [--speed]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
from scipy import ndimage

from benchmarks._common import FLYEM, machine, markdown_table, today
from napari_sparse_sem.io import read_volume
from napari_sparse_sem.io.volume import to_float01
from napari_sparse_sem.metrics import psnr, ssim
from napari_sparse_sem.recon.base import create
from napari_sparse_sem.recon.gan import GAN_METHODS
from napari_sparse_sem.sampling.patterns import slice_mask
from napari_sparse_sem.sampling.spec import MaskSpec

BLUR_SIGMA = 2.5
CONTEXT_MARGIN = 5
"""Slices read beyond the evaluated ones on each side, as neighbours for 3D methods (linear3d's default context)."""


def radial_power(image: np.ndarray) -> np.ndarray:
    """Radially averaged power spectrum (mean-free image, Hann window), one value per integer frequency radius."""
    window = np.outer(np.hanning(image.shape[0]), np.hanning(image.shape[1]))
    spectrum = np.abs(np.fft.fftshift(np.fft.fft2((image - image.mean()) * window))) ** 2
    cy, cx = image.shape[0] // 2, image.shape[1] // 2
    yy, xx = np.indices(image.shape)
    radius = np.hypot(yy - cy, xx - cx).astype(int)
    limit = min(cy, cx)
    sums = np.bincount(radius.ravel(), spectrum.ravel(), minlength=limit + 1)[: limit + 1]
    counts = np.bincount(radius.ravel(), minlength=limit + 1)[: limit + 1]
    return sums[1:] / np.maximum(counts[1:], 1)


def spectrum_distance(reference: np.ndarray, image: np.ndarray) -> float:
    """Mean |log10(P_image / P_reference)| over the upper half of the frequencies (the texture scale)."""
    ref, img = radial_power(reference), radial_power(image)
    upper = slice(len(ref) // 2, None)
    return float(np.mean(np.abs(np.log10(np.maximum(img[upper], 1e-12) / np.maximum(ref[upper], 1e-12)))))


def spectrum_ratio(reference: np.ndarray, image: np.ndarray) -> float:
    """Mean log10(P_image / P_reference) over the upper half of the frequencies (< 0: too smooth)."""
    ref, img = radial_power(reference), radial_power(image)
    upper = slice(len(ref) // 2, None)
    return float(np.mean(np.log10(np.maximum(img[upper], 1e-12) / np.maximum(ref[upper], 1e-12))))


def rms_percent(reference: np.ndarray, image: np.ndarray) -> float:
    """RMS error in % of the data range (the images are in [0, 1])."""
    return float(100.0 * np.sqrt(np.mean((reference.astype(np.float64) - image) ** 2)))


def evaluate(
    volume: np.ndarray,
    first: int,
    slices: range,
    patterns: list[str],
    coverages: list[float],
    methods: list[str],
    options: dict[str, dict[str, object]],
    dip_every: int,
) -> list[dict[str, object]]:
    """One row per pattern × coverage × method: means over ``slices`` (``volume[i]`` is source slice first + i; slices
    around the evaluated ones serve as context for 3D methods, each with its own mask, as in ``compare``)."""
    reconstructors = {name: create(name, **options.get(name, {})) for name in methods}
    rows = []
    try:
        for pattern in patterns:
            for coverage in coverages:
                spec = MaskSpec(pattern, coverage, seed=0)
                masks = np.stack([slice_mask(plane.shape, spec, first + i).mask for i, plane in enumerate(volume)])
                sparse_volume = np.where(masks, volume, 0.0).astype(np.float32)
                values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
                for n, z in enumerate(slices):
                    i = z - first
                    reference, mask = volume[i], masks[i]
                    blurred_ref = ndimage.gaussian_filter(reference, BLUR_SIGMA)
                    for name, reconstructor in reconstructors.items():
                        if name.startswith("dip") and n % dip_every:
                            continue
                        k = int(reconstructor.context)
                        a, b = max(0, i - k), min(len(volume), i + k + 1)
                        t0 = time.perf_counter()
                        image = reconstructor.reconstruct_slice(sparse_volume[a:b], masks[a:b], i - a)
                        v = values[name]
                        v["seconds"].append(time.perf_counter() - t0)
                        v["psnr"].append(psnr(reference, image))
                        v["ssim"].append(ssim(reference, image))
                        v["rms"].append(rms_percent(reference, image))
                        v["rms_blurred"].append(rms_percent(blurred_ref, ndimage.gaussian_filter(image, BLUR_SIGMA)))
                        v["spectrum"].append(spectrum_distance(reference, image))
                        v["spectrum_ratio"].append(spectrum_ratio(reference, image))
                        v["coverage"].append(float(mask.mean()))
                    print(f"\r{pattern} {coverage:g} slice {z}", end="", file=sys.stderr)
                for name, v in values.items():
                    rows.append(
                        {
                            "pattern": pattern,
                            "coverage": coverage,
                            "achieved": float(np.mean(v["coverage"])),
                            "method": name,
                            "slices": len(v["psnr"]),
                            **{key: float(np.mean(v[key])) for key in v if key != "coverage"},
                        }
                    )
    finally:
        for reconstructor in reconstructors.values():
            reconstructor.close()
    print(file=sys.stderr)
    return rows


def inference_speed(weights: str | None, size: int = 512, repeats: int = 5) -> dict[str, float]:
    """Seconds to reconstruct one ``size``² slice with gan-mse (median of ``repeats``), whole-slice and end to end."""
    rng = np.random.default_rng(0)
    image = rng.random((size, size), dtype=np.float32)
    mask = slice_mask((size, size), MaskSpec("spiral", 0.05, seed=0), 0).mask
    sparse = np.where(mask, image, 0.0).astype(np.float32)[None]
    method = create("gan-mse", **({"weights": weights} if weights else {}))
    method.reconstruct_slice(sparse, mask[None], 0)  # warm-up
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        method.reconstruct_slice(sparse, mask[None], 0)
        times.append(time.perf_counter() - t0)
    return {"size": size, "seconds": float(np.median(times))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--volume", default=str(FLYEM))
    parser.add_argument("--slices", default="200:250", help="held-out slices A:B (the shipped weights saw 0:200)")
    parser.add_argument("--patterns", default="spiral,grid,random")
    parser.add_argument("--coverages", default="0.05,0.02")
    parser.add_argument("--methods", default="linear,harmonic,biharmonic,gan-mse,gan")
    parser.add_argument("--weights", default=None, help="GAN weights (default: the shipped ones)")
    parser.add_argument("--dip-every", type=int, default=10, help="run dip on every n-th slice only")
    parser.add_argument("--speed", action="store_true", help="also time gan-mse on a 512² slice")
    parser.add_argument("--json", default=None, help="write the rows to this JSON file")
    args = parser.parse_args()

    start, stop = (int(v) for v in args.slices.split(":"))
    data = read_volume(args.volume).data
    first, last = max(0, start - CONTEXT_MARGIN), min(int(data.shape[0]), stop + CONTEXT_MARGIN)
    volume = to_float01(np.asarray(data[first:last]))
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    options = {m: {"weights": args.weights} for m in methods if m in GAN_METHODS and args.weights}
    patterns = [p.strip() for p in args.patterns.split(",") if p.strip()]
    coverages = [float(c) for c in args.coverages.split(",") if c.strip()]
    t0 = time.perf_counter()
    rows = evaluate(volume, first, range(start, stop), patterns, coverages, methods, options, args.dip_every)
    elapsed = time.perf_counter() - t0

    command = f".venv/bin/python -m benchmarks.gan --slices {args.slices} --patterns {args.patterns} "
    command += f"--coverages {args.coverages} --methods {args.methods}"
    if any(m.startswith("dip") for m in methods):
        command += f" --dip-every {args.dip_every}"
    if args.weights:
        command += f" --weights {args.weights}"
    print(f"\nDate {today()}; machine: {machine()}; wall time {elapsed / 60:.1f} min")
    print(f"Command: {command}")
    print(
        f"Means over FlyEM slices {start}..{stop - 1} (250x250, noiseless); RMS in % of the range; 'RMS σ2.5' with "
        "both images blurred (Ede's scale); spectrum = mean |log10 power ratio| at the upper half of the frequencies "
        "(0 = the ground truth's texture), ratio < 0 = too smooth\n"
    )
    header = [
        "pattern",
        "coverage",
        "method",
        "slices",
        "PSNR",
        "SSIM",
        "RMS %",
        "RMS σ2.5 %",
        "spectrum",
        "ratio",
        "s",
    ]
    table = [
        [
            r["pattern"],
            f"{100 * r['achieved']:.1f} %",
            r["method"],
            r["slices"],
            r["psnr"],
            r["ssim"],
            r["rms"],
            r["rms_blurred"],
            r["spectrum"],
            r["spectrum_ratio"],
            r["seconds"],
        ]
        for r in rows
    ]
    print(markdown_table(header, table))
    if args.speed:
        speed = inference_speed(args.weights)
        print(f"\ngan-mse on a {speed['size']}² slice (spiral 5 %): {speed['seconds']:.3f} s (median of 5)")
    if args.json:
        Path(args.json).write_text(json.dumps({"command": command, "machine": machine(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
