"""DIP on real FlyEM slices (issue #3): `paper` preset, our `default`, `dip3d` and the best classical methods, side by
side in one run, plus a warm-start table (first slice vs later slices).

Run: .venv/bin/python -m benchmarks.dip --slices 125:128 --coverages 0.01,0.05,0.2
     .venv/bin/python -m benchmarks.dip --slices 125:126 --roi 60:188,60:188 --coverages 0.05 --variants paper,default
Per-slice uniform random masks (seed 0, the same masks for every variant), noiseless. Every variant reconstructs the
slices in order, so the first slice is a cold start and the later ones are warm-started. Records go to
``--out``/records.json; the tables are printed as markdown for docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

from benchmarks._common import FLYEM, machine, markdown_table, today
from napari_sparse_sem.compare import CompareSpec, compare_job
from napari_sparse_sem.io import read_volume
from napari_sparse_sem.runtime import run_job

VARIANTS: dict[str, tuple[str, dict]] = {
    "biharmonic": ("biharmonic", {}),
    "linear3d": ("linear3d", {}),
    "paper": ("dip", {"preset": "paper"}),
    "default": ("dip", {"preset": "default"}),
    "dip3d": ("dip3d", {"preset": "default"}),
}


def run_variant(volume, name: str, coverage: float, slices: tuple[int, int], roi, device: str) -> list[dict]:
    """Records of one variant at one coverage (the masks depend only on the seed, so every variant sees the same)."""
    method, options = VARIANTS[name]
    spec = CompareSpec(
        patterns=["random"],
        coverages=[coverage],
        methods=[method],
        slices=slices,
        roi=roi,
        seed=0,
        device=device,
        per_slice=True,
        method_options={method: {**options, "preview_every": 0}} if method in ("dip", "dip3d") else {},
    )
    records = run_job(compare_job(volume, spec)).records
    for record in records:
        record["variant"] = name
    return records


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--slices", default="125:128", help="A:B, half-open")
    parser.add_argument("--roi", default=None, help="Y0:Y1,X0:X1 (default: whole 250² slices)")
    parser.add_argument("--coverages", default="0.01,0.05,0.2")
    parser.add_argument("--variants", default="biharmonic,linear3d,default,dip3d,paper")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--out", type=Path, default=Path("bench_out/dip"))
    args = parser.parse_args()
    a, b = (int(v) for v in args.slices.split(":"))
    roi = None
    if args.roi:
        (y0, y1), (x0, x1) = ((int(v) for v in part.split(":")) for part in args.roi.split(","))
        roi = (y0, y1, x0, x1)
    volume = read_volume(FLYEM)
    records: list[dict] = []
    args.out.mkdir(parents=True, exist_ok=True)
    for coverage in (float(c) for c in args.coverages.split(",")):
        for name in args.variants.split(","):
            started = time.perf_counter()
            new = run_variant(volume, name, coverage, (a, b), roi, args.device)
            records += new
            mean = np.mean([r["psnr"] for r in new])
            print(f"{coverage:g} {name}: {mean:.2f} dB in {time.perf_counter() - started:.0f} s", file=sys.stderr)
            (args.out / "records.json").write_text(json.dumps(records, indent=1, default=float))

    command = "python -m benchmarks.dip " + " ".join(sys.argv[1:])
    region = f"ROI {args.roi}" if args.roi else "whole 250² slices"
    print(f"Date {today()}; machine: {machine()}\nCommand: .venv/bin/{command}")
    print(f"FlyEM slices {a}:{b}, {region}, per-slice random masks (seed 0)\n")
    rows = []
    for coverage in dict.fromkeys(r["coverage_requested"] for r in records):
        for name in dict.fromkeys(r["variant"] for r in records):
            rs = [r for r in records if r["variant"] == name and r["coverage_requested"] == coverage]
            if not rs:
                continue
            iterations = [r["iterations"] for r in rs if r["iterations"] is not None]
            rows.append(
                [
                    f"{100 * coverage:g} %",
                    name,
                    float(np.mean([r["psnr"] for r in rs])),
                    float(np.mean([r["ssim"] for r in rs])),
                    float(np.mean([r["seconds"] for r in rs])),
                    f"{np.mean(iterations):.0f}" if iterations else "-",
                ]
            )
    print(markdown_table(["coverage", "variant", "PSNR dB", "SSIM", "s/slice", "iterations"], rows))
    print("\nWarm start (the first slice is cold, with its warm-up fits counted in its seconds):\n")
    rows = []
    for r in records:
        if r["iterations"] is None:
            continue
        rows.append(
            [
                f"{100 * r['coverage_requested']:g} %",
                r["variant"],
                r["slice"],
                "cold" if r["slice"] == a else "warm",
                r["iterations"],
                float(r["seconds"]),
                float(r["psnr"]),
            ]
        )
    print(markdown_table(["coverage", "variant", "slice", "start", "iterations", "seconds", "PSNR dB"], rows))


if __name__ == "__main__":
    main()
