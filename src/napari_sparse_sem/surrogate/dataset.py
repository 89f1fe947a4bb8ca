"""Training pairs for the neural surrogate: heightfield + normal map of a cut plane → Monte Carlo BSE and SE images.

Following Dahmen et al. (paper 004, section 2.5): Boolean models of spheres and cylinders from Table 1 are cut by
planes ``spacing`` voxels apart; for each cut the 7-channel representation (4-extended heightfield and normal map) and
the Monte Carlo BSE and SE images are stored. Cube models are generated too but marked ``split = "held-out"``: they
are the generalisation test. Everything goes into one zarr store whose attributes record every parameter; a
``done`` flag per sample makes an interrupted run resumable.

Sizes: the window is the image plus a lateral margin of one electron range on every side (electrons leaving the
window are lost, so the margin keeps the image free of edge effects) and a guard region below the deepest cut.

Counting: one *slice* is one sample, a 128² (``size``²) cut plane with its Monte Carlo BSE and SE images; a store has
``geometries × cuts`` training slices and ``held_out × cuts`` held-out ones. The shipped weights were trained on
:data:`SHIPPED_TRAINING_SLICES` slices; :func:`retrain_spec` is the ≥ 20× set of issue #19 and :func:`evaluation_spec`
its low-noise evaluation set, whose ``replicas`` independent Monte Carlo runs per slice let
:mod:`~napari_sparse_sem.surrogate.evaluate` measure the reference's own shot noise pixel by pixel.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
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
SHIPPED_TRAINING_SLICES = 69
"""Finished training slices (128², 50 e⁻/px) behind the shipped ``surrogate_carbon`` weights (their model card)."""
REPLICA_SEED_STRIDE = 1_000_003
"""Replica ``j`` of sample ``i`` traces with seed ``base(i) + j·stride``: streams apart from every other sample's."""


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
    replicas: int = param(
        1,
        low=1,
        high=16,
        help="Independent Monte Carlo runs per slice, electrons/replicas each, kept beside their mean "
        "(2 or more: the evaluation measures the reference's own noise per pixel).",
    )
    mc: MCConfig = param(default_factory=MCConfig, label="Monte Carlo", help="Settings of the Monte Carlo teacher.")

    def validate(self) -> None:
        if self.geometries + self.held_out < 1:
            raise ValueError("ask for at least one geometry (--geometries and --held-out are counts >= 0)")
        if self.mc.electrons_per_pixel % self.replicas:
            raise ValueError(
                f"--electrons ({self.mc.electrons_per_pixel}) must be a multiple of --replicas ({self.replicas}): "
                "each replica traces the same share"
            )

    @property
    def training_slices(self) -> int:
        """Training samples (one ``size``² cut plane each): ``geometries × cuts``."""
        return self.geometries * self.cuts

    @property
    def held_out_slices(self) -> int:
        """Held-out (cube) samples: ``held_out × cuts``."""
        return self.held_out * self.cuts

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


def teacher_config(mc: MCConfig, device: str) -> MCConfig:
    """``mc`` with the Monte Carlo teacher on ``device`` (cpu, cuda or auto).

    Needs ``MCConfig.device`` (the GPU teacher); without it only the CPU is possible, and asking for cuda is a clear
    error.
    """
    if "device" in MCConfig.__dataclass_fields__:
        return mc.replace(device=device)
    if device in ("cpu", "auto"):
        return mc
    raise ValueError(
        f"this napari-sparse-sem has no GPU Monte Carlo teacher (MCConfig.device): use cpu, not {device!r}"
    )


def teacher_device(mc: MCConfig) -> str:
    """Where ``mc`` traces: ``cpu`` or ``cuda`` (``auto`` resolved as numba does: cuda when a GPU is visible)."""
    device = str(getattr(mc, "device", "cpu") or "cpu").lower()
    if device == "auto":
        try:
            from numba import cuda

            return "cuda" if cuda.is_available() else "cpu"
        except Exception:  # no usable numba.cuda at all is "no GPU"
            return "cpu"
    return "cuda" if device.startswith("cuda") else "cpu"


