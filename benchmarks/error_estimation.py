"""Error estimation for active acquisition: how well does each estimator predict where a reconstruction is wrong?

For every held-out slice and initial scan (``lowres:4`` = every 4th pixel in y and x, Mi et al.'s ×4), the scan is
reconstructed (``linear``) and each estimator's map is compared with the true error |reference - recon| on the
unscanned pixels: the pixel-wise Pearson correlation (Mi et al. 2020, Table 1; higher is better) and the area between
the sparsification curve and the oracle's (AUSE, Ilg et al. 2018; lower is better). Numbers are means over slices.

Run: .venv/bin/python -m benchmarks.error_estimation --slices 200:250 --initial lowres:4,lowres:8
(``--update-card`` writes the numbers into the weights' model card.)
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import defaultdict

import numpy as np

from benchmarks._common import FLYEM, machine, markdown_table, today
from napari_sparse_sem.active.error_estimation import DEFAULT_UNET_WEIGHTS, make_estimator
from napari_sparse_sem.active.scan import parse_initial
from napari_sparse_sem.io import read_volume
from napari_sparse_sem.io.volume import to_float01
from napari_sparse_sem.metrics import error_correlation, sparsification_error_area
from napari_sparse_sem.recon.base import create
from napari_sparse_sem.sampling.patterns import slice_mask

ESTIMATORS = ("unet", "gradient", "variance", "entropy")


def evaluate(
    volume: np.ndarray,
    first: int,
    initial: list[str],
    recon: str,
    estimators: dict[str, object],
) -> dict[str, dict[str, dict[str, float]]]:
    """``{initial: {estimator: {correlation, correlation_sd, correlation_all, ause, seconds}}}``, means over the
    slices of ``volume`` (``volume[i]`` is slice ``first + i`` of the source, which seeds per-slice masks)."""
    reconstructor = create(recon)
    results: dict[str, dict[str, dict[str, float]]] = {}
    for text in initial:
        spec = parse_initial(text)
        values: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for i, reference in enumerate(volume):
            z = first + i
            mask = slice_mask(reference.shape, spec, z).mask
            sparse = np.where(mask, reference, 0.0).astype(np.float32)
            rec = reconstructor.reconstruct_slice(sparse[None], mask[None], 0)
            error = np.abs(reference - rec)
            for name, estimator in estimators.items():
                t0 = time.perf_counter()
                estimate = estimator.estimate(rec, sparse, mask)  # type: ignore[attr-defined]
                values[name]["seconds"].append(time.perf_counter() - t0)
                values[name]["correlation"].append(error_correlation(error, estimate, mask))
                values[name]["correlation_all"].append(error_correlation(error, estimate))
                values[name]["ause"].append(sparsification_error_area(error, estimate, mask=mask))
            print(f"\r{text} slice {z}", end="", file=sys.stderr)
        results[text] = {
            name: {
                "correlation": float(np.mean(v["correlation"])),
                "correlation_sd": float(np.std(v["correlation"])),
                "correlation_all": float(np.mean(v["correlation_all"])),
                "ause": float(np.mean(v["ause"])),
                "seconds": float(np.mean(v["seconds"])),
            }
            for name, v in values.items()
        }
    print(file=sys.stderr)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--volume", default=str(FLYEM))
    parser.add_argument("--slices", default="200:250", help="held-out slices A:B (the shipped unet saw 0:200)")
    parser.add_argument("--initial", default="lowres:4,lowres:8")
    parser.add_argument("--recon", default="linear")
    parser.add_argument("--weights", default=str(DEFAULT_UNET_WEIGHTS))
    parser.add_argument("--estimators", default=",".join(ESTIMATORS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--update-card", action="store_true", help="write the numbers into the weights' model card")
    args = parser.parse_args()

    start, stop = (int(v) for v in args.slices.split(":"))
    data = read_volume(args.volume).data
    volume = to_float01(np.asarray(data[start:stop]))
    names = [n.strip() for n in args.estimators.split(",") if n.strip()]
    estimators = {
        name: make_estimator(name, weights=args.weights, device=args.device) if name == "unet" else make_estimator(name)
        for name in names
    }
    initial = [t.strip() for t in args.initial.split(",") if t.strip()]
    t0 = time.perf_counter()
    results = evaluate(volume, start, initial, args.recon, estimators)
    elapsed = time.perf_counter() - t0

    command = (
        f".venv/bin/python -m benchmarks.error_estimation --slices {args.slices} --initial {args.initial} "
        f"--recon {args.recon}" + ("" if args.weights == str(DEFAULT_UNET_WEIGHTS) else f" --weights {args.weights}")
    )
    print(f"\nDate {today()}; machine: {machine()}; wall time {elapsed / 60:.1f} min")
    print(f"Command: {command}")
    print(
        f"Mean over FlyEM slices {start}..{stop - 1} (250x250, noiseless), {args.recon} reconstruction; "
        "correlation and AUSE on the unscanned pixels (and the correlation over all pixels, whose scanned ones have "
        "error 0)\n"
    )
    rows = [
        [text, name, r["correlation"], r["correlation_sd"], r["correlation_all"], r["ause"], 1000 * r["seconds"]]
        for text, per in results.items()
        for name, r in per.items()
    ]
    header = ["initial scan", "estimator", "correlation", "± sd", "corr. (all px)", "AUSE", "ms/slice"]
    print(markdown_table(header, rows))

    if args.update_card and "unet" in estimators:
        from napari_sparse_sem.nn.weights import update_card

        metrics = {
            "benchmark": command,
            "date": today(),
            "data": f"{FLYEM.name if args.volume == str(FLYEM) else args.volume} slices {start}:{stop}",
            "recon": args.recon,
            "correlation_unscanned": {
                text: {name: round(r["correlation"], 4) for name, r in per.items()} for text, per in results.items()
            },
            "correlation_all_pixels": {
                text: {name: round(r["correlation_all"], 4) for name, r in per.items()} for text, per in results.items()
            },
            "ause_unscanned": {
                text: {name: round(r["ause"], 4) for name, r in per.items()} for text, per in results.items()
            },
        }
        update_card(args.weights, metrics=metrics)
        print(f"\nwrote the numbers into the model card of {args.weights}")


if __name__ == "__main__":
    main()
