"""The evaluation separates the surrogate's systematic error from the Monte Carlo reference's own shot noise.

Synthetic images with a known truth, a known systematic error and known counting noise: the quadrature estimate
recovers the systematic RMS error where the raw error and the paper's "total − noise" do not.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from napari_sparse_sem.surrogate.evaluate import pooled_systematic, reference_noise, separated_errors

SIZE, IMAGES = 192, 4


def _truth(rng: np.random.Generator) -> np.ndarray:
    """BSE-like fractions 0.05-0.30: smooth blobs plus sharp edges."""
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    base = 0.12 + 0.06 * np.sin(6 * x + rng.uniform(0, 6)) * np.cos(5 * y)
    return np.clip(base + 0.12 * (np.hypot(x - 0.5, y - 0.5) < rng.uniform(0.2, 0.35)), 0.05, 0.30)


def _systematic(rng: np.random.Generator, rms: float) -> np.ndarray:
    """A structured error field (offset + ripple) scaled to the given RMS."""
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    field = 0.5 + np.sin(9 * x + rng.uniform(0, 6)) + 0.5 * np.cos(13 * y)
    return field * rms / math.sqrt(np.mean(field**2))


def _scored(rng, electrons: int, rms: float, counting: str, use_replicas: bool) -> tuple[list[dict], float, float]:
    """Per-image errors of a prediction = truth + systematic against a counted reference; (entries, s %, σ %)."""
    data_range = 0.25
    entries, truth_sq, noise_sq = [], [], []
    for _ in range(IMAGES):
        truth = _truth(rng)
        error = _systematic(rng, rms)
        half = electrons // 2
        if counting == "binomial":
            runs = np.stack([rng.binomial(half, truth) / half for _ in range(2)])
        else:  # Poisson counts of a yield that may exceed one per electron (like SE)
            runs = np.stack([rng.poisson(truth * 4 * half) / (4 * half) for _ in range(2)])
        reference = runs.mean(axis=0)
        variance, noise_abs, source = reference_noise(
            reference, "bse" if counting == "binomial" else "se", electrons, runs if use_replicas else None
        )
        assert source == ("replicas" if use_replicas else "binomial")
        entries.append(separated_errors(truth + error, reference, data_range, variance, noise_abs))
        truth_sq.append(np.mean(error**2))
        exact = truth * (1 - truth) / electrons if counting == "binomial" else truth / (4 * electrons)
        noise_sq.append(np.mean(exact))
    return entries, 100 * math.sqrt(np.mean(truth_sq)) / data_range, 100 * math.sqrt(np.mean(noise_sq)) / data_range


@pytest.mark.parametrize(
    ("counting", "use_replicas"), [("binomial", False), ("binomial", True), ("poisson", True)], ids=str
)
def test_quadrature_recovers_a_known_systematic_error_under_counting_noise(counting, use_replicas) -> None:
    rng = np.random.default_rng(7)
    entries, systematic, sigma = _scored(rng, 4000, 0.00125, counting, use_replicas)
    pooled = pooled_systematic(entries)
    assert 0.3 < systematic < sigma  # a systematic error well under the reference's noise, as in the issue
    assert pooled["systematic_rms_pct"] == pytest.approx(systematic, rel=0.15)
    assert pooled["systematic_rms_pct"] < pooled["systematic_rms_upper_pct"]
    noise_rms = math.sqrt(np.mean([e["noise_rms_pct"] ** 2 for e in entries]))
    assert noise_rms == pytest.approx(sigma, rel=0.03)
    raw_rms = math.sqrt(np.mean([(e["excess_sum"] / e["pixels"]) for e in entries]) + noise_rms**2)
    assert raw_rms > 2 * systematic  # without the subtraction the noise would pass for error
    paper = np.mean([e["systematic_error_pct"] for e in entries])
    assert paper < 0.5 * systematic  # "total − noise" hides most of an error smaller than the noise


def test_no_systematic_error_reads_as_noise_only() -> None:
    rng = np.random.default_rng(3)
    entries, _, sigma = _scored(rng, 8000, 0.0, "binomial", True)
    pooled = pooled_systematic(entries)
    total = np.mean([e["mean_error_pct"] for e in entries])
    noise = np.mean([e["noise_pct"] for e in entries])
    assert noise == pytest.approx(total, rel=0.03)  # the expected |noise| is the whole mean error
    assert pooled["systematic_rms_pct"] < 0.15 * sigma and pooled["systematic_rms_upper_pct"] < 0.3 * sigma


def test_noise_sources() -> None:
    reference = np.full((4, 4), 0.2)
    variance, mean_abs, source = reference_noise(reference, "bse", 1001)
    assert source == "binomial" and variance == pytest.approx(np.full((4, 4), 0.2 * 0.8 / 1000))
    assert mean_abs == pytest.approx(np.sqrt(variance) * math.sqrt(2 / math.pi))
    assert reference_noise(reference, "se", 1000)[2] == "flat areas"  # SE has no counting model without replicas
    runs = np.stack([np.full((4, 4), 0.1), np.full((4, 4), 0.3)])
    variance, mean_abs, source = reference_noise(runs.mean(axis=0), "se", 1000, runs)
    assert source == "replicas" and variance == pytest.approx(np.full((4, 4), 0.01))  # (a - b)² / 4
    assert mean_abs == pytest.approx(np.full((4, 4), 0.1))  # |a - b| / 2
    nothing = separated_errors(reference, reference, 1.0, None, None)
    assert nothing["mean_error_pct"] == 0 and math.isnan(nothing["systematic_rms_pct"])
