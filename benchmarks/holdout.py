"""Quality without ground truth: does the hold-out estimate rank methods like the true PSNR of the unscanned pixels?

On FlyEM slices (default 200–249, scoring every 10th) every pattern × coverage × method is reconstructed once for the
true ``psnr_unscanned`` (against the dense slices) and scored from the sparse scan alone by
:func:`~napari_sparse_sem.quality.holdout.holdout_quality` (raw and corrected). Prints the table, Spearman's rank
correlation overall and per pattern × coverage (over methods), and the bias of the corrected estimate.

Run: OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.holdout [--step 10] [--methods ...]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from scipy.stats import spearmanr

from benchmarks._common import FLYEM, machine, markdown_table, today
from napari_sparse_sem.io import read_volume
from napari_sparse_sem.io.volume import to_float01, value_range
from napari_sparse_sem.metrics import psnr
from napari_sparse_sem.quality.holdout import holdout_quality
from napari_sparse_sem.recon.base import create
from napari_sparse_sem.recon.volume import reconstruct_volume
from napari_sparse_sem.runtime import run_job
from napari_sparse_sem.sampling import make_masks
from napari_sparse_sem.sampling.spec import MaskSpec


def _options(text: str) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for item in filter(None, text.split(",")):
        key, value = item.split("=")
        method, name = key.split(".")
        out.setdefault(method, {})[name] = int(value)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--volume", default=str(FLYEM))
    parser.add_argument("--slices", default="200:250")
    parser.add_argument("--step", type=int, default=10, help="score every STEP-th slice")
    parser.add_argument("--patterns", default="random,spiral,grid")
    parser.add_argument("--coverages", default="0.02,0.05,0.2")
    parser.add_argument("--methods", default="nearest,linear,biharmonic,linear3d,gan-mse")
    parser.add_argument("--options", default="", help="METHOD.KEY=INT,... e.g. linear3d.context=3")
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    a, b = (int(v) for v in args.slices.split(":"))
    methods = args.methods.split(",")
    options = _options(args.options)
    context = max(int(create(m, **options.get(m, {})).context) for m in methods)
    data = read_volume(args.volume).data
    lo, hi = max(0, a - context), min(int(data.shape[0]), b + context)
    raw = np.asarray(data[lo:hi])
    ref = to_float01(raw, "volume", value_range(raw[a - lo : b - lo]))
    sel = list(range(a - lo, b - lo, args.step))
    rows, t0 = [], time.perf_counter()
    for pattern in args.patterns.split(","):
        for cov in (float(c) for c in args.coverages.split(",")):
            mask, _ = make_masks(ref.shape, MaskSpec(pattern=pattern, coverage=cov, per_slice=True, seed=args.seed))
            mask = np.asarray(mask, dtype=bool)
            sparse = np.where(mask, ref, 0).astype(np.float32)
            for method in methods:
                started = time.perf_counter()
                opts = options.get(method)
                recon = run_job(reconstruct_volume(sparse, mask, method, options=opts, slices=sel))
                true = float(np.mean([psnr(ref[z], recon[z], ~mask[z]) for z in sel]))
                est = holdout_quality(sparse, mask, method, options=opts, slices=sel, folds=args.folds, seed=args.seed)
                row = [pattern, f"{100 * cov:g} %", method, true, est.psnr_raw, est.psnr, est.psnr - true, est.block]
                rows.append(row)
                print(" ".join(str(v) for v in row), f"{time.perf_counter() - started:.0f} s", flush=True)
    elapsed = time.perf_counter() - t0

    true = np.array([r[3] for r in rows])
    raw_est = np.array([r[4] for r in rows])
    corr = np.array([r[5] for r in rows])
    print()
    print(
        f"FlyEM slices {a}–{b - 1}, every {args.step}th scored ({len(sel)} slices), per-slice masks, noiseless, "
        f"{args.folds} folds, seed {args.seed}; {today()}, {machine()}, {elapsed / 60:.1f} min"
    )
    print()
    header = ["pattern", "coverage", "method", "true PSNR unscanned", "hold-out raw", "hold-out corrected", "bias dB"]
    print(markdown_table(header, [r[:7] for r in rows]))
    print()
    per = []
    for key in dict.fromkeys((r[0], r[1]) for r in rows):
        idx = [i for i, r in enumerate(rows) if (r[0], r[1]) == key]
        rho_raw = spearmanr(true[idx], raw_est[idx]).statistic if len(idx) > 2 else float("nan")
        rho = spearmanr(true[idx], corr[idx]).statistic if len(idx) > 2 else float("nan")
        per.append([key[0], key[1], float(rho_raw), float(rho), float(np.mean(corr[idx] - true[idx]))])
    print(markdown_table(["pattern", "coverage", "Spearman raw", "Spearman corrected", "mean bias dB"], per))
    print()
    bias = corr - true
    print(
        f"overall Spearman: raw {spearmanr(true, raw_est).statistic:.3f}, "
        f"corrected {spearmanr(true, corr).statistic:.3f}"
        f"; per pattern × coverage (corrected) mean {np.nanmean([p[3] for p in per]):.3f}, "
        f"min {np.nanmin([p[3] for p in per]):.3f}"
    )
    print(
        f"corrected bias: mean {bias.mean():+.2f} dB, mean |bias| {np.abs(bias).mean():.2f} dB, "
        f"max |bias| {np.abs(bias).max():.2f} dB; within 1 dB: {int(np.sum(np.abs(bias) <= 1))}/{len(bias)}; "
        f"raw bias: mean {(raw_est - true).mean():+.2f} dB, max |bias| {np.abs(raw_est - true).max():.2f} dB"
    )


if __name__ == "__main__":
    main()
