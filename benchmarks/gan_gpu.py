"""Issue #19, item 3: the partial-scan GAN on a GPU — inference slices/s, training it/s, and a timed training run.

    python -m benchmarks.gan_gpu --device cuda --out OUT                           # all three parts
    python -m benchmarks.gan_gpu --device cuda --out OUT --parts inference,train-speed   # ~2 min
    python -m benchmarks.gan_gpu --device cuda --out OUT --parts train --train-minutes 10
    python -m benchmarks.gan_gpu --quick --out OUT                                 # every part, tiny, on a CPU

Parts (``--parts``):

* ``inference``: ``gan-mse`` (the shipped default weights, so the domain guard runs as for a user) through the real
  path, :func:`~napari_sparse_sem.recon.volume.reconstruct_volume`, on FlyEM with 5 % random masks (a new one per
  slice): the whole 250-slice volume at 250², and the first ``--slices-1024`` slices mirror-tiled to 1024²
  (``np.pad(mode="symmetric")``: every slice tiled the same way, so neighbouring slices stay FlyEM's neighbours and
  the ±1-slice weights keep fitting), with the default ``tile`` (512: 9 tiles of 512² per slice, batched) and with
  ``tile=1024`` (whole slices); every ``--batches`` × ``--precisions``. Slices/s is the wall time of the whole call
  with the weights already loaded (guard, input building, copies, forward passes, clipping, storing); each run
  follows a warm-up run of the same settings; the domain guard's share (``prepare``, once per call) is shown apart.
  PSNR is the mean over the slices against the ground truth (precision must not cost more than 0.01 dB).
* ``train-speed``: iterations/s of the ``sparse-sem train-gan`` trainer (:class:`~napari_sparse_sem.recon.
  gan_trainer.GANTrainer`) for the ``compact`` and ``paper`` presets, both phases (MSE pre-training; adversarial
  with the three discriminators), measured over ``--speed-iterations`` after ``--warmup`` iterations (which include
  the workers' start-up), three ways: batches drawn in the training loop (``train-gan``'s default), batches drawn
  ahead by ``--workers`` worker processes (the trainer's own ``data_workers``, ``--data-workers`` of ``train-gan``),
  and the network alone (one batch reused: the ceiling). ``paper``'s discriminator crops (70, 140, 280 px) need
  280-px crops, larger than FlyEM's 250² slices: its rows train on the same slices mirror-padded to 512².
* ``train``: a training run of ``--train-minutes`` on the slices, patterns, coverages and recipe in the card of the
  shipped default (``flyem-context1``: FlyEM 0-199, 180-199 held out; never 200-249), from scratch (``--train-init
  scratch``) or fine-tuning the shipped ``mse`` generator (``shipped``), batches drawn by ``--workers`` data
  workers. Then PSNR on FlyEM 200-249 (slice 199 as the neighbour of 200) for each pattern of the card at the card's
  validation coverage and at ``--eval-coverages``, for the new and the shipped weights, both variants, and
  ``linear``. Masks: ``MaskSpec(pattern, coverage, seed=0)`` of each slice number, as ``benchmarks.gan``
  (docs/benchmarks.md). The new weights and card go to OUT (never into ``src/``).

OUT receives ``gan_gpu.json`` (every figure, the command, the machine) and ``gan_gpu.md`` (the tables).
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import FLYEM, machine, markdown_table, today
from napari_sparse_sem.io import read_volume
from napari_sparse_sem.metrics import psnr
from napari_sparse_sem.params import fields_of
from napari_sparse_sem.recon.base import create
from napari_sparse_sem.recon.gan import SHIPPED_GAN_WEIGHTS, load_generator
from napari_sparse_sem.recon.gan_data import Validation, load_reference, training_batch
from napari_sparse_sem.recon.gan_trainer import GANData, GANTrainer
from napari_sparse_sem.recon.gan_training import GANTrainingConfig
from napari_sparse_sem.recon.volume import SliceDone, reconstruct_volume
from napari_sparse_sem.runtime import pick_device, run_job
from napari_sparse_sem.sampling.patterns import make_masks, slice_mask
from napari_sparse_sem.sampling.spec import MaskSpec
from napari_sparse_sem.threads import usable_cores

EVAL_SLICES = range(200, 250)
"""Held out from every shipped GAN's training (they saw 0-199); a training run here must never see them."""
SHIPPED = "flyem-context1"
FINE_TUNE_LR = 2e-4
"""The MSE phase's starting learning rate when fine-tuning the shipped generator (``train-self``'s choice too)."""


