"""Fixtures of the reconstruction tests: a tiny partial-scan GAN configuration (trains in seconds)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from napari_sparse_sem.recon.gan_training import GANTrainingConfig

TINY = {
    "outer_widths": [4, 8, 4],
    "inner_stem": 4,
    "inner_widths": [4, 8, 8, 8],
    "inner_blocks": 1,
    "outer_blocks": 1,
    "trainer_width": 4,
    "disc_widths": [4, 8, 8, 8],
    "disc_crop": 16,
}


def tiny_config(**kw: Any) -> GANTrainingConfig:
    """A GAN training config with a tiny network, 64-px crops and 12 iterations (6 MSE + 6 adversarial)."""
    options = {
        "architecture": TINY,
        "crop": 64,
        "batch_size": 2,
        "iterations": 12,
        "pretrain_fraction": 0.5,
        "validate_every": 4,
        "log_every": 2,
        "validation_fraction": 0.25,
    }
    return GANTrainingConfig(**{**options, **kw})


@pytest.fixture(scope="session")
def make_config() -> Callable[..., GANTrainingConfig]:
    """:func:`tiny_config`, as a fixture."""
    return tiny_config
