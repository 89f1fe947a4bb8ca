"""Method ``self``: reconstruct a sparse scan with a generator trained on that scan alone (self-supervised).

The weights come from :func:`napari_sparse_sem.recon.self_training.train_self_job` (``sparse-sem train-self`` or the
*Train on this scan* widget); inference is that of ``gan-mse`` (one forward pass per slice, tiles for big slices, the
measured values put back at scanned pixels). Unlike ``gan-mse`` there is no shipped default: the ``weights`` option is
required, and a file that was not trained self-supervised is refused with advice.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from napari_sparse_sem.params import param
from napari_sparse_sem.recon.base import register
from napari_sparse_sem.recon.gan import _GAN, SHIPPED_GAN_WEIGHTS, GANOptions

TRAINING_KIND = "self-supervised"
"""``card["training"]["kind"]`` of weights method ``self`` takes (written by :mod:`.self_training`)."""
HOW_TO_TRAIN = (
    "train them on your scan with `sparse-sem train-self SPARSE --mask MASK --out W.safetensors` or the "
    "*Train on this scan* widget"
)


@dataclass
class SelfOptions(GANOptions):
    """Options of ``self``: those of ``gan-mse``, with ``weights`` required."""

    kind = "self options"

    weights: str | None = param(
        None,
        label="self-trained weights",
        help="the .safetensors file written by `sparse-sem train-self` (or Train on this scan); required",
    )


@register
class SelfSupervised(_GAN):
    """A generator trained self-supervised on the scan itself (see the module docstring); options:
    :class:`SelfOptions`."""

    name = "self"
    description = (
        "Generator trained on this sparse scan alone (self-supervised: hidden scanned pixels as targets); needs "
        "weights from `sparse-sem train-self`."
    )
    variant = "mse"
    options = SelfOptions

    def __init__(self, device: str = "cpu", **options: Any) -> None:
        weights = options.get("weights")
        if weights in (None, ""):
            raise ValueError(f"method 'self' needs weights=FILE: {HOW_TO_TRAIN}")
        if isinstance(weights, str) and weights in SHIPPED_GAN_WEIGHTS:
            raise ValueError(
                f"{weights!r} names the shipped dense-trained weights: use method gan-mse for them; method 'self' "
                f"takes weights trained on your scan ({HOW_TO_TRAIN})"
            )
        super().__init__(device, **options)
        training = self.card.get("training") or {}
        if training.get("kind") != TRAINING_KIND:
            raise ValueError(
                f"{self.weights} holds a generator trained on dense reference slices, not on a sparse scan "
                f"(self-supervised): use it with method gan-mse, or {HOW_TO_TRAIN}"
            )
