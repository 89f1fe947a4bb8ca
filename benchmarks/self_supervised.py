"""Self-supervised reconstruction (method ``self``, issue #18) against the classical methods and the dense-trained GAN.

FlyEM slices A:B (default 200:250, never seen by the shipped weights) are simulated with one pattern and coverage
(noiseless; per-slice masks from seed 0, or ``--fixed-mask``; ``--every K`` keeps every K-th slice, an anisotropic
stack). ``self`` is trained on those sparse slices alone for ``--minutes`` (and/or ``--iterations``) from ``--init``,
then every method reconstructs them. One markdown row per method: PSNR over all pixels and over the unscanned ones
against the truth, SSIM, training seconds and seconds per slice (wall time, this machine), plus the notes of the
training (e.g. one fixed mask).

Run: .venv/bin/python -m benchmarks.self_supervised [--slices 200:250] [--roi 0:250,0:250] [--pattern random]
     [--coverage 0.05] [--every 1] [--fixed-mask] [--minutes 10] [--iterations N] [--init flyem-context1]
     [--hidden 0.1:0.5] [--methods self,linear,linear3d,biharmonic,gan-mse] [--seed 0] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._common import FLYEM, machine, markdown_table, today
from napari_sparse_sem.metrics import psnr, ssim
from napari_sparse_sem.recon.self_data import parse_hidden
from napari_sparse_sem.recon.self_training import SelfTrainingConfig, train_self_job
from napari_sparse_sem.recon.volume import reconstruct_volume
from napari_sparse_sem.runtime import run_job
from napari_sparse_sem.sampling.patterns import slice_mask
from napari_sparse_sem.sampling.spec import MaskSpec

METHODS = ("self", "linear", "linear3d", "biharmonic", "gan-mse")


def _pair(text: str) -> tuple[int, int]:
    a, b = text.split(":")
    return int(a), int(b)


def simulate(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[int]]:
    """(truth, sparse, mask, slice numbers) of the benchmark stack."""
    import tifffile

    a, b = _pair(args.slices)
    numbers = list(range(a, b, args.every))
    volume = tifffile.imread(args.volume)
    (y0, y1), (x0, x1) = (_pair(part) for part in args.roi.split(",")) if args.roi else ((0, None), (0, None))
    truth = (volume[numbers, y0:y1, x0:x1].astype(np.float32) / 255.0).astype(np.float32)
    measured = truth
    if args.noisy:  # the scan measures a noisy copy of the same stack; scores stay against the clean truth
        measured = (tifffile.imread(args.noisy)[numbers, y0:y1, x0:x1].astype(np.float32) / 255.0).astype(np.float32)
    spec = MaskSpec(args.pattern, args.coverage, seed=args.seed)
    masks = [slice_mask(truth.shape[1:], spec, 0 if args.fixed_mask else z).mask for z in numbers]
    mask = np.stack(masks)
    return truth, np.where(mask, measured, 0.0).astype(np.float32), mask, numbers


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--volume", default=str(FLYEM))
    parser.add_argument(
        "--noisy", default=None, help="a noisy uint8 copy of --volume: the scan measures it, scores use --volume"
    )
    parser.add_argument("--slices", default="200:250")
    parser.add_argument("--roi", default=None, help="Y0:Y1,X0:X1")
    parser.add_argument("--pattern", default="random")
    parser.add_argument("--coverage", type=float, default=0.05)
    parser.add_argument("--every", type=int, default=1, help="keep every K-th slice (an anisotropic stack)")
    parser.add_argument("--fixed-mask", action="store_true", help="one mask for every slice")
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--iterations", type=int, default=None)
    parser.add_argument("--init", default="flyem-context1")
    parser.add_argument("--context", type=int, default=None)
    parser.add_argument("--hidden", default=None, help="LOW:HIGH (default: the config's)")
    parser.add_argument("--hidden-block", type=int, default=1, help="hide square patches of this side (px)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    truth, sparse, mask, _ = simulate(args)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    options = {
        "init": args.init,
        "context": args.context,
        "minutes": args.minutes if args.minutes > 0 else None,
        "iterations": args.iterations,
        "batch_size": args.batch_size,
        "hidden_block": args.hidden_block,
        "seed": args.seed,
    }
    if args.hidden:
        options["hidden"] = parse_hidden(args.hidden)
    config = SelfTrainingConfig(**options)
    rows, notes = [], []
    with tempfile.TemporaryDirectory() as folder:
        weights = Path(folder) / "self.safetensors"
        train_seconds = 0.0
        if "self" in methods:
            started = time.perf_counter()
            result = run_job(train_self_job(sparse, mask, config, weights, device=args.device))
            train_seconds = time.perf_counter() - started
            notes = result["notes"]
            print(
                f"self: {result['iterations']} iterations in {train_seconds:.0f} s; validation PSNR "
                f"{result['validation_psnr']} dB vs linear {result['linear_psnr']} dB",
                file=sys.stderr,
            )
        for method in methods:
            opts = {"weights": str(weights)} if method == "self" else {}
            started = time.perf_counter()
            out = run_job(reconstruct_volume(sparse, mask, method, device=args.device, options=opts))
            seconds = time.perf_counter() - started
            all_px = float(np.mean([psnr(truth[i], out[i]) for i in range(len(truth))]))
            unscanned = float(np.mean([psnr(truth[i], out[i], ~mask[i]) for i in range(len(truth))]))
            score = float(np.mean([ssim(truth[i], out[i]) for i in range(len(truth))]))
            trained = round(train_seconds) if method == "self" else "-"
            rows.append([method, all_px, unscanned, score, trained, seconds / len(truth)])
            print(f"{method}: {unscanned:.2f} dB unscanned", file=sys.stderr)
    name = "FlyEM" if Path(args.volume) == Path(FLYEM) else Path(args.volume).name
    stack = (
        f"{name} {args.slices}"
        + (f" measured on {Path(args.noisy).name}" if args.noisy else "")
        + (f" every {args.every}th" if args.every > 1 else "")
        + (f", ROI {args.roi}" if args.roi else "")
    )
    masks = "one fixed mask" if args.fixed_mask else "per-slice masks"
    print(
        f"{stack} ({len(truth)} slices of {truth.shape[1]}×{truth.shape[2]}), {args.pattern} "
        f"{100 * args.coverage:g} %, {masks}, seed {args.seed}; self: init {args.init}, hidden {config.hidden} "
        f"in {config.hidden_block} px patches, "
        f"{config.minutes} min / {config.iterations} it, {args.device}; {machine()}, {today()}"
    )
    for note in notes:
        print(f"note: {note}")
    print()
    header = ["method", "PSNR all (dB)", "PSNR unscanned (dB)", "SSIM", "training (s)", "s/slice"]
    print(markdown_table(header, rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
