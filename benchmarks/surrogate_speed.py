"""Speed of the neural surrogate: 512² inference per layout, and the heightfield it needs, on CPU or CUDA.

    python -m benchmarks.surrogate_speed [--device cuda] [--weights W.safetensors]

Prints a markdown table (median of repeats after a warm-up). Random weights time the same as trained ones.
"""

from __future__ import annotations

import argparse
import statistics
import time


def _sync(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def time_call(fn, device: str, repeats: int) -> float:
    fn()
    _sync(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--mc-rows", type=int, default=0, help="also time the MC (1000 e/px) on this many rows")
    args = parser.parse_args()

    import torch

    from napari_sparse_sem.runtime import pick_device
    from napari_sparse_sem.surrogate.geometry import GeometrySpec, generate
    from napari_sparse_sem.surrogate.heightfield import extended_heightfield
    from napari_sparse_sem.surrogate.model import LAYOUTS, Surrogate, SurrogateConfig, build_network, parameter_count

    device = pick_device(args.device)
    name = torch.cuda.get_device_name() if device.startswith("cuda") else "CPU"
    print(f"device: {device} ({name}), torch threads {torch.get_num_threads()}")
    s = args.size
    geometry = GeometrySpec("spheres", 0.5, radius=(10, 15), window=(96, s, s), seed=1)
    primitives = generate(geometry)
    hf_seconds = time_call(lambda: extended_heightfield(primitives, 90.0, device=device), device, args.repeats)
    heightfield = extended_heightfield(primitives, 90.0, device=device)
    print("| what | parameters | seconds per 512² slice |")
    print("|---|---|---|")
    print(f"| heightfield + normals ({len(primitives)} spheres) | – | {hf_seconds:.3f} |")
    for layout in LAYOUTS:
        config = SurrogateConfig(layout=layout)
        net = build_network(config)
        surrogate = Surrogate(net, config, device)
        seconds = time_call(lambda s=surrogate: s.predict(heightfield, tile=1024), device, args.repeats)
        print(f"| surrogate {layout} | {parameter_count(net) / 1e6:.1f} M | {seconds:.4f} |")
        if layout == "resnet34-half":
            shipped = seconds
    if args.mc_rows > 0:
        from napari_sparse_sem.runtime import run_job
        from napari_sparse_sem.surrogate.montecarlo import MCConfig, simulate_slice

        config = MCConfig(electrons_per_pixel=1000)
        rows = args.mc_rows
        started = time.perf_counter()
        run_job(simulate_slice(primitives, 90.0, config, region=(0, rows, 0, s)))
        mc_seconds = (time.perf_counter() - started) * s / rows
        print(f"| Monte Carlo, 1000 e⁻/px ({rows} rows timed, scaled to {s} rows) | – | {mc_seconds:.0f} |")
        print(f"\nspeed-up of the shipped layout over the Monte Carlo: {mc_seconds / shipped:.3g}")


if __name__ == "__main__":
    main()
