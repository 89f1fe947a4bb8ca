"""Porous microstructures as stationary Boolean models of convex particles (Dahmen et al., section 2.1).

The **particles are the solid** and their complement is the pore space. Particle centres are a stationary Poisson
process; each centre gets an independent random particle (sphere, cylinder or cube). Miles' formula ties the pore
fraction Φ to the intensity: Φ = exp(−λ·E[V]), so λ = −ln(Φ)/E[V]. Centres are drawn in the window enlarged on every
side by the largest particle extent, so particles that stick into the window from outside are there too (no edge
deficit).

Coordinates: points are ``(x, y, z)`` in voxel units with ``z`` pointing **up** (the beam travels along −z); the window
spans ``[0, width) × [0, height) × [0, depth)``. Volumes made from it are indexed ``[z, y, x]`` like every volume in
this package. ``pixel_size_nm`` gives the physical size of one voxel.

Reference: T. Dahmen, M. Kronenberger, K. Schladitz, N. Rottmayer, C. Redenbach, "A Neural Model for
High-Performance Scanning Electron Microscopy Image Simulation of Porous Materials" (paper 004 in ../shared/papers);
R. E. Miles, "On the homogeneous planar Poisson point process" (1970) for the porosity formula.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_sparse_sem.params import Spec, param

SPHERE, CYLINDER, CUBE = 0, 1, 2
KIND_NAMES = ("sphere", "cylinder", "cube")
SHAPES = ("spheres", "cylinders", "cubes", "mixture")
ORIENTATIONS = ("uniform", "vmf")


def pixel_size_param(help: str = "Physical size of one voxel.", **shown: Any) -> Any:
    """The ``pixel_size_nm`` field of the surrogate's models (geometry, dataset, network): one declaration."""
    return param(5.0, low=0.0, low_open=True, unit="nm", label="pixel size", help=help, flag="pixel-size", **shown)


