"""``sparse-sem surrogate ...``: porous geometries, the Monte Carlo teacher and the surrogate's training data.

A typer group of its own, mounted by :mod:`napari_sparse_sem.cli`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Annotated, Any

import typer

from napari_sparse_sem.cli.common import (
    DeviceOption,
    QuietOption,
    ThreadsOption,
    clean_errors,
    progress_bar,
    stdout_console,
    stopped,
    use_threads,
)
from napari_sparse_sem.cli.run import current_command_line
from napari_sparse_sem.cli.spec_options import Form, spec_options
from napari_sparse_sem.cli.train import ITERATIONS, run_training, training_budget
from napari_sparse_sem.runtime import run_job
from napari_sparse_sem.surrogate.dataset import DatasetSpec
from napari_sparse_sem.surrogate.geometry import GeometrySpec
from napari_sparse_sem.surrogate.model import SurrogateConfig
from napari_sparse_sem.surrogate.montecarlo import MCConfig
from napari_sparse_sem.surrogate.stack import StackSpec
from napari_sparse_sem.surrogate.training import SurrogateTrainingConfig

BACKSCATTER_KEV = 20.0
"""``backscatter``'s beam energy: Reuter's measured η, which it checks against, holds for beams of some 10-30 keV
(the Monte Carlo model's own default, 2 keV, is the surrogate's training energy)."""
DEFAULT_ITERATIONS = 2000
"""Training iterations when neither ``--iterations`` nor ``--minutes`` is given (as for the other trainers)."""
WINDOW = Form(metavar="DEPTH,HEIGHT,WIDTH")

surrogate_app = typer.Typer(
    help="Porous microstructures, extended heightfields, the Monte Carlo SEM teacher and its training data.",
    no_args_is_help=True,
)


@surrogate_app.command()
@clean_errors
@spec_options(
    MCConfig,
    into="config",
    exclude=("electrons_per_pixel",),
    defaults={"energy_kev": BACKSCATTER_KEV},
    panel="Monte Carlo (MCConfig)",
)
def backscatter(
    config: MCConfig,
    electrons: Annotated[int, typer.Option(help="Primary electrons to trace.")] = 20_000,
    threads: ThreadsOption = 0,
) -> None:
    """Monte Carlo on a flat bulk target: prints JSON with η (and Reuter's measured value), SE yield, range, speed."""
    use_threads(threads)
    from napari_sparse_sem.surrogate.montecarlo import bulk_run

    result = bulk_run(config, electrons=electrons, record_depth=True)
    result["eta_relative_error"] = result["eta"] / result["eta_reuter"] - 1.0
    print(json.dumps(result, indent=2))


@surrogate_app.command()
@clean_errors
@spec_options(GeometrySpec, into="spec", forms={"window": WINDOW}, panel="Geometry (GeometrySpec)")
def geometry(
    out: Annotated[Path, typer.Option(help="Where to write the primitive list (.npz).")],
    spec: GeometrySpec,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing OUT.")] = False,
) -> None:
    """Draw a Boolean model (Miles' formula sets the intensity from Φ) and save its primitive list."""
    from napari_sparse_sem.surrogate.geometry import generate, voxelize

    primitives = generate(spec)
    path = primitives.save(out, overwrite=overwrite)
    measured = 1.0 - float(voxelize(primitives).mean())
    summary = {"out": str(path), "particles": len(primitives), **primitives.counts(), "porosity_target": spec.porosity}
    summary["porosity_voxelised"] = round(measured, 4)
    stdout_console().print(json.dumps(summary), markup=False)


@surrogate_app.command("make-dataset")
@clean_errors
@spec_options(DatasetSpec, into="spec", panel="Dataset (DatasetSpec)")
@spec_options(MCConfig, into="mc", exclude=("seed",), panel="Monte Carlo (MCConfig)")
def make_dataset_command(
    out: Annotated[Path, typer.Option(help="Zarr store to write (a folder ending in .zarr).")],
    spec: DatasetSpec,
    mc: MCConfig,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted store with the same parameters.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing store.")] = False,
    workers: Annotated[
        int, typer.Option(help="Processes that make slices (>1 pays beside a GPU teacher; the same slices).")
    ] = 1,
    threads: ThreadsOption = 0,
    quiet: QuietOption = False,
) -> None:
    """Training pairs for the neural surrogate: 7-channel heightfield + normal map → Monte Carlo BSE and SE."""
    use_threads(threads)
    from napari_sparse_sem.outputs import check_writable_folder
    from napari_sparse_sem.surrogate.dataset import make_dataset

    spec = spec.replace(mc=mc.replace(seed=spec.seed))  # one --seed: the plan's, the particles' and the electrons'
    check_writable_folder(out.parent)
    try:
        with progress_bar("make-dataset", quiet) as update:
            summary = run_job(make_dataset(spec, out, resume=resume, overwrite=overwrite, workers=workers), update)
    except KeyboardInterrupt as exc:
        kept = f"the finished samples are in {out}; continue with --resume." if out.exists() else "nothing written."
        raise stopped(exc, kept) from None
    stdout_console().print(json.dumps(summary), markup=False)


@surrogate_app.command()
@clean_errors
@spec_options(
    SurrogateTrainingConfig,
    into="config",
    given="given",
    defaults={"iterations": DEFAULT_ITERATIONS},
    forms={"iterations": ITERATIONS},
    panel="Training (SurrogateTrainingConfig)",
)
@spec_options(SurrogateConfig, into="model", panel="Network (SurrogateConfig)")
def train(
    dataset: Annotated[Path, typer.Argument(help="A make-dataset zarr store.")],
    out: Annotated[Path, typer.Option(help="Weights file to write (.safetensors; a model card .json goes beside it).")],
    config: SurrogateTrainingConfig,
    model: SurrogateConfig,
    given: frozenset[str],
    resume: Annotated[bool, typer.Option(help="Continue from OUT's checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace existing weights and checkpoint.")] = False,
    threads: ThreadsOption = 0,
    quiet: QuietOption = False,
) -> None:
    """Train the neural BSE/SE surrogate on a make-dataset store (L1, Adam; resumable; learning curves saved)."""
    use_threads(threads)
    from napari_sparse_sem.outputs import check_not_input, check_writable_folder
    from napari_sparse_sem.surrogate.training import train_surrogate_job

    if resume and overwrite:
        raise ValueError("--resume continues a training, --overwrite starts a new one: give one of them")
    check_not_input(out, [dataset])
    check_writable_folder(out.parent)
    c = training_budget(config.replace(model=model), given)
    command = current_command_line()
    job = train_surrogate_job(dataset, out, c, resume=resume, overwrite=overwrite, command=command)

    def kept() -> str:
        return f"saved a checkpoint to {out}; continue with --resume." if out.exists() else "nothing written."

    result = run_training(job, "surrogate train", quiet, kept)
    stdout_console().print(json.dumps(result), markup=False)


@surrogate_app.command("simulate-stack")
@clean_errors
@spec_options(GeometrySpec, into="geometry", exclude=("window", "seed"), panel="Geometry (GeometrySpec)")
@spec_options(
    StackSpec, into="spec", forms={"seed": Form(help="Random seed (geometry and noise).")}, panel="Stack (StackSpec)"
)
def simulate_stack_command(
    out: Annotated[Path, typer.Option(help="Zarr store to write: arrays bse, se, solid (and *_clean with noise).")],
    geometry: GeometrySpec,
    spec: StackSpec,
    primitives: Annotated[
        Path | None, typer.Option(help="A saved primitive list (.npz) instead of a new geometry.")
    ] = None,
    weights: Annotated[Path | None, typer.Option(help="Surrogate weights (default: the shipped ones).")] = None,
    device: DeviceOption = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing OUT.")] = False,
    threads: ThreadsOption = 0,
    quiet: QuietOption = False,
) -> None:
    """A simulated FIB-SEM stack: geometry → heightfield per slice → surrogate BSE/SE (+ noise) + exact solid labels."""
    use_threads(threads)
    from napari_sparse_sem.outputs import check_not_input, check_writable_folder
    from napari_sparse_sem.surrogate.geometry import Primitives
    from napari_sparse_sem.surrogate.model import load_surrogate
    from napari_sparse_sem.surrogate.stack import save_stack, simulate_stack

    if Path(out).suffix != ".zarr":
        raise ValueError(f"the simulated stack is a zarr store: give a path ending in .zarr, got {Path(out).name!r}")
    if Path(out).exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it or choose another --out")
    check_not_input(out, [primitives, weights])
    check_writable_folder(Path(out).parent)
    source: GeometrySpec | Primitives = (
        Primitives.load(primitives) if primitives is not None else geometry.replace(seed=spec.seed)
    )
    surrogate = load_surrogate(weights, device=device)
    with progress_bar("simulate-stack", quiet) as update:
        stack = run_job(simulate_stack(source, spec, surrogate), update)
    path = save_stack(stack, out, overwrite=overwrite)
    summary = {"out": str(path), "shape": list(stack.solid.shape), "voxel_size_nm": list(stack.voxel_size_nm)}
    summary |= {
        k: stack.metadata[k] for k in ("particles", "porosity_voxelised", "seconds", "dose_electrons_per_pixel")
    }
    stdout_console().print(json.dumps(summary), markup=False)


@surrogate_app.command()
@clean_errors
def evaluate(
    out: Annotated[Path, typer.Option(help="Folder for metrics.json (and eval.zarr when it makes the data).")],
    dataset: Annotated[Path | None, typer.Option(help="An evaluation store from make-dataset (default: make one).")] = (
        None
    ),
    weights: Annotated[Path | None, typer.Option(help="Surrogate weights (default: the shipped ones).")] = None,
    electrons: Annotated[int, typer.Option(help="Electrons per pixel when making the evaluation set.")] = 1000,
    replicas: Annotated[
        int, typer.Option(help="Independent Monte Carlo runs per slice of a new evaluation set (2+: noise measured).")
    ] = 2,
    teacher_device: Annotated[
        str, typer.Option(help="Where the Monte Carlo teacher runs (making the set, timing): cpu, cuda or auto.")
    ] = "auto",
    size: Annotated[int, typer.Option(help="Image size when making the evaluation set.")] = 128,
    seed: Annotated[int, typer.Option(help="Seed of the evaluation set (the shipped weights were trained on 0).")] = 2,
    mc_rows: Annotated[int, typer.Option(help="Rows of Monte Carlo to time here per geometry class (0: skip).")] = 8,
    device: DeviceOption = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing OUT/metrics.json.")] = False,
    threads: ThreadsOption = 0,
    quiet: QuietOption = False,
) -> None:
    """Surrogate vs Monte Carlo on unseen cubes, spheres, cylinders: error % of range, systematic, SSIM, PSNR, speed."""
    use_threads(threads)
    from napari_sparse_sem.outputs import check_not_input, check_writable_folder, write_json
    from napari_sparse_sem.surrogate.dataset import DatasetSpec, make_dataset, teacher_config
    from napari_sparse_sem.surrogate.evaluate import evaluate_job
    from napari_sparse_sem.surrogate.model import load_surrogate
    from napari_sparse_sem.surrogate.montecarlo import MCConfig

    path = out / "metrics.json"
    check_not_input(out, [dataset, weights])
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} already exists; use --overwrite to replace it or choose another --out")
    out.mkdir(parents=True, exist_ok=True)
    check_writable_folder(out)
    surrogate = load_surrogate(weights, device=device)
    if dataset is None:
        dataset = out / "eval.zarr"
        spec = DatasetSpec(
            geometries=4,
            held_out=4,
            cuts=1,
            size=size,
            seed=seed,
            replicas=replicas,
            mc=teacher_config(MCConfig(electrons_per_pixel=electrons, seed=seed), teacher_device),
        )
        try:
            with progress_bar("evaluation set (Monte Carlo)", quiet) as update:
                run_job(make_dataset(spec, dataset, resume=dataset.exists()), update)
        except KeyboardInterrupt as exc:
            raise stopped(exc, f"the finished evaluation samples are in {dataset}; run again to continue.") from None
    with progress_bar("evaluate", quiet) as update:
        result = run_job(evaluate_job(surrogate, dataset, mc_rows=mc_rows, mc_device=teacher_device), update)
    result |= {"dataset": str(dataset), "weights": str(weights or "shipped")}
    write_json(path, _no_nan(result))
    stdout_console().print(_metrics_table(result["records"]), markup=False)
    stdout_console().print(f"wrote {path}", markup=False)


def _no_nan(value: Any) -> Any:
    """NaN (e.g. no homogeneous area to measure noise in) and infinities (a PSNR of no error) as JSON null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


def _metrics_table(records: list[dict]) -> str:
    lines = [
        "| signal | geometry | error % | systematic % | systematic RMS % | noise % | SSIM | PSNR | s surrogate | s MC "
        "(1000 e/px) | speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['signal'].upper()} | {r['geometry']} | {r['mean_error_pct']:.2f} | {r['systematic_error_pct']:.2f} "
            f"| {r['systematic_rms_pct']:.2f} (≤ {r['systematic_rms_upper_pct']:.2f}) | {r['noise_pct']:.2f} "
            f"| {r['ssim']:.3f} | {r['psnr']:.2f} | {r['seconds_surrogate']:.3f} | {r['seconds_mc']:.1f} "
            f"| {r['speedup']:.3g} |"
        )
    return "\n".join(lines)
