"""``sparse-sem reconstruct``: fill the unscanned pixels of a sparse stack on disk (see
:func:`~napari_sparse_sem.recon.to_file.reconstruct_to_file`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from napari_sparse_sem.cli.common import (
    CLUSTER_PANEL,
    ClusterOption,
    DeviceOption,
    MemoryLimitOption,
    QuietOption,
    ResumeOption,
    SlabOption,
    ThreadsOption,
    block_summary,
    check_cluster_flags,
    clean_errors,
    echo,
    format_seconds,
    incomplete,
    parse_range,
    progress_bar,
    run_cluster_job,
    use_threads,
)
from napari_sparse_sem.cli.methods import (
    check_methods,
    method_help,
    options_file,
    preset_options,
    weights_option,
)
from napari_sparse_sem.params_text import parse_options
from napari_sparse_sem.quality.holdout import DEFAULT_FOLDS

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
WorkersPerGpuOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Local workers sharing each GPU with --cluster local (default 1); more than one helps methods that "
        "leave the GPU idle part of the time.",
        rich_help_panel=CLUSTER_PANEL,
    ),
]
TileOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Cut slices into square tiles of this many pixels per block with --cluster (methods that fit tiles, "
        "e.g. DIP and the GAN; default: whole slices up to 4096 px).",
        rich_help_panel=CLUSTER_PANEL,
    ),
]
PyramidOption = Annotated[
    bool | None,
    typer.Option(
        "--pyramid/--no-pyramid",
        help="With --cluster: add the multiscale levels of the OME-Zarr output once every block is in (default: on).",
        rich_help_panel=CLUSTER_PANEL,
        show_default=False,
    ),
]


@clean_errors
def reconstruct(
    sparse: Annotated[Path, typer.Argument(help="Sparse stack (unscanned pixels 0), e.g. from `simulate`.")],
    mask: Annotated[Path, typer.Option("--mask", "-m", help="Mask stack (non-zero = scanned).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output stack (.tif or .zarr; .zarr with --cluster).")],
    method: Annotated[
        str,
        typer.Option(help="Reconstruction method (`--method help` lists them).", callback=method_help(), is_eager=True),
    ] = "linear",
    slices: Annotated[str | None, typer.Option(help="Slices A:B (half-open) to reconstruct.")] = None,
    device: DeviceOption = "auto",
    threads: ThreadsOption = 0,
    option: Annotated[list[str] | None, typer.Option("--option", help="Method option KEY=VALUE (repeatable).")] = None,
    method_config: Annotated[
        Path | None, typer.Option(help="Method options from a JSON object of KEY: VALUE (--option wins over it).")
    ] = None,
    dip_preset: DipPresetOption = None,
    dip_config: DipConfigOption = None,
    weights: WeightsOption = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
    cluster: ClusterOption = None,
    workers_per_gpu: WorkersPerGpuOption = None,
    memory_limit: MemoryLimitOption = None,
    resume: ResumeOption = False,
    slab: SlabOption = None,
    tile: TileOption = None,
    pyramid: PyramidOption = None,
    holdout: Annotated[
        bool,
        typer.Option(
            "--holdout",
            help="Also estimate the quality without ground truth (k-fold hold-out of the scanned pixels) and write "
            "OUT's <stem>.metrics.json (per-slice psnr_holdout, the noise estimate); costs FOLDS more reconstructions "
            "of the scored slices.",
            rich_help_panel="Quality",
        ),
    ] = False,
    holdout_folds: Annotated[
        int, typer.Option(min=2, help="Folds of --holdout.", rich_help_panel="Quality")
    ] = DEFAULT_FOLDS,
    holdout_max_slices: Annotated[
        int | None,
        typer.Option(
            min=1,
            help="Most slices --holdout scores (evenly spaced).",
            rich_help_panel="Quality",
        ),
    ] = 5,
    quiet: QuietOption = False,
) -> None:
    """Fill the unscanned pixels of SPARSE with METHOD and write the reconstruction to OUT."""
    from napari_sparse_sem.recon.to_file import reconstruct_to_file

    use_threads(threads)
    given = {
        "--workers-per-gpu": workers_per_gpu is not None,
        "--memory-limit": memory_limit is not None,
        "--resume": resume,
        "--slab": slab is not None,
        "--tile": tile is not None,
        "--pyramid" if pyramid else "--no-pyramid": pyramid is not None,
    }
    check_cluster_flags(
        cluster, out, [flag for flag, used in given.items() if used], resume=resume, overwrite=overwrite
    )
    check_methods([method])
    if holdout and cluster is not None:
        raise ValueError("--holdout runs in one process; run it without --cluster (e.g. on a few slices: --slices A:B)")
    if holdout:  # its metrics file is an output too: refused before any work, never replaced unasked
        from napari_sparse_sem.io.writers import check_target
        from napari_sparse_sem.recon.to_file import metrics_path

        check_target(metrics_path(out), overwrite)
    options = {
        **(options_file(method_config, [method], "method config") if method_config is not None else {}),
        **preset_options(dip_preset, dip_config, [method], single=True).get(method, {}),
        **weights_option(weights, [method]).get(method, {}),
        **parse_options(option),
    }
    if cluster is not None:
        _on_cluster(
            sparse,
            mask,
            method,
            out,
            options,
            cluster=cluster,
            slices=slices,
            device=device,
            quiet=quiet,
            overwrite=overwrite,
            resume=resume,
            slab=slab,
            tile=tile,
            workers_per_gpu=workers_per_gpu or 1,
            memory_limit=memory_limit,
            pyramid=pyramid is not False,
        )
        return
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
    if meta.get("weights_note"):
        echo(f"note: {meta['weights_note']}")
    if holdout:
        from napari_sparse_sem.recon.to_file import quality_to_file

        with progress_bar("hold-out", quiet) as update:
            quality = quality_to_file(
                sparse,
                mask,
                method,
                out,
                slices=parse_range(slices),
                device=device,
                options=options,
                folds=holdout_folds,
                max_slices=holdout_max_slices,
                on_progress=update,
            )
        sigma = quality["noise_sigma"]
        noise = "unknown" if sigma != sigma or sigma is None else f"{sigma:.4f} of the range"
        echo(
            f"hold-out quality ({quality['folds']} folds, {len(quality['slices'])} slice(s)): PSNR ≈ "
            f"{quality['psnr_holdout']:.2f} dB on the unscanned pixels (raw {quality['psnr_holdout_raw']:.2f} dB on "
            f"held-out scanned pixels); noise σ {noise}; written to {quality['path']}"
        )


def _on_cluster(
    sparse: Path,
    mask: Path,
    method: str,
    out: Path,
    options: dict,
    *,
    cluster: str,
    slices: str | None,
    quiet: bool,
    **kwargs: Any,
) -> None:
    """``reconstruct --cluster``: the block-wise run (:mod:`napari_sparse_sem.cluster.reconstruct`)."""
    from napari_sparse_sem.cluster.reconstruct import reconstruct_blocks_job

    job = reconstruct_blocks_job(
        sparse, mask, method, out, cluster=cluster, slices=parse_range(slices), options=options, **kwargs
    )
    meta = run_cluster_job(job, method, quiet, str(out), out)
    a, b = meta["slices"]
    device = meta.get("device")
    device = ", ".join(device) if isinstance(device, list) else device
    echo(
        f"wrote {out}: {b - a} slice(s) {a}:{b} reconstructed with {method} on {device or '?'} "
        f"in {format_seconds(meta['seconds'])} ({cluster})"
    )
    echo(block_summary(meta))
    if not meta.get("complete"):
        raise incomplete(meta, str(out))
