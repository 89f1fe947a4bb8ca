"""Monte Carlo teacher speed on the CPU or a GPU (issue #19), and on a GPU its agreement with the CPU kernel.

Speed: trajectories per second (a warm-up launch that compiles the kernel is outside the clock) for
1. bulk carbon at 2 keV, flat, cut-off 50 eV (target on an H200: >= 5e7 /s);
2. porous carbon under a cut plane, the scene of ``benchmarks/montecarlo.py`` (spheres r 50–75 nm, Φ 0.5, 5 nm
   pixels, cut at z = 100 voxels) and the same with tilted cylinders (h 500–750 nm).
With ``--device cuda`` (or ``auto`` finding a GPU) it also traces bulk carbon and a porous image on the CPU with the
same seed and compares η, SE yield, depth percentiles and the images' means within their standard errors (the GPU's
math functions round differently, so trajectories agree in distribution, not one by one).

Run: .venv/bin/python -m benchmarks.mc_gpu [--device cpu|cuda|auto] [--quick] [--out bench_out/mc_gpu]
A GPU needs the gpu extra (numba-cuda); ``NUMBA_ENABLE_CUDASIM=1`` runs the cuda path in numba's simulator (slow).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks._common import machine, markdown_table, today

# (electrons for bulk runs, porous region side in pixels, electrons per pixel) for each setting
SETTINGS = {"quick": (20_000, 16, 20), "cpu": (400_000, 64, 100), "cuda": (1 << 24, 128, 500)}
SCENES = {
    "spheres": dict(shape="spheres", porosity=0.5, radius=(10, 15)),
    "cylinders": dict(shape="cylinders", porosity=0.5, radius=(10, 15)),
}


def porous_scene(name: str, size: int) -> Any:
    """The benchmark's porous scene: a window ``size`` + 64 pixels wide (32 of margin), 128 voxels deep."""
    from napari_sparse_sem.surrogate.geometry import GeometrySpec, generate

    window = (128, size + 64, size + 64)
    return generate(GeometrySpec(**SCENES[name], window=window, pixel_size_nm=5.0, seed=3))


def porous_run(prims: Any, size: int, electrons: int, device: str, seed: int = 0) -> Any:
    from napari_sparse_sem.runtime import run_job
    from napari_sparse_sem.surrogate.montecarlo import MCConfig, simulate_slice

    config = MCConfig(electrons_per_pixel=electrons, seed=seed, device=device)
    return run_job(simulate_slice(prims, 100.0, config, region=(32, 32 + size, 32, 32 + size)))


def speed_rows(device: str, bulk_electrons: int, size: int, per_pixel: int, repeats: int) -> list[dict[str, Any]]:
    """One record per target: trajectories, steps per trajectory, seconds and trajectories/s (median of repeats)."""
    from napari_sparse_sem.surrogate.montecarlo import MCConfig, bulk_run

    rows = []
    runs = [bulk_run(MCConfig(energy_kev=2.0, device=device), electrons=bulk_electrons) for _ in range(repeats)]
    rates = [r["trajectories_per_second"] for r in runs]
    first = runs[0]
    rows.append({"target": "bulk carbon, flat", "trajectories": first["electrons"],
                 "steps_per_trajectory": first["steps_per_trajectory"],
                 "seconds": statistics.median(r["seconds"] for r in runs),
                 "trajectories_per_second": statistics.median(rates), "best_trajectories_per_second": max(rates),
                 "device": first["device"]})  # fmt: skip
    for name in SCENES:
        prims = porous_scene(name, size)
        porous_run(prims, min(size, 4), 2, device)  # warm-up: compiles the kernel outside the clock
        results = [porous_run(prims, size, per_pixel, device) for _ in range(repeats)]
        rates = [r.trajectories_per_second for r in results]
        n = results[0].bse.size * per_pixel
        rows.append({"target": f"porous carbon, {name} Φ 0.5, {size}² px × {per_pixel} e⁻", "trajectories": n,
                     "steps_per_trajectory": results[0].steps / n,
                     "seconds": statistics.median(r.seconds for r in results),
                     "trajectories_per_second": statistics.median(rates), "best_trajectories_per_second": max(rates),
                     "device": results[0].device})  # fmt: skip
    return rows


