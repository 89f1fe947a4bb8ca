"""A ready-to-play napari session: the FlyEM sample with the three sparse-SEM widgets docked as tabs, and *Compare
masks* set to the better classical methods (``linear`` and ``biharmonic``, not ``nearest``, the weakest).

Run with ``python -m napari_sparse_sem.widgets.demo`` (or ``make demo``).
"""

from __future__ import annotations

import napari
from napari.layers import Layer

PLUGIN = "napari-sparse-sem"
WIDGETS: tuple[str, ...] = ("Sparse acquisition", "Reconstruct", "Compare masks")
COMPARE_METHODS: tuple[str, ...] = ("linear", "biharmonic")  # what the demo's comparison shows first


def launch(block: bool = True, show: bool = True) -> napari.Viewer:
    """Open napari with the FlyEM sample loaded and the three widgets docked (tabbed) with the sample selected.

    ``block`` runs the Qt event loop until the window closes (``napari.run()``); ``block=False`` returns at once.
    """
    from napari_sparse_sem.io.sample_data import flyem_sample

    viewer = napari.Viewer(title="napari-sparse-sem demo", show=show)
    sample = None
    for data, kwargs, layer_type in flyem_sample():
        sample = viewer.add_layer(Layer.create(data, kwargs, layer_type))
    widgets = [viewer.window.add_plugin_dock_widget(PLUGIN, name, tabify=True)[1] for name in WIDGETS]
    acquisition, reconstruct, compare = widgets
    if sample is not None:
        acquisition.source.value = sample
        reconstruct.truth.value = sample
        compare.truth.value = sample
    compare.methods.value = [m for m in COMPARE_METHODS if m in compare.methods.choices]
    if block:
        napari.run()
    return viewer


if __name__ == "__main__":
    launch()