@dataclass(frozen=True)
class GeometrySpec(Spec):
    """Parameters of a Boolean model in a voxel window; lengths in voxels, ``pixel_size_nm`` per voxel.

    ``shape`` is ``spheres``, ``cylinders``, ``cubes`` or ``mixture``; a mixture draws each particle's kind with the
    probabilities ``mixture`` = (spheres, cylinders, cubes). Radii, heights and edges are uniform on their intervals;
    ``height`` is a cylinder's full height, ``edge`` a cube's full edge. Cylinder axes are uniform on the sphere or von
    Mises–Fisher about z with concentration ``kappa``; cubes get a uniformly random rotation.
    """

    kind = "geometry"

    shape: str = param("spheres", choices=SHAPES, help="Particle shape: spheres, cylinders, cubes or a mixture.")
    porosity: float = param(
        0.5,
        low=0.0,
        high=1.0,
        low_open=True,
        high_open=True,
        step=0.05,
        label="porosity Φ",
        help="Pore fraction Φ of the volume, strictly between 0 and 1.",
    )
    radius: tuple[float, float] = param(
        (10.0, 15.0), unit="voxels", help="Sphere/cylinder radius interval (low, high); radii are uniform on it."
    )
    height: tuple[float, float] = param(
        (100.0, 150.0), unit="voxels", help="Cylinder full-height interval (low, high)."
    )
    edge: tuple[float, float] = param((20.0, 30.0), unit="voxels", help="Cube full-edge interval (low, high).")
    orientation: str = param(
        "uniform", choices=ORIENTATIONS, help="Cylinder axes: uniform on the sphere or von Mises–Fisher about z (vmf)."
    )
    kappa: float = param(
        20.0, low=0.0, low_open=True, label="κ", help="Concentration of the von Mises–Fisher cylinder axes about z."
    )
    mixture: tuple[float, float, float] = param(
        (1 / 3, 1 / 3, 1 / 3), help="Weights of (spheres, cylinders, cubes) in a mixture; normalised to sum 1."
    )
    window: tuple[int, int, int] = param(
        (128, 256, 256), unit="voxels", help="Size of the voxel window (depth, height, width)."
    )
    pixel_size_nm: float = pixel_size_param()
    seed: int = param(0, help="Random seed of the particle draw.")

    def validate(self) -> None:
        for name in ("radius", "height", "edge"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise ValueError(f"{name} must be an interval 0 < low <= high, got ({low}, {high})")
        if len(self.window) != 3 or min(self.window) < 1:
            raise ValueError(f"window is (depth, height, width) in voxels, each >= 1, got {self.window}")
        weights = np.asarray(self.mixture, dtype=float)
        if weights.shape != (3,) or weights.min() < 0 or weights.sum() <= 0:
            raise ValueError(f"mixture is three non-negative weights (spheres, cylinders, cubes), got {self.mixture}")

    @property
    def kind_probabilities(self) -> np.ndarray:
        """Probability of each particle kind (sphere, cylinder, cube)."""
        if self.shape == "mixture":
            weights = np.asarray(self.mixture, dtype=float)
            return weights / weights.sum()
        probabilities = np.zeros(3)
        probabilities[SHAPES.index(self.shape)] = 1.0
        return probabilities

    def mean_volume(self) -> float:
        """Mean particle volume E[V] in voxels³ (what Miles' formula divides by)."""
        volumes = (
            4.0 / 3.0 * math.pi * _uniform_moment(self.radius, 3),
            math.pi * _uniform_moment(self.radius, 2) * _uniform_moment(self.height, 1),
            _uniform_moment(self.edge, 3),
        )
        return float(np.dot(self.kind_probabilities, volumes))

    def intensity(self) -> float:
        """Particle centres per voxel³ for the target porosity: λ = −ln(Φ)/E[V]."""
        return -math.log(self.porosity) / self.mean_volume()

    def max_extent(self) -> float:
        """Largest distance from a particle's centre to its surface, over the kinds in use."""
        extents = (
            self.radius[1],
            math.hypot(self.radius[1], self.height[1] / 2),
            self.edge[1] * math.sqrt(3) / 2,
        )
        return max(e for e, p in zip(extents, self.kind_probabilities, strict=True) if p > 0)


def _uniform_moment(interval: tuple[float, float], power: int) -> float:
    """E[X^power] for X uniform on ``interval``."""
    low, high = interval
    if high == low:
        return float(low**power)
    return (high ** (power + 1) - low ** (power + 1)) / ((power + 1) * (high - low))


def table1_presets() -> dict[str, GeometrySpec]:
    """The parameter sets of Dahmen et al. Table 1 (plus held-out cube sets), named ``<shape>-<sizes>-p<Φ>``.

    Spheres: radius [10, 15] or [30, 50]; cylinders: radius [5, 10], [10, 20] or [30, 50], height [100, 150] or
    [300, 500], orientation uniform or von Mises–Fisher (κ = 20); porosity 0.3, 0.5, 0.7. Cubes are not in the paper's
    training table: they are its generalisation test, here with edges of the sphere diameters.
    """
    presets: dict[str, GeometrySpec] = {}
    for porosity in (0.3, 0.5, 0.7):
        tag = f"p{porosity:.1f}"
        for radius in ((10.0, 15.0), (30.0, 50.0)):
            presets[f"spheres-r{radius[0]:g}-{radius[1]:g}-{tag}"] = GeometrySpec("spheres", porosity, radius=radius)
            edge = (2 * radius[0], 2 * radius[1])
            presets[f"cubes-e{edge[0]:g}-{edge[1]:g}-{tag}"] = GeometrySpec("cubes", porosity, edge=edge)
        for radius in ((5.0, 10.0), (10.0, 20.0), (30.0, 50.0)):
            for height in ((100.0, 150.0), (300.0, 500.0)):
                for orientation in ORIENTATIONS:
                    name = f"cylinders-r{radius[0]:g}-{radius[1]:g}-h{height[0]:g}-{height[1]:g}-{orientation}-{tag}"
                    presets[name] = GeometrySpec(
                        "cylinders", porosity, radius=radius, height=height, orientation=orientation
                    )
    return presets


@dataclass
class Primitives:
    """A list of convex particles as arrays: the solid phase is their union.

    ``kind`` (N,) is SPHERE, CYLINDER or CUBE; ``center`` (N, 3) is (x, y, z); ``radius`` is a sphere's or cylinder's
    radius or half a cube's edge; ``half_height`` half a cylinder's height (0 otherwise); ``rotation`` (N, 3, 3) has the
    particle's local axes as columns (the third is a cylinder's axis). ``spec`` is what generated them, if anything.
    """

    kind: np.ndarray
    center: np.ndarray
    radius: np.ndarray
    half_height: np.ndarray
    rotation: np.ndarray
    window: tuple[int, int, int]
    pixel_size_nm: float = 1.0
    spec: GeometrySpec | None = field(default=None)

    def __len__(self) -> int:
        return int(self.kind.shape[0])

    def bounding_boxes(self) -> tuple[np.ndarray, np.ndarray]:
        """Axis-aligned bounds (low, high), each (N, 3) in (x, y, z)."""
        half = np.empty((len(self), 3))
        spheres = self.kind == SPHERE
        half[spheres] = self.radius[spheres, None]
        cylinders = self.kind == CYLINDER
        if cylinders.any():
            axis = self.rotation[cylinders, :, 2]
            r = self.radius[cylinders, None]
            h = self.half_height[cylinders, None]
            half[cylinders] = r * np.sqrt(np.clip(1.0 - axis**2, 0.0, 1.0)) + h * np.abs(axis)
        cubes = self.kind == CUBE
        if cubes.any():
            half[cubes] = self.radius[cubes, None] * np.abs(self.rotation[cubes]).sum(axis=2)
        return self.center - half, self.center + half

    def counts(self) -> dict[str, int]:
        """How many particles of each kind."""
        return {name: int((self.kind == k).sum()) for k, name in enumerate(KIND_NAMES)}

    def save(self, path: str | Path, overwrite: bool = False) -> Path:
        """Write the list to ``.npz`` (arrays + the spec as JSON); refuses to replace a file unless asked."""
        path = Path(path)
        if path.suffix != ".npz":
            raise ValueError(f"primitive lists are saved as .npz, got {path.name!r}")
        if path.exists() and not overwrite:
            raise FileExistsError(f"{path} exists; pass overwrite=True (--overwrite) or choose another name")
        meta = {"window": list(self.window), "pixel_size_nm": self.pixel_size_nm}
        if self.spec is not None:
            meta["spec"] = self.spec.to_dict()
        np.savez_compressed(
            path,
            kind=self.kind,
            center=self.center,
            radius=self.radius,
            half_height=self.half_height,
            rotation=self.rotation,
            meta=np.array(json.dumps(meta)),
        )
        return path

    @classmethod
    def load(cls, path: str | Path) -> Primitives:
        """Read a list written by :meth:`save` (no pickles are allowed in the file)."""
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"no primitive list at {path}")
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {k: data[k] for k in ("kind", "center", "radius", "half_height", "rotation")}
                meta = json.loads(str(data["meta"]))
        except (KeyError, ValueError, OSError) as error:
            raise ValueError(f"{path} is not a primitive list written by Primitives.save: {error}") from error
        spec = GeometrySpec.from_dict(meta["spec"]) if "spec" in meta else None
        return cls(
            **arrays,
            window=tuple(int(v) for v in meta["window"]),
            pixel_size_nm=float(meta["pixel_size_nm"]),
            spec=spec,
        )

    def scaled(self, factor: float) -> Primitives:
        """The same structure on a grid ``factor`` times finer (voxel size divided by ``factor``; nm unchanged)."""
        if factor <= 0:
            raise ValueError(f"the scale factor must be positive, got {factor}")
        window = tuple(max(1, round(n * factor)) for n in self.window)
        return replace(
            self,
            center=self.center * factor,
            radius=self.radius * factor,
            half_height=self.half_height * factor,
            window=window,
            pixel_size_nm=self.pixel_size_nm / factor,
        )

    def shifted(self, dz: float) -> Primitives:
        """The same particles moved by ``dz`` voxels along z (used to lay slabs on top of each other)."""
        center = self.center.copy()
        center[:, 2] += dz
        return replace(self, center=center)


