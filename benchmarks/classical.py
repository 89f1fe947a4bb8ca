"""Classical baselines: every mask pattern x coverage x classical method on real FlyEM slices (PSNR, SSIM, seconds).

Run: .venv/bin/python -m benchmarks.classical --slices 200:205 --out bench_out/classical
Prints a markdown table for docs/benchmarks.md and writes the full report (metrics.json/csv, comparison.png).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

from benchmarks._common import FLYEM, machine, markdown_table, today
from napari_sparse_sem.compare import CompareSpec, compare_job
from napari_sparse_sem.compare.report import write_report
from napari_sparse_sem.io import read_volume
from napari_sparse_sem.runtime import run_job
from napari_sparse_sem.sampling.spec import PATTERNS


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--volume", default=str(FLYEM))
    parser.add_argument("--slices", default="200:205")
    parser.add_argument("--coverages", default="0.01,0.05,0.1,0.2")
    parser.add_argument("--methods", default="nearest,linear,harmonic,biharmonic,linear3d")
    parser.add_argument("--patterns", default=",".join(PATTERNS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="bench_out/classical")
    args = parser.parse_args()

    start, stop = (int(v) for v in args.slices.split(":"))
    volume = read_volume(args.volume).data
    spec = CompareSpec(
        patterns=args.patterns.split(","),
        coverages=[float(c) for c in args.coverages.split(",")],
        methods=args.methods.split(","),
        slices=(start, stop),
        seed=args.seed,
    )
    t0 = time.perf_counter()
    result = run_job(
        compare_job(volume, spec), on_progress=lambda e: print(f"\r{e.step}/{e.total} {e.message[:60]:60s}", end="")
    )
    elapsed = time.perf_counter() - t0
    print()
    write_report(result, Path(args.out), overwrite=True)

    groups: dict[tuple, list[dict]] = defaultdict(list)
    for record in result.records:
        groups[(record["coverage_requested"], record["pattern"], record["method"])].append(record)
    rows = []
    for (coverage, pattern, method), records in sorted(
        groups.items(), key=lambda kv: (kv[0][0], spec.patterns.index(kv[0][1]), spec.methods.index(kv[0][2]))
    ):
        n = len(records)
        rows.append(
            [
                f"{100 * coverage:g} %",
                pattern,
                f"{100 * sum(r['coverage'] for r in records) / n:.2f} %",
                method,
                sum(r["psnr"] for r in records) / n,
                sum(r["ssim"] for r in records) / n,
                sum(r["seconds"] for r in records) / n,
            ]
        )
    print(f"\nDate {today()}; machine: {machine()}; wall time {elapsed / 60:.1f} min")
    print(f"Command: .venv/bin/python -m benchmarks.classical --slices {args.slices} --coverages {args.coverages}")
    print(f"Mean over FlyEM slices {start}..{stop - 1} (250x250, per-slice masks, seed {args.seed}, noiseless)\n")
    print(
        markdown_table(
            ["requested", "pattern", "achieved", "method", "PSNR dB", "SSIM", "s/slice"],
            rows,
        )
    )


if __name__ == "__main__":
    main()
