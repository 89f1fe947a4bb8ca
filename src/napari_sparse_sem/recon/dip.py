"""Deep image prior reconstruction of sparse scans (Trampert et al., "Deep learning for sparse scanning electron
microscopy"; the prior itself: Ulyanov et al., "Deep image prior").

A convolutional network with a fixed random input is fitted, per slice, so that its output matches the *scanned* pixels
only (masked MSE); the unscanned pixels come from the network's inductive bias. No training data is needed. In a stack,
slice k starts from the weights of slice k-1 (warm start) and needs far fewer iterations.

Our additions to the paper's recipe: a stopping rule instead of a hand-tuned iteration count — a small held-out
fraction of the scanned pixels never enters the loss, and fitting stops when their error has not improved for
``patience`` iterations; the best output by held-out error is returned, with every scanned pixel set back to its
measured value.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Generator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from napari_sparse_sem.jsonfile import read_json_object
from napari_sparse_sem.params import Spec, param
from napari_sparse_sem.recon.base import FitPreview, Reconstructor, SlabInput, SliceResult, check_slab, register
from napari_sparse_sem.recon.tiles import Tiling
from napari_sparse_sem.runtime import Progress, pick_device, run_job

STOPPING_RULES = ("holdout", "fixed")
PRECISIONS = ("auto", "float32", "bfloat16", "float16")
GUIDES = ("none", "linear", "biharmonic")
PRESET_NAMES = ("paper", "default")
"""The names of :data:`PRESETS` (the choices of the ``preset`` option)."""


@dataclass
class DIPConfig(Spec):
    """Parameters of a DIP fit: the options of ``dip`` and ``dip3d``.

    ``preset`` names the preset the other fields start from: :meth:`from_dict` (hence the methods' options) fills
    every field not given from :data:`PRESETS`. ``iterations_first``/``iterations_warm`` are upper bounds under the
    ``holdout`` rule and exact counts under ``fixed``. ``guide`` feeds a classical interpolant of the fitted pixels as
    an extra input channel; with ``residual`` the network's output is a correction added to that guide. ``ema`` > 0
    returns (and judges) an exponential moving average of the outputs instead of the last one. ``warmup_slices`` > 0:
    on a cold start, first fit that many preceding slices (their own sparse samples), so even the first slice is warm.
    ``neighbours`` is read by ``dip3d`` only: the slices on each side fitted jointly with the centre slice.
    ``precision``: ``auto`` = float16 autocast with loss scaling and channels-last tensors on CUDA, float32 elsewhere;
    ``bfloat16`` autocasts on any device; ``float16`` needs CUDA. ``tile`` > 0: slices larger than that are fitted
    in overlapping square tiles (``tile_overlap`` px), ``tile_batch`` tiles per forward pass with their gradients
    accumulated, so memory is bounded by the tile batch; 0 fits the whole slice at once. ``batch`` > 1: the slices
    are cut into that many contiguous runs whose networks are fitted together, one slice of each run at a time
    (:mod:`~napari_sparse_sem.recon.dip_batch`; tiled slices still go one by one); ``compile`` compiles that batched
    step with ``torch.compile``."""

    kind = "DIP config"

    preset: str = param(
        "default",
        choices=PRESET_NAMES,
        label="DIP preset",
        help="the preset the other fields start from: paper (the published settings) or default (ours)",
    )
    levels: int = param(4, low=1, help="hourglass depth (levels of the skip network)")
    channels: int = param(48, low=1, help="channels per level (network width)")
    skip_channels: int = param(4, low=0, label="skip channels", help="channels of each skip connection")
    input_channels: int = param(32, low=1, label="input channels", help="channels of the fixed random input")
    input_scale: float = param(0.1, low=0, label="input scale", help="amplitude of the fixed random input")
    noise_reg: float = param(
        0.03, low=0, label="noise regularisation", help="std of the noise added to the input at every iteration"
    )
    lr: float = param(0.01, low=0, low_open=True, label="learning rate", help="Adam learning rate")
    iterations_first: int = param(
        2000,
        low=1,
        label="iterations (first)",
        help="at most this many iterations for a cold start (held-out rule) or exactly this many (fixed)",
    )
    iterations_warm: int = param(
        400,
        low=1,
        label="iterations (warm)",
        help="the same for slices warm-started from the previous slice's network",
    )
    stopping: str = param(
        "holdout",
        choices=STOPPING_RULES,
        help="holdout: stop when held-out scanned pixels stop improving; fixed: run the iteration count",
    )
    holdout_fraction: float = param(
        0.05,
        low=0,
        high=0.5,
        low_open=True,
        high_open=True,
        percent=True,
        label="held-out fraction",
        help="fraction of the scanned pixels kept out of the loss to decide when to stop",
    )
    patience: int = param(
        300, low=0, help="stop when the held-out error has not improved for this many iterations", unit="iterations"
    )
    check_every: int = param(10, low=1, label="check every", help="iterations between held-out checks")
    preview_every: int = param(
        50, low=0, label="preview every", help="show the current estimate every N iterations (0: no preview)"
    )
    warm_start: bool = param(True, label="warm start", help="start each slice from the previous slice's network")
    warmup_slices: int = param(
        2,
        low=0,
        label="warm-up slices",
        help="on a cold start, first fit this many preceding slices so the target slice starts warm",
    )
    neighbours: int = param(
        5, low=0, label="3D neighbours", help="dip3d: slices on each side fitted jointly with the slice"
    )
    precision: str = param(
        "auto",
        choices=PRECISIONS,
        help="auto: float16 autocast on CUDA, float32 elsewhere; bfloat16 anywhere; float16 needs CUDA",
    )
    tile: int = param(
        0, low=0, unit="px", help="fit slices larger than this in overlapping square tiles (0: the whole slice)"
    )
    tile_overlap: int = param(32, low=0, unit="px", label="tile overlap", help="overlap of neighbouring tiles")
    tile_batch: int = param(
        4, low=1, label="tile batch", help="tiles per forward pass (gradients accumulated; bounds the memory)"
    )
    batch: int = param(
        1,
        low=1,
        label="slices at once",
        help="slices fitted at once, one network each, in contiguous warm-started runs (on a GPU, e.g. 16–64)",
    )
    compile: bool = param(
        False, label="compile", help="torch.compile the batched fit step (batch > 1; pays off on a GPU for long runs)"
    )
    guide: str = param(
        "none", choices=GUIDES, help="a classical interpolant of the fitted pixels fed as an extra input channel"
    )
    residual: bool = param(False, help="the network corrects the guide instead of drawing the image (needs a guide)")
    ema: float = param(
        0.99,
        low=0,
        high=1,
        high_open=True,
        label="output EMA",
        help="exponential moving average of the outputs (0: the last output)",
    )
    seed: int = param(0, low=0, help="seed of the network's initial weights, its input and the held-out pixels")

    def validate(self) -> None:
        if self.residual and self.guide == "none":
            raise ValueError("residual needs a guide (e.g. guide='biharmonic'): the network corrects the guide")
        if self.tile and (self.tile < 2**self.levels or self.tile <= 2 * self.tile_overlap):
            raise ValueError(
                f"tile must be 0 (whole slice) or at least 2**levels = {2**self.levels} and more than twice "
                f"tile_overlap ({self.tile_overlap}), got {self.tile}"
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DIPConfig:
        """The config of ``data``'s ``preset`` (default: ``default``) with the fields ``data`` gives replaced."""
        if not isinstance(data, Mapping):
            return super().from_dict(data)
        preset = data.get("preset", "default")
        if preset not in PRESETS:
            raise ValueError(f"unknown DIP preset {preset!r}; choose one of {list(PRESETS)}")
        base = {f.name: getattr(PRESETS[preset], f.name) for f in dataclasses.fields(cls)}
        return super().from_dict({**base, **data})


PRESETS: dict[str, DIPConfig] = {
    # The public DIP inpainting settings: skip net 5 × 128 channels, 32-channel noise input × 0.1, σ = 0.03,
    # Adam lr 0.01, a fixed count of iterations.
    "paper": DIPConfig(
        preset="paper",
        levels=5,
        channels=128,
        iterations_first=3000,
        iterations_warm=1000,
        stopping="fixed",
        ema=0.0,
        warmup_slices=0,
    ),
    # Our default so far (docs/methods/dip.md; 128² FlyEM ROI, slice 125, 5 %): a 4 × 48 net, held-out stopping, an
    # output EMA and a warm-up on the 2 preceding slices — 27.69 dB vs biharmonic 25.82 in 101 s on 2 CPU cores.
    "default": DIPConfig(),
}


def unknown_fields(names: Any) -> list[str]:
    """The names among ``names`` that are not :class:`DIPConfig` fields (``preset`` is one), sorted."""
    return sorted(set(names) - {f.name for f in dataclasses.fields(DIPConfig)})


def dip_config(preset: str = "default", **overrides: Any) -> DIPConfig:
    """A preset (``paper`` or ``default``) with some fields replaced."""
    return DIPConfig.from_dict({**overrides, "preset": preset})


def load_dip_options(path: str | Path) -> dict[str, Any]:
    """Read a DIP configuration file: a JSON object with an optional ``preset`` and any :class:`DIPConfig` fields.

    The options are checked (unknown fields, bad values) before they are returned, so a typo fails before any work.
    """
    options = read_json_object(path, "DIP config", "DIPConfig fields (and optionally 'preset')")
    unknown = unknown_fields(options)
    if unknown:
        known = sorted(f.name for f in dataclasses.fields(DIPConfig))
        raise ValueError(f"DIP config {path} has unknown field(s) {unknown}; known: {known}")
    DeepImagePrior.parse_options(options)  # raises on bad values
    return options


def holdout_pixels(config: DIPConfig, known: np.ndarray, mid: int, fit_number: int) -> np.ndarray:
    """The scanned pixels of channel ``mid`` (the centre slice, the one returned) kept out of the loss for the
    held-out rule (none under ``fixed``), drawn from the seed and the network's count of fits so far."""
    holdout = np.zeros_like(known)
    if config.stopping == "holdout":
        rng = np.random.default_rng([config.seed, fit_number])
        scanned = np.flatnonzero(known[mid])
        n_hold = max(1, round(config.holdout_fraction * scanned.size))
        holdout[mid].flat[rng.choice(scanned, n_hold, replace=False)] = True
    return holdout


def guide_image(config: DIPConfig, values: np.ndarray, fitted: np.ndarray) -> np.ndarray:
    """The ``guide`` input channel: a classical fill of the fitted pixels only (held-out pixels stay unseen)."""
    from napari_sparse_sem.recon.interp import fill_biharmonic, fill_linear

    fill = fill_biharmonic if config.guide == "biharmonic" else fill_linear
    return fill(np.where(fitted, values, 0).astype(np.float32), fitted)


def masked_mse(output: Any, target: Any, weight: Any) -> Any:
    """Mean squared error over the pixels where ``weight`` is 1: unscanned pixels never enter the loss."""
    return ((output - target) ** 2 * weight).sum() / weight.sum().clamp_min(1.0)


@register
class DeepImagePrior(Reconstructor):
    """Deep image prior, slice by slice with warm start; see the module docstring."""

    name = "dip"
    tile_halo = 32  # a network's receptive field: tiles of big slices are read with this margin
    context = 0
    description = "Deep image prior (Trampert et al.): a network fitted to the scanned pixels, warm-started per slice."
    options = DIPConfig
    iterative = True
    gpu = True
    radius = 0  # slices on each side fitted jointly with the centre (dip3d)

    def __init__(self, device: str = "cpu", **options: Any) -> None:
        super().__init__(device, **options)  # checks the options; a preset fills the fields not given
        self.config: DIPConfig = self.settings
        self._configure()
        # The driver hands over the slices needed for the warm-up fits and, in 3D, their neighbours.
        self.context = self.config.warmup_slices + self.radius
        self.device = pick_device(device)
        if self.config.precision == "float16" and not self.device.startswith("cuda"):
            raise ValueError(f"precision float16 needs a CUDA device (got {self.device}); use bfloat16 or float32")
        self.net = None
        self.batch_fitter = None  # the networks of batch > 1 (recon.dip_batch.NetworkBatch)
        self.batched = self.config.batch > 1
        self.scaler = None
        self.optimizer = None
        self.net_input = None
        self.slices_done = 0
        self.history: list[dict[str, Any]] = []  # per slice: iterations, seconds, loss and held-out curves

    def _configure(self) -> None:
        """Hook for subclasses to derive their settings from ``self.config``."""

    def _setup(self, shape: tuple[int, int]) -> None:
        import torch

        from napari_sparse_sem.nn.skipnet import SkipNet

        cfg = self.config
        generator = torch.Generator().manual_seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        in_channels = cfg.input_channels + (cfg.guide != "none")
        out_channels = 2 * self.radius + 1
        self.net = SkipNet(in_channels, out_channels, cfg.levels, cfg.channels, cfg.skip_channels).to(self.device)
        if cfg.residual:  # zero head: sigmoid(0) = 0.5, so the fit starts exactly at the guide
            torch.nn.init.zeros_(self.net.head.weight)
            torch.nn.init.zeros_(self.net.head.bias)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=cfg.lr)
        noise = torch.rand((1, cfg.input_channels, *shape), generator=generator) * cfg.input_scale
        self.net_input = noise.to(self.device)
        if self.autocast_dtype() is not None and self.device.startswith("cuda"):
            self.net = self.net.to(memory_format=torch.channels_last)  # faster convolutions under mixed precision
            self.net_input = self.net_input.contiguous(memory_format=torch.channels_last)
        self.scaler = torch.amp.GradScaler("cuda") if self.autocast_dtype() == torch.float16 else None

    def _tiling(self, shape: tuple[int, int]) -> Tiling:
        """Tiles for slices larger than ``tile`` (memory bounded by ``tile_batch`` tiles); else the whole slice."""
        cfg = self.config
        if cfg.tile and max(shape) > cfg.tile:
            return Tiling(shape, cfg.tile, cfg.tile_overlap)
        return Tiling.whole(shape)

    def autocast_dtype(self) -> Any:
        """The torch dtype the forward pass is autocast to, or None for plain float32."""
        import torch

        precision = self.config.precision
        if precision == "auto":
            precision = "float16" if self.device.startswith("cuda") else "float32"
        return {"float32": None, "bfloat16": torch.bfloat16, "float16": torch.float16}[precision]

    def reconstruct_slice(self, sparse: np.ndarray, mask: np.ndarray, center: int) -> np.ndarray:
        return run_job(self.reconstruct_slice_job(sparse, mask, center))

    def _cold(self, shape: tuple[int, int]) -> bool:
        """Whether the next fit starts from scratch (no network yet, warm start off, or another slice size)."""
        return self.net is None or not self.config.warm_start or tuple(self.net_input.shape[-2:]) != shape

    def reconstruct_slice_job(
        self, sparse: np.ndarray, mask: np.ndarray, center: int
    ) -> Generator[Progress, None, np.ndarray]:
        """Fit slice ``center`` of the slab; on a cold start first fit up to ``warmup_slices`` preceding slices."""
        sparse, mask = check_slab(sparse, mask, center)
        if not mask[center].any():
            raise ValueError("the slice has no scanned pixels; check the mask")
        if self.config.warmup_slices and self._cold(sparse.shape[1:]):
            for k in range(max(0, center - self.config.warmup_slices), center):
                if mask[k].any():
                    yield from self._fit_job(sparse, mask, k, warmup=True)
        return (yield from self._fit_job(sparse, mask, center))

    def _slab_targets(self, sparse: np.ndarray, mask: np.ndarray, center: int) -> tuple[np.ndarray, np.ndarray]:
        """Targets and scanned-pixel masks of the ``2 * radius + 1`` output channels (slices missing at the volume's
        ends get an empty mask, so they never enter the loss)."""
        width = 2 * self.radius + 1
        values = np.zeros((width, *sparse.shape[1:]), dtype=np.float32)
        known = np.zeros(values.shape, dtype=bool)
        for channel in range(width):
            z = center - self.radius + channel
            if 0 <= z < sparse.shape[0]:
                values[channel], known[channel] = sparse[z], mask[z]
        return values, known

    def _shift_head(self) -> None:
        """dip3d, next slice: output channel j now means the slice channel j + 1 meant, so move the head's rows (and
        their Adam moments) down by one; the features already describe the shared slices."""
        import torch

        head = self.net.head
        with torch.no_grad():
            for param in (head.weight, head.bias):
                moved = [param]
                state = self.optimizer.state.get(param, {})
                moved += [state[key] for key in ("exp_avg", "exp_avg_sq") if key in state]
                for tensor in moved:
                    tensor[:-1] = tensor[1:].clone()

    def _fit_job(
        self, sparse: np.ndarray, mask: np.ndarray, center: int, warmup: bool = False
    ) -> Generator[Progress, None, np.ndarray]:
        """Fit the network to the scanned pixels of slab slice ``center`` (and, in 3D, of its ``radius`` neighbours
        on each side), warm-started when possible; return the centre image."""
        import torch

        values, known = self._slab_targets(sparse, mask, center)
        cfg = self.config
        mid = self.radius
        first = self._cold(values.shape[1:])
        if first:
            self._setup(values.shape[1:])
        elif self.radius:
            self._shift_head()
        max_iterations = cfg.iterations_first if first else cfg.iterations_warm

        holdout = holdout_pixels(cfg, known, mid, self.slices_done)
        fit = known & ~holdout

        def tensor(array: np.ndarray) -> Any:
            return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))[None].to(self.device)

        target, fit_w, hold_w = tensor(values), tensor(fit), tensor(holdout[mid : mid + 1])
        centre_target = target[:, mid : mid + 1]
        net, optimizer, base_input = self.net, self.optimizer, self.net_input
        guide = None
        if cfg.guide != "none":
            guide = tensor(guide_image(cfg, values[mid], fit[mid])[None])

        amp_dtype = self.autocast_dtype()
        device_type = self.device.split(":")[0]

        def forward(noise: Any, guide: Any) -> Any:
            with torch.autocast(device_type, dtype=amp_dtype, enabled=amp_dtype is not None):
                raw = net(noise if guide is None else torch.cat([noise, guide], dim=1))
            raw = raw.float()
            return (guide + (raw - 0.5)).clamp(0.0, 1.0) if cfg.residual else raw

        def backward(loss: Any) -> None:
            if self.scaler is not None:  # float16: scale the loss so small gradients do not underflow
                self.scaler.scale(loss).backward()
            else:
                loss.backward()

        tiling = self._tiling(values.shape[1:])
        n_fit = fit_w.sum().clamp_min(1.0)
        if len(tiling.boxes) > 1:
            window = torch.from_numpy(tiling.window).to(self.device)
            norm = torch.from_numpy(tiling.norm).to(self.device)

        def fit_step(noise: Any) -> tuple[Any, float]:
            """One optimiser step on the whole slice (tile chunks accumulate their gradients); returns the centre
            output (1, 1, y, x) and the loss."""
            if len(tiling.boxes) == 1:
                output = forward(noise, guide)
                loss = masked_mse(output, target, fit_w)
                backward(loss)
                return output.detach()[:, mid : mid + 1], float(loss.detach())
            canvas = torch.zeros_like(centre_target)
            total = 0.0
            for chunk in tiling.chunks(cfg.tile_batch):

                def cut(full: Any, chunk: list = chunk) -> Any:
                    return torch.cat([full[..., ys, xs] for ys, xs in chunk], dim=0)

                output = forward(cut(noise), None if guide is None else cut(guide))
                loss = ((output - cut(target)) ** 2 * cut(fit_w)).sum() / n_fit
                backward(loss)
                total += float(loss.detach())
                pieces = output.detach()[:, mid]
                for k, (ys, xs) in enumerate(chunk):
                    canvas[0, 0, ys, xs] += pieces[k] * window
            return canvas * norm, total

        net.train()
        best_error, best_output, best_iteration = np.inf, None, 0
        losses: list[float] = []
        held_out: list[tuple[int, float]] = []
        started = time.perf_counter()
        iteration = 0
        smooth = None
        for iteration in range(1, max_iterations + 1):
            optimizer.zero_grad(set_to_none=True)
            net_input = base_input
            if cfg.noise_reg > 0:
                net_input = base_input + cfg.noise_reg * torch.randn_like(base_input)
            output, loss = fit_step(net_input)
            if self.scaler is not None:
                self.scaler.step(optimizer)
                self.scaler.update()
            else:
                optimizer.step()
            losses.append(loss)
            if cfg.ema > 0:
                smooth = output if smooth is None else cfg.ema * smooth + (1 - cfg.ema) * output
                output = smooth
            last = iteration == max_iterations
            if cfg.stopping == "holdout" and (iteration % cfg.check_every == 0 or last):
                error = float(masked_mse(output, centre_target, hold_w))
                held_out.append((iteration, error))
                if error < best_error:
                    best_error, best_iteration = error, iteration
                    best_output = output
                elif iteration - best_iteration >= cfg.patience:
                    break
            what = f"{self.name} warm-up on a neighbour" if warmup else self.name
            message = f"{what}: iteration {iteration}, loss {losses[-1]:.2e}"
            if cfg.preview_every and (iteration % cfg.preview_every == 0 or last):
                image = output[0, 0].float().cpu().numpy()
                preview = FitPreview(image, iteration, max_iterations, list(losses), list(held_out), warmup)
                yield Progress(iteration, max_iterations, message, preview)
            else:  # a step every iteration: Cancel or a stop signal takes effect within one iteration
                yield Progress(iteration, max_iterations, message)
        final = best_output if (cfg.stopping == "holdout" and best_output is not None) else output
        image = np.clip(final[0, 0].float().cpu().numpy(), 0.0, 1.0)
        image[known[mid]] = values[mid][known[mid]]  # data consistency: scanned pixels keep their measured values
        self.history.append(
            {
                "iterations": iteration,
                "best_iteration": best_iteration if cfg.stopping == "holdout" else iteration,
                "seconds": time.perf_counter() - started,
                "warm": not first,
                "warmup": warmup,
                "loss_curve": losses,
                "holdout_curve": held_out,
            }
        )
        self.slices_done += 1
        return image.astype(np.float32)

    def prepare(self, sparse: Any, mask: Any, slices: list[int]) -> None:
        """With ``batch`` > 1, fit several slices at once unless the slices are tiled (those go one by one)."""
        cfg = self.config
        shape = tuple(sparse.shape[-2:])
        self.batched = cfg.batch > 1 and not (cfg.tile and max(shape) > cfg.tile)

    def slice_groups(self, slices: list[int]) -> list[list[int]]:
        """One slice at a time; with ``batch`` B > 1, B contiguous runs interleaved (group k = the k-th slice of
        every run), so each of the B networks warm-starts from the previous slice of its own run."""
        if not self.batched:
            return super().slice_groups(slices)
        from napari_sparse_sem.recon.dip_batch import interleaved_groups

        return interleaved_groups(slices, self.config.batch)

    def reconstruct_batch_job(self, slabs: list[SlabInput]) -> Generator[Progress, None, list[SliceResult]]:
        """The group's slices one by one, or with ``batch`` > 1 together: network j fits slab j
        (:func:`~napari_sparse_sem.recon.dip_batch.fit_group`)."""
        if not self.batched or len(self._tiling(tuple(slabs[0][0].shape[-2:])).boxes) > 1:
            return (yield from super().reconstruct_batch_job(slabs))
        import torch

        from napari_sparse_sem.recon.dip_batch import fit_group

        try:
            return (yield from fit_group(self, slabs))
        except torch.cuda.OutOfMemoryError:
            self.close()
            raise MemoryError(
                f"{self.name}: the GPU ran out of memory fitting {len(slabs)} networks at once; the slices finished so "
                f"far are kept: run the rest with a smaller batch (now {self.config.batch}) or tile > 0"
            ) from None

    def slice_info(self) -> dict[str, Any]:
        """Iterations run, the best iteration (by held-out error) and whether the slice was warm-started."""
        if not self.history:
            return {}
        last = self.history[-1]
        warmup = 0
        for entry in reversed(self.history[:-1]):
            if not entry["warmup"]:
                break
            warmup += entry["iterations"]
        return {
            "iterations": last["iterations"],
            "best_iteration": last["best_iteration"],
            "warm": last["warm"],
            "warmup_iterations": warmup,
        }

    def close(self) -> None:
        """Drop the network and free GPU memory."""
        self.net = self.optimizer = self.net_input = self.scaler = self.batch_fitter = None
        if self.device.startswith("cuda"):
            import torch

            torch.cuda.empty_cache()


@register
class DeepImagePrior3D(DeepImagePrior):
    """DIP with 3D context: one network fits the centre slice and ``neighbours`` slices on each side at once (one
    output channel per slice, loss on every slice's own scanned pixels), so per-slice masks fill each other's gaps."""

    name = "dip3d"
    description = "3D-context DIP: the slice and its neighbours fitted jointly, one output channel per slice."

    def _configure(self) -> None:
        self.radius = self.config.neighbours
        if self.radius < 1:
            raise ValueError(f"dip3d needs neighbours >= 1 (slices on each side), got {self.radius}; or use dip")


DIP_METHODS = (DeepImagePrior.name, DeepImagePrior3D.name)
"""The methods configured by :class:`DIPConfig` (``--dip-preset``/``--dip-config`` on the command line)."""
