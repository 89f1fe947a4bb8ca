"""The CUDA Monte Carlo kernel against the CPU kernel under numba's CUDA simulator (no GPU needed); the device choice.

The simulator must be chosen before ``numba.cuda`` is first imported, and other tests import it, so the kernel runs in
a subprocess with ``NUMBA_ENABLE_CUDASIM=1``. There the device functions run as the same compiled CPU code, so electrons
with the same stream are identical; runs with different seeds check the GPU path's statistics the way a real GPU (whose
math functions round differently) would be checked.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from napari_sparse_sem.surrogate import montecarlo as mc

SCRIPT = r"""
import json, math
import numpy as np
from napari_sparse_sem.runtime import run_job
from napari_sparse_sem.surrogate import montecarlo as mc
from napari_sparse_sem.surrogate._mc_cuda import describe_device, trace_pixels_cuda
from napari_sparse_sem.surrogate._mc_kernel import trace_pixels
from napari_sparse_sem.surrogate.geometry import GeometrySpec, generate

out = {"available": mc.cuda_available(), "auto": mc.mc_device("auto"), "gpu": describe_device()}
for device, seed in (("cuda", 1), ("cpu", 2)):  # independent samples: the comparison a real GPU would get
    config = mc.MCConfig(energy_kev=2.0, seed=seed, device=device)
    out[f"bulk_{device}"] = mc.bulk_run(config, 4000, record_depth=True)
    # SE yield of 100 beams of 40 electrons each: its standard error from 100 samples
    run = config.replace(electrons_per_pixel=40)
    se = np.zeros(100)
    mc._trace(np.zeros((100, 2)), 0.0, run, mc._Scene(None, 1.0), mc.physics_tables(run.material, 2.0), 0,
              np.zeros(100), se, device=device)
    out[f"se_{device}"] = {"mean": float(se.mean() / 40), "stderr": float(se.std(ddof=1) / 40 / 10)}

def single_electrons(scene, xy, z0):
    # one electron per pixel: every output is one electron's, on both kernels
    config = mc.MCConfig(energy_kev=2.0, seed=7)
    tables = mc.physics_tables(config.material, config.energy_kev)
    args = (xy, 1, z0, mc._beam_direction(0.0), 7, 1000, tables, mc.TABLE_STEP_KEV, 0.05, 2.0, 0.05,
            math.cos(math.radians(90.0)) - 1e-12, 3.0, 30.0, *scene.kernel_args())
    results = []
    for kernel, options in ((trace_pixels, {}), (trace_pixels_cuda, {}), (trace_pixels_cuda, {"max_threads": 7})):
        n = len(xy)
        bse, se, depth, steps = np.zeros(n), np.zeros(n), np.zeros((n, 1)), np.zeros(n, np.int64)
        kernel(*args, bse, se, depth, steps, **options)  # the last in launches of 7 threads
        results.append((bse, se, depth, steps))
    cpu = results[0]
    same = [all(np.array_equal(a, b) for a, b in zip(cpu, other)) for other in results[1:]]
    return {"identical": same, "bse": int(cpu[0].sum()), "se_nonzero": int((cpu[1] > 0).sum()),
            "steps": int(cpu[3].sum())}

out["single_bulk"] = single_electrons(mc._Scene(None, 1.0), np.zeros((48, 2)), 0.0)
prims = generate(GeometrySpec("spheres", 0.5, radius=(8, 12), window=(64, 48, 48), pixel_size_nm=5.0, seed=5))
rng = np.random.default_rng(0)
out["single_porous"] = single_electrons(mc._Scene(prims, 5.0), rng.uniform(20, 220, (48, 2)), 300.0)

images = {}
for device, seed in (("cpu", 1), ("cuda", 1), ("cpu", 2)):
    config = mc.MCConfig(electrons_per_pixel=6, seed=seed, device=device)
    result = run_job(mc.simulate_slice(prims, 60.0, config, region=(14, 30, 10, 26), rows_per_batch=5))
    images[device, seed] = result
    out[f"porous_{device}_{seed}_device"] = result.device
a, b, c = images["cpu", 1], images["cuda", 1], images["cpu", 2]
out["porous_same_seed"] = {"bse_equal": bool(np.array_equal(a.bse, b.bse)),
                           "se_max_rel": float(np.max(np.abs(a.se - b.se) / np.maximum(a.se, 1e-12))),
                           "steps_equal": a.steps == b.steps}
