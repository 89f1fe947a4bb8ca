"""How long Cancel takes for an iterative method: the seconds from the stop request to the job's return.

Run: .venv/bin/python -m benchmarks.cancel_latency [--repeat 5]

A DIP fit (the ``default`` preset) and a ``dip3d`` fit run on whole 250² FlyEM slices, 5 % random, one torch thread;
after ``--after`` seconds of fitting the stop is requested, exactly as the widgets' Cancel and the CLI's Ctrl-C do
(``runtime.run_job``'s ``should_stop``). The figure is the time the job needs to reach its next progress event and
close (its cleanup included); a widget adds one turn of the Qt event loop on top.
"""

from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np

from benchmarks._common import FLYEM, machine, markdown_table, today


def one_cancel(method: str, sparse: np.ndarray, mask: np.ndarray, after: float) -> tuple[float, float]:
    """Seconds from the stop request (made at a progress event) to the return, and the longest gap between two
    progress events: a Cancel clicked between events waits for the next one, so the worst case is their sum."""
    from napari_sparse_sem.recon.volume import reconstruct_volume
    from napari_sparse_sem.runtime import Cancelled, run_job

    start = time.perf_counter()
    asked: list[float] = []
    events: list[float] = []

    def stop() -> bool:
        events.append(time.perf_counter())
        if time.perf_counter() - start > after:
            asked.append(time.perf_counter())
            return True
        return False

    job = reconstruct_volume(sparse, mask, method, options={"preset": "default"}, slices=[sparse.shape[0] // 2])
    try:
        run_job(job, should_stop=stop)
    except Cancelled:
        pass
    if not asked:
        raise RuntimeError(f"{method} finished before the stop; raise --after")
    gaps = np.diff(events[1:])  # from the first event on: the fit's steps, not the set-up before it
    return time.perf_counter() - asked[0], float(gaps.max()) if gaps.size else 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--after", type=float, default=3.0, help="seconds of fitting before the stop request")
    args = parser.parse_args()
    import tifffile
    import torch

    from napari_sparse_sem.sampling import MaskSpec
    from napari_sparse_sem.sampling.patterns import slice_mask

    torch.set_num_threads(1)
    volume = tifffile.imread(FLYEM)[120:127].astype(np.float32) / 255.0
    mask = np.stack([slice_mask(volume.shape[1:], MaskSpec("random", 0.05), z).mask for z in range(len(volume))])
    sparse = np.where(mask, volume, 0).astype(np.float32)
    rows = []
    for method in ("dip", "dip3d"):
        results = [one_cancel(method, sparse, mask, args.after) for _ in range(args.repeat)]
        close = [r[0] for r in results]
        gap = max(r[1] for r in results)
        worst = max(close) + gap
        rows.append([method, args.repeat, f"{np.median(close):.3f}", f"{max(close):.3f}", f"{gap:.3f}", f"{worst:.3f}"])
    print(f"Date {today()}; machine: {machine()}; one torch thread")
    print(f"Command: .venv/bin/python -m benchmarks.cancel_latency --repeat {args.repeat} --after {args.after:g}\n")
    header = ["method", "cancels", "stop → return, median s", "max s", "longest gap between events s", "worst case s"]
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
