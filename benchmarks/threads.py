"""CPU threads beside a busy neighbour (issue #19): a short DIP fit and gan-mse with torch's default threads, with
``set_threads(thread_count(0))`` (auto: the usable cores not busy elsewhere) and with one thread, alone and beside
busy processes.

Run: .venv/bin/python -m benchmarks.threads [--quick] [--busy 1] [--device cpu] [--out bench_out/threads]

* DIP: a fixed count of iterations (``--iterations``, default 100; 20 with ``--quick``) of the ``default`` preset on a
  128² crop of FlyEM slice 125 (y, x 60:188) at 5 % random coverage (seed 0), no warm-up slices, no preview.
* gan-mse: one 512² slice (four FlyEM slices 120-123 side by side, 500², reflected to 512²) at 5 % spiral coverage
  with the shipped weights; the median of ``--repeats`` (5) reconstructions after one warm-up.

Every measurement runs in a fresh Python process (torch's default thread count is what a new process picks, and torch
sizes its inter-op pool only once per process) whose environment has no ``OMP_NUM_THREADS``/``MKL_NUM_THREADS``/
``OPENBLAS_NUM_THREADS``/``NUMBA_NUM_THREADS``, so "default" means the libraries' own choice. A busy neighbour is a
``python -c "while True: pass"`` process started before the measurement and stopped after it. Every measurement is
repeated ``--rounds`` times (3; 2 with ``--quick``), the rounds one after the other so that each compares the modes
under the same background load; the table shows the median. The table (markdown) goes to stdout and
``--out``/threads.md, every record to ``--out``/threads.json. Timings on a shared machine vary: the load average before
each measurement is recorded.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import FLYEM, REPO, machine, markdown_table, today
from napari_sparse_sem.threads import THREAD_VARIABLES

MODES = ("default", "auto", "1")
TASKS = ("dip", "gan-mse")
DIP_SLICE, DIP_ROI = 125, (slice(60, 188), slice(60, 188))
GAN_SLICES = (120, 121, 122, 123)
GAN_SIZE = 512


# ------------------------------------------------------------------------------------------------ one measurement
def _apply_mode(mode: str) -> None:
    from napari_sparse_sem.threads import set_threads, thread_count

    if mode == "auto":
        set_threads(thread_count(0))
    elif mode != "default":
        set_threads(int(mode))


def _dip_seconds(device: str, iterations: int) -> float:
    from napari_sparse_sem.io import read_volume
    from napari_sparse_sem.recon import create
    from napari_sparse_sem.runtime import run_job
    from napari_sparse_sem.sampling import MaskSpec, slice_mask

    volume = read_volume(FLYEM, lazy=True)
    image = np.asarray(volume.data[DIP_SLICE][DIP_ROI], dtype=np.float32) / 255.0
    mask = slice_mask(image.shape, MaskSpec("random", 0.05, seed=0), 0).mask
    sparse = np.where(mask, image, 0.0).astype(np.float32)[None]
    method = create(
        "dip",
        device=device,
        preset="default",
        stopping="fixed",
        iterations_first=iterations,
        warmup_slices=0,
        preview_every=0,
    )
    start = time.perf_counter()
    run_job(method.reconstruct_slice_job(sparse, mask[None], 0))
    seconds = time.perf_counter() - start
    method.close()
    return seconds


def _gan_seconds(device: str, repeats: int) -> float:
    from napari_sparse_sem.io import read_volume
    from napari_sparse_sem.recon import create
    from napari_sparse_sem.runtime import run_job
    from napari_sparse_sem.sampling import MaskSpec, slice_mask

    volume = read_volume(FLYEM, lazy=True)
    tiles = [np.asarray(volume.data[z], dtype=np.float32) / 255.0 for z in GAN_SLICES]
    mosaic = np.block([[tiles[0], tiles[1]], [tiles[2], tiles[3]]])
    pad = GAN_SIZE - mosaic.shape[0]
    image = np.pad(mosaic, ((0, pad), (0, GAN_SIZE - mosaic.shape[1])), mode="reflect")
    mask = slice_mask(image.shape, MaskSpec("spiral", 0.05, seed=0), 0).mask
    sparse = np.where(mask, image, 0.0).astype(np.float32)[None]
    method = create("gan-mse", device=device)
    run_job(method.reconstruct_slice_job(sparse, mask[None], 0))  # warm-up: weights, first allocation
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run_job(method.reconstruct_slice_job(sparse, mask[None], 0))
        times.append(time.perf_counter() - start)
    method.close()
    return float(np.median(times))


def child(task: str, mode: str, device: str, iterations: int, repeats: int) -> dict[str, Any]:
    """One measurement in this process (called in a fresh one by :func:`measure`)."""
    import torch

    from napari_sparse_sem.runtime import pick_device
    from napari_sparse_sem.threads import describe

    _apply_mode(mode)
    device = pick_device(device)
    seconds = _dip_seconds(device, iterations) if task == "dip" else _gan_seconds(device, repeats)
    return {"seconds": seconds, "torch_threads": torch.get_num_threads(), "threads": describe(), "device": device}


# ------------------------------------------------------------------------------------------------------- driver
def measure(task: str, mode: str, busy: int, args: argparse.Namespace) -> dict[str, Any]:
    """``task`` in a fresh process with ``mode`` threads, beside ``busy`` busy processes."""
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARIABLES}
    command = [sys.executable, "-m", "benchmarks.threads", "--child", task, "--mode", mode, "--device", args.device]
    command += ["--iterations", str(args.iterations), "--repeats", str(args.repeats)]
    neighbours = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(busy)]
    try:
        load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
        done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=args.timeout)
    finally:
        for process in neighbours:
            process.kill()
            process.wait()
    if done.returncode != 0:
        raise RuntimeError(f"{task} ({mode}) failed:\n{done.stderr[-3000:]}")
    record = json.loads(done.stdout.strip().splitlines()[-1])
    return {"task": task, "mode": mode, "busy": busy, "load_before": load, **record}


def table(records: list[dict[str, Any]]) -> str:
    """One row per task × neighbours: median seconds per mode (torch threads in brackets) and speed-ups over
    default."""
    rows = []
    for task in TASKS:
        for busy in sorted({r["busy"] for r in records}):
            median: dict[str, float] = {}
            threads: dict[str, int] = {}
            for mode in MODES:
                runs = [r for r in records if (r["task"], r["busy"], r["mode"]) == (task, busy, mode)]
                if runs:
                    median[mode] = float(np.median([r["seconds"] for r in runs]))
                    threads[mode] = runs[0]["torch_threads"]
            if not median:
                continue
            base = median.get("default")
            cells: list[Any] = [task, busy]
            cells += [f"{median[m]:.2f} ({threads[m]})" if m in median else "–" for m in MODES]
            cells += [f"{base / median[m]:.2f}x" if m in median and base else "–" for m in ("auto", "1")]
            rows.append(cells)
    header = [
        "task",
        "busy processes",
        "default s (threads)",
        "auto s (threads)",
        "1 thread s",
        "auto vs default",
        "1 thread vs default",
    ]
    return markdown_table(header, rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="fewer DIP iterations")
    parser.add_argument("--iterations", type=int, default=None, help="DIP iterations (default 100; --quick 20)")
    parser.add_argument("--repeats", type=int, default=None, help="gan-mse repeats (default 5)")
    parser.add_argument("--rounds", type=int, default=None, help="repetitions of every measurement (3; --quick 2)")
    parser.add_argument("--busy", type=int, default=1, help="busy processes beside the measurement (besides none)")
    parser.add_argument("--tasks", default=",".join(TASKS), help="dip, gan-mse")
    parser.add_argument("--modes", default=",".join(MODES), help="default, auto, 1 (or any thread count)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds one measurement may take")
    parser.add_argument("--out", type=Path, default=Path("bench_out/threads"))
    parser.add_argument("--child", choices=TASKS, help=argparse.SUPPRESS)
    parser.add_argument("--mode", default="default", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.iterations is None:
        args.iterations = 20 if args.quick else 100
    if args.repeats is None:
        args.repeats = 5
    if args.rounds is None:
        args.rounds = 2 if args.quick else 3
    if args.child:
        print(json.dumps(child(args.child, args.mode, args.device, args.iterations, args.repeats)))
        return

    from napari_sparse_sem.threads import usable_cores

    tasks = [t.strip() for t in args.tasks.split(",") if t.strip()]
    modes = [m.strip() for m in args.modes.split(",") if m.strip()]
    records = []
    for round_ in range(args.rounds):
        for busy in (0, args.busy) if args.busy else (0,):
            for task in tasks:
                for mode in modes:
                    record = {**measure(task, mode, busy, args), "round": round_}
                    records.append(record)
                    print(
                        f"round {round_} {task:8s} busy={busy} {mode:8s} {record['seconds']:8.2f} s  "
                        f"[{record['threads']}] load before {record['load_before']:.1f}",
                        file=sys.stderr,
                    )
    text = table(records)
    notes = (
        f"{machine()}; {usable_cores()} usable cores; device {records[0]['device']}; DIP {args.iterations} "
        f"iterations on 128², gan-mse median of {args.repeats} on {GAN_SIZE}²; median of {args.rounds} rounds; "
        f"load average {min(r['load_before'] for r in records):.1f}-{max(r['load_before'] for r in records):.1f} "
        f"before the measurements; {today()}"
    )
    print(text + "\n\n" + notes)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "threads.md").write_text(text + "\n\n" + notes + "\n")
    settings = {
        "iterations": args.iterations,
        "repeats": args.repeats,
        "rounds": args.rounds,
        "busy": args.busy,
        "device": args.device,
    }
    (args.out / "threads.json").write_text(json.dumps({"settings": settings, "records": records}, indent=2))


if __name__ == "__main__":
    main()
