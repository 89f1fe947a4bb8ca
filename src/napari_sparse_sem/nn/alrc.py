"""Adaptive learning rate clipping (ALRC) of outlier losses.

From J. M. Ede and R. Beanland, "Adaptive learning rate clipping stabilizes learning", Machine Learning: Science and
Technology 1 (2020), Algorithm 1 of the partial-scan poster (``../shared/papers/002``): keep running means μ1 of the
loss and μ2 of its square (decay β = 0.999); when a loss ``L`` exceeds ``L_max = μ1 + n σ`` with
``σ = sqrt(μ2 − μ1²)``, back-propagate ``stop_gradient(L_max / L) · L`` instead, so a rare huge loss (a crop of a
very unusual image, a bad mask draw) moves the weights no further than a loss of ``L_max`` would. The running means
are updated with the unclipped loss after each step.

Ede starts at μ1 = 25 and μ2 = 30² in the units of his loss. Our losses are mean squared errors of images in [0, 1]
(~1e-2 early, ~1e-3 late), so fixed starting values would never clip; by default we start at the first loss seen, L₀,
and (1.2 L₀)², the ratio of Ede's values (30/25), which is just as permissive at first and tightens as the means follow
the loss down.
"""

from __future__ import annotations

import math
from typing import Any


class ALRC:
    """Clip one loss stream (use one instance per loss term). Call it with a scalar loss tensor; it returns the loss to
    back-propagate. ``mu1``/``mu2``: starting means (``None``: from the first loss, see the module notes)."""

    def __init__(
        self, n_sigma: float = 3.0, decay: float = 0.999, mu1: float | None = None, mu2: float | None = None
    ) -> None:
        if not n_sigma > 0:
            raise ValueError(f"n_sigma must be positive, got {n_sigma}")
        if not 0 < decay < 1:
            raise ValueError(f"decay must be in (0, 1), got {decay}")
        if (mu1 is None) != (mu2 is None):
            raise ValueError("give both mu1 and mu2, or neither (start from the first loss)")
        if mu1 is not None and mu2 is not None and mu2 < mu1**2:
            raise ValueError(f"mu2 must be at least mu1² (a mean square), got mu1={mu1}, mu2={mu2}")
        self.n_sigma = float(n_sigma)
        self.decay = float(decay)
        self.mu1 = mu1
        self.mu2 = mu2
        self.steps = 0
        self.clipped = 0

    def limit(self) -> float:
        """The current clipping threshold ``μ1 + n σ`` (infinite before the first loss)."""
        if self.mu1 is None or self.mu2 is None:
            return math.inf
        return self.mu1 + self.n_sigma * math.sqrt(max(0.0, self.mu2 - self.mu1**2))

    def __call__(self, loss: Any) -> Any:
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"the loss is {value}: training diverged (try a lower learning rate)")
        if self.mu1 is None:
            self.mu1, self.mu2 = value, (1.2 * value) ** 2
        limit = self.limit()
        out = loss
        if value > limit > 0:
            out = loss * (limit / value)  # the factor is a plain float: no gradient flows through it
            self.clipped += 1
        assert self.mu1 is not None and self.mu2 is not None
        self.mu1 = self.decay * self.mu1 + (1.0 - self.decay) * value
        self.mu2 = self.decay * self.mu2 + (1.0 - self.decay) * value**2
        self.steps += 1
        return out

    def state_dict(self) -> dict[str, Any]:
        """JSON-ready state, for resumable training."""
        return {
            "n_sigma": self.n_sigma,
            "decay": self.decay,
            "mu1": self.mu1,
            "mu2": self.mu2,
            "steps": self.steps,
            "clipped": self.clipped,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> ALRC:
        """An instance continuing from :meth:`state_dict`."""
        clipper = cls(state["n_sigma"], state["decay"], state.get("mu1"), state.get("mu2"))
        clipper.steps = int(state.get("steps", 0))
        clipper.clipped = int(state.get("clipped", 0))
        return clipper


class NoClipping(ALRC):
    """The same interface without clipping (the ablation's baseline): the loss passes through, the means still run."""

    def limit(self) -> float:
        return math.inf
