"""Write a comparison to disk: per-slice metrics (json + csv), a summary, the parameters, and a figure for a talk.

JSON has no NaN or infinity, so non-finite numbers (an exact reconstruction has infinite PSNR; a metric with no
pixels to measure is NaN) are written as ``null``; the CSV files keep them as ``inf`` / ``nan``. The figure
(:mod:`.figure`) never needs a display. :func:`run_comparison` runs a comparison straight into a report folder and
keeps the finished runs when it stops early.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from napari_sparse_sem import __version__
from napari_sparse_sem.compare.job import RECORD_KEYS, CompareResult, CompareRun, compare_job, result_from_runs, summary
from napari_sparse_sem.compare.spec import CompareSpec
from napari_sparse_sem.outputs import PACKAGE, ReportFolder, owned_entries
from napari_sparse_sem.provenance import stamp
from napari_sparse_sem.runtime import Progress

REPORT_FILES: dict[str, str] = {
    "metrics_json": "metrics.json",
    "metrics_csv": "metrics.csv",
    "summary_csv": "summary.csv",
    "params": "params.json",
    "figure": "comparison.png",
}
"""What :func:`write_report` writes, by key of its returned dict."""


def json_safe(value: Any) -> Any:
    """``value`` made JSON-safe: NaN/inf → ``None``, numpy scalars/arrays → Python, tuples → lists (recursively)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(value) else None
    return value


def write_json(path: Path, data: Any) -> None:
    """Write ``data`` as JSON (made safe by :func:`json_safe`: NaN/inf → null)."""
    path.write_text(json.dumps(json_safe(data), indent=2, allow_nan=False) + "\n", encoding="utf-8")


def write_csv(path: Path, rows: list[dict[str, Any]], first: tuple[str, ...] = ()) -> None:
    """Write ``rows`` as CSV: ``first`` columns first, then every other key in order of appearance."""
    columns = list(first)
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (float(v) if isinstance(v, np.floating) else v) for k, v in row.items()})


def _legacy_report(folder: Path) -> set[str]:
    """A report written before ``params.json`` listed its files: our params.json marks the usual file names as ours."""
    return set(REPORT_FILES.values()) if (folder / REPORT_FILES["params"]).is_file() else set()


def check_report_dir(
    out_dir: str | Path, overwrite: bool = False, inputs: Iterable[str | Path | None] = ()
) -> ReportFolder:
    """Check ``out_dir`` for a comparison report before the work (see :class:`~napari_sparse_sem.outputs.ReportFolder`:
    never an input, a previous report or other files only with ``overwrite``) and open its staging folder.

    Write the report with :func:`write_report_files` into ``.stage``, then ``commit()``; leaving the ``with`` block
    without a commit leaves ``out_dir`` as it was.
    """
    return ReportFolder(
        out_dir, "compare", inputs=inputs, overwrite=overwrite, legacy=_legacy_report, names=REPORT_FILES.values()
    )


def write_report(
    result: CompareResult, out_dir: str | Path, overwrite: bool = False, inputs: Iterable[str | Path | None] = ()
) -> dict[str, Path]:
    """Write metrics.json, metrics.csv, summary.csv, comparison.png and params.json into ``out_dir``, all at once.

    A previous report (or other files) in ``out_dir`` is refused (``FileExistsError``, nothing written) unless
    ``overwrite``; an ``out_dir`` that is or lies inside one of ``inputs`` is refused always. Returns the written paths
    by key (see :data:`REPORT_FILES`).
    """
    if not result.records:
        raise ValueError("the comparison has no records to report (did it finish any run?)")
    with check_report_dir(out_dir, overwrite, inputs) as folder:
        write_report_files(result, folder.stage)
        out = folder.commit()
    return {key: out / name for key, name in REPORT_FILES.items()}


def write_report_files(result: CompareResult, folder: str | Path) -> dict[str, Path]:
    """Write the report files into the existing ``folder``; ``params.json`` last, once everything else is written.

    ``params.json`` says ``"complete": true`` only when every run of the spec finished, and lists the files it owns.
    """
    if not result.records:
        raise ValueError("the comparison has no records to report (did it finish any run?)")
    out = Path(folder)
    paths = {key: out / name for key, name in REPORT_FILES.items()}
    rows = summary(result.records)
    write_json(paths["metrics_json"], result.records)
    write_csv(paths["metrics_csv"], result.records, RECORD_KEYS)
    write_csv(paths["summary_csv"], rows)
    from napari_sparse_sem.compare.figure import comparison_figure

    figure = comparison_figure(result)
    figure.savefig(paths["figure"], dpi=100)
    params = {
        "command": "compare",
        "spec": result.spec.to_dict(),
        "slices": list(result.slices),
        "roi": list(result.roi),
        "source": result.source,
        "package": PACKAGE,
        "version": __version__,
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "complete": len(result.runs)
        == len(result.spec.patterns) * len(result.spec.coverages) * len(result.spec.methods),
        "files": owned_entries(out),
    }
    write_json(paths["params"], stamp(params))
    return paths


def run_comparison(
    volume: Any,
    spec: CompareSpec,
    out_dir: str | Path,
    *,
    overwrite: bool = False,
    source: dict[str, Any] | None = None,
    inputs: Iterable[str | Path | None] = (),
    on_progress: Callable[[Progress], None] | None = None,
) -> tuple[CompareResult, dict[str, Path]]:
    """Run :func:`compare_job` and write its report into ``out_dir`` all at once; returns the result and the paths.

    The folder is checked before the work (never one of ``inputs``; see :func:`check_report_dir`). A stop (Ctrl-C,
    SIGTERM, SIGHUP) or an error after some runs finished writes those runs (``complete: false``): a stop raises
    :class:`~napari_sparse_sem.partial.Interrupted`, an error is raised again saying what was kept.
    """
    from napari_sparse_sem.partial import run_into_report

    total = len(spec.patterns) * len(spec.coverages) * len(spec.methods)
    with check_report_dir(out_dir, overwrite, inputs) as folder:
        result = run_into_report(
            compare_job(volume, spec),
            CompareRun,
            folder,
            lambda runs: write_report_files(result_from_runs(runs, spec, source), folder.stage),
            total,
            "run",
            on_progress,
        )
        if source:
            result.source.update(source)
        write_report_files(result, folder.stage)
        out = folder.commit()
    return result, {key: out / name for key, name in REPORT_FILES.items()}
