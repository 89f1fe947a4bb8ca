"""Beam paths and the acquisition-time model, checked against hand-computed numbers."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sparse_sem.sampling import (
    AcquisitionSpec,
    MaskSpec,
    dense_scan_time,
    estimate_time,
    make_mask,
    path_length,
    serpentine_order,
    spiral_path,
)


def test_path_length_by_hand() -> None:
    assert path_length(np.array([[0, 0], [0, 3], [4, 3]])) == pytest.approx(7.0)
    assert path_length(np.array([[0, 0], [1, 1]])) == pytest.approx(np.sqrt(2))
    assert path_length(np.empty((0, 2), dtype=np.int64)) == 0.0
    assert path_length(np.array([[5, 5]])) == 0.0
    with pytest.raises(ValueError, match=r"\(n, 2\)"):
        path_length(np.zeros((4, 3)))


def test_serpentine_order_alternates_over_scanned_rows() -> None:
    mask = np.zeros((6, 4), dtype=bool)
    mask[0, [0, 2]] = True
    mask[3, [1, 3]] = True  # row 2 is empty: the direction alternates over scanned rows only
    mask[5, [0, 3]] = True
    expected = [[0, 0], [0, 2], [3, 3], [3, 1], [5, 0], [5, 3]]
    np.testing.assert_array_equal(serpentine_order(mask), expected)
    assert serpentine_order(mask).dtype == np.int64
    assert serpentine_order(np.zeros((3, 3), dtype=bool)).shape == (0, 2)
    with pytest.raises(ValueError, match="2D"):
        serpentine_order(np.zeros((2, 3, 3), dtype=bool))


def test_serpentine_length_of_regular_lines_matches_analytic() -> None:
    height, width, k = 100, 64, 10
    result = make_mask((height, width), MaskSpec(pattern="lines", coverage=1 / k, seed=0))
    n_rows = height // k
    # every row is crossed end to end (W-1) and the beam drops k rows at alternate ends between rows
    expected = n_rows * (width - 1) + (n_rows - 1) * k
    assert path_length(result.path) == pytest.approx(expected)
    spec = AcquisitionSpec(dwell_us=2.0, settle_us=5.0, move_us_per_px=0.1)
    timing = estimate_time(result.path, spec)
    assert timing.n_jumps == n_rows - 1
    assert timing.move_s == pytest.approx((n_rows - 1) * k * 0.1e-6)
    assert timing.seconds == pytest.approx((n_rows * width * 2.0 + (n_rows - 1) * (5.0 + k * 0.1)) * 1e-6)


def test_estimate_time_by_hand() -> None:
    path = np.array([[0, 0], [0, 1], [1, 1], [5, 1], [5, 2], [0, 0]])
    spec = AcquisitionSpec(dwell_us=2.0, settle_us=10.0, move_us_per_px=0.5)
    timing = estimate_time(path, spec)
    jump_px = 4.0 + np.sqrt(29.0)  # (1,1)->(5,1) and (5,2)->(0,0); the others are 8-neighbour steps
    assert timing.n_pixels == 6
    assert timing.n_jumps == 2
    assert timing.dwell_s == pytest.approx(12e-6)
    assert timing.settle_s == pytest.approx(20e-6)
    assert timing.move_s == pytest.approx(0.5e-6 * jump_px)
    assert timing.seconds == pytest.approx(timing.dwell_s + timing.settle_s + timing.move_s)
    assert timing.path_length_px == pytest.approx(3.0 + jump_px)
    assert timing.to_dict()["n_jumps"] == 2
    # a diagonal step is a neighbour, not a jump
    assert estimate_time(np.array([[0, 0], [1, 1], [2, 2]]), spec).n_jumps == 0
    assert estimate_time(np.empty((0, 2)), spec).seconds == 0.0


def test_dense_scan_time_matches_a_full_serpentine() -> None:
    spec = AcquisitionSpec(dwell_us=3.0, settle_us=1.0, move_us_per_px=0.01)
    dense = dense_scan_time((30, 40), spec)
    full = estimate_time(serpentine_order(np.ones((30, 40), dtype=bool)), spec)
    assert dense == full
    assert dense.n_jumps == 0 and dense.seconds == pytest.approx(30 * 40 * 3e-6)
    assert dense.path_length_px == 30 * 39 + 29
    with pytest.raises(ValueError, match="shape"):
        dense_scan_time((0, 5), spec)


def test_sparse_scans_save_time_but_pay_for_jumps() -> None:
    spec = AcquisitionSpec()  # 3 µs dwell, 1 µs settle, 0.001 µs/px
    shape = (250, 250)
    dense = dense_scan_time(shape, spec).seconds
    random = estimate_time(make_mask(shape, MaskSpec(pattern="random", coverage=0.05, seed=0)).path, spec)
    spiral = estimate_time(make_mask(shape, MaskSpec(pattern="spiral", coverage=0.05, seed=0)).path, spec)
    # random: nearly every step is a jump (a few px each); the spiral is one continuous line
    assert random.n_jumps > 0.9 * random.n_pixels
    assert spiral.n_jumps < 0.01 * spiral.n_pixels
    assert 0.05 * dense < spiral.seconds < random.seconds < 0.1 * dense
    assert random.seconds == pytest.approx(0.05 * dense * 4 / 3, rel=0.02)  # dwell 3 + settle 1 per pixel


def test_spiral_path_geometry() -> None:
    path = spiral_path((101, 101), arm_spacing=10.0, start_angle=0.0)
    assert tuple(path[0]) == (50, 50)
    assert path.dtype == np.int64
    radius = np.hypot(path[:, 0] - 50, path[:, 1] - 50)
    # centre outward: the radius grows by one arm spacing per turn
    assert radius[len(path) // 4] < radius[len(path) // 2] < radius[-1]
    inner = path[: np.argmax(radius >= 45)]  # the turns that stay inside the image
    steps = np.abs(np.diff(inner, axis=0)).max(axis=1)
    assert (steps == 1).all()  # fully inside the image: an unbroken 8-connected line
    with pytest.raises(ValueError, match="arm_spacing"):
        spiral_path((10, 10), arm_spacing=0.0)
