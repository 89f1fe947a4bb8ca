"""`sparse-sem reconstruct|simulate --cluster`: clear refusals before any work, the single-process bytes, a failed
block that exits non-zero and is retried by --resume, and a run SIGKILLed half-way whose --resume computes only the
blocks that were missing.

Most tests connect to one LocalCluster of two worker processes by its address (``--cluster tcp://…``), so they do not
each start a cluster; the kill test starts its own with ``--cluster local:2`` in a process group of its own."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from napari_sparse_sem.cli import app
from napari_sparse_sem.cli.run import command_line
from napari_sparse_sem.cluster.store import RunRecord
from napari_sparse_sem.io import read_metadata, read_volume, write_volume
from napari_sparse_sem.recon.to_file import reconstruct_to_file
from napari_sparse_sem.sampling.record import AcquisitionRecord

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def volume(path: Path) -> np.ndarray:
    return np.asarray(read_volume(path).data)


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """The address of a running two-worker LocalCluster (processes), for ``--cluster tcp://HOST:PORT``."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(
        n_workers=2, processes=True, threads_per_worker=1, dashboard_address=":0", silence_logs=50
    ) as cluster:
        yield cluster.scheduler_address


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, flyem_crop_uint8: np.ndarray) -> dict[str, Path]:
    """A 16 x 128 x 128 crop of the FlyEM stack (10 nm voxels) and its 20 % scan, written by the single-process CLI."""
    folder = tmp_path_factory.mktemp("cluster-cli")
    crop = folder / "crop.tif"
    tifffile.imwrite(
        crop,
        flyem_crop_uint8[:16, 60:188, 60:188],
        imagej=True,
        resolution=(0.1, 0.1),
        metadata={"spacing": 10.0, "unit": "nm", "axes": "ZYX"},
    )
    result = invoke("simulate", crop, "-o", folder / "sparse.zarr", "--coverage", "0.2", "--seed", "2", "-q")
    assert result.exit_code == 0, result.output
    return {"crop": crop, "sparse": folder / "sparse.zarr", "mask": folder / "sparse_mask.zarr"}


@pytest.mark.parametrize(
    "flags",
    [["--slab", "2"], ["--resume"], ["--no-pyramid"], ["--memory-limit", "1GiB"], ["--workers-per-gpu", "2"]],
)
def test_block_flags_need_cluster(data: dict[str, Path], tmp_path: Path, flags: list[str]) -> None:
    out = tmp_path / "r.zarr"
    result = invoke("reconstruct", data["sparse"], "-m", data["mask"], "-o", out, *flags)
    assert result.exit_code == 2
    assert f"Error: {flags[0]}: only for block-wise runs; add --cluster" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["reconstruct", "{sparse}", "-m", "{mask}", "-o", "{tmp}/r.tif", "--cluster", "local:2"], "name --out *.zarr"),
        (["simulate", "{crop}", "-o", "{tmp}/s.tif", "--cluster", "local"], "name --out *.zarr"),
        (["simulate", "{crop}", "-o", "{tmp}/s.zarr", "--slab", "4"], "--slab: only for block-wise runs"),
        (["reconstruct", "{sparse}", "-m", "{mask}", "-o", "{tmp}/r.zarr", "--cluster", "farm"], "not a cluster we"),
        (
            [
                "reconstruct",
                "{sparse}",
                "-m",
                "{mask}",
                "-o",
                "{tmp}/r.zarr",
                "--cluster",
                "local",
                "--resume",
                "--overwrite",
            ],
            "choose one",
        ),
    ],
)
def test_cluster_refusals_before_any_work(data: dict[str, Path], tmp_path: Path, args: list[str], message: str) -> None:
    names = {"sparse": data["sparse"], "mask": data["mask"], "crop": data["crop"], "tmp": tmp_path}
    result = invoke(*(a.format(**names) for a in args))
    assert result.exit_code == 2 and message in result.stderr, result.output
    assert not [p for p in tmp_path.iterdir()]


