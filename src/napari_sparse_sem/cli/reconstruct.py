"""``sparse-sem reconstruct``: fill the unscanned pixels of a sparse stack on disk (see
:func:`~napari_sparse_sem.recon.to_file.reconstruct_to_file`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from napari_sparse_sem.cli.common import (
    QuietOption,
    clean_errors,
    dip_options,
    echo,
    format_seconds,
    method_help,
    parse_options,
    parse_range,
    progress_bar,
    weights_option,
)

MethodOption = Annotated[
    str,
    typer.Option(help="Reconstruction method (`--method help` lists them).", callback=method_help, is_eager=True),
]
DipPresetOption = Annotated[str | None, typer.Option(help="dip/dip3d preset: paper or default.")]
DipConfigOption = Annotated[
    Path | None, typer.Option(help="dip/dip3d options: JSON object of DIPConfig fields (and 'preset').")
]
WeightsOption = Annotated[
    Path | None,
    typer.Option(help="gan/gan-mse weights: a .safetensors file from train-gan, or flyem / flyem-context1 (shipped)."),
]


@clean_errors
def reconstruct(
    sparse: Annotated[Path, typer.Argument(help="Sparse stack (unscanned pixels 0), e.g. from `simulate`.")],
    mask: Annotated[Path, typer.Option("--mask", "-m", help="Mask stack (non-zero = scanned).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output stack (.tif or .zarr).")],
    method: MethodOption = "linear",
    slices: Annotated[str | None, typer.Option(help="Slices A:B (half-open) to reconstruct.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    option: Annotated[list[str] | None, typer.Option("--option", help="Method option KEY=VALUE (repeatable).")] = None,
    dip_preset: DipPresetOption = None,
    dip_config: DipConfigOption = None,
    weights: WeightsOption = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Fill the unscanned pixels of SPARSE with METHOD and write the reconstruction to OUT."""
    from napari_sparse_sem.recon.base import available_methods
    from napari_sparse_sem.recon.dip import DIP_METHODS
    from napari_sparse_sem.recon.to_file import reconstruct_to_file

    if method not in available_methods():
        raise ValueError(
            f"unknown reconstruction method {method!r}; choose one of {available_methods()} (--method help describes "
            "them)"
        )
    from_dip = dip_options(dip_preset, dip_config)
    if from_dip and method not in DIP_METHODS:
        raise ValueError(f"--dip-preset/--dip-config apply to {' and '.join(DIP_METHODS)}, not to {method!r}")
    options = {**from_dip, **weights_option(weights, [method]).get(method, {}), **parse_options(option)}
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
