"""What every ``sparse-sem`` command shares: the consoles, progress on stderr, the error boundary and exit codes, and
the parsers of the text forms that flags outside the parameter models take (``A:B``, ``Y0:Y1,X0:X1``, ``KEY=VALUE``;
the models' own flags are parsed by :mod:`.spec_options`)."""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import typer

from napari_sparse_sem.runtime import Progress, interrupt_exit_code, signal_name

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
"""Exit status after Ctrl-C; SIGTERM and SIGHUP give 143 and 129 (128 + the signal number, as shells report)."""
LOG_INTERVAL_S = 10.0
"""Without a terminal, a progress line at least this often (and one per finished step, at most one a second)."""
_COMPOUND_SUFFIXES = (".ome.zarr", ".ome.tiff", ".ome.tif")

QuietOption = Annotated[bool, typer.Option("--quiet", "-q", help="No progress output on stderr.")]
DeviceOption = Annotated[str, typer.Option(help="auto (cuda > mps > cpu), cpu, cuda or mps.")]


def threads_value(value: int) -> int:
    """``--threads``: 0 (auto) or a positive number; a negative one is a usage error that says so."""
    if value is not None and value < 0:
        raise typer.BadParameter(
            f"{value} is not a thread count; give 0 (auto: OMP_NUM_THREADS when set, else the usable cores not busy "
            "elsewhere) or a positive number"
        )
    return value


ThreadsOption = Annotated[
    int,
    typer.Option(
        "--threads",
        callback=threads_value,
        help="CPU threads of torch, numba and BLAS (0: auto = OMP_NUM_THREADS when set, else the cores this process "
        "may use less those other processes keep busy as the command starts). Local --cluster workers share the "
        "cores instead.",
    ),
]
WeightsOutOption = Annotated[
    Path, typer.Option("--out", "-o", help="Weights file (.safetensors); its model card goes beside it (.json).")
]
ReferenceSlicesOption = Annotated[str | None, typer.Option(help="Reference slices A:B (half-open); default: all.")]

EXIT_INCOMPLETE = 1
"""Exit status of a block-wise run that ended with failed blocks (``complete: false``; ``--resume`` retries them)."""
CLUSTER_PANEL = "Cluster (block-wise, resumable; docs/clusters.md)"


def _memory_limit(text: str | None) -> str | None:
    """``--memory-limit``: bytes with a unit (4GiB, 500MB), a fraction of this machine's memory (0.5) or auto."""
    if text is None or text.strip().lower() == "auto":
        return text
    try:
        if 0 < float(text) <= 1:
            return text.strip()
    except ValueError:
        pass
    from dask.utils import parse_bytes

    try:
        parse_bytes(text)
    except (ValueError, TypeError):
        raise typer.BadParameter(
            f"{text!r} is not a memory size; use bytes with a unit (4GiB, 500MB), a fraction of the memory (0.5) "
            "or auto"
        ) from None
    return text.strip()


ClusterOption = Annotated[
    str | None,
    typer.Option(
        help="Run block-wise on a dask.distributed cluster: local (one worker per core, or per GPU), local:N, "
        "tcp://HOST:PORT (a running scheduler), a scheduler file (.json) or a dask-jobqueue config (.yaml, SLURM, "
        "PBS, ...). The output must be .zarr (OME-Zarr); finished blocks are recorded in it, so --resume can finish "
        "an interrupted run. Without it: one process.",
        rich_help_panel=CLUSTER_PANEL,
    ),
]
MemoryLimitOption = Annotated[
    str | None,
    typer.Option(
        help="Memory limit of each local worker (--cluster local[:N]), e.g. 4GiB; a worker over it is restarted and "
        "its block retried. Default: the machine's memory shared among the workers.",
        callback=_memory_limit,
        rich_help_panel=CLUSTER_PANEL,
    ),
]
ResumeOption = Annotated[
    bool,
    typer.Option(
        help="Finish an interrupted --cluster run into the same --out: blocks recorded as finished are kept, the "
        "others (failed ones too) run again. Refused when the parameters differ from the first run.",
        rich_help_panel=CLUSTER_PANEL,
    ),
]
SlabOption = Annotated[
    int | None,
    typer.Option(
        min=1,
        help="Slices per block with --cluster (default: as many as keep a block near 512 MiB of float32 working "
        "set, 1 to 16).",
        rich_help_panel=CLUSTER_PANEL,
    ),
]


# ---------------------------------------------------------------------------------------------- consoles and errors


def stderr_console() -> Any:
    """A rich console on stderr (progress, errors, warnings)."""
    from rich.console import Console

    return Console(stderr=True, soft_wrap=True, highlight=False)


def stdout_console() -> Any:
    """A rich console on stdout (tables and results); 160 columns when piped, so table rows stay whole."""
    from rich.console import Console

    console = Console(soft_wrap=True, highlight=False)
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console.width = 160  # piped or captured: keep table rows whole instead of wrapping at 80 columns
    return console