def test_failed_block_exits_nonzero_and_resume_retries_it(
    data: dict[str, Path], scheduler: str, tmp_path: Path
) -> None:
    single = tmp_path / "single.zarr"
    assert (
        invoke("reconstruct", data["sparse"], "-m", data["mask"], "-o", single, "--slices", "2:14", "-q").exit_code == 0
    )
    known = volume(data["mask"]).astype(bool)
    mask = tmp_path / "mask.zarr"
    write_volume(mask, np.where(np.arange(16)[:, None, None] == 7, False, known), voxel_size=(10, 10, 10))
    out = tmp_path / "r.zarr"
    args = ["reconstruct", data["sparse"], "-m", mask, "-o", out, "--slices", "2:14", "--cluster", scheduler]
    args += ["--slab", "4", "--no-pyramid"]

    failed = invoke(*args)
    assert failed.exit_code == 1
    assert "cluster: 2 worker(s), 3 block(s) · dashboard http" in failed.stderr
    assert "blocks: 2 of 3 done, 1 failed" in failed.stdout
    assert "1 block(s) failed and are missing from" in failed.stderr and "(complete: false)" in failed.stderr
    assert "z4-8_y0-128_x0-128: ValueError: input slice 7 has no scanned pixels" in failed.stderr
    assert "--resume" in failed.stderr
    assert read_metadata(out)["complete"] is False

    write_volume(mask, known, voxel_size=(10, 10, 10), overwrite=True)  # the cause fixed
    resumed = invoke(*args, "--resume", "-q")
    assert resumed.exit_code == 0, resumed.output
    assert "blocks: 3 of 3 done (1 in this run), 0 failed" in resumed.stdout
    np.testing.assert_array_equal(volume(out), volume(single))
    saved = read_metadata(out)
    assert saved["complete"] is True and saved["failed_blocks"] == []
    record = saved["run"]  # the block-wise flags are in the run record like every other flag, except --resume:
    assert record["arguments"]["cluster"] == scheduler and record["arguments"]["slab"] == 4
    assert "resume" not in record["arguments"]  # how the run went, not what it makes: a replay starts fresh
    line = command_line(record["command"], record["arguments"])
    assert f"--cluster {scheduler} --slab 4 --no-pyramid" in line


def test_simulate_on_cluster_equals_single_process(data: dict[str, Path], scheduler: str, tmp_path: Path) -> None:
    common = ["simulate", data["crop"], "--slices", "1:9", "--coverage", "0.15", "--seed", "5", "--dose", "40"]
    single = invoke(*common, "-o", tmp_path / "single.zarr", "-q")
    blocks = invoke(*common, "-o", tmp_path / "blocks.zarr", "--cluster", scheduler, "--slab", "2", "-q")
    assert single.exit_code == 0 and blocks.exit_code == 0, blocks.output
    assert "blocks: 4 of 4 done, 0 failed" in blocks.stdout
    # the same report as the single-process run, but for the block line
    assert blocks.stdout.replace("blocks", "single").splitlines()[:-1] == single.stdout.splitlines()
    for name in ("{}.zarr", "{}_mask.zarr"):
        ours, theirs = tmp_path / name.format("blocks"), tmp_path / name.format("single")
        np.testing.assert_array_equal(volume(ours), volume(theirs))
        assert AcquisitionRecord.from_metadata(read_metadata(ours)) == AcquisitionRecord.from_metadata(
            read_metadata(theirs)
        )


def _run_ids(out: Path) -> dict[str, str]:
    """Finished block → the id of the run that computed it."""
    return {key: entry["run_id"] for key, entry in RunRecord(out).done().items()} if out.exists() else {}


