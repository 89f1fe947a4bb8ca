"""Partial-scan GAN reconstruction (Ede & Beanland, Scientific Reports 10, 2020): a trained generator completes a
partial scan in one forward pass.

Two methods share one weights file: ``gan-mse`` is the generator after the mean-squared-error pre-training (the higher
PSNR, a smoother look) and ``gan`` the same generator after adversarial fine-tuning (realistic texture, a little lower
PSNR). Weights are safetensors with a model card (:mod:`napari_sparse_sem.nn.weights`); the
shipped default ``weights/gan_flyem.safetensors`` was trained on FlyEM slices 0-199 with spiral, jittered-grid and
random masks of 2-20 % coverage (its card holds the command). Networks see any slice size: slices up to ``tile`` px are
done whole, larger ones in overlapping tiles blended without seams (:mod:`napari_sparse_sem.recon.tiles`). The
generator's architecture, training and losses are in :mod:`napari_sparse_sem.nn.gan` and
:mod:`napari_sparse_sem.recon.gan_training`.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_sparse_sem.params import Spec, param
from napari_sparse_sem.recon.base import Reconstructor, check_slab, register
from napari_sparse_sem.recon.interp import fill_nearest
from napari_sparse_sem.recon.tiles import Tiling
from napari_sparse_sem.runtime import pick_device

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
SHIPPED_GAN_WEIGHTS = {
    "flyem": WEIGHTS_DIR / "gan_flyem.safetensors",
    "flyem-context1": WEIGHTS_DIR / "gan_flyem_context1.safetensors",
}
"""Weights shipped with the package, by name (the ``weights`` option takes a name or a path): Ede's 2D generator and
our ±1-slice generator for stacks, both trained on FlyEM slices 0-199 (their cards hold the commands)."""
DEFAULT_GAN_WEIGHTS = SHIPPED_GAN_WEIGHTS["flyem-context1"]
CARD_KIND = "partial-scan-gan"
VARIANTS = ("gan", "mse")
"""Generators a weights file can hold, as tensor-name prefixes: ``gan.`` (adversarial) and ``mse.`` (pre-trained)."""


def filled_input(values: np.ndarray, mask: np.ndarray, fill: str) -> np.ndarray:
    """The generator's (2, y, x) float32 input for one slice: the partial scan with unscanned pixels filled, and the
    mask. A slice without scanned pixels (a missing neighbour) gives two zero channels."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.zeros((2, *mask.shape), dtype=np.float32)
    if fill == "nearest":
        image = fill_nearest(values, mask)
    elif fill == "zeros":
        image = np.where(mask, values, 0.0)
    else:
        raise ValueError(f"unknown fill {fill!r}")
    return np.stack([image.astype(np.float32), mask.astype(np.float32)])


def slab_input(sparse: np.ndarray, mask: np.ndarray, center: int, context: int, fill: str) -> np.ndarray:
    """The (2 (2 context + 1), y, x) input for slice ``center`` of a (k, y, x) slab: :func:`filled_input` of the
    slices ``center - context .. center + context`` in order; slices outside the slab count as unscanned (zeros)."""
    planes = []
    for z in range(center - context, center + context + 1):
        if 0 <= z < sparse.shape[0]:
            planes.append(filled_input(sparse[z], mask[z], fill))
        else:
            planes.append(np.zeros((2, *sparse.shape[1:]), dtype=np.float32))
    return np.concatenate(planes)


def resolve_weights(weights: str | Path | None) -> Path:
    """The file of a ``weights`` option: ``None`` → the shipped default, a shipped name (:data:`SHIPPED_GAN_WEIGHTS`)
    → its file, anything else → a path."""
    if weights in (None, ""):
        return DEFAULT_GAN_WEIGHTS
    if isinstance(weights, str) and weights in SHIPPED_GAN_WEIGHTS:
        return SHIPPED_GAN_WEIGHTS[weights]
    return Path(weights)


