"""Fixtures for the widget tests: a small real FlyEM crop in a real napari viewer, isolated widget settings."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtCore import QSettings

from napari_sparse_sem.widgets._worker import JobPanel

WORKER_TIMEOUT_MS = 120_000  # a wait, not a timing claim: generous for a CI machine shared with other work


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Widgets remember their parameters in QSettings; keep the tests' values out of the user's settings."""
    folder = tmp_path_factory.mktemp("qsettings")
    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, str(folder))


@pytest.fixture(scope="session")
def small_stack(flyem_crop_uint8: np.ndarray) -> np.ndarray:
    """4 x 96 x 96 uint8 slices of the packaged FlyEM crop (real data, small enough to stay fast)."""
    return np.ascontiguousarray(flyem_crop_uint8[:4, 60:156, 80:176])


@pytest.fixture
def viewer(make_napari_viewer):
    return make_napari_viewer()


@pytest.fixture
def sample_layer(viewer, small_stack):
    """The crop as an image layer with a non-trivial scale and translate (10 nm pixels, 30 nm slices)."""
    return viewer.add_image(small_stack.copy(), name="flyem", scale=(30.0, 10.0, 10.0), translate=(0.0, 5.0, -20.0))


@pytest.fixture
def wait_done(qtbot):
    """``wait_done(panel)``: wait until the panel's worker finished and its results were handled."""

    def wait(panel: JobPanel, timeout: int = WORKER_TIMEOUT_MS) -> None:
        qtbot.waitUntil(lambda: not panel.busy, timeout=timeout)

    return wait


@pytest.fixture
def acquired(viewer, sample_layer, wait_done):
    """Run the acquisition widget (random, 10 %, noiseless) on the sample; returns (mask_layer, sparse_layer)."""
    from napari_sparse_sem.widgets.acquisition import AcquisitionWidget

    widget = AcquisitionWidget(viewer)
    widget.source.value = sample_layer
    widget.pattern.value = "random"
    widget.coverage.value = 10.0
    widget.run()
    wait_done(widget.panel)
    return viewer.layers["flyem · random 10% · mask"], viewer.layers["flyem · random 10% · sparse"]
