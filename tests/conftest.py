"""Shared fixtures: real FlyEM data (the shipped crop, and the full volume from ../shared/data when present)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import tifffile

REPO = Path(__file__).resolve().parents[1]
SHARED_VOLUME = REPO.parent / "shared" / "data" / "flyem_medulla_fibsem_sample1.tif"
PACKAGED_CROP = REPO / "src" / "napari_sparse_sem" / "data" / "flyem_medulla_crop_z120-151.tif"
CROP_Z0 = 120  # the packaged crop holds slices 120..151 of the full volume


@pytest.fixture(scope="session")
def flyem_crop_uint8() -> np.ndarray:
    """The packaged FlyEM crop, (32, 250, 250) uint8, slices 120-151 of the full volume."""
    return tifffile.imread(PACKAGED_CROP)


@pytest.fixture(scope="session")
def flyem_crop(flyem_crop_uint8: np.ndarray) -> np.ndarray:
    """The packaged crop as float32 in [0, 1] (uint8 / 255)."""
    return flyem_crop_uint8.astype(np.float32) / 255.0


@pytest.fixture(scope="session")
def flyem_slice125(flyem_crop: np.ndarray) -> np.ndarray:
    """Full-volume slice 125, (250, 250) float32 in [0, 1]."""
    return flyem_crop[125 - CROP_Z0]


@pytest.fixture(scope="session")
def flyem_volume_path() -> Path:
    """Path of the full 250³ FlyEM volume in ../shared/data (skips when the shared folder is absent)."""
    if not SHARED_VOLUME.exists():
        pytest.skip(f"shared FlyEM volume not found at {SHARED_VOLUME}")
    return SHARED_VOLUME


TINY_GAN = {
    "outer_widths": [4, 8, 4],
    "inner_stem": 4,
    "inner_widths": [4, 8, 8, 8],
    "inner_blocks": 1,
    "outer_blocks": 1,
    "trainer_width": 4,
    "disc_widths": [4, 8, 8, 8],
    "disc_crop": 16,
}


@pytest.fixture(scope="session")
def tiny_gan_architecture() -> dict:
    """A partial-scan GAN architecture small enough to train in a second (GANConfig fields; 64-px crops suffice)."""
    return dict(TINY_GAN)
