"""Fixtures of the reconstruction tests: a tiny partial-scan GAN configuration (trains in seconds)."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import pytest

from napari_sparse_sem.recon.gan_training import GANTrainingConfig


def tiny_config(base_architecture: dict, **kw: Any) -> GANTrainingConfig:
    """A GAN training config with a tiny network, 64-px crops and 12 iterations (6 MSE + 6 adversarial)."""
    options = {
        "architecture": base_architecture,
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
def make_config(tiny_gan_architecture: dict) -> Callable[..., GANTrainingConfig]:
    """:func:`tiny_config` with the tiny architecture, as a fixture."""
    return functools.partial(tiny_config, tiny_gan_architecture)
