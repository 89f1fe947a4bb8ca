"""Training pairs for the neural surrogate: heightfield + normal map of a cut plane → Monte Carlo BSE and SE images.

Following Dahmen et al. (paper 004, section 2.5): Boolean models of spheres and cylinders from Table 1 are cut by
planes ``spacing`` voxels apart; for each cut the 7-channel representation (4-extended heightfield and normal map) and
the Monte Carlo BSE and SE images are stored. Cube models are generated too but marked ``split = "held-out"``: they
are the generalisation test. Everything goes into one zarr store whose attributes record every parameter; a
``done`` flag per sample makes an interrupted run resumable.

Sizes: the window is the image plus a lateral margin of one electron range on every side (electrons leaving the
window are lost, so the margin keeps the image free of edge effects) and a guard region below the deepest cut.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_sparse_sem.params import Spec, param
from napari_sparse_sem.runtime import Job, Progress, run_job
from napari_sparse_sem.surrogate.geometry import GeometrySpec, generate, pixel_size_param, table1_presets, voxelize
from napari_sparse_sem.surrogate.materials import kanaya_okayama_range_nm
from napari_sparse_sem.surrogate.montecarlo import MCConfig, simulate_slice

FORMAT_VERSION = 2


@dataclass(frozen=True)
class DatasetSpec(Spec):
    """What :func:`make_dataset` writes: counts, image size, Table 1 size scale, pixel size and the MC settings."""

    kind = "dataset"

    geometries: int = param(12, low=0, help="Training geometries (Table 1 spheres and cylinders).")
    held_out: int = param(2, low=0, help="Held-out cube geometries (the generalisation test).")
    cuts: int = param(3, low=1, help="Cut planes per geometry.")
    spacing: float = param(10.0, low=0.0, low_open=True, unit="voxels", help="Distance between the cut planes.")
    size: int = param(128, low=16, high=2048, unit="px", help="Image side of every sample (square).")
    scale: float = param(0.5, low=0.05, high=4.0, help="Factor on Table 1's particle sizes.")
    pixel_size_nm: float = pixel_size_param()
    seed: int = param(0, help="Random seed of the geometry plan and the particle draws.")
    mc: MCConfig = param(default_factory=MCConfig, label="Monte Carlo", help="Settings of the Monte Carlo teacher.")

    def validate(self) -> None:
        if self.geometries + self.held_out < 1:
            raise ValueError("ask for at least one geometry (--geometries and --held-out are counts >= 0)")

    @property
    def range_voxels(self) -> int:
        """The Kanaya–Okayama range of the beam in voxels (rounded up)."""
        return math.ceil(kanaya_okayama_range_nm(self.mc.material, self.mc.energy_kev) / self.pixel_size_nm)

    @property
    def margin(self) -> int:
        """Lateral margin of the window around the image, voxels."""
        return self.range_voxels + 2

    @property
    def guard(self) -> int:
        """Solid-or-pore guard region below the deepest cut plane, voxels (also the heightfield's depth limit)."""
        return max(2 * self.range_voxels, 32)

    def window(self) -> tuple[int, int, int]:
        """(depth, height, width) of each geometry's window."""
        side = self.size + 2 * self.margin
        depth = self.guard + math.ceil((self.cuts - 1) * self.spacing) + 1
        return depth, side, side

    def cut_planes(self) -> list[float]:
        """Heights z0 of the cut planes, top first."""
        top = float(self.window()[0] - 1)
        return [top - k * self.spacing for k in range(self.cuts)]


def plan_geometries(spec: DatasetSpec) -> list[tuple[str, str, GeometrySpec]]:
    """(split, preset name, geometry) for every geometry: Table 1 spheres/cylinders, then held-out cubes.

    Training presets are drawn in the paper's proportions: three realisations per sphere set, two per von Mises–Fisher
    cylinder set and one per uniform cylinder set (18 sphere and 54 cylinder structures in 72 geometries).
    """
    presets = table1_presets()
    rng = np.random.default_rng(spec.seed)
    weight = {"spheres": 3, "vmf": 2, "uniform": 1}
    train = [
        n
        for n, p in presets.items()
        if p.shape != "cubes"
        for _ in range(weight["spheres" if p.shape == "spheres" else p.orientation])
    ]
    cubes = [n for n in presets if n.startswith("cubes")]
    order = [train[i] for i in rng.permutation(len(train))]
    cube_order = [cubes[i] for i in rng.permutation(len(cubes))]
    plan = []
    for k in range(spec.geometries + spec.held_out):
        split, names = ("train", order) if k < spec.geometries else ("held-out", cube_order)
        name = names[(k if split == "train" else k - spec.geometries) % len(names)]
        preset = presets[name]
        geometry = replace(
            preset,
            radius=tuple(v * spec.scale for v in preset.radius),
            height=tuple(v * spec.scale for v in preset.height),
            edge=tuple(v * spec.scale for v in preset.edge),
            window=spec.window(),
            pixel_size_nm=spec.pixel_size_nm,
            seed=spec.seed * 100_003 + k,
        )
        plan.append((split, name, geometry))
    return plan


def _same_spec(saved: Any, spec: DatasetSpec) -> bool:
    """Whether a store's saved spec (with or without a schema version) describes ``spec``."""
    try:
        return DatasetSpec.from_dict(saved) == spec
    except (TypeError, ValueError):
        return False


def make_dataset(spec: DatasetSpec, out: str | Path, resume: bool = False, overwrite: bool = False) -> Job[dict]:
    """Write the dataset to the zarr store ``out``; one progress event per finished sample; returns a summary."""
    import zarr

    from napari_sparse_sem.surrogate.heightfield import extended_heightfield

    out = Path(out)
    if out.suffix != ".zarr":
        raise ValueError(f"the dataset is a zarr store: give a path ending in .zarr, got {out.name!r}")
    plan = plan_geometries(spec)
    planes = spec.cut_planes()
    n = len(plan) * len(planes)
    s, m = spec.size, spec.margin
    if out.exists() and resume:
        root = zarr.open_group(str(out), mode="r+")
        if not _same_spec(root.attrs.get("spec"), spec):
            raise ValueError(f"{out} was written with other parameters; resume with the same ones or choose --out")
    elif out.exists() and not overwrite:
        raise FileExistsError(
            f"{out} exists; pass --resume to continue it, --overwrite to replace it, or another --out"
        )
    else:
        root = zarr.open_group(str(out), mode="w")
        root.create_array("inputs", shape=(n, 7, s, s), chunks=(1, 7, s, s), dtype="float32", fill_value=np.nan)
        for name in ("bse", "se"):
            root.create_array(name, shape=(n, s, s), chunks=(1, s, s), dtype="float32", fill_value=np.nan)
        root.create_array("solid", shape=(n, s, s), chunks=(1, s, s), dtype="bool", fill_value=False)
        root.create_array("done", shape=(n,), chunks=(n,), dtype="bool", fill_value=False)
        root.create_array("seconds", shape=(n,), chunks=(n,), dtype="float64", fill_value=np.nan)
        samples = [
            {"index": g * len(planes) + c, "split": split, "preset": name, "z0": z0, "geometry": geometry.to_dict()}
            for g, (split, name, geometry) in enumerate(plan)
            for c, z0 in enumerate(planes)
        ]
        root.attrs.update(
            {
                "format_version": FORMAT_VERSION,
                "spec": spec.to_dict(),
                "samples": samples,
                "channels": ["entry1", "exit1", "entry2", "exit2", "normal_x", "normal_y", "normal_z"],
                "no_surface_value": float(spec.guard),
                "units": "heightfield depths in voxels below the cut plane; bse = backscattered fraction, "
                "se = SE yield per primary electron",
                "electrons_per_pixel": spec.mc.electrons_per_pixel,
            }
        )
    done = root["done"][:]
    yield Progress(int(done.sum()), n, f"dataset: {int(done.sum())}/{n} samples done")
    crop = (slice(m, m + s), slice(m, m + s))
    for g, (_split, _name, geometry) in enumerate(plan):
        indices = [g * len(planes) + c for c in range(len(planes))]
        if all(done[i] for i in indices):
            continue
        primitives = generate(geometry)
        for index, z0 in zip(indices, planes, strict=True):
            if done[index]:
                continue
            ehf = extended_heightfield(primitives, z0, max_depth=float(spec.guard))
            ehf[:4][~np.isfinite(ehf[:4])] = spec.guard
            mc = replace(spec.mc, seed=spec.mc.seed * 100_003 + index)
            result = run_job(simulate_slice(primitives, z0, mc, region=(m, m + s, m, m + s)))
            root["inputs"][index] = ehf[:, crop[0], crop[1]]
            root["bse"][index] = result.bse.astype(np.float32)
            root["se"][index] = result.se.astype(np.float32)
            plane = math.floor(z0 - 0.5)  # the voxel layer just below the cut plane
            root["solid"][index] = voxelize(primitives, (plane, plane + 1))[0][crop]
            if "seconds" in root:
                root["seconds"][index] = result.seconds
            root["done"][index] = True
            done[index] = True
            finished = int(done.sum())
            yield Progress(finished, n, f"dataset: {finished}/{n} samples ({result.seconds:.1f} s Monte Carlo)")
    return {"out": str(out), "samples": n, "done": int(done.sum()), "window": list(spec.window())}
