"""``sparse-sem surrogate ...``: porous geometries, the Monte Carlo teacher and the surrogate's training data.

Kept apart from :mod:`napari_sparse_sem.cli` (which mounts it) so each command module stays small.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from napari_sparse_sem.cli import _clean_errors, _stdout, progress_bar
from napari_sparse_sem.runtime import run_job

surrogate_app = typer.Typer(
    help="Porous microstructures, extended heightfields, the Monte Carlo SEM teacher and its training data.",
    no_args_is_help=True,
)


@surrogate_app.command()
@_clean_errors
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
@_clean_errors
def geometry(
    out: Annotated[Path, typer.Option(help="Where to write the primitive list (.npz).")],
    shape: Annotated[str, typer.Option(help="spheres, cylinders, cubes or mixture.")] = "spheres",
    porosity: Annotated[float, typer.Option(help="Pore fraction Φ in (0, 1).")] = 0.5,
    radius: Annotated[str, typer.Option(help="Sphere/cylinder radius interval LOW:HIGH in voxels.")] = "10:15",
    height: Annotated[str, typer.Option(help="Cylinder height interval LOW:HIGH in voxels.")] = "100:150",
    edge: Annotated[str, typer.Option(help="Cube edge interval LOW:HIGH in voxels.")] = "20:30",
    orientation: Annotated[str, typer.Option(help="Cylinder axes: uniform or vmf (about z).")] = "uniform",
    kappa: Annotated[float, typer.Option(help="von Mises–Fisher concentration.")] = 20.0,
    window: Annotated[str, typer.Option(help="Window DEPTH,HEIGHT,WIDTH in voxels.")] = "128,256,256",
    pixel_size: Annotated[float, typer.Option(help="Voxel size in nm.")] = 5.0,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing OUT.")] = False,
) -> None:
    """Draw a Boolean model (Miles' formula sets the intensity from Φ) and save its primitive list."""
    from napari_sparse_sem.surrogate.geometry import GeometrySpec, generate, voxelize

    spec = GeometrySpec(
        shape=shape,
        porosity=porosity,
        radius=_interval(radius, "--radius"),
        height=_interval(height, "--height"),
        edge=_interval(edge, "--edge"),
        orientation=orientation,
        kappa=kappa,
        window=_triple(window),
        pixel_size_nm=pixel_size,
        seed=seed,
    )
    primitives = generate(spec)
    path = primitives.save(out, overwrite=overwrite)
    measured = 1.0 - float(voxelize(primitives).mean())
    summary = {"out": str(path), "particles": len(primitives), **primitives.counts(), "porosity_target": porosity}
    summary["porosity_voxelised"] = round(measured, 4)
    _stdout().print(json.dumps(summary), markup=False)


@surrogate_app.command("make-dataset")
@_clean_errors
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
) -> None:
    """Training pairs for the neural surrogate: 7-channel heightfield + normal map → Monte Carlo BSE and SE."""
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
    with progress_bar("make-dataset") as update:
        summary = run_job(make_dataset(spec, out, resume=resume, overwrite=overwrite), update)
    _stdout().print(json.dumps(summary), markup=False)


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
