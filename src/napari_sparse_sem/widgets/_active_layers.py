"""The result layers of the *Active acquisition* widget: five image stacks (initial reconstruction, its true and
estimated error, final reconstruction and its |error|) and the rescan points, filled slice by slice as the job
finishes them, named ``<source> · active <initial>→<budget>% · <what>``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from matplotlib.colors import to_rgba_array
from napari.layers import Image, Layer, Points

from napari_sparse_sem.active.pipeline import ActiveSlice, WDPPConfig
from napari_sparse_sem.widgets._layers import SEP, contrast_01, like_layer, offset_placement, percent

ROUND_COLOURS = ("#00e5ff", "#ffd400", "#ff4fd8", "#7cfc00", "#ff8c00")  # rescan points, one colour per round
IMAGE_LAYERS = ("initial recon", "true error", "estimated error", "final recon", "|error|")  # bottom to top
POINTS_LAYER = "rescan points"


def active_name(source: str, config: WDPPConfig, what: str) -> str:
    """``<source> · active <initial>→<budget>% · <what>`` (layer naming rule 5)."""
    return f"{source}{SEP}active {config.initial}→{percent(config.budget)}%{SEP}{what}"


@dataclass
class ActiveRun:
    """What the running (or last) acquisition needs on the GUI thread."""

    source: Any
    config: WDPPConfig
    first: int  # data index of the first processed slice in the source
    n: int
    shape: tuple[int, int]
    vrange: tuple[float, float]
    block: np.ndarray  # the processed slices, float32 in [0, 1] (the ground truth of the |error| layers)
    done: list[Any] = field(default_factory=list)  # the finished slices (FinishedSlice), in order
    complete: bool = False
    record: dict[str, Any] | None = None  # the run record of the same `sparse-sem active` (a source from a file)

    @property
    def finished(self) -> list[ActiveSlice]:
        """The finished slices' results."""
        return [done.item for done in self.done]


class ActiveLayers:
    """The layers of one run (:attr:`layers`, by what they show), not yet in a viewer when made."""

    def __init__(self, run: ActiveRun) -> None:
        self.run = run
        self._high: dict[str, float] = {}  # contrast tops of the error layers
        source, config = run.source, run.config
        zeros = np.zeros((run.n, *run.shape), dtype=np.float32)
        where = offset_placement(source, (run.first, 0, 0))
        recon_limits = contrast_01(source, run.vrange)
        styles = {
            "initial recon": {"colormap": "gray", "contrast_limits": recon_limits, "visible": False},
            "true error": {"colormap": "magma", "visible": False},
            "estimated error": {"colormap": "magma", "visible": False},
            "final recon": {"colormap": "gray", "contrast_limits": recon_limits},
            "|error|": {"colormap": "magma", "visible": False},
        }
        self.layers: dict[str, Layer] = {}
        for what in IMAGE_LAYERS:
            self.layers[what] = Image(
                like_layer(zeros.copy(), source),
                name=active_name(source.name, config, what),
                metadata={"kind": "active", "what": what},
                **styles[what],
                **where,
            )
        ndim = 2 if source.ndim == 2 else 3
        self.layers[POINTS_LAYER] = Points(
            np.zeros((0, ndim)),
            ndim=ndim,
            name=active_name(source.name, config, POINTS_LAYER),
            metadata={"kind": "active", "what": POINTS_LAYER},
            size=2.0,
            border_width=0.0,
            face_color=ROUND_COLOURS[0],
            **where,
        )

    def add_slice(self, item: ActiveSlice) -> None:
        """Write a finished slice's planes and rescan points (its index in the run: ``item.z - first``)."""
        run = self.run
        index = item.z - run.first
        final_error = np.abs(item.final_recon - run.block[index]).astype(np.float32)
        planes = {
            "initial recon": item.initial_recon,
            "true error": item.true_error,
            "estimated error": item.rounds[0].estimate,
            "final recon": item.final_recon,
            "|error|": final_error,
        }
        for what, image in planes.items():
            layer = self.layers[what]
            if layer.data.ndim == 2:
                layer.data[...] = image
            else:
                layer.data[index] = image
        for what in ("true error", "|error|"):  # one contrast for both, so they compare by eye
            self._grow_limits(what, np.maximum(item.true_error, final_error))
        self._grow_limits("estimated error", item.rounds[0].estimate)
        for what in IMAGE_LAYERS:
            self.layers[what].refresh()
        self._add_points(item, index)

    def _grow_limits(self, what: str, image: np.ndarray) -> None:
        """Error maps: contrast from 0 to the highest 99.5th percentile of the planes so far."""
        high = float(np.percentile(image, 99.5)) if image.size else 0.0
        high = max(high, self._high.get(what, 0.0), 1e-6)
        self._high[what] = high
        self.layers[what].contrast_limits = (0.0, high)

    def _add_points(self, item: ActiveSlice, index: int) -> None:
        layer = self.layers[POINTS_LAYER]
        new, colours = [], []
        for r, round_ in enumerate(item.rounds):
            pts = np.asarray(round_.selection.points, dtype=float).reshape(-1, 2)
            if layer.ndim == 3:
                pts = np.column_stack([np.full(len(pts), float(index)), pts])
            new.append(pts)
            colours += [ROUND_COLOURS[r % len(ROUND_COLOURS)]] * len(pts)
        old_colours = np.asarray(layer.face_color).reshape(-1, 4)
        layer.data = np.concatenate([np.asarray(layer.data).reshape(-1, layer.ndim), *new])
        layer.face_color = np.concatenate([old_colours, to_rgba_array(colours)]) if colours else old_colours

    def update_metadata(self) -> None:
        """The run's config, records and state in every layer's metadata."""
        run = self.run
        finished = run.finished
        common = {
            "source_layer": run.source.name,
            "config": run.config.to_dict(),
            "slices": [item.z for item in finished],
            "first_slice": run.first,
            "value_range": list(run.vrange),
            "records": [item.record for item in finished],
            "baseline_records": [b[2] for item in finished for b in item.baselines.values()],
            "complete": run.complete,
        }
        if run.record is not None:
            common["run"] = run.record
        for layer in self.layers.values():
            layer.metadata.update(common)

    def trim_to_done(self) -> None:
        """After a stop: keep only the finished planes (the finished slices are the first ones of the range)."""
        run = self.run
        k = len(run.done)
        if run.source.ndim >= 3 and 0 < k < run.n:
            for what in IMAGE_LAYERS:
                layer = self.layers[what]
                layer.data = layer.data[:k].copy()
        self.update_metadata()
