"""``sparse-sem train-self``: train a generator on a sparse scan alone (self-supervised; the job is
:func:`napari_sparse_sem.recon.self_training.train_self_job`), for ``reconstruct --method self --weights W``."""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from napari_sparse_sem.cli.common import (
    DeviceOption,
    QuietOption,
    ThreadsOption,
    WeightsOutOption,
    clean_errors,
    format_seconds,
    parse_range,
    stdout_console,
    use_threads,
)
from napari_sparse_sem.cli.run import current_command_line
from napari_sparse_sem.cli.spec_options import Form, spec_options
from napari_sparse_sem.cli.train import coverage_range, run_training
from napari_sparse_sem.recon.self_training import SelfTrainingConfig


def _scan(sparse_path: Path, mask_path: Path) -> tuple[Any, Any]:
    """The sparse stack as float32 [0, 1] slices (through its acquisition record's value range) and the mask as
    bool slices, both lazy."""
    from napari_sparse_sem.io.volume import SliceMap, to_float01
    from napari_sparse_sem.recon.to_file import read_inputs, sparse_value_range
    from napari_sparse_sem.sampling.record import AcquisitionRecord

    _, sparse, mask, meta = read_inputs(sparse_path, mask_path)
    vrange = sparse_value_range(AcquisitionRecord.from_metadata(meta), meta, sparse)
    scaled = SliceMap(sparse, functools.partial(to_float01, what=str(sparse_path), value_range_=vrange), np.float32)
    return scaled, SliceMap(mask, lambda plane: plane != 0, bool)


def _budget(config: SelfTrainingConfig, given: frozenset[str]) -> SelfTrainingConfig:
    """``--iterations`` alone is the whole budget (the 10-minute default applies only without it)."""
    if "iterations" in given and "minutes" not in given and config.iterations is not None:
        return config.replace(minutes=None)
    return config


@clean_errors
@spec_options(
    SelfTrainingConfig,
    into="config",
    given="given",
    forms={
        "hidden": Form(parse=coverage_range, metavar="H|LOW:HIGH"),
        "init": Form(metavar="flyem|flyem-context1|none|PATH"),
    },
    panel="Training (SelfTrainingConfig)",
)
def train_self(
    sparse: Annotated[Path, typer.Argument(help="Sparse stack (unscanned pixels 0), e.g. a real sparse scan.")],
    mask: Annotated[Path, typer.Option("--mask", "-m", help="Mask stack (non-zero = scanned).")],
    out: WeightsOutOption,
    config: SelfTrainingConfig,
    given: frozenset[str],
    slices: Annotated[str | None, typer.Option(help="Slices A:B (half-open) to learn from; default: all.")] = None,
    device: DeviceOption = "auto",
    threads: ThreadsOption = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace existing weights, card and learning curves.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Train a generator on SPARSE and its MASK alone (no dense slices): hidden scanned pixels are the targets."""
    from napari_sparse_sem.cli.train import _check_weights_out
    from napari_sparse_sem.recon.self_training import train_self_job

    use_threads(threads)
    config = _budget(config, given)
    _check_weights_out(out, sparse, overwrite)
    _check_weights_out(out, mask, overwrite)
    values, scanned = _scan(sparse, mask)
    a, b = parse_range(slices) or (0, int(values.shape[0]))
    if b > values.shape[0]:
        raise ValueError(f"--slices {a}:{b} reaches past the {values.shape[0]} slices of {sparse}")
    job = train_self_job(
        values,
        scanned,
        config,
        out,
        overwrite=overwrite,
        device=device,
        slices=list(range(a, b)),
        data_name=Path(sparse).name,
        command=current_command_line(),
    )
    result = run_training(job, "train-self", quiet, lambda: _kept(out))
    training = result["card"]["training"]
    console = stdout_console()
    size_mb = result["path"].stat().st_size / 1e6
    console.print(
        f"wrote {result['path']} ({size_mb:.1f} MB), its model card {result['card_path'].name} and learning curves "
        f"{result['curves_path'].name}: {result['iterations']} iterations in {format_seconds(result['seconds'])} on "
        f"{training['device']} (start {training['init_used']}, context {training['context_used']})",
        markup=False,
    )
    own, linear = result["validation_psnr"], result["linear_psnr"]
    if own is not None and linear is not None:
        pixels = result["card"]["metrics"]["validation_pixels"]
        console.print(
            f"validation PSNR at {pixels} held-out scanned pixels: self {own:.2f} dB, linear {linear:.2f} dB "
            f"({own - linear:+.2f} dB)",
            markup=False,
        )
    for note in result["notes"]:
        console.print(f"note: {note}", markup=False)
    where = f" --slices {a}:{b}" if slices else ""
    console.print(
        f"next: sparse-sem reconstruct {sparse} --mask {mask} --method self --weights {result['path']}{where} "
        "--out RECONSTRUCTION.tif",
        markup=False,
    )


def _kept(out: Path) -> str | None:
    """What a stopped training left in ``out`` (its card says), for the stop message."""
    from napari_sparse_sem.nn.weights import card_path, read_card

    if not card_path(out).exists():
        return None
    training = read_card(out).get("training", {})
    if training.get("stopped") != "cancelled":
        return None
    return f"saved the weights after {training['iterations_done']} iterations to {out}."
