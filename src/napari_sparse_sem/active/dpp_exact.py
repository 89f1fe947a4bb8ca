"""Exact determinantal point processes for small ground sets: the reference the whole-image samplers are tested against.

An L-ensemble DPP over N items draws Y with P(Y) ∝ det(L_Y); its marginal kernel K = L(L+I)⁻¹ gives the inclusion
probabilities P(i ∈ Y) = K_ii and the expected size tr K. A k-DPP is the same process conditioned on |Y| = k.
Algorithms follow Kulesza & Taskar, "Determinantal point processes for machine learning" (2012): the spectral sampler
(their Algorithm 1, also Mi et al.'s Algorithm 1) and elementary symmetric polynomials for k-DPPs. Cost is O(N³), so
these are for N up to a few thousand (an image patch), never a whole micrograph.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "gaussian_kernel",
    "kdpp_inclusion_probabilities",
    "marginal_kernel",
    "sample_dpp",
    "sample_kdpp",
    "wdpp_kernel",
]


def gaussian_kernel(coords_a: np.ndarray, coords_b: np.ndarray, sigma: float) -> np.ndarray:
    """Location similarity S_ij = exp(-|p_i - p_j|² / σ²) between two (n, 2) coordinate arrays (Mi et al., eq. 1)."""
    a = np.asarray(coords_a, dtype=np.float64)
    b = np.asarray(coords_b, dtype=np.float64)
    d2 = ((a[:, None, :] - b[None, :, :]) ** 2).sum(-1)
    return np.exp(-d2 / float(sigma) ** 2)


def wdpp_kernel(weights: np.ndarray, sigma: float) -> np.ndarray:
    """The dense WDPP kernel L = diag(q) S diag(q) of a small 2D weight image ``weights`` (q = weight per pixel,
    already raised to γ and scaled), pixels in row-major order."""
    q = np.asarray(weights, dtype=np.float64)
    if q.ndim != 2:
        raise ValueError(f"weights must be a 2D image, got shape {q.shape}")
    ys, xs = np.indices(q.shape)
    coords = np.stack([ys.ravel(), xs.ravel()], axis=1)
    flat = q.ravel()
    return flat[:, None] * gaussian_kernel(coords, coords, sigma) * flat[None, :]


def marginal_kernel(L: np.ndarray) -> np.ndarray:
    """K = L (L + I)⁻¹: its diagonal holds the inclusion probabilities, its trace the expected sample size."""
    L = np.asarray(L, dtype=np.float64)
    n = L.shape[0]
    return np.linalg.solve((L + np.eye(n)).T, L.T).T


def _sample_from_eigenvectors(vectors: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Phase 2 of the spectral sampler: draw one item per column of an orthonormal ``vectors`` (n, k) basis."""
    V = vectors.copy()
    chosen: list[int] = []
    while V.shape[1] > 0:
        probs = (V**2).sum(axis=1)
        probs = np.clip(probs, 0.0, None)
        i = int(rng.choice(len(probs), p=probs / probs.sum()))
        chosen.append(i)
        # project onto the subspace orthogonal to e_i: drop one column with a non-zero i-th entry
        j = int(np.argmax(np.abs(V[i])))
        pivot = V[:, j].copy()
        V = np.delete(V, j, axis=1)
        if V.shape[1] == 0:
            break
        V -= np.outer(pivot / pivot[i], V[i])
        V, _ = np.linalg.qr(V)
    return np.sort(np.array(chosen, dtype=np.int64))


def _eigen(L: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    values, vectors = np.linalg.eigh(np.asarray(L, dtype=np.float64))
    return np.clip(values, 0.0, None), vectors


def sample_dpp(
    L: np.ndarray, rng: np.random.Generator, eigen: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """One exact draw (sorted item indices) from the L-ensemble DPP. Pass ``eigen = np.linalg.eigh(L)`` to reuse it."""
    values, vectors = eigen if eigen is not None else _eigen(L)
    keep = rng.random(len(values)) < values / (values + 1.0)
    return _sample_from_eigenvectors(vectors[:, keep], rng)


def _elementary_symmetric(values: np.ndarray, k: int) -> np.ndarray:
    """E[l, n] = e_l(λ_1..λ_n) for l ≤ k, n ≤ N (Kulesza & Taskar, Algorithm 7)."""
    n = len(values)
    E = np.zeros((k + 1, n + 1))
    E[0, :] = 1.0
    for ell in range(1, k + 1):
        for m in range(1, n + 1):
            E[ell, m] = E[ell, m - 1] + values[m - 1] * E[ell - 1, m - 1]
    return E


def _check_k(k: int, values: np.ndarray) -> None:
    rank = int((values > 1e-12 * max(values.max(), 1e-300)).sum())
    if not 0 <= k <= rank:
        raise ValueError(f"a k-DPP needs 0 <= k <= rank(L) = {rank}, got k = {k}")


def sample_kdpp(
    L: np.ndarray, k: int, rng: np.random.Generator, eigen: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:
    """One exact draw of exactly ``k`` items from the k-DPP of ``L`` (Kulesza & Taskar, Algorithm 8)."""
    values, vectors = eigen if eigen is not None else _eigen(L)
    _check_k(k, values)
    E = _elementary_symmetric(values, k)
    picked: list[int] = []
    remaining = k
    for m in range(len(values), 0, -1):
        if remaining == 0:
            break
        # keep eigenvector m-1 with probability λ e_{l-1}(first m-1) / e_l(first m)
        if E[remaining, m] <= 0:
            continue
        if rng.random() < values[m - 1] * E[remaining - 1, m - 1] / E[remaining, m]:
            picked.append(m - 1)
            remaining -= 1
    return _sample_from_eigenvectors(vectors[:, picked], rng)


def kdpp_inclusion_probabilities(L: np.ndarray, k: int) -> np.ndarray:
    """P(i ∈ Y) under the k-DPP of ``L``: Σ_n λ_n v_n(i)² e_{k-1}(λ without n) / e_k(λ)."""
    values, vectors = _eigen(L)
    _check_k(k, values)
    e_k = _elementary_symmetric(values, k)[k, -1]
    weights = np.empty(len(values))
    for n in range(len(values)):
        others = np.delete(values, n)
        weights[n] = values[n] * _elementary_symmetric(others, k - 1)[k - 1, -1] / e_k
    return (vectors**2) @ weights