def load_generator(path: str | Path | None, variant: str, device: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """The generator ``variant`` (``gan`` or ``mse``) of a weights file (``None``: the shipped default) and its card.

    Clear errors: a missing file or card, a pickle or other non-safetensors file, a card for another kind of network,
    a file without this variant (e.g. ``gan`` from MSE-only training) and tensors that do not fit the card's
    architecture.
    """
    from napari_sparse_sem.nn.gan import GANConfig, Generator
    from napari_sparse_sem.nn.weights import load_weights

    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {VARIANTS}, got {variant!r}")
    path = resolve_weights(path)
    if path.parent == WEIGHTS_DIR and not path.is_file():
        raise FileNotFoundError(
            f"the shipped GAN weights are missing ({path}); reinstall napari-sparse-sem or pass weights=FILE "
            "(train your own with `sparse-sem train-gan`)"
        )
    tensors, card = load_weights(path)
    if card.get("kind") != CARD_KIND:
        what = f"a {card['kind']!r} network" if card.get("kind") else "a network whose model card names no kind"
        raise ValueError(
            f"{path} holds {what}, not a partial-scan GAN generator; pick weights written by `sparse-sem train-gan`"
        )
    try:
        config = GANConfig.from_dict(dict(card["architecture"]))
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"the model card of {path} has no valid GAN architecture: {exc}") from None
    prefix = f"{variant}."
    state = {name[len(prefix) :]: tensor for name, tensor in tensors.items() if name.startswith(prefix)}
    if not state:
        present = sorted({name.split(".", 1)[0] for name in tensors})
        method = "gan" if variant == "gan" else "gan-mse"
        raise ValueError(
            f"{path} has no {variant!r} generator (it holds {present}), so it cannot serve method {method!r}; "
            + ("it was trained without the adversarial phase, use gan-mse" if variant == "gan" else "retrain it")
        )
    net = Generator(config)
    try:
        net.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        first = str(exc).splitlines()[0:3]
        raise ValueError(
            f"the tensors in {path} do not fit the architecture in its model card ({' '.join(first)}); the weights "
            "and card do not belong together — re-save them with `sparse-sem train-gan`"
        ) from None
    net.eval()
    return net.to(device), card


@dataclass
class GANOptions(Spec):
    """Options of ``gan`` and ``gan-mse``; see :class:`_GAN`."""

    kind = "GAN options"

    weights: str | None = param(
        None,
        label="GAN weights",
        help="a .safetensors file from `sparse-sem train-gan`, or the name of shipped weights (flyem, "
        "flyem-context1); empty: the shipped default",
    )
    tile: int = param(512, low=64, unit="px", help="slices larger than this are done in overlapping tiles")
    overlap: int = param(32, low=0, unit="px", help="overlap of neighbouring tiles (less than half a tile)")
    keep_scanned: bool = param(
        True, label="keep scanned", help="put the measured values back at scanned pixels (exact in a simulated scan)"
    )
    augment: bool = param(
        False, help="average the outputs of the 8 flips/rotations of the input (8x the time, a little smoother)"
    )

    def __post_init__(self) -> None:
        if isinstance(self.weights, os.PathLike):
            self.weights = os.fspath(self.weights)  # a path given as such is kept as text (JSON-ready)
        super().__post_init__()

    def validate(self) -> None:
        if self.overlap >= self.tile // 2:
            raise ValueError(f"overlap must be in [0, tile/2), got {self.overlap}")