def _without_device(spec: DatasetSpec) -> DatasetSpec:
    """``spec`` with the teacher's device left out: the same seeds give the same slices on any device."""
    if "device" in MCConfig.__dataclass_fields__:
        return spec.replace(mc=spec.mc.replace(device="cpu"))
    return spec


def _same_spec(saved: Any, spec: DatasetSpec) -> bool:
    """Whether a store's saved spec (with or without a schema version) describes ``spec`` (whatever the device)."""
    try:
        return _without_device(DatasetSpec.from_dict(saved)) == _without_device(spec)
    except (TypeError, ValueError):
        return False


def retrain_spec(
    electrons: int = 20, geometries: int = 1512, cuts: int = 1, held_out: int = 8, device: str = "cpu", seed: int = 0
) -> DatasetSpec:
    """Issue #19's training set: 1 512 geometries × 1 cut = 1 512 slices of 128² (21.9× the shipped 69).

    1 512 = 21 × 72 keeps the paper's proportions exactly (section 2.1 and Table 1: per parameter combination three
    sphere, two von Mises–Fisher and one uniform cylinder realisation, so 18 sphere and 54 cylinder structures in
    every 72). One cut per geometry, not the paper's 27 cuts 10 voxels apart (section 2.5): for the same slice count
    the slices are independent, and the window is shallowest (the Monte Carlo's cell grid is built for the whole
    window for every slice). ``held_out`` cube geometries give the training's validation curve. ``electrons`` per
    pixel is what the time allows (``benchmarks/surrogate_gpu_retrain.py --plan``).
    """
    mc = teacher_config(MCConfig(electrons_per_pixel=electrons, seed=seed), device)
    return DatasetSpec(geometries=geometries, held_out=held_out, cuts=cuts, spacing=12.0, size=128, seed=seed, mc=mc)


def evaluation_spec(
    electrons: int = 8000, cubes: int = 4, geometries: int = 0, replicas: int = 2, device: str = "cpu", seed: int = 2
) -> DatasetSpec:
    """The low-noise evaluation set: held-out cube slices (and ``geometries`` unseen spheres/cylinders), one cut each.

    8 000 e⁻/px as 2 replicas of 4 000: each replica alone meets issue #19's ≥ 4 000, and their difference measures
    the reference's own noise per pixel. Seed 2 never meets the training seeds (geometry seeds ``seed·100003 + k``).
    """
    mc = teacher_config(MCConfig(electrons_per_pixel=electrons, seed=seed), device)
    return DatasetSpec(geometries=geometries, held_out=cubes, cuts=1, size=128, seed=seed, replicas=replicas, mc=mc)


def projected_seconds(spec: DatasetSpec, trajectories_per_second: float, slices: int | None = None) -> float:
    """Monte Carlo seconds for ``slices`` (default: all) of ``spec`` at ``trajectories_per_second``."""
    count = spec.training_slices + spec.held_out_slices if slices is None else slices
    return count * spec.size**2 * spec.mc.electrons_per_pixel / trajectories_per_second


