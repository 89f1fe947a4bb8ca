"""Data-representation ablation (Dahmen et al. Table 3) on a small budget: same network, same budget, three inputs.

    python -m benchmarks.surrogate_ablation --train TRAIN.zarr --eval EVAL.zarr [--minutes 4] [--layout compact]

Trains one surrogate per representation (4-EHF + normal map, 4-EHF only, plain heightfield = entry depth only) for
the same wall time on this machine, then scores each against the Monte Carlo evaluation set (cubes, spheres and
cylinders never trained on). Prints a markdown table.
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--train", required=True)
    parser.add_argument("--eval", required=True)
    parser.add_argument("--minutes", type=float, default=4.0)
    parser.add_argument("--layout", default="compact")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()

    from napari_sparse_sem.runtime import run_job
    from napari_sparse_sem.surrogate.evaluate import evaluate_job
    from napari_sparse_sem.surrogate.model import REPRESENTATIONS, SurrogateConfig, load_surrogate
    from napari_sparse_sem.surrogate.training import SurrogateTrainingConfig, train_surrogate_job

    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for representation in REPRESENTATIONS:
            out = Path(tmp) / f"{representation.replace('+', '_')}.safetensors"
            config = SurrogateTrainingConfig(
                model=SurrogateConfig(layout=args.layout, representation=representation),
                minutes=args.minutes,
                batch=args.batch,
                device=args.device,
            )
            trained = run_job(train_surrogate_job(args.train, out, config))
            result = run_job(evaluate_job(load_surrogate(out, device=args.device), args.eval, mc_rows=0))
            for signal in ("bse", "se"):
                records = [r for r in result["records"] if r["signal"] == signal]
                cubes = next(r for r in records if r["geometry"] == "cubes")
                rows.append(
                    (
                        representation,
                        signal,
                        trained["iterations"],
                        cubes["mean_error_pct"],
                        cubes["systematic_error_pct"],
                        cubes["ssim"],
                        cubes["psnr"],
                        float(np.mean([r["systematic_error_pct"] for r in records])),
                    )
                )
            print(f"{representation}: {trained['iterations']} iterations", flush=True)
    print(f"\nlayout {args.layout}, {args.minutes:g} min each\n")
    print("| input | signal | iterations | cubes: error % | systematic % | SSIM | PSNR | all classes: systematic % |")
    print("|---|---|---|---|---|---|---|---|")
    for rep, signal, its, err, sys_err, ssim, psnr, all_sys in rows:
        cells = f"{err:.2f} | {sys_err:.2f} | {ssim:.3f} | {psnr:.2f} | {all_sys:.2f}"
        print(f"| {rep} | {signal.upper()} | {its} | {cells} |")


if __name__ == "__main__":
    main()
