"""Simulated FIB-SEM stacks: a porous geometry milled slice by slice, imaged by the neural surrogate.

FIB-SEM removes a layer of ``spacing`` voxels and images the new cut face; here the cut plane moves down by Δz,
each plane gets its heightfield + normal map (:mod:`~napari_sparse_sem.surrogate.heightfield`), the surrogate turns
that into BSE and SE images (:mod:`~napari_sparse_sem.surrogate.model`) and, optionally, shot noise is added for a dose
or an SNR (:mod:`~napari_sparse_sem.surrogate.noise`). The exact solid-phase labels of each cut come from the same
primitives, so everything downstream (masks, reconstruction, active acquisition, comparison) gets a benchmark with
exact ground truth. After Dahmen et al. (paper 004 in ../shared/papers), whose model made such stacks of 1 130 slices.

A pixel size other than the surrogate's training pixel size is handled by computing the heightfield on the model's
grid (the geometry scaled, nanometres unchanged) and resampling the images back: the physics is in nanometres.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_sparse_sem.params import Spec, param
from napari_sparse_sem.runtime import Job, Progress
from napari_sparse_sem.surrogate.geometry import GeometrySpec, Primitives, generate, voxelize

DETECTORS = ("both", "bse", "se")


@dataclass(frozen=True)
class StackSpec(Spec):
    """What to simulate: ``slices`` cut planes ``spacing`` voxels apart over a ``size`` × ``size`` field of view.

    ``dose`` (electrons per pixel) or ``snr`` (measured in flat solid areas, the paper's way; 8.33 in its data) adds
    shot noise; neither gives the noise-free expectation.
    """

    kind = "stack"

    slices: int = param(64, low=1, high=100_000, help="Number of slices (cut planes) to simulate.")
    spacing: float = param(1.0, low=0.0, low_open=True, unit="voxels", label="slice spacing Δz", help="Slice spacing.")
    size: int = param(256, low=16, high=8192, unit="px", help="Image side (square field of view).")
    detector: str = param("both", choices=DETECTORS, help="Detector images to make: bse, se or both.")
    dose: float | None = param(
        None,
        low=0.0,
        low_open=True,
        unit="e⁻/px",
        help="Shot noise for this many electrons per pixel (none: noise-free; not with an SNR).",
    )
    snr: float | None = param(
        None,
        low=0.0,
        low_open=True,
        label="SNR",
        help="Shot noise for this SNR in flat solid areas (paper: 8.33; not with a dose).",
    )
    seed: int = param(0, help="Random seed of the shot noise.")

    def validate(self) -> None:
        if self.dose is not None and self.snr is not None:
            raise ValueError("give a dose or an SNR for the noise, not both")

    @property
    def signals(self) -> tuple[str, ...]:
        """The detector images to make."""
        return ("bse", "se") if self.detector == "both" else (self.detector,)


@dataclass
class SimulatedStack:
    """The result: images per signal (z, y, x) float32, noise-free ones, solid labels (z, y, x) bool, voxel size."""

    images: dict[str, np.ndarray]
    clean: dict[str, np.ndarray]
    solid: np.ndarray
    voxel_size_nm: tuple[float, float, float]
    primitives: Primitives
    planes: list[float]
    metadata: dict[str, Any] = field(default_factory=dict)


def stack_window(spec: StackSpec, depth_below: float) -> tuple[int, int, int]:
    """Geometry window (depth, height, width) for the stack: every plane needs ``depth_below`` voxels of material."""
    depth = math.ceil(depth_below + (spec.slices - 1) * spec.spacing) + 2
    return depth, spec.size, spec.size


def simulate_stack(
    geometry: GeometrySpec | Primitives,
    spec: StackSpec,
    surrogate: Any = None,
    device: str = "auto",
) -> Job[SimulatedStack]:
    """Simulate the stack; one progress event per slice with the finished slice as partial ``(z, {signal: image})``.

    ``geometry`` is a spec (its window is replaced to fit the stack) or a saved primitive list (used as it is; its
    window must hold the planes). ``surrogate`` defaults to the shipped weights. Stopping early keeps nothing here:
    the caller keeps the partial slices it received.
    """
    from napari_sparse_sem.surrogate.heightfield import extended_heightfield
    from napari_sparse_sem.surrogate.model import SIGNALS, load_surrogate
    from napari_sparse_sem.surrogate.noise import homogeneous_mask

    started = time.perf_counter()
    if surrogate is None:
        surrogate = load_surrogate(None, device=device)
    config = surrogate.config
    yield Progress(0, spec.slices, "drawing particles")
    if isinstance(geometry, GeometrySpec):
        scale_to_model = geometry.pixel_size_nm / config.pixel_size_nm
        depth_below = config.no_surface / scale_to_model
        primitives = generate(replace(geometry, window=stack_window(spec, depth_below)))
    else:
        primitives = geometry
        if primitives.window[1] < spec.size or primitives.window[2] < spec.size:
            raise ValueError(
                f"the primitive list's window {primitives.window[1]}×{primitives.window[2]} is smaller than the "
                f"requested {spec.size}×{spec.size} pixels; lower --size"
            )
    pixel = primitives.pixel_size_nm
    factor = pixel / config.pixel_size_nm
    top = primitives.window[0] - 1.0
    planes = [top - k * spec.spacing for k in range(spec.slices)]
    if planes[-1] <= 0:
        raise ValueError(
            f"{spec.slices} slices {spec.spacing:g} voxels apart do not fit in the window's {primitives.window[0]} "
            "voxels of depth; use fewer slices or a deeper window"
        )
    model_primitives = primitives if abs(factor - 1.0) < 1e-9 else primitives.scaled(factor)
    model_size = max(16, round(spec.size * factor))
    out_shape = (spec.slices, spec.size, spec.size)
    clean = {s: np.zeros(out_shape, np.float32) for s in spec.signals}
    solid = np.zeros(out_shape, bool)
    flat = np.zeros(out_shape, bool)
    seconds = {"heightfield": 0.0, "surrogate": 0.0, "labels": 0.0}
    for z, z0 in enumerate(planes):
        t0 = time.perf_counter()
        hf = extended_heightfield(model_primitives, z0 * factor, max_depth=config.no_surface, device=surrogate.device)
        hf = hf[:, :model_size, :model_size]
        t1 = time.perf_counter()
        images = surrogate.predict(hf)
        t2 = time.perf_counter()
        mask = homogeneous_mask(hf)
        for k, name in enumerate(SIGNALS):
            if name in clean:
                clean[name][z] = _resample(images[k], spec.size)
        flat[z] = _resample(mask.astype(np.float32), spec.size) > 0.5
        layer = math.floor(z0 - 0.5)
        solid[z] = voxelize(primitives, (layer, layer + 1))[0][: spec.size, : spec.size]
        t3 = time.perf_counter()
        seconds["heightfield"] += t1 - t0
        seconds["surrogate"] += t2 - t1
        seconds["labels"] += t3 - t2
        yield Progress(z + 1, spec.slices, f"slice {z + 1}/{spec.slices}", partial=(z, {s: clean[s][z] for s in clean}))
    images_out, doses = _with_noise(clean, flat, spec)
    voxel = (spec.spacing * pixel, pixel, pixel)
    metadata = {
        "stack": spec.to_dict(),
        "geometry": primitives.spec.to_dict() if primitives.spec is not None else None,
        "particles": len(primitives),
        "porosity_voxelised": round(1.0 - float(solid.mean()), 4),
        "surrogate": {"weights_date": surrogate.card.get("date"), "config": config.to_dict()},
        "dose_electrons_per_pixel": doses,
        "seconds": {k: round(v, 3) for k, v in seconds.items()} | {"total": round(time.perf_counter() - started, 3)},
    }
    return SimulatedStack(images_out, clean, solid, voxel, primitives, planes, metadata)


def _resample(image: np.ndarray, size: int) -> np.ndarray:
    """``image`` resized to ``size`` × ``size`` (anti-aliased when shrinking); unchanged when it already fits."""
    if image.shape == (size, size):
        return image
    from skimage.transform import resize

    return resize(image, (size, size), order=1, anti_aliasing=image.shape[0] > size, preserve_range=True)


def _with_noise(
    clean: dict[str, np.ndarray], flat: np.ndarray, spec: StackSpec
) -> tuple[dict[str, np.ndarray], dict[str, float] | None]:
    """Shot-noise copies of the clean images (the dose per signal that was used), or the clean images themselves."""
    from napari_sparse_sem.surrogate.noise import add_shot_noise, dose_for_snr

    if spec.dose is None and spec.snr is None:
        return clean, None
    rng = np.random.default_rng(spec.seed)
    noisy, doses = {}, {}
    for name, stack in clean.items():
        dose = spec.dose if spec.dose is not None else dose_for_snr(stack, spec.snr, flat if flat.any() else None)
        noisy[name] = add_shot_noise(stack, dose, rng)
        doses[name] = float(dose)
    return noisy, doses


def save_stack(stack: SimulatedStack, out: str | Path, overwrite: bool = False) -> Path:
    """Write the stack as a zarr group with arrays ``bse``/``se`` (and ``*_clean``) and ``solid``.

    Each reads with ``read_volume(out, dataset=NAME)`` (or ``out.zarr:NAME``) with its voxel size; the primitive
    list goes beside the store as ``<name>.primitives.npz``.
    """
    import shutil

    import zarr

    from napari_sparse_sem.io.writers import METADATA_KEY, metadata_block

    out = Path(out)
    if out.suffix != ".zarr":
        raise ValueError(f"the stack is written as zarr: give a path ending in .zarr, got {out.name!r}")
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"{out} exists; pass --overwrite to replace it or choose another --out")
        shutil.rmtree(out)
    root = zarr.open_group(str(out), mode="w", zarr_format=2)
    arrays = dict(stack.images)
    if any(stack.images[k] is not stack.clean[k] for k in stack.images):
        arrays |= {f"{k}_clean": v for k, v in stack.clean.items()}
    arrays["solid"] = stack.solid.astype(np.uint8)
    for name, data in arrays.items():
        dtype = bool if name == "solid" else data.dtype
        array = root.create_array(
            name, shape=data.shape, chunks=(1, *data.shape[1:]), dtype=data.dtype, config={"write_empty_chunks": True}
        )  # every chunk written, so readers can tell a missing chunk from an all-zero slice
        array[:] = data
        array.attrs[METADATA_KEY] = metadata_block(dtype, stack.voxel_size_nm, {**stack.metadata, "what": name})
    root.attrs["simulated_stack"] = {"arrays": list(arrays), **stack.metadata}
    stack.primitives.save(out.with_name(out.stem + ".primitives.npz"), overwrite=True)
    return out