def test_resume_after_sigkill_computes_only_the_missing_blocks(
    flyem_crop_uint8: np.ndarray, scheduler: str, tmp_path: Path
) -> None:
    """The whole run (driver and its local workers) is SIGKILLed once about half its blocks are done; --resume then
    computes exactly the other blocks, and the result is the single-process output."""
    dense = flyem_crop_uint8[:24, :160, :160]
    known = np.random.default_rng(8).random(dense.shape) < 0.2
    sparse, mask, single = tmp_path / "sparse.zarr", tmp_path / "mask.zarr", tmp_path / "single.zarr"
    write_volume(sparse, np.where(known, dense, 0), voxel_size=(10, 10, 10))
    write_volume(mask, known, voxel_size=(10, 10, 10))
    out, log = tmp_path / "r.zarr", tmp_path / "log.txt"
    args = ["reconstruct", sparse, "-m", mask, "-o", out, "--slab", "1", "--no-pyramid"]
    command = [sys.executable, "-m", "napari_sparse_sem", *map(str, args), "--cluster", "local:2", "-q"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "w") as stderr, ThreadPoolExecutor(1) as pool:
        process = subprocess.Popen(command, stdout=stderr, stderr=stderr, env=env, start_new_session=True)
        reference = pool.submit(reconstruct_to_file, sparse, mask, "linear", single)  # while the cluster starts
        try:
            deadline = time.monotonic() + 300  # a hang guard, not a timing assert
            while len(_run_ids(out)) < 12:
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "the run did not get half-way"
                time.sleep(0.01)
        finally:
            os.killpg(process.pid, signal.SIGKILL)  # the driver and its workers, all at once
            process.wait(timeout=60)
        reference.result()
    before = _run_ids(out)
    assert 12 <= len(before) < 24, f"{len(before)} blocks were done when the kill landed"
    assert read_metadata(out)["complete"] is False

    resumed = invoke(*args, "--cluster", scheduler, "--resume", "-q")
    assert resumed.exit_code == 0, resumed.output
    after = _run_ids(out)
    assert len(after) == 24
    assert {key: after[key] for key in before} == before  # the finished blocks were not run again
    new = {key: run for key, run in after.items() if key not in before}
    assert len(new) == 24 - len(before) and len(set(new.values())) == 1  # exactly the others, by the new run
    assert f"blocks: 24 of 24 done ({24 - len(before)} in this run), 0 failed" in resumed.stdout
    np.testing.assert_array_equal(volume(out), volume(single))
    assert read_metadata(out)["complete"] is True


def test_sigterm_keeps_finished_blocks_and_says_how_to_resume(
    flyem_crop_uint8: np.ndarray, scheduler: str, tmp_path: Path
) -> None:
    """SIGTERM (a batch system's time limit) once a block is done: the run stops at its next step, keeps the finished
    blocks (complete: false), says so with --resume, and exits 143."""
    from napari_sparse_sem.runtime import stop_signals

    known = np.random.default_rng(9).random(flyem_crop_uint8.shape) < 0.2
    sparse, mask, out = tmp_path / "sparse.zarr", tmp_path / "mask.zarr", tmp_path / "r.zarr"
    write_volume(sparse, np.where(known, flyem_crop_uint8, 0))
    write_volume(mask, known)
    sent: list[bool] = []

    def term_after_first_block() -> None:
        deadline = time.monotonic() + 120  # a hang guard, not a timing assert
        while not _run_ids(out) and time.monotonic() < deadline:
            time.sleep(0.01)
        sent.append(True)
        os.kill(os.getpid(), signal.SIGTERM)  # handled by stop_signals, as in `sparse-sem` itself

    args = ["reconstruct", sparse, "-m", mask, "-o", out, "--cluster", scheduler, "--slab", "1", "--no-pyramid"]
    with stop_signals(), ThreadPoolExecutor(1) as pool:
        killer = pool.submit(term_after_first_block)
        result = invoke(*args)
        killer.result()
    assert sent and result.exit_code == 143, result.output
    saved = read_metadata(out)
    assert saved["complete"] is False and 1 <= saved["blocks"]["done"] < 32
    kept = re.search(r"Stopped by SIGTERM: kept the (\d+) finished of 32 blocks in (\S+) ", result.stderr)
    assert kept is not None and kept.group(2) == str(out), result.stderr
    # blocks that were running at the stop may still finish on the cluster (it is not ours to close): counts only grow
    assert saved["blocks"]["done"] <= int(kept.group(1)) <= len(_run_ids(out)) < 32
    assert "run the same command with --resume to finish it" in result.stderr and "Traceback" not in result.output
