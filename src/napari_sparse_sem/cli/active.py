"""``sparse-sem active``: the active acquisition of Mi et al. on a dense volume, into a report folder (see
:func:`~napari_sparse_sem.active.report.run_active`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from napari_sparse_sem.cli.common import (
    QuietOption,
    clean_errors,
    echo,
    parse_coverage,
    parse_float_or_auto,
    parse_list,
    parse_options,
    parse_range,
    parse_roi,
    progress_bar,
    read_input,
    region,
    stdout_console,
)


def active_table(rows: list[dict[str, Any]]) -> Any:
    """A rich table of :func:`~napari_sparse_sem.active.summary.summary_rows` (the widget's table, in text)."""
    from rich.table import Table

    from napari_sparse_sem.active.summary import SUMMARY_COLUMNS

    table = Table(title="Active acquisition (means over slices)")
    for key, title in SUMMARY_COLUMNS:
        table.add_column(title, justify="left" if key == "scan" else "right")
    formats = {"coverage": "{:.2%}", "psnr": "{:.2f}", "ssim": "{:.3f}", "l1": "{:.4f}", "error_correlation": "{:.3f}"}
    for row in rows:
        cells = []
        for key, _ in SUMMARY_COLUMNS:
            value = row.get(key)
            if key == "scan":
                cells.append(str(value))
            elif value is None:
                cells.append("—")
            else:
                cells.append(formats.get(key, "{:.3g}").format(value))
        table.add_row(*cells)
    return table


@clean_errors
def active(
    volume: Annotated[Path, typer.Argument(help="Dense volume that plays the microscope (the ground truth).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder.")],
    initial: Annotated[str, typer.Option(help="Initial scan: lowres:F or PATTERN:COVERAGE.")] = "lowres:4",
    budget: Annotated[str, typer.Option(help="Total fraction scanned (initial + rescans), e.g. 0.10.")] = "0.10",
    rounds: Annotated[int, typer.Option(help="Rescan rounds the budget is split over.")] = 1,
    estimator: Annotated[str, typer.Option(help="Error estimator: unet, gradient, variance, entropy, oracle.")] = (
        "gradient"
    ),
    weights: Annotated[Path | None, typer.Option(help="unet estimator weights (.safetensors).")] = None,
    sampler: Annotated[str, typer.Option(help="Rescan sampler: wdpp, topk, random, bluenoise.")] = "wdpp",
    mode: Annotated[str, typer.Option(help="wdpp: greedy (MAP) or sample (a DPP draw).")] = "greedy",
    condition: Annotated[
        bool, typer.Option("--condition/--no-condition", help="wdpp keeps away from scanned pixels too.")
    ] = True,
    gamma: Annotated[float, typer.Option(help="WDPP exponent γ: saliency vs spread.")] = 1.0,
    sigma: Annotated[str, typer.Option(help="WDPP kernel width σ in pixels, or auto.")] = "auto",
    recon: Annotated[str, typer.Option(help="Reconstruction method (a 2D one, e.g. linear).")] = "linear",
    option: Annotated[list[str] | None, typer.Option("--option", help="Reconstruction option KEY=VALUE.")] = None,
    baselines: Annotated[
        str | None, typer.Option(help="Static patterns scored at the same total, e.g. random,hexgrid.")
    ] = None,
    slices: Annotated[str | None, typer.Option(help="Slices A:B (half-open) of the input. [default: all]")] = None,
    roi: Annotated[str | None, typer.Option(help="Region Y0:Y1,X0:X1. [default: whole slice]")] = None,
    seed: Annotated[int, typer.Option(help="Seed of masks and tie-breaking.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    overwrite: Annotated[bool, typer.Option(help="Replace an existing report in OUT.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Active acquisition (Mi et al.): initial scan → reconstruction → error estimate → rescan → final reconstruction.

    Writes metrics.json/csv (records and sparsification curves), active.png, and rescan/ with the bitmap (TIFF),
    the coordinates in beam order (CSV) and the time estimate of every slice.
    """
    from napari_sparse_sem.active.pipeline import WDPPConfig
    from napari_sparse_sem.active.report import run_active
    from napari_sparse_sem.active.summary import summary_rows
    from napari_sparse_sem.io.volume import to_float01, value_range

    config = WDPPConfig(
        initial=initial,
        budget=parse_coverage(budget, "--budget", whole_allowed=False),
        rounds=rounds,
        estimator=estimator,
        estimator_weights=str(weights) if weights is not None else None,
        sampler=sampler,
        mode=mode,
        condition=condition,
        gamma=gamma,
        sigma=parse_float_or_auto(sigma, "--sigma"),
        recon=recon,
        recon_options=parse_options(option),
        baselines=tuple(parse_list(baselines, "--baselines") or ()),
        seed=seed,
        device=device,
    )
    vol = read_input(volume)
    a, b, y0, y1, x0, x1 = region(vol.shape, parse_range(slices), parse_roi(roi))
    raw = np.asarray(vol.data[a:b, y0:y1, x0:x1])
    block = to_float01(raw, "volume", value_range(raw))
    source = {"path": str(volume), "slices": [a, b], "roi": [y0, y1, x0, x1]}
    with progress_bar("active", quiet) as update:
        result = run_active(
            block,
            config,
            out,
            list(range(b - a)),
            a,
            overwrite=overwrite,
            source=source,
            inputs=(volume,),
            on_progress=update,
        )
    stdout_console().print(active_table(summary_rows(result.slices, config)))
    echo(f"report written to {out}: metrics.json, metrics.csv, active.png, rescan/")
