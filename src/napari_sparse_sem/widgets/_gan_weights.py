"""The *GAN weights* field shared by the Reconstruct and Compare masks widgets: shown only for ``gan``/``gan-mse``,
preset to the shipped default, checked before a run starts."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Any

from magicgui.widgets import FileEdit

from napari_sparse_sem.recon.gan import DEFAULT_GAN_WEIGHTS, GAN_METHODS


class GANWeights:
    """A weights file chooser for the GAN methods (``widget`` goes into the form)."""

    def __init__(self) -> None:
        self.widget = FileEdit(
            label="GAN weights",
            mode="r",
            filter="*.safetensors",
            value=str(DEFAULT_GAN_WEIGHTS),
            tooltip="generator weights (.safetensors) from `sparse-sem train-gan` or the Train GAN widget; "
            f"the shipped default is {DEFAULT_GAN_WEIGHTS.name}",
        )

    def show_for(self, methods: Iterable[str]) -> None:
        """Show the field only when one of ``methods`` is a GAN method."""
        self.widget.visible = any(m in GAN_METHODS for m in methods)

    def options(self, method: str) -> dict[str, Any]:
        """``{"weights": path}`` for a GAN method (ValueError when the file does not exist), ``{}`` otherwise."""
        if method not in GAN_METHODS:
            return {}
        value = self.widget.value
        path = Path(str(value)) if value not in (None, "") else DEFAULT_GAN_WEIGHTS
        if not path.is_file():
            raise ValueError(f"GAN weights {str(path)!r} is not a file; choose a .safetensors file from train-gan")
        return {"weights": str(path)}
