"""Connect to a ``dask.distributed`` cluster named by one text, the ``--cluster`` value of the CLI and the widget.

* ``local`` or ``local:N``: a cluster of worker processes on this machine, started here and closed at the end. Without
  ``N``: one worker per GPU × ``workers_per_gpu`` when GPUs are visible (and the device is not ``cpu``), else one worker
  per core. The cores this process may use are split between the workers
  (:func:`~napari_sparse_sem.threads.worker_thread_share`) and given to each as ``OMP_NUM_THREADS`` and friends in
  its environment, which torch, numba and BLAS read when the worker loads them (and which is the worker's automatic
  :func:`~napari_sparse_sem.threads.thread_count`), so workers never oversubscribe them; each GPU worker sees one GPU
  (``CUDA_VISIBLE_DEVICES``; dask-cuda's ``LocalCUDACluster`` when it is installed and one worker per GPU is asked
  for).
* ``tcp://HOST:PORT`` (or ``tls://``, ``ws://``): a running scheduler.
* ``FILE.json``: a scheduler file (``dask scheduler --scheduler-file``, ``dask-mpi``).
* ``FILE.yaml`` / ``FILE.yml``: a dask-jobqueue configuration — the ``jobqueue:`` section of dask's config (exactly one
  system such as ``slurm`` or ``pbs``, with its keys: cores, memory, processes, walltime, job-extra-directives, ...)
  plus our top-level ``jobs: N`` (how many batch jobs to submit, default 1). Needs ``dask-jobqueue``.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from napari_sparse_sem.threads import THREAD_VARIABLES, usable_cores, worker_thread_share

__all__ = ["ClusterAddress", "connect", "cores_here", "jobqueue_cluster", "local_worker_specs", "parse_cluster"]

_SCHEMES = ("tcp://", "tls://", "ws://", "wss://", "inproc://", "ucx://")
WORKER_LOG_LEVEL = 50
"""Local workers log only critical messages: a failing block is reported (and its traceback kept) by the run itself,
so distributed's own "Compute Failed" error log would only repeat it."""
IGNORE_CTRL_C = "import signal\nsignal.signal(signal.SIGINT, signal.SIG_IGN)\n"
"""Preloaded into local workers: Ctrl-C in a terminal reaches the whole process group, and the run, not each worker,
handles it (it cancels the blocks and closes the cluster), so the workers print no traceback of their own."""
FORMS = "local, local:N, tcp://HOST:PORT, a scheduler file (.json) or a dask-jobqueue config (.yaml)"


@dataclass(frozen=True)
class ClusterAddress:
    """A parsed ``--cluster`` value: ``kind`` is local, scheduler, scheduler_file or jobqueue."""

    kind: str
    value: str = ""
    workers: int | None = None

    def __str__(self) -> str:
        if self.kind == "local":
            return "local" if self.workers is None else f"local:{self.workers}"
        return self.value


def parse_cluster(text: str) -> ClusterAddress:
    """Parse a ``--cluster`` value; a form we do not know is a ValueError listing the ones we do."""
    text = str(text).strip()
    if text == "local" or text.startswith("local:"):
        count = text.partition(":")[2]
        if not count:
            return ClusterAddress("local")
        if not count.isdigit() or int(count) < 1:
            raise ValueError(f"--cluster {text!r}: the number of local workers must be a whole number >= 1")
        return ClusterAddress("local", workers=int(count))
    if text.startswith(_SCHEMES):
        return ClusterAddress("scheduler", text)
    suffix = Path(text).suffix.lower()
    if suffix in (".json", ".yaml", ".yml"):
        if not Path(text).expanduser().is_file():
            raise FileNotFoundError(f"--cluster {text!r}: no such file")
        return ClusterAddress("scheduler_file" if suffix == ".json" else "jobqueue", str(Path(text).expanduser()))
    raise ValueError(f"--cluster {text!r} is not a cluster we can connect to; use one of: {FORMS}")


cores_here = usable_cores
"""The CPU cores this process may use (its affinity, not the machine's count): :func:`~napari_sparse_sem.threads.
usable_cores`."""


def visible_gpus(device: str) -> list[str]:
    """The CUDA devices local workers may use: none when the device is cpu/mps or torch sees no GPU."""
    if device.split(":")[0] in ("cpu", "mps"):
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    import torch

    count = torch.cuda.device_count()
    if visible is not None:
        ids = [v.strip() for v in visible.split(",") if v.strip()]
        return ids[:count]
    return [str(i) for i in range(count)]


def local_worker_specs(
    workers: int | None,
    *,
    gpus: list[str],
    workers_per_gpu: int = 1,
    cores: int | None = None,
    memory_limit: str | None = None,
) -> list[dict[str, Any]]:
    """Options of each local worker (nthreads, memory_limit, env): cores split fairly (the first workers take the
    remainder, at least one thread each), GPUs round robin."""
    if workers_per_gpu < 1:
        raise ValueError(f"--workers-per-gpu must be >= 1, got {workers_per_gpu}")
    cores = usable_cores() if cores is None else cores
    count = workers if workers is not None else (len(gpus) * workers_per_gpu if gpus else cores)
    specs = []
    for index, threads in enumerate(worker_thread_share(cores, count)):
        env = dict.fromkeys(THREAD_VARIABLES, str(threads))
        if gpus:
            env["CUDA_VISIBLE_DEVICES"] = gpus[index % len(gpus)]
        specs.append({"nthreads": 1, "memory_limit": memory_limit or "auto", "env": env})
    return specs


