"""make-dataset resumes stores whose saved spec has no schema version (written before it existed) and refuses others."""

from __future__ import annotations

import pytest
import zarr

from napari_sparse_sem.params import SCHEMA_KEY
from napari_sparse_sem.runtime import run_job
from napari_sparse_sem.surrogate.dataset import DatasetSpec, make_dataset
from napari_sparse_sem.surrogate.montecarlo import MCConfig


def test_resume_compares_specs_not_raw_records(tmp_path) -> None:
    spec = DatasetSpec(
        geometries=1, held_out=0, cuts=1, size=16, scale=0.3, mc=MCConfig(energy_kev=1.0, electrons_per_pixel=2)
    )
    out = tmp_path / "pairs.zarr"
    run_job(make_dataset(spec, out))
    group = zarr.open_group(str(out), mode="r+")
    saved = dict(group.attrs["spec"])
    assert saved[SCHEMA_KEY] == 1 and DatasetSpec.from_dict(saved) == spec
    legacy = {k: v for k, v in saved.items() if k != SCHEMA_KEY}
    legacy["mc"] = {k: v for k, v in saved["mc"].items() if k != SCHEMA_KEY}
    group.attrs["spec"] = legacy  # as an earlier version wrote it
    group["done"][0] = False
    summary = run_job(make_dataset(spec, out, resume=True))
    assert zarr.open_group(str(out), mode="r")["done"][:].all() and summary
    with pytest.raises(ValueError, match="other parameters"):
        run_job(make_dataset(spec.replace(seed=1), out, resume=True))


def test_retrain_set_is_twenty_times_the_shipped_one_in_the_papers_proportions() -> None:
    from collections import Counter

    from napari_sparse_sem.surrogate.dataset import (
        SHIPPED_TRAINING_SLICES,
        evaluation_spec,
        plan_geometries,
        retrain_spec,
    )

    spec = retrain_spec()
    assert spec.size == 128 and spec.training_slices >= 1500 >= 20 * SHIPPED_TRAINING_SLICES
    plan = plan_geometries(spec)
    train = [g for split, _, g in plan if split == "train"]
    kinds = Counter("spheres" if g.shape == "spheres" else g.orientation for g in train)
    # paper section 2.1: 18 sphere and 54 cylinder structures (36 von Mises–Fisher, 18 uniform) in every 72
    assert len(train) == spec.training_slices and len(train) % 72 == 0
    assert kinds["spheres"] * 4 == kinds["vmf"] * 2 == kinds["uniform"] * 4 == len(train)
    assert {g.shape for split, _, g in plan if split == "held-out"} == {"cubes"}
    evaluation = evaluation_spec()
    assert evaluation.mc.electrons_per_pixel // evaluation.replicas >= 4000 and evaluation.replicas >= 2
    assert evaluation.held_out_slices >= 4 and evaluation.seed != spec.seed
    with pytest.raises(ValueError, match="multiple of --replicas"):
        DatasetSpec(replicas=3, mc=MCConfig(electrons_per_pixel=100))


def _arrays(path) -> dict:
    root = zarr.open_group(str(path), mode="r")
    return {name: root[name][:] for name in ("inputs", "bse", "se", "bse_replicas", "se_replicas", "solid", "done")}


def test_replicas_workers_and_order_give_the_same_samples(tmp_path) -> None:
    import numpy as np

    from napari_sparse_sem.surrogate.dataset import read_replicas, teacher_config

    mc = MCConfig(energy_kev=1.0, electrons_per_pixel=4, seed=3)
    spec = DatasetSpec(geometries=2, held_out=1, cuts=1, size=16, scale=0.3, replicas=2, seed=3, mc=mc)
    serial = tmp_path / "serial.zarr"
    run_job(make_dataset(spec, serial))
    first = _arrays(serial)
    assert first["done"].all() and first["bse_replicas"].shape == (3, 2, 16, 16)
    np.testing.assert_allclose(first["bse"], first["bse_replicas"].mean(axis=1), rtol=1e-6)
    assert not np.array_equal(first["se_replicas"][:, 0], first["se_replicas"][:, 1])  # independent streams
    assert read_replicas(serial, [2])["se"].shape == (1, 2, 16, 16)
    # two worker processes, held-out geometry first, stopped after one sample, then resumed on another device
    parallel = tmp_path / "parallel.zarr"
    job = make_dataset(spec, parallel, held_out_first=True, workers=2)
    assert next(job).step == 0 and next(job).step == 1
    job.close()
    assert zarr.open_group(str(parallel), mode="r")["done"][:].sum() >= 1
    other_device = spec.replace(mc=teacher_config(spec.mc, "auto"))
    summary = run_job(make_dataset(other_device, parallel, resume=True))
    assert summary["done"] == 3
    second = _arrays(parallel)
    for name, values in first.items():
        assert np.array_equal(values, second[name], equal_nan=values.dtype.kind == "f"), name


SIMULATED_GPU = """
import json, sys
import zarr
from napari_sparse_sem.runtime import run_job
from napari_sparse_sem.surrogate.dataset import DatasetSpec, make_dataset, teacher_config
from napari_sparse_sem.surrogate.montecarlo import MCConfig

mc = teacher_config(MCConfig(energy_kev=1.0, electrons_per_pixel=2, seed=5), "cuda")
spec = DatasetSpec(geometries=1, held_out=1, cuts=1, size=16, scale=0.3, replicas=2, seed=5, mc=mc)
summary = run_job(make_dataset(spec, sys.argv[1], workers=2))
root = zarr.open_group(sys.argv[1], mode="r")
print(json.dumps({**summary, "saved_device": root.attrs["spec"]["mc"]["device"]}))
"""


def test_the_gpu_teacher_path_under_numba_cuda_simulator(tmp_path) -> None:
    """make-dataset as the GPU run does it (teacher on cuda, worker processes), under numba's CUDA simulator."""
    import json
    import os
    import subprocess
    import sys

    out = tmp_path / "gpu.zarr"
    env = {**os.environ, "NUMBA_ENABLE_CUDASIM": "1"}
    done = subprocess.run([sys.executable, "-c", SIMULATED_GPU, str(out)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["done"] == 2 and summary["device"] == "cuda" and summary["saved_device"] == "cuda"
    root = zarr.open_group(str(out), mode="r")
    assert root["done"][:].all() and root["se_replicas"].shape == (2, 2, 16, 16)