# ----------------------------------------------------------------------------------------------------- helpers
def _sync(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize()


def _peak_reset(device: str) -> None:
    if device.startswith("cuda"):
        import torch

        torch.cuda.reset_peak_memory_stats()


def _peak_gib(device: str) -> float | None:
    if not device.startswith("cuda"):
        return None
    import torch

    return torch.cuda.max_memory_allocated() / 2**30


def mirror(volume: np.ndarray, size: int) -> np.ndarray:
    """Each slice mirror-tiled to ``size``² (symmetric padding at the bottom and right)."""
    pad_y, pad_x = size - volume.shape[1], size - volume.shape[2]
    return np.pad(volume, ((0, 0), (0, pad_y), (0, pad_x)), mode="symmetric")


def run_volume(sparse: np.ndarray, mask: np.ndarray, method: Any, slices: Any = None) -> tuple[np.ndarray, list]:
    """The reconstruction through the volume driver and each slice's info."""
    infos: list[dict] = []
    out = run_job(
        reconstruct_volume(sparse, mask, method, slices=slices),
        on_progress=lambda e: infos.append(e.partial.info) if isinstance(e.partial, SliceDone) else None,
    )
    return out, infos


# -------------------------------------------------------------------------------------------------- inference
def _timed_prepare(method: Any) -> list[float]:
    """Time the method's ``prepare`` (the domain guard) when the driver calls it: the returned list gets the seconds."""
    seconds = [0.0]
    prepare = method.prepare

    def timed(*args: Any) -> None:
        started = time.perf_counter()
        prepare(*args)
        seconds[0] = time.perf_counter() - started

    method.prepare = timed
    return seconds


def inference(volume: np.ndarray, args: argparse.Namespace, device: str) -> list[dict[str, Any]]:
    """Slices/s and PSNR of ``gan-mse`` through ``reconstruct_volume`` for every size × tile × precision × batch."""
    rows = []
    for size in args.sizes:
        count = args.slices_250 if size == volume.shape[1] else args.slices_1024
        data = volume[:count] if size == volume.shape[1] else mirror(volume[:count], size)
        mask, _ = make_masks(data.shape, MaskSpec("random", 0.05, seed=0))
        sparse = np.where(mask, data, 0.0).astype(np.float32)
        for tile in [None] if size <= 512 else [None, size]:
            for precision in args.precisions:
                for batch in args.batches:
                    options = {"batch": batch, "precision": precision, **({"tile": tile} if tile else {})}
                    warm = min(len(data), max(2, batch))  # one group of the same settings
                    run_volume(sparse[:warm], mask[:warm], create("gan-mse", device=device, **options))
                    method = create("gan-mse", device=device, **options)
                    guard = _timed_prepare(method)
                    _sync(device)
                    _peak_reset(device)
                    started = time.perf_counter()
                    out, infos = run_volume(sparse, mask, method)
                    seconds = time.perf_counter() - started
                    scores = [psnr(data[z], out[z]) for z in range(len(data))]
                    rows.append(
                        {
                            "size": size,
                            "tile": tile or 512,
                            "tiled": size > (tile or 512),
                            "precision": precision,
                            "batch": batch,
                            "batch_used": method.batch,
                            "slices": len(data),
                            "seconds": seconds,
                            "slices_per_s": len(data) / seconds,
                            "guard_s": guard[0],
                            "slices_per_s_after_guard": len(data) / (seconds - guard[0]),
                            "psnr": float(np.mean(scores)),
                            "peak_gib": _peak_gib(device),
                            "weights": sorted({info["weights"] for info in infos}),
                        }
                    )
                    print(f"inference {size}² tile {tile or 512} {precision} batch {batch}: "
                          f"{rows[-1]['slices_per_s']:.1f} slices/s", file=sys.stderr)  # fmt: skip
    return rows


# ---------------------------------------------------------------------------------------------------- training
class FixedBatchTrainer(GANTrainer):
    """The ``train-gan`` trainer as it is (batches in the loop, or ahead in its ``data_workers`` processes), or with
    one fixed batch reused (``fixed``: the network's speed alone)."""

    def __init__(self, *args: Any, fixed: bool = False, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.fixed = super().next_batch() if fixed else None

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        return self.fixed if self.fixed is not None else super().next_batch()


def build_trainer(
    reference: np.ndarray,
    slices: list[int],
    config: GANTrainingConfig,
    out: Path,
    device: str,
    workers: int = 0,
    fixed: bool = False,
) -> FixedBatchTrainer:
    """A trainer set up as :func:`~napari_sparse_sem.recon.gan_training.train_gan_job` sets up its own, its batches
    drawn ahead by ``workers`` processes (``data_workers``; 0: in the loop) or one ``fixed`` batch."""
    config = config.replace(data_workers=workers)
    network = config.network()
    held = (
        max(1, round(config.validation_fraction * len(slices))) if config.validation_fraction and len(slices) > 2 else 0
    )
    train_slices, val_slices = slices[: len(slices) - held], slices[len(slices) - held :]
    validation = Validation.build(reference, slices, held, config, network)
    data = GANData(
        reference[: len(train_slices)],
        train_slices,
        val_slices,
        slices,
        list(reference.shape[1:]),
        validation,
        FLYEM.name,
    )
    trainer = FixedBatchTrainer(config, data, out, device, " ".join(map(shlex.quote, sys.argv)), fixed=fixed)
    trainer.generator.train()
    trainer.keep_good_state()
    return trainer


def _steps(trainer: GANTrainer, count: int, device: str) -> float:
    """Seconds for ``count`` training iterations (batch, losses, update), as the training loop does them."""
    _sync(device)
    started = time.perf_counter()
    for _ in range(count):
        trainer.losses()
        trainer.update()
        trainer.state.iteration += 1
    _sync(device)
    return time.perf_counter() - started


def train_speed(volume: np.ndarray, args: argparse.Namespace, device: str) -> list[dict[str, Any]]:
    """Iterations/s per preset × phase × way of drawing batches (see the module notes)."""
    from napari_sparse_sem.nn.gan import count_parameters, gan_config

    rows = []
    for preset in args.presets:
        crop = max(128, 4 * gan_config(preset, context=args.context).disc_crop)
        slices = list(range(min(len(volume), args.speed_slices)))
        reference = volume[slices] if crop <= volume.shape[1] else mirror(volume[slices], 512)
        config = GANTrainingConfig(
            preset=preset,
            architecture={"context": args.context},
            crop=crop,
            batch_size=args.speed_batch,
            iterations=10**6,
            validation_fraction=0.0,
        )
        started = time.perf_counter()
        for _ in range(args.speed_iterations):
            training_batch(reference, config, config.network(), np.random.default_rng(0), slices)
        data_s = (time.perf_counter() - started) / args.speed_iterations
        ways = {
            "in the loop": {},
            f"{args.workers} workers": {"workers": args.workers},
            "network only": {"fixed": True},
        }
        speeds: dict[str, dict[str, float]] = {}
        for way, kwargs in ways.items():
            if way.endswith("workers") and args.workers < 1:
                continue
            trainer = build_trainer(reference, slices, config, Path(args.out) / "speed.safetensors", device, **kwargs)
            try:
                for phase in ("pretrain", "adversarial"):
                    if phase == "adversarial":
                        trainer.start_adversarial()
                    _steps(trainer, args.warmup, device)
                    seconds = _steps(trainer, args.speed_iterations, device)
                    speeds.setdefault(phase, {})[way] = args.speed_iterations / seconds
                    print(f"train-speed {preset} {phase} {way}: {speeds[phase][way]:.2f} it/s", file=sys.stderr)
                parameters = count_parameters(trainer.generator)
            finally:
                trainer.release()  # ends the data workers too
        for phase, values in speeds.items():
            rows.append(
                {
                    "preset": preset,
                    "parameters": parameters,
                    "context": args.context,
                    "crop": crop,
                    "slice_size": int(reference.shape[1]),
                    "batch_size": args.speed_batch,
                    "phase": phase,
                    "it_per_s": values,
                    "data_s_per_batch": data_s,
                }
            )
    return rows


def shipped_recipe(minutes: float, args: argparse.Namespace) -> tuple[GANTrainingConfig, list[int], dict]:
    """The training config and slices of the shipped default's card, with a ``minutes`` budget instead."""
    from napari_sparse_sem.nn.weights import read_card

    card = read_card(SHIPPED_GAN_WEIGHTS[SHIPPED])
    names = {view.name for view in fields_of(GANTrainingConfig)}
    recipe = {k: v for k, v in card["training"].items() if k in names}
    recipe.update(iterations=args.train_iterations, minutes=minutes, checkpoint_minutes=max(minutes, 1.0))
    if args.train_lr is not None or args.train_init == "shipped":
        recipe["lr"] = args.train_lr or FINE_TUNE_LR
    slices = [int(z) for z in card["data"]["slices"]]
    if args.quick:
        slices = slices[:12]
    if set(slices) & set(EVAL_SLICES):
        raise RuntimeError("the training slices overlap the evaluation slices 200-249")
    return GANTrainingConfig.from_dict(recipe), slices, card


def load_generator_card(weights: str) -> dict[str, Any]:
    """The model card of a weights file or shipped name."""
    from napari_sparse_sem.nn.weights import read_card
    from napari_sparse_sem.recon.gan import resolve_weights

    return read_card(resolve_weights(weights))


def evaluate(volume: np.ndarray, weights: dict[str, str], args: argparse.Namespace, device: str, card: dict) -> list:
    """Mean PSNR over the evaluation slices per pattern × coverage × model (``weights``: label → file or name)."""
    first = EVAL_SLICES.start - 1  # slice 199: the neighbour of 200
    stop = EVAL_SLICES.start + args.eval_slices
    data = volume[first:stop]
    coverages = [float(card["metrics"]["validation_coverage"]), *args.eval_coverages]
    models = [("linear", "linear", {})]
    for label, path in weights.items():
        models.append((f"{label} gan-mse", "gan-mse", {"weights": path}))
        if "gan" in load_generator_card(path)["variants"]:
            models.append((f"{label} gan", "gan", {"weights": path}))
    rows = []
    for pattern in card["training"]["patterns"]:
        for coverage in coverages:
            spec = MaskSpec(pattern, coverage, seed=0)
            mask = np.stack([slice_mask(data.shape[1:], spec, first + i).mask for i in range(len(data))])
            sparse = np.where(mask, data, 0.0).astype(np.float32)
            for label, method, options in models:
                if method != "linear":
                    options = {**options, "batch": args.eval_batch}
                out, _ = run_volume(sparse, mask, create(method, device=device, **options), range(1, len(data)))
                score = float(np.mean([psnr(data[i], out[i]) for i in range(1, len(data))]))
                rows.append({"pattern": pattern, "coverage": coverage, "model": label, "psnr": score})
    return rows


def train_run(volume: np.ndarray, args: argparse.Namespace, device: str) -> dict[str, Any]:
    """The timed training run on the shipped recipe, then the evaluation against the shipped weights."""
    config, slices, card = shipped_recipe(args.train_minutes, args)
    out = Path(args.out) / f"gan_gpu_{SHIPPED.replace('-', '_')}.safetensors"
    reference = load_reference(volume, slices)
    trainer = build_trainer(reference, slices, config, out, device, workers=args.workers)
    if args.train_init == "shipped":
        net, _ = load_generator(SHIPPED, "mse", device)
        trainer.generator.load_state_dict(net.state_dict())
        trainer.keep_good_state()
    from napari_sparse_sem.nn.training import run_training

    result = run_job(run_training(trainer))  # the loop ends the data workers however it ends
    weights = {"new": str(result["path"]), "shipped": SHIPPED}
    if "gan" not in result["card"]["variants"]:
        print("the run ended before the adversarial phase: no 'gan' variant to score", file=sys.stderr)
    rows = evaluate(volume, weights, args, device, card)
    shipped_training = card["training"]
    return {
        "weights": str(result["path"]),
        "init": args.train_init,
        "iterations": result["iterations"],
        "seconds": result["seconds"],
        "pretrain_iterations": result["card"]["training"]["pretrain_iterations"],
        "validation": result["card"].get("metrics", {}),
        "recipe": config.to_dict(),
        "shipped": {
            "iterations": shipped_training["iterations_done"],
            "seconds": shipped_training["seconds"],
            "device": shipped_training["device"],
            "validation": card["metrics"],
        },
        "evaluation": rows,
    }


# ------------------------------------------------------------------------------------------------------ report
def _inference_table(rows: list[dict[str, Any]]) -> str:
    header = ["size", "tile", "precision", "batch", "slices", "slices/s", "guard s", "slices/s after the guard",
              "PSNR dB", "peak GiB", "weights"]  # fmt: skip
    table = []
    for r in rows:
        batch = r["batch"] if r["batch_used"] == r["batch"] else f"{r['batch']}→{r['batch_used']}"
        peak = "-" if r["peak_gib"] is None else round(r["peak_gib"], 2)
        tile = f"{r['tile']}{' (tiled)' if r['tiled'] else ''}"
        table.append([f"{r['size']}²", tile, r["precision"], batch, r["slices"], f"{r['slices_per_s']:.1f}",
                      f"{r['guard_s']:.2f}", f"{r['slices_per_s_after_guard']:.1f}", f"{r['psnr']:.3f}", peak,
                      ", ".join(r["weights"])])  # fmt: skip
    return markdown_table(header, table)


def _speed_table(rows: list[dict[str, Any]]) -> str:
    ways = list(dict.fromkeys(w for r in rows for w in r["it_per_s"]))
    header = ["preset", "parameters", "crop", "batch", "phase", *[f"it/s, {w}" for w in ways], "data s/batch"]
    table = [
        [r["preset"], f"{r['parameters'] / 1e6:.1f} M", f"{r['crop']} (of {r['slice_size']}²)", r["batch_size"],
         r["phase"], *[f"{r['it_per_s'].get(w, float('nan')):.2f}" for w in ways], f"{r['data_s_per_batch']:.4f}"]
        for r in rows
    ]  # fmt: skip
    return markdown_table(header, table)


def _evaluation_table(rows: list[dict[str, Any]]) -> str:
    models = list(dict.fromkeys(r["model"] for r in rows))
    keys = list(dict.fromkeys((r["pattern"], r["coverage"]) for r in rows))
    score = {(r["pattern"], r["coverage"], r["model"]): r["psnr"] for r in rows}
    table = []
    for pattern, coverage in keys:
        gain = score[pattern, coverage, "new gan-mse"] - score[pattern, coverage, "shipped gan-mse"]
        values = [round(score[pattern, coverage, m], 3) for m in models]
        table.append([pattern, f"{100 * coverage:.2f} %", *values, f"{gain:+.3f}"])
    means = {m: float(np.mean([score[p, c, m] for p, c in keys])) for m in models}
    gain = means["new gan-mse"] - means["shipped gan-mse"]
    table.append(["mean", "", *[round(v, 3) for v in means.values()], f"{gain:+.3f}"])
    return markdown_table(["pattern", "coverage", *models, "new − shipped (gan-mse)"], table)


def tables(report: dict[str, Any]) -> str:
    """The markdown tables of every part that ran."""
    parts = [
        f"Date {report['date']}; machine: {report['machine']}; device {report['device']}; torch {report['torch']}, "
        f"{report['threads']} CPU threads"
    ]
    parts.append(f"Command: `{report['command']}`")
    if report.get("inference"):
        parts.append("### Inference: gan-mse through reconstruct_volume, FlyEM, random 5 %")
        parts.append(_inference_table(report["inference"]))
    if report.get("train_speed"):
        parts.append(f"### Training speed (train-gan's trainer, ±{report['train_speed'][0]['context']} slice)")
        parts.append(_speed_table(report["train_speed"]))
    if report.get("train"):
        run, shipped = report["train"], report["train"]["shipped"]
        parts.append(
            f"### Training run: {run['seconds'] / 60:.1f} min on {report['device']} ({run['init']}), "
            f"{run['iterations']} iterations ({run['pretrain_iterations']} MSE) against the shipped "
            f"{shipped['iterations']} in {shipped['seconds'] / 60:.0f} min on {shipped['device']}"
        )
        first, last = EVAL_SLICES.start, EVAL_SLICES.start + report["eval_slices"] - 1
        parts.append(f"PSNR (dB) on FlyEM {first}-{last}, mean over slices:")
        parts.append(_evaluation_table(run["evaluation"]))
    return "\n\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--device", default="auto", help="cuda, cpu or auto (default)")
    parser.add_argument("--out", required=True, help="folder for gan_gpu.json, gan_gpu.md and the trained weights")
    parser.add_argument("--quick", action="store_true", help="every part tiny (a CPU check in ~3 minutes)")
    parser.add_argument("--parts", default="inference,train-speed,train")
    parser.add_argument("--sizes", default="250,1024")
    parser.add_argument("--batches", default=None, help="default 1,8,32,64 (quick: 1,8)")
    parser.add_argument("--precisions", default=None, help="default float32,float16,bfloat16 on CUDA, else float32")
    parser.add_argument("--slices-250", type=int, default=None, help="default 250 (quick: 16)")
    parser.add_argument("--slices-1024", type=int, default=None, help="default 64 (quick: 2)")
    parser.add_argument("--presets", default="compact,paper")
    parser.add_argument("--context", type=int, default=1, help="neighbour slices of the timed networks (default 1)")
    parser.add_argument("--speed-batch", type=int, default=8, help="crops per batch for train-speed (train-gan's 8)")
    parser.add_argument("--speed-iterations", type=int, default=None, help="default 30 (quick: 1)")
    parser.add_argument("--speed-slices", type=int, default=180, help="reference slices for train-speed")
    parser.add_argument("--warmup", type=int, default=None, help="iterations before timing (default 5, quick 1)")
    parser.add_argument("--workers", type=int, default=None, help="batch-drawing processes (default: cores - 2)")
    parser.add_argument("--train-minutes", type=float, default=None, help="default 10 (quick: 0.2)")
    parser.add_argument("--train-iterations", type=int, default=None, help="also stop after this many iterations")
    parser.add_argument("--train-init", choices=("scratch", "shipped"), default="scratch")
    parser.add_argument(
        "--train-lr", type=float, default=None, help="default: the card's from scratch, 2e-4 fine-tuning"
    )
    parser.add_argument("--eval-coverages", default="0.05,0.02", help="besides the card's validation coverage")
    parser.add_argument("--eval-slices", type=int, default=None, help="of 200-249 (default 50, quick 3)")
    parser.add_argument("--eval-batch", type=int, default=None, help="default 16 on a GPU, 1 on the CPU")
    args = parser.parse_args(argv)
    quick = args.quick
    device = pick_device(args.device)
    gpu = device != "cpu"

    def pick(value: Any, full: Any, small: Any) -> Any:
        return value if value is not None else (small if quick else full)

    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - {"inference", "train-speed", "train"})
    if unknown:
        parser.error(f"unknown parts {unknown}")
    args.sizes = [int(s) for s in args.sizes.split(",")]
    args.batches = [int(b) for b in pick(args.batches, "1,8,32,64", "1,8").split(",")]
    args.precisions = pick(args.precisions, "float32,float16,bfloat16" if gpu else "float32", "float32").split(",")
    args.slices_250, args.slices_1024 = pick(args.slices_250, 250, 16), pick(args.slices_1024, 64, 2)
    args.presets = args.presets.split(",")
    args.speed_iterations, args.warmup = pick(args.speed_iterations, 30, 1), pick(args.warmup, 5, 1)
    args.workers = pick(args.workers, max(0, min(12, usable_cores() - 2)), 1)
    args.train_minutes = pick(args.train_minutes, 10.0, 0.2)
    args.eval_coverages = [float(c) for c in args.eval_coverages.split(",") if c.strip()]
    args.eval_slices = pick(args.eval_slices, len(EVAL_SLICES), 3)
    args.eval_batch = args.eval_batch or (16 if gpu else 1)
    if quick:
        args.speed_slices, args.speed_batch = min(args.speed_slices, 8), min(args.speed_batch, 2)
        args.eval_coverages = args.eval_coverages[:0]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    import torch

    volume = np.asarray(read_volume(FLYEM).data, dtype=np.float32) / 255.0
    report: dict[str, Any] = {
        "date": today(),
        "machine": machine(),
        "device": device,
        "command": "python -m benchmarks.gan_gpu " + " ".join(map(shlex.quote, sys.argv[1:] if argv is None else argv)),
        "eval_slices": args.eval_slices,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "settings": {k: v for k, v in vars(args).items() if k != "out"},
    }
    started = time.perf_counter()
    if "inference" in parts:
        report["inference"] = inference(volume, args, device)
    if "train-speed" in parts:
        report["train_speed"] = train_speed(volume, args, device)
    if "train" in parts:
        report["train"] = train_run(volume, args, device)
    report["wall_s"] = time.perf_counter() - started
    text = tables(report) + f"\nWall time {report['wall_s'] / 60:.1f} min.\n"
    (out / "gan_gpu.json").write_text(json.dumps(report, indent=1, default=str))
    (out / "gan_gpu.md").write_text(text)
    print(text)
    return report


if __name__ == "__main__":
    os.environ.setdefault("NUMBA_CACHE_DIR", "/tmp/numba")
    main()
