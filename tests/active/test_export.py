"""Rescan exports for the microscope: bitmap, beam-order CSV and plan, and the short beam path."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import tifffile

from napari_sparse_sem.active.export import short_path_order, write_rescan
from napari_sparse_sem.sampling.path import path_length, serpentine_order


def _scattered(n: int, shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    flat = rng.choice(shape[0] * shape[1], size=n, replace=False)
    return np.stack(np.unravel_index(flat, shape), axis=1)


def test_short_path_is_a_permutation_and_short():
    points = _scattered(2000, (250, 250))
    ordered = short_path_order(points)
    assert sorted(map(tuple, ordered)) == sorted(map(tuple, points))
    mask = np.zeros((250, 250), dtype=bool)
    mask[points[:, 0], points[:, 1]] = True
    length = path_length(ordered)
    # a row-by-row serpentine flies across the image for every row; strips cut that ~4× here
    assert length < 0.3 * path_length(serpentine_order(mask))
    # within 1.6× of the Beardwood–Halton–Hammersley estimate of the optimal tour, 0.7124·√(n·A)
    assert length < 1.6 * 0.7124 * np.sqrt(2000 * 250 * 250)


def test_write_rescan_files(tmp_path):
    points = _scattered(300, (64, 80), seed=1)
    plan = write_rescan(points, (64, 80), tmp_path / "slice_0007", metadata={"slice": 7})
    bitmap = tifffile.imread(tmp_path / "slice_0007_bitmap.tif")
    assert bitmap.shape == (64, 80) and bitmap.dtype == np.uint8
    assert set(np.unique(bitmap)) == {0, 255} and (bitmap == 255).sum() == 300
    with open(tmp_path / "slice_0007_points.csv") as fh:
        rows = list(csv.reader(fh))
    assert rows[0] == ["order", "row", "col"] and len(rows) == 301
    ordered = np.array([[int(r[1]), int(r[2])] for r in rows[1:]])
    assert bitmap[ordered[:, 0], ordered[:, 1]].min() == 255
    saved = json.loads((tmp_path / "slice_0007_plan.json").read_text())
    assert saved["n_points"] == 300 and saved["slice"] == 7
    assert saved["path_length_px"] == pytest.approx(path_length(ordered))
    assert plan["time"]["seconds"] > 300 * 3e-6  # at least the dwell time
    with pytest.raises(FileExistsError, match="already exist"):
        write_rescan(points, (64, 80), tmp_path / "slice_0007")
    write_rescan(points[:10], (64, 80), tmp_path / "slice_0007", overwrite=True)
    assert (tifffile.imread(tmp_path / "slice_0007_bitmap.tif") == 255).sum() == 10
    with pytest.raises(ValueError, match="outside"):
        write_rescan(np.array([[64, 0]]), (64, 80), tmp_path / "bad")
