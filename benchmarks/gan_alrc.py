"""ALRC ablation: the same MSE training of the compact generator with and without adaptive learning rate clipping.

Both runs use the same seed, so they see the same crops, masks and initial weights until their weights diverge. Every
iteration's loss is logged. Reported per run: the held-out PSNR at the end (FlyEM slices 180-199, the last 10 % of the
reference slices 0-199), loss spikes (iterations whose loss exceeds 3× the median of the previous 50), the largest
loss after the first 100 iterations, and how many losses ALRC scaled down. The learning curves go to
``docs/images/gan_alrc.png``.

Run: .venv/bin/python -m benchmarks.gan_alrc --iterations 1500 [--parallel]
(``--parallel`` runs both trainings at once with one thread each, for a 2-core machine.)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._common import FLYEM, REPO, machine, markdown_table, today


def train(alrc: bool, iterations: int, out: Path, seed: int) -> None:
    from napari_sparse_sem.io import read_volume
    from napari_sparse_sem.io.volume import to_float01
    from napari_sparse_sem.recon.gan_training import GANTrainingConfig, train_gan_job
    from napari_sparse_sem.runtime import run_job

    volume = to_float01(np.asarray(read_volume(FLYEM).data[:200]))
    config = GANTrainingConfig(
        iterations=iterations, pretrain_fraction=1.0, alrc=alrc, log_every=1, validate_every=250, seed=seed
    )
    run_job(train_gan_job(volume, range(200), config, out, overwrite=True))


def spikes(losses: np.ndarray, window: int = 50, factor: float = 3.0) -> int:
    """Iterations whose loss exceeds ``factor`` × the median of the ``window`` before."""
    return int(sum(losses[i] > factor * np.median(losses[i - window : i]) for i in range(window, len(losses))))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--iterations", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--parallel", action="store_true")
    parser.add_argument("--run", choices=["alrc", "plain"], help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.run:  # a child process of --parallel
        train(args.run == "alrc", args.iterations, Path(args.out), args.seed)
        return

    from napari_sparse_sem.nn.weights import read_card
    from napari_sparse_sem.recon.gan_training import state_path

    folder = Path(tempfile.mkdtemp(prefix="gan_alrc_"))
    outs = {name: folder / f"{name}.safetensors" for name in ("alrc", "plain")}
    t0 = time.perf_counter()
    if args.parallel:
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        children = [
            subprocess.Popen(
                [
                    *(sys.executable, "-m", "benchmarks.gan_alrc", "--run", name, "--out", str(out)),
                    *("--iterations", str(args.iterations), "--seed", str(args.seed)),
                ],
                cwd=REPO,
                env=env,
            )
            for name, out in outs.items()
        ]
        if any(child.wait() for child in children):
            raise SystemExit("a training run failed")
    else:
        for name, out in outs.items():
            train(name == "alrc", args.iterations, out, args.seed)
    elapsed = time.perf_counter() - t0

    rows, curves = [], {}
    for name, out in outs.items():
        card, state = read_card(out), read_card(state_path(out))
        losses = np.array([value for _, value in state["status"]["loss"]])
        validation = state["status"]["validation"]
        curves[name] = (losses, validation)
        clipped = sum(card["training"]["alrc_clipped"].values()) if name == "alrc" else 0
        rows.append(
            [
                name,
                validation[-1][1],
                card["metrics"]["linear_psnr"],
                spikes(losses),
                float(losses[100:].max()),
                float(np.mean(losses[-100:])),
                clipped,
                card["training"]["seconds"],
            ]
        )

    from matplotlib.figure import Figure

    figure = Figure(figsize=(8.0, 3.0))
    figure.set_layout_engine("tight")
    loss_axes, psnr_axes = figure.subplots(1, 2)
    for name, (losses, validation) in curves.items():
        loss_axes.semilogy(np.arange(1, len(losses) + 1), losses, lw=0.5, alpha=0.8, label=name)
        steps, values = zip(*validation, strict=True)
        psnr_axes.plot(steps, values, "o-", ms=3, label=name)
    loss_axes.set(xlabel="iteration", ylabel="training MSE (per batch)", title="ALRC ablation: loss")
    psnr_axes.set(xlabel="iteration", ylabel="held-out PSNR (dB)", title="held-out slices 180-199")
    loss_axes.legend(fontsize=7, frameon=False)
    psnr_axes.legend(fontsize=7, frameon=False)
    image = REPO / "docs" / "images" / "gan_alrc.png"
    figure.savefig(image, dpi=110)

    command = f".venv/bin/python -m benchmarks.gan_alrc --iterations {args.iterations} --seed {args.seed}"
    command += " --parallel" if args.parallel else ""
    print(f"\nDate {today()}; machine: {machine()}; wall time {elapsed / 60:.1f} min")
    print(f"Command: {command}\n")
    header = ["run", "held-out PSNR", "linear", "spikes", "max loss (it > 100)", "mean loss (last 100)", "clipped", "s"]
    print(markdown_table(header, rows))
    print(f"\nlearning curves: {image.relative_to(REPO)}; runs in {folder}")
    (folder / "summary.json").write_text(json.dumps({"command": command, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
