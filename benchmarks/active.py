"""Active acquisition on FlyEM: speed-up vs quality (Mi et al., Table 4), samplers and estimators, rescan rounds, and
sampler speed.

Run: .venv/bin/python -m benchmarks.active [--slices 200:250] [--figure docs/images/active_speedup.png]
Slices 200-249 were never used to train the shipped error estimator (slices 0-199). Every slice starts from the same
initial scan (lowres:4 = 6.35 %); the rescan fills the rest of the total budget. Reconstruction: linear everywhere.
Tables print as markdown; the figure plots PSNR against speed-up (1 / total coverage).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

import numpy as np

from benchmarks._common import FLYEM, machine, markdown_table, today
from napari_sparse_sem.active.error_estimation import make_estimator
from napari_sparse_sem.active.pipeline import WDPPConfig, active_slice_job, round_counts
from napari_sparse_sem.active.scan import parse_initial
from napari_sparse_sem.active.wdpp import select_rescan
from napari_sparse_sem.io import read_volume
from napari_sparse_sem.metrics import psnr, ssim
from napari_sparse_sem.recon.base import create
from napari_sparse_sem.runtime import run_job
from napari_sparse_sem.sampling.patterns import slice_mask
from napari_sparse_sem.sampling.spec import MaskSpec

TOTALS = (1 / 3, 0.20, 1 / 7, 0.10, 1 / 13)  # speed-ups 3, 5, 7, 10, 13 as in Mi et al., Table 4
SAMPLERS = ("wdpp", "topk", "random", "bluenoise")
STATIC = ("random", "hexgrid", "lowres")


def _fill(recon, reference: np.ndarray, mask: np.ndarray) -> np.ndarray:
    sparse = np.where(mask, reference, 0.0).astype(np.float32)
    return np.clip(recon.reconstruct_slice(sparse[None], mask[None], 0), 0, 1)


def _available_estimators(names: list[str]) -> dict[str, object]:
    out = {}
    for name in names:
        try:
            out[name] = make_estimator(name)
        except (FileNotFoundError, ValueError) as exc:  # e.g. no shipped unet weights yet
            print(f"skipping estimator {name}: {exc}")
    return out


def speedup_table(volume: np.ndarray, zs: list[int], estimators: dict[str, object], initial: str) -> dict:
    """Mean PSNR/SSIM per (method, total) over the slices."""
    recon = create("linear")
    scores: dict[tuple[str, float], list[tuple[float, float, float]]] = defaultdict(list)
    for z in zs:
        reference = volume[z]
        mask0 = slice_mask(reference.shape, parse_initial(initial), z).mask
        sparse0 = np.where(mask0, reference, 0.0).astype(np.float32)
        recon0 = _fill(recon, reference, mask0)
        estimates = {n: e.estimate(recon0, sparse0, mask0, reference=reference) for n, e in estimators.items()}
        for total in TOTALS:
            k = round_counts(reference.size, int(mask0.sum()), total, 1)[0]
            for est_name, estimate in estimates.items():
                samplers = ("wdpp",) if est_name == "oracle" else SAMPLERS
                for sampler in samplers:
                    if sampler == "random" and est_name != next(iter(estimates)):
                        continue  # the random rescan ignores the estimate: score it once
                    label = "initial + random rescan" if sampler == "random" else f"initial + {sampler} ({est_name})"
                    sel = select_rescan(estimate, k, sampler, scanned=mask0, seed=z)
                    mask = mask0.copy()
                    mask[sel.points[:, 0], sel.points[:, 1]] = True
                    image = _fill(recon, reference, mask)
                    scores[(label, total)].append((psnr(reference, image), ssim(reference, image), mask.mean()))
            for pattern in STATIC:
                mask = slice_mask(reference.shape, MaskSpec(pattern=pattern, coverage=total, seed=0), z).mask
                image = _fill(recon, reference, mask)
                scores[(f"static {pattern}", total)].append(
                    (psnr(reference, image), ssim(reference, image), mask.mean())
                )
        print(f"slice {z} done", flush=True)
    return {key: np.mean(values, axis=0) for key, values in scores.items()}


def rounds_table(volume: np.ndarray, zs: list[int], estimator: str, initial: str) -> list[list[object]]:
    recon = create("linear")
    est = make_estimator(estimator)
    rows = []
    for total in (0.10, 0.20):
        for rounds in (1, 2, 4):
            config = WDPPConfig(initial=initial, budget=total, rounds=rounds, estimator=estimator)
            values = [run_job(active_slice_job(volume[z], z, config, recon, est)).record["psnr"] for z in zs]
            rows.append([f"{100 * total:.0f} %", rounds, float(np.mean(values))])
    return rows


def sampler_speed(volume: np.ndarray) -> list[list[object]]:
    """Seconds to choose 5 % of a 500² image (2×2 FlyEM slices, gradient estimate of the lowres:4 reconstruction)."""
    mosaic = np.block([[volume[200], volume[201]], [volume[202], volume[203]]])
    recon = create("linear")
    rows = []
    for side in (500, 1000):
        image = mosaic if side == 500 else np.block([[mosaic, mosaic], [mosaic, mosaic]])
        mask0 = slice_mask(image.shape, parse_initial("lowres:4"), 0).mask
        estimate = make_estimator("gradient").estimate(_fill(recon, image, mask0), image * mask0, mask0)
        k = int(0.05 * image.size)
        for sampler, mode in (("wdpp", "greedy"), ("wdpp", "sample"), ("bluenoise", ""), ("topk", ""), ("random", "")):
            if side == 1000 and mode == "sample":
                continue
            select_rescan(estimate[:64, :64], 20, sampler, scanned=mask0[:64, :64], mode=mode or "greedy")  # compile
            start = time.perf_counter()
            select_rescan(estimate, k, sampler, scanned=mask0, mode=mode or "greedy")
            rows.append([f"{side}²", k, f"{sampler} {mode}".strip(), time.perf_counter() - start])
    return rows


def figure(means: dict, path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(7, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    labels = sorted({label for label, _ in means}, key=lambda s: (s.startswith("static"), s))
    for label in labels:
        pts = sorted((1 / means[(label, t)][2], means[(label, t)][0]) for t in TOTALS if (label, t) in means)
        style = "--" if label.startswith("static") else "-"
        ax.plot(*zip(*pts, strict=True), style, marker="o", label=label)
    ax.set_xlabel("speed-up (1 / total coverage)")
    ax.set_ylabel("PSNR (dB), mean over FlyEM slices 200-249")
    ax.set_title("Active acquisition from a ×4 low-res scan (linear reconstruction)")
    ax.legend(fontsize=7)
    fig.savefig(path, dpi=120)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", default="200:250")
    parser.add_argument("--initial", default="lowres:4")
    parser.add_argument("--estimators", default="gradient,unet,oracle")
    parser.add_argument("--figure", default=None)
    parser.add_argument("--skip", default="", help="comma list of parts to skip: speedup,rounds,speed")
    args = parser.parse_args()
    a, b = (int(v) for v in args.slices.split(":"))
    skip = set(filter(None, args.skip.split(",")))
    volume = read_volume(FLYEM).data[:].astype(np.float32) / 255.0
    zs = list(range(a, b))
    t0 = time.perf_counter()
    print(f"Date {today()}; machine: {machine()}")
    print(f"Command: .venv/bin/python -m benchmarks.active --slices {args.slices} --initial {args.initial}\n")
    if "speedup" not in skip:
        estimators = _available_estimators(args.estimators.split(","))
        means = speedup_table(volume, zs, estimators, args.initial)
        labels = sorted({label for label, _ in means}, key=lambda s: (s.startswith("static"), s))
        header = ["method", *(f"{1 / t:.0f}× ({100 * t:.1f} %)" for t in TOTALS)]
        rows = [
            [label, *(f"{means[(label, t)][0]:.2f} / {means[(label, t)][1]:.3f}" for t in TOTALS)] for label in labels
        ]
        print(f"PSNR (dB) / SSIM, mean over FlyEM slices {a}..{b - 1}; initial scan {args.initial}\n")
        print(markdown_table(header, rows))
        lowres = [f"{100 * means[('static lowres', t)][2]:.1f} %" for t in TOTALS]
        print(f"\nstatic lowres covers {', '.join(lowres)} (a lattice can only hit 1/f²)\n")
        if args.figure:
            figure(means, Path(args.figure))
    if "rounds" not in skip:
        zs_r = zs[:: max(1, len(zs) // 10)]
        for name in ("gradient", "unet"):
            try:
                rows = rounds_table(volume, zs_r, name, args.initial)
            except (FileNotFoundError, ValueError) as exc:
                print(f"skipping rounds with {name}: {exc}")
                continue
            print(f"Rescan rounds, wdpp with {name}, PSNR over slices {zs_r}\n")
            print(markdown_table(["total", "rounds", "PSNR dB"], rows) + "\n")
    if "speed" not in skip:
        print("Sampler speed (seconds, after numba compilation)\n")
        print(markdown_table(["image", "points", "sampler", "seconds"], sampler_speed(volume)))
    print(f"\nwall time {(time.perf_counter() - t0) / 60:.1f} min")


if __name__ == "__main__":
    main()