def agreement(bulk_electrons: int, size: int, per_pixel: int) -> dict[str, Any]:
    """GPU against CPU, same seed: bulk η, SE yield, depth percentiles; a porous image's mean BSE and SE."""
    from napari_sparse_sem.surrogate.montecarlo import MCConfig, bulk_run

    bulk = {d: bulk_run(MCConfig(energy_kev=2.0, device=d), electrons=bulk_electrons, record_depth=True)
            for d in ("cpu", "cuda")}  # fmt: skip
    rows = []
    for key, err in (("eta", "eta_stderr"), ("se_yield", "se_yield_stderr")):
        diff = bulk["cuda"][key] - bulk["cpu"][key]
        sigma = math.hypot(bulk["cuda"][err], bulk["cpu"][err])
        rows.append({"quantity": f"bulk {key}", "cpu": bulk["cpu"][key], "cuda": bulk["cuda"][key], "difference": diff,
                     "sigma": sigma, "within_4_sigma": abs(diff) <= 4 * sigma})  # fmt: skip
    for q in (50, 90, 99):
        key = f"depth_p{q}_nm"
        rows.append({"quantity": f"bulk depth p{q} nm", "cpu": bulk["cpu"][key], "cuda": bulk["cuda"][key],
                     "difference": bulk["cuda"][key] - bulk["cpu"][key], "sigma": math.nan,
                     "within_4_sigma": None})  # fmt: skip
    prims = porous_scene("spheres", size)
    images = {d: porous_run(prims, size, per_pixel, d) for d in ("cpu", "cuda")}
    for key in ("bse", "se"):
        d = getattr(images["cuda"], key) - getattr(images["cpu"], key)
        sigma = float(d.std(ddof=1) / math.sqrt(d.size))
        rows.append({"quantity": f"porous mean {key.upper()}", "cpu": float(getattr(images["cpu"], key).mean()),
                     "cuda": float(getattr(images["cuda"], key).mean()), "difference": float(d.mean()),
                     "sigma": sigma, "within_4_sigma": bool(abs(d.mean()) <= 4 * sigma)})  # fmt: skip
    same = int(np.sum(images["cuda"].bse == images["cpu"].bse))
    return {"rows": rows, "porous_pixels_with_equal_bse": same, "porous_pixels": int(images["cpu"].bse.size)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "auto"))
    parser.add_argument("--quick", action="store_true", help="tiny settings (a smoke run, e.g. under the simulator)")
    parser.add_argument("--electrons", type=int, default=None, help="electrons per bulk run")
    parser.add_argument("--size", type=int, default=None, help="side of the porous image in pixels")
    parser.add_argument("--pixel-electrons", type=int, default=None, help="electrons per pixel of the porous images")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-check", action="store_true", help="skip the GPU-against-CPU agreement table")
    parser.add_argument("--out", type=Path, default=None, help="folder for mc_gpu.json and mc_gpu.md")
    args = parser.parse_args()

    from napari_sparse_sem.surrogate.montecarlo import mc_device

    device = mc_device(args.device)
    bulk_electrons, size, per_pixel = SETTINGS["quick" if args.quick else device]
    bulk_electrons = args.electrons or bulk_electrons
    size = args.size or size
    per_pixel = args.pixel_electrons or per_pixel
    gpu = None
    if device == "cuda":
        from napari_sparse_sem.surrogate._mc_cuda import describe_device

        gpu = describe_device()
    start = time.perf_counter()
    rows = speed_rows(device, bulk_electrons, size, per_pixel, args.repeats)
    lines = [f"Monte Carlo teacher speed, {today()}, {machine()}, device {device}" + (f" ({gpu})" if gpu else ""), ""]
    lines.append(markdown_table(
        ["target (2 keV, cut-off 50 eV)", "trajectories", "steps / traj.", "s (median)", "traj. / s (median)",
         "traj. / s (best)"],
        [[r["target"], f"{r['trajectories']:,}", r["steps_per_trajectory"], r["seconds"],
          f"{r['trajectories_per_second']:.3g}", f"{r['best_trajectories_per_second']:.3g}"] for r in rows],
    ))  # fmt: skip
    record: dict[str, Any] = {"date": today(), "machine": machine(), "device": device, "gpu": gpu,
                              "settings": {"bulk_electrons": bulk_electrons, "size": size, "pixel_electrons": per_pixel,
                                           "repeats": args.repeats}, "speed": rows}  # fmt: skip
    if device == "cuda" and not args.no_check:
        check = agreement(min(bulk_electrons, 200_000), min(size, 64), min(per_pixel, 100))
        record["agreement"] = check
        lines += ["", "GPU against CPU (same seed; GPU math rounds differently, so in distribution only)", ""]
        lines.append(markdown_table(
            ["quantity", "CPU", "GPU", "GPU − CPU", "σ", "|Δ| ≤ 4σ"],
            [[r["quantity"], r["cpu"], r["cuda"], f"{r['difference']:+.4f}",
              "–" if math.isnan(r["sigma"]) else f"{r['sigma']:.4f}",
              "–" if r["within_4_sigma"] is None else ("yes" if r["within_4_sigma"] else "NO")] for r in check["rows"]],
        ))  # fmt: skip
        lines.append(f"\nporous pixels with equal BSE counts: {check['porous_pixels_with_equal_bse']} of "
                     f"{check['porous_pixels']}")  # fmt: skip
    lines.append(f"\n(total {time.perf_counter() - start:.0f} s)")
    text = "\n".join(lines)
    print(text)
    if args.out is not None:
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / "mc_gpu.json").write_text(json.dumps(record, indent=1, default=float))
        (args.out / "mc_gpu.md").write_text(text + "\n")
        print(f"wrote {args.out / 'mc_gpu.json'} and {args.out / 'mc_gpu.md'}")


if __name__ == "__main__":
    main()
