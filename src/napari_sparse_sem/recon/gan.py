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
import warnings
from collections.abc import Callable, Generator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_sparse_sem.params import Spec, param
from napari_sparse_sem.recon.base import Reconstructor, SlabInput, SliceResult, check_slab, register
from napari_sparse_sem.recon.gan_inputs import PlaneCache, assemble_inputs, filled_input, slab_input
from napari_sparse_sem.recon.tiles import Tiling
from napari_sparse_sem.runtime import Progress, pick_device

__all__ = [
    "AUTO_BATCH",
    "CARD_KIND",
    "DEFAULT_GAN_WEIGHTS",
    "GAN",
    "GANMSE",
    "GAN_METHODS",
    "PRECISIONS",
    "SHIPPED_GAN_WEIGHTS",
    "VARIANTS",
    "WEIGHTS_DIR",
    "GANOptions",
    "export_weights",
    "filled_input",
    "load_generator",
    "resolve_weights",
    "slab_input",
]

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
SHIPPED_GAN_WEIGHTS = {
    "flyem": WEIGHTS_DIR / "gan_flyem.safetensors",
    "flyem-context1": WEIGHTS_DIR / "gan_flyem_context1.safetensors",
}
"""Weights shipped with the package, by name (the ``weights`` option takes a name or a path): Ede's 2D generator and
our ±1-slice generator for stacks, both trained on FlyEM slices 0-199 (their cards hold the commands)."""
DEFAULT_GAN_WEIGHTS = SHIPPED_GAN_WEIGHTS["flyem-context1"]
CARD_KIND = "partial-scan-gan"
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
"""The ``precision`` option: the dtype of the forward pass (autocast), ``auto`` being float16 on CUDA only."""
AUTO_BATCH = {"cpu": 1, "gpu": 16}
"""Slices per forward pass when ``batch`` is not given: on the CPU bigger batches only cost time (measured at 250²,
one thread: 54 ms per slice at batch 1, 57 at 4, 65 at 8, CPU time of the whole run)."""
VARIANTS = ("gan", "mse")
"""Generators a weights file can hold, as tensor-name prefixes: ``gan.`` (adversarial) and ``mse.`` (pre-trained)."""


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
    batch: int | None = param(
        None,
        low=1,
        none_means=f"auto: {AUTO_BATCH['gpu']} on a GPU, {AUTO_BATCH['cpu']} on the CPU",
        help=f"slices (or tiles of a big slice) per forward pass (none: {AUTO_BATCH['gpu']} on a GPU, "
        f"{AUTO_BATCH['cpu']} on the CPU); only changes speed and memory, not the result (GPU out of memory: halved)",
    )
    precision: str = param(
        "auto",
        choices=PRECISIONS,
        help="auto: float16 autocast on CUDA, float32 elsewhere; bfloat16 and float16 anywhere (both within 0.01 dB "
        "of float32 on FlyEM)",
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
    out the texture of ``gan``), ``batch`` (slices, or tiles of one big slice, per forward pass) and ``precision``.

    Slices come in groups of ``batch`` consecutive slices (:meth:`slice_groups`): each distinct filled plane of a
    group is built once (±context slabs share them; in threads, as many as torch may use) and copied to the device
    once, the slabs' inputs are gathered there and go through the network in one forward pass (channels-last; under
    autocast with ``precision``; on CUDA from a pinned buffer). A CUDA out-of-memory error halves the batch, then
    falls back to the CPU, with a warning.
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
        auto = AUTO_BATCH["cpu" if self.device == "cpu" else "gpu"]
        self.batch = auto if settings.batch is None else int(settings.batch)  # halved on CUDA out-of-memory
        self.precision = str(settings.precision)
        self.net, self.card = load_generator(self.weights, self.variant, self.device)
        self._channels_last()
        self.fill = self.net.config.fill
        self.context = self.net.config.context  # the volume driver hands over ±context neighbours
        self._single: _GAN | None = None  # the 2D companion, loaded when a slice without neighbours comes
        self.chosen_weights = settings.weights not in (None, "")  # the domain guard never overrides a choice
        self.weights_note: str | None = None
        self.domain: Any = None  # the guard's DomainCheck (quality.domain) after prepare()
        self._all_2d = False  # the guard switched every slice to the 2D companion
        self._used_single = False  # the last slice was done by the 2D companion
        self._shape: tuple[int, ...] | None = None  # the (y, x) size of the run's slices, from prepare()
        self._planes = PlaneCache()
        self._staging: Any = None  # pinned host buffer for CUDA copies
        self._executor: ThreadPoolExecutor | None = None
        self._threads: int | None = None  # input-building threads (None: not decided yet)

    def prepare(self, sparse: Any, mask: Any, slices: list[int]) -> None:
        """The domain guard (:mod:`napari_sparse_sem.quality.domain`), when the user chose no weights: with
        neighbour context and a 2D companion (``single_slice_weights``), measure how alike neighbouring slices are
        from the scanned pixels of a few slice pairs and compare with FlyEM under the same masks; when the ±context
        weights do not fit, every slice goes to the 2D weights. Unlike intensities or voxel size only add a note
        (:attr:`weights_note`, in :meth:`slice_info`)."""
        from napari_sparse_sem.quality.domain import check_domain

        self.context, self._all_2d, self.weights_note, self.domain = self.net.config.context, False, None, None
        self._shape = tuple(int(n) for n in tuple(sparse.shape)[-2:])
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

    # -- slices, alone or in groups ----------------------------------------------------------------------------
    def slice_groups(self, slices: list[int]) -> list[list[int]]:
        """Runs of ``batch`` consecutive slices (one slice at a time when slices are big enough for tiles: the
        tiles of each slice are batched instead, and memory stays bounded by one slice)."""
        size = self.batch
        if self._shape is not None and max(self._shape) > self.tile:
            size = 1
        return [slices[i : i + size] for i in range(0, len(slices), size)]

    def reconstruct_batch_job(self, slabs: list[SlabInput]) -> Generator[Progress, None, list[SliceResult]]:
        """One group of :meth:`slice_groups` through :meth:`reconstruct_batch` (no progress between: one pass)."""
        return self.reconstruct_batch(slabs)
        yield  # pragma: no cover - makes this a generator

    def reconstruct_slice(self, sparse: np.ndarray, mask: np.ndarray, center: int) -> np.ndarray:
        return self.reconstruct_batch([(sparse, mask, center)])[0][0]

    def reconstruct_batch(self, slabs: list[SlabInput]) -> list[SliceResult]:
        """``(image, info)`` per ``(sparse, mask, center)`` slab: every slice of the same size in one forward pass
        (chunks of ``batch``), big slices in batched tiles; equal to doing them one by one up to float rounding."""
        routes = [self._route(*slab) for slab in slabs]
        images: list[np.ndarray | None] = [None] * len(routes)
        for owner in dict.fromkeys(route[0] for route in routes):  # self and/or the 2D companion, in order
            index = [i for i, route in enumerate(routes) if route[0] is owner]
            for i, image in zip(index, owner._images([routes[i][1:4] for i in index]), strict=True):
                images[i] = image
        if routes:
            self._used_single = routes[-1][4]
        return [(image, self._info(route[4])) for image, route in zip(images, routes, strict=True)]  # type: ignore[misc]

    def _route(
        self, sparse: np.ndarray, mask: np.ndarray, center: int
    ) -> tuple[_GAN, np.ndarray, np.ndarray, int, bool]:
        """Which generator does this slab's slice (self or the 2D companion), the slab it sees, and whether it is
        the companion."""
        sparse, mask = check_slab(sparse, mask, center)
        if not mask[center].any():
            raise ValueError("the slice has no scanned pixels; check the mask")
        companion = bool(self.card.get("single_slice_weights"))
        if self._all_2d:
            return self._single_slice_method(), sparse[center : center + 1], mask[center : center + 1], 0, True
        if self.context and sparse.shape[0] == 1 and companion:
            return self._single_slice_method(), sparse, mask, center, True
        return self, sparse, mask, center, False

    def _images(self, slabs: list[tuple[np.ndarray, np.ndarray, int]]) -> list[np.ndarray]:
        """This generator's reconstructions of the centre slices of ``slabs``."""
        planes, refs = self._planes.inputs(slabs, self.context, self.fill, self._pool())
        raw: list[np.ndarray | None] = [None] * len(slabs)
        whole: dict[tuple[int, ...], list[int]] = {}
        for i, (_, mask, _) in enumerate(slabs):
            shape = tuple(mask.shape[1:])
            if max(shape) > self.tile:
                raw[i] = self._tiled(assemble_inputs(planes, [refs[i]], shape)[0])
            else:
                whole.setdefault(shape, []).append(i)
        for index in whole.values():
            chunks = self._gather(planes, [refs[i] for i in index])
            for i, out in zip(index, self._predict_all(len(index), chunks), strict=True):
                raw[i] = out
        images = []
        for out, (sparse, mask, center) in zip(raw, slabs, strict=True):
            image = np.clip(out, 0.0, 1.0).astype(np.float32)
            if self.keep_scanned:
                known = mask[center]
                image[known] = np.asarray(sparse[center], dtype=np.float32)[known]
            images.append(image)
        return images

    def _gather(self, planes: list[np.ndarray], refs: list[list[int | None]]) -> Callable[[int, int], Any]:
        """Inputs of slabs ``a..b-1`` as a device tensor: each distinct plane is copied to the device once (±context
        slabs share them) and the slabs' inputs are gathered there."""
        import torch

        used = sorted({i for row in refs for i in row if i is not None})
        slot = {u: j for j, u in enumerate(used)}
        table = self._to_device([planes[u] for u in used], zero=True)  # the last plane: zeros
        index = torch.tensor([[len(used) if i is None else slot[i] for i in row] for row in refs]).to(table.device)
        return lambda a, b: table[index[a:b]].flatten(1, 2)

    def _tiled(self, inputs: np.ndarray) -> np.ndarray:
        """A big slice's (channels, y, x) input in overlapping tiles, ``batch`` tiles per pass, blended."""
        tiling = Tiling(tuple(inputs.shape[1:]), self.tile, self.overlap)  # type: ignore[arg-type]
        boxes = tiling.boxes

        def chunk(a: int, b: int) -> Any:
            return self._to_device([inputs[:, by, bx] for by, bx in boxes[a:b]])

        return tiling.blend(self._predict_all(len(boxes), chunk))

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
                batch=self.batch,
                precision=self.precision,
            )
        return self._single

    # -- the network ---------------------------------------------------------------------------------------------
    def _predict_all(self, count: int, inputs: Callable[[int, int], Any]) -> list[np.ndarray]:
        """Outputs for the ``count`` inputs that ``inputs(a, b)`` builds (items ``a..b-1``), ``batch`` per pass. On
        CUDA out-of-memory the batch is halved and the pass retried; at one item per pass it goes on on the CPU."""
        import torch

        outputs: list[np.ndarray] = []
        while len(outputs) < count:
            start = len(outputs)
            chunk = inputs(start, min(count, start + self.batch))
            try:
                outputs.extend(self.predict(chunk))
            except torch.cuda.OutOfMemoryError:
                if torch.cuda.is_available():
                    torch.cuda.empty_cache()
                if self.batch > 1:
                    self.batch = max(1, self.batch // 2)
                    warnings.warn(
                        f"{self.name}: the GPU ran out of memory; going on with batch={self.batch}",
                        RuntimeWarning,
                        stacklevel=2,
                    )
                    continue
                if self.device == "cpu":
                    raise
                warnings.warn(
                    f"{self.name}: the GPU ran out of memory even with one slice per pass; going on on the CPU",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self.device = "cpu"
                self.net = self.net.to("cpu")
        return outputs

    def predict(self, inputs: Any) -> np.ndarray:
        """Generator output for (n, channels, y, x) inputs (numpy, or a torch tensor) → (n, y, x) float32 (no
        clipping); with ``augment`` the mean over the 8 flips/rotations, each transformed back."""
        import torch

        if isinstance(inputs, np.ndarray):
            inputs = self._to_device(list(inputs))
        if not self.augment:
            return self._forward(inputs)
        total = np.zeros((inputs.shape[0], *inputs.shape[2:]), dtype=np.float32)
        for turns in range(4):
            for flip in (False, True):
                x = torch.rot90(inputs, turns, dims=(2, 3))
                out = self._forward(torch.flip(x, dims=(3,)) if flip else x)
                out = out[..., ::-1] if flip else out
                total += np.rot90(out, -turns, axes=(1, 2))
        return total / 8.0

    def autocast_dtype(self) -> Any:
        """The torch dtype the forward pass is autocast to (``precision``; ``auto``: float16 on CUDA), or None for
        plain float32."""
        import torch

        precision = self.precision
        if precision == "auto":
            precision = "float16" if self.device.startswith("cuda") else "float32"
        return {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[precision]

    def _channels_last(self) -> None:
        """Channels-last weights on CPU and CUDA (faster convolutions: measured on the CPU at 250², batch 1-8)."""
        import torch

        if self.device.split(":")[0] in ("cpu", "cuda"):
            self.net = self.net.to(memory_format=torch.channels_last)

    def _to_device(self, arrays: list[np.ndarray], zero: bool = False) -> Any:
        """``arrays`` (and a zero one with ``zero``) stacked as one float32 tensor on the device; on CUDA through a
        reused pinned buffer, copied without blocking."""
        import torch

        shape = (len(arrays) + int(zero), *arrays[0].shape)
        cuda = self.device.startswith("cuda")
        if cuda:
            size = int(np.prod(shape))
            if self._staging is None or self._staging.numel() < size:
                self._staging = torch.empty(size, dtype=torch.float32, pin_memory=True)
            host = self._staging[:size].view(shape)
        else:
            host = torch.empty(shape, dtype=torch.float32)
        for j, array in enumerate(arrays):
            host[j].copy_(torch.from_numpy(np.asarray(array, dtype=np.float32)))
        if zero:
            host[-1].zero_()
        return host.to(self.device, non_blocking=cuda)

    def _forward(self, x: Any) -> np.ndarray:
        import torch

        amp = self.autocast_dtype()
        with torch.inference_mode():
            x = x.to(self.device)
            if self.device.split(":")[0] in ("cpu", "cuda"):
                x = x.contiguous(memory_format=torch.channels_last)
            with torch.autocast(self.device.split(":")[0], dtype=amp, enabled=amp is not None):
                out, _ = self.net(x)
            out = out[:, 0].float()
            if amp is torch.float16 and not bool(torch.isfinite(out).all()):
                warnings.warn(
                    f"{self.name}: float16 overflowed on these inputs; going on in float32",
                    RuntimeWarning,
                    stacklevel=2,
                )
                self.precision = "float32"
                out, _ = self.net(x)
                out = out[:, 0].float()
        return out.cpu().numpy()

    def _pool(self) -> Any:
        """Threads for building inputs (the nearest fill releases the GIL): as many as torch may use here (the
        ``--threads`` setting, :mod:`napari_sparse_sem.threads`), at most 32; None for one."""
        import torch

        if self._threads is None:
            self._threads = max(1, min(32, torch.get_num_threads()))
        if self._executor is None and self._threads > 1:
            self._executor = ThreadPoolExecutor(self._threads, "gan-inputs")
        return self._executor

    def _info(self, single: bool) -> dict[str, Any]:
        info: dict[str, Any] = {"weights": self.weights.name}
        if single:  # the 2D companion did this slice (guard, or a slice without neighbours)
            info["weights"] = str(self.card["single_slice_weights"])
        if self.weights_note:
            info["weights_note"] = self.weights_note
        return info

    def slice_info(self) -> dict[str, Any]:
        return self._info(self._used_single)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None
        self._planes = PlaneCache()
        if self._single is not None:
            self._single.close()
        if self.device.startswith("cuda"):
            import torch

            self.net = self.net.to("cpu")
            self._staging = None
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
