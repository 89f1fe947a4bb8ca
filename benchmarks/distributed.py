"""Block-wise runs on dask.distributed (issue #17): one process against ``local:1`` and ``local:2`` on a big volume.

Run: .venv/bin/python -m benchmarks.distributed [--slices 24 --size 3000] [--parts simulate,linear,resume,...]
Builds a (slices, size, size) uint8 OME-Zarr by tiling the FlyEM volume in-plane (written slice by slice), then
* simulates a random 5 % scan (dose 50) with ``sparse-sem simulate`` (one process) and ``simulate_on_cluster``;
* reconstructs it with ``linear`` through ``reconstruct_to_file`` (one process) and ``reconstruct_on_cluster``;
* kills a ``local:2`` reconstruction (SIGKILL to its process group) at about half-way and resumes it; times one
  block with and without dask's ``MALLOC_TRIM_THRESHOLD_``; times the multiscale pyramid; runs ``gan-mse`` on a few
  slices, whole and in tiles; measures the DIP slab boundary (cold start at the first slice of every slab) on a
  small crop against the dense ground truth.
Every run is a fresh child process (``--child``); a thread here samples the resident memory of the child (the driver)
and of its dask worker processes every 0.2 s: peak RSS and, in brackets, peak anonymous RSS (without pages of mapped
files and shared libraries, which the OS can drop). Every cluster output is compared with the one-process output.
Scratch data goes to ``--work`` (default /tmp/sparse-sem-distributed), never into the repository.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import FLYEM, REPO, machine, markdown_table, today

PARTS = ("simulate", "linear", "resume", "malloc", "pyramid", "gan", "dip")
MIB = 2**20


# -- the child: one measured run in a fresh process ---------------------------------------------------------------


def _cluster_run(spec: dict[str, Any], call: Any) -> dict[str, Any]:
    """Open the cluster, run ``call(client)``, close it; timings of each step and the workers' thread settings."""
    from napari_sparse_sem.cluster.connect import connect

    t0 = time.perf_counter()
    if spec.get("malloc_default"):  # leave glibc's malloc alone: drop dask's MALLOC_TRIM_THRESHOLD_ for the workers
        import dask

        import distributed  # noqa: F401  (loads distributed's config)

        environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ"))
        environ.pop("MALLOC_TRIM_THRESHOLD_", None)
        dask.config.set({"distributed.nanny.pre-spawn-environ": environ})
    opened = connect(spec["cluster"], device="cpu")
    client = opened.__enter__()
    t1 = time.perf_counter()
    threads = client.run(lambda: os.environ.get("OMP_NUM_THREADS"))
    try:
        out = call(client)
        t2 = time.perf_counter()
    finally:
        opened.__exit__(None, None, None)
    t3 = time.perf_counter()
    return {"start_s": t1 - t0, "run_s": t2 - t1, "close_s": t3 - t2, "seconds": t3 - t0, "threads": threads, **out}


