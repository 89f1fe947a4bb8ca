"""``sparse-sem active``: the active acquisition of Mi et al. on a dense volume, into a report folder (see
:func:`~napari_sparse_sem.active.report.run_active`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from napari_sparse_sem.active.pipeline import WDPPConfig
from napari_sparse_sem.cli.common import (
    QuietOption,
    ThreadsOption,
    clean_errors,
    echo,
    parse_range,
    parse_roi,
    progress_bar,
    read_input,
    region,
    stdout_console,
    use_threads,
)
from napari_sparse_sem.cli.spec_options import spec_options
from napari_sparse_sem.params_text import parse_options


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
@spec_options(WDPPConfig, into="config", panel="Active acquisition (WDPPConfig)")
def active(
    volume: Annotated[Path, typer.Argument(help="Dense volume that plays the microscope (the ground truth).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder.")],
    config: WDPPConfig,
    option: Annotated[list[str] | None, typer.Option("--option", help="Reconstruction option KEY=VALUE.")] = None,
    slices: Annotated[str | None, typer.Option(help="Slices A:B (half-open) of the input; default: all.")] = None,
    roi: Annotated[str | None, typer.Option(help="Region Y0:Y1,X0:X1; default: the whole slice.")] = None,
    threads: ThreadsOption = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing report in OUT.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Active acquisition (Mi et al.): initial scan → reconstruction → error estimate → rescan → final reconstruction.

    Writes metrics.json/csv (records and sparsification curves), active.png, and rescan/ with the bitmap (TIFF),
    the coordinates in beam order (CSV) and the time estimate of every slice.
    """
    from napari_sparse_sem.active.report import run_active
    from napari_sparse_sem.active.summary import summary_rows
    from napari_sparse_sem.io.volume import to_float01, value_range

    use_threads(threads)
    if option:
        config = config.replace(recon_options=parse_options(option))
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
