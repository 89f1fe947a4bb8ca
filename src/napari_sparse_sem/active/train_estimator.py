"""Train the ``unet`` error estimator (Mi et al.'s binarized error estimation) on a user's reference slices.

Reference slices are dense slices of the user's own stack. For each slice and each initial scan (e.g. ``lowres:4``) the
scan is simulated, reconstructed with the chosen method and compared with the slice: the target of a pixel is whether
its absolute error exceeds the mean absolute error of that slice (Mi et al., MICCAI 2020, section 2.2). These are
computed once; training then draws random square crops (random positions also randomise the phase of a ``lowres``
lattice in the crop), applies one of the 8 flips/rotations and minimises binary cross-entropy on logits. Adam,
cosine-decayed learning rate over the budget (iterations or minutes, whichever ends first).

Measured on FlyEM (train slices 0-199, test 200-249, ``lowres:4`` + ``linear``, ~600 batches of 16 × 96², correlation
with the true error on the unscanned pixels): the classes are only mildly unbalanced (41 % of pixels exceed ε), and
weighting the positives by the ratio of negatives to positives (``balance=True``, pos_weight 1.44) gave 0.398 against
0.405 unweighted, so it is off by default. Extra thresholds (several multiples of ε, one output each, estimate = the
mean probability) did not help either: 0.393 for (0.5, 1, 2) ε, 0.363 for 0.25 ε … 3 ε; a 1.8 M-parameter 4-level U-Net
scored 0.394, the same as the 0.45 M default. A regression of |error| / ε by MSE (the conditional mean, which maximises
the correlation) reached 0.421: much of the error at ×4 is pixel noise of the reference, which no estimator can
predict.

The loop is :func:`napari_sparse_sem.nn.training.run_training` (budget, logging, divergence guard, stop, device
release); this module supplies the samples, batches and loss. The job yields
:class:`~napari_sparse_sem.runtime.Progress` events whose ``partial`` is a :class:`TrainingStatus` (loss so far) and
returns a summary dict. Closing the generator early (cancel, Ctrl-C) still saves what was trained so far as a
checkpoint whose model card says ``"stopped": "cancelled"``; a non-finite loss stops the training with an error and
writes nothing.
"""

from __future__ import annotations

import math
import platform
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from napari_sparse_sem.active.error_estimation import UNET_INPUTS, binarized_error, unet_inputs
from napari_sparse_sem.active.scan import parse_initial
from napari_sparse_sem.nn.reference import reference_plane
from napari_sparse_sem.nn.training import Budget, Trainer, run_training
from napari_sparse_sem.params import Spec, param
from napari_sparse_sem.runtime import Job, Progress, checked_slices

SCHEDULES = ("cosine", "constant")


