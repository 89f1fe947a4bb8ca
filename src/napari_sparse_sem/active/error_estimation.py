"""Per-pixel error estimates of the reconstruction of a sparse scan: where is the reconstruction probably wrong?

Active acquisition rescans where the estimated error is high. Every estimator maps ``(recon, sparse, mask)`` — the
reconstruction, the zero-filled sparse scan and the boolean mask of scanned pixels, 2D float32 in [0, 1] — to a float32
``(H, W)`` map, non-negative and finite, *higher = larger expected error*. The scanned pixels are known, so their
estimate is 0 (``zero_scanned=False`` keeps the raw map).

* ``unet`` — the *binarized error estimation* of Mi et al. ("Learning guided electron microscopy with active
  acquisition", MICCAI 2020, section 2.2): a U-Net classifies each pixel as ``|I_HR - I_SR| > ε``, where ε is the mean
  absolute error of that training image, and its sigmoid output (a probability) is the estimate. The paper feeds the
  concatenation of I_SR and I_LR; we feed the reconstruction, the zero-filled sparse scan and the mask (3 channels),
  each image standardised by the reconstruction's mean and standard deviation — the binarized target does not change
  under a brightness/contrast change, so neither does the input. Trained by :mod:`.train_estimator`; the shipped
  default (``weights/error_unet_flyem.safetensors``) was trained on FlyEM slices 0-199 with a ``lowres:4`` initial scan
  and ``linear`` reconstruction; on slices 200-249 its correlation with the true error (unscanned pixels) is 0.44
  against 0.17 for ``gradient`` — but at ``lowres:8`` it falls to 0.17, below ``gradient`` (0.23), so train one for
  other scans (its model card says how it was made and how well it does). The first scan it sees is compared with
  the card's ``domain`` block (intensity statistics, :mod:`napari_sparse_sem.quality.domain`): a scan unlike FlyEM
  gets a warning and ``estimator.info()["weights_note"]``.
* ``gradient`` — Sobel gradient magnitude of the reconstruction, Gaussian-smoothed (``smooth`` px): errors of an
  interpolation sit at edges (the gradient baseline of the paper's Table 1); the blurred map was found better at
  guiding rescans than the raw one.
* ``variance`` — local variance of the reconstruction in a ``window`` × ``window`` box.
* ``entropy`` — local Shannon entropy (bits) of the 8-bit reconstruction in a disk of ``radius`` px (the paper's
  entropy baseline, computed here on the reconstruction itself).
* ``oracle`` — the true error ``|reference - recon|``; needs the dense ``reference`` and is an upper bound for
  benchmarks, not something a microscope can compute.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from scipy import ndimage

ESTIMATORS: tuple[str, ...] = ("unet", "gradient", "variance", "entropy", "oracle")
"""Names accepted by :func:`make_estimator`."""

UNET_INPUTS: tuple[str, ...] = ("recon", "sparse", "mask")
"""Input channels of the ``unet`` estimator, in order; a weights file's card must list the same (``inputs``)."""

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
DEFAULT_UNET_WEIGHTS = WEIGHTS_DIR / "error_unet_flyem.safetensors"
"""The shipped ``unet`` estimator (FlyEM, ``lowres:4``, ``linear``)."""

_MIN_STD = 1e-3  # floor of the standardisation scale (a flat image would divide by 0)


def _as_float2d(image: Any, what: str) -> np.ndarray:
    array = np.asarray(image)
    if array.ndim != 2:
        raise ValueError(f"{what} must be a 2D (y, x) image, got shape {array.shape}")
    array = array.astype(np.float32, copy=False)
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{what} contains NaN or inf values")
    return array


