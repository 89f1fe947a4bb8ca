"""The ``sparse-sem`` command line: inspect volumes, simulate sparse scans, reconstruct them, compare mask patterns.

Every flag maps to a field of a parameter model (:class:`~napari_sparse_sem.sampling.spec.MaskSpec`,
:class:`~napari_sparse_sem.sampling.spec.AcquisitionSpec`, :class:`~napari_sparse_sem.compare.spec.CompareSpec`), and
every output carries those parameters as metadata, so a result can be re-run from what was saved beside it. Progress
goes to stderr (a bar on a terminal, one plain line per step or every 10 s in a log file, nothing with ``--quiet``);
tables and results to stdout. Bad input, a full or read-only disk and other OS errors are one red ``Error: ...`` line
and exit code 2, checked before the work wherever they can be. Ctrl-C, SIGTERM and SIGHUP stop at the next progress
step, keep what was finished (marked ``complete: false``) and exit with 130, 143 and 129. Outputs never go into an
input and are written all at once (:mod:`napari_sparse_sem.outputs`).

The commands live one group per module (:mod:`.inspect`, :mod:`.simulate`, :mod:`.reconstruct`, :mod:`.compare`,
:mod:`.active`, :mod:`.train`, :mod:`.train_self`, :mod:`.demo`, :mod:`.surrogate`, :mod:`.run`) and share
:mod:`.common`; this module assembles them into :data:`app` and runs it from :func:`main`. The work itself is done
by the core (jobs and application services).
"""

from __future__ import annotations

import typer

from napari_sparse_sem.cli import (
    active,
    compare,
    demo,
    inspect,
    reconstruct,
    run,
    simulate,
    surrogate,
    train,
    train_self,
)
from napari_sparse_sem.cli.common import show_warning
from napari_sparse_sem.runtime import stop_signals

app = typer.Typer(
    name="sparse-sem",
    help="Sparse-scan SEM: simulate sparse scans of an image stack, reconstruct them, compare mask patterns.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

app.command("info")(inspect.info)
app.command("simulate")(simulate.simulate)
app.command("reconstruct")(reconstruct.reconstruct)
app.command("compare")(compare.compare)
app.command("active")(active.active)
app.command("demo")(demo.demo)
app.command("train-estimator")(train.train_estimator)
app.command("train-gan")(train.train_gan)
app.command("train-self")(train_self.train_self)
app.command("export-gan")(train.export_gan)
app.add_typer(surrogate.surrogate_app, name="surrogate")
run.record_commands(app)  # every command's arguments become the run record its outputs carry
app.command("run")(run.run)


def main() -> None:
    """Console-script entry point (``sparse-sem``): every command runs with Ctrl-C, SIGTERM and SIGHUP handled, and
    warnings shown as plain lines."""
    import warnings

    warnings.showwarning = show_warning
    with stop_signals():
        app()


__all__ = ["app", "main"]