def echo(text: str) -> None:
    """One plain line on stdout."""
    stdout_console().print(text, markup=False)


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print ``Error: message`` in red on stderr; returns the exit to raise."""
    stderr_console().print(f"Error: {message}", style="bold red", markup=False)
    return typer.Exit(code)


def stopped(exc: BaseException, what: str) -> typer.Exit:
    """Say how a stop by Ctrl-C/SIGTERM/SIGHUP ended (``what`` was kept) and exit with the signal's status."""
    signum = getattr(exc, "signum", 2)
    label = "Interrupted" if signum == 2 else f"Stopped by {signal_name(signum)}"
    stderr_console().print(f"{label}: {what}", markup=False)
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


def clean_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """One error boundary for every command: expected user errors and OS errors (full or read-only disk, permissions)
    become one red line on stderr and exit code 2 (no traceback); a stop that kept finished work
    (:class:`~napari_sparse_sem.partial.Interrupted`) says what it kept, and any stop ends with the signal's exit
    status. Scratch and staging folders are removed by the ``with`` blocks they live in."""
    from napari_sparse_sem.partial import Interrupted

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except Interrupted as stop:
            raise stopped(stop, stop.kept()) from None
        except FileNotFoundError as exc:
            raise fail(f"file not found: {exc.filename}" if exc.filename else str(exc)) from None
        except (ValueError, FileExistsError, MemoryError) as exc:
            raise fail(str(exc) or "out of memory: do less at once (smaller slices, batch or tiles)") from None
        except OSError as exc:
            raise fail(os_error_text(exc)) from None
        except KeyboardInterrupt as exc:
            raise stopped(exc, "nothing was finished; nothing written.") from None

    return wrapper


def show_warning(message: Any, category: Any, filename: str, lineno: int, file: Any = None, line: Any = None) -> None:
    """Warnings (e.g. a zarr store with missing chunks) as one yellow ``Warning: …`` line, without source locations."""
    stderr_console().print(f"Warning: {message}", style="yellow", markup=False)


def use_threads(requested: int | None) -> int:
    """Apply ``--threads`` before any work (:func:`napari_sparse_sem.threads.thread_count` then ``set_threads``) and
    note the count used in the run record, which every saved result carries (``"threads"`` beside its arguments)."""
    from napari_sparse_sem.provenance import current
    from napari_sparse_sem.threads import set_threads, thread_count

    count = thread_count(requested)
    set_threads(count)
    record = current()
    if record is not None:
        record["threads"] = count
    return count


# --------------------------------------------------------------------------------------------------------- progress


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
        console=stderr_console(),
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
        parts.append(f"elapsed {format_seconds(elapsed)}")
        if event.total > 0 and 0 < event.step < event.total:
            parts.append(f"ETA {format_seconds(elapsed / event.step * (event.total - event.step))}")
        if event.message:
            parts.append(event.message)
        return " · ".join(parts)


def format_seconds(seconds: float) -> str:
    """``850 µs``, ``12.5 ms``, ``3.20 s``, ``4.1 min``."""
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} µs"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    if seconds < 120:
        return f"{seconds:.2f} s"
    return f"{seconds / 60:.1f} min"


# ---------------------------------------------------------------------------------------------------------- parsers


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


# ------------------------------------------------------------------------------------------------------ files, region


def sibling_path(path: Path, tag: str) -> Path:
    """``out.tif`` → ``out_mask.tif`` (``tag="_mask"``); compound suffixes such as ``.ome.zarr`` are kept whole."""
    name = path.name
    for suffix in _COMPOUND_SUFFIXES:
        if name.lower().endswith(suffix):
            return path.with_name(name[: -len(suffix)] + tag + name[-len(suffix) :])
    return path.with_name(path.stem + tag + path.suffix)


def read_input(path: Path, dataset: str | None = None) -> Any:
    """The volume at ``path`` (lazy); a missing path is a ``FileNotFoundError`` naming it."""
    from napari_sparse_sem.io import read_volume
    from napari_sparse_sem.io.readers import split_h5_path

    if not split_h5_path(path)[0].exists():
        raise FileNotFoundError(f"no such file or folder: {path}")
    return read_volume(path, dataset=dataset, lazy=True)


def region(shape: tuple[int, ...], slices: tuple[int, int] | None, roi: tuple[int, int, int, int] | None) -> tuple:
    """Resolved ``(a, b, y0, y1, x0, x1)`` inside ``shape``; out-of-range requests are clear errors."""
    from napari_sparse_sem.compare.spec import region_bounds

    return region_bounds(shape, slices, roi)


# ------------------------------------------------------------------------------------------------- block-wise runs