def check_inputs(
    recon: Any, sparse: Any, mask: Any, reference: Any = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """Validated float32 ``recon``/``sparse`` (and ``reference``) and a boolean ``mask``, all of one 2D shape."""
    rec = _as_float2d(recon, "recon")
    spa = _as_float2d(sparse, "sparse")
    msk = np.asarray(mask)
    if msk.ndim != 2:
        raise ValueError(f"mask must be a 2D (y, x) image, got shape {msk.shape}")
    msk = msk.astype(bool, copy=False)
    ref = None if reference is None else _as_float2d(reference, "reference")
    shapes = {rec.shape, spa.shape, msk.shape} | ({ref.shape} if ref is not None else set())
    if len(shapes) != 1:
        raise ValueError(
            "recon, sparse, mask (and reference) must have the same shape, got "
            + ", ".join(str(a.shape) for a in (rec, spa, msk, ref) if a is not None)
        )
    return rec, spa, msk, ref


def unet_inputs(recon: np.ndarray, sparse: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """The ``(3, H, W)`` float32 input of the ``unet`` estimator (:data:`UNET_INPUTS`): the reconstruction, the sparse
    scan (0 where unscanned) and the mask, both images standardised by the reconstruction's mean and std."""
    recon = np.asarray(recon, dtype=np.float32)
    mask = np.asarray(mask, dtype=bool)
    mean = float(recon.mean())
    scale = max(float(recon.std()), _MIN_STD)
    out = np.empty((3, *recon.shape), dtype=np.float32)
    out[0] = (recon - mean) / scale
    out[1] = np.where(mask, (np.asarray(sparse, dtype=np.float32) - mean) / scale, 0.0)
    out[2] = mask
    return out


def binarized_error(
    reference: np.ndarray, recon: np.ndarray, thresholds: tuple[float, ...] | list[float] = (1.0,)
) -> tuple[np.ndarray, float]:
    """Mi's training target: ``|reference - recon| > t·ε`` with ε the mean absolute error of the image, for each
    multiple ``t`` in ``thresholds`` (Mi: just ``t = 1``); returns a (len(thresholds), H, W) bool array and ε."""
    error = np.abs(np.asarray(reference, dtype=np.float32) - np.asarray(recon, dtype=np.float32))
    epsilon = float(error.mean())
    return np.stack([error > t * epsilon for t in thresholds]), epsilon


class ErrorEstimator:
    """Base class: subclasses set ``name`` and implement :meth:`_estimate`; :meth:`estimate` validates and cleans."""

    name: ClassVar[str] = ""
    needs_reference: ClassVar[bool] = False

    def __init__(self, zero_scanned: bool = True) -> None:
        self.zero_scanned = bool(zero_scanned)

    def options(self) -> dict[str, Any]:
        """The options this estimator was made with (saved beside results)."""
        return {"zero_scanned": self.zero_scanned}

    def info(self) -> dict[str, Any]:
        """Facts worth keeping beside results, e.g. ``weights_note`` when the data are unlike the weights' training
        data (the domain check of :mod:`napari_sparse_sem.quality.domain`); none by default."""
        return {}

    def estimate(
        self, recon: np.ndarray, sparse: np.ndarray, mask: np.ndarray, reference: np.ndarray | None = None
    ) -> np.ndarray:
        """Per-pixel estimated error of ``recon``: float32 (H, W), >= 0 and finite, higher = larger expected error.

        ``recon`` and ``sparse`` are 2D float32 in [0, 1] (``sparse`` 0 where unscanned), ``mask`` the boolean map of
        scanned pixels; ``reference`` (the dense ground truth) is needed by ``oracle`` only.
        """
        rec, spa, msk, ref = check_inputs(recon, sparse, mask, reference)
        if self.needs_reference and ref is None:
            raise ValueError(
                f"the {self.name!r} estimator needs the dense reference image (reference=...): it is the true error, "
                "only available in benchmarks; use 'unet' or 'gradient' on real scans"
            )
        out = np.asarray(self._estimate(rec, spa, msk, ref), dtype=np.float32)
        out = np.nan_to_num(out, nan=0.0, posinf=0.0, neginf=0.0)
        np.maximum(out, 0.0, out=out)
        if self.zero_scanned:
            out[msk] = 0.0
        return out

    def _estimate(
        self, recon: np.ndarray, sparse: np.ndarray, mask: np.ndarray, reference: np.ndarray | None
    ) -> np.ndarray:
        raise NotImplementedError


class GradientEstimator(ErrorEstimator):
    """Sobel gradient magnitude of the reconstruction, Gaussian-smoothed with σ = ``smooth`` px (0: unsmoothed)."""

    name = "gradient"

    def __init__(self, smooth: float = 2.0, zero_scanned: bool = True) -> None:
        super().__init__(zero_scanned)
        if not np.isfinite(smooth) or smooth < 0:
            raise ValueError(f"gradient: smooth must be >= 0 (pixels), got {smooth}")
        self.smooth = float(smooth)

    def options(self) -> dict[str, Any]:
        return {**super().options(), "smooth": self.smooth}

    def _estimate(self, recon, sparse, mask, reference):  # type: ignore[no-untyped-def]
        from skimage.filters import sobel

        magnitude = sobel(recon).astype(np.float32)
        if self.smooth > 0:
            magnitude = ndimage.gaussian_filter(magnitude, self.smooth, mode="nearest")
        return magnitude


class VarianceEstimator(ErrorEstimator):
    """Local variance of the reconstruction in a ``window`` × ``window`` box (odd, >= 3)."""

    name = "variance"

    def __init__(self, window: int = 5, zero_scanned: bool = True) -> None:
        super().__init__(zero_scanned)
        if isinstance(window, bool) or int(window) != window or window < 3 or window % 2 == 0:
            raise ValueError(f"variance: window must be an odd integer >= 3, got {window}")
        self.window = int(window)

    def options(self) -> dict[str, Any]:
        return {**super().options(), "window": self.window}

    def _estimate(self, recon, sparse, mask, reference):  # type: ignore[no-untyped-def]
        image = recon.astype(np.float64)
        mean = ndimage.uniform_filter(image, self.window, mode="reflect")
        mean_sq = ndimage.uniform_filter(image * image, self.window, mode="reflect")
        return np.maximum(mean_sq - mean * mean, 0.0)


class EntropyEstimator(ErrorEstimator):
    """Local Shannon entropy (bits) of the reconstruction scaled to 8 bits, in a disk of ``radius`` px."""

    name = "entropy"

    def __init__(self, radius: int = 5, zero_scanned: bool = True) -> None:
        super().__init__(zero_scanned)
        if isinstance(radius, bool) or int(radius) != radius or radius < 1:
            raise ValueError(f"entropy: radius must be a positive integer (pixels), got {radius}")
        self.radius = int(radius)

    def options(self) -> dict[str, Any]:
        return {**super().options(), "radius": self.radius}

    def _estimate(self, recon, sparse, mask, reference):  # type: ignore[no-untyped-def]
        from skimage.filters.rank import entropy
        from skimage.morphology import disk

        image = np.clip(np.rint(np.clip(recon, 0.0, 1.0) * 255.0), 0, 255).astype(np.uint8)
        return entropy(image, disk(self.radius))


class OracleEstimator(ErrorEstimator):
    """The true error ``|reference - recon|`` (benchmarks only: it needs the dense reference)."""

    name = "oracle"
    needs_reference = True

    def _estimate(self, recon, sparse, mask, reference):  # type: ignore[no-untyped-def]
        return np.abs(reference - recon)


class UNetEstimator(ErrorEstimator):
    """Mi's binarized error estimation: the probability that a pixel's error exceeds the image's mean error.

    ``weights``: a ``.safetensors`` file with its model card (``None``: the shipped FlyEM default). ``device``:
    ``cpu``, ``cuda``, ``mps`` or ``auto``. Images larger than ``tile`` px are processed in overlapping tiles
    (``overlap`` px, blended), so memory stays bounded; on CUDA out-of-memory the tile is halved, then the CPU is used
    (with a warning).
    """

    name = "unet"

    def __init__(
        self,
        weights: str | Path | None = None,
        device: str = "cpu",
        tile: int = 512,
        overlap: int = 64,
        zero_scanned: bool = True,
    ) -> None:
        super().__init__(zero_scanned)
        from napari_sparse_sem.runtime import pick_device

        if int(tile) < 64 or int(overlap) < 0 or 2 * int(overlap) >= int(tile):
            raise ValueError(f"unet: tile must be >= 64 and more than twice the overlap, got {tile} and {overlap}")
        self.tile, self.overlap = int(tile), int(overlap)
        self.weights = Path(weights) if weights is not None else DEFAULT_UNET_WEIGHTS
        self.device = pick_device(device)
        self.model, self.card = load_unet(self.weights, self.device)
        self.weights_note: str | None = None  # set by the first estimate when the scan is unlike the training data
        self._checked = False

    def options(self) -> dict[str, Any]:
        return {
            **super().options(),
            "weights": str(self.weights),
            "device": self.device,
            "tile": self.tile,
            "overlap": self.overlap,
        }

    def info(self) -> dict[str, Any]:
        return {"weights_note": self.weights_note} if self.weights_note else {}

    def check_domain(self, sparse: np.ndarray, mask: np.ndarray) -> str | None:
        """Compare a scan with the ``domain`` block of the weights' card (intensity statistics of the scanned pixels;
        the network is 2D, so no neighbour check); the note (also :attr:`weights_note`, a warning) or None."""
        from napari_sparse_sem.quality.domain import check_domain

        check = check_domain(np.asarray(sparse), np.asarray(mask, dtype=bool), self.card, what="error estimator")
        self.weights_note = check.note
        if check.note:
            warnings.warn(check.note, RuntimeWarning, stacklevel=3)
        return check.note

    def _estimate(self, recon, sparse, mask, reference):  # type: ignore[no-untyped-def]
        import torch

        if not self._checked:  # once per estimator: one run of one scan
            self._checked = True
            if mask.any():
                self.check_domain(sparse, mask)
        inputs = unet_inputs(recon, sparse, mask)
        tile = self.tile
        while True:
            try:
                return self._predict(inputs, tile)
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                if tile // 2 > 2 * self.overlap and tile // 2 >= 64:
                    tile //= 2
                    continue
                warnings.warn(
                    "unet error estimation ran out of GPU memory even with small tiles; continuing on the CPU",
                    RuntimeWarning,
                    stacklevel=3,
                )
                self.device = "cpu"
                self.model.to("cpu")
                tile = self.tile

    def _predict(self, inputs: np.ndarray, tile: int) -> np.ndarray:
        import torch

        from napari_sparse_sem.recon.tiles import Tiling

        shape = inputs.shape[1:]
        tiling = Tiling.whole(shape) if max(shape) <= tile else Tiling(shape, tile, self.overlap)
        outputs = []
        with torch.no_grad():
            for box in tiling.boxes:
                x = torch.from_numpy(np.ascontiguousarray(inputs[(slice(None), *box)]))[None].to(self.device)
                # one probability per threshold; their mean (just P(error > ε) for Mi's single threshold)
                outputs.append(torch.sigmoid(self.model(x))[0].mean(dim=0).float().cpu().numpy())
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()
        return tiling.blend(outputs)


def build_unet(card: dict[str, Any]) -> Any:
    """The (untrained) U-Net described by a model card's ``architecture``."""
    from napari_sparse_sem.nn.unet import UNet, UNetConfig

    arch = card.get("architecture")
    if not isinstance(arch, dict) or arch.get("name") != "unet" or not isinstance(arch.get("config"), dict):
        raise ValueError("the model card does not describe a U-Net ('architecture': {'name': 'unet', 'config': ...})")
    return UNet(UNetConfig.from_dict(arch["config"]))


def load_unet(path: str | Path, device: str = "cpu") -> tuple[Any, dict[str, Any]]:
    """Load an error-estimation U-Net (eval mode, on ``device``) and its model card from a safetensors file.

    The card must describe a U-Net whose inputs are :data:`UNET_INPUTS` and whose output is one logit channel; any other
    layout is a clear error (the file was made for another task).
    """
    from napari_sparse_sem.nn.weights import load_weights

    path = Path(path)
    if not path.exists() and path == DEFAULT_UNET_WEIGHTS:
        raise FileNotFoundError(
            f"the shipped error-estimation weights are missing ({path}); reinstall napari-sparse-sem or pass "
            "weights=... (train your own with `sparse-sem train-estimator`)"
        )
    tensors, card = load_weights(path)
    inputs = card.get("inputs")
    if inputs is None:
        raise ValueError(
            f"the model card of {path.name} does not list the inputs of an error estimator, so these weights were not "
            "made by `sparse-sem train-estimator`; choose weights it wrote (or train some)"
        )
    if list(inputs) != list(UNET_INPUTS):
        raise ValueError(
            f"{path.name} expects the inputs {inputs}, but the unet error estimator feeds {list(UNET_INPUTS)}; "
            "these weights were made for another input layout (retrain with `sparse-sem train-estimator`)"
        )
    if card.get("task") not in (None, "binarized-error"):
        raise ValueError(f"{path.name} was trained for {card.get('task')!r}, not for binarized error estimation")
    model = build_unet(card)
    config = model.config
    thresholds = card.get("thresholds", [1.0])
    if config.in_channels != len(UNET_INPUTS) or config.out_channels != len(thresholds):
        raise ValueError(
            f"{path.name} describes a U-Net with {config.in_channels} inputs and {config.out_channels} outputs; the "
            f"unet error estimator needs {len(UNET_INPUTS)} inputs and one output per threshold {thresholds}"
        )
    try:
        model.load_state_dict(tensors, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{path.name} does not match the U-Net its card describes: {exc}") from None
    model.to(device).eval()
    return model, card


_CLASSES: dict[str, type[ErrorEstimator]] = {
    "unet": UNetEstimator,
    "gradient": GradientEstimator,
    "variance": VarianceEstimator,
    "entropy": EntropyEstimator,
    "oracle": OracleEstimator,
}


def make_estimator(name: str, weights: str | Path | None = None, device: str = "cpu", **options: Any) -> ErrorEstimator:
    """The estimator ``name`` (one of :data:`ESTIMATORS`) with its ``options`` (e.g. ``smooth=2`` for ``gradient``).

    ``weights`` and ``device`` apply to ``unet`` only (``weights=None``: the shipped default).
    """
    if name not in _CLASSES:
        raise ValueError(f"unknown error estimator {name!r}; choose one of {list(ESTIMATORS)}")
    import inspect

    cls = _CLASSES[name]
    allowed = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "weights", "device")]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise ValueError(f"unknown option(s) {unknown} for the {name!r} estimator; it takes {allowed}")
    if name == "unet":
        return UNetEstimator(weights=weights, device=device, **options)
    if weights is not None:
        raise ValueError(f"the {name!r} estimator takes no weights (only 'unet' does)")
    return cls(**options)