def _local_cluster(address: ClusterAddress, device: str, workers_per_gpu: int, memory_limit: str | None) -> Any:
    from distributed import Nanny, Scheduler, SpecCluster

    gpus = visible_gpus(device)
    if gpus and address.workers is None and workers_per_gpu == 1:
        try:
            from dask_cuda import LocalCUDACluster
        except ImportError:
            pass
        else:
            threads = min(worker_thread_share(usable_cores(), len(gpus)))  # one env for all: the smallest share
            return LocalCUDACluster(
                CUDA_VISIBLE_DEVICES=",".join(gpus),
                threads_per_worker=1,
                memory_limit=memory_limit or "auto",
                dashboard_address=":0",
                silence_logs=WORKER_LOG_LEVEL,
                env=dict.fromkeys(THREAD_VARIABLES, str(threads)),
            )
    specs = local_worker_specs(address.workers, gpus=gpus, workers_per_gpu=workers_per_gpu, memory_limit=memory_limit)
    workers = {
        index: {"cls": Nanny, "options": {**spec, "silence_logs": WORKER_LOG_LEVEL, "preload": [IGNORE_CTRL_C]}}
        for index, spec in enumerate(specs)
    }
    scheduler = {"cls": Scheduler, "options": {"dashboard_address": ":0"}}
    return SpecCluster(workers=workers, scheduler=scheduler, silence_logs=WORKER_LOG_LEVEL, name="sparse-sem local")


def jobqueue_cluster(path: str) -> tuple[Any, int]:
    """The dask-jobqueue cluster a ``jobqueue:`` YAML file describes (no job submitted yet) and its ``jobs:`` count."""
    import yaml

    config = yaml.safe_load(Path(path).read_text()) or {}
    section = config.get("jobqueue") if isinstance(config, dict) else None
    if not isinstance(section, dict) or len(section) != 1:
        raise ValueError(
            f"{path}: expected a 'jobqueue:' section naming exactly one batch system (e.g. slurm: {{cores: 8, "
            "memory: 32GB}}), as in dask-jobqueue's configuration; see docs/clusters.md"
        )
    ((system, options),) = section.items()
    try:
        import dask_jobqueue
    except ImportError as err:
        raise ValueError(
            f"{path} asks for a {system} cluster: install dask-jobqueue (pip install dask-jobqueue)"
        ) from err
    classes = {name.removesuffix("Cluster").lower(): name for name in dir(dask_jobqueue) if name.endswith("Cluster")}
    if system.lower() not in classes:
        raise ValueError(f"{path}: unknown batch system {system!r}; dask-jobqueue has {sorted(set(classes) - {'job'})}")
    jobs = int(config.get("jobs", 1))
    if jobs < 1:
        raise ValueError(f"{path}: jobs must be >= 1, got {jobs}")
    # the file's keys as keyword arguments (job-extra-directives → job_extra_directives): dask-jobqueue reads its
    # config again whenever it makes a job, so a temporary dask.config.set would be gone by then
    kwargs = {str(key).replace("-", "_"): value for key, value in (options or {}).items()}
    try:
        cluster = getattr(dask_jobqueue, classes[system.lower()])(**kwargs)
    except TypeError as err:
        raise ValueError(f"{path}: {err} (the keys under '{system}:' are dask-jobqueue's)") from err
    return cluster, jobs


@contextmanager
def connect(
    text: str, *, device: str = "auto", workers_per_gpu: int = 1, memory_limit: str | None = None
) -> Iterator[Any]:
    """A ``distributed.Client`` for the cluster ``text`` names; a cluster started here is closed when the block ends.

    The client is not made dask's default scheduler: other dask arrays of this process (napari's lazy layers) keep
    computing here instead of being shipped to the cluster.

    ``memory_limit`` (e.g. ``"4GiB"``) applies per worker of a local cluster; a scheduler we only connect to keeps
    its own settings, and a jobqueue cluster takes ``memory`` from its file.
    """
    from distributed import Client

    address = parse_cluster(text)
    cluster = None
    if address.kind == "local":
        cluster = _local_cluster(address, device, workers_per_gpu, memory_limit)
        client = Client(cluster, set_as_default=False)
    elif address.kind == "scheduler":
        client = Client(address.value, timeout="30s", set_as_default=False)
    elif address.kind == "scheduler_file":
        client = Client(scheduler_file=address.value, timeout="30s", set_as_default=False)
    else:
        cluster, jobs = jobqueue_cluster(address.value)
        cluster.scale(jobs=jobs)  # the batch jobs are submitted here; the run waits for their workers
        client = Client(cluster, set_as_default=False)
    try:
        yield client
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
