"""Speed of the extended heightfield + normal map for 850² cut planes (the paper's slice size).

Scenes with about 2 000 particles (the issue's target: < 1 s per slice on this CPU) and a long-cylinder scene, whose
tilted particles have large xy bounding boxes and so reach many more pixels each. Median of three runs after one
warm-up; torch on the CPU (or ``--device cuda``).

Run: .venv/bin/python -m benchmarks.heightfield [--device cpu]
"""

from __future__ import annotations

import argparse
import statistics
import time

from benchmarks._common import machine, markdown_table, today


def main() -> None:
    from napari_sparse_sem.surrogate.geometry import GeometrySpec, generate
    from napari_sparse_sem.surrogate.heightfield import extended_heightfield

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    scenes = [
        ("spheres r 20–30, Φ 0.5", GeometrySpec("spheres", 0.5, radius=(20, 30), window=(177, 850, 850), seed=1)),
        ("spheres r 10–15, Φ 0.5 (thin slab)", GeometrySpec("spheres", 0.5, radius=(10, 15), window=(4, 850, 850))),
        ("cylinders r 10–20, h 100–150, uniform, Φ 0.5",
         GeometrySpec("cylinders", 0.5, radius=(10, 20), height=(100, 150), window=(40, 850, 850), seed=1)),
    ]  # fmt: skip
    rows = []
    for name, spec in scenes:
        primitives = generate(spec)
        z0 = spec.window[0] - 1.0
        extended_heightfield(primitives, z0, device=args.device)
        times = []
        for _ in range(3):
            start = time.perf_counter()
            extended_heightfield(primitives, z0, device=args.device)
            times.append(time.perf_counter() - start)
        rows.append([name, len(primitives), f"{statistics.median(times):.2f}"])
    print(f"Extended heightfield, 850² pixels, {today()}, {machine()}, device {args.device}\n")
    print(markdown_table(["scene", "particles", "s / slice"], rows))


if __name__ == "__main__":
    main()