def check_cluster_flags(cluster: str | None, out: Path, used: list[str], *, resume: bool, overwrite: bool) -> None:
    """Before any work: the flags of block-wise runs (``used``: those given) need ``--cluster``, which needs a .zarr
    ``--out`` and a cluster form we know; flags the named cluster ignores get a warning."""
    if cluster is None:
        if used:
            raise ValueError(
                f"{', '.join(used)}: only for block-wise runs; add --cluster (e.g. --cluster local, see "
                "docs/clusters.md) or drop them"
            )
        return
    from napari_sparse_sem.cluster.connect import parse_cluster

    address = parse_cluster(cluster)
    if Path(out).suffix.lower() != ".zarr":
        raise ValueError(f"--cluster writes OME-Zarr, block by block: name --out *.zarr, not {Path(out).name!r}")
    if resume and overwrite:
        raise ValueError("--resume keeps the finished blocks of --out and --overwrite replaces it: choose one")
    ignored = [flag for flag in ("--memory-limit", "--workers-per-gpu") if flag in used and address.kind != "local"]
    if ignored:
        stderr_console().print(
            f"Warning: {', '.join(ignored)} only set up workers this command starts (--cluster local[:N]); "
            f"the cluster at {cluster} keeps its own settings",
            style="yellow",
            markup=False,
        )


def run_cluster_job(job: Any, label: str, quiet: bool, where: str, store: Path) -> Any:
    """Drive a block-wise job (:mod:`napari_sparse_sem.cluster`) with one progress step per block, after a line
    with the workers and the dashboard link (unless ``quiet``). A stop (Ctrl-C, SIGTERM, SIGHUP) keeps the finished
    blocks in ``store`` and says how to resume; ``where`` names the output(s) in messages."""
    from napari_sparse_sem.cluster.run import ClusterStarted
    from napari_sparse_sem.cluster.store import RunRecord
    from napari_sparse_sem.runtime import run_job

    started: list[ClusterStarted] = []
    with progress_bar(label, quiet) as update:

        def feed(event: Progress) -> None:
            if isinstance(event.partial, ClusterStarted):
                started.append(event.partial)
                if not quiet:
                    stderr_console().print(cluster_line(event.partial), markup=False)
            update(event)

        try:
            return run_job(job, feed)
        except KeyboardInterrupt as exc:
            stop = exc
    record = RunRecord(store)
    if record.settings() is None:
        raise stopped(stop, "stopped before the run started; nothing written.")
    done = len(record.done())
    total = f" of {started[0].blocks}" if started else ""
    raise stopped(
        stop,
        f"kept the {done} finished{total} blocks in {where} (complete: false); run the same command with --resume "
        "to finish it.",
    )


def cluster_line(event: Any) -> str:
    """``cluster: 2 worker(s), 16 block(s) (4 done before) · dashboard http://…`` for a ClusterStarted event."""
    text = f"cluster: {event.workers} worker(s), {event.blocks} block(s)"
    if event.already_done:
        text += f" ({event.already_done} done before)"
    if not event.workers:
        text += "; waiting for workers (batch jobs may be queued)"
    return text + (f" · dashboard {event.dashboard}" if event.dashboard else "")


def block_summary(meta: dict[str, Any]) -> str:
    """``blocks: 14 of 16 done (10 in this run), 2 failed`` from a block-wise run's saved metadata."""
    blocks = meta.get("blocks") or {}
    this_run = blocks.get("this_run")
    text = f"blocks: {blocks.get('done', 0)} of {blocks.get('total', 0)} done"
    if this_run is not None and this_run != blocks.get("done"):
        text += f" ({this_run} in this run)"
    return f"{text}, {blocks.get('failed', 0)} failed"


def incomplete(meta: dict[str, Any], where: str) -> typer.Exit:
    """The error (exit :data:`EXIT_INCOMPLETE`) of a block-wise run that ended ``complete: false``: which blocks
    failed and why, and that ``--resume`` runs only what is missing."""
    failed = meta.get("failed_blocks") or []
    blocks = meta.get("blocks") or {}
    if not failed:
        missing = int(blocks.get("total", 0)) - int(blocks.get("done", 0))
        return fail(
            f"{missing} block(s) missing from {where} (complete: false); run again with --resume", EXIT_INCOMPLETE
        )
    lines = [f"{len(failed)} block(s) failed and are missing from {where} (complete: false):"]
    lines += [f"  {entry['key']}: {entry['error']}" for entry in failed[:20]]
    if len(failed) > 20:
        lines.append(f"  ... and {len(failed) - 20} more")
    lines.append(
        "Tracebacks: .sparse-sem-run/failed/ in the output. Fix the cause, then run the same command with --resume: "
        "it keeps the finished blocks and runs only the others."
    )
    return fail("\n".join(lines), EXIT_INCOMPLETE)
