"""``sparse-sem compare``: mask patterns × coverages × methods on one volume, into a report folder (see
:func:`~napari_sparse_sem.compare.report.run_comparison`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from napari_sparse_sem.cli.common import (
    QuietOption,
    ThreadsOption,
    clean_errors,
    echo,
    parse_range,
    parse_roi,
    progress_bar,
    read_input,
    stdout_console,
    use_threads,
)
from napari_sparse_sem.cli.methods import method_help, preset_options, weights_option
from napari_sparse_sem.cli.reconstruct import DipConfigOption, DipPresetOption, WeightsOption
from napari_sparse_sem.cli.spec_options import Form, build, field_default, spec_options
from napari_sparse_sem.compare.spec import CompareSpec
from napari_sparse_sem.params_text import parse_options

SUMMARY_COLUMNS = (
    "pattern",
    "coverage",
    "achieved",
    "method",
    "PSNR dB",
    "SSIM",
    "PSNR unscanned",
    "PSNR hold-out",
    "s/slice",
)


def summary_table(records: list[dict[str, Any]]) -> Any:
    """A rich table of the comparison's summary (means over slices per pattern × coverage × method)."""
    from rich.table import Table

    from napari_sparse_sem.compare import summary

    rows = summary(records)
    sigma = next((r.get("noise_sigma") for r in rows if r.get("noise_sigma") is not None), None)
    caption = None
    if sigma is not None and sigma == sigma:
        ceiling = next(r["psnr_ceiling"] for r in rows if r.get("noise_sigma") is not None)
        caption = (
            f"reference noise σ ≈ {sigma:.4f} of the range: PSNR against it cannot exceed ≈ {ceiling:.1f} dB; "
            "PSNR hold-out: estimated from the scanned pixels alone (no ground truth)"
        )
    table = Table(title="Comparison (means over slices)", caption=caption)
    for col in (*SUMMARY_COLUMNS, "scan/dense"):
        table.add_column(col, justify="left" if col in ("pattern", "method") else "right")
    for row in rows:
        scan = row["acquisition_s"] / row["dense_acquisition_s"] if row["dense_acquisition_s"] else float("nan")
        table.add_row(
            row["pattern"],
            f"{100 * row['coverage_requested']:.1f} %",
            f"{100 * row['coverage']:.2f} %",
            row["method"],
            f"{row['psnr']:.2f}",
            f"{row['ssim']:.3f}",
            f"{row['psnr_unscanned']:.2f}",
            "–" if row.get("psnr_holdout") != row.get("psnr_holdout") else f"{row['psnr_holdout']:.2f}",
            f"{row['seconds']:.3f}",
            f"{100 * scan:.1f} %",
        )
    return table


def _with_method_options(settings: dict[str, Any], extra: dict[str, dict[str, Any]]) -> None:
    """Merge per-method ``extra`` options under the ones already in ``settings`` (``--option`` still wins)."""
    if not extra:
        return
    per_method = dict(settings.get("method_options") or {})
    for name, options in extra.items():
        per_method[name] = {**options, **per_method.get(name, {})}
    settings["method_options"] = per_method


FORMS = {
    "methods": Form(callback=method_help(per_method=True)),
    "slices": Form(parse=parse_range, metavar="A:B"),
    "roi": Form(parse=lambda text, flag: parse_roi(text), metavar="Y0:Y1,X0:X1"),
}
"""How compare's flags read beyond the model's declaration: ``--method help``, the ``A:B`` and ``Y0:Y1,X0:X1`` forms."""


@clean_errors
@spec_options(CompareSpec, into="flags", as_dict=True, forms=FORMS, panel="Comparison (CompareSpec)")
def compare(
    volume: Annotated[Path, typer.Argument(help="Dense input volume (the ground truth).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder.")],
    flags: dict[str, Any],
    option: Annotated[
        list[str] | None, typer.Option("--option", help="Method option METHOD.KEY=VALUE (repeatable).")
    ] = None,
    config: Annotated[
        Path | None,
        typer.Option(help="JSON file with CompareSpec fields, or an earlier report's params.json (flags override it)."),
    ] = None,
    dip_preset: DipPresetOption = None,
    dip_config: DipConfigOption = None,
    weights: WeightsOption = None,
    threads: ThreadsOption = 0,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing report in OUT.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Compare mask patterns × coverages × methods on VOLUME; write metrics.json/csv, params.json, comparison.png."""
    from napari_sparse_sem.compare import name_list
    from napari_sparse_sem.compare.report import run_comparison

    use_threads(threads)
    settings: dict[str, Any] = {}
    if config is not None:
        from napari_sparse_sem.jsonfile import read_json_object

        settings = read_json_object(config, "config", "CompareSpec fields")
        settings = settings.get("spec", settings)  # a params.json from an earlier report works too
    settings.update(flags)
    options = parse_options(option, per_method=True)
    if options:
        settings["method_options"] = options
    methods = name_list(settings.get("methods", field_default(CompareSpec, "methods")))
    _with_method_options(settings, preset_options(dip_preset, dip_config, methods))
    _with_method_options(settings, weights_option(weights, methods))
    spec = build(CompareSpec, settings)
    vol = read_input(volume)
    spec.validate_for(vol.shape)
    with progress_bar("compare", quiet) as update:
        result, paths = run_comparison(
            vol, spec, out, overwrite=overwrite, source={"path": str(volume)}, inputs=(volume,), on_progress=update
        )
    stdout_console().print(summary_table(result.records))
    for note in dict.fromkeys(r["weights_note"] for r in result.records if r.get("weights_note")):
        echo(f"note: {note}")
    echo(f"report written to {out}: " + ", ".join(p.name for p in paths.values()))
