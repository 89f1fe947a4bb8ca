"""Layer helpers shared by the dock widgets: names, metadata keys, reading layers as volumes, layer choosers.

Layers tell their story: names read ``<source> · <pattern> <coverage>% · <what>`` and ``layer.metadata`` carries the
parameters and results. Keys written by these widgets:

``kind``               ``"mask"``, ``"sparse"``, ``"reconstruction"``, ``"error"`` or ``"compare"``
``source_layer``       name of the layer the result was made from
``acquisition_id``     shared by a mask and its sparse layer (and everything reconstructed from them)
``acquisition_record`` the :class:`~napari_sparse_sem.sampling.record.AcquisitionRecord` of a mask and its sparse
                       layer, passed on to what is reconstructed from them (mask and acquisition specs, achieved
                       coverage, times, the source's value range and the range the stored values map to [0, 1]) —
                       the record ``sparse-sem simulate`` writes too
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import napari
import numpy as np
from napari.layers import Image, Labels, Layer

from napari_sparse_sem.io.volume import as_zyx, to_float01, value_range

SEP = " · "


def percent(coverage: float) -> str:
    """A coverage fraction as a short percentage string: 0.1 → '10', 0.025 → '2.5'."""
    return f"{coverage * 100:.3g}"


def result_name(source: str, pattern: str, coverage: float, what: str) -> str:
    """``<source> · <pattern> <coverage>% · <what>``."""
    return f"{source}{SEP}{pattern} {percent(coverage)}%{SEP}{what}"


def layer_array(layer: Layer, what: str) -> Any:
    """The layer's full-resolution data, refusing multiscale pyramids and RGB images with a clear message."""
    if getattr(layer, "multiscale", False):
        raise ValueError(
            f"{what} layer {layer.name!r} is a multiscale pyramid; open its full-resolution level as a plain image"
        )
    if isinstance(layer, Image) and layer.rgb:
        raise ValueError(
            f"{what} layer {layer.name!r} is an RGB/RGBA image; convert it to grayscale first "
            "(napari: Layers > Convert > to grayscale, or skimage.color.rgb2gray)"
        )
    return layer.data


def layer_volume(
    layer: Layer, what: str = "image", vrange: tuple[float, float] | None = None
) -> tuple[np.ndarray, tuple[float, float]]:
    """The layer as a (z, y, x) float32 volume in [0, 1] (a copy) and the value range used for the mapping.

    ``vrange`` forces the mapping (e.g. the one recorded when a sparse acquisition was made from this layer); float
    data already within [0, 1] is kept as it is, everything else maps the dtype's (or the data's) range to [0, 1].
    """
    data = as_zyx(layer_array(layer, what), what=f"{what} layer {layer.name!r}")
    array = np.asarray(data)
    if vrange is not None:
        vrange = (float(vrange[0]), float(vrange[1]))
    elif array.dtype.kind == "f" and array.size and 0.0 <= float(array.min()) and float(array.max()) <= 1.0:
        vrange = (0.0, 1.0)  # already in [0, 1]: keep values as they are so layers compare one to one
    else:
        vrange = value_range(array)
    return to_float01(array, what=f"{what} layer {layer.name!r}", value_range_=vrange), vrange


def layer_mask(layer: Layer, what: str = "mask") -> np.ndarray:
    """The layer as a (z, y, x) boolean mask (non-zero = scanned)."""
    data = as_zyx(layer_array(layer, what), what=f"{what} layer {layer.name!r}")
    return np.asarray(data) != 0


def contrast_01(layer: Layer, vrange: tuple[float, float]) -> tuple[float, float]:
    """The layer's contrast limits expressed in the [0, 1] units of :func:`layer_volume`."""
    lo, hi = vrange
    limits = getattr(layer, "contrast_limits", None)
    if limits is None or hi <= lo:
        return 0.0, 1.0
    c0, c1 = ((float(c) - lo) / (hi - lo) for c in limits)
    c0, c1 = max(0.0, min(1.0, c0)), max(0.0, min(1.0, c1))
    return (c0, c1) if c1 > c0 else (0.0, 1.0)


def like_layer(array3d: np.ndarray, layer: Layer) -> np.ndarray:
    """Give a (z, y, x) result the layer's dimensionality (a 2D layer gets a 2D result)."""
    return array3d[0] if layer.ndim == 2 and array3d.ndim == 3 else array3d


