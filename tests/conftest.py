"""Shared fixtures: real FlyEM data (the shipped crop, and the full volume from ../shared/data when present)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import tifffile

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest depends on tomli there
    import tomli as tomllib
import tomllib

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


# ------------------------------------------------------------------------------------------- method plugins
PLUGIN = REPO / "tests" / "plugin_pkg"


def _install_distribution(site: Path, name: str, version: str, entry_points: dict[str, dict[str, str]]) -> None:
    """Write the ``*.dist-info`` folder pip would write into ``site`` for a distribution with these entry points."""
    dist = site / f"{name.replace('-', '_')}-{version}.dist-info"
    dist.mkdir(parents=True)
    (dist / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    text = "".join(
        f"[{group}]\n" + "".join(f"{key} = {value}\n" for key, value in items.items()) + "\n"
        for group, items in entry_points.items()
    )
    (dist / "entry_points.txt").write_text(text)


@pytest.fixture
def install_distribution() -> Any:
    """``install_distribution(site, name, version, entry_points)``: a distribution's dist-info, as pip writes it."""
    return _install_distribution


@pytest.fixture
def site(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """An empty folder on ``sys.path`` to install distributions into; the method registry is restored afterwards."""
    from napari_sparse_sem.recon import registry

    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    registry.available_methods()  # our entry points are read before the plugins arrive
    saved = dict(registry._REGISTRY), list(registry._ORDER), set(registry._LOADED)
    yield folder
    registry._REGISTRY.clear()
    registry._REGISTRY.update(saved[0])
    registry._ORDER[:] = saved[1]
    registry._LOADED.clear()
    registry._LOADED.update(saved[2])
    sys.modules.pop("sparse_sem_mean_fill", None)


@pytest.fixture
def mean_fill(site: Path) -> Path:
    """``tests/plugin_pkg`` installed the way pip does: its package and the entry points of its pyproject.toml."""
    from napari_sparse_sem.recon.registry import ENTRY_POINT_GROUP, refresh_methods

    project = tomllib.loads((PLUGIN / "pyproject.toml").read_text())["project"]
    shutil.copytree(PLUGIN / "sparse_sem_mean_fill", site / "sparse_sem_mean_fill")
    _install_distribution(site, project["name"], project["version"], project["entry-points"])
    assert ENTRY_POINT_GROUP in project["entry-points"]
    refresh_methods()
    return site
