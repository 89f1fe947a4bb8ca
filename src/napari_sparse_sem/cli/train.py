"""``sparse-sem train-estimator``, ``train-gan`` and ``export-gan``: train the networks on dense reference slices
(the training jobs live in :mod:`napari_sparse_sem.active.train_estimator` and
:mod:`napari_sparse_sem.recon.gan_training`)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from napari_sparse_sem.active.train_estimator import EstimatorTrainingConfig
from napari_sparse_sem.cli.common import (
    DeviceOption,
    QuietOption,
    ReferenceSlicesOption,
    ThreadsOption,
    WeightsOutOption,
    clean_errors,
    format_seconds,
    parse_range,
    progress_bar,
    read_input,
    stdout_console,
    stopped,
    use_threads,
)
from napari_sparse_sem.cli.methods import check_methods
from napari_sparse_sem.cli.run import current_command_line
from napari_sparse_sem.cli.spec_options import Form, spec_options
from napari_sparse_sem.params_text import parse_fraction
from napari_sparse_sem.recon.gan_training import GANTrainingConfig
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


ITERATIONS = Form(help="Training batches, across resumes (none with --minutes alone; both: whichever ends first).")
"""``--iterations`` of the training commands: its default holds only without ``--minutes`` (:func:`training_budget`)."""


def training_budget(config: Any, given: frozenset[str]) -> Any:
    """The training budget of a command line: ``--minutes`` alone is the whole budget (the iterations' default only
    applies without ``--minutes``); with both, whichever ends first."""
    if "minutes" in given and "iterations" not in given and config.minutes is not None:
        return config.replace(iterations=None)
    return config


def coverage_range(text: str, flag: str) -> float | tuple[float, float]:
    """``--coverage C`` or ``LOW:HIGH`` (fractions or percentages) of a training command."""
    parts = str(text).split(":")
    if len(parts) > 2:
        raise ValueError(f"{flag} expects C or LOW:HIGH (e.g. 0.05 or 0.02:0.2), got {text!r}")
    values = [parse_fraction(part, flag) for part in parts]
    return values[0] if len(values) == 1 else (values[0], values[1])


def run_training(job: Any, label: str, quiet: bool, kept: Callable[[], str | None]) -> Any:
    """Drive a training job with a progress bar; a stop (Ctrl-C, SIGTERM) says what stayed on disk (``kept()``, or
    nothing when it returns None)."""
    try:
        with progress_bar(label, quiet) as update:
            return run_job(job, update)
    except KeyboardInterrupt as exc:
        raise stopped(exc, kept() or "stopped before training started; nothing written.") from None


def saved_checkpoint(out: Path, checkpoint: Path, resume_hint: bool) -> Callable[[], str | None]:
    """``kept`` for :func:`run_training`: the iterations a cancelled training saved to ``out`` (its card says)."""
    from napari_sparse_sem.nn.weights import read_card

    def kept() -> str | None:
        if not checkpoint.exists() or read_card(out).get("training", {}).get("stopped") != "cancelled":
            return None
        done = read_card(out)["training"]["iterations_done"]
        return f"saved the checkpoint after {done} iterations to {out}" + (
            "; continue with --resume." if resume_hint else "."
        )

    return kept


@clean_errors
@spec_options(
    EstimatorTrainingConfig,
    into="config",
    given="given",
    forms={"initial": Form(repeat=True, metavar="lowres:F|PATTERN:COVERAGE"), "iterations": ITERATIONS},
    panel="Training (EstimatorTrainingConfig)",
)
def train_estimator(
    volume: Annotated[Path, typer.Argument(help="Dense volume whose reference slices the estimator learns from.")],
    out: WeightsOutOption,
    config: EstimatorTrainingConfig,
    given: frozenset[str],
    slices: ReferenceSlicesOption = None,
    device: DeviceOption = "auto",
    threads: ThreadsOption = 0,
    dataset: Annotated[str | None, typer.Option(help="Dataset inside an h5/zarr container.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing weights file and card.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Train the unet error estimator (binarized error, Mi et al. 2020) on dense reference slices of VOLUME."""
    from napari_sparse_sem.active.train_estimator import train_estimator_job

    use_threads(threads)
    check_methods([config.recon])
    config = training_budget(config, given)
    _check_weights_out(out, volume, overwrite)
    scaled, a, b = _reference_slices(volume, dataset, slices)
    command = current_command_line()
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
    result = run_training(job, "train-estimator", quiet, saved_checkpoint(out, out, resume_hint=False))
    size_mb = result["path"].stat().st_size / 1e6
    training = result["card"]["training"]
    stdout_console().print(
        f"wrote {result['path']} ({size_mb:.1f} MB) and its model card {result['card_path'].name}: "
        f"{result['iterations']} iterations in {format_seconds(result['seconds'])} on {training['device']}, final loss "
        f"{result['final_loss']:.4f} (pixels above the mean error: {100 * training['positive_fraction'][0]:.1f} %)",
        markup=False,
    )


@clean_errors
@spec_options(
    GANTrainingConfig,
    into="config",
    given="given",
    forms={
        "patterns": Form(aliases=("--pattern",)),
        "coverage": Form(parse=coverage_range, metavar="C|LOW:HIGH"),
        "iterations": ITERATIONS,
    },
    panel="Training (GANTrainingConfig)",
)
def train_gan(
    volume: Annotated[Path, typer.Argument(help="Dense volume whose reference slices the generator learns from.")],
    out: WeightsOutOption,
    config: GANTrainingConfig,
    given: frozenset[str],
    slices: ReferenceSlicesOption = None,
    fill: Annotated[str | None, typer.Option(help="Input fill of unscanned pixels: nearest or zeros (Ede).")] = None,
    context: Annotated[
        int, typer.Option(help="Neighbour slices on each side the generator also sees (0: Ede's 2D generator).")
    ] = 0,
    device: DeviceOption = "auto",
    threads: ThreadsOption = 0,
    dataset: Annotated[str | None, typer.Option(help="Dataset inside an h5/zarr container.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the training saved in OUT's checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace existing weights, card, plot and checkpoint.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Train the partial-scan GAN (Ede & Beanland 2020) on dense reference slices of VOLUME."""
    from napari_sparse_sem.recon.gan_training import state_path, train_gan_job

    use_threads(threads)
    if resume and overwrite:
        raise ValueError("--resume continues a training, --overwrite starts a new one: give one of them")
    _check_weights_out(out, volume, overwrite=True)  # the job itself refuses existing files without --overwrite
    architecture = {**({"fill": fill} if fill else {}), **({"context": context} if context else {})}
    config = training_budget(config.replace(architecture=architecture), given)
    scaled, a, b = _reference_slices(volume, dataset, slices)
    command = current_command_line()
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
    result = run_training(job, "train-gan", quiet, saved_checkpoint(out, state_path(out), resume_hint=True))
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

    path = export_weights(source, out, half, single_slice_weights, current_command_line(), overwrite)
    stdout_console().print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) and its model card", markup=False)
