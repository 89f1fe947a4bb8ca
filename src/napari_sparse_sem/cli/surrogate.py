"""``sparse-sem surrogate ...``: porous geometries, the Monte Carlo teacher and the surrogate's training data.

A typer group of its own, mounted by :mod:`napari_sparse_sem.cli`.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from napari_sparse_sem.cli.common import QuietOption, clean_errors, progress_bar, stdout_console, stopped
from napari_sparse_sem.runtime import run_job

if TYPE_CHECKING:
    from napari_sparse_sem.surrogate.geometry import GeometrySpec

ShapeOption = Annotated[str, typer.Option(help="spheres, cylinders, cubes or mixture.")]
PorosityOption = Annotated[float, typer.Option(help="Pore fraction Φ in (0, 1).")]
RadiusOption = Annotated[str, typer.Option(help="Sphere/cylinder radius interval LOW:HIGH in voxels.")]
HeightOption = Annotated[str, typer.Option(help="Cylinder height interval LOW:HIGH in voxels.")]
EdgeOption = Annotated[str, typer.Option(help="Cube edge interval LOW:HIGH in voxels.")]
OrientationOption = Annotated[str, typer.Option(help="Cylinder axes: uniform or vmf (about z).")]

surrogate_app = typer.Typer(
    help="Porous microstructures, extended heightfields, the Monte Carlo SEM teacher and its training data.",
    no_args_is_help=True,
)


@surrogate_app.command()
@clean_errors
def backscatter(
    element: Annotated[str, typer.Option(help="Target element: C, Al, Si, Cu, Ag or Au.")] = "C",
    energy: Annotated[float, typer.Option(help="Beam energy in keV.")] = 20.0,
    electrons: Annotated[int, typer.Option(help="Primary electrons to trace.")] = 20_000,
    tilt: Annotated[float, typer.Option(help="Beam tilt from the surface normal, degrees.")] = 0.0,
    cutoff: Annotated[float, typer.Option(help="Energy (keV) at which a trajectory ends.")] = 0.05,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
) -> None:
    """Monte Carlo on a flat bulk target: prints JSON with η (and Reuter's measured value), SE yield, range, speed."""
    from napari_sparse_sem.surrogate.montecarlo import MCConfig, bulk_run

    config = MCConfig(element=element, energy_kev=energy, tilt_deg=tilt, cutoff_kev=cutoff, seed=seed)
    result = bulk_run(config, electrons=electrons, record_depth=True)
    result["eta_relative_error"] = result["eta"] / result["eta_reuter"] - 1.0
    print(json.dumps(result, indent=2))


@surrogate_app.command()
@clean_errors
def geometry(
    out: Annotated[Path, typer.Option(help="Where to write the primitive list (.npz).")],
    shape: ShapeOption = "spheres",
    porosity: PorosityOption = 0.5,
    radius: RadiusOption = "10:15",
    height: HeightOption = "100:150",
    edge: EdgeOption = "20:30",
    orientation: OrientationOption = "uniform",
    kappa: Annotated[float, typer.Option(help="von Mises–Fisher concentration.")] = 20.0,
    window: Annotated[str, typer.Option(help="Window DEPTH,HEIGHT,WIDTH in voxels.")] = "128,256,256",
    pixel_size: Annotated[float, typer.Option(help="Voxel size in nm.")] = 5.0,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing OUT.")] = False,
) -> None:
    """Draw a Boolean model (Miles' formula sets the intensity from Φ) and save its primitive list."""
    from napari_sparse_sem.surrogate.geometry import generate, voxelize

    spec = _geometry_spec(
        shape, porosity, radius, height, edge, orientation, pixel_size, seed, kappa=kappa, window=_triple(window)
    )
    primitives = generate(spec)
    path = primitives.save(out, overwrite=overwrite)
    measured = 1.0 - float(voxelize(primitives).mean())
    summary = {"out": str(path), "particles": len(primitives), **primitives.counts(), "porosity_target": porosity}
    summary["porosity_voxelised"] = round(measured, 4)
    stdout_console().print(json.dumps(summary), markup=False)


@surrogate_app.command("make-dataset")
@clean_errors
def make_dataset_command(
    out: Annotated[Path, typer.Option(help="Zarr store to write (a folder ending in .zarr).")],
    geometries: Annotated[int, typer.Option(help="Training geometries (spheres and cylinders, Table 1 sets).")] = 12,
    held_out: Annotated[int, typer.Option(help="Held-out cube geometries (generalisation test).")] = 2,
    cuts: Annotated[int, typer.Option(help="Cut planes per geometry.")] = 3,
    spacing: Annotated[float, typer.Option(help="Distance between cut planes, voxels.")] = 10.0,
    size: Annotated[int, typer.Option(help="Image size in pixels (square).")] = 128,
    scale: Annotated[float, typer.Option(help="Scale Table 1's particle sizes by this factor.")] = 0.5,
    pixel_size: Annotated[float, typer.Option(help="Pixel size in nm.")] = 5.0,
    energy: Annotated[float, typer.Option(help="Beam energy in keV.")] = 2.0,
    electrons: Annotated[int, typer.Option(help="Electrons per pixel.")] = 100,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    resume: Annotated[bool, typer.Option(help="Continue an interrupted store with the same parameters.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing store.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Training pairs for the neural surrogate: 7-channel heightfield + normal map → Monte Carlo BSE and SE."""
    from napari_sparse_sem.outputs import check_writable_folder
    from napari_sparse_sem.surrogate.dataset import DatasetSpec, make_dataset
    from napari_sparse_sem.surrogate.montecarlo import MCConfig

    spec = DatasetSpec(
        geometries=geometries,
        held_out=held_out,
        cuts=cuts,
        spacing=spacing,
        size=size,
        scale=scale,
        pixel_size_nm=pixel_size,
        seed=seed,
        mc=MCConfig(energy_kev=energy, electrons_per_pixel=electrons, seed=seed),
    )
    check_writable_folder(out.parent)
    try:
        with progress_bar("make-dataset", quiet) as update:
            summary = run_job(make_dataset(spec, out, resume=resume, overwrite=overwrite), update)
    except KeyboardInterrupt as exc:
        kept = f"the finished samples are in {out}; continue with --resume." if out.exists() else "nothing written."
        raise stopped(exc, kept) from None
    stdout_console().print(json.dumps(summary), markup=False)


@surrogate_app.command()
@clean_errors
def train(
    dataset: Annotated[Path, typer.Argument(help="A make-dataset zarr store.")],
    out: Annotated[Path, typer.Option(help="Weights file to write (.safetensors; a model card .json goes beside it).")],
    layout: Annotated[str, typer.Option(help="resnet34, resnet34-half or compact.")] = "resnet34-half",
    representation: Annotated[str, typer.Option(help="ehf+normals, ehf or heightfield (the input channels).")] = (
        "ehf+normals"
    ),
    iterations: Annotated[int | None, typer.Option(help="Stop after this many iterations.")] = None,
    minutes: Annotated[float | None, typer.Option(help="Stop after this many minutes.")] = None,
    batch: Annotated[int, typer.Option(help="Crops per iteration.")] = 16,
    crop: Annotated[int, typer.Option(help="Crop size in pixels (a multiple of 16).")] = 96,
    lr: Annotated[float, typer.Option(help="Adam learning rate (cosine decay to 2 % of it).")] = 1e-3,
    loss: Annotated[str, typer.Option(help="l2 (default: unbiased on noisy MC targets) or l1 (the paper's).")] = "l2",
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    resume: Annotated[bool, typer.Option(help="Continue from OUT's checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace existing weights and checkpoint.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Train the neural BSE/SE surrogate on a make-dataset store (L1, Adam; resumable; learning curves saved)."""
    from napari_sparse_sem.outputs import check_not_input, check_writable_folder
    from napari_sparse_sem.surrogate.model import SurrogateConfig
    from napari_sparse_sem.surrogate.training import SurrogateTrainingConfig, train_surrogate_job

    if resume and overwrite:
        raise ValueError("--resume continues a training, --overwrite starts a new one: give one of them")
    check_not_input(out, [dataset])
    check_writable_folder(out.parent)
    config = SurrogateTrainingConfig(
        model=SurrogateConfig(layout=layout, representation=representation),
        iterations=iterations if iterations is not None or minutes is not None else 2000,
        minutes=minutes,
        batch=batch,
        crop=crop,
        lr=lr,
        loss=loss,
        seed=seed,
        device=device,
    )
    budget = " ".join(
        f for f in (f"--iterations {config.iterations}" if config.iterations else "",
                    f"--minutes {minutes:g}" if minutes else "") if f
    )  # fmt: skip
    command = (
        f"sparse-sem surrogate train {dataset} --out {out} --layout {layout} --representation {representation} "
        f"{budget} --batch {batch} --crop {crop} --lr {lr:g} --loss {loss} --seed {seed} --device {device}"
    )
    job = train_surrogate_job(dataset, out, config, resume=resume, overwrite=overwrite, command=command)
    try:
        with progress_bar("surrogate train", quiet) as update:
            result = run_job(job, update)
    except KeyboardInterrupt as exc:
        kept = f"saved a checkpoint to {out}; continue with --resume." if out.exists() else "nothing written."
        raise stopped(exc, kept) from None
    stdout_console().print(json.dumps(result), markup=False)


@surrogate_app.command("simulate-stack")
@clean_errors
def simulate_stack_command(
    out: Annotated[Path, typer.Option(help="Zarr store to write: arrays bse, se, solid (and *_clean with noise).")],
    shape: ShapeOption = "spheres",
    porosity: PorosityOption = 0.5,
    radius: RadiusOption = "10:15",
    height: HeightOption = "100:150",
    edge: EdgeOption = "20:30",
    orientation: OrientationOption = "uniform",
    primitives: Annotated[
        Path | None, typer.Option(help="A saved primitive list (.npz) instead of a new geometry.")
    ] = (None),
    slices: Annotated[int, typer.Option(help="Number of slices (cut planes).")] = 64,
    spacing: Annotated[float, typer.Option(help="Slice spacing Δz in voxels.")] = 1.0,
    size: Annotated[int, typer.Option(help="Image size in pixels (square).")] = 256,
    pixel_size: Annotated[float, typer.Option(help="Pixel size in nm.")] = 5.0,
    detector: Annotated[str, typer.Option(help="bse, se or both.")] = "both",
    dose: Annotated[float | None, typer.Option(help="Shot noise for this many electrons per pixel.")] = None,
    snr: Annotated[
        float | None, typer.Option(help="Shot noise for this SNR in flat solid areas (paper: 8.33).")
    ] = None,
    weights: Annotated[Path | None, typer.Option(help="Surrogate weights (default: the shipped ones).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed (geometry and noise).")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing OUT.")] = False,
    quiet: QuietOption = False,
) -> None:
    """A simulated FIB-SEM stack: geometry → heightfield per slice → surrogate BSE/SE (+ noise) + exact solid labels."""
    from napari_sparse_sem.outputs import check_not_input, check_writable_folder
    from napari_sparse_sem.surrogate.geometry import Primitives
    from napari_sparse_sem.surrogate.model import load_surrogate
    from napari_sparse_sem.surrogate.stack import StackSpec, save_stack, simulate_stack

    if Path(out).suffix != ".zarr":
        raise ValueError(f"the simulated stack is a zarr store: give a path ending in .zarr, got {Path(out).name!r}")
    if Path(out).exists() and not overwrite:
        raise FileExistsError(f"{out} exists; pass --overwrite to replace it or choose another --out")
    check_not_input(out, [primitives, weights])
    check_writable_folder(Path(out).parent)
    spec = StackSpec(slices=slices, spacing=spacing, size=size, detector=detector, dose=dose, snr=snr, seed=seed)
    if primitives is not None:
        source: GeometrySpec | Primitives = Primitives.load(primitives)
    else:
        source = _geometry_spec(shape, porosity, radius, height, edge, orientation, pixel_size, seed)
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
    size: Annotated[int, typer.Option(help="Image size when making the evaluation set.")] = 128,
    seed: Annotated[int, typer.Option(help="Seed of the evaluation set (the shipped weights were trained on 0).")] = 2,
    mc_rows: Annotated[int, typer.Option(help="Rows of Monte Carlo to time here per geometry class (0: skip).")] = 8,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing OUT/metrics.json.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Surrogate vs Monte Carlo on unseen cubes, spheres, cylinders: error % of range, systematic, SSIM, PSNR, speed."""
    from napari_sparse_sem.outputs import check_not_input, check_writable_folder, write_json
    from napari_sparse_sem.surrogate.dataset import DatasetSpec, make_dataset
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
            mc=MCConfig(electrons_per_pixel=electrons, seed=seed),
        )
        try:
            with progress_bar("evaluation set (Monte Carlo)", quiet) as update:
                run_job(make_dataset(spec, dataset, resume=dataset.exists()), update)
        except KeyboardInterrupt as exc:
            raise stopped(exc, f"the finished evaluation samples are in {dataset}; run again to continue.") from None
    with progress_bar("evaluate", quiet) as update:
        result = run_job(evaluate_job(surrogate, dataset, mc_rows=mc_rows), update)
    result |= {"dataset": str(dataset), "weights": str(weights or "shipped")}
    write_json(path, _no_nan(result))
    stdout_console().print(_metrics_table(result["records"]), markup=False)
    stdout_console().print(f"wrote {path}", markup=False)


def _no_nan(value: Any) -> Any:
    """NaN (e.g. no homogeneous area to measure noise in) as JSON null."""
    if isinstance(value, float) and value != value:
        return None
    if isinstance(value, dict):
        return {k: _no_nan(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_no_nan(v) for v in value]
    return value


def _metrics_table(records: list[dict]) -> str:
    lines = [
        "| signal | geometry | error % | systematic % | noise % | SSIM | PSNR | s surrogate | s MC | speed-up |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['signal'].upper()} | {r['geometry']} | {r['mean_error_pct']:.2f} | {r['systematic_error_pct']:.2f} "
            f"| {r['noise_pct']:.2f} | {r['ssim']:.3f} | {r['psnr']:.2f} | {r['seconds_surrogate']:.3f} "
            f"| {r['seconds_mc']:.1f} | {r['speedup']:.3g} |"
        )
    return "\n".join(lines)


def _geometry_spec(
    shape: str,
    porosity: float,
    radius: str,
    height: str,
    edge: str,
    orientation: str,
    pixel_size: float,
    seed: int,
    **more: Any,
) -> GeometrySpec:
    """The Boolean model of the shared geometry options (intervals parsed from LOW:HIGH); ``more`` sets other fields."""
    from napari_sparse_sem.surrogate.geometry import GeometrySpec

    return GeometrySpec(
        shape=shape,
        porosity=porosity,
        radius=_interval(radius, "--radius"),
        height=_interval(height, "--height"),
        edge=_interval(edge, "--edge"),
        orientation=orientation,
        pixel_size_nm=pixel_size,
        seed=seed,
        **more,
    )


def _interval(text: str, what: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(":"))
    except ValueError:
        raise ValueError(f"{what} takes LOW:HIGH, e.g. 10:15, got {text!r}") from None
    return low, high


def _triple(text: str) -> tuple[int, int, int]:
    try:
        depth, height, width = (int(v) for v in text.split(","))
    except ValueError:
        raise ValueError(f"--window takes DEPTH,HEIGHT,WIDTH in voxels, e.g. 128,256,256, got {text!r}") from None
    return depth, height, width
