"""``sparse-sem demo``: napari with the sample stack and the widgets, or (headless) a comparison report of it."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from napari_sparse_sem.cli.common import (
    QuietOption,
    ThreadsOption,
    clean_errors,
    echo,
    progress_bar,
    stderr_console,
    stdout_console,
    use_threads,
)
from napari_sparse_sem.runtime import default_signals

DEMO_SLICES = 3
"""Middle slices of the packaged sample used by the headless demo (keeps it well under a minute on a laptop)."""


def has_display() -> bool:
    """Whether a window can open here (macOS/Windows, or an X11/Wayland display is set)."""
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


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
        holdout=False,  # the demo shows the comparison in seconds; the hold-out estimate would quadruple its time
    )


def previous_demo(out_dir: Path) -> bool:
    """Whether ``out_dir`` holds a report of an earlier headless demo (which the demo may replace)."""
    params = out_dir / "params.json"
    try:
        return bool(json.loads(params.read_text(encoding="utf-8")).get("source", {}).get("demo"))
    except (OSError, ValueError, AttributeError):
        return False


@clean_errors
def demo(
    out: Annotated[Path, typer.Option("--out", "-o", help="Report folder of the headless demo.")] = Path(
        "sparse-sem-demo"
    ),
    headless: Annotated[bool, typer.Option(help="Never open napari; run the comparison and write a report.")] = False,
    overwrite: Annotated[bool, typer.Option(help="Replace an existing report in OUT.")] = False,
    threads: ThreadsOption = 0,
    quiet: QuietOption = False,
) -> None:
    """Open napari with the sample stack and the widgets; headless (or without a display): write a comparison report."""
    use_threads(threads)
    if not headless and has_display():
        try:
            from napari_sparse_sem.widgets._worker import received_stop_signal
            from napari_sparse_sem.widgets.demo import launch
        except ImportError as exc:
            message = f"napari is not usable here ({exc}); running the headless demo instead."
            stderr_console().print(message, markup=False)
        else:
            with default_signals():  # napari handles Ctrl-C; our widgets handle SIGTERM/SIGHUP while a job runs
                launch()
            signum = received_stop_signal()
            if signum is not None:
                raise typer.Exit(128 + signum)
            return
    from napari_sparse_sem.cli.compare import summary_table
    from napari_sparse_sem.compare.report import run_comparison
    from napari_sparse_sem.io.sample_data import load_sample_volume

    vol = load_sample_volume()
    spec = demo_spec(DEMO_SLICES, vol.shape[0])
    replace = overwrite or previous_demo(out)
    a, b = spec.slices
    echo(
        f"Headless demo: {len(spec.patterns)} patterns at 5 % on slices {a}:{b} of {vol.name} {vol.shape}, "
        f"methods {', '.join(spec.methods)}"
    )
    with progress_bar("compare", quiet) as update:
        result, paths = run_comparison(vol, spec, out, overwrite=replace, source={"demo": True}, on_progress=update)
    stdout_console().print(summary_table(result.records))
    echo(f"report written to {out.resolve()}:")
    for path in paths.values():
        echo(f"  {path}")
