"""Adaptive learning rate clipping: outliers are scaled down to the limit (value and gradient), ordinary losses pass."""

from __future__ import annotations

import math

import pytest
import torch

from napari_sparse_sem.nn.alrc import ALRC, NoClipping


def _steady(clipper: ALRC, steps: int = 300) -> None:
    generator = torch.Generator().manual_seed(0)
    for _ in range(steps):
        clipper(torch.tensor(1.0) + 0.1 * torch.randn((), generator=generator))


def test_starts_from_the_first_loss_with_edes_ratio() -> None:
    clipper = ALRC()
    assert clipper.limit() == math.inf
    clipper(torch.tensor(2.0))
    # mu1 = 2, mu2 = (1.2 * 2)^2, then one update with the loss itself
    mu1 = 0.999 * 2.0 + 0.001 * 2.0
    mu2 = 0.999 * 2.4**2 + 0.001 * 4.0
    assert clipper.mu1 == pytest.approx(mu1) and clipper.mu2 == pytest.approx(mu2)
    assert clipper.limit() == pytest.approx(mu1 + 3 * math.sqrt(mu2 - mu1**2))


def test_an_outlier_is_scaled_to_the_limit_in_value_and_gradient() -> None:
    clipper = ALRC(mu1=1.0, mu2=1.01)
    _steady(clipper)
    limit, before = clipper.limit(), clipper.clipped
    assert 1.1 < limit < 2.0  # mean 1 plus 3 sigma of the running spread
    weight = torch.tensor(10.0, requires_grad=True)
    loss = weight * 1.0  # a 10x outlier; d loss / d weight = 1
    out = clipper(loss)
    out.backward()
    assert float(out.detach()) == pytest.approx(limit)
    assert float(weight.grad) == pytest.approx(limit / 10.0)  # the step is that of a loss at the limit
    assert clipper.clipped == before + 1


def test_ordinary_losses_pass_unchanged_and_no_clipping_never_clips() -> None:
    clipper = ALRC(mu1=1.0, mu2=1.01)
    _steady(clipper)
    loss = torch.tensor(1.05, requires_grad=True)
    assert clipper(loss) is loss
    plain = NoClipping(mu1=1.0, mu2=1.01)
    _steady(plain)
    big = torch.tensor(50.0)
    assert plain(big) is big and plain.clipped == 0 and plain.mu1 > 1.0  # the means still run (for the ablation log)


def test_state_round_trip_and_bad_values() -> None:
    clipper = ALRC(n_sigma=2.5, decay=0.99)
    _steady(clipper, 20)
    again = ALRC.from_state(clipper.state_dict())
    assert again.state_dict() == clipper.state_dict()
    with pytest.raises(FloatingPointError, match="diverged"):
        clipper(torch.tensor(float("nan")))
    with pytest.raises(ValueError, match="both mu1 and mu2"):
        ALRC(mu1=1.0)
    with pytest.raises(ValueError, match="mean square"):
        ALRC(mu1=2.0, mu2=1.0)
    with pytest.raises(ValueError, match="decay"):
        ALRC(decay=1.0)
