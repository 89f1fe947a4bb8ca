"""``sparse-sem simulate``: a sparse scan of a dense stack, written as the sparse stack and its mask."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from napari_sparse_sem import __version__
from napari_sparse_sem.cli.common import (
    ClusterOption,
    MemoryLimitOption,
    QuietOption,
    ResumeOption,
    SlabOption,
    ThreadsOption,
    block_summary,
    check_cluster_flags,
    clean_errors,
    format_seconds,
    incomplete,
    parse_range,
    parse_roi,
    progress_bar,
    read_input,
    region,
    run_cluster_job,
    sibling_path,
    stdout_console,
    use_threads,
)
from napari_sparse_sem.cli.spec_options import Form, spec_options
from napari_sparse_sem.runtime import run_job
from napari_sparse_sem.sampling.spec import AcquisitionSpec, MaskSpec

SEED = Form(help="Seed of masks and noise.")


@clean_errors
@spec_options(MaskSpec, into="mask_spec", panel="Mask (MaskSpec)", forms={"seed": SEED})
@spec_options(AcquisitionSpec, into="acquisition", exclude=("seed",), panel="Acquisition (AcquisitionSpec)")
def simulate(
    volume: Annotated[Path, typer.Argument(help="Dense input volume.")],
    out: Annotated[
        Path,
        typer.Option(
            "--out", "-o", help="Sparse output (.tif or .zarr; .zarr with --cluster); the mask goes to *_mask."
        ),
    ],
    mask_spec: MaskSpec,
    acquisition: AcquisitionSpec,
    slices: Annotated[str | None, typer.Option(help="Slices A:B (half-open) of the input.")] = None,
    roi: Annotated[str | None, typer.Option(help="Region Y0:Y1,X0:X1 of every slice.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs.")] = False,
    cluster: ClusterOption = None,
    memory_limit: MemoryLimitOption = None,
    resume: ResumeOption = False,
    slab: SlabOption = None,
    threads: ThreadsOption = 0,
    quiet: QuietOption = False,
) -> None:
    """Simulate a sparse scan of VOLUME: write the sparse stack to OUT and its mask beside it (OUT stem + _mask)."""
    from napari_sparse_sem.io import write_volume
    from napari_sparse_sem.io.volume import SliceMap, as_zyx, to_float01, value_range
    from napari_sparse_sem.outputs import check_output_file, check_volume_space, scratch_array, staged_files
    from napari_sparse_sem.sampling import simulate_job

    use_threads(threads)
    given = {"--memory-limit": memory_limit is not None, "--resume": resume, "--slab": slab is not None}
    check_cluster_flags(
        cluster, out, [flag for flag, used in given.items() if used], resume=resume, overwrite=overwrite
    )
    acq = acquisition.replace(seed=mask_spec.seed)  # one --seed: the masks' and the noise's
    sl, roi_box = parse_range(slices), parse_roi(roi)
    mask_out = sibling_path(out, "_mask")
    if cluster is not None:
        kwargs = {"slices": sl, "roi": roi_box, "overwrite": overwrite, "resume": resume, "slab": slab}
        _on_cluster(volume, out, mask_out, mask_spec, acq, cluster, quiet, memory_limit=memory_limit, **kwargs)
        return
    for target in (out, mask_out):
        check_output_file(target, [volume], overwrite=overwrite)
    vol = read_input(volume)
    data = as_zyx(vol.data, str(volume))
    a, b, y0, y1, x0, x1 = region(data.shape, sl, roi_box)
    # Slice by slice into disk-backed arrays, then written out slice by slice: memory stays bounded by one slice.
    block = data[a:b, y0:y1, x0:x1]
    vrange = value_range(block)
    dense = SliceMap(block, lambda plane: to_float01(plane, str(volume), vrange), np.float32)
    out_dtype = block.dtype if block.dtype.kind in "iuf" else np.dtype(np.float32)
    scratch_dir = out.parent if out.parent.is_dir() else None
    with tempfile.TemporaryDirectory(prefix=".sparse-sem-", dir=scratch_dir, ignore_cleanup_errors=True) as scratch:
        shape = (b - a, y1 - y0, x1 - x0)
        stored = scratch_array(scratch, "sparse", out_dtype, shape)
        mask = scratch_array(scratch, "mask", bool, shape)
        check_volume_space([(out, out_dtype), (mask_out, np.dtype(np.uint8))], shape)
        job = simulate_job(dense, mask_spec, acq, sparse_out=stored, mask_out=mask, stored_range=vrange, z_offset=a)
        with progress_bar("simulate", quiet) as update:
            scan = run_job(job, update)
        record = scan.record(str(volume), vrange, slices=(a, b), roi=(y0, y1, x0, x1))
        meta = {"kind": "sparse", **record.to_metadata(), "mask_file": mask_out.name, "version": __version__}
        mask_meta = {"kind": "mask", **record.to_metadata(), "sparse_file": out.name, "version": __version__}
        with staged_files([out, mask_out]) as (staged_sparse, staged_mask):
            write_volume(staged_sparse, stored, voxel_size=vol.voxel_size, metadata=meta)
            write_volume(staged_mask, mask, voxel_size=vol.voxel_size, metadata=mask_meta)
    _print_scan(out, stored, mask_out, mask_spec, scan.coverage, scan.path_length_px, scan.scan_s, scan.dense_s)


def _on_cluster(
    volume: Path,
    out: Path,
    mask_out: Path,
    mask_spec: MaskSpec,
    acquisition: AcquisitionSpec,
    cluster: str,
    quiet: bool,
    **kwargs: Any,
) -> None:
    """``simulate --cluster``: the block-wise run (:mod:`napari_sparse_sem.cluster.simulate`)."""
    import zarr

    from napari_sparse_sem.cluster.simulate import simulate_blocks_job

    job = simulate_blocks_job(volume, out, mask_spec, acquisition, cluster=cluster, mask_out=mask_out, **kwargs)
    scan = run_cluster_job(job, "simulate", quiet, f"{out} and {mask_out}", out)
    stored = zarr.open_array(str(out / "0"), mode="r")
    _print_scan(out, stored, mask_out, mask_spec, scan.coverage, scan.path_length_px, scan.scan_s, scan.dense_s)
    stdout_console().print(block_summary(scan.metadata), markup=False)
    if not scan.complete:
        raise incomplete(scan.metadata, f"{out} and {mask_out}")


def _print_scan(
    out: Path,
    stored: Any,
    mask_out: Path,
    mask_spec: MaskSpec,
    coverage: np.ndarray,
    path_length_px: np.ndarray,
    scan_s: np.ndarray,
    dense_s: float,
) -> None:
    """What was written (``stored``: the sparse array or its description) and the scan's figures (coverage, beam
    path, time estimate) on stdout."""
    con = stdout_console()
    con.print(f"wrote {out} (sparse, {stored.dtype}, shape {tuple(stored.shape)}) and {mask_out} (mask)", markup=False)
    if not len(coverage):
        return
    con.print(
        f"coverage: requested {100 * mask_spec.coverage:.2f} %, achieved {100 * coverage.mean():.2f} % "
        f"(per slice {100 * coverage.min():.2f}..{100 * coverage.max():.2f} %)",
        markup=False,
    )
    con.print(f"beam path: {np.mean(path_length_px):,.0f} px per slice", markup=False)
    total = float(np.sum(scan_s))
    con.print(
        f"time estimate: {format_seconds(total)} for {len(scan_s)} slice(s) vs {format_seconds(dense_s)} "
        f"dense ({dense_s / max(total, 1e-12):.1f}x faster)",
        markup=False,
    )