def child(spec: dict[str, Any]) -> dict[str, Any]:
    """Run one job described by ``spec`` (kind, paths, options) and return its figures."""
    from napari_sparse_sem.cluster.reconstruct import reconstruct_on_cluster
    from napari_sparse_sem.cluster.simulate import simulate_on_cluster
    from napari_sparse_sem.recon.to_file import reconstruct_to_file
    from napari_sparse_sem.sampling.spec import AcquisitionSpec, MaskSpec

    kind = spec["kind"]
    slices = tuple(spec["slices"]) if spec.get("slices") else None
    if kind == "simulate-single":
        from napari_sparse_sem.cli import app

        args = ["simulate", spec["volume"], "--out", spec["out"], "--quiet", *spec["flags"]]
        args += ["--roi", spec["roi"], "--slices", f"{slices[0]}:{slices[1]}"] if slices else []
        t0 = time.perf_counter()
        app(args, standalone_mode=False)
        return {"seconds": time.perf_counter() - t0}
    if kind == "simulate-cluster":
        mask_spec = MaskSpec(**spec["mask"])
        acquisition = AcquisitionSpec(**spec["acquisition"]).replace(seed=mask_spec.seed)

        def simulate(client: Any) -> dict[str, Any]:
            scan = simulate_on_cluster(
                Path(spec["volume"]), Path(spec["out"]), mask_spec, acquisition, client=client, slab=spec.get("slab")
            )
            return {"blocks": scan.metadata["blocks"], "coverage": float(np.mean(scan.coverage))}

        return _cluster_run(spec, simulate)
    if kind == "pyramid":
        from napari_sparse_sem.io.pyramid import build_pyramid

        if spec["cluster"] == "none":
            t0 = time.perf_counter()
            build_pyramid(spec["out"])
            return {"seconds": time.perf_counter() - t0}

        return _cluster_run(spec, lambda client: {"levels": len(build_pyramid(spec["out"], client=client) or [])})
    if kind == "fill":  # the linear fill of one slice, ``repeat`` times, in this process
        from napari_sparse_sem.recon.interp import fill_linear

        values, known = (np.asarray(level0(Path(spec[key]))[0]) for key in ("sparse", "mask"))
        t0 = time.perf_counter()
        for _ in range(spec["repeat"]):
            fill_linear(values.astype(np.float32) / 255, known != 0)
        return {"seconds": time.perf_counter() - t0}
    paths = [Path(spec[key]) for key in ("sparse", "mask")] + [spec.get("method"), Path(spec["out"])]
    keywords = {"slices": slices, "device": "cpu", "options": spec.get("options")}
    if kind == "reconstruct-single":
        t0 = time.perf_counter()
        reconstruct_to_file(*paths, **keywords)
        return {"seconds": time.perf_counter() - t0}
    if kind == "reconstruct-cluster":
        keywords.update(resume=spec.get("resume", False), slab=spec.get("slab"), tile=spec.get("tile"), pyramid=False)

        def reconstruct(client: Any) -> dict[str, Any]:
            meta = reconstruct_on_cluster(*paths, client=client, **keywords)
            return {"blocks": meta["blocks"], "complete": meta["complete"], "slab": meta["slab"], "tile": meta["tile"]}

        return _cluster_run(spec, reconstruct)
    raise ValueError(f"unknown child kind {kind!r}")


# -- the parent: run children, sample their memory ----------------------------------------------------------------


@dataclass
class Measured:
    """One child run: what it reported, peak memory (MiB: RSS, anonymous RSS) of the driver and of each worker
    process, the 1-minute load average before and after."""

    result: dict[str, Any]
    wall_s: float
    driver: tuple[float, float]
    workers: list[tuple[float, float]] = field(default_factory=list)
    load: tuple[float, float] = (0.0, 0.0)
    killed: bool = False
    cpu_s: float = 0.0

    @property
    def seconds(self) -> float:
        return float(self.result.get("seconds", self.wall_s))

    @property
    def load_text(self) -> str:
        return f"{self.load[0]:.1f} → {self.load[1]:.1f}"

    @property
    def driver_mb(self) -> str:
        return "{:.0f} ({:.0f})".format(*self.driver)


