"""``sparse-sem reconstruct``: fill the unscanned pixels of a sparse stack on disk (see
:func:`~napari_sparse_sem.recon.to_file.reconstruct_to_file`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from napari_sparse_sem.cli.common import (
    DeviceOption,
    QuietOption,
    clean_errors,
    echo,
    format_seconds,
    parse_range,
    progress_bar,
)
from napari_sparse_sem.cli.methods import (
    check_methods,
    method_help,
    options_file,
    preset_options,
    weights_option,
)
from napari_sparse_sem.params_text import parse_options

DipPresetOption = Annotated[
    str | None,
    typer.Option(help="Preset of the chosen methods whose options have a preset (e.g. DIP): paper or default."),
]
DipConfigOption = Annotated[
    Path | None,
    typer.Option(help="Options of the chosen methods with a preset: a JSON object of their option fields."),
]
WeightsOption = Annotated[
    Path | None,
    typer.Option(
        help="Weights of the chosen methods that load them (e.g. the GAN): a .safetensors file from train-gan, or "
        "the name of shipped weights (`--method help` says which methods load weights)."
    ),
]


@clean_errors
def reconstruct(
    sparse: Annotated[Path, typer.Argument(help="Sparse stack (unscanned pixels 0), e.g. from `simulate`.")],
    mask: Annotated[Path, typer.Option("--mask", "-m", help="Mask stack (non-zero = scanned).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output stack (.tif or .zarr).")],
    method: Annotated[
        str,
        typer.Option(help="Reconstruction method (`--method help` lists them).", callback=method_help(), is_eager=True),
    ] = "linear",
    slices: Annotated[str | None, typer.Option(help="Slices A:B (half-open) to reconstruct.")] = None,
    device: DeviceOption = "auto",
    option: Annotated[list[str] | None, typer.Option("--option", help="Method option KEY=VALUE (repeatable).")] = None,
    method_config: Annotated[
        Path | None, typer.Option(help="Method options from a JSON object of KEY: VALUE (--option wins over it).")
    ] = None,
    dip_preset: DipPresetOption = None,
    dip_config: DipConfigOption = None,
    weights: WeightsOption = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Fill the unscanned pixels of SPARSE with METHOD and write the reconstruction to OUT."""
    from napari_sparse_sem.recon.to_file import reconstruct_to_file

    check_methods([method])
    options = {
        **(options_file(method_config, [method], "method config") if method_config is not None else {}),
        **preset_options(dip_preset, dip_config, [method], single=True).get(method, {}),
        **weights_option(weights, [method]).get(method, {}),
        **parse_options(option),
    }
    with progress_bar(f"{method}", quiet) as update:
        meta = reconstruct_to_file(
            sparse,
            mask,
            method,
            out,
            slices=parse_range(slices),
            device=device,
            options=options,
            overwrite=overwrite,
            on_progress=update,
        )
    a, b = meta["slices"]
    echo(
        f"wrote {out}: {b - a} slice(s) {a}:{b} reconstructed with {method} on {meta['device']} "
        f"in {format_seconds(meta['seconds'])}"
    )
