"""WDPP samplers against the exact DPP on small images; budget, exclusion and speed of the whole-image ones."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from napari_sparse_sem.active import dpp_exact as de
from napari_sparse_sem.active import wdpp

DRAWS = 1500


def _estimate(shape: tuple[int, int], seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    est = ndimage.gaussian_filter(rng.random(shape), 1.5)
    est = est - est.min() + 0.05
    return est / est.max()


def _frequencies(draw, shape: tuple[int, int], n: int) -> tuple[np.ndarray, np.ndarray]:
    counts = np.zeros(shape[0] * shape[1])
    sizes = np.empty(n)
    for i in range(n):
        items = draw(i)
        counts[items] += 1
        sizes[i] = len(items)
    return counts / n, sizes


def _z_scores(freq: np.ndarray, p: np.ndarray, n: int) -> np.ndarray:
    return np.abs(freq - p) / np.sqrt(np.clip(p * (1 - p), 1e-4, None) / n)


@pytest.fixture(scope="module")
def small_case() -> dict:
    est = _estimate((10, 10))
    sigma, scale = 1.5, 1.6
    L = de.wdpp_kernel(est * scale, sigma)
    return {"est": est, "sigma": sigma, "scale": scale, "L": L, "K": de.marginal_kernel(L)}


def test_exact_sampler_matches_marginal_kernel(small_case):
    L, p = small_case["L"], np.diag(small_case["K"])
    rng = np.random.default_rng(1)
    eigen = np.linalg.eigh(L)
    freq, sizes = _frequencies(lambda i: de.sample_dpp(L, rng, eigen), (10, 10), DRAWS)
    assert _z_scores(freq, p, DRAWS).max() < 4.5
    assert abs(sizes.mean() - p.sum()) < 4 * sizes.std() / np.sqrt(DRAWS)


def test_exact_kdpp_has_k_items_and_its_marginals():
    est = _estimate((8, 8), seed=3)
    L = de.wdpp_kernel(est * 1.2, 1.4)
    k = 7
    p = de.kdpp_inclusion_probabilities(L, k)
    assert p.sum() == pytest.approx(k, rel=1e-6)
    rng = np.random.default_rng(2)
    eigen = np.linalg.eigh(L)
    freq, sizes = _frequencies(lambda i: de.sample_kdpp(L, k, rng, eigen), (8, 8), DRAWS)
    assert np.all(sizes == k)
    assert _z_scores(freq, p, DRAWS).max() < 4.5
    with pytest.raises(ValueError, match="k-DPP needs"):
        de.sample_kdpp(L, 65, rng)


def _tile_draw(case: dict, **kwargs):
    def draw(i: int) -> np.ndarray:
        pts = wdpp.sample_wdpp(case["est"], case["sigma"], scale=case["scale"], seed=i, **kwargs)
        return pts[:, 0] * 10 + pts[:, 1]

    return draw


def test_tile_sampler_with_a_covering_halo_is_the_exact_dpp(small_case):
    """Visiting tiles in order and drawing each from its exact conditional is the chain rule: exact marginals."""
    p = np.diag(small_case["K"])
    draw = _tile_draw(small_case, tile=5, halo=10, cutoff=10.0)
    freq, sizes = _frequencies(draw, (10, 10), DRAWS)
    assert _z_scores(freq, p, DRAWS).max() < 4.5
    assert abs(sizes.mean() - p.sum()) < 4 * sizes.std() / np.sqrt(DRAWS)


def test_tile_sampler_with_the_default_halo_is_close_to_the_exact_dpp(small_case):
    """A finite halo (2σ) and kernel cut-off (2.5σ) change the inclusion probabilities only slightly."""
    p = np.diag(small_case["K"])
    freq, sizes = _frequencies(_tile_draw(small_case, tile=4), (10, 10), DRAWS)
    se = np.sqrt(np.clip(p * (1 - p), 1e-4, None) / DRAWS)
    assert np.all(np.abs(freq - p) < 0.02 + 4.5 * se)
    assert sizes.mean() == pytest.approx(p.sum(), rel=0.03)


def test_local_marginals_approximate_the_diagonal_of_k(small_case):
    approx = wdpp.local_marginals(small_case["est"], small_case["sigma"], scale=small_case["scale"], tile=4)
    assert np.abs(approx.ravel() - np.diag(small_case["K"])).max() < 0.01


def test_expected_size_approximation_away_from_edges():
    """The local-density approximation of tr K is good in the interior (edge pixels have fewer neighbours)."""
    est = _estimate((30, 30), seed=5)
    sigma, scale = 2.0, 0.6
    K = de.marginal_kernel(de.wdpp_kernel(est * scale, sigma))
    inner = np.zeros((30, 30), dtype=bool)
    inner[6:-6, 6:-6] = True
    approx = wdpp.expected_size(np.where(inner, est, 0.0), sigma, scale, cutoff=5.0)
    assert approx == pytest.approx(np.diag(K)[inner.ravel()].sum(), rel=0.06)


def _dense_greedy(L: np.ndarray, k: int) -> list[int]:
    """Textbook greedy MAP: add the item that maximises det(L_Y) (conditional variance), O(k N³) — fine for N = 100."""
    chosen: list[int] = []
    for _ in range(k):
        best, best_i = -np.inf, -1
        for i in range(len(L)):
            if i in chosen:
                continue
            idx = [*chosen, i]
            det = np.linalg.det(L[np.ix_(idx, idx)])
            if det > best:
                best, best_i = det, i
        chosen.append(best_i)
    return chosen


def test_greedy_equals_textbook_greedy_map(small_case):
    est, sigma = small_case["est"], small_case["sigma"]
    k = 12
    points = wdpp.greedy_wdpp(est, k, sigma, cutoff=10.0)
    expected = _dense_greedy(de.wdpp_kernel(est, sigma), k)
    assert list(points[:, 0] * 10 + points[:, 1]) == expected


def test_greedy_budget_exclusion_and_exhaustion():
    est = _estimate((40, 40))
    scanned = np.zeros((40, 40), dtype=bool)
    scanned[::4, ::4] = True
    points = wdpp.greedy_wdpp(est, 150, 2.0, exclude=scanned)
    assert len(points) == 150 == len({tuple(p) for p in points})
    assert not scanned[points[:, 0], points[:, 1]].any()
    # an estimate that is zero almost everywhere exhausts the kernel: the rest fills the largest voids
    sparse_est = np.zeros((40, 40))
    sparse_est[20, 20] = 1.0
    points = wdpp.greedy_wdpp(sparse_est, 30, 2.0)
    assert len({tuple(p) for p in points}) == 30
    assert tuple(points[0]) == (20, 20)


def _min_distances(points: np.ndarray) -> np.ndarray:
    from scipy.spatial import cKDTree

    dist, _ = cKDTree(points).query(points, k=2)
    return dist[:, 1]


def test_samplers_trade_saliency_for_spread():
    """On an estimate with a hot square, top-K piles into it, random ignores it, WDPP and blue noise do both."""
    est = np.full((96, 96), 0.4)
    est[30:60, 30:60] = 1.0
    scanned = np.zeros_like(est, dtype=bool)
    scanned[::6, ::6] = True
    k = 400
    hot_fraction, spacing = {}, {}
    for sampler in wdpp.SAMPLERS:
        sel = wdpp.select_rescan(est, k, sampler, scanned=scanned, seed=1)
        pts = sel.points
        assert len(pts) == k == len({tuple(p) for p in pts}), sampler
        assert not scanned[pts[:, 0], pts[:, 1]].any(), sampler
        hot_fraction[sampler] = float(
            np.mean((pts[:, 0] >= 30) & (pts[:, 0] < 60) & (pts[:, 1] >= 30) & (pts[:, 1] < 60))
        )
        spacing[sampler] = float(np.median(_min_distances(pts)))
    area_fraction = 900 / 96**2
    assert hot_fraction["topk"] == pytest.approx(1.0, abs=0.01)
    assert hot_fraction["random"] == pytest.approx(area_fraction, abs=0.06)
    for sampler in ("wdpp", "bluenoise"):
        assert area_fraction + 0.07 < hot_fraction[sampler] < 0.6, (sampler, hot_fraction)
        assert spacing[sampler] > spacing["random"] + 0.7, (sampler, spacing)


def test_sample_mode_meets_the_budget_exactly():
    est = _estimate((48, 48), seed=7)
    sel = wdpp.select_rescan(est, 120, "wdpp", mode="sample", seed=4)
    assert len(sel.points) == 120 == len({tuple(p) for p in sel.points})
    again = wdpp.select_rescan(est, 120, "wdpp", mode="sample", seed=4)
    np.testing.assert_array_equal(sel.points, again.points)


def test_select_rescan_refuses_bad_requests():
    est = _estimate((16, 16))
    with pytest.raises(ValueError, match="unknown sampler"):
        wdpp.select_rescan(est, 3, "magic")
    with pytest.raises(ValueError, match="not scanned yet"):
        wdpp.select_rescan(est, 300, "wdpp")
    with pytest.raises(ValueError, match="sigma"):
        wdpp.select_rescan(est, 3, "wdpp", sigma=-1.0)
    with pytest.raises(ValueError, match="non-negative"):
        wdpp.select_rescan(-est, 3, "wdpp")


def test_greedy_on_a_512_image():
    """5 % of a 512² image (its speed is measured by benchmarks/active.py, not asserted here)."""
    est = ndimage.gaussian_filter(np.random.default_rng(0).random((512, 512)), 3)
    est -= est.min()
    sel = wdpp.select_rescan(est, int(0.05 * 512 * 512), "wdpp")
    assert len(sel.points) == 13107
