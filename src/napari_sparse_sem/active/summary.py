"""The summary of an active acquisition, one row per scan: the initial scan, the active rescan, each static baseline —
means over the finished slices. The CLI's table and the *Active acquisition* widget's table show these same rows."""

from __future__ import annotations

from typing import Any

import numpy as np

from napari_sparse_sem.active.pipeline import ActiveSlice, WDPPConfig

SUMMARY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("scan", "scan"),
    ("coverage", "cov. %"),
    ("psnr", "PSNR"),
    ("ssim", "SSIM"),
    ("l1", "L1"),
    ("error_correlation", "err. corr."),
    ("sampler_seconds", "sampler s"),
)
"""The row keys and their column titles, in table order."""


def mean_of(values: list[Any]) -> float | None:
    """The mean of the finite numbers among ``values`` (None when there is none)."""
    numbers = np.array([v for v in values if v is not None], dtype=np.float64)
    numbers = numbers[np.isfinite(numbers)] if numbers.size else numbers
    return float(numbers.mean()) if numbers.size else None


def summary_rows(items: list[ActiveSlice], config: WDPPConfig) -> list[dict[str, Any]]:
    """Rows (keys of :data:`SUMMARY_COLUMNS`), means over ``items``: the initial scan, the active acquisition, then
    each static baseline."""
    records = [item.record for item in items]

    def mean(key: str, rows: list[dict[str, Any]] = records) -> float | None:
        return mean_of([r.get(key) for r in rows])

    sampler = records[0]["sampler"] if records else config.sampler
    rows = [
        {"scan": f"initial {config.initial}", "coverage": mean("initial_coverage"), "psnr": mean("initial_psnr")},
        {
            "scan": sampler,
            **{key: mean(key) for key in ("coverage", "psnr", "ssim", "l1", "error_correlation", "sampler_seconds")},
        },
    ]
    for pattern in config.baselines:
        base = [item.baselines[pattern][2] for item in items if pattern in item.baselines]
        if base:
            rows.append({"scan": f"static {pattern}", **{k: mean(k, base) for k in ("coverage", "psnr", "ssim", "l1")}})
    return rows
