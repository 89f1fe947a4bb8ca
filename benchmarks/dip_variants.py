"""Which DIP design wins? Variants of the `dip` method against biharmonic on a real FlyEM ROI (issue #3).

Run: .venv/bin/python -m benchmarks.dip_variants --coverage 0.05
Slice 125, ROI y 60:188 x 60:188 (128²), uniform random mask (seed 0). Prints PSNR, SSIM, iterations and seconds.
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from benchmarks._common import FLYEM, machine, markdown_table, today
from napari_sparse_sem.io import read_volume
from napari_sparse_sem.metrics import psnr, ssim
from napari_sparse_sem.recon import create

VARIANTS: dict[str, dict] = {
    "plain 4x48": {},
    "plain 4x48 + ema": {"ema": 0.99},
    "guide (input channel)": {"guide": "biharmonic"},
    "guide + ema": {"guide": "biharmonic", "ema": 0.99},
    "residual on biharmonic": {"guide": "biharmonic", "residual": True},
    "residual + ema": {"guide": "biharmonic", "residual": True, "ema": 0.99},
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--coverage", type=float, default=0.05)
    parser.add_argument("--iterations", type=int, default=1000)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    dense = np.asarray(read_volume(FLYEM).data[125, 60:188, 60:188], dtype=np.float32) / 255.0
    mask = np.random.default_rng(0).random(dense.shape) < args.coverage
    sparse = np.where(mask, dense, 0).astype(np.float32)
    rows = []
    for name in ("linear", "biharmonic"):
        t0 = time.perf_counter()
        image = create(name).reconstruct_slice(sparse[None], mask[None], 0)
        rows.append([name, psnr(dense, image), ssim(dense, image), "-", time.perf_counter() - t0])
    for name in args.variants.split(","):
        dip = create("dip", iterations_first=args.iterations, preview_every=0, **VARIANTS[name])
        t0 = time.perf_counter()
        image = dip.reconstruct_slice(sparse[None], mask[None], 0)
        seconds = time.perf_counter() - t0
        info = dip.history[-1]
        rows.append([f"dip {name}", psnr(dense, image), ssim(dense, image), info["iterations"], seconds])
        print(rows[-1], flush=True)
    print(f"\nDate {today()}; machine: {machine()}")
    command = "python -m benchmarks.dip_variants"
    print(f"Command: .venv/bin/{command} --coverage {args.coverage} --iterations {args.iterations}")
    print(f"FlyEM slice 125, ROI 60:188,60:188, {100 * args.coverage:g} % random (seed 0)\n")
    print(markdown_table(["method", "PSNR dB", "SSIM", "iterations", "seconds"], rows))


if __name__ == "__main__":
    main()
