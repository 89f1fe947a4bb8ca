"""The ``sparse-sem`` command line: inspect volumes, simulate sparse scans, reconstruct them, compare mask patterns.

Every flag maps to a field of a parameter model (:class:`~napari_sparse_sem.sampling.spec.MaskSpec`,
:class:`~napari_sparse_sem.sampling.spec.AcquisitionSpec`, :class:`~napari_sparse_sem.compare.CompareSpec`), and every
output carries those parameters as metadata, so a result can be re-run from what was saved beside it. Progress goes to
stderr (a bar on a terminal, one plain line per step or every 10 s in a log file, nothing with ``--quiet``); tables and
results to stdout. Bad input, a full or read-only disk and other OS errors are one red ``Error: ...`` line and exit
code 2, checked before the work wherever they can be. Ctrl-C, SIGTERM and SIGHUP stop at the next progress step, keep
what was finished (marked ``complete: false``) and exit with 130, 143 and 129. Outputs never go into an input and are
written all at once (:mod:`napari_sparse_sem.outputs`).
"""

from __future__ import annotations

import functools
import json
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from napari_sparse_sem import __version__
from napari_sparse_sem.runtime import (
    Progress,
    default_signals,
    interrupt_exit_code,
    run_job,
    signal_name,
    stop_signals,
)

app = typer.Typer(
    name="sparse-sem",
    help="Sparse-scan SEM: simulate sparse scans of an image stack, reconstruct them, compare mask patterns.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
"""Exit status after Ctrl-C; SIGTERM and SIGHUP give 143 and 129 (128 + the signal number, as shells report)."""
LOG_INTERVAL_S = 10.0
"""Without a terminal, a progress line at least this often (and one per finished step, at most one a second)."""
_COMPOUND_SUFFIXES = (".ome.zarr", ".ome.tiff", ".ome.tif")


# ---------------------------------------------------------------------------------------------------------- helpers


def _stderr() -> Any:
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True, highlight=False)