@dataclass
class EstimatorTrainingConfig(Spec):
    """Parameters of :func:`train_estimator_job`. Training stops after ``iterations`` batches or ``minutes`` of
    training, whichever comes first (either may be ``None``, not both). ``balance`` weights the positive class by the
    measured negatives/positives ratio; ``thresholds`` are the multiples of the mean error ε that are classified (one
    output each; Mi: just 1)."""

    kind: ClassVar[str] = "estimator-training"

    initial: list[str] = param(
        default_factory=lambda: ["lowres:4"],
        help="Initial scans whose errors the estimator learns: lowres:F or PATTERN:COVERAGE (one or more).",
    )
    recon: str = param("linear", help="Reconstruction method of the initial scan.")
    crop: int = param(96, unit="px", low=1, help="Side of the random square training crops.")
    batch_size: int = param(16, low=1, help="Crops per batch.")
    iterations: int | None = param(
        2000, nullable=True, low=1, help="Training batches (with minutes: whichever ends first)."
    )
    minutes: float | None = param(None, unit="min", low=0, low_open=True, help="Training time budget.")
    lr: float = param(1e-3, low=0, low_open=True, help="Adam learning rate.")
    schedule: str = param(
        "cosine", choices=SCHEDULES, cli=False, help="Learning rate schedule: cosine decay to 5 % or constant."
    )
    balance: bool = param(False, help="Weight the positive class by the negatives/positives ratio.")
    thresholds: list[float] = param(
        default_factory=lambda: [1.0],
        cli=False,
        widget=False,
        help="Multiples of the mean error that are classified (one output each; the estimate is their mean).",
    )
    seed: int = param(0, low=0, help="Seed of crops, augmentation, initial weights and random scans.")
    base_channels: int = param(16, low=1, help="U-Net channels of the first level (doubling per level).")
    levels: int = param(3, low=1, help="U-Net down-sampling levels.")
    log_every: int = param(10, low=1, cli=False, widget=False, help="Iterations per logged loss (their mean).")

    def __post_init__(self) -> None:
        if isinstance(self.initial, str):
            self.initial = [self.initial]
        self.initial = [str(t) for t in self.initial]
        self.thresholds = [float(t) for t in self.thresholds]
        super().__post_init__()

    def validate(self) -> None:
        if not self.initial:
            raise ValueError("initial needs at least one initial scan, e.g. ['lowres:4']")
        for text in self.initial:
            parse_initial(text)  # a clear error for a bad spec, before any work
        if self.iterations is None and self.minutes is None:
            raise ValueError("give a training budget: iterations, minutes or both")
        if int(self.crop) < 2**self.levels:
            raise ValueError(f"crop must be at least 2**levels = {2**self.levels} pixels, got {self.crop}")
        if not self.thresholds or min(self.thresholds) <= 0 or sorted(set(self.thresholds)) != self.thresholds:
            raise ValueError(
                f"thresholds must be increasing positive multiples of the mean error, got {self.thresholds}"
            )

    def budget(self) -> Budget:
        """The training budget (iterations and/or minutes)."""
        return Budget(self.iterations, self.minutes)


@dataclass
class TrainingStatus:
    """``Progress.partial`` of a training job: where it is and the loss so far (mean per ``log_every`` batches)."""

    phase: str  # "prepare" or "train"
    iteration: int = 0
    iterations: int | None = None
    seconds: float = 0.0
    loss: list[float] = field(default_factory=list)


@dataclass
class _Sample:
    reference: np.ndarray  # (H, W) float32
    recon: np.ndarray
    mask: np.ndarray  # bool
    target: np.ndarray  # (thresholds, H, W) bool, |reference - recon| > t·ε
    epsilon: float
    z: int
    initial: str


def prepare_samples(
    volume: Any,
    slices: Sequence[int],
    initial: Sequence[str],
    recon: str,
    seed: int = 0,
    device: str = "cpu",
    thresholds: Sequence[float] = (1.0,),
) -> Job[list[_Sample]]:
    """Simulate every initial scan on every slice, reconstruct it and binarize its error (once, before training)."""
    from napari_sparse_sem.recon.base import create
    from napari_sparse_sem.sampling.patterns import slice_mask

    reconstructor = create(recon, device=device)
    specs = [(text, parse_initial(text, seed=seed)) for text in initial]
    total = len(slices) * len(specs)
    samples: list[_Sample] = []
    try:
        for z in slices:
            reference = reference_plane(volume, z)
            for text, spec in specs:
                mask = slice_mask(reference.shape, spec, int(z)).mask
                sparse = np.where(mask, reference, 0.0).astype(np.float32)
                rec = np.asarray(reconstructor.reconstruct_slice(sparse[None], mask[None], 0), dtype=np.float32)
                target, epsilon = binarized_error(reference, rec, tuple(thresholds))
                samples.append(_Sample(reference, rec, mask, target, epsilon, int(z), text))
                status = TrainingStatus("prepare")
                yield Progress(len(samples), total, f"preparing slice {z} ({text}, {recon})", status)
    finally:
        reconstructor.close()
    return samples