def make_dataset(
    spec: DatasetSpec,
    out: str | Path,
    resume: bool = False,
    overwrite: bool = False,
    held_out_first: bool = False,
    workers: int = 1,
) -> Job[dict]:
    """Write the dataset to the zarr store ``out``; one progress event per finished sample; returns a summary.

    ``held_out_first`` computes the held-out geometries before the training ones (the same samples, indices and
    seeds; only the order differs), so a run stopped early has its evaluation slices. With ``spec.replicas`` > 1 the
    store also holds ``bse_replicas`` and ``se_replicas`` (n, replicas, size, size); ``bse``/``se`` are their mean.
    The heightfield is computed on the GPU when the teacher runs there.

    ``workers`` > 1 computes geometries in that many processes (the usable cores shared between them), which write
    their samples' arrays; this process alone writes the ``done`` flags, so a stopped run (its workers are
    terminated) resumes cleanly. The samples are the same whatever the count: their seeds depend on their index.
    Worth it beside a GPU teacher, whose slices otherwise wait for the serial host work of each one (the Monte
    Carlo's cell grid, the heightfield, the writes).
    """
    import zarr

    out = Path(out)
    if out.suffix != ".zarr":
        raise ValueError(f"the dataset is a zarr store: give a path ending in .zarr, got {out.name!r}")
    plan = plan_geometries(spec)
    planes = spec.cut_planes()
    n = len(plan) * len(planes)
    if out.exists() and resume:
        root = zarr.open_group(str(out), mode="r+")
        if not _same_spec(root.attrs.get("spec"), spec):
            raise ValueError(f"{out} was written with other parameters; resume with the same ones or choose --out")
    elif out.exists() and not overwrite:
        raise FileExistsError(
            f"{out} exists; pass --resume to continue it, --overwrite to replace it, or another --out"
        )
    else:
        root = _create_store(out, spec, plan, planes)
    done = root["done"][:]
    yield Progress(int(done.sum()), n, f"dataset: {int(done.sum())}/{n} samples done")
    order = list(range(len(plan)))
    if held_out_first:
        order.sort(key=lambda g: plan[g][0] != "held-out")
    pending = [(g, [g * len(planes) + c for c in range(len(planes)) if not done[g * len(planes) + c]]) for g in order]
    pending = [(g, indices) for g, indices in pending if indices]
    seconds = 0.0
    computed = _computed(out, spec, plan, pending, workers)
    try:
        for results in computed:
            for index, took in results:
                if "seconds" in root:
                    root["seconds"][index] = took
                root["done"][index] = True
                seconds += took
                done[index] = True
                finished = int(done.sum())
                yield Progress(finished, n, f"dataset: {finished}/{n} samples ({took:.1f} s Monte Carlo)")
    finally:
        computed.close()  # stops the workers now when the job is stopped
    return {
        "out": str(out),
        "samples": n,
        "done": int(done.sum()),
        "window": list(spec.window()),
        "mc_seconds": round(seconds, 3),
        "device": teacher_device(spec.mc),
    }


def _create_store(out: Path, spec: DatasetSpec, plan: list, planes: list[float]) -> Any:
    """A new store with NaN-filled arrays, ``done`` flags and the attributes that describe every sample."""
    import zarr

    n, s = len(plan) * len(planes), spec.size
    root = zarr.open_group(str(out), mode="w")
    root.create_array("inputs", shape=(n, 7, s, s), chunks=(1, 7, s, s), dtype="float32", fill_value=np.nan)
    for name in ("bse", "se"):
        root.create_array(name, shape=(n, s, s), chunks=(1, s, s), dtype="float32", fill_value=np.nan)
        if spec.replicas > 1:
            shape, chunks = (n, spec.replicas, s, s), (1, spec.replicas, s, s)
            root.create_array(f"{name}_replicas", shape=shape, chunks=chunks, dtype="float32", fill_value=np.nan)
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
            "replicas": spec.replicas,
        }
    )
    return root


