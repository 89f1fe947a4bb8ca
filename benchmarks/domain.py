"""The domain guard of the shipped GAN weights (issue #18): does the default ``gan-mse`` keep its ±1-slice context
where it helps (FlyEM) and drop it where it hurts (anisotropic stacks)?

Stacks: FlyEM slices 200-249 (isotropic, 10 nm, held out from training) and FlyEM 0-249 keeping every 2nd, 3rd and
5th slice (20, 30, 50 nm between slices); on each, up to ``--per-stack`` slices whose original z is >= 200 are
scored (their neighbours in the thinned stack are the ±1 context). For every pattern × coverage × mask kind (one mask
per slice, or one fixed mask): PSNR of ``linear``, of ``gan-mse`` with ``flyem-context1`` forced, with ``flyem``
(2D) forced, and of the default ``gan-mse`` (no ``weights`` option: the guard decides). The guard's decision is
taken by the method itself (``prepare``, what ``reconstruct_volume`` calls); its PSNR is that of the forced run it
chose (the same network and options, so the same numbers). Also printed: the neighbour statistic — the effective
z-step in in-plane pixels measured from the scanned pixels — of the input and of the FlyEM reference under the same
masks (:mod:`napari_sparse_sem.quality.domain`).

Run: OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.domain [--per-stack 10] [--configs random:0.05:per,...]
"""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np

from benchmarks._common import FLYEM, machine, markdown_table, today
from napari_sparse_sem.io import read_volume
from napari_sparse_sem.io.volume import to_float01
from napari_sparse_sem.metrics import psnr
from napari_sparse_sem.recon.base import create
from napari_sparse_sem.recon.volume import reconstruct_volume
from napari_sparse_sem.sampling.patterns import make_masks
from napari_sparse_sem.sampling.spec import MaskSpec

DEFAULT_CONFIGS = "random:0.05:per,random:0.05:fixed,spiral:0.05:per,spiral:0.05:fixed,random:0.01:per,spiral:0.2:per"
STEPS = (1, 2, 3, 5)


def stack_for(volume: np.ndarray, step: int, per_stack: int) -> tuple[np.ndarray, list[int], str]:
    """The (sub)stack around the scored slices and their indices in it; a label."""
    if step == 1:
        stack, z0, label = volume[200:250], 200, "FlyEM 200-249"
    else:
        nth = {2: "2nd", 3: "3rd"}.get(step, f"{step}th")
        stack, z0, label = volume[0:250:step], 0, f"FlyEM 0-249, every {nth}"
    original = z0 + step * np.arange(stack.shape[0])
    candidates = [i for i in range(1, stack.shape[0] - 1) if original[i] >= 200]
    picks = sorted({candidates[k] for k in np.linspace(0, len(candidates) - 1, per_stack).round().astype(int)})
    lo, hi = picks[0] - 1, picks[-1] + 2
    return stack[lo:hi], [p - lo for p in picks], label


def mean_psnr(reference: np.ndarray, out: np.ndarray, slices: list[int]) -> float:
    return float(np.mean([psnr(reference[z], out[z]) for z in slices]))


def run(volume: np.ndarray, configs: list[str], per_stack: int) -> list[list[object]]:
    rows: list[list[object]] = []
    methods = {
        "context1": lambda: create("gan-mse", weights="flyem-context1"),
        "2D": lambda: create("gan-mse", weights="flyem"),
    }
    for step in STEPS:
        stack, scored, label = stack_for(volume, step, per_stack)
        for config in configs:
            pattern, coverage, kind = config.split(":")
            spec = MaskSpec(pattern=pattern, coverage=float(coverage), per_slice=kind == "per", seed=0)
            mask, _ = make_masks(stack.shape, spec)
            sparse = np.where(mask, stack, 0.0).astype(np.float32)
            scores = {}
            out = yield_volume(sparse, mask, "linear", scored)
            scores["linear"] = mean_psnr(stack, out, scored)
            for name, make in methods.items():
                scores[name] = mean_psnr(stack, yield_volume(sparse, mask, make(), scored), scored)
            guard = create("gan-mse")
            guard.prepare(sparse, mask, scored)
            check = guard.domain
            switched = guard.context == 0
            default = scores["2D"] if switched else scores["context1"]
            fmt = lambda v: "–" if v is None else f"{v:.2f}"  # noqa: E731
            rows.append(
                [
                    label,
                    f"{pattern} {float(coverage):.0%} {kind}",
                    fmt(check.z_step_px),
                    fmt(check.reference_z_step_px),
                    f"{scores['linear']:.2f}",
                    f"{scores['context1']:.2f}",
                    f"{scores['2D']:.2f}",
                    f"{default:.2f}" + (" (2D)" if switched else ""),
                    f"{default - scores['linear']:+.2f}",
                ]
            )
            print(" | ".join(str(v) for v in rows[-1]), file=sys.stderr, flush=True)
    return rows


def yield_volume(sparse: np.ndarray, mask: np.ndarray, method: object, slices: list[int]) -> np.ndarray:
    """Run the volume driver to the end; the reconstruction."""
    job = reconstruct_volume(sparse, mask, method, slices=slices)  # type: ignore[arg-type]
    while True:
        try:
            next(job)
        except StopIteration as stop:
            return stop.value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--per-stack", type=int, default=10, help="slices scored per stack and mask set")
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help="pattern:coverage:per|fixed, comma-separated")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    volume = to_float01(np.asarray(read_volume(FLYEM, lazy=False).data), "FlyEM")
    rows = run(volume, args.configs.split(","), args.per_stack)
    header = [
        "stack",
        "masks",
        "z-step px (input)",
        "z-step px (FlyEM, same masks)",
        "linear",
        "gan-mse context1",
        "gan-mse 2D",
        "gan-mse default (guard)",
        "default − linear",
    ]
    print(f"PSNR in dB, mean over {args.per_stack} slices per row; {machine()}, {today()}; ")
    print(f"{time.perf_counter() - started:.0f} s in all\n")
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
