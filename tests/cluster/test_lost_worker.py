"""A worker process that dies mid-run (OOM killer, node failure) costs nothing but time: the scheduler runs its block
again on a live worker, the nanny restarts the dead one, and the output is the single-process output byte for byte."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import numpy as np
import pytest
import tifffile

from napari_sparse_sem.cluster.reconstruct import reconstruct_blocks_job
from napari_sparse_sem.cluster.run import BlockDone
from napari_sparse_sem.cluster.store import RunRecord
from napari_sparse_sem.io import read_volume, write_volume
from napari_sparse_sem.recon.to_file import reconstruct_to_file
from napari_sparse_sem.runtime import run_job

CROP = Path(__file__).parents[2] / "src" / "napari_sparse_sem" / "data" / "flyem_medulla_crop_z120-151.tif"


@pytest.fixture
def sparse_pair(tmp_path: Path) -> tuple[Path, Path]:
    dense = tifffile.imread(CROP)[:12, :128, :128]
    scanned = np.random.default_rng(3).random(dense.shape) < 0.1
    write_volume(tmp_path / "sparse.zarr", np.where(scanned, dense, 0).astype(np.uint8))
    write_volume(tmp_path / "mask.zarr", scanned)
    return tmp_path / "sparse.zarr", tmp_path / "mask.zarr"


def test_a_killed_worker_is_replaced_and_its_block_runs_again(sparse_pair, tmp_path: Path) -> None:
    distributed = pytest.importorskip("distributed")
    sparse, mask = sparse_pair
    reconstruct_to_file(sparse, mask, "linear", tmp_path / "single.zarr")
    with (
        distributed.LocalCluster(
            n_workers=2, processes=True, threads_per_worker=1, dashboard_address=None, silence_logs=40
        ) as cluster,
        distributed.Client(cluster, set_as_default=False) as client,
    ):
        pids = client.run(os.getpid)
        killed: list[int] = []

        def kill_one_worker(event) -> None:
            if isinstance(event.partial, BlockDone) and not killed:
                victim = next(iter(pids.values()))  # a worker that may be running a block right now
                os.kill(victim, signal.SIGKILL)
                killed.append(victim)

        job = reconstruct_blocks_job(sparse, mask, "linear", tmp_path / "c.zarr", client=client, slab=1, pyramid=False)
        meta = run_job(job, kill_one_worker)
        workers_after = set(client.run(os.getpid).values())
    assert killed and killed[0] not in workers_after  # it really died and was replaced
    assert meta["complete"] is True and meta["blocks"]["done"] == 12
    done = RunRecord(tmp_path / "c.zarr").done()
    assert len(done) == 12
    single = np.asarray(read_volume(tmp_path / "single.zarr").data)
    np.testing.assert_array_equal(np.asarray(read_volume(tmp_path / "c.zarr").data), single)
