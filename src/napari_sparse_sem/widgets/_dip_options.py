"""The DIP parameter form shared by the Reconstruct and Compare widgets: a preset plus the fields people tune.

Choosing a preset fills the fields with its values; :meth:`DIPOptions.options` returns the preset and only the fields
that differ from it, so a saved run says exactly what was changed.
"""

from __future__ import annotations

from typing import Any

from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, SpinBox

from napari_sparse_sem.recon.dip import DIP_METHODS

_TIPS = {
    "iterations_first": "at most this many iterations for a cold start (held-out rule) or exactly this many (fixed)",
    "iterations_warm": "the same for slices warm-started from the previous slice's network",
    "stopping": "holdout: stop when held-out scanned pixels (5 %) stop improving; fixed: run the count",
    "warmup_slices": "on a cold start, first fit this many preceding slices so the target slice starts warm",
    "neighbours": "dip3d: slices on each side fitted jointly with the slice (their own scanned pixels)",
    "levels": "hourglass depth",
    "channels": "channels per level (network width)",
    "lr": "Adam learning rate",
    "preview_every": "show the current estimate every N iterations (0: no preview)",
    "warm_start": "start each slice from the previous slice's network",
}


class DIPOptions(Container):
    """Preset, iteration budgets, stopping rule, warm-up, 3D neighbours, network size and preview interval."""

    FIELDS = (
        "iterations_first",
        "iterations_warm",
        "stopping",
        "warm_start",
        "warmup_slices",
        "neighbours",
        "levels",
        "channels",
        "lr",
        "preview_every",
    )

    def __init__(self) -> None:
        from napari_sparse_sem.recon.dip import PRESETS, STOPPING_RULES

        self.preset = ComboBox(label="DIP preset", choices=list(PRESETS), value="default")
        self.fields: dict[str, Any] = {
            "iterations_first": SpinBox(label="iterations (first)", min=1, max=100_000),
            "iterations_warm": SpinBox(label="iterations (warm)", min=1, max=100_000),
            "stopping": ComboBox(label="stopping", choices=list(STOPPING_RULES)),
            "warm_start": CheckBox(text="warm start"),
            "warmup_slices": SpinBox(label="warm-up slices", min=0, max=20),
            "neighbours": SpinBox(label="3D neighbours", min=1, max=10),
            "levels": SpinBox(label="levels", min=1, max=8),
            "channels": SpinBox(label="channels", min=4, max=512, step=4),
            "lr": FloatSpinBox(label="learning rate", min=1e-5, max=1.0, step=0.001),
            "preview_every": SpinBox(label="preview every", min=0, max=10_000, step=10),
        }
        self.fields["lr"].native.setDecimals(5)
        for name, widget in self.fields.items():
            widget.tooltip = _TIPS[name]
        super().__init__(widgets=[self.preset, *self.fields.values()])
        self.preset.changed.connect(self._fill_from_preset)
        self._fill_from_preset()

    def _fill_from_preset(self, *_: Any) -> None:
        from napari_sparse_sem.recon.dip import PRESETS

        config = PRESETS[self.preset.value]
        for name, widget in self.fields.items():
            widget.value = getattr(config, name)

    def show_for(self, methods: list[str]) -> None:
        """Visible only when a DIP method is chosen; the 3D field only with dip3d."""
        self.visible = any(m in DIP_METHODS for m in methods)
        self.fields["neighbours"].visible = "dip3d" in methods

    def options(self, method: str = "dip") -> dict[str, Any]:
        """The preset and the fields that differ from it (``neighbours`` only for dip3d)."""
        from napari_sparse_sem.recon.dip import PRESETS

        config = PRESETS[self.preset.value]
        out: dict[str, Any] = {"preset": self.preset.value}
        for name, widget in self.fields.items():
            if name == "neighbours" and method != "dip3d":
                continue
            if widget.value != getattr(config, name):
                out[name] = widget.value
        return out

    def settings_widgets(self) -> dict[str, Any]:
        """Widgets whose values are remembered between sessions (preset first, so fields restore over it)."""
        return {"dip_preset": self.preset, **{f"dip_{name}": widget for name, widget in self.fields.items()}}
