"""demo.launch opens napari with the FlyEM sample and the three widgets docked as tabs, the sample selected in each."""

from __future__ import annotations

import gc

from napari._qt.qt_viewer import QtViewer
from qtpy.QtWidgets import QDockWidget

from napari_sparse_sem.widgets.acquisition import AcquisitionWidget
from napari_sparse_sem.widgets.compare import CompareWidget
from napari_sparse_sem.widgets.demo import launch
from napari_sparse_sem.widgets.reconstruct import ReconstructWidget


def test_launch_docks_three_widgets_with_the_sample(qtbot):
    viewer = launch(block=False, show=False)
    try:
        assert len(viewer.layers) == 1
        sample = viewer.layers[0]
        assert sample.data.shape == (32, 250, 250)
        assert tuple(sample.scale) == (10.0, 10.0, 10.0)
        docked = list(viewer.window.dock_widgets.values())
        widgets = {type(w): w for w in docked if isinstance(w, AcquisitionWidget | ReconstructWidget | CompareWidget)}
        assert set(widgets) == {AcquisitionWidget, ReconstructWidget, CompareWidget}
        assert widgets[AcquisitionWidget].source.value is sample
        assert widgets[ReconstructWidget].truth.value is sample
        assert widgets[CompareWidget].truth.value is sample
        # Docked as tabs of one dock area, and the comparison set to the better methods (not just nearest).
        assert _tab_counts(viewer, list(widgets.values())) == [2, 2, 2]
        assert list(widgets[CompareWidget].methods.value) == ["linear", "biharmonic"]
    finally:
        viewer.close()
        del viewer, docked, widgets
        gc.collect()
    # Nothing of ours keeps the closed viewer alive (napari's own fixtures check this in later tests).
    assert len(QtViewer._instances) == 0


def _tab_counts(viewer, widgets) -> list[int]:
    """For each widget's dock: how many other docks share its tab bar."""
    window = viewer.window._qt_window
    docks = [dock for dock in window.findChildren(QDockWidget) if dock.widget() in widgets]
    return [len(window.tabifiedDockWidgets(dock)) for dock in docks]
