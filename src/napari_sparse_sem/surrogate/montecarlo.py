"""Monte Carlo SEM teacher: BSE and SE images of a cut plane through a porous solid, and bulk-target validation runs.

Physics (D. C. Joy, *Monte Carlo Modeling for Electron Microscopy and Microanalysis*, Oxford 1995, ch. 3–4):

- elastic scattering: screened Rutherford cross section with screening α = 3.4·10⁻³ Z^0.67 / E and the relativistic
  factor ((E + 511)/(E + 1024))², giving the mean free path λ = A / (N_A ρ σ);
- energy loss: continuous slowing down with the Joy–Luo modified Bethe law
  dE/ds = −78 500 ρZ/(A E) ln(1.166 (E + 0.85 J)/J) keV/cm, J = (9.76 Z + 58.5 Z^−0.19) eV;
- BSE: primaries that leave into the open half-space above the cut plane with E above ``bse_min_ev`` (within the
  detector's acceptance cone); SE: see :mod:`~napari_sparse_sem.surrogate._mc_kernel`.

Devices: ``MCConfig.device`` runs the trajectories on the CPU (numba, all cores) or on an NVIDIA GPU (the same physics
compiled by numba's CUDA target, one thread per electron: :mod:`~napari_sparse_sem.surrogate._mc_cuda`; install the
``gpu`` extra). Both give electron ``e`` of pixel ``p`` the same random stream; on a GPU the last bits of
``log``/``exp`` round differently, so its images equal the CPU's in distribution, not pixel by pixel.

This replaces the (unpublished) cluster simulator that produced the training data of Dahmen et al. (paper 004 in
../shared/papers); the geometry is theirs (:mod:`~napari_sparse_sem.surrogate.geometry`), the teacher is ours, and
``benchmarks/montecarlo.py`` checks it against measured backscatter coefficients and electron ranges.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from napari_sparse_sem.params import Spec, param
from napari_sparse_sem.runtime import Job, Progress
from napari_sparse_sem.surrogate.geometry import Primitives
from napari_sparse_sem.surrogate.materials import ELEMENTS, Material, material

AVOGADRO = 6.02214076e23
TABLE_STEP_KEV = 0.001  # 1 eV lookup tables
DEVICES = ("cpu", "cuda", "auto")
GPU_BATCH_TRAJECTORIES = 1 << 22
"""Trajectories per row batch of :func:`simulate_slice` on a GPU at least (small launches leave most of it idle)."""
GPU_INSTALL_HINT = (
    "install the GPU extra (pip install 'napari-sparse-sem[gpu]': numba-cuda with the CUDA 12 libraries; "
    "'numba-cuda[cu13]' for CUDA 13 drivers) on a machine with an NVIDIA GPU and driver, or use device 'cpu' or 'auto'"
)


@dataclass(frozen=True)
class MCConfig(Spec):
    """Parameters of a Monte Carlo run (energies in keV unless named ``_ev``; lengths in nm).

    ``se_per_kev`` is the number of secondary electrons made per keV lost (1/ε with ε ≈ 33 eV per SE, which puts the
    SE yield of flat carbon at 2 keV near 0.4); ``se_escape_depth_nm`` is their attenuation length λ_SE.
    ``cutoff_kev`` ends a trajectory; ``bse_acceptance_deg`` is the BSE detector's half-angle about +z.
    """

    kind = "Monte Carlo"

    energy_kev: float = param(
        2.0, low=0.1, high=50.0, unit="keV", label="beam energy", help="Primary beam energy.", flag="energy"
    )
    electrons_per_pixel: int = param(
        100,
        low=1,
        label="electrons / pixel",
        help="Primary electrons traced per pixel (more: less MC noise).",
        flag="electrons",
    )
    element: str = param("C", help=f"Target element ({', '.join(ELEMENTS)}; case does not matter).")
    cutoff_kev: float = param(
        0.05,
        low=0.0,
        low_open=True,
        unit="keV",
        label="cutoff",
        help="Energy at which a trajectory ends (< beam).",
        flag="cutoff",
    )
    bse_min_ev: float = param(
        50.0, low=0.0, unit="eV", label="BSE minimum", help="Lowest energy an escaping electron counts as BSE."
    )
    bse_acceptance_deg: float = param(
        90.0,
        low=0.0,
        high=90.0,
        low_open=True,
        unit="°",
        label="BSE acceptance",
        help="Half-angle of the BSE detector's acceptance cone about +z.",
    )
    se_escape_depth_nm: float = param(
        3.0, low=0.0, low_open=True, unit="nm", label="SE escape depth", help="Attenuation length λ_SE of the SE."
    )
    se_per_kev: float = param(
        30.0, low=0.0, unit="1/keV", label="SE per keV", help="Secondary electrons made per keV the primaries lose."
    )
    tilt_deg: float = param(
        0.0,
        low=0.0,
        high=89.0,
        high_open=True,
        unit="°",
        label="tilt",
        help="Beam tilt from the surface normal.",
        flag="tilt",
    )
    seed: int = param(0, help="Random seed of the electron trajectories.")
    device: str = param(
        "cpu",
        choices=DEVICES,
        help="Where the trajectories run: cpu (numba, all cores), cuda (an NVIDIA GPU, needs the gpu extra) or auto "
        "(cuda when numba sees a GPU, else cpu).",
    )

    def validate(self) -> None:
        material(self.element)  # raises a clear error for unknown elements
        if self.cutoff_kev >= self.energy_kev:
            raise ValueError(f"cutoff_kev must lie between 0 and the beam energy, got {self.cutoff_kev}")

    @property
    def material(self) -> Material:
        """The target element."""
        return material(self.element)


def physics_tables(m: Material, energy_kev: float) -> np.ndarray:
    """Rows (mean free path nm, screening α, stopping power keV/nm) at energies 0, 1 eV, ..., ``energy_kev`` + 1 eV."""
    energies = np.arange(0, energy_kev + 2 * TABLE_STEP_KEV, TABLE_STEP_KEV)
    energies[0] = TABLE_STEP_KEV / 2  # never used by a live electron; avoids dividing by zero
    alpha = 3.4e-3 * m.z**0.67 / energies
    sigma_cm2 = (
        5.21e-21
        * (m.z**2 / energies**2)
        * (4.0 * math.pi / (alpha * (1.0 + alpha)))
        * ((energies + 511.0) / (energies + 1024.0)) ** 2
    )
    mfp_nm = m.a / (AVOGADRO * m.density * sigma_cm2) * 1e7
    j_kev = (9.76 * m.z + 58.5 * m.z**-0.19) * 1e-3
    log_term = np.log(np.maximum(1.166 * (energies + 0.85 * j_kev) / j_kev, 1.0001))
    stopping_kev_per_nm = 78500.0 * m.density * m.z / (m.a * energies) * log_term * 1e-7
    return np.ascontiguousarray(np.stack([mfp_nm, alpha, stopping_kev_per_nm], axis=1))


def cuda_available() -> bool:
    """Whether numba can run CUDA kernels here (true under numba's CUDA simulator); imports ``numba.cuda`` lazily."""
    try:
        from numba import cuda

        return bool(cuda.is_available())
    except Exception:  # a broken CUDA install means no GPU, not a crash
        return False


def mc_device(requested: str) -> str:
    """``"cpu"`` or ``"cuda"`` for ``MCConfig.device``; asking for ``cuda`` without a usable GPU is a clear error."""
    if requested not in DEVICES:
        raise ValueError(f"device must be one of {list(DEVICES)}, got {requested!r}")
    if requested == "cpu":
        return "cpu"
    if cuda_available():
        return "cuda"
    if requested == "auto":
        return "cpu"
    raise ValueError(
        f"device 'cuda': numba sees no CUDA GPU here (numba.cuda.is_available() is False); {GPU_INSTALL_HINT}"
    )


@dataclass
class MCResult:
    """Per-pixel signals of one run: ``bse`` = backscattered fraction, ``se`` = SE yield per primary electron.

    ``device`` is where it ran (``"cpu"`` or ``"cuda"``, ``config.device`` resolved).
    """

    bse: np.ndarray
    se: np.ndarray
    electrons_per_pixel: int
    steps: int
    seconds: float
    config: MCConfig
    device: str = "cpu"

    @property
    def trajectories_per_second(self) -> float:
        """Primary electrons traced per second of wall time."""
        return self.bse.size * self.electrons_per_pixel / max(self.seconds, 1e-9)


class _Scene:
    """The arrays the kernel needs for a geometry (or bulk), in nm."""

    def __init__(self, primitives: Primitives | None, pixel_size_nm: float, cell_fraction: float = 0.35) -> None:
        from napari_sparse_sem.surrogate._sdf import build_cell_grid

        self.bulk = primitives is None
        self._device_args: tuple | None = None
        self._device_tables: dict[int, tuple[np.ndarray, Any]] = {}
        if primitives is None:
            self.kind = np.zeros(0, np.int64)
            self.center = np.zeros((0, 3))
            self.radius = np.zeros(0)
            self.half_height = np.zeros(0)
            self.rotation = np.zeros((0, 3, 3))
            self.starts = np.zeros(2, np.int64)
            self.items = np.zeros(0, np.int64)
            self.dims = np.ones(3, np.int64)
            self.cell = self.reach = 1.0
            self.bounds = np.array([_HUGE, _HUGE])
            return
        s = pixel_size_nm
        depth, height, width = primitives.window
        self.kind = primitives.kind.astype(np.int64)
        self.center = np.ascontiguousarray(primitives.center * s)
        self.radius = primitives.radius * s
        self.half_height = primitives.half_height * s
        self.rotation = np.ascontiguousarray(primitives.rotation, dtype=np.float64)
        low, high = primitives.bounding_boxes()
        typical = float(np.median(primitives.radius)) if len(primitives) else 8.0
        cell_vox = float(np.clip(cell_fraction * typical, 2.0, 32.0))
        self.cell = cell_vox * s
        self.reach = self.cell
        shapes = (self.kind, self.center, self.radius, self.half_height, self.rotation)
        self.starts, self.items, self.dims = build_cell_grid(low * s, high * s, (depth * s, height * s, width * s),
                                                             self.cell, self.reach, shapes)  # fmt: skip
        self.bounds = np.array([width * s, height * s])

    def kernel_args(self, device: str = "cpu") -> tuple:
        """The scene's kernel arguments; for ``"cuda"`` its arrays copied to the GPU once and kept."""
        args = (self.bulk, self.bounds, self.kind, self.center, self.radius, self.half_height, self.rotation,
                self.starts, self.items, self.dims, self.cell, self.reach)  # fmt: skip
        if device != "cuda":
            return args
        if self._device_args is None:
            from napari_sparse_sem.surrogate._mc_cuda import to_device

            self._device_args = tuple(to_device(a) for a in args)
        return self._device_args

    def device_tables(self, tables: np.ndarray) -> Any:
        """A GPU copy of physics ``tables``, made once per table array."""
        from napari_sparse_sem.surrogate._mc_cuda import to_device

        if id(tables) not in self._device_tables:  # the host array is kept with its copy, so its id stays unique
            self._device_tables[id(tables)] = (tables, to_device(tables))
        return self._device_tables[id(tables)][1]


_HUGE = 1.0e12


def _beam_direction(tilt_deg: float) -> np.ndarray:
    t = math.radians(tilt_deg)
    return np.array([math.sin(t), 0.0, -math.cos(t)])


def _trace(
    pixel_xy_nm: np.ndarray,
    z0_nm: float,
    config: MCConfig,
    scene: _Scene,
    tables: np.ndarray,
    first_index: int | np.ndarray,
    bse: np.ndarray,
    se: np.ndarray,
    depth_out: np.ndarray | None = None,
    device: str = "cpu",
) -> int:
    """Add the BSE and SE of ``config.electrons_per_pixel`` trajectories per pixel; the number of steps taken.

    ``device`` is ``"cpu"`` or ``"cuda"`` (resolved); only the GPU takes ``first_index`` as one index per pixel.
    """
    if device == "cuda":
        from napari_sparse_sem.surrogate._mc_cuda import trace_pixels_cuda as kernel

        tables = scene.device_tables(tables)
    else:
        from napari_sparse_sem.surrogate._mc_kernel import trace_pixels as kernel

        first_index = int(first_index)
    steps = np.zeros(len(pixel_xy_nm), np.int64)
    kernel(
        np.ascontiguousarray(pixel_xy_nm, dtype=np.float64),
        int(config.electrons_per_pixel),
        float(z0_nm),
        _beam_direction(config.tilt_deg),
        int(config.seed),
        first_index,
        tables,
        TABLE_STEP_KEV,
        float(config.cutoff_kev),
        float(config.energy_kev),
        config.bse_min_ev * 1e-3,
        math.cos(math.radians(config.bse_acceptance_deg)) - 1e-12,
        float(config.se_escape_depth_nm),
        float(config.se_per_kev),
        *scene.kernel_args(device),
        bse,
        se,
        depth_out if depth_out is not None else np.zeros((len(pixel_xy_nm), 0)),
        steps,
    )
    return int(steps.sum())


def simulate_slice(
    primitives: Primitives,
    z0: float,
    config: MCConfig | None = None,
    region: tuple[int, int, int, int] | None = None,
    rows_per_batch: int = 8,
) -> Job[MCResult]:
    """Monte Carlo BSE and SE images of the cut plane at height ``z0`` (voxels), as a job with one event per row batch.

    ``region`` = (y0, y1, x0, x1) in pixels limits the image (default: the whole window). Each yield carries the
    finished rows as ``partial`` (a :class:`MCResult` whose unfinished rows are NaN), so a cancelled run keeps them.
    On a GPU (``config.device``) a batch holds at least :data:`GPU_BATCH_TRAJECTORIES` trajectories.
    """
    config = config or MCConfig()
    device = mc_device(config.device)
    depth, height, width = primitives.window
    y0, y1, x0, x1 = region if region is not None else (0, height, 0, width)
    if not (0 <= y0 < y1 <= height and 0 <= x0 < x1 <= width):
        raise ValueError(f"region {region} must lie within the window's {height}×{width} pixels")
    if not 0 < z0 <= depth:
        raise ValueError(f"the cut plane z0 must lie in (0, {depth}] voxels, got {z0}")
    s = primitives.pixel_size_nm
    scene = _Scene(primitives, s)
    tables = physics_tables(config.material, config.energy_kev)
    bse = np.full((y1 - y0, x1 - x0), np.nan)
    se = np.full((y1 - y0, x1 - x0), np.nan)
    result = MCResult(bse, se, config.electrons_per_pixel, 0, 0.0, config, device)
    if device == "cuda":
        rows_per_batch = max(
            rows_per_batch, math.ceil(GPU_BATCH_TRAJECTORIES / ((x1 - x0) * config.electrons_per_pixel))
        )
    xs = (np.arange(x0, x1) + 0.5) * s
    start = time.perf_counter()
    total = y1 - y0
    yield Progress(0, total, "Monte Carlo: starting")
    for row in range(0, total, rows_per_batch):
        rows = range(row, min(total, row + rows_per_batch))
        ys = (np.array([y0 + r for r in rows]) + 0.5) * s
        grid = np.stack(np.meshgrid(xs, ys, indexing="xy"), axis=-1).reshape(-1, 2)
        batch_bse = np.zeros(len(grid))
        batch_se = np.zeros(len(grid))
        first = (y0 + rows.start) * width + x0  # seeds depend on the pixel, not on the batching (rows are contiguous)
        result.steps += _trace_rows(grid, z0 * s, config, scene, tables, first, width, x1 - x0, batch_bse, batch_se,
                                    device)  # fmt: skip
        n = config.electrons_per_pixel
        bse[rows.start : rows.stop] = batch_bse.reshape(len(rows), -1) / n
        se[rows.start : rows.stop] = batch_se.reshape(len(rows), -1) / n
        result.seconds = time.perf_counter() - start
        rate = (rows.stop * (x1 - x0) * n) / max(result.seconds, 1e-9)
        yield Progress(rows.stop, total, f"Monte Carlo: {rows.stop}/{total} rows, {rate:,.0f} electrons/s", result)
    return result


def _trace_rows(grid, z0_nm, config, scene, tables, first, width, row_length, bse, se, device="cpu") -> int:
    """Trace row by row so each pixel's random stream is keyed by its index in the whole window (a GPU takes the
    pixels' indices and all rows at once)."""
    if device == "cuda":
        rows = len(grid) // row_length
        index = (first + np.arange(rows)[:, None] * width + np.arange(row_length)[None, :]).ravel()
        return _trace(grid, z0_nm, config, scene, tables, index, bse, se, device=device)
    steps = 0
    for start in range(0, len(grid), row_length):
        index = first + (start // row_length) * width
        steps += _trace(grid[start : start + row_length], z0_nm, config, scene, tables, index,
                        bse[start : start + row_length], se[start : start + row_length])  # fmt: skip
    return steps


def bulk_run(config: MCConfig, electrons: int = 20_000, record_depth: bool = False) -> dict[str, Any]:
    """A flat bulk target (everything below z = 0 is solid): η, SE yield, range statistics and speed.

    The beam hits one point ``electrons`` times (tilted by ``config.tilt_deg``). ``eta`` is the BSE fraction; with
    ``record_depth`` the 50th/90th/99th percentiles of each trajectory's deepest point are returned in nm. ``device``
    says where it ran (``config.device`` resolved); the first launch (compilation) is outside ``seconds``.
    """
    from napari_sparse_sem.surrogate.materials import kanaya_okayama_range_nm, reuter_eta

    if electrons < 1:
        raise ValueError("electrons must be >= 1")
    per_pixel = min(electrons, 1000)
    n_pixels = math.ceil(electrons / per_pixel)
    run = MCConfig.from_dict({**config.to_dict(), "electrons_per_pixel": per_pixel})
    device = mc_device(run.device)
    scene = _Scene(None, 1.0)
    tables = physics_tables(run.material, run.energy_kev)
    bse = np.zeros(n_pixels)
    se = np.zeros(n_pixels)
    depths = np.zeros((n_pixels, per_pixel)) if record_depth else None
    xy = np.zeros((n_pixels, 2))
    _trace(xy[:1], 0.0, run, scene, tables, 0, np.zeros(1), np.zeros(1), device=device)  # compile outside the clock
    start = time.perf_counter()
    steps = _trace(xy, 0.0, run, scene, tables, 0, bse, se, depths, device=device)
    seconds = time.perf_counter() - start
    total = n_pixels * per_pixel
    m = run.material
    out: dict[str, Any] = {
        "element": m.symbol,
        "z": m.z,
        "energy_kev": run.energy_kev,
        "tilt_deg": run.tilt_deg,
        "electrons": total,
        "eta": float(bse.sum() / total),
        "eta_stderr": float(math.sqrt(max(bse.sum() / total * (1 - bse.sum() / total), 0.0) / total)),
        "eta_reuter": reuter_eta(m.z),
        "se_yield": float(se.sum() / total),
        "se_yield_stderr": float(np.std(se / per_pixel, ddof=1) / math.sqrt(n_pixels)) if n_pixels > 1 else math.nan,
        "steps_per_trajectory": steps / total,
        "seconds": seconds,
        "trajectories_per_second": total / max(seconds, 1e-9),
        "kanaya_okayama_range_nm": kanaya_okayama_range_nm(m, run.energy_kev),
        "device": device,
    }
    if depths is not None:
        for q in (50, 90, 99):
            out[f"depth_p{q}_nm"] = float(np.percentile(depths, q))
        out["depth_p99_over_ko"] = out["depth_p99_nm"] / out["kanaya_okayama_range_nm"]
    return out
