"""The ``--cluster`` forms: parsing and its errors, how local workers share cores and GPUs, a running scheduler by
address and by scheduler file, and a SLURM cluster from a dask-jobqueue YAML (its job script; nothing is submitted)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from napari_sparse_sem.cluster.connect import (
    ClusterAddress,
    connect,
    jobqueue_cluster,
    local_worker_specs,
    parse_cluster,
)


def test_parse_cluster_forms(tmp_path: Path) -> None:
    (tmp_path / "scheduler.json").write_text("{}")
    (tmp_path / "slurm.yaml").write_text("jobqueue: {slurm: {cores: 1, memory: 1GB}}")
    assert parse_cluster("local") == ClusterAddress("local")
    assert parse_cluster(" local:3 ") == ClusterAddress("local", workers=3)
    assert parse_cluster("tcp://10.0.0.5:8786") == ClusterAddress("scheduler", "tcp://10.0.0.5:8786")
    assert parse_cluster("tls://head:8786").kind == "scheduler"
    assert parse_cluster(str(tmp_path / "scheduler.json")) == ClusterAddress(
        "scheduler_file", str(tmp_path / "scheduler.json")
    )
    assert parse_cluster(str(tmp_path / "slurm.yaml")).kind == "jobqueue"
    assert [str(parse_cluster(t)) for t in ("local", "local:2", "tcp://h:1")] == ["local", "local:2", "tcp://h:1"]


@pytest.mark.parametrize(
    ("text", "error", "message"),
    [
        ("local:0", ValueError, "whole number >= 1"),
        ("local:two", ValueError, "whole number >= 1"),
        ("gpu-farm", ValueError, "local, local:N, tcp://HOST:PORT"),
        ("missing.json", FileNotFoundError, "no such file"),
        ("missing.yaml", FileNotFoundError, "no such file"),
    ],
)
def test_parse_cluster_errors(text: str, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        parse_cluster(text)


def test_local_workers_split_cores_and_take_gpus_round_robin() -> None:
    specs = local_worker_specs(None, gpus=["0", "1"], workers_per_gpu=2, cores=8, memory_limit="4GiB")
    assert [s["env"]["CUDA_VISIBLE_DEVICES"] for s in specs] == ["0", "1", "0", "1"]
    assert {s["env"]["OMP_NUM_THREADS"] for s in specs} == {"2"}  # 8 cores / 4 workers
    assert {s["nthreads"] for s in specs} == {1} and {s["memory_limit"] for s in specs} == {"4GiB"}

    cpu = local_worker_specs(None, gpus=[], cores=4)
    assert len(cpu) == 4 and all("CUDA_VISIBLE_DEVICES" not in s["env"] for s in cpu)
    assert {s["env"]["OMP_NUM_THREADS"] for s in cpu} == {"1"} and {s["memory_limit"] for s in cpu} == {"auto"}

    more = local_worker_specs(3, gpus=["7"], cores=2)  # more workers than cores: one thread each, never zero
    assert [s["env"]["CUDA_VISIBLE_DEVICES"] for s in more] == ["7", "7", "7"]
    assert {s["env"]["OMP_NUM_THREADS"] for s in more} == {"1"}
    with pytest.raises(ValueError, match="workers-per-gpu"):
        local_worker_specs(None, gpus=["0"], workers_per_gpu=0)


def test_connect_to_a_running_scheduler_by_address_and_by_file(client: Any, tmp_path: Path) -> None:
    address = client.scheduler.address
    scheduler_file = tmp_path / "scheduler.json"
    scheduler_file.write_text(json.dumps({"address": address}))
    for text in (address, str(scheduler_file)):
        with connect(text) as other:
            assert len(other.scheduler_info(n_workers=-1)["workers"]) == 2
            assert other.submit(sum, [1, 2], pure=False).result() == 3
    assert client.submit(sum, [3, 4], pure=False).result() == 7  # the cluster itself is still up


def test_jobqueue_yaml_builds_a_slurm_cluster(tmp_path: Path) -> None:
    pytest.importorskip("dask_jobqueue")
    config = tmp_path / "slurm.yaml"
    config.write_text(
        "jobqueue:\n"
        "  slurm:\n"
        "    cores: 2\n"
        "    memory: 4GB\n"
        "    processes: 2\n"
        "    walltime: '01:30:00'\n"
        "    job-extra-directives: ['--gres=gpu:1']\n"
        "jobs: 3\n"
    )
    cluster, jobs = jobqueue_cluster(str(config))  # builds the cluster and its scheduler; sbatch is never called
    try:
        script = cluster.job_script()
    finally:
        cluster.close()
    assert jobs == 3
    for line in ("#SBATCH --cpus-per-task=2", "#SBATCH --mem=4G", "#SBATCH -t 01:30:00", "#SBATCH --gres=gpu:1"):
        assert line in script
    assert "--nworkers 2" in script and "--nthreads 1" in script


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("slurm: {cores: 1}\n", "a 'jobqueue:' section naming exactly one batch system"),
        ("jobqueue: {slurm: {cores: 1, memory: 1GB}, pbs: {cores: 1, memory: 1GB}}\n", "exactly one"),
        ("jobqueue: {cloud: {cores: 1}}\n", "unknown batch system 'cloud'"),
        ("jobqueue: {slurm: {cores: 1, memory: 1GB}}\njobs: 0\n", "jobs must be >= 1"),
    ],
)
def test_jobqueue_yaml_errors(tmp_path: Path, text: str, message: str) -> None:
    pytest.importorskip("dask_jobqueue")
    config = tmp_path / "bad.yaml"
    config.write_text(text)
    with pytest.raises(ValueError, match=message):
        jobqueue_cluster(str(config))
