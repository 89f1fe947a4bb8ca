"""``sparse-sem compare``: mask patterns × coverages × methods on one volume, into a report folder (see
:func:`~napari_sparse_sem.compare.report.run_comparison`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from napari_sparse_sem.cli.common import (
    QuietOption,
    clean_errors,
    dip_options,
    echo,
    method_help,
    parse_coverage,
    parse_list,
    parse_options,
    parse_range,
    parse_roi,
    progress_bar,
    read_input,
    stdout_console,
    weights_option,
)
from napari_sparse_sem.cli.reconstruct import DipConfigOption, DipPresetOption, WeightsOption

SUMMARY_COLUMNS = ("pattern", "coverage", "achieved", "method", "PSNR dB", "SSIM", "PSNR unscanned", "s/slice")


def summary_table(records: list[dict[str, Any]]) -> Any:
    """A rich table of the comparison's summary (means over slices per pattern × coverage × method)."""
    from rich.table import Table

    from napari_sparse_sem.compare import summary

    table = Table(title="Comparison (means over slices)")
    for col in (*SUMMARY_COLUMNS, "scan/dense"):
        table.add_column(col, justify="left" if col in ("pattern", "method") else "right")
    for row in summary(records):
        scan = row["acquisition_s"] / row["dense_acquisition_s"] if row["dense_acquisition_s"] else float("nan")
        table.add_row(
            row["pattern"],
            f"{100 * row['coverage_requested']:.1f} %",
            f"{100 * row['coverage']:.2f} %",
            row["method"],
            f"{row['psnr']:.2f}",
            f"{row['ssim']:.3f}",
            f"{row['psnr_unscanned']:.2f}",
            f"{row['seconds']:.3f}",
            f"{100 * scan:.1f} %",
        )
    return table


def _with_method_options(settings: dict[str, Any], extra: dict[str, dict[str, Any]]) -> None:
    """Merge per-method ``extra`` options under the ones already in ``settings`` (``--option`` still wins)."""
    per_method = dict(settings.get("method_options") or {})
    for name, options in extra.items():
        per_method[name] = {**options, **per_method.get(name, {})}
    settings["method_options"] = per_method


@clean_errors
def compare(
    volume: Annotated[Path, typer.Argument(help="Dense input volume (the ground truth).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder.")],
    patterns: Annotated[str | None, typer.Option(help="Comma list of patterns, or 'all'. [default: random]")] = None,
    coverage: Annotated[
        str | None, typer.Option(help="Comma list of coverages, e.g. 0.05,0.2. [default: 0.05]")
    ] = None,
    method: Annotated[
        str | None,
        typer.Option(
            help="Comma list of methods, e.g. linear,biharmonic (`--method help` lists them).",
            callback=method_help,
            is_eager=True,
        ),
    ] = None,
    slices: Annotated[str | None, typer.Option(help="Slices A:B (half-open) of the input. [default: all]")] = None,
    roi: Annotated[str | None, typer.Option(help="Region Y0:Y1,X0:X1. [default: whole slice]")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed of masks and noise. [default: 0]")] = None,
    device: Annotated[str | None, typer.Option(help="auto, cpu, cuda or mps. [default: auto]")] = None,
    dose: Annotated[float | None, typer.Option(help="Electrons per scanned pixel (shot noise).")] = None,
    equal_time: Annotated[
        bool | None,
        typer.Option(
            "--equal-time/--equal-dose",
            help="Equal total beam time: --dose is the dense scan's; sparse pixels get dose/coverage; "
            "the noisy dense scan is scored too.",
        ),
    ] = None,
    per_slice: Annotated[bool | None, typer.Option("--per-slice/--fixed-mask", help="New mask per slice.")] = None,
    option: Annotated[
        list[str] | None, typer.Option("--option", help="Method option METHOD.KEY=VALUE (repeatable).")
    ] = None,
    config: Annotated[Path | None, typer.Option(help="JSON file with CompareSpec fields (flags override it).")] = None,
    dip_preset: DipPresetOption = None,
    dip_config: DipConfigOption = None,
    weights: WeightsOption = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing report in OUT.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Compare mask patterns × coverages × methods on VOLUME; write metrics.json/csv, params.json, comparison.png."""
    from napari_sparse_sem.compare import CompareSpec, name_list
    from napari_sparse_sem.compare.report import run_comparison

    settings: dict[str, Any] = {}
    if config is not None:
        from napari_sparse_sem.jsonfile import read_json_object

        settings = read_json_object(config, "config", "CompareSpec fields")
        settings = settings.get("spec", settings)  # a params.json from an earlier report works too
    flags = {
        "patterns": parse_list(patterns, "--patterns"),
        "coverages": [parse_coverage(c) for c in parse_list(coverage, "--coverage") or []] or None,
        "methods": parse_list(method, "--method"),
        "slices": parse_range(slices),
        "roi": parse_roi(roi),
        "seed": seed,
        "device": device,
        "dose": dose,
        "equal_time": equal_time,
        "per_slice": per_slice,
        "method_options": parse_options(option, per_method=True) or None,
    }
    settings.update({k: v for k, v in flags.items() if v is not None})
    settings.setdefault("device", "auto")
    from_dip = dip_options(dip_preset, dip_config)
    if from_dip:
        from napari_sparse_sem.recon.dip import DIP_METHODS

        targets = [m for m in name_list(settings.get("methods", [])) if m in DIP_METHODS]
        if not targets:
            raise ValueError(f"--dip-preset/--dip-config apply to {' and '.join(DIP_METHODS)}; add one to --method")
        _with_method_options(settings, {name: from_dip for name in targets})
    if weights is not None:
        _with_method_options(settings, weights_option(weights, name_list(settings.get("methods", []))))
    spec = CompareSpec.from_dict(settings)
    vol = read_input(volume)
    spec.validate_for(vol.shape)
    with progress_bar("compare", quiet) as update:
        result, paths = run_comparison(
            vol, spec, out, overwrite=overwrite, source={"path": str(volume)}, inputs=(volume,), on_progress=update
        )
    stdout_console().print(summary_table(result.records))
    echo(f"report written to {out}: " + ", ".join(p.name for p in paths.values()))