def _crop_batch(
    samples: list[_Sample], size: int, batch: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """``batch`` random square crops of random samples, each in one of the 8 flips/rotations: inputs and targets."""
    x = np.empty((batch, len(UNET_INPUTS), size, size), dtype=np.float32)
    y = np.empty((batch, samples[0].target.shape[0], size, size), dtype=np.float32)
    for i in range(batch):
        s = samples[int(rng.integers(len(samples)))]
        height, width = s.recon.shape
        y0 = int(rng.integers(height - size + 1))
        x0 = int(rng.integers(width - size + 1))
        box = (slice(y0, y0 + size), slice(x0, x0 + size))
        sparse = np.where(s.mask[box], s.reference[box], 0.0)
        inputs = unet_inputs(s.recon[box], sparse, s.mask[box])
        target = s.target[(slice(None), *box)].astype(np.float32)
        k = int(rng.integers(4))
        if k:
            inputs, target = np.rot90(inputs, k, axes=(1, 2)), np.rot90(target, k, axes=(1, 2))
        if rng.integers(2):
            inputs, target = inputs[:, :, ::-1], target[:, :, ::-1]
        x[i], y[i] = inputs, target
    return x, y


def _learning_rate(config: EstimatorTrainingConfig, progress: float) -> float:
    if config.schedule == "constant":
        return config.lr
    return config.lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))


class _EstimatorTrainer(Trainer[dict[str, Any]]):
    """The error estimator's part of the training loop: crops of the prepared samples, binary cross-entropy, the
    model card."""

    def __init__(
        self,
        config: EstimatorTrainingConfig,
        samples: list[_Sample],
        size: int,
        slices: list[int],
        out_path: Path,
        device: str,
        card_fields: dict[str, Any],
    ) -> None:
        import torch

        from napari_sparse_sem.nn.unet import UNet, UNetConfig

        super().__init__()
        self.config, self.samples, self.size, self.slices, self.out_path = config, samples, size, slices, out_path
        self.card_fields = card_fields
        self.budget = config.budget()
        self.device = device
        self.log_every = int(config.log_every)
        self.positive = np.mean([s.target.mean(axis=(1, 2)) for s in samples], axis=0)  # per threshold
        if not np.all((self.positive > 0) & (self.positive < 1)):
            raise ValueError("the reconstructions are exact (or wrong everywhere): there is no error to learn")
        self.pos_weight = (1.0 - self.positive) / self.positive if config.balance else np.ones_like(self.positive)
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.unet_config = UNetConfig(
            len(UNET_INPUTS), len(config.thresholds), base_channels=config.base_channels, levels=config.levels
        )
        self.model = UNet(self.unet_config).to(device)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=config.lr)
        weight = torch.tensor(self.pos_weight, dtype=torch.float32, device=device).reshape(-1, 1, 1)
        self.loss_fn = torch.nn.BCEWithLogitsLoss(pos_weight=weight)
        self.curve: list[float] = []  # mean loss per log interval
        self.pending_loss: Any = None

    def losses(self) -> dict[str, float]:
        import torch

        progress = self.budget.fraction(self.state.iteration, self.state.seconds)
        for group in self.optimizer.param_groups:
            group["lr"] = _learning_rate(self.config, progress)
        x, y = _crop_batch(self.samples, self.size, self.config.batch_size, self.rng)
        xt = torch.from_numpy(x).to(self.device)
        yt = torch.from_numpy(y).to(self.device)
        self.pending_loss = self.loss_fn(self.model(xt), yt)
        return {"loss": float(self.pending_loss.detach())}

    def progress(self, means: Mapping[str, float]) -> Progress:
        iteration, seconds = self.state.iteration, self.state.seconds
        self.curve.append(means["loss"])
        total = self.budget.expected_total(iteration, seconds)
        status = TrainingStatus("train", iteration, total, seconds, list(self.curve))
        return Progress(iteration, total, f"training: iteration {iteration}, loss {self.curve[-1]:.4f}", status)

    def finish(self) -> dict[str, Any]:
        means = self.state.window_means()
        if "loss" in means:
            self.curve.append(means["loss"])
        self.model.eval()
        return self.save(final=True)

    def save(self, final: bool) -> dict[str, Any]:
        """Write the weights and their model card (the estimator keeps no separate training state)."""
        import torch

        from napari_sparse_sem import __version__
        from napari_sparse_sem.nn.unet import count_parameters
        from napari_sparse_sem.nn.weights import save_weights

        config, state = self.config, self.state
        window = state.window_means()
        final_loss = window["loss"] if "loss" in window else (self.curve[-1] if self.curve else float("nan"))
        training = {
            **config.to_dict(),
            "iterations_done": state.iteration,
            "seconds": round(state.seconds, 1),
            "final_loss": final_loss,
            "loss_curve": [round(v, 5) for v in self.curve],
            "positive_fraction": [round(float(v), 4) for v in self.positive],
            "pos_weight": [round(float(v), 4) for v in self.pos_weight],
            "crop_used": self.size,
            "stopped": state.stopped,
            "completed": state.completed,
            "device": self.device,
        }
        fields = self.card_fields
        card: dict[str, Any] = {
            "task": "binarized-error",
            "description": (
                "Mi et al. (MICCAI 2020) binarized error estimation: sigmoid(output k) = P(|I_HR - I_SR| > t_k ε), "
                "ε = the image's mean absolute reconstruction error, t_k = thresholds; the estimate is their mean"
            ),
            "inputs": list(UNET_INPUTS),
            "thresholds": list(config.thresholds),
            "input_normalisation": "recon and sparse standardised by the recon's mean and std; mask 0/1",
            "architecture": {
                "name": "unet",
                "config": self.unet_config.to_dict(),
                "parameters": count_parameters(self.model),
            },
            "data": {
                "file": fields["data_name"],
                "slices": self.slices,
                "shape": [int(s) for s in self.samples[0].recon.shape],
            },
            "initial": list(config.initial),
            "recon": config.recon,
            "training": training,
            "command": fields["command"],
            "metrics": fields["metrics"] or {},
            "software": {
                "napari_sparse_sem": __version__,
                "torch": torch.__version__,
                "python": platform.python_version(),
            },
        }
        state_dict = {name: tensor for name, tensor in self.model.state_dict().items()}
        path, card_file = save_weights(self.out_path, state_dict, card, overwrite=True)
        return {
            "path": path,
            "card_path": card_file,
            "iterations": state.iteration,
            "seconds": state.seconds,
            "final_loss": final_loss,
            "stopped": state.stopped,
            "card": card,
        }


