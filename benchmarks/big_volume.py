"""Memory and time of the headless path on a volume larger than the tests use: simulate, then reconstruct, via zarr.

Run: .venv/bin/python -m benchmarks.big_volume [--tiles 6 --slices 160]
Builds a (slices, 250·tiles, 250·tiles) uint8 zarr by tiling the FlyEM volume, runs `sparse-sem simulate` and
`sparse-sem reconstruct --method nearest` as subprocesses and samples their anonymous resident memory (RssAnon: what the
process really holds; memory-mapped scratch files and the page cache are excluded because the OS can reclaim them).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks._common import FLYEM, machine, markdown_table, today
from napari_sparse_sem.io import read_volume, write_volume

SPARSE_SEM = str(Path(sys.executable).with_name("sparse-sem"))


def run_measured(command: list[str]) -> tuple[float, float]:
    """Run ``command``; return (wall seconds, peak RssAnon in MB) sampled every 0.1 s from /proc."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak_kb = 0
    status = Path(f"/proc/{process.pid}/status")
    while process.poll() is None:
        try:
            for line in status.read_text().splitlines():
                if line.startswith("RssAnon:"):
                    peak_kb = max(peak_kb, int(line.split()[1]))
        except (OSError, ValueError):
            pass
        time.sleep(0.1)
    if process.returncode:
        raise RuntimeError(f"{command[1]} failed: {process.stderr.read()}")
    return time.perf_counter() - start, peak_kb / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tiles", type=int, default=6)
    parser.add_argument("--slices", type=int, default=160)
    args = parser.parse_args()
    flyem = np.asarray(read_volume(FLYEM).data[: args.slices])
    big = np.tile(flyem, (1, args.tiles, args.tiles))
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        work = Path(folder)
        write_volume(work / "dense.zarr", big, voxel_size=(10.0, 10.0, 10.0))
        del big, flyem
        size = f"{args.slices} × {250 * args.tiles}² uint8 ({args.slices * (250 * args.tiles) ** 2 / 1e6:.0f} MB)"
        simulate = [SPARSE_SEM, "simulate", str(work / "dense.zarr"), "--pattern", "random", "--coverage", "0.05"]
        seconds, mb = run_measured([*simulate, "--dose", "50", "--out", str(work / "sparse.zarr")])
        rows.append(["simulate (random 5 %, dose 50)", size, seconds, mb])
        reconstruct = [SPARSE_SEM, "reconstruct", str(work / "sparse.zarr"), "--mask", str(work / "sparse_mask.zarr")]
        seconds, mb = run_measured([*reconstruct, "--method", "nearest", "--out", str(work / "recon.zarr")])
        rows.append(["reconstruct (nearest)", size, seconds, mb])
    print(f"Date {today()}; machine: {machine()}")
    print(f"Command: .venv/bin/python -m benchmarks.big_volume --tiles {args.tiles} --slices {args.slices}\n")
    print(markdown_table(["command", "volume", "seconds", "peak RssAnon MB"], rows))


if __name__ == "__main__":
    main()
