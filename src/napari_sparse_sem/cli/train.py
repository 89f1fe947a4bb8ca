"""``sparse-sem train-estimator``, ``train-gan`` and ``export-gan``: train the networks on dense reference slices
(the training jobs live in :mod:`napari_sparse_sem.active.train_estimator` and
:mod:`napari_sparse_sem.recon.gan_training`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from napari_sparse_sem.cli.common import (
    QuietOption,
    clean_errors,
    format_seconds,
    parse_range,
    progress_bar,
    read_input,
    stdout_console,
    stopped,
)
from napari_sparse_sem.runtime import run_job


def _reference_slices(volume: Path, dataset: str | None, slices: str | None) -> tuple[Any, int, int]:
    """The dense reference slices ``A:B`` of a training command: a float32 [0, 1] view of the volume, and A, B."""
    from napari_sparse_sem.io.volume import SliceMap, as_zyx, to_float01, value_range

    data = as_zyx(read_input(volume, dataset).data, str(volume))
    a, b = parse_range(slices) or (0, int(data.shape[0]))
    if b > data.shape[0]:
        raise ValueError(f"--slices {a}:{b} reaches past the {data.shape[0]} slices of {volume}")
    vrange = value_range(data[a:b])
    return SliceMap(data, lambda plane: to_float01(plane, str(volume), vrange), np.float32), a, b


def _check_weights_out(out: Path, volume: Path, overwrite: bool) -> None:
    """Before training: OUT ends in .safetensors, is not the input (nor inside it), is new unless ``overwrite``, and
    its folder is writable."""
    from napari_sparse_sem.nn.weights import SUFFIX
    from napari_sparse_sem.outputs import check_not_input, check_writable_folder

    if Path(out).suffix != SUFFIX:
        raise ValueError(f"--out must name a {SUFFIX} file (its model card goes beside it), got {out}")
    check_not_input(out, [volume])
    if Path(out).exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; use --overwrite to replace it or choose another --out")
    check_writable_folder(Path(out).parent)


def _budget_flags(minutes: float | None, iterations: int | None) -> str:
    """The budget flags of a training command, as written into model cards."""
    return " ".join(
        ([f"--minutes {minutes:g}"] if minutes is not None else [])
        + ([f"--iterations {iterations}"] if iterations is not None else [])
    )


@clean_errors
def train_estimator(
    volume: Annotated[Path, typer.Argument(help="Dense volume whose reference slices the estimator learns from.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Weights file (.safetensors); its model card goes beside it (.json).")
    ],
    slices: Annotated[str | None, typer.Option(help="Reference slices A:B (half-open); default: all.")] = None,
    initial: Annotated[
        list[str] | None,
        typer.Option("--initial", help="Initial scan lowres:F or PATTERN:COVERAGE (repeatable; default lowres:4)."),
    ] = None,
    recon: Annotated[str, typer.Option(help="Reconstruction method of the initial scan.")] = "linear",
    minutes: Annotated[float | None, typer.Option(help="Training time budget in minutes.")] = None,
    iterations: Annotated[
        int | None, typer.Option(help="Training batches (default 2000 without --minutes; both: whichever ends first).")
    ] = None,
    crop: Annotated[int, typer.Option(help="Side of the random square training crops (px).")] = 96,
    batch_size: Annotated[int, typer.Option(help="Crops per batch.")] = 16,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    base_channels: Annotated[int, typer.Option(help="U-Net channels of the first level (doubling per level).")] = 16,
    levels: Annotated[int, typer.Option(help="U-Net down-sampling levels.")] = 3,
    balance: Annotated[
        bool, typer.Option("--balance/--no-balance", help="Weight the positive class by the negatives/positives ratio.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of crops, augmentation, initial weights and random scans.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    dataset: Annotated[str | None, typer.Option(help="Dataset inside an h5/zarr container.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing weights file and card.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Train the unet error estimator (binarized error, Mi et al. 2020) on dense reference slices of VOLUME."""
    from napari_sparse_sem.active.train_estimator import EstimatorTrainingConfig, train_estimator_job
    from napari_sparse_sem.nn.weights import read_card
    from napari_sparse_sem.recon.base import available_methods

    if recon not in available_methods():
        raise ValueError(f"unknown reconstruction method {recon!r}; choose one of {available_methods()}")
    config = EstimatorTrainingConfig(
        initial=list(initial or ["lowres:4"]),
        recon=recon,
        crop=crop,
        batch_size=batch_size,
        iterations=iterations if iterations is not None or minutes is not None else 2000,
        minutes=minutes,
        lr=lr,
        seed=seed,
        base_channels=base_channels,
        levels=levels,
        balance=balance,
    )
    _check_weights_out(out, volume, overwrite)
    scaled, a, b = _reference_slices(volume, dataset, slices)
    budget = _budget_flags(minutes, config.iterations)
    command = (
        f"sparse-sem train-estimator {volume} --slices {a}:{b} "
        + " ".join(f"--initial {text}" for text in config.initial)
        + f" --recon {recon} {budget} --crop {crop} --batch-size {batch_size} --lr {lr:g} "
        f"--base-channels {base_channels} --levels {levels} {'--balance' if balance else '--no-balance'} "
        f"--seed {seed} --device {device} --out {out}"
    )
    job = train_estimator_job(
        scaled,
        list(range(a, b)),
        config,
        out,
        overwrite=overwrite,
        device=device,
        data_name=Path(volume).name,
        command=command,
    )
    try:
        with progress_bar("train-estimator", quiet) as update:
            result = run_job(job, update)
    except KeyboardInterrupt as exc:
        if out.exists() and read_card(out).get("training", {}).get("stopped") == "cancelled":
            done = read_card(out)["training"]["iterations_done"]
            raise stopped(exc, f"saved the checkpoint after {done} iterations to {out}.") from None
        raise stopped(exc, "stopped before training started; nothing written.") from None
    size_mb = result["path"].stat().st_size / 1e6
    training = result["card"]["training"]
    stdout_console().print(
        f"wrote {result['path']} ({size_mb:.1f} MB) and its model card {result['card_path'].name}: "
        f"{result['iterations']} iterations in {format_seconds(result['seconds'])} on {training['device']}, final loss "
        f"{result['final_loss']:.4f} (pixels above the mean error: {100 * training['positive_fraction'][0]:.1f} %)",
        markup=False,
    )