class _GAN(Reconstructor):
    """Shared inference of ``gan`` and ``gan-mse``; see the module docstring.

    Options (:class:`GANOptions`): ``weights`` (a ``.safetensors`` file from ``sparse-sem train-gan``, or the name of
    shipped weights; ``None``: the shipped default; a generator with neighbour ``context`` whose card names
    ``single_slice_weights`` hands slices without any neighbour — a 2D image — to that 2D generator),
    ``tile`` (slices larger than this are done in tiles), ``overlap`` (tile overlap in px), ``keep_scanned`` (put the
    measured values back at scanned pixels; they are exact in a simulated scan), ``augment`` (average the outputs of
    the 8 flips/rotations of the input: 8× the time for +0.1 dB with ``gan-mse`` on FlyEM spirals at 5 %; it washes
    out the texture of ``gan``).
    """

    variant = "gan"
    options = GANOptions
    gpu = True
    tile_halo = 32  # a network's receptive field: tiles of big slices are read with this margin
    needs_weights = True
    weights_kind = CARD_KIND

    def __init__(self, device: str = "cpu", **options: Any) -> None:
        super().__init__(device, **options)
        settings: GANOptions = self.settings
        self.device = pick_device(device)
        self.weights = resolve_weights(settings.weights)
        self.tile = int(settings.tile)
        self.overlap = int(settings.overlap)
        self.keep_scanned = bool(settings.keep_scanned)
        self.augment = bool(settings.augment)
        self.net, self.card = load_generator(self.weights, self.variant, self.device)
        self.fill = self.net.config.fill
        self.context = self.net.config.context  # the volume driver hands over ±context neighbours
        self._single: _GAN | None = None  # the 2D companion, loaded when a slice without neighbours comes
        self.chosen_weights = settings.weights not in (None, "")  # the domain guard never overrides a choice
        self.weights_note: str | None = None
        self.domain: Any = None  # the guard's DomainCheck (quality.domain) after prepare()
        self._all_2d = False  # the guard switched every slice to the 2D companion
        self._used_single = False  # the last slice was done by the 2D companion

    def prepare(self, sparse: Any, mask: Any, slices: list[int]) -> None:
        """The domain guard (:mod:`napari_sparse_sem.quality.domain`), when the user chose no weights: with
        neighbour context and a 2D companion (``single_slice_weights``), measure how alike neighbouring slices are
        from the scanned pixels of a few slice pairs and compare with FlyEM under the same masks; when the ±context
        weights do not fit, every slice goes to the 2D weights. Unlike intensities or voxel size only add a note
        (:attr:`weights_note`, in :meth:`slice_info`)."""
        from napari_sparse_sem.quality.domain import check_domain

        self.context, self._all_2d, self.weights_note, self.domain = self.net.config.context, False, None, None
        if self.chosen_weights or len(tuple(sparse.shape)) != 3:
            return
        companion = self.card.get("single_slice_weights") if self.context else None
        check = check_domain(sparse, mask, self.card, slices, context=self.context if companion else 0)
        self.domain = check
        notes = list(check.notes)
        if check.context_fits is False:
            self._all_2d, self.context = True, 0
            name = next((k for k, v in SHIPPED_GAN_WEIGHTS.items() if v == self.weights), self.weights.name)
            two_d = next((k for k, v in SHIPPED_GAN_WEIGHTS.items() if v.name == companion), str(companion))
            reason = (
                "Every slice has the same mask, so neighbouring slices add no new scanned pixels (the 2D weights do "
                "better then, on FlyEM too)"
                if check.same_masks
                else f"Neighbouring slices differ like pixels {check.z_step_px:.1f} px apart within a slice "
                f"(measured on the scanned pixels of {check.statistics.slice_pairs} slice pairs), against "
                f"{check.reference_z_step_px:.1f} px for the FlyEM training data under the same masks"
            )
            notes.insert(
                0,
                f"{reason}, so the ±{self.net.config.context}-slice weights {name!r} do not fit this stack: every "
                f"slice was done with the 2D weights {two_d!r} instead; --weights {name} (option weights={name}) "
                "keeps them.",
            )
        self.weights_note = " ".join(notes) if notes else None

    def reconstruct_slice(self, sparse: np.ndarray, mask: np.ndarray, center: int) -> np.ndarray:
        sparse, mask = check_slab(sparse, mask, center)
        values, known = np.asarray(sparse[center], dtype=np.float32), mask[center]
        if not known.any():
            raise ValueError("the slice has no scanned pixels; check the mask")
        self._used_single = self._all_2d or bool(
            self.context and sparse.shape[0] == 1 and self.card.get("single_slice_weights")
        )
        if self._all_2d:
            return self._single_slice_method().reconstruct_slice(
                sparse[center : center + 1], mask[center : center + 1], 0
            )
        if self.context and sparse.shape[0] == 1 and self.card.get("single_slice_weights"):
            return self._single_slice_method().reconstruct_slice(sparse, mask, center)
        inputs = slab_input(sparse, mask, center, self.context, self.fill)
        tiling = Tiling(known.shape, self.tile, self.overlap) if max(known.shape) > self.tile else None
        if tiling is None:
            out = self.predict(inputs[None])[0]
        else:
            out = tiling.blend([self.predict(inputs[None, :, by, bx])[0] for by, bx in tiling.boxes])
        out = np.clip(out, 0.0, 1.0).astype(np.float32)
        if self.keep_scanned:
            out[known] = values[known]
        return out

    def _single_slice_method(self) -> _GAN:
        if self._single is None:
            companion = self.weights.parent / str(self.card["single_slice_weights"])
            self._single = type(self)(
                self.device,
                weights=str(companion),
                tile=self.tile,
                overlap=self.overlap,
                keep_scanned=self.keep_scanned,
                augment=self.augment,
            )
        return self._single

    def predict(self, inputs: np.ndarray) -> np.ndarray:
        """Generator output for (n, channels, y, x) inputs → (n, y, x) float32 (no clipping); with ``augment`` the mean
        over the 8 flips/rotations, each transformed back."""
        if not self.augment:
            return self._forward(inputs)
        total = np.zeros((inputs.shape[0], *inputs.shape[2:]), dtype=np.float32)
        for turns in range(4):
            for flip in (False, True):
                x = np.rot90(inputs, turns, axes=(2, 3))
                x = x[..., ::-1] if flip else x
                out = self._forward(x)
                out = out[..., ::-1] if flip else out
                total += np.rot90(out, -turns, axes=(1, 2))
        return total / 8.0

    def _forward(self, inputs: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            x = torch.from_numpy(np.ascontiguousarray(inputs)).to(self.device)
            out, _ = self.net(x)
        return out[:, 0].float().cpu().numpy()

    def slice_info(self) -> dict[str, Any]:
        info: dict[str, Any] = {"weights": self.weights.name}
        if self._used_single:  # the 2D companion did this slice (guard, or a slice without neighbours)
            info["weights"] = str(self.card["single_slice_weights"])
        if self.weights_note:
            info["weights_note"] = self.weights_note
        return info

    def close(self) -> None:
        if self.device.startswith("cuda"):
            import torch

            self.net = self.net.to("cpu")
            if self._single is not None:
                self._single.close()
            torch.cuda.empty_cache()


@register
class GAN(_GAN):
    name = "gan"
    description = "Partial-scan GAN (Ede): a trained generator, adversarially fine-tuned (realistic texture)."
    variant = "gan"


@register
class GANMSE(_GAN):
    name = "gan-mse"
    description = "Partial-scan GAN generator after MSE training only (Ede): highest PSNR, smoother look."
    variant = "mse"


GAN_METHODS = (GAN.name, GANMSE.name)
"""The methods that load generator weights (``weights`` option, ``--weights`` on the command line); faces should ask
the registry instead (``methods_with(needs_weights=True)``)."""


def export_weights(
    source: str | Path,
    out: str | Path,
    half: bool = True,
    single_slice_weights: str | None = None,
    command: str | None = None,
    overwrite: bool = False,
) -> Path:
    """Copy the generators of a trained weights file to ``out`` (float16 with ``half``: half the size, and the
    outputs differ by < 0.01 dB), with its card plus ``exported_from``, ``dtype`` and optionally
    ``single_slice_weights`` (the file name, beside ``out``, of a 2D generator for slices without neighbours)."""
    from napari_sparse_sem.nn.weights import load_weights, save_weights

    tensors, card = load_weights(source)
    if card.get("kind") != CARD_KIND:
        raise ValueError(f"{source} is not a partial-scan GAN weights file (its card says {card.get('kind')!r})")
    if half:
        tensors = {name: t.half() if t.is_floating_point() else t for name, t in tensors.items()}
    card = {k: v for k, v in card.items() if k not in ("sha256", "tensors", "format", "weights_file")}
    card.update(exported_from=Path(source).name, dtype="float16" if half else "float32", export_command=command)
    if single_slice_weights:
        card["single_slice_weights"] = single_slice_weights
    path, _ = save_weights(out, tensors, card, overwrite=overwrite)
    return path
