"""How fast a run stops on SIGTERM (a cluster's time limit, ``docker stop``) and what it keeps, on real FlyEM data.

Run: .venv/bin/python -m benchmarks.stop_signals [--wait 20]

Each case starts ``sparse-sem`` as a separate process (one torch thread, stderr to a log file, as on a cluster), sends
SIGTERM ``--wait`` seconds after the first progress line, and reports the seconds from the signal to the exit, the exit
status, how many slices/runs were kept and whether any scratch or staging file was left. A scheduler's grace period
(SLURM's KillWait defaults to 30 s, ``docker stop`` waits 10 s) must cover that time.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._common import FLYEM, machine, markdown_table, today


def _cli(*args: object) -> list[str]:
    return [sys.executable, "-m", "napari_sparse_sem", *(str(a) for a in args)]


def stop_after(command: list[str], log: Path, wait: float) -> tuple[float, int]:
    """Start ``command``, SIGTERM it ``wait`` s after its first progress line; (seconds to exit, exit status)."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "w") as stderr:
        process = subprocess.Popen(command, stderr=stderr, stdout=subprocess.DEVNULL, env=env)
        while not log.read_text().strip():
            if process.poll() is not None:
                raise RuntimeError(f"finished before the first progress line: {log.read_text()}")
            time.sleep(0.05)
        time.sleep(wait)
        if process.poll() is not None:
            raise RuntimeError("finished before the signal; use a smaller --wait")
        sent = time.perf_counter()
        process.send_signal(signal.SIGTERM)
        status = process.wait()
    return time.perf_counter() - sent, status


def leftovers(folder: Path) -> int:
    return sum(1 for p in folder.iterdir() if p.name.startswith("."))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--wait", type=float, default=20.0, help="seconds after the first progress line")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        sparse = work / "sparse.tif"
        subprocess.run(_cli("simulate", FLYEM, "--slices", "100:110", "--roi", "0:128,0:128", "--out", sparse, "-q"),
                       check=True)  # fmt: skip
        cases = {
            "reconstruct --method dip (default preset, 10 × 128²)": _cli(
                "reconstruct", sparse, "--mask", work / "sparse_mask.tif", "--method", "dip", "--device", "cpu",
                "--out", work / "dip.tif",
            ),
            "compare --method linear,biharmonic --patterns all (250 × 250²)": _cli(
                "compare", FLYEM, "--method", "linear,biharmonic", "--patterns", "all", "--device", "cpu",
                "--out", work / "report",
            ),
        }  # fmt: skip
        for name, command in cases.items():
            log = work / "log.txt"
            seconds, status = stop_after(command, log, args.wait)
            if "dip" in name:
                from napari_sparse_sem.io import read_metadata

                meta = read_metadata(work / "dip.tif") if (work / "dip.tif").exists() else {}
                kept = f"{meta['slices'][1]} of 10 slices" if meta else "nothing (no slice finished)"
            else:
                params = work / "report" / "params.json"
                kept = (
                    f"{len(json.loads((work / 'report' / 'metrics.json').read_text()))} records, complete: "
                    f"{json.loads(params.read_text())['complete']}"
                    if params.exists()
                    else "nothing (no run finished)"
                )
            rows.append([name, f"{args.wait:g}", seconds, status, kept, leftovers(work)])
    print(f"Date {today()}; machine: {machine()}; one torch thread")
    print(f"Command: .venv/bin/python -m benchmarks.stop_signals --wait {args.wait:g}\n")
    header = ["run", "SIGTERM after (s)", "seconds to exit", "exit status", "kept", "scratch/staging left"]
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