@clean_errors
def train_gan(
    volume: Annotated[Path, typer.Argument(help="Dense volume whose reference slices the generator learns from.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Weights file (.safetensors); its model card goes beside it (.json).")
    ],
    slices: Annotated[str | None, typer.Option(help="Reference slices A:B (half-open); default: all.")] = None,
    patterns: Annotated[
        str, typer.Option("--patterns", "--pattern", help="Mask patterns: a comma list, or mixed (spiral,grid,random).")
    ] = "mixed",
    coverage: Annotated[
        str, typer.Option(help="Coverage C, or a range LOW:HIGH drawn log-uniformly per crop.")
    ] = "0.02:0.2",
    minutes: Annotated[float | None, typer.Option(help="Training time budget in minutes (across resumes).")] = None,
    iterations: Annotated[
        int | None, typer.Option(help="Training batches (default 2000 without --minutes; both: whichever ends first).")
    ] = None,
    preset: Annotated[str, typer.Option(help="Network size: compact (CPU) or paper (Ede's widths, GPU).")] = "compact",
    fill: Annotated[str | None, typer.Option(help="Input fill of unscanned pixels: nearest or zeros (Ede).")] = None,
    context: Annotated[
        int, typer.Option(help="Neighbour slices on each side the generator also sees (0: Ede's 2D generator).")
    ] = 0,
    crop: Annotated[int, typer.Option(help="Side of the random square training crops (px).")] = 128,
    batch_size: Annotated[int, typer.Option(help="Crops per batch.")] = 8,
    pretrain_fraction: Annotated[
        float, typer.Option(help="Share of the budget for MSE pre-training (1: no adversarial phase).")
    ] = 0.7,
    adv_weight: Annotated[float, typer.Option(help="Weight of the adversarial loss against the MSE.")] = 2e-3,
    alrc: Annotated[bool, typer.Option("--alrc/--no-alrc", help="Adaptive learning rate clipping of outliers.")] = True,
    lr: Annotated[float, typer.Option(help="Adam learning rate of the pre-training.")] = 1e-3,
    seed: Annotated[int, typer.Option(help="Seed of crops, masks, augmentation and initial weights.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    dataset: Annotated[str | None, typer.Option(help="Dataset inside an h5/zarr container.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the training saved in OUT's checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace existing weights, card, plot and checkpoint.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Train the partial-scan GAN (Ede & Beanland 2020) on dense reference slices of VOLUME."""
    from napari_sparse_sem.nn.weights import read_card
    from napari_sparse_sem.recon.gan_training import (
        GANTrainingConfig,
        parse_coverage,
        parse_patterns,
        state_path,
        train_gan_job,
    )

    if resume and overwrite:
        raise ValueError("--resume continues a training, --overwrite starts a new one: give one of them")
    _check_weights_out(out, volume, overwrite=True)  # the job itself refuses existing files without --overwrite
    config = GANTrainingConfig(
        preset=preset,
        architecture={**({"fill": fill} if fill else {}), **({"context": context} if context else {})},
        patterns=parse_patterns(patterns),
        coverage=parse_coverage(coverage),
        crop=crop,
        batch_size=batch_size,
        iterations=iterations if iterations is not None or minutes is not None else 2000,
        minutes=minutes,
        pretrain_fraction=pretrain_fraction,
        adv_weight=adv_weight,
        alrc=alrc,
        lr=lr,
        seed=seed,
    )
    scaled, a, b = _reference_slices(volume, dataset, slices)
    budget = _budget_flags(minutes, config.iterations)
    command = (
        f"sparse-sem train-gan {volume} --slices {a}:{b} --patterns {','.join(config.patterns)} "
        f"--coverage {config.coverage[0]:g}:{config.coverage[1]:g} {budget} --preset {preset} "
        f"--fill {config.network().fill} --context {context} --crop {crop} --batch-size {batch_size} "
        f"--pretrain-fraction {pretrain_fraction:g} --adv-weight {adv_weight:g} {'--alrc' if alrc else '--no-alrc'} "
        f"--lr {lr:g} --seed {seed} --device {device} --out {out}"
    )
    job = train_gan_job(
        scaled,
        list(range(a, b)),
        config,
        out,
        overwrite=overwrite,
        resume=resume,
        device=device,
        data_name=Path(volume).name,
        command=command,
    )
    try:
        with progress_bar("train-gan", quiet) as update:
            result = run_job(job, update)
    except KeyboardInterrupt as exc:
        if state_path(out).exists() and read_card(out).get("training", {}).get("stopped") == "cancelled":
            done = read_card(out)["training"]["iterations_done"]
            raise stopped(
                exc, f"saved the checkpoint after {done} iterations to {out}; continue with --resume."
            ) from None
        raise stopped(exc, "stopped before training started; nothing written.") from None
    card = result["card"]
    metrics = card.get("metrics", {})
    scores = ", ".join(f"{name} {metrics[name]['psnr']:.2f} dB" for name in ("gan-mse", "gan") if name in metrics)
    summary = f"; held-out PSNR {scores} (linear {metrics['linear_psnr']:.2f} dB)" if scores else ""
    size_mb = result["path"].stat().st_size / 1e6
    stdout_console().print(
        f"wrote {result['path']} ({size_mb:.1f} MB, variants {', '.join(card['variants'])}), its model card "
        f"{result['card_path'].name} and learning curves {result['curves_path'].name}: {result['iterations']} "
        f"iterations in {format_seconds(result['seconds'])} on {card['training']['device']}{summary}",
        markup=False,
    )


@clean_errors
def export_gan(
    source: Annotated[Path, typer.Argument(help="Weights file written by train-gan.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="New weights file (.safetensors); its card goes beside it.")],
    half: Annotated[bool, typer.Option("--half/--full", help="Store float16 (half the size) or float32.")] = True,
    single_slice_weights: Annotated[
        str | None,
        typer.Option(help="For a generator with context: file name (beside OUT) of a 2D generator for lone slices."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing OUT and its card.")] = False,
) -> None:
    """Copy the generators of a trained GAN (without the training state), e.g. to ship or share them."""
    from napari_sparse_sem.recon.gan import export_weights

    command = f"sparse-sem export-gan {source} --out {out} {'--half' if half else '--full'}"
    if single_slice_weights:
        command += f" --single-slice-weights {single_slice_weights}"
    path = export_weights(source, out, half, single_slice_weights, command, overwrite)
    stdout_console().print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) and its model card", markup=False)