def train_estimator_job(
    volume: Any,
    slices: Sequence[int],
    config: EstimatorTrainingConfig | None = None,
    out_path: str | Path = "error_unet.safetensors",
    overwrite: bool = False,
    device: str = "cpu",
    *,
    data_name: str | None = None,
    command: str | None = None,
    metrics: dict[str, Any] | None = None,
) -> Job[dict[str, Any]]:
    """Train a ``unet`` error estimator on the dense ``slices`` of ``volume`` and save it to ``out_path``.

    ``volume``: (z, y, x), float32 in [0, 1] (any array that gives a 2D numpy slice for ``volume[z]``, so lazy views
    work). ``out_path`` (``.safetensors``) gets the weights and a model card beside it (``.json``) recording
    ``data_name``, the slices, initial scans, reconstruction method, iterations, seconds, final loss, ``command`` and
    ``metrics`` (evaluation numbers, when given). Existing files are refused unless ``overwrite``.

    Returns a dict: ``path``, ``card_path``, ``iterations``, ``seconds``, ``final_loss``, ``stopped``
    (``iterations``/``time``) and the whole card under ``card``. When the generator is closed early, what was trained so
    far is saved (card ``"stopped": "cancelled"``, ``"completed": false``) — nothing is saved before the first batch.
    """
    from napari_sparse_sem.nn.weights import SUFFIX, card_path
    from napari_sparse_sem.runtime import pick_device

    config = config or EstimatorTrainingConfig()
    out_path = Path(out_path)
    if out_path.suffix != SUFFIX:
        raise ValueError(f"the output must be a {SUFFIX} file, got {out_path.name!r}")
    existing = [str(p) for p in (out_path, card_path(out_path)) if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{' and '.join(existing)} already exist(s); pass overwrite=True (--overwrite) or choose another file name"
        )
    slices = checked_slices(slices, int(volume.shape[0]))
    device = pick_device(device)

    samples = yield from prepare_samples(
        volume, slices, config.initial, config.recon, config.seed, device, config.thresholds
    )
    size = min(int(config.crop), *(min(s.recon.shape) for s in samples))
    if size < 2**config.levels:
        raise ValueError(f"the slices are too small ({size} px) for a U-Net of {config.levels} levels")
    card_fields = {"data_name": data_name, "command": command, "metrics": metrics}
    trainer = _EstimatorTrainer(config, samples, size, slices, out_path, device, card_fields)
    trainer.model.train()
    return (yield from run_training(trainer))