def placement(layer: Layer) -> dict[str, Any]:
    """scale / translate keyword arguments that put a new layer exactly over ``layer``."""
    return {"scale": tuple(layer.scale), "translate": tuple(layer.translate)}


def offset_placement(layer: Layer, offset_zyx: Iterable[int]) -> dict[str, Any]:
    """Like :func:`placement` for a sub-block starting at data index ``offset_zyx`` of ``layer``."""
    scale = np.asarray(layer.scale, dtype=float)
    translate = np.asarray(layer.translate, dtype=float)
    offset = np.asarray(list(offset_zyx), dtype=float)[-layer.ndim :]
    return {"scale": tuple(scale), "translate": tuple(translate + offset * scale)}


def current_slice(viewer: napari.Viewer, layer: Layer | None) -> int:
    """The data index of ``layer``'s slice that the viewer shows now (0 for a 2D layer)."""
    if layer is None or layer.ndim < 3:
        return 0
    try:
        position = layer.world_to_data(viewer.dims.point)
    except (ValueError, IndexError):
        return 0
    z_axis = layer.ndim - 3
    return int(np.clip(round(float(position[z_axis])), 0, layer.data.shape[z_axis] - 1))


def meta(layer: Layer | None, key: str, default: Any = None) -> Any:
    """``layer.metadata[key]`` or ``default``."""
    if layer is None:
        return default
    return (layer.metadata or {}).get(key, default)


def find_layer(viewer: napari.Viewer, predicate: Callable[[Layer], bool]) -> Layer | None:
    """The topmost layer satisfying ``predicate``."""
    for layer in reversed(list(viewer.layers)):
        if predicate(layer):
            return layer
    return None


class LayerChoices:
    """Keeps magicgui combo boxes of layers in step with the viewer's layer list (adds, removals, renames)."""

    def __init__(self, viewer: napari.Viewer) -> None:
        self.viewer = viewer
        self._combos: list[Any] = []
        viewer.layers.events.inserted.connect(self._on_inserted)
        viewer.layers.events.removed.connect(self.refresh)
        viewer.layers.events.moved.connect(self.refresh)
        for layer in viewer.layers:
            layer.events.name.connect(self.refresh)

    def add(self, combo: Any) -> Any:
        self._combos.append(combo)
        combo.reset_choices()
        return combo

    def _on_inserted(self, event: Any) -> None:
        event.value.events.name.connect(self.refresh)
        self.refresh()

    def refresh(self, *_: Any) -> None:
        for combo in self._combos:
            combo.reset_choices()

    def disconnect(self) -> None:
        """Stop listening to the viewer (called when the widget closes)."""
        events = self.viewer.layers.events
        for emitter, slot in (
            (events.inserted, self._on_inserted),
            (events.removed, self.refresh),
            (events.moved, self.refresh),
        ):
            emitter.disconnect(slot)
        for layer in self.viewer.layers:
            layer.events.name.disconnect(self.refresh)


def image_layers(viewer: napari.Viewer, first: Callable[[Layer], bool] | None = None) -> list[tuple[str, Layer]]:
    """(name, layer) choices of the viewer's Image layers, topmost first; ``first`` ones are listed before the rest."""
    layers = [layer for layer in reversed(list(viewer.layers)) if isinstance(layer, Image)]
    if first is not None:
        layers.sort(key=lambda layer: not first(layer))
    return [(layer.name, layer) for layer in layers]


NO_MASK = "(no mask layer)"


def mask_layers(viewer: napari.Viewer) -> list[tuple[str, Layer | None]]:
    """(name, layer) choices for masks: our mask layers first, then other Labels, then :data:`NO_MASK`, then Images.

    An image is a mask only when someone says so: with no Labels layer the choice starts at :data:`NO_MASK` rather
    than at the dense image (which, read as a mask, marks nearly every pixel as scanned)."""
    labels = [layer for layer in reversed(list(viewer.layers)) if isinstance(layer, Labels)]
    labels.sort(key=lambda layer: meta(layer, "kind") != "mask")
    images = [layer for layer in reversed(list(viewer.layers)) if isinstance(layer, Image)]
    images.sort(key=lambda layer: meta(layer, "kind") != "mask")
    return [*((layer.name, layer) for layer in labels), (NO_MASK, None), *((layer.name, layer) for layer in images)]