def generate(spec: GeometrySpec) -> Primitives:
    """Draw one realisation of the Boolean model of ``spec`` (seeded: the same spec gives the same list)."""
    rng = np.random.default_rng(spec.seed)
    depth, height, width = spec.window
    margin = spec.max_extent()
    low = np.array([-margin, -margin, -margin])
    high = np.array([width + margin, height + margin, depth + margin])
    count = int(rng.poisson(spec.intensity() * float(np.prod(high - low))))
    center = low + rng.random((count, 3)) * (high - low)
    kind = rng.choice(3, size=count, p=spec.kind_probabilities).astype(np.int8)
    radius = np.zeros(count)
    half_height = np.zeros(count)
    rotation = np.broadcast_to(np.eye(3), (count, 3, 3)).copy()
    for k in (SPHERE, CYLINDER, CUBE):
        chosen = np.flatnonzero(kind == k)
        n = chosen.size
        if n == 0:
            continue
        if k == SPHERE:
            radius[chosen] = rng.uniform(*spec.radius, n)
        elif k == CYLINDER:
            radius[chosen] = rng.uniform(*spec.radius, n)
            half_height[chosen] = rng.uniform(*spec.height, n) / 2
            axes = _uniform_directions(rng, n) if spec.orientation == "uniform" else _vmf_z(rng, n, spec.kappa)
            rotation[chosen] = _frames_with_axis(axes)
        else:
            radius[chosen] = rng.uniform(*spec.edge, n) / 2
            rotation[chosen] = _random_rotations(rng, n)
    return Primitives(kind, center, radius, half_height, rotation, tuple(spec.window), spec.pixel_size_nm, spec)