def _stdout() -> Any:
    from rich.console import Console

    console = Console(soft_wrap=True, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 160  # piped or captured: keep table rows whole instead of wrapping at 80 columns
    return console


def _fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    _stderr().print(f"Error: {message}", style="bold red", markup=False)
    return typer.Exit(code)


def _stopped(exc: BaseException, what: str) -> typer.Exit:
    """Say how a stop by Ctrl-C/SIGTERM/SIGHUP ended (``what`` was kept) and exit with the signal's status."""
    signum = getattr(exc, "signum", 2)
    label = "Interrupted" if signum == 2 else f"Stopped by {signal_name(signum)}"
    _stderr().print(f"{label}: {what}", markup=False)
    return typer.Exit(interrupt_exit_code(exc))


_OS_ADVICE = {
    28: "the disk is full: free some space or write elsewhere",  # ENOSPC
    30: "the file system is read-only: choose another --out",  # EROFS
    13: "permission denied: choose a folder you may write to",  # EACCES
    1: "operation not permitted: choose a folder you may write to",  # EPERM
    122: "the disk quota is exceeded: free some space or write elsewhere",  # EDQUOT
}


def os_error_text(exc: OSError) -> str:
    """One line for an OS error: the path, what went wrong and what to do."""
    where = exc.filename or ""
    reason = exc.strerror or str(exc)
    advice = _OS_ADVICE.get(exc.errno or 0)
    text = f"{where}: {reason}" if where else reason
    return f"{text} ({advice})" if advice and advice not in text else text


def _clean_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """One error boundary for every command: expected user errors and OS errors (full or read-only disk, permissions)
    become one red line on stderr and exit code 2 (no traceback); a stop signal that no command handled ends with the
    signal's exit status. Scratch and staging folders are removed by the ``with`` blocks they live in."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except FileNotFoundError as exc:
            raise _fail(f"file not found: {exc.filename}" if exc.filename else str(exc)) from None
        except (ValueError, FileExistsError) as exc:
            raise _fail(str(exc)) from None
        except OSError as exc:
            raise _fail(os_error_text(exc)) from None
        except KeyboardInterrupt as exc:
            raise _stopped(exc, "nothing was finished; nothing written.") from None

    return wrapper


def parse_range(text: str | None, what: str = "--slices") -> tuple[int, int] | None:
    """``"A:B"`` → ``(A, B)`` (half-open); ``None``/empty → ``None``."""
    if text is None or not str(text).strip():
        return None
    parts = str(text).strip().split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        a, b = int(parts[0]), int(parts[1])
    except ValueError:
        raise ValueError(f"{what} expects A:B with whole numbers (half-open, e.g. 120:130), got {text!r}") from None
    if not 0 <= a < b:
        raise ValueError(f"{what} {a}:{b} must satisfy 0 <= A < B (A:B is half-open: slices A to B-1)")
    return a, b


def parse_roi(text: str | None) -> tuple[int, int, int, int] | None:
    """``"Y0:Y1,X0:X1"`` → ``(y0, y1, x0, x1)``; ``None``/empty → ``None``."""
    if text is None or not str(text).strip():
        return None
    parts = str(text).replace(" ", "").split(",")
    if len(parts) != 2:
        raise ValueError(f"--roi expects Y0:Y1,X0:X1 (rows, then columns; e.g. 0:128,64:192), got {text!r}")
    try:
        ys = parse_range(parts[0], "--roi rows")
        xs = parse_range(parts[1], "--roi columns")
    except ValueError as exc:
        raise ValueError(f"{exc} (in --roi {text!r}, which expects Y0:Y1,X0:X1)") from None
    assert ys is not None and xs is not None
    return ys[0], ys[1], xs[0], xs[1]


def parse_list(text: str | None, what: str) -> list[str] | None:
    """``"a,b , c"`` → ``["a", "b", "c"]``; ``None`` → ``None``."""
    if text is None:
        return None
    items = [item.strip() for item in str(text).split(",") if item.strip()]
    if not items:
        raise ValueError(f"{what} needs at least one value (comma-separated), got {text!r}")
    return items


def parse_coverage(text: str, what: str = "--coverage", whole_allowed: bool = True) -> float:
    """``"0.05"`` or ``"5%"`` → 0.05; in (0, 1], or (0, 1) when a whole scan makes no sense (``whole_allowed``)."""
    raw = text.strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise ValueError(f"{what} expects a fraction such as 0.05 (or 5%), got {text!r}") from None
    ok = 0 < value <= 1 if whole_allowed else 0 < value < 1
    if not np.isfinite(value) or not ok:
        interval = "(0, 1]" if whole_allowed else "(0, 1): a whole scan leaves nothing to choose"
        raise ValueError(f"{what} must be in {interval} (a fraction of pixels, e.g. 0.05 for 5 %), got {text}")
    return value


def _option_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_options(items: list[str] | None, per_method: bool = False) -> dict[str, Any]:
    """``["key=value", ...]`` → dict (values parsed as JSON when possible: numbers, true/false, lists).

    With ``per_method`` the keys read ``method.key`` and the result is ``{method: {key: value}}``.
    """
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            form = "METHOD.KEY=VALUE (e.g. linear3d.context=5)" if per_method else "KEY=VALUE (e.g. context=5)"
            raise ValueError(f"--option expects {form}, got {item!r}")
        if per_method:
            method, dot, name = key.partition(".")
            if not dot or not method or not name:
                raise ValueError(f"--option expects METHOD.KEY=VALUE (e.g. linear3d.context=5), got {item!r}")
            out.setdefault(method, {})[name] = _option_value(value)
        else:
            out[key] = _option_value(value)
    return out


def weights_option(weights: Path | None, methods: list[str]) -> dict[str, dict[str, Any]]:
    """``{method: {"weights": path}}`` for the GAN methods among ``methods`` (``--weights`` names their file)."""
    if weights is None:
        return {}
    from napari_sparse_sem.nn.weights import check_safetensors
    from napari_sparse_sem.recon.gan import GAN_METHODS, SHIPPED_GAN_WEIGHTS

    targets = [m for m in methods if m in GAN_METHODS]
    if not targets:
        raise ValueError(f"--weights applies to {' and '.join(GAN_METHODS)}; add one to --method")
    if str(weights) not in SHIPPED_GAN_WEIGHTS:
        check_safetensors(weights)  # a clear error before any work
    return {name: {"weights": str(weights)} for name in targets}


def dip_options(preset: str | None, config_file: Path | None) -> dict[str, Any]:
    """Options for the DIP methods from ``--dip-config FILE.json`` (read first) and ``--dip-preset`` (wins)."""
    options: dict[str, Any] = {}
    if config_file is not None:
        from napari_sparse_sem.recon.dip import load_dip_options

        options.update(load_dip_options(config_file))
    if preset is not None:
        from napari_sparse_sem.recon.dip import PRESETS

        if preset not in PRESETS:
            raise ValueError(f"--dip-preset must be one of {list(PRESETS)}, got {preset!r}")
        options["preset"] = preset
    return options


def sibling_path(path: Path, tag: str) -> Path:
    """``out.tif`` → ``out_mask.tif`` (``tag="_mask"``); compound suffixes such as ``.ome.zarr`` are kept whole."""
    name = path.name
    for suffix in _COMPOUND_SUFFIXES:
        if name.lower().endswith(suffix):
            return path.with_name(name[: -len(suffix)] + tag + name[-len(suffix) :])
    return path.with_name(path.stem + tag + path.suffix)


QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output on stderr.")]


def _check_output_space(targets: list[tuple[Path, Any]], shape: tuple[int, ...]) -> None:
    """Enough free space for the TIFF outputs (uncompressed, so their size is known) of ``shape``, before the work;
    zarr outputs are compressed and not estimated."""
    from napari_sparse_sem.outputs import check_free_space

    n = int(np.prod(shape, dtype=np.int64))
    tiffs = [(path, np.dtype(dtype)) for path, dtype in targets if path.suffix.lower() in (".tif", ".tiff")]
    if tiffs:
        needed = sum(n * max(dtype.itemsize, 1) for _, dtype in tiffs)
        check_free_space(tiffs[0][0].parent, needed, ", ".join(path.name for path, _ in tiffs))


@contextmanager
def progress_bar(label: str, quiet: bool = False) -> Iterator[Callable[[Progress], None]]:
    """Progress on stderr, fed by the yielded callback: a rich bar on a terminal, plain log lines otherwise (see
    :class:`LogProgress`), nothing when ``quiet``. Output starts at the first event, so input errors (found before
    any work) come without an empty bar."""
    if quiet:
        yield lambda event: None
        return
    if not sys.stderr.isatty():
        yield LogProgress(label, sys.stderr)
        return
    from rich.progress import BarColumn, MofNCompleteColumn, TextColumn, TimeElapsedColumn
    from rich.progress import Progress as Bar

    bar = Bar(
        TextColumn("{task.description}", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=_stderr(),
    )
    task: list[Any] = []

    def update(event: Progress) -> None:
        if not task:
            bar.start()
            task.append(bar.add_task(label, total=None))
        message = event.message or label
        bar.update(task[0], completed=event.step, total=event.total or None, description=message[:70])

    try:
        yield update
    finally:
        if task:
            bar.stop()


class LogProgress:
    """Progress for a log file (stderr not a terminal, e.g. a cluster job): whole plain lines with step/total,
    elapsed time and ETA — one per finished step (at most one a second) and at least one every
    :data:`LOG_INTERVAL_S` while work goes on, plus the last step."""

    def __init__(self, label: str, stream: Any, clock: Callable[[], float] = time.monotonic) -> None:
        self.label, self.stream, self.clock = label, stream, clock
        self.start = clock()
        self.last_print = -np.inf
        self.last_step = -1

    def __call__(self, event: Progress) -> None:
        now = self.clock()
        advanced = event.step != self.last_step
        final = event.total > 0 and event.step >= event.total
        due = now - self.last_print >= LOG_INTERVAL_S or (advanced and now - self.last_print >= 1.0)
        if (final and advanced) or due:
            self.stream.write(self.line(event, now - self.start) + "\n")
            self.stream.flush()
            self.last_print, self.last_step = now, event.step

    def line(self, event: Progress, elapsed: float) -> str:
        """``label: 5/8 (62 %) · elapsed 2.0 min · ETA 1.2 min · message``."""
        parts = [f"{self.label}: {event.step}/{event.total}" if event.total > 0 else f"{self.label}: {event.step}"]
        if event.total > 0:
            parts[0] += f" ({100 * event.step / event.total:.0f} %)"
        parts.append(f"elapsed {_fmt_s(elapsed)}")
        if event.total > 0 and 0 < event.step < event.total:
            parts.append(f"ETA {_fmt_s(elapsed / event.step * (event.total - event.step))}")
        if event.message:
            parts.append(event.message)
        return " · ".join(parts)


def _fmt_s(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    return f"{seconds / 60:.1f} min"


def _read(path: Path, dataset: str | None = None) -> Any:
    from napari_sparse_sem.io import read_volume
    from napari_sparse_sem.io.readers import split_h5_path

    if not split_h5_path(path)[0].exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    return read_volume(path, dataset=dataset, lazy=True)


def _method_help(value: str | None) -> str | None:
    """``--method help``: list every registered reconstruction method with its one-line description and exit (before
    the other options are checked, like ``--help``)."""
    if value is None or value.strip().lower() != "help":
        return value
    from napari_sparse_sem.recon.base import available_methods, method_class

    out = _stdout()
    out.print("Reconstruction methods (--method NAME; compare takes a comma list):", markup=False)
    for name in available_methods():
        out.print(f"  {name:<11} {method_class(name).description}", markup=False)
    raise typer.Exit(0)


def _region(shape: tuple[int, ...], slices: tuple[int, int] | None, roi: tuple[int, int, int, int] | None) -> tuple:
    """Resolved ``(a, b, y0, y1, x0, x1)`` inside ``shape``; out-of-range requests are clear errors."""
    from napari_sparse_sem.compare import region_bounds

    return region_bounds(shape, slices, roi)


# ------------------------------------------------------------------------------------------------------------- info


@app.command()
@_clean_errors
def info(
    path: Annotated[Path, typer.Argument(help="Volume: tif, folder of slices, zarr/OME-Zarr, mrc or h5.")],
    dataset: Annotated[str | None, typer.Option(help="Dataset inside an h5/zarr container.")] = None,
) -> None:
    """Print shape, dtype, voxel size, format, laziness and the value range of a sample slice."""
    from napari_sparse_sem.io.volume import as_zyx

    vol = _read(path, dataset)
    data = as_zyx(vol.data, str(path))
    nz = data.shape[0]
    sample = np.asarray(data[nz // 2])
    lazy = bool(vol.metadata.get("lazy", not isinstance(vol.data, np.ndarray)))
    kind = "numpy.memmap" if isinstance(vol.data, np.memmap) else type(vol.data).__module__.split(".")[0]
    fmt = vol.metadata.get("format") if isinstance(vol.metadata, dict) else None
    out = _stdout()
    out.print(f"path:        {path}", markup=False)
    out.print(f"name:        {vol.name}", markup=False)
    out.print(f"shape (z, y, x): {tuple(int(s) for s in data.shape)}", markup=False)
    out.print(f"dtype:       {data.dtype}", markup=False)
    voxel = "unknown" if vol.voxel_size is None else " x ".join(f"{v:g}" for v in vol.voxel_size) + " nm (z, y, x)"
    out.print(f"voxel size:  {voxel}", markup=False)
    out.print(f"format:      {fmt or _format_of(path)}", markup=False)
    out.print(f"lazy:        {f'yes ({kind})' if lazy else 'no (in memory)'}", markup=False)
    out.print(
        f"value range: {sample.min():g} .. {sample.max():g} (slice {nz // 2}; mean {sample.mean():.4g})", markup=False
    )


def _format_of(path: Path) -> str:
    p = Path(path)
    if p.is_dir() and not p.suffix:
        return "folder of slices"
    return p.name.lower().split(".", 1)[-1] if "." in p.name else "unknown"


# --------------------------------------------------------------------------------------------------------- simulate


@app.command()
@_clean_errors
def simulate(
    volume: Annotated[Path, typer.Argument(help="Dense input volume.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Sparse output (.tif or .zarr); the mask goes to *_mask.")],
    pattern: Annotated[str, typer.Option(help="Mask pattern (MaskSpec.pattern).")] = "random",
    coverage: Annotated[str, typer.Option(help="Fraction of pixels scanned, e.g. 0.05 or 5%.")] = "0.05",
    per_slice: Annotated[bool, typer.Option("--per-slice/--fixed-mask", help="New mask per slice or one.")] = True,
    dose: Annotated[
        float | None, typer.Option(help="Electrons per scanned pixel (shot noise); none = noiseless.")
    ] = None,
    seed: Annotated[int, typer.Option(help="Seed of masks and noise.")] = 0,
    slices: Annotated[str | None, typer.Option(help="Slices A:B (half-open) of the input.")] = None,
    roi: Annotated[str | None, typer.Option(help="Region Y0:Y1,X0:X1 of every slice.")] = None,
    jitter: Annotated[
        float | None, typer.Option(help="grid/hexgrid jitter (fraction of spacing); default: grid 0.5, hexgrid 0.")
    ] = None,
    lines_mode: Annotated[str, typer.Option(help="lines pattern: regular or random.")] = "regular",
    lowres_factor: Annotated[int | None, typer.Option(help="lowres: every f-th pixel (default from coverage).")] = None,
    dwell_us: Annotated[float, typer.Option(help="Dwell time per pixel (µs).")] = 3.0,
    settle_us: Annotated[float, typer.Option(help="Settle time per beam jump (µs).")] = 1.0,
    move_us_per_px: Annotated[float, typer.Option(help="Beam travel time per pixel of a jump (µs).")] = 0.001,
    overwrite: Annotated[bool, typer.Option(help="Replace existing outputs.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Simulate a sparse scan of VOLUME: write the sparse stack to OUT and its mask beside it (OUT stem + _mask)."""
    from napari_sparse_sem.io import write_volume
    from napari_sparse_sem.io.volume import as_zyx, from_float01, to_float01, value_range
    from napari_sparse_sem.outputs import check_output_file, scratch_array, staged_files
    from napari_sparse_sem.sampling import (
        AcquisitionSpec,
        MaskSpec,
        dense_scan_time,
        estimate_time,
        path_length,
        simulate_acquisition,
        slice_mask,
    )

    mask_spec = MaskSpec(
        pattern=pattern,
        coverage=parse_coverage(coverage),
        per_slice=per_slice,
        seed=seed,
        jitter=jitter,
        lines_mode=lines_mode,
        lowres_factor=lowres_factor,
    )
    acq = AcquisitionSpec(dwell_us=dwell_us, settle_us=settle_us, move_us_per_px=move_us_per_px, dose=dose, seed=seed)
    sl, region = parse_range(slices), parse_roi(roi)
    mask_out = sibling_path(out, "_mask")
    for target in (out, mask_out):
        check_output_file(target, [volume], overwrite=overwrite)
    vol = _read(volume)
    data = as_zyx(vol.data, str(volume))
    a, b, y0, y1, x0, x1 = _region(data.shape, sl, region)
    # Slice by slice into disk-backed arrays, then written out slice by slice: memory stays bounded by one slice.
    region = data[a:b, y0:y1, x0:x1]
    vrange = value_range(region)
    out_dtype = region.dtype if region.dtype.kind in "iuf" else np.dtype(np.float32)
    scratch_dir = out.parent if out.parent.is_dir() else None
    with tempfile.TemporaryDirectory(prefix=".sparse-sem-", dir=scratch_dir, ignore_cleanup_errors=True) as scratch:
        shape = (b - a, y1 - y0, x1 - x0)
        stored = scratch_array(scratch, "sparse", out_dtype, shape)
        mask = scratch_array(scratch, "mask", bool, shape)
        _check_output_space([(out, out_dtype), (mask_out, np.dtype(np.uint8))], shape)
        coverage_z, times, lengths = np.zeros(shape[0]), np.zeros(shape[0]), np.zeros(shape[0])
        with progress_bar("simulate", quiet) as update:
            for i in range(shape[0]):  # keep only per-slice figures: masks and paths of all slices would not fit
                dense = to_float01(np.asarray(region[i]), str(volume), vrange)
                result = slice_mask(shape[1:], mask_spec, i)
                sparse = simulate_acquisition(dense, result.mask, acq, first_slice=i)
                stored[i] = np.where(result.mask, from_float01(sparse, out_dtype, vrange), 0)  # unscanned stay 0
                mask[i] = result.mask
                coverage_z[i] = result.coverage
                times[i] = estimate_time(result.path, acq).seconds
                lengths[i] = path_length(result.path)
                update(Progress(i + 1, shape[0], f"slice {a + i}"))
        dense_s = dense_scan_time((y1 - y0, x1 - x0), acq).seconds
        meta = {
            "kind": "sparse",
            "source": str(volume),
            "slices": [a, b],
            "roi": [y0, y1, x0, x1],
            "mask_spec": mask_spec.to_dict(),
            "acquisition": acq.to_dict(),
            "coverage": float(coverage_z.mean()),
            "value_range": [float(vrange[0]), float(vrange[1])],
            "mask_file": mask_out.name,
            "acquisition_s": float(np.sum(times)),
            "dense_acquisition_s": float(dense_s * len(times)),
            "version": __version__,
        }
        mask_meta = {**meta, "kind": "mask", "sparse_file": out.name}
        mask_meta.pop("mask_file")
        with staged_files([out, mask_out]) as (staged_sparse, staged_mask):
            write_volume(staged_sparse, stored, voxel_size=vol.voxel_size, metadata=meta)
            write_volume(staged_mask, mask, voxel_size=vol.voxel_size, metadata=mask_meta)
    con = _stdout()
    con.print(f"wrote {out} (sparse, {out_dtype}, shape {shape}) and {mask_out} (mask)", markup=False)
    con.print(
        f"coverage: requested {100 * mask_spec.coverage:.2f} %, achieved {100 * coverage_z.mean():.2f} % "
        f"(per slice {100 * coverage_z.min():.2f}..{100 * coverage_z.max():.2f} %)",
        markup=False,
    )
    con.print(f"beam path: {np.mean(lengths):,.0f} px per slice", markup=False)
    total, dense_total = float(np.sum(times)), dense_s * len(times)
    con.print(
        f"time estimate: {_fmt_s(total)} for {len(times)} slice(s) vs {_fmt_s(dense_total)} dense "
        f"({dense_total / max(total, 1e-12):.1f}x faster)",
        markup=False,
    )


# ------------------------------------------------------------------------------------------------------ reconstruct


class Interrupted(Exception):
    """Ctrl-C or a stop signal (``signum``) during a reconstruction: ``done`` of ``total`` slices were finished and
    written to ``path``."""

    def __init__(self, done: int, total: int, path: Path | None, signum: int = 2) -> None:
        super().__init__(f"interrupted after {done} of {total} slices")
        self.done, self.total, self.path, self.signum = done, total, path, signum


def _nonzero(plane: np.ndarray) -> np.ndarray:
    return plane != 0


class _SlabWindow:
    """Slices ``first .. first + len(block)`` of a volume of ``shape``, stored in ``block``: the driver writes
    ``out[z]`` with volume indices while the scratch holds only the requested slices."""

    def __init__(self, block: np.ndarray, first: int, shape: tuple[int, ...]) -> None:
        self.block, self.first, self.shape = block, first, tuple(shape)

    def __setitem__(self, z: int, value: np.ndarray) -> None:
        self.block[z - self.first] = value

    def __getitem__(self, z: int) -> np.ndarray:
        return self.block[z - self.first]


def reconstruct_to_file(
    sparse_path: Path,
    mask_path: Path,
    method: str,
    out: Path,
    *,
    slices: tuple[int, int] | None = None,
    device: str = "auto",
    options: dict[str, Any] | None = None,
    overwrite: bool = False,
    on_progress: Callable[[Progress], None] | None = None,
) -> dict[str, Any]:
    """Reconstruct slices ``A:B`` of a sparse stack and write them to ``out``; returns the saved metadata.

    The output path, the free space and the inputs are checked before any work. When the run stops early — Ctrl-C or
    a stop signal (raised from anywhere, including ``on_progress``), or an error on a later slice — the finished
    leading slices are written with ``complete: false``; a stop then raises :class:`Interrupted`, an error is raised
    again saying what was kept.
    """
    from napari_sparse_sem.compare import check_method_options
    from napari_sparse_sem.io import write_volume
    from napari_sparse_sem.io.volume import SliceMap, as_zyx, from_float01, to_float01, value_range
    from napari_sparse_sem.outputs import check_output_file, scratch_array
    from napari_sparse_sem.recon.volume import SliceDone, reconstruct_volume
    from napari_sparse_sem.runtime import pick_device

    options = dict(options or {})
    check_method_options(method, options)
    check_output_file(out, [sparse_path, mask_path], overwrite=overwrite)
    sparse_vol, mask_vol = _read(sparse_path), _read(mask_path)
    sparse = as_zyx(sparse_vol.data, str(sparse_path))
    mask = as_zyx(mask_vol.data, str(mask_path))
    if tuple(sparse.shape) != tuple(mask.shape):
        raise ValueError(
            f"the sparse stack {tuple(sparse.shape)} and the mask {tuple(mask.shape)} must have the same shape"
        )
    resolved = pick_device(device)
    a, b, *_ = _region(sparse.shape, slices, None)
    meta_in = sparse_vol.metadata if isinstance(sparse_vol.metadata, dict) else {}
    # Everything stays lazy: the driver reads one slab at a time, finished slices go to a disk-backed array and are
    # written out slice by slice, so memory is bounded by the slab, not the volume.
    vrange = tuple(meta_in["value_range"]) if "value_range" in meta_in else value_range(sparse)
    scaled = SliceMap(sparse, functools.partial(to_float01, what=str(sparse_path), value_range_=vrange), np.float32)
    scanned = SliceMap(mask, _nonzero, bool)
    stored_dtype = sparse.dtype if sparse.dtype.kind in "iuf" else np.dtype(np.float32)
    wanted = list(range(a, b))
    finished: set[int] = set()
    scratch_dir = out.parent if out.parent.is_dir() else None

    # ignore_cleanup_errors: on Windows the memory-mapped file may still be open when the folder goes.
    with tempfile.TemporaryDirectory(prefix=".sparse-sem-", dir=scratch_dir, ignore_cleanup_errors=True) as scratch:
        block_shape = (b - a, *tuple(sparse.shape)[1:])
        out_block = scratch_array(scratch, "reconstruction", np.float32, block_shape)
        _check_output_space([(out, stored_dtype)], block_shape)

        def save(n_done: int, complete: bool, seconds: float) -> dict[str, Any]:
            to_source = functools.partial(from_float01, dtype=stored_dtype, value_range_=vrange)
            stored = SliceMap(out_block[:n_done], to_source, stored_dtype)
            meta = {
                "kind": "reconstruction",
                "method": method,
                "options": options,
                "device": resolved,
                "sparse": str(sparse_path),
                "mask": str(mask_path),
                "slices": [a, a + n_done],
                "requested_slices": [a, b],
                "complete": complete,
                "seconds": seconds,
                "value_range": [float(vrange[0]), float(vrange[1])],
                "version": __version__,
            }
            write_volume(out, stored, voxel_size=sparse_vol.voxel_size, metadata=meta, overwrite=True)
            return meta

        start = time.perf_counter()
        job = reconstruct_volume(
            scaled,
            scanned,
            method,
            device=resolved,
            options=options,
            slices=wanted,
            out=_SlabWindow(out_block, a, tuple(sparse.shape)),
        )

        def feed(event: Progress) -> None:
            if isinstance(event.partial, SliceDone):
                finished.add(int(event.partial.z))
            if on_progress is not None:
                on_progress(event)

        try:
            run_job(job, feed)
        except BaseException as exc:
            n_done = 0
            while a + n_done in finished and n_done < len(wanted):
                n_done += 1
            written = None
            if n_done:
                try:
                    save(n_done, False, time.perf_counter() - start)
                    written = out
                except Exception:  # e.g. the disk is full: the first error says why nothing could be kept
                    if isinstance(exc, KeyboardInterrupt):
                        raise
            if isinstance(exc, KeyboardInterrupt):
                raise Interrupted(n_done, len(wanted), written, getattr(exc, "signum", 2)) from None
            if written is not None and isinstance(exc, ValueError):
                raise ValueError(
                    f"{exc} (the {n_done} slices finished before it are in {out}, marked complete: false)"
                ) from exc
            raise
        return save(len(wanted), True, time.perf_counter() - start)


@app.command()
@_clean_errors
def reconstruct(
    sparse: Annotated[Path, typer.Argument(help="Sparse stack (unscanned pixels 0), e.g. from `simulate`.")],
    mask: Annotated[Path, typer.Option("--mask", "-m", help="Mask stack (non-zero = scanned).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output stack (.tif or .zarr).")],
    method: Annotated[
        str,
        typer.Option(help="Reconstruction method (`--method help` lists them).", callback=_method_help, is_eager=True),
    ] = "linear",
    slices: Annotated[str | None, typer.Option(help="Slices A:B (half-open) to reconstruct.")] = None,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    option: Annotated[list[str] | None, typer.Option("--option", help="Method option KEY=VALUE (repeatable).")] = None,
    dip_preset: Annotated[str | None, typer.Option(help="dip/dip3d preset: paper or default.")] = None,
    dip_config: Annotated[
        Path | None, typer.Option(help="dip/dip3d options: JSON object of DIPConfig fields (and 'preset').")
    ] = None,
    weights: Annotated[
        Path | None,
        typer.Option(
            help="gan/gan-mse weights: a .safetensors file from train-gan, or flyem / flyem-context1 (shipped)."
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing output.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Fill the unscanned pixels of SPARSE with METHOD and write the reconstruction to OUT."""
    from napari_sparse_sem.recon.base import available_methods

    if method not in available_methods():
        raise ValueError(
            f"unknown reconstruction method {method!r}; choose one of {available_methods()} (--method help describes "
            "them)"
        )
    from napari_sparse_sem.recon.dip import DIP_METHODS

    from_dip = dip_options(dip_preset, dip_config)
    if from_dip and method not in DIP_METHODS:
        raise ValueError(f"--dip-preset/--dip-config apply to {' and '.join(DIP_METHODS)}, not to {method!r}")
    options = {**from_dip, **weights_option(weights, [method]).get(method, {}), **parse_options(option)}
    try:
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
    except Interrupted as stop:
        if stop.path is None:
            raise _stopped(stop, f"no slice was finished; nothing written (0 of {stop.total}).") from None
        raise _stopped(
            stop, f"wrote the {stop.done} finished of {stop.total} slices to {out} (complete: false)."
        ) from None
    a, b = meta["slices"]
    _stdout().print(
        f"wrote {out}: {b - a} slice(s) {a}:{b} reconstructed with {method} on {meta['device']} "
        f"in {_fmt_s(meta['seconds'])}",
        markup=False,
    )


# ---------------------------------------------------------------------------------------------------------- compare


def _summary_table(records: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    from napari_sparse_sem.compare import summary

    table = Table(title="Comparison (means over slices)")
    for col in (
        "pattern",
        "coverage",
        "achieved",
        "method",
        "PSNR dB",
        "SSIM",
        "PSNR unscanned",
        "s/slice",
        "scan/dense",
    ):
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


def _run_into_report(
    job: Any,
    part: type,
    folder: Any,
    write_partial: Callable[[list[Any]], Any],
    total: int,
    unit: str,
    quiet: bool,
) -> Any:
    """Run a report's ``job`` with progress (labelled by its command) and return its result, collecting the partials of
    type ``part`` it yields. A stop (Ctrl-C, SIGTERM, SIGHUP) or an error after some of the ``total`` units
    finished writes those through ``write_partial`` into ``folder``'s stage, commits it (``complete: false``) and
    says so: a stop exits with the signal's status, an error is raised again with what was kept."""
    done: list[Any] = []
    try:
        with progress_bar(folder.command, quiet) as update:

            def feed(event: Progress) -> None:
                if isinstance(event.partial, part):
                    done.append(event.partial)
                update(event)

            return run_job(job, feed)
    except BaseException as exc:
        kept = f"wrote the {len(done)} finished of {total} {unit}s to {folder.out} (complete: false)."
        if done:
            write_partial(done)
            folder.commit()
        if isinstance(exc, KeyboardInterrupt):
            raise _stopped(exc, kept if done else f"no {unit} was finished; nothing written.") from None
        if done and isinstance(exc, ValueError):
            raise ValueError(f"{exc} ({kept})") from exc
        raise


def run_comparison(
    volume: Any,
    spec: Any,
    out_dir: Path,
    *,
    overwrite: bool = False,
    source: dict[str, Any] | None = None,
    inputs: tuple[Path, ...] = (),
    quiet: bool = False,
) -> tuple[Any, dict[str, Path]]:
    """Run :func:`compare_job` with progress and write the report into ``out_dir`` all at once.

    The folder is checked before the work (never one of ``inputs``; see
    :class:`~napari_sparse_sem.outputs.ReportFolder`). A stop (Ctrl-C, SIGTERM, SIGHUP) or an error after some
    runs finished writes those runs (``complete: false``).
    """
    from napari_sparse_sem.compare import CompareRun, compare_job, result_from_runs
    from napari_sparse_sem.report import REPORT_FILES, check_report_dir, write_report_files

    total = len(spec.patterns) * len(spec.coverages) * len(spec.methods)
    with check_report_dir(out_dir, overwrite, inputs) as folder:
        result = _run_into_report(
            compare_job(volume, spec),
            CompareRun,
            folder,
            lambda runs: write_report_files(result_from_runs(runs, spec, source), folder.stage),
            total,
            "run",
            quiet,
        )
        if source:
            result.source.update(source)
        write_report_files(result, folder.stage)
        out = folder.commit()
    return result, {key: out / name for key, name in REPORT_FILES.items()}


@app.command()
@_clean_errors
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
            callback=_method_help,
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
    dip_preset: Annotated[str | None, typer.Option(help="dip/dip3d preset: paper or default.")] = None,
    dip_config: Annotated[
        Path | None, typer.Option(help="dip/dip3d options: JSON object of DIPConfig fields (and 'preset').")
    ] = None,
    weights: Annotated[
        Path | None,
        typer.Option(
            help="gan/gan-mse weights: a .safetensors file from train-gan, or flyem / flyem-context1 (shipped)."
        ),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing report in OUT.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Compare mask patterns × coverages × methods on VOLUME; write metrics.json/csv, params.json, comparison.png."""
    from napari_sparse_sem.compare import CompareSpec, name_list

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
        per_method = dict(settings.get("method_options") or {})
        for name in targets:  # --option METHOD.KEY=VALUE still wins over the DIP file and preset
            per_method[name] = {**from_dip, **per_method.get(name, {})}
        settings["method_options"] = per_method
    if weights is not None:
        per_method = dict(settings.get("method_options") or {})
        for name, extra in weights_option(weights, name_list(settings.get("methods", []))).items():
            per_method[name] = {**extra, **per_method.get(name, {})}  # --option METHOD.weights=... still wins
        settings["method_options"] = per_method
    spec = CompareSpec.from_dict(settings)
    vol = _read(volume)
    spec.validate_for(vol.shape)
    result, paths = run_comparison(
        vol, spec, out, overwrite=overwrite, source={"path": str(volume)}, inputs=(volume,), quiet=quiet
    )
    _stdout().print(_summary_table(result.records))
    _stdout().print(f"report written to {out}: " + ", ".join(p.name for p in paths.values()), markup=False)


# ----------------------------------------------------------------------------------------------------------- active


def run_active(
    volume: Any,
    config: Any,
    out_dir: Path,
    slices: list[int],
    z_offset: int,
    *,
    overwrite: bool = False,
    source: dict[str, Any] | None = None,
    inputs: tuple[Path, ...] = (),
    quiet: bool = False,
) -> Any:
    """Run :func:`active_job` with progress and write the report into ``out_dir`` all at once (checked before the
    work; never one of ``inputs``). A stop or an error after some slices finished writes those (``complete: false``)."""
    from napari_sparse_sem.active.pipeline import ActiveResult, ActiveSlice, active_job
    from napari_sparse_sem.active.report import check_active_dir, write_active_files

    source = dict(source or {})
    with check_active_dir(out_dir, overwrite, inputs) as folder:
        result = _run_into_report(
            active_job(volume, config, slices, z_offset),
            ActiveSlice,
            folder,
            lambda done: write_active_files(ActiveResult(done, config, source), folder.stage, complete=False),
            len(slices),
            "slice",
            quiet,
        )
        result.source.update(source)
        write_active_files(result, folder.stage, complete=True)
        folder.commit()
    return result


def _active_table(records: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title="Active acquisition (means over slices)")
    for col in ("sampler", "estimator", "coverage", "PSNR dB", "SSIM", "L1", "initial PSNR", "corr", "s/slice"):
        table.add_column(col, justify="left" if col in ("sampler", "estimator") else "right")
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault((r["sampler"], r["estimator"]), []).append(r)
    for (sampler, estimator), rows in groups.items():

        def mean(key: str, rows: list[dict[str, Any]] = rows) -> float:
            values = [r[key] for r in rows if r.get(key) is not None]
            return float(np.mean(values)) if values else float("nan")

        table.add_row(
            sampler,
            estimator or "—",
            f"{100 * mean('coverage'):.2f} %",
            f"{mean('psnr'):.2f}",
            f"{mean('ssim'):.3f}",
            f"{mean('l1'):.4f}",
            f"{mean('initial_psnr'):.2f}" if rows[0].get("initial_psnr") is not None else "—",
            f"{mean('error_correlation'):.3f}" if rows[0].get("error_correlation") is not None else "—",
            f"{mean('seconds'):.2f}",
        )
    return table


@app.command()
@_clean_errors
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
        sigma="auto" if sigma.strip().lower() == "auto" else _float_option(sigma, "--sigma"),
        recon=recon,
        recon_options=parse_options(option),
        baselines=tuple(parse_list(baselines, "--baselines") or ()),
        seed=seed,
        device=device,
    )
    vol = _read(volume)
    a, b, y0, y1, x0, x1 = _region(vol.shape, parse_range(slices), parse_roi(roi))
    raw = np.asarray(vol.data[a:b, y0:y1, x0:x1])
    block = to_float01(raw, "volume", value_range(raw))
    source = {"path": str(volume), "slices": [a, b], "roi": [y0, y1, x0, x1]}
    result = run_active(
        block, config, out, list(range(b - a)), a, overwrite=overwrite, source=source, inputs=(volume,), quiet=quiet
    )
    _stdout().print(_active_table(result.records))
    _stdout().print(f"report written to {out}: metrics.json, metrics.csv, active.png, rescan/", markup=False)


def _float_option(text: str, what: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"{what} expects a number or auto, got {text!r}") from None


# ------------------------------------------------------------------------------------------------------------- demo


def has_display() -> bool:
    """Whether a window can open here (macOS/Windows, or an X11/Wayland display is set)."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


DEMO_SLICES = 3
"""Middle slices of the packaged sample used by the headless demo (keeps it well under a minute on a laptop)."""


def demo_spec(n_slices: int, n_available: int) -> Any:
    """The headless demo's comparison: every pattern at 5 %, nearest/linear/biharmonic, a few middle slices."""
    from napari_sparse_sem.compare import CompareSpec

    a = max(0, n_available // 2 - n_slices // 2)
    return CompareSpec(
        patterns=["all"],
        coverages=[0.05],
        methods=["nearest", "linear", "biharmonic"],
        slices=(a, min(n_available, a + n_slices)),
        device="auto",
    )


def _previous_demo(out_dir: Path) -> bool:
    params = out_dir / "params.json"
    try:
        return bool(json.loads(params.read_text(encoding="utf-8")).get("source", {}).get("demo"))
    except (OSError, ValueError, AttributeError):
        return False


@app.command()
@_clean_errors
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder of the headless demo.")] = Path(
        "sparse-sem-demo"
    ),
    headless: Annotated[bool, typer.Option(help="Never open napari; run the comparison and write a report.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing report in OUT.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Open napari with the sample stack and the widgets; headless (or without a display): write a comparison report."""
    if not headless and has_display():
        try:
            from napari_sparse_sem.widgets._worker import received_stop_signal
            from napari_sparse_sem.widgets.demo import launch
        except ImportError as exc:
            _stderr().print(f"napari is not usable here ({exc}); running the headless demo instead.", markup=False)
        else:
            with default_signals():  # napari handles Ctrl-C; our widgets handle SIGTERM/SIGHUP while a job runs
                launch()
            signum = received_stop_signal()
            if signum is not None:
                raise typer.Exit(128 + signum)
            return
    from napari_sparse_sem.io.sample_data import load_sample_volume

    vol = load_sample_volume()
    spec = demo_spec(DEMO_SLICES, vol.shape[0])
    replace = overwrite or _previous_demo(out)
    con = _stdout()
    a, b = spec.slices
    con.print(
        f"Headless demo: {len(spec.patterns)} patterns at 5 % on slices {a}:{b} of {vol.name} {vol.shape}, "
        f"methods {', '.join(spec.methods)}",
        markup=False,
    )
    result, paths = run_comparison(vol, spec, out, overwrite=replace, source={"demo": True}, quiet=quiet)
    con.print(_summary_table(result.records))
    con.print(f"report written to {out.resolve()}:", markup=False)
    for path in paths.values():
        con.print(f"  {path}", markup=False)


# -------------------------------------------------------------------------------------------------- train-estimator


def _reference_slices(volume: Path, dataset: str | None, slices: str | None) -> tuple[Any, int, int]:
    """The dense reference slices ``A:B`` of a training command: a float32 [0, 1] view of the volume, and A, B."""
    from napari_sparse_sem.io.volume import SliceMap, as_zyx, to_float01, value_range

    data = as_zyx(_read(volume, dataset).data, str(volume))
    a, b = parse_range(slices) or (0, int(data.shape[0]))
    if b > data.shape[0]:
        raise ValueError(f"--slices {a}:{b} reaches past the {data.shape[0]} slices of {volume}")
    vrange = value_range(data[a:b])
    return SliceMap(data, lambda plane: to_float01(plane, str(volume), vrange), np.float32), a, b


def _check_weights_out(out: Path, volume: Path, overwrite: bool) -> None:
    """Before training: OUT ends in .safetensors, is not the input (nor inside it), is new unless ``overwrite``, and
    its folder is writable."""
    from napari_sparse_sem.nn.weights import SUFFIX
    from napari_sparse_sem.outputs import check_not_input, check_writable_folder

    if Path(out).suffix != SUFFIX:
        raise ValueError(f"--out must name a {SUFFIX} file (its model card goes beside it), got {out}")
    check_not_input(out, [volume])
    if Path(out).exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; use --overwrite to replace it or choose another --out")
    check_writable_folder(Path(out).parent)


def _budget_flags(minutes: float | None, iterations: int | None) -> str:
    """The budget flags of a training command, as written into model cards."""
    return " ".join(
        ([f"--minutes {minutes:g}"] if minutes is not None else [])
        + ([f"--iterations {iterations}"] if iterations is not None else [])
    )


@app.command("train-estimator")
@_clean_errors
def train_estimator(
    volume: Annotated[Path, typer.Argument(help="Dense volume whose reference slices the estimator learns from.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Weights file (.safetensors); its model card goes beside it (.json).")
    ],
    slices: Annotated[str | None, typer.Option(help="Reference slices A:B (half-open); default: all.")] = None,
    initial: Annotated[
        list[str] | None,
        typer.Option("--initial", help="Initial scan lowres:F or PATTERN:COVERAGE (repeatable; default lowres:4)."),
    ] = None,
    recon: Annotated[str, typer.Option(help="Reconstruction method of the initial scan.")] = "linear",
    minutes: Annotated[float | None, typer.Option(help="Training time budget in minutes.")] = None,
    iterations: Annotated[
        int | None, typer.Option(help="Training batches (default 2000 without --minutes; both: whichever ends first).")
    ] = None,
    crop: Annotated[int, typer.Option(help="Side of the random square training crops (px).")] = 96,
    batch_size: Annotated[int, typer.Option(help="Crops per batch.")] = 16,
    lr: Annotated[float, typer.Option(help="Adam learning rate.")] = 1e-3,
    base_channels: Annotated[int, typer.Option(help="U-Net channels of the first level (doubling per level).")] = 16,
    levels: Annotated[int, typer.Option(help="U-Net down-sampling levels.")] = 3,
    balance: Annotated[
        bool, typer.Option("--balance/--no-balance", help="Weight the positive class by the negatives/positives ratio.")
    ] = False,
    seed: Annotated[int, typer.Option(help="Seed of crops, augmentation, initial weights and random scans.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    dataset: Annotated[str | None, typer.Option(help="Dataset inside an h5/zarr container.")] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing weights file and card.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Train the unet error estimator (binarized error, Mi et al. 2020) on dense reference slices of VOLUME."""
    from napari_sparse_sem.active.train_estimator import EstimatorTrainingConfig, train_estimator_job
    from napari_sparse_sem.nn.weights import read_card
    from napari_sparse_sem.recon.base import available_methods

    if recon not in available_methods():
        raise ValueError(f"unknown reconstruction method {recon!r}; choose one of {available_methods()}")
    config = EstimatorTrainingConfig(
        initial=list(initial or ["lowres:4"]),
        recon=recon,
        crop=crop,
        batch_size=batch_size,
        iterations=iterations if iterations is not None or minutes is not None else 2000,
        minutes=minutes,
        lr=lr,
        seed=seed,
        base_channels=base_channels,
        levels=levels,
        balance=balance,
    )
    _check_weights_out(out, volume, overwrite)
    scaled, a, b = _reference_slices(volume, dataset, slices)
    budget = _budget_flags(minutes, config.iterations)
    command = (
        f"sparse-sem train-estimator {volume} --slices {a}:{b} "
        + " ".join(f"--initial {text}" for text in config.initial)
        + f" --recon {recon} {budget} --crop {crop} --batch-size {batch_size} --lr {lr:g} "
        f"--base-channels {base_channels} --levels {levels} {'--balance' if balance else '--no-balance'} "
        f"--seed {seed} --device {device} --out {out}"
    )
    job = train_estimator_job(
        scaled,
        list(range(a, b)),
        config,
        out,
        overwrite=overwrite,
        device=device,
        data_name=Path(volume).name,
        command=command,
    )
    try:
        with progress_bar("train-estimator", quiet) as update:
            result = run_job(job, update)
    except KeyboardInterrupt as exc:
        if out.exists() and read_card(out).get("training", {}).get("stopped") == "cancelled":
            done = read_card(out)["training"]["iterations_done"]
            raise _stopped(exc, f"saved the checkpoint after {done} iterations to {out}.") from None
        raise _stopped(exc, "stopped before training started; nothing written.") from None
    size_mb = result["path"].stat().st_size / 1e6
    training = result["card"]["training"]
    _stdout().print(
        f"wrote {result['path']} ({size_mb:.1f} MB) and its model card {result['card_path'].name}: "
        f"{result['iterations']} iterations in {_fmt_s(result['seconds'])} on {training['device']}, final loss "
        f"{result['final_loss']:.4f} (pixels above the mean error: {100 * training['positive_fraction'][0]:.1f} %)",
        markup=False,
    )


# -------------------------------------------------------------------------------------------------------- train-gan


@app.command("train-gan")
@_clean_errors
def train_gan(
    volume: Annotated[Path, typer.Argument(help="Dense volume whose reference slices the generator learns from.")],
    out: Annotated[
        Path, typer.Option("--out", "-o", help="Weights file (.safetensors); its model card goes beside it (.json).")
    ],
    slices: Annotated[str | None, typer.Option(help="Reference slices A:B (half-open); default: all.")] = None,
    patterns: Annotated[
        str, typer.Option("--patterns", "--pattern", help="Mask patterns: a comma list, or mixed (spiral,grid,random).")
    ] = "mixed",
    coverage: Annotated[
        str, typer.Option(help="Coverage C, or a range LOW:HIGH drawn log-uniformly per crop.")
    ] = "0.02:0.2",
    minutes: Annotated[float | None, typer.Option(help="Training time budget in minutes (across resumes).")] = None,
    iterations: Annotated[
        int | None, typer.Option(help="Training batches (default 2000 without --minutes; both: whichever ends first).")
    ] = None,
    preset: Annotated[str, typer.Option(help="Network size: compact (CPU) or paper (Ede's widths, GPU).")] = "compact",
    fill: Annotated[str | None, typer.Option(help="Input fill of unscanned pixels: nearest or zeros (Ede).")] = None,
    context: Annotated[
        int, typer.Option(help="Neighbour slices on each side the generator also sees (0: Ede's 2D generator).")
    ] = 0,
    crop: Annotated[int, typer.Option(help="Side of the random square training crops (px).")] = 128,
    batch_size: Annotated[int, typer.Option(help="Crops per batch.")] = 8,
    pretrain_fraction: Annotated[
        float, typer.Option(help="Share of the budget for MSE pre-training (1: no adversarial phase).")
    ] = 0.7,
    adv_weight: Annotated[float, typer.Option(help="Weight of the adversarial loss against the MSE.")] = 2e-3,
    alrc: Annotated[bool, typer.Option("--alrc/--no-alrc", help="Adaptive learning rate clipping of outliers.")] = True,
    lr: Annotated[float, typer.Option(help="Adam learning rate of the pre-training.")] = 1e-3,
    seed: Annotated[int, typer.Option(help="Seed of crops, masks, augmentation and initial weights.")] = 0,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    dataset: Annotated[str | None, typer.Option(help="Dataset inside an h5/zarr container.")] = None,
    resume: Annotated[bool, typer.Option(help="Continue the training saved in OUT's checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace existing weights, card, plot and checkpoint.")] = False,
    quiet: QuietOption = False,
) -> None:
    """Train the partial-scan GAN (Ede & Beanland 2020) on dense reference slices of VOLUME."""
    from napari_sparse_sem.nn.weights import read_card
    from napari_sparse_sem.recon.gan_training import (
        GANTrainingConfig,
        parse_coverage,
        parse_patterns,
        state_path,
        train_gan_job,
    )

    if resume and overwrite:
        raise ValueError("--resume continues a training, --overwrite starts a new one: give one of them")
    _check_weights_out(out, volume, overwrite=True)  # the job itself refuses existing files without --overwrite
    config = GANTrainingConfig(
        preset=preset,
        architecture={**({"fill": fill} if fill else {}), **({"context": context} if context else {})},
        patterns=parse_patterns(patterns),
        coverage=parse_coverage(coverage),
        crop=crop,
        batch_size=batch_size,
        iterations=iterations if iterations is not None or minutes is not None else 2000,
        minutes=minutes,
        pretrain_fraction=pretrain_fraction,
        adv_weight=adv_weight,
        alrc=alrc,
        lr=lr,
        seed=seed,
    )
    scaled, a, b = _reference_slices(volume, dataset, slices)
    budget = _budget_flags(minutes, config.iterations)
    command = (
        f"sparse-sem train-gan {volume} --slices {a}:{b} --patterns {','.join(config.patterns)} "
        f"--coverage {config.coverage[0]:g}:{config.coverage[1]:g} {budget} --preset {preset} "
        f"--fill {config.network().fill} --context {context} --crop {crop} --batch-size {batch_size} "
        f"--pretrain-fraction {pretrain_fraction:g} --adv-weight {adv_weight:g} {'--alrc' if alrc else '--no-alrc'} "
        f"--lr {lr:g} --seed {seed} --device {device} --out {out}"
    )
    job = train_gan_job(
        scaled,
        list(range(a, b)),
        config,
        out,
        overwrite=overwrite,
        resume=resume,
        device=device,
        data_name=Path(volume).name,
        command=command,
    )
    try:
        with progress_bar("train-gan", quiet) as update:
            result = run_job(job, update)
    except KeyboardInterrupt as exc:
        if state_path(out).exists() and read_card(out).get("training", {}).get("stopped") == "cancelled":
            done = read_card(out)["training"]["iterations_done"]
            raise _stopped(
                exc, f"saved the checkpoint after {done} iterations to {out}; continue with --resume."
            ) from None
        raise _stopped(exc, "stopped before training started; nothing written.") from None
    card = result["card"]
    metrics = card.get("metrics", {})
    scores = ", ".join(f"{name} {metrics[name]['psnr']:.2f} dB" for name in ("gan-mse", "gan") if name in metrics)
    summary = f"; held-out PSNR {scores} (linear {metrics['linear_psnr']:.2f} dB)" if scores else ""
    size_mb = result["path"].stat().st_size / 1e6
    _stdout().print(
        f"wrote {result['path']} ({size_mb:.1f} MB, variants {', '.join(card['variants'])}), its model card "
        f"{result['card_path'].name} and learning curves {result['curves_path'].name}: {result['iterations']} "
        f"iterations in {_fmt_s(result['seconds'])} on {card['training']['device']}{summary}",
        markup=False,
    )


@app.command("export-gan")
@_clean_errors
def export_gan(
    source: Annotated[Path, typer.Argument(help="Weights file written by train-gan.")],
    out: Annotated[Path, typer.Option("--out", "-o", help="New weights file (.safetensors); its card goes beside it.")],
    half: Annotated[bool, typer.Option("--half/--full", help="Store float16 (half the size) or float32.")] = True,
    single_slice_weights: Annotated[
        str | None,
        typer.Option(help="For a generator with context: file name (beside OUT) of a 2D generator for lone slices."),
    ] = None,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing OUT and its card.")] = False,
) -> None:
    """Copy the generators of a trained GAN (without the training state), e.g. to ship or share them."""
    from napari_sparse_sem.recon.gan import export_weights

    command = f"sparse-sem export-gan {source} --out {out} {'--half' if half else '--full'}"
    if single_slice_weights:
        command += f" --single-slice-weights {single_slice_weights}"
    path = export_weights(source, out, half, single_slice_weights, command, overwrite)
    _stdout().print(f"wrote {path} ({path.stat().st_size / 1e6:.1f} MB) and its model card", markup=False)


def _mount_subcommands() -> None:
    from napari_sparse_sem.cli_surrogate import surrogate_app

    app.add_typer(surrogate_app, name="surrogate")


_mount_subcommands()


def _show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    """Warnings (e.g. a zarr store with missing chunks) as one yellow ``Warning: …`` line, without source locations."""
    _stderr().print(f"Warning: {message}", style="yellow", markup=False)


def main() -> None:
    """Console-script entry point (``sparse-sem``): every command runs with Ctrl-C, SIGTERM and SIGHUP handled, and
    warnings shown as plain lines."""
    import warnings

    warnings.showwarning = _show_warning
    with stop_signals():
        app()


if __name__ == "__main__":  # pragma: no cover
    main()
