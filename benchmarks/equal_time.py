"""Dense-and-fast vs sparse-and-slow at equal beam time, over a range of doses, on real FlyEM slices.

Run: .venv/bin/python -m benchmarks.equal_time
For each dense-scan dose D (electrons per pixel), a sparse scan at coverage c gets D/c per scanned pixel. Prints PSNR
of the noisy dense scan and of each pattern x coverage x method, mean over the slices.
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict

from benchmarks._common import FLYEM, machine, markdown_table, today
from napari_sparse_sem.compare import CompareSpec, compare_job
from napari_sparse_sem.io import read_volume
from napari_sparse_sem.runtime import run_job


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--slices", default="200:203")
    parser.add_argument("--doses", default="2,5,20,100")
    parser.add_argument("--coverages", default="0.05,0.1,0.2")
    parser.add_argument("--patterns", default="random,hexgrid")
    parser.add_argument("--methods", default="linear,biharmonic")
    args = parser.parse_args()
    start, stop = (int(v) for v in args.slices.split(":"))
    volume = read_volume(FLYEM).data
    coverages = [float(c) for c in args.coverages.split(",")]
    columns = [(p, m) for p in args.patterns.split(",") for m in args.methods.split(",")]
    rows = []
    t0 = time.perf_counter()
    for dose in (float(d) for d in args.doses.split(",")):
        spec = CompareSpec(
            patterns=args.patterns.split(","),
            coverages=coverages,
            methods=args.methods.split(","),
            slices=(start, stop),
            dose=dose,
            equal_time=True,
        )
        scores: dict[tuple, list[float]] = defaultdict(list)
        for record in run_job(compare_job(volume, spec)).records:
            scores[(record["pattern"], record["coverage_requested"], record["method"])].append(record["psnr"])
        means = {key: sum(v) / len(v) for key, v in scores.items()}
        dense = means[("dense", 1.0, "none")]
        for coverage in coverages:
            row = [means[(p, coverage, m)] for p, m in columns]
            rows.append([f"{dose:g}", f"{100 * coverage:g} %", f"{dose / coverage:g}", dense, *row, max(row) - dense])
    print(f"Date {today()}; machine: {machine()}; wall time {(time.perf_counter() - t0) / 60:.1f} min")
    print(f"Command: .venv/bin/python -m benchmarks.equal_time --slices {args.slices} --doses {args.doses}")
    print(f"Mean PSNR (dB) over FlyEM slices {start}..{stop - 1}; sparse pixels get dose/coverage electrons\n")
    header = ["dense e⁻/px", "coverage", "sparse e⁻/px", "dense scan", *(f"{p} {m}" for p, m in columns)]
    header.append("best − dense")
    print(markdown_table(header, rows))


if __name__ == "__main__":
    main()