for key in ("bse", "se"):  # per-pixel differences of independent runs: mean 0 within its standard error
    d = getattr(b, key) - getattr(c, key)
    out[f"porous_{key}_diff"] = {"mean": float(d.mean()), "stderr": float(d.std(ddof=1) / math.sqrt(d.size)),
                                 "level": float(getattr(c, key).mean())}
print("RESULT " + json.dumps(out))
"""


@pytest.fixture(scope="module")
def simulated() -> dict:
    """The CUDA kernel's numbers from a subprocess under numba's CUDA simulator."""
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    line = next(line for line in done.stdout.splitlines() if line.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def test_simulator_is_a_cuda_device_and_auto_picks_it(simulated: dict) -> None:
    assert simulated["available"] and simulated["auto"] == "cuda" and simulated["gpu"] == "CUDA simulator"
    assert simulated["bulk_cuda"]["device"] == "cuda" and simulated["bulk_cpu"]["device"] == "cpu"
    assert simulated["porous_cuda_1_device"] == "cuda"


def test_bulk_carbon_on_the_gpu_path_matches_the_cpu_within_statistical_error(simulated: dict) -> None:
    gpu, cpu = simulated["bulk_cuda"], simulated["bulk_cpu"]
    assert gpu["electrons"] == cpu["electrons"] == 4000
    assert abs(gpu["eta"] - cpu["eta"]) < 4 * math.hypot(gpu["eta_stderr"], cpu["eta_stderr"])
    assert 0.04 < gpu["eta"] < 0.12 and 0.25 < gpu["se_yield"] < 0.55  # carbon at 2 keV, as the CPU tests have it
    assert gpu["steps_per_trajectory"] == pytest.approx(cpu["steps_per_trajectory"], rel=0.03)
    se_gpu, se_cpu = simulated["se_cuda"], simulated["se_cpu"]
    assert abs(se_gpu["mean"] - se_cpu["mean"]) < 4 * math.hypot(se_gpu["stderr"], se_cpu["stderr"])
    # depth percentiles within 4 standard errors of the difference (bootstrap over 4000 CPU trajectories: 0.70 nm at
    # the median, 0.54 nm at p90)
    for q, sigma in ((50, 0.70), (90, 0.54)):
        assert abs(gpu[f"depth_p{q}_nm"] - cpu[f"depth_p{q}_nm"]) < 4 * sigma, q


def test_each_electron_is_the_cpu_kernels_electron(simulated: dict) -> None:
    """Same stream → same trajectory: BSE, SE, deepest point and steps of single electrons are bit-identical."""
    for case in ("single_bulk", "single_porous"):
        result = simulated[case]
        assert result["identical"] == [True, True], case  # in one launch and in launches of 7 threads
        assert result["steps"] > 48 and result["se_nonzero"] > 0  # the electrons really went somewhere
    same = simulated["porous_same_seed"]
    assert same["bse_equal"] and same["steps_equal"]
    assert same["se_max_rel"] < 1e-12  # per-pixel SE sums: the atomic additions come in any order


def test_porous_slice_on_the_gpu_path_matches_the_cpu_within_statistical_error(simulated: dict) -> None:
    for key in ("bse", "se"):
        diff = simulated[f"porous_{key}_diff"]
        assert diff["level"] > 0.01 and diff["stderr"] > 0
        assert abs(diff["mean"]) < 4 * diff["stderr"], (key, diff)


@pytest.mark.skipif(mc.cuda_available(), reason="a CUDA GPU is visible here")
def test_cuda_without_a_gpu_is_a_clear_error_and_auto_falls_back_to_the_cpu() -> None:
    with pytest.raises(ValueError, match=r"no CUDA GPU.*napari-sparse-sem\[gpu\]"):
        mc.bulk_run(mc.MCConfig(device="cuda"), electrons=10)
    assert mc.mc_device("auto") == "cpu"
    result = mc.bulk_run(mc.MCConfig(device="auto"), electrons=200)
    assert result["device"] == "cpu" and result["electrons"] == 200


def test_device_is_a_checked_choice_saved_with_the_config() -> None:
    with pytest.raises(ValueError, match="device"):
        mc.MCConfig(device="gpu")
    config = mc.MCConfig(device="auto")
    assert mc.MCConfig.from_dict(config.to_dict()) == config
    assert mc.MCConfig.from_dict({k: v for k, v in config.to_dict().items() if k != "device"}).device == "cpu"