def _heightfield_device(mc: MCConfig) -> str:
    """The heightfield's torch device: the GPU when the teacher runs there and torch sees one, else the CPU."""
    if teacher_device(mc) != "cuda":
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def _computed(
    out: Path, spec: DatasetSpec, plan: list, pending: list[tuple[int, list[int]]], workers: int
) -> Iterator[list[tuple[int, float]]]:
    """(index, Monte Carlo seconds) of the samples of each geometry in ``pending`` once their arrays are written."""
    import zarr

    if workers <= 1 or len(pending) <= 1:
        root = zarr.open_group(str(out), mode="r+")
        planes = spec.cut_planes()
        for g, indices in pending:
            primitives = generate(plan[g][2])
            for index in indices:
                yield [(index, _write_sample(root, spec, primitives, index, planes[index % len(planes)]))]
        return
    import multiprocessing

    from napari_sparse_sem.threads import usable_cores

    threads = max(1, usable_cores() // workers)
    context = multiprocessing.get_context("spawn")  # no fork: CUDA and numba's thread pools do not survive one
    pool = context.Pool(min(workers, len(pending)), initializer=_worker_start, initargs=(threads,))
    try:
        yield from pool.imap_unordered(_geometry_task, [(str(out), spec.to_dict(), g, ix) for g, ix in pending])
        pool.close()
        pool.join()
    finally:
        pool.terminate()  # a stop (or an error) ends the workers now; their samples without a done flag are redone


def _worker_start(threads: int) -> None:
    """A worker process's share of the cores."""
    from napari_sparse_sem.threads import set_threads

    set_threads(threads)


def _geometry_task(task: tuple[str, dict, int, list[int]]) -> list[tuple[int, float]]:
    """In a worker: write the samples ``indices`` of geometry ``g``; (index, Monte Carlo seconds) of each."""
    import zarr

    out, saved, g, indices = task
    spec = DatasetSpec.from_dict(saved)
    root = zarr.open_group(out, mode="r+")
    planes = spec.cut_planes()
    primitives = generate(plan_geometries(spec)[g][2])
    return [(i, _write_sample(root, spec, primitives, i, planes[i % len(planes)])) for i in indices]


def _write_sample(root: Any, spec: DatasetSpec, primitives: Any, index: int, z0: float) -> float:
    """Heightfield, Monte Carlo (every replica) and solid layer of sample ``index``, written; its MC seconds.

    The ``done`` flag and the seconds are the caller's to write (one writer for those shared arrays).
    """
    from napari_sparse_sem.surrogate.heightfield import extended_heightfield

    s, m = spec.size, spec.margin
    crop = (slice(m, m + s), slice(m, m + s))
    ehf = extended_heightfield(primitives, z0, max_depth=float(spec.guard), device=_heightfield_device(spec.mc))
    ehf[:4][~np.isfinite(ehf[:4])] = spec.guard
    base = spec.mc.seed * 100_003 + index
    share = spec.mc.electrons_per_pixel // spec.replicas
    runs = []
    for j in range(spec.replicas):
        mc = replace(spec.mc, seed=base + j * REPLICA_SEED_STRIDE)
        if spec.replicas > 1:
            mc = replace(mc, electrons_per_pixel=share)
        runs.append(run_job(simulate_slice(primitives, z0, mc, region=(m, m + s, m, m + s))))
    bse = np.stack([r.bse for r in runs]).astype(np.float32)
    se = np.stack([r.se for r in runs]).astype(np.float32)
    if spec.replicas > 1:
        root["bse_replicas"][index] = bse
        root["se_replicas"][index] = se
    root["inputs"][index] = ehf[:, crop[0], crop[1]]
    root["bse"][index] = bse.mean(axis=0)
    root["se"][index] = se.mean(axis=0)
    plane = math.floor(z0 - 0.5)  # the voxel layer just below the cut plane
    root["solid"][index] = voxelize(primitives, (plane, plane + 1))[0][crop]
    return float(sum(r.seconds for r in runs))


def read_replicas(path: str | Path, indices: Any) -> dict[str, np.ndarray] | None:
    """``{"bse": (k, replicas, s, s), "se": ...}`` of the store's samples ``indices``; None for a one-replica store."""
    import zarr

    root = zarr.open_group(str(path), mode="r")
    if "bse_replicas" not in root or "se_replicas" not in root:
        return None
    keep = np.asarray(indices, dtype=np.int64)
    return {name: np.asarray(root[f"{name}_replicas"].get_orthogonal_selection((keep,))) for name in ("bse", "se")}
