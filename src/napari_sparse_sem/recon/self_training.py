"""Train the partial-scan generator on a sparse scan alone: self-supervised reconstruction (method ``self``).

A real sparse scan has no dense slices to learn from. Masked self-supervision (Noise2Self, Batson & Royer 2019;
Noise2Void, Krull et al. 2019 — the idea's origin; this is our own code) needs none: hide some scanned pixels from the
input and learn to predict them from the rest; the loss counts only hidden scanned pixels, and no unscanned pixel is
ever looked at (:mod:`.self_data` makes the batches).

The network is the partial-scan GAN's generator (:class:`~napari_sparse_sem.nn.gan.Generator`), either fine-tuned from
the shipped FlyEM weights (``init="flyem"`` or ``"flyem-context1"``: domain adaptation) or from any generator file, or
trained from scratch (``init="none"``, architecture ``preset``). Per-slice masks let neighbour slices help (each saw
other pixels); with one mask for every slice they cannot, so ``flyem-context1`` then falls back to the 2D ``flyem``
weights (context 0) and the status notes, the card and the CLI say so.

The loop is :func:`napari_sparse_sem.nn.training.run_training` (budget in minutes and/or iterations, the stop that
saves what was trained, the divergence guard); the learning rate decays on a cosine over the budget. The weights file
is an ordinary partial-scan generator file (card kind ``partial-scan-gan``, tensors ``mse.*``) whose card adds
``training.kind = "self-supervised"``; method ``self`` (:mod:`.self_method`) loads it.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from napari_sparse_sem.nn.curves import Panel, Series, curves_json, curves_png, plot_curves, write_curves_json
from napari_sparse_sem.nn.training import Budget, Trainer, run_training
from napari_sparse_sem.params import Spec, param
from napari_sparse_sem.recon.gan import CARD_KIND, SHIPPED_GAN_WEIGHTS
from napari_sparse_sem.recon.self_data import ValidationSet, load_scan, one_fixed_mask, parse_hidden, training_batch
from napari_sparse_sem.runtime import Job, Progress, checked_slices, pick_device

TRAINING_KIND = "self-supervised"
"""``card["training"]["kind"]`` of weights written here (method ``self`` asks for it)."""
INITS = ("flyem", "flyem-context1", "none")
"""Named starting points: the shipped 2D and ±1-slice FlyEM generators, or a fresh network; a path is also taken."""
DEFAULT_HIDDEN = (0.1, 0.5)
"""Default range of the hidden fraction of scanned pixels (measured in docs/methods/self.md)."""
TRAINER_WEIGHT = 0.5
"""Weight of the half-size trainer head's loss (on the pooled hidden pixels), as in the GAN's pre-training."""
FIXED_MASK_NOTE = (
    "one mask for every slice: neighbour slices were scanned at the same pixels, so they cannot show what a slice "
    "missed; a 2D network (context 0) is used"
)

_ADVANCED = {"cli": True, "widget": False}


@dataclass
class SelfTrainingConfig(Spec):
    """Parameters of :func:`train_self_job`."""

    kind: ClassVar[str] = "self-training"

    init: str = param(
        "flyem-context1",
        label="start from",
        help="Starting weights: flyem (2D), flyem-context1 (±1 slice), none (from scratch) or a .safetensors file.",
    )
    context: int | None = param(
        None,
        low=0,
        high=1,
        none_means="from the starting weights (none: 1, or 0 with one fixed mask)",
        help="Neighbour slices on each side the network sees (0: 2D).",
    )
    minutes: float | None = param(
        10.0,
        unit="min",
        low=0,
        low_open=True,
        nullable=True,
        none_means="no time limit",
        label="time budget",
        help="Training time (with iterations: whichever ends first).",
    )
    iterations: int | None = param(
        None, low=1, none_means="no limit", help="Training batches (with minutes: whichever ends first)."
    )
    hidden: tuple[float, float] = param(
        DEFAULT_HIDDEN,
        percent=True,
        help="Range (low, high) of the fraction of scanned pixels hidden from the input per crop (drawn uniformly).",
    )
    hidden_block: int = param(
        1,
        low=1,
        unit="px",
        **_ADVANCED,
        help="Hide square patches of this side instead of single pixels (for spirals and lines, whose unscanned gaps "
        "are wider than the spacing along the scan path).",
    )
    crop: int = param(128, low=32, unit="px", **_ADVANCED, help="Side of the training crops (at most the slice).")
    batch_size: int = param(8, low=1, **_ADVANCED, help="Crops per batch.")
    lr: float | None = param(
        None,
        low=0,
        low_open=True,
        none_means="2e-4 when fine-tuning, 1e-3 from scratch",
        **_ADVANCED,
        help="Adam learning rate (cosine decay to 5 % over the budget).",
    )
    preset: str = param(
        "compact", choices=("compact", "paper"), **_ADVANCED, help="Network of init none: compact (CPU) or paper (GPU)."
    )
    validation_fraction: float = param(
        0.05, low=0, high=0.5, **_ADVANCED, help="Share of the scanned pixels of the validation slices held out."
    )
    validation_slices: int = param(4, low=0, **_ADVANCED, help="Slices that hold validation pixels (evenly spaced).")
    seed: int = param(0, low=0, help="Seed of crops, hidden pixels, validation pixels and initial weights.")
    log_every: int = param(10, low=1, **_ADVANCED, help="Iterations per logged loss (their mean).")
    validate_every: int = param(100, low=1, **_ADVANCED, help="Iterations between validations.")

    def __post_init__(self) -> None:
        self.hidden = parse_hidden(self.hidden)
        super().__post_init__()

    def validate(self) -> None:
        if self.iterations is None and self.minutes is None:
            raise ValueError("give a training budget: minutes, iterations or both")
        if self.init not in INITS and Path(self.init).suffix != ".safetensors":
            raise ValueError(f"init must be one of {list(INITS)} or a .safetensors file, got {self.init!r}")

    def budget(self) -> Budget:
        """The training budget (minutes and/or iterations)."""
        return Budget(self.iterations, self.minutes)


@dataclass
class SelfTrainingStatus:
    """``Progress.partial`` of :func:`train_self_job`: where the training is and its curves so far.

    ``loss``: (iteration, mean MSE on hidden scanned pixels over the last ``log_every`` batches); ``validation``:
    (iteration, PSNR in dB at the fixed validation pixels); ``linear_psnr``: ``linear`` on the same pixels; ``notes``:
    what the user should know (one fixed mask, a fallback).
    """

    phase: str  # "prepare", "train" or "done"
    iteration: int = 0
    iterations: int | None = None
    seconds: float = 0.0
    loss: list[tuple[int, float]] = field(default_factory=list)
    validation: list[tuple[int, float]] = field(default_factory=list)
    linear_psnr: float | None = None
    notes: list[str] = field(default_factory=list)

    def snapshot(self) -> SelfTrainingStatus:
        """A copy whose lists do not grow with the running job (what a progress event carries)."""
        return replace(self, loss=list(self.loss), validation=list(self.validation), notes=list(self.notes))


@dataclass
class _Start:
    """The resolved starting point: the network, its name, its context and the learning rate."""

    net: Any
    name: str
    context: int
    lr: float
    notes: list[str]


def context_misfit(values: np.ndarray, known: np.ndarray) -> str | None:
    """Why the ±1-slice FlyEM start does not fit this scan (the GAN's domain guard, :mod:`napari_sparse_sem.quality.
    domain`: neighbouring slices less alike than FlyEM's under the same masks), or ``None`` when it fits."""
    from napari_sparse_sem.nn.weights import read_card
    from napari_sparse_sem.quality.domain import check_domain

    check = check_domain(values, known, read_card(SHIPPED_GAN_WEIGHTS["flyem-context1"]), context=1)
    if check.context_fits is not False or check.same_masks:
        return None
    return (
        f"neighbouring slices differ like pixels {check.z_step_px:.1f} px apart within a slice (FlyEM under the same "
        f"masks: {check.reference_z_step_px:.1f} px), so the ±1-slice start does not fit"
    )


def _starting_point(config: SelfTrainingConfig, fixed: bool, depth: int, misfit: str | None = None) -> _Start:
    """Resolve ``init`` and ``context`` (with the fixed-mask, single-slice and domain-guard fallbacks) into a float32
    network."""
    from napari_sparse_sem.nn.gan import Generator, gan_config
    from napari_sparse_sem.recon.gan import load_generator

    init, context, notes = config.init, config.context, []
    no_neighbours = "one fixed mask" if fixed else "a single slice"
    if init == "flyem-context1" and context is None and misfit and not fixed and depth >= 2:
        notes.append(f"{misfit}: starting from the 2D flyem weights (context 0) instead of flyem-context1")
        init = "flyem"
    if init == "flyem-context1" and (fixed or depth < 2 or context == 0):
        if context == 1:
            raise ValueError(f"context 1 with {no_neighbours} cannot use neighbours; use --context 0 or init flyem")
        if context is None:
            notes.append(f"{no_neighbours}: starting from the 2D flyem weights (context 0) instead of flyem-context1")
        init = "flyem"
    if init == "none":
        context = context if context is not None else (0 if fixed or depth < 2 else 1)
        net = Generator(gan_config(config.preset, context=int(context)))
        lr = 1e-3
    else:
        net, _ = load_generator(SHIPPED_GAN_WEIGHTS.get(init, init), "mse")
        net = net.float()
        if context is not None and context != net.config.context:
            raise ValueError(
                f"the starting weights {init!r} see {net.config.context} neighbour(s) on each side, not --context "
                f"{context}; choose init none (from scratch) or other weights"
            )
        lr = 2e-4
    context = int(net.config.context)
    if fixed and context:
        notes.append("one mask for every slice: neighbour slices add no scanned pixels, context 1 cannot help")
    elif fixed:
        notes.append(FIXED_MASK_NOTE)
    lr = float(config.lr) if config.lr is not None else lr
    return _Start(net, init, context, lr, notes)


class SelfTrainer(Trainer[dict[str, Any]]):
    """The self-supervised training's part of :func:`run_training`: masked batches, the hidden-pixel loss, the
    validation, and the files (weights + card, learning curves)."""

    def __init__(
        self,
        config: SelfTrainingConfig,
        start: _Start,
        scan: tuple[np.ndarray, np.ndarray, list[int]],
        validation: ValidationSet | None,
        status: SelfTrainingStatus,
        out_path: Path,
        device: str,
        meta: dict[str, Any],
    ) -> None:
        import torch

        super().__init__()
        self.config, self.start, self.validation, self.status = config, start, validation, status
        self.values, self.known, self.numbers = scan
        self.out_path, self.device, self.meta = out_path, device, meta
        self.budget = config.budget()
        self.log_every = int(config.log_every)
        self.rng = np.random.default_rng([config.seed, 1])
        self.net = start.net.to(device)
        self.net.train()
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=start.lr)
        self.crop = min(int(config.crop), *self.values.shape[1:])

    def _learning_rate(self) -> float:
        progress = min(1.0, self.budget.fraction(self.state.iteration, self.state.seconds))
        return self.start.lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * progress)))

    def losses(self) -> dict[str, float]:
        import torch
        from torch.nn import functional as F

        for group in self.optimizer.param_groups:
            group["lr"] = self._learning_rate()
        x, y, w = training_batch(
            self.values,
            self.known,
            self.numbers,
            crop=self.crop,
            batch_size=int(self.config.batch_size),
            hidden=self.config.hidden,
            hidden_block=int(self.config.hidden_block),
            context=self.start.context,
            fill=self.net.config.fill,
            rng=self.rng,
        )
        xt, yt, wt = (torch.from_numpy(a).to(self.device) for a in (x, y, w))
        out, trainer = self.net(xt)
        loss = (wt * (out - yt) ** 2).sum() / wt.sum().clamp(min=1.0)
        w_half = F.avg_pool2d(wt, 2)
        y_half = F.avg_pool2d(wt * yt, 2) / w_half.clamp(min=1e-6)
        t = trainer[..., : w_half.shape[-2], : w_half.shape[-1]]
        loss_t = (w_half * (t - y_half) ** 2).sum() / w_half.sum().clamp(min=1e-6)
        self.pending_loss = loss + TRAINER_WEIGHT * loss_t
        return {"mse": float(loss.detach())}

    def after_step(self) -> None:
        if self.state.iteration % int(self.config.validate_every) == 0:
            self.validate()

    def validate(self) -> None:
        """Score the network at the validation pixels and record it."""
        if self.validation is not None:
            score = self.validation.score(self.net, self.device)
            self.status.validation.append((self.state.iteration, round(score, 3)))

    def progress(self, means: Mapping[str, float]) -> Progress:
        status, iteration, seconds = self.status, self.state.iteration, self.state.seconds
        status.loss.append((iteration, means["mse"]))
        status.iteration, status.seconds = iteration, seconds
        status.iterations = self.budget.expected_total(iteration, seconds)
        val = f", validation {status.validation[-1][1]:.2f} dB" if status.validation else ""
        message = f"iteration {iteration}, hidden-pixel MSE {means['mse']:.5f}{val}"
        return Progress(iteration, status.iterations, message, status.snapshot())

    def finish(self) -> dict[str, Any]:
        means = self.state.window_means()
        if "mse" in means:
            self.status.loss.append((self.state.iteration, means["mse"]))
        if not self.status.validation or self.status.validation[-1][0] != self.state.iteration:
            self.validate()
        self.status.phase, self.status.iteration = "done", self.state.iteration
        self.status.seconds = self.state.seconds
        self.net.eval()
        return self.save(final=True)

    def kept(self) -> str:
        return "nothing was saved"

    def card(self) -> dict[str, Any]:
        """The model card of the weights file as things are now."""
        import torch

        from napari_sparse_sem.nn.gan import count_parameters

        config, state, status, validation = self.config, self.state, self.status, self.validation
        final_val = status.validation[-1][1] if status.validation else None
        return {
            "kind": CARD_KIND,
            "description": (
                "Partial-scan generator trained self-supervised on a sparse scan alone (hidden scanned pixels as "
                f"targets): input = (partial scan with unscanned pixels filled by {self.net.config.fill!r}, mask) "
                f"for the slice and {self.start.context} neighbour(s) on each side, values in [0, 1]; tensors "
                "'mse.*' (method self, or gan-mse)"
            ),
            "variants": ["mse"],
            "architecture": self.net.config.to_dict(),
            "parameters": count_parameters(self.net),
            "data": self.meta,
            "training": {
                "kind": TRAINING_KIND,
                **config.to_dict(),
                "init_used": self.start.name,
                "context_used": self.start.context,
                "lr_used": self.start.lr,
                "one_fixed_mask": bool(self.meta.get("one_fixed_mask")),
                "iterations_done": state.iteration,
                "seconds": round(state.seconds, 1),
                "device": self.device,
                "stopped": state.stopped,
                "completed": state.completed,
                "final_loss": status.loss[-1][1] if status.loss else None,
            },
            "metrics": {
                "validation_psnr": final_val,
                "linear_psnr": None if validation is None else round(validation.linear_psnr, 3),
                "validation_pixels": 0 if validation is None else validation.count,
                "validation_slices": [] if validation is None else validation.slices,
            },
            "notes": list(status.notes),
            "command": self.meta.get("command"),
            "software": {"torch": torch.__version__, "python": platform.python_version()},
        }

    def save(self, final: bool) -> dict[str, Any]:
        """Write the weights with their card and the learning curves."""
        from napari_sparse_sem.nn.checkpoint import prefixed
        from napari_sparse_sem.nn.weights import save_weights

        card = self.card()
        path, card_file = save_weights(self.out_path, prefixed("mse", self.net.state_dict()), card, overwrite=True)
        plot = save_learning_curves(self.status, curves_png(self.out_path), title=self.out_path.name)
        write_curves_json(curves_json(self.out_path), asdict(self.status))
        return {
            "path": path,
            "card_path": card_file,
            "curves_path": plot,
            "iterations": self.state.iteration,
            "seconds": self.state.seconds,
            "stopped": self.state.stopped,
            "validation_psnr": card["metrics"]["validation_psnr"],
            "linear_psnr": card["metrics"]["linear_psnr"],
            "notes": list(self.status.notes),
            "card": card,
            "final": final,
        }


def save_learning_curves(status: SelfTrainingStatus, path: str | Path, title: str = "") -> Path:
    """Plot the hidden-pixel MSE and the validation PSNR (vs ``linear``) to a PNG."""
    losses = Panel(f"self-supervised {title}".strip(), [Series(status.loss, "MSE at hidden scanned pixels")], log=True)
    psnr = Panel(
        "validation",
        [Series(status.validation, "network", fmt="o-", line_width=1.0)],
        ylabel="PSNR (dB), held-out scanned pixels",
        hlines=[] if status.linear_psnr is None else [(status.linear_psnr, "linear interpolation")],
    )
    return plot_curves([losses, psnr], path, size=(8.0, 3.2))


def _check_out(out_path: Path, overwrite: bool) -> None:
    from napari_sparse_sem.nn.weights import SUFFIX, card_path

    if out_path.suffix != SUFFIX:
        raise ValueError(f"the weights file must end with {SUFFIX} (its model card goes beside it), got {out_path}")
    if not overwrite:
        paths = (out_path, card_path(out_path), curves_png(out_path), curves_json(out_path))
        existing = [str(p) for p in paths if p.exists()]
        if existing:
            raise FileExistsError(
                f"{' and '.join(existing)} already exist(s); pass overwrite=True (--overwrite) or choose another name"
            )


def train_self_job(
    sparse: Any,
    mask: Any,
    config: SelfTrainingConfig | None = None,
    out_path: str | Path = "self.safetensors",
    overwrite: bool = False,
    device: str = "cpu",
    *,
    slices: Sequence[int] | None = None,
    data_name: str | None = None,
    command: str | None = None,
) -> Job[dict[str, Any]]:
    """Train a generator on the sparse scan ``sparse`` (float values in [0, 1]; (z, y, x) or one (y, x) slice) with
    its ``mask`` alone, and save it to ``out_path`` with its card and learning curves.

    ``slices``: the slices to learn from (default all). Yields :class:`~napari_sparse_sem.runtime.Progress` events
    whose ``partial`` is a :class:`SelfTrainingStatus`; a stop (Cancel, Ctrl-C) saves what was trained. Returns a dict
    with ``path``, ``card_path``, ``curves_path``, ``iterations``, ``seconds``, ``stopped``, ``validation_psnr``,
    ``linear_psnr``, ``notes`` and ``card``.
    """
    config = config or SelfTrainingConfig()
    out_path = Path(out_path)
    _check_out(out_path, overwrite)
    if len(sparse.shape) == 2:
        sparse, mask = np.asarray(sparse)[None], np.asarray(mask)[None]
    if tuple(sparse.shape) != tuple(mask.shape) or len(sparse.shape) != 3:
        raise ValueError(
            f"sparse and mask must be (z, y, x) stacks of the same shape, got {tuple(sparse.shape)} and "
            f"{tuple(mask.shape)}"
        )
    if min(sparse.shape[1:]) < 32:
        raise ValueError(f"the slices ({sparse.shape[1]}×{sparse.shape[2]} px) are too small: at least 32 px a side")
    slices = checked_slices(range(sparse.shape[0]) if slices is None else slices, int(sparse.shape[0]))
    device = pick_device(device)
    status = SelfTrainingStatus("prepare")
    yield Progress(0, 0, f"loading {len(slices)} sparse slices", status.snapshot())
    values, known = load_scan(sparse, mask, slices)
    fixed = one_fixed_mask(known)
    import torch

    torch.manual_seed(config.seed)  # fresh weights (init none) are drawn from the seed
    misfit = None
    if config.init == "flyem-context1" and config.context is None and not fixed and len(slices) >= 2:
        misfit = context_misfit(values, known)
    start = _starting_point(config, fixed, len(slices), misfit)
    status.notes = list(start.notes)
    validation, train_known = ValidationSet.build(
        values,
        known,
        slices,
        fraction=float(config.validation_fraction),
        max_slices=int(config.validation_slices),
        context=start.context,
        fill=start.net.config.fill,
        rng=np.random.default_rng([config.seed, 0]),
    )
    status.linear_psnr = None if validation is None else round(validation.linear_psnr, 3)
    status.phase = "train"
    coverage = float(known.mean())
    meta = {
        "file": data_name,
        "slices": list(slices),
        "shape": list(values.shape[1:]),
        "coverage": round(coverage, 5),
        "one_fixed_mask": fixed,
        "command": command,
    }
    trainer = SelfTrainer(
        config, start, (values, train_known, list(slices)), validation, status, out_path, device, meta
    )
    trainer.validate()
    return (yield from run_training(trainer))