def _uniform_directions(rng: np.random.Generator, n: int) -> np.ndarray:
    vectors = rng.normal(size=(n, 3))
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def _vmf_z(rng: np.random.Generator, n: int, kappa: float) -> np.ndarray:
    """Von Mises–Fisher directions about +z (inverse-CDF sampling of cos θ, exact for the 3D case)."""
    u = rng.random(n)
    cos_theta = 1.0 + np.log(u + (1.0 - u) * np.exp(-2.0 * kappa)) / kappa
    sin_theta = np.sqrt(np.clip(1.0 - cos_theta**2, 0.0, 1.0))
    phi = rng.uniform(0.0, 2.0 * np.pi, n)
    return np.stack([sin_theta * np.cos(phi), sin_theta * np.sin(phi), cos_theta], axis=1)


def _frames_with_axis(axes: np.ndarray) -> np.ndarray:
    """Orthonormal frames (columns) whose third column is each given unit axis."""
    helper = np.where(np.abs(axes[:, :1]) < 0.9, [[1.0, 0.0, 0.0]], [[0.0, 1.0, 0.0]])
    first = np.cross(helper, axes)
    first /= np.linalg.norm(first, axis=1, keepdims=True)
    second = np.cross(axes, first)
    return np.stack([first, second, axes], axis=2)


def _random_rotations(rng: np.random.Generator, n: int) -> np.ndarray:
    """Uniformly random rotation matrices (from uniformly random unit quaternions)."""
    q = rng.normal(size=(n, 4))
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    w, x, y, z = q.T
    return np.stack(
        [
            np.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], axis=1),
            np.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], axis=1),
            np.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], axis=1),
        ],
        axis=1,
    )


def voxelize(primitives: Primitives, z_range: tuple[int, int] | None = None) -> np.ndarray:
    """The solid phase as a boolean ``[z, y, x]`` volume, tested at voxel centres, for window slices ``z_range``."""
    from napari_sparse_sem.surrogate._sdf import fill_solid

    depth, height, width = primitives.window
    z_start, z_stop = z_range if z_range is not None else (0, depth)
    if not 0 <= z_start < z_stop <= depth:
        raise ValueError(f"z_range must lie within the window's {depth} slices, got {z_range}")
    solid = np.zeros((z_stop - z_start, height, width), dtype=np.bool_)
    low, high = primitives.bounding_boxes()
    fill_solid(
        solid,
        float(z_start),
        primitives.kind.astype(np.int64),
        primitives.center.astype(np.float64),
        primitives.radius.astype(np.float64),
        primitives.half_height.astype(np.float64),
        np.ascontiguousarray(primitives.rotation, dtype=np.float64),
        low,
        high,
    )
    return solid