def _rss_anon(pid: int) -> float:
    """Anonymous resident memory (MiB): what a process holds, without pages of mapped files the OS can drop."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        pass
    return 0.0


def run_child(spec: dict[str, Any], log: Path, kill_when: Any = None) -> Measured:
    """Run ``spec`` in ``python -m benchmarks.distributed --child``; SIGKILL its process group once ``kill_when()``."""
    import psutil

    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
    env.setdefault("NUMBA_CACHE_DIR", "/tmp/numba")
    load0 = os.getloadavg()[0]
    command = [sys.executable, "-m", "benchmarks.distributed", "--child", json.dumps(spec)]
    started = time.perf_counter()
    with open(log, "a") as err:
        err.write(f"\n=== {spec['kind']} {spec.get('cluster', '')} {time.ctime()}\n")
        err.flush()
        process = subprocess.Popen(
            command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=err, text=True, start_new_session=True
        )
        peaks: dict[int, tuple[float, float]] = {}
        cpu: dict[int, float] = {}
        workers: set[int] = set()
        killed = [False]
        root = psutil.Process(process.pid)

        def sample() -> None:
            while process.poll() is None:
                try:
                    family = [root, *root.children(recursive=True)]
                except psutil.Error:
                    break
                for proc in family:
                    try:
                        rss, anon = proc.memory_info().rss / MIB, _rss_anon(proc.pid)
                        times = proc.cpu_times()
                        cpu[proc.pid] = times.user + times.system
                        if proc.pid != process.pid and any("spawn_main" in part for part in proc.cmdline()):
                            workers.add(proc.pid)  # a dask worker (the nannies live in the driver)
                    except psutil.Error:
                        continue
                    old = peaks.get(proc.pid, (0.0, 0.0))
                    peaks[proc.pid] = max(old[0], rss), max(old[1], anon)
                if kill_when is not None and not killed[0] and kill_when():
                    os.killpg(process.pid, signal.SIGKILL)
                    killed[0] = True
                time.sleep(0.2)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        stdout, _ = process.communicate()
        sampler.join()
    wall = time.perf_counter() - started
    if killed[0]:
        for pid in workers:  # the whole group went: no worker may survive the kill
            if psutil.pid_exists(pid) and psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                raise RuntimeError(f"worker {pid} survived the SIGKILL of its process group")
        result: dict[str, Any] = {}
    else:
        lines = [line for line in stdout.splitlines() if line.startswith("RESULT ")]
        if process.returncode or not lines:
            raise RuntimeError(f"child {spec['kind']} failed (exit {process.returncode}); see {log}")
        result = json.loads(lines[-1][len("RESULT ") :])
    driver, load = peaks.get(process.pid, (0.0, 0.0)), (load0, os.getloadavg()[0])
    worker_peaks = sorted((peaks[pid] for pid in workers), reverse=True)
    return Measured(result, wall, driver, worker_peaks, load, killed[0], sum(cpu.values()))


# -- data and comparisons -----------------------------------------------------------------------------------------


def make_volume(path: Path, slices: int, size: int) -> None:
    """A (slices, size, size) uint8 OME-Zarr of FlyEM slices tiled in-plane, written slice by slice."""
    from napari_sparse_sem.io import read_volume
    from napari_sparse_sem.io.writers import create_ome_zarr, metadata_block

    flyem = np.asarray(read_volume(FLYEM).data)
    reps = -(-size // flyem.shape[1]), -(-size // flyem.shape[2])
    meta = {"kind": "volume", "source": f"{FLYEM.name} tiled in-plane to {size}²"}
    block = metadata_block(np.uint8, (10.0, 10.0, 10.0), meta)
    array = create_ome_zarr(path, (slices, size, size), np.uint8, (1, size, size), (10.0, 10.0, 10.0), block, "tiled")
    for z in range(slices):
        array[z] = np.tile(flyem[z % flyem.shape[0]], reps)[:size, :size]


def level0(path: Path) -> Any:
    """The full-resolution array of a volume file (lazy)."""
    from napari_sparse_sem.io import read_volume

    data = read_volume(path, lazy=True).data
    return data[0] if isinstance(data, list) else data


def compare(reference: Path, other: Path, slices: range | None = None) -> tuple[bool, float]:
    """Whether two volumes hold the same values (slice by slice) and their largest absolute difference."""
    a, b = level0(reference), level0(other)
    if tuple(a.shape) != tuple(b.shape) and slices is None:
        return False, float("nan")
    diffs = (np.abs(np.asarray(a[z], np.float64) - np.asarray(b[z], np.float64)).max() for z in slices or range(len(a)))
    worst = float(max(diffs))
    return worst == 0.0, worst


def done_count(out: Path) -> int:
    """Blocks recorded as finished in a block-wise output (0 before its record exists)."""
    from napari_sparse_sem.cluster.store import RunRecord

    return len(RunRecord(out).done())


def per_worker(measured: Measured) -> str:
    return " / ".join(f"{rss:.0f} ({anon:.0f})" for rss, anon in measured.workers) or "–"


# -- the parts ----------------------------------------------------------------------------------------------------


class Bench:
    """The runs of one benchmark; tables are collected in ``self.sections`` and printed at the end."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.work = Path(args.work)
        self.log = self.work / "children.log"
        self.volume = self.work / "dense.zarr"
        self.sections: list[str] = []
        self.full_l2 = self.single = Measured({}, 0.0, (0.0, 0.0))
        self.l2_blocks = 0

    def path(self, name: str) -> Path:
        return self.work / name

    def fresh(self, *names: str) -> None:
        for name in names:
            shutil.rmtree(self.path(name), ignore_errors=True)

    def add(self, title: str, text: str) -> None:
        block = f"### {title}\n\n{text}\n"
        self.sections.append(block)
        print(block, flush=True)

    # simulate ------------------------------------------------------------------------------------------------------
    def simulate(self) -> None:
        a = self.args
        flags = ["--pattern", "random", "--coverage", "0.05", "--seed", "0", "--dose", "50"]
        rows = []
        self.fresh("sparse_single.zarr", "sparse_single_mask.zarr")
        spec = {"kind": "simulate-single", "volume": str(self.volume), "flags": flags}
        single = run_child({**spec, "out": str(self.path("sparse_single.zarr"))}, self.log)
        rows.append(self._row("one process (`sparse-sem simulate`)", single, a.slices, None))
        for cluster in ("local:1", "local:2"):
            name = f"sparse_{cluster.replace(':', '')}.zarr"
            self.fresh(name, name.replace(".zarr", "_mask.zarr"))
            spec = {"kind": "simulate-cluster", "cluster": cluster, "volume": str(self.volume),
                    "out": str(self.path(name)), "mask": {"pattern": "random", "coverage": 0.05, "seed": 0},
                    "acquisition": {"dose": 50.0}, "slab": a.slab}  # fmt: skip
            measured = run_child(spec, self.log)
            same_sparse, _ = compare(self.path("sparse_single.zarr"), self.path(name))
            same_mask, _ = compare(self.path("sparse_single_mask.zarr"), self.path(name.replace(".zarr", "_mask.zarr")))
            if not (same_sparse and same_mask):
                raise AssertionError(f"simulate on {cluster} differs from the one-process output")
            rows.append(self._row(f"`{cluster}`", measured, a.slices, single, "sparse and mask identical"))
        self.add(f"Simulate, random 5 %, dose 50 ({self._size()})", self._table(rows))

    # linear --------------------------------------------------------------------------------------------------------
    def recon_spec(self, cluster: str | None, out: str, **extra: Any) -> dict[str, Any]:
        spec = {"kind": "reconstruct-single" if cluster is None else "reconstruct-cluster", "cluster": cluster,
                "sparse": str(self.path("sparse_single.zarr")), "mask": str(self.path("sparse_single_mask.zarr")),
                "method": "linear", "out": str(self.path(out)), "slab": self.args.slab}  # fmt: skip
        return {**spec, **extra}

    def ceiling(self) -> str:
        """How much faster two independent processes are than one on this machine now, doing the same linear fill."""
        from concurrent.futures import ThreadPoolExecutor

        spec = {**self.recon_spec(None, "unused"), "kind": "fill", "repeat": 2}
        one = run_child(spec, self.log)
        with ThreadPoolExecutor(2) as pool:
            two = list(pool.map(lambda _: run_child({**spec, "repeat": 1}, self.log), range(2)))
        ratio = one.seconds / max(m.seconds for m in two)
        return (f"- the machine's ceiling: `fill_linear` of slice 0 twice in one process {one.seconds:.1f} s, once in "
                f"each of two processes at the same time {max(m.seconds for m in two):.1f} s → {ratio:.2f}× (load "
                f"{one.load_text}, {two[0].load_text})")  # fmt: skip

    def linear(self) -> None:
        a = self.args
        ceiling = self.ceiling()
        self.fresh("linear_single.zarr")
        single = run_child(self.recon_spec(None, "linear_single.zarr"), self.log)
        rows = [self._row("one process (`reconstruct_to_file`)", single, a.slices, None)]
        runs = {}
        for cluster in ("local:1", "local:2"):
            name = f"linear_{cluster.replace(':', '')}.zarr"
            self.fresh(name)
            runs[cluster] = measured = run_child(self.recon_spec(cluster, name), self.log)
            same, worst = compare(self.path("linear_single.zarr"), self.path(name))
            if not same:
                raise AssertionError(f"linear on {cluster} differs from the one-process output (max |Δ| {worst})")
            blocks = measured.result["blocks"]["total"]
            rows.append(self._row(f"`{cluster}`, {blocks} blocks", measured, a.slices, single, "identical"))
        self.full_l2, self.l2_blocks, self.single = runs["local:2"], runs["local:2"].result["blocks"]["total"], single
        l1, l2 = runs["local:1"], runs["local:2"]
        slab = l2.result["slab"]
        working = slab * a.size**2 * 12 / MIB
        volume_mb = a.slices * a.size**2 / MIB
        notes = [
            f"- speed-up `local:1` → `local:2`: **{l1.seconds / l2.seconds:.2f}×** end to end, "
            f"{l1.result['run_s'] / l2.result['run_s']:.2f}× without the cluster's start and close",
            f"- overhead of the cluster path on one worker: {l1.seconds - single.seconds:+.1f} s "
            f"({100 * (l1.seconds / single.seconds - 1):+.0f} %) against one process, of which "
            f"{l1.result['start_s'] + l1.result['close_s']:.1f} s start and close of the cluster",
            f"- threads per worker (`OMP_NUM_THREADS` the workers got): local:1 {sorted(l1.result['threads'].values())}"
            f", local:2 {sorted(l2.result['threads'].values())}; the one-process run had 1",
            f"- volume {volume_mb:.0f} MiB (uint8); slab {slab} slices → block working set ≈ {working:.0f} MiB "
            "(float32 values, mask and result: 12 bytes a pixel); peak memory per worker in the table",
            ceiling,
        ]
        self.add(f"Reconstruct, `linear` ({self._size()})", self._table(rows) + "\n\n" + "\n".join(notes))

    # resume --------------------------------------------------------------------------------------------------------
    def resume(self) -> None:
        name = "linear_resume.zarr"
        self.fresh(name)
        out = self.path(name)
        total = self.l2_blocks
        # Killed when half of the blocks are recorded or half of a full run's time has passed, whichever comes first
        # (with two workers blocks finish in pairs, so the count alone can overshoot).
        t0, full = time.perf_counter(), self.full_l2.wall_s
        kill = lambda: done_count(out) >= total / 2 or time.perf_counter() - t0 >= full / 2  # noqa: E731
        first = run_child(self.recon_spec("local:2", name), self.log, kill_when=kill)
        assert first.killed, "the run ended before it was killed; use more slices"
        before = done_count(out)
        again = run_child(self.recon_spec("local:2", name, resume=True), self.log)
        same, worst = compare(self.path("linear_single.zarr"), out)
        if not same:
            raise AssertionError(f"the resumed output differs from the one-process output (max |Δ| {worst})")
        blocks = again.result["blocks"]
        header = ["step", "blocks", "seconds", "driver MiB RSS (anon)", "worker MiB RSS (anon)", "load 1 min"]
        rows = [
            [f"killed (SIGKILL to the group) after {first.wall_s:.0f} s", f"{before} of {total} recorded", first.wall_s,
             first.driver_mb, per_worker(first), first.load_text],
            ["resume (`resume=True`)", f"{blocks['this_run']} run again", again.seconds, again.driver_mb,
             per_worker(again), again.load_text],
        ]  # fmt: skip
        notes = [
            f"- blocks done before the kill: {before}; blocks computed on resume: {blocks['this_run']} "
            f"(total {blocks['total']}, complete: {again.result['complete']})",
            f"- resume took {again.seconds:.1f} s against {full:.1f} s for a full `local:2` run "
            f"({100 * again.seconds / full:.0f} %); killed run + resume: {first.wall_s + again.seconds:.1f} s",
            "- the resumed output is identical to the one-process output",
        ]
        self.add(f"Kill and resume, `linear` on `local:2` ({self._size()})", markdown_table(header, rows)
                 + "\n\n" + "\n".join(notes))  # fmt: skip

    def malloc(self) -> None:
        """One block of ``linear`` on ``local:1`` with dask's ``MALLOC_TRIM_THRESHOLD_`` (its default) and without."""
        n = self.full_l2.result["slab"]
        rows = []
        for label, extra in (("dask's default, 65536", {}), ("unset: glibc decides", {"malloc_default": True})):
            name = f"linear_malloc{len(rows)}.zarr"
            self.fresh(name)
            m = run_child(self.recon_spec("local:1", name, slices=[0, n], **extra), self.log)
            same, _ = compare(self.path("linear_single.zarr"), self.path(name), range(n))
            rows.append([label, m.seconds, m.result["run_s"] / n, self.single.seconds / self.args.slices, m.cpu_s,
                         "identical" if same else "differs", m.load_text])  # fmt: skip
        header = ["`MALLOC_TRIM_THRESHOLD_` of the worker", "seconds", "s / slice in the cluster",
                  "s / slice, one process (above)", "CPU s", "output", "load 1 min"]  # fmt: skip
        self.add(f"`linear` on `local:1`, slices 0:{n} (one block): the worker's malloc", markdown_table(header, rows))

    # pyramid -------------------------------------------------------------------------------------------------------
    def pyramid(self) -> None:
        target = str(self.path("sparse_local2.zarr"))
        rows = []
        for cluster in ("none", "local:2"):
            measured = run_child({"kind": "pyramid", "cluster": cluster, "out": target}, self.log)
            label = "one process" if cluster == "none" else f"`{cluster}`"
            rows.append([label, measured.seconds, measured.driver_mb, per_worker(measured), measured.load_text])
        same, _ = compare(self.path("sparse_single.zarr"), Path(target))
        assert same, "building the pyramid changed level 0"
        header = ["pyramid of the sparse stack", "seconds", "driver MiB RSS (anon)", "worker MiB RSS (anon)",
                  "load 1 min"]  # fmt: skip
        title = f"Multiscale pyramid (`build_pyramid`, {self._size()})"
        self.add(title, markdown_table(header, rows))

    # gan -----------------------------------------------------------------------------------------------------------
    def gan(self) -> None:
        from napari_sparse_sem.metrics import psnr

        a = self.args
        self.fresh("gan_single.zarr")
        one = run_child(self.recon_spec(None, "gan_single.zarr", method="gan-mse", slices=[0, 1]), self.log)
        # three cluster runs on n slices: about n·s · 2.5 on 2 cores (measured), plus about 15 s of start and close each
        n = min(a.slices, int(max(0.0, a.gan_budget - one.wall_s - 45) // (2.5 * one.seconds)))
        n -= n % 2 if n > 2 else 0  # an even count: both workers get as many slices
        tile = a.gan_tile or -(-a.size // 2)
        rows = [["one process, slice 0", 1, one.seconds, one.seconds, one.driver_mb, "–", "reference", one.load_text]]
        notes = [f"- one slice took {one.seconds:.0f} s in one process; the cluster runs got {n} slice(s)"]
        runs = [("local:1", None), ("local:2", None), ("local:2", tile)] if n else []
        dense = level0(self.volume)
        for cluster, tiles in runs:
            name = f"gan_{cluster.replace(':', '')}_{tiles or 'whole'}.zarr"
            self.fresh(name)
            spec = self.recon_spec(cluster, name, method="gan-mse", slices=[0, n], tile=tiles, slab=1)
            measured = run_child(spec, self.log)
            same, worst = compare(self.path("gan_single.zarr"), self.path(name), range(1))
            image = level0(self.path(name))
            score = np.mean([psnr(np.asarray(dense[z]) / 255, np.asarray(image[z]) / 255) for z in range(n)])
            blocks = measured.result["blocks"]["total"]
            what = f"{blocks} tiles of {tiles}²" if tiles else f"{blocks} whole slices"
            rows.append([f"`{cluster}`, {what}", n, measured.seconds, measured.seconds / n, measured.driver_mb,
                         per_worker(measured), "identical" if same else f"max abs diff {worst:.0f} of 255",
                         measured.load_text])  # fmt: skip
            notes.append(f"- `{cluster}`, {what}: PSNR against the dense volume over the {n} slice(s) {score:.3f} dB")
        header = ["run", "slices", "seconds", "s / slice", "driver MiB RSS (anon)", "worker MiB RSS (anon)",
                  "slice 0 vs one process", "load 1 min"]  # fmt: skip
        self.add(
            f"`gan-mse` (shipped weights, {a.size}² slices)", markdown_table(header, rows) + "\n\n" + "\n".join(notes)
        )

    # dip -----------------------------------------------------------------------------------------------------------
    def dip(self) -> None:
        from napari_sparse_sem.io import read_volume
        from napari_sparse_sem.metrics import psnr

        a = self.args
        z0, nz, y0, side = 100, 8, 60, 128
        roi = f"{y0}:{y0 + side},{y0}:{y0 + side}"
        self.fresh("dip_sparse.zarr", "dip_sparse_mask.zarr")
        flags = ["--pattern", "random", "--coverage", "0.05", "--seed", "0"]
        spec = {"kind": "simulate-single", "volume": str(FLYEM), "flags": flags, "roi": roi, "slices": [z0, z0 + nz]}
        run_child({**spec, "out": str(self.path("dip_sparse.zarr"))}, self.log)
        truth = np.asarray(read_volume(FLYEM).data[z0 : z0 + nz, y0 : y0 + side, y0 : y0 + side], np.float64) / 255
        cold, warm = (int(v) for v in a.dip_iterations.split(","))
        base = {"channels": 24, "stopping": "fixed", "iterations_first": cold, "iterations_warm": warm}
        base["preview_every"] = 0
        runs = [(8, 0), (2, 0), (2, 2)]
        first = [z for z in range(2, nz, 2)]  # first slices of the slabs of 2, but for slice 0 (cold everywhere)
        other = [z for z in range(1, nz, 2)]
        rows, by_run = [], {}
        for slab, warmup in runs:
            name = f"dip_slab{slab}_w{warmup}.zarr"
            self.fresh(name)
            inputs = {key: str(self.path(f"dip_sparse{end}.zarr")) for key, end in (("sparse", ""), ("mask", "_mask"))}
            options = {**base, "warmup_slices": warmup}
            measured = run_child(
                self.recon_spec("local:2", name, method="dip", options=options, slab=slab, **inputs), self.log
            )
            image = np.asarray(level0(self.path(name)), np.float64) / 255
            scores = [psnr(truth[z], image[z]) for z in range(nz)]
            by_run[(slab, warmup)] = scores
            rows.append([
                f"slab {slab}, warm-up slices {warmup}", measured.seconds, float(np.mean([scores[z] for z in first])),
                float(np.mean([scores[z] for z in other])), scores[0], float(np.mean(scores)),
                " ".join(f"{s:.2f}" for s in scores), measured.load_text,
            ])  # fmt: skip
        gaps = "; ".join(f"warm-up {w}: {np.mean([by_run[(2, w)][z] - by_run[(8, 0)][z] for z in first]):+.2f} dB"
                         for w in (0, 2))  # fmt: skip
        notes = [f"- slab-first slices {first} at slab 2 against the same slices warm-started at slab 8: {gaps}",
                 f"- options: `dip`, {base} (slice 0 is a cold start in every run; slab 8 is one block, the same fits "
                 "as one process)"]  # fmt: skip
        header = ["run (`local:2`)", "seconds", f"PSNR slices {first} dB", f"PSNR slices {other} dB",
                  "PSNR slice 0 dB", "mean dB", "per slice dB", "load 1 min"]  # fmt: skip
        title = f"DIP slab boundary (FlyEM slices {z0}:{z0 + nz}, ROI {roi}, random 5 %)"
        self.add(title, markdown_table(header, rows) + "\n\n" + "\n".join(notes))

    def _size(self) -> str:
        a = self.args
        return f"{a.slices} × {a.size}², {a.slices * a.size**2 / MIB:.0f} MiB uint8"

    def _row(self, label: str, m: Measured, slices: int, ref: Measured | None, same: str = "reference") -> list[Any]:
        mpix = slices * self.args.size**2 / 1e6
        cluster = f"{m.result['start_s'] + m.result['close_s']:.1f}" if "start_s" in m.result else "–"
        speed = f"{ref.seconds / m.seconds:.2f}×" if ref is not None else "1×"
        return [label, m.seconds, m.cpu_s, cluster, slices / m.seconds, mpix / m.seconds, speed, m.driver_mb,
                per_worker(m), same, m.load_text]  # fmt: skip

    @staticmethod
    def _table(rows: list[list[Any]]) -> str:
        header = ["run", "seconds", "CPU s, all processes", "of which cluster start + close", "slices/s", "MPix/s",
                  "vs one process", "driver MiB RSS (anon)", "worker MiB RSS (anon) each", "output",
                  "load 1 min before → after"]  # fmt: skip
        return markdown_table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", type=int, default=24, help="slices of the tiled volume")
    parser.add_argument("--size", type=int, default=3000, help="side of its square slices, px")
    parser.add_argument("--slab", type=int, default=None, help="slices per block (default: the service's)")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated, from {','.join(PARTS)}")
    parser.add_argument("--gan-budget", type=float, default=300.0, help="seconds the gan-mse part may take")
    parser.add_argument("--gan-tile", type=int, default=None, help="tile of the gan-mse blocks (default size/2)")
    parser.add_argument("--dip-iterations", default="400,100", help="DIP fixed iterations: cold,warm")
    parser.add_argument("--work", default="/tmp/sparse-sem-distributed", help="scratch folder (removed at the end)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print("RESULT " + json.dumps(child(json.loads(args.child)), default=str), flush=True)
        return
    parts = [p for p in args.parts.split(",") if p]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"unknown parts {unknown}; choose from {PARTS}")
    if {"resume", "malloc"} & set(parts) and "linear" not in parts:
        parser.error("resume and malloc compare with the one-process linear output: add linear")
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    bench = Bench(args)
    started = time.perf_counter()
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout
    print(f"Date {today()}; machine: {machine()}; commit {head.strip()}; load {os.getloadavg()}", flush=True)
    print(f"Command: .venv/bin/python -m benchmarks.distributed {' '.join(sys.argv[1:])}\n", flush=True)
    try:
        if parts != ["dip"]:
            t0 = time.perf_counter()
            make_volume(bench.volume, args.slices, args.size)
            print(f"volume {bench._size()} written in {time.perf_counter() - t0:.1f} s\n", flush=True)
        if {"linear", "gan", "pyramid"} & set(parts) and "simulate" not in parts:
            parts.insert(0, "simulate")
        for part in PARTS:
            if part in parts:
                getattr(bench, part)()
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\nDate {today()}; machine: {machine()}; total {time.perf_counter() - started:.0f} s\n")
    print("\n".join(bench.sections))


if __name__ == "__main__":
    main()
