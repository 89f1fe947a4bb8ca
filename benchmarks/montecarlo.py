"""Monte Carlo teacher against measured physics, and its speed.

1. Backscatter coefficient η of flat bulk C, Al, Si, Cu, Au at 5, 10, 20 keV against Reuter's fit of measurements.
2. Penetration: the 99th percentile of each trajectory's deepest point against the Kanaya–Okayama range.
3. SE yield of flat carbon tilted by θ, relative to the 1/cos θ law.
4. Speed: trajectories per second for bulk carbon at 2 keV (cut-off 50 eV), and for a porous carbon slice.
5. Optionally (``--figure``) the BSE and SE images of a porous carbon slice beside its solid phase, for the docs.

Run: .venv/bin/python -m benchmarks.montecarlo [--electrons 20000] [--figure docs/images/mc_porous_carbon.png]
"""

from __future__ import annotations

import argparse
import math
import time

from benchmarks._common import machine, markdown_table, today


def eta_table(electrons: int) -> str:
    from napari_sparse_sem.surrogate.materials import material, reuter_eta
    from napari_sparse_sem.surrogate.montecarlo import MCConfig, bulk_run

    rows = []
    for element in ("C", "Al", "Si", "Cu", "Au"):
        for energy in (5.0, 10.0, 20.0):
            result = bulk_run(MCConfig(element=element, energy_kev=energy), electrons=electrons, record_depth=True)
            reference = reuter_eta(material(element).z)
            rows.append(
                [
                    element,
                    f"{energy:g}",
                    result["eta"],
                    result["eta_stderr"],
                    reference,
                    f"{100 * (result['eta'] / reference - 1):+.0f} %",
                    f"{result['depth_p99_nm']:.0f}",
                    f"{result['kanaya_okayama_range_nm']:.0f}",
                    result["depth_p99_over_ko"],
                    f"{result['seconds']:.2f}",
                ]
            )
    header = ["element", "keV", "η (ours)", "± s.e.", "η Reuter", "difference", "p99 depth nm", "R_KO nm",
              "p99 / R_KO", "s"]  # fmt: skip
    return markdown_table(header, rows)


def tilt_table(electrons: int) -> str:
    from napari_sparse_sem.surrogate.montecarlo import MCConfig, bulk_run

    rows = []
    for energy in (2.0, 5.0):
        flat = None
        for tilt in (0, 15, 30, 45, 60):
            result = bulk_run(MCConfig(energy_kev=energy, tilt_deg=tilt), electrons=electrons)
            flat = flat or result["se_yield"]
            ratio = result["se_yield"] / flat * math.cos(math.radians(tilt))
            rows.append([f"{energy:g}", tilt, result["se_yield"], result["se_yield"] / flat, ratio, result["eta"]])
    return markdown_table(["keV", "tilt °", "SE yield δ", "δ / δ(0)", "δ·cos θ / δ(0)", "η"], rows)


def speed_table() -> str:
    from napari_sparse_sem.runtime import run_job
    from napari_sparse_sem.surrogate.geometry import GeometrySpec, generate
    from napari_sparse_sem.surrogate.montecarlo import MCConfig, bulk_run, simulate_slice

    rows = []
    for _ in range(2):  # the first run also compiles
        bulk = bulk_run(MCConfig(energy_kev=2.0), electrons=400_000)
    rows.append(["bulk carbon, flat", f"{bulk['electrons']:,}", bulk["steps_per_trajectory"], bulk["seconds"],
                 f"{bulk['trajectories_per_second']:.3g}"])  # fmt: skip
    prims = generate(GeometrySpec("spheres", 0.5, radius=(10, 15), window=(128, 128, 128), pixel_size_nm=5.0, seed=3))
    result = run_job(simulate_slice(prims, 100.0, MCConfig(electrons_per_pixel=100), region=(32, 96, 32, 96)))
    steps = result.steps / (result.bse.size * 100)
    rows.append(["porous carbon (spheres r 50–75 nm, Φ 0.5), 64² px", f"{result.bse.size * 100:,}", steps,
                 result.seconds, f"{result.trajectories_per_second:.3g}"])  # fmt: skip
    return markdown_table(["target (2 keV, cut-off 50 eV)", "trajectories", "steps / traj.", "s", "traj. / s"], rows)


def figure(path: str) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from napari_sparse_sem.runtime import run_job
    from napari_sparse_sem.surrogate.geometry import GeometrySpec, generate, voxelize
    from napari_sparse_sem.surrogate.montecarlo import MCConfig, simulate_slice

    spec = GeometrySpec("spheres", 0.5, radius=(10, 15), window=(128, 192, 192), pixel_size_nm=5.0, seed=3)
    prims = generate(spec)
    start = time.perf_counter()
    result = run_job(simulate_slice(prims, 100.0, MCConfig(electrons_per_pixel=200), region=(32, 160, 32, 160)))
    seconds = time.perf_counter() - start
    solid = voxelize(prims, (99, 100))[0][32:160, 32:160]
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.3))
    for ax, image, title in zip(
        axes,
        (solid, result.bse, result.se),
        ("solid phase at the cut plane", "MC BSE (backscattered fraction)", "MC SE (yield per electron)"),
        strict=True,
    ):
        shown = ax.imshow(image, cmap="gray" if image.dtype != bool else "viridis")
        ax.set_title(title)
        ax.set_axis_off()
        if image.dtype != bool:
            fig.colorbar(shown, ax=ax, fraction=0.046)
    fig.suptitle("Porous carbon, spheres r 50–75 nm, Φ = 0.5, 2 keV, 200 e⁻/px, 5 nm pixels")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return f"wrote {path}: 128² px × 200 electrons in {seconds:.0f} s"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--electrons", type=int, default=20_000, help="electrons per bulk run")
    parser.add_argument("--figure", default=None, help="also write the porous-slice figure to this PNG")
    args = parser.parse_args()
    start = time.perf_counter()
    print(f"Monte Carlo validation, {today()}, {machine()}\n")
    print("Backscatter coefficient and range (normal incidence)\n")
    print(eta_table(args.electrons))
    print("\nSE yield against tilt (flat carbon)\n")
    print(tilt_table(2 * args.electrons))
    print("\nSpeed\n")
    print(speed_table())
    if args.figure:
        print("\n" + figure(args.figure))
    print(f"\n(total {time.perf_counter() - start:.0f} s)")


if __name__ == "__main__":
    main()
