"""Training the neural SEM surrogate on a ``make-dataset`` store (Dahmen et al., paper 004, section 2.7).

As in the paper: L1 loss on the two output images, Adam with learning rate 10⁻³, no pretrained weights (ImageNet's
cannot be fetched here, and ours are 7-channel inputs anyway). Ours besides: random crops with the 8 flips/rotations
of the square (the normal map's x/y components flip and swap with the image, so the physics stays right; the beam is
along −z, so these symmetries hold), a cosine learning-rate decay, a time or iteration budget, checkpoints that make
a run resumable, and validation on the store's held-out (cube) samples. The loop itself (budget, checkpoints, stop,
divergence guard, device release) is :func:`napari_sparse_sem.nn.training.run_training`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from napari_sparse_sem.nn.curves import Panel, Series, curves_json, plot_curves, write_curves_json
from napari_sparse_sem.nn.training import Budget, Trainer, run_training
from napari_sparse_sem.params import Spec, param
from napari_sparse_sem.runtime import Job, Progress
from napari_sparse_sem.surrogate.model import SIGNALS, SurrogateConfig, build_network, network_inputs, network_tensors


@dataclass(frozen=True)
class SurrogateTrainingConfig(Spec):
    """Training parameters (the network's own are in ``model``); ``minutes`` and ``iterations`` both cap the run."""

    kind: ClassVar[str] = "surrogate-training"

    model: SurrogateConfig = param(
        default_factory=SurrogateConfig,
        cli=False,
        widget=False,
        help="The network (layout, input representation); its scales are set from the dataset.",
    )
    iterations: int | None = param(None, low=1, help="Stop after this many iterations (across resumes).")
    minutes: float | None = param(
        None, unit="min", low=0, low_open=True, help="Stop after this many minutes (across resumes)."
    )
    batch: int = param(16, low=1, help="Crops per iteration.")
    crop: int = param(96, unit="px", help="Crop size in pixels (a multiple of 16).")
    lr: float = param(1e-3, low=0, low_open=True, help="Adam learning rate (cosine decay to 2 % of it).")
    loss: str = param(
        "l2", choices=("l1", "l2"), help="l2 (default: unbiased on noisy MC targets) or l1 (the paper's)."
    )
    validate_every: int = param(250, low=1, cli=False, help="Iterations between scores on the held-out samples.")
    checkpoint_every: int = param(500, low=1, cli=False, help="Iterations between checkpoints.")
    seed: int = param(0, low=0, help="Random seed.")
    device: str = param("auto", help="auto, cpu, cuda or mps.")

    def __post_init__(self) -> None:
        if isinstance(self.model, Mapping):  # read back from a saved record
            object.__setattr__(self, "model", SurrogateConfig.from_dict(dict(self.model)))
        super().__post_init__()

    def validate(self) -> None:
        if self.iterations is None and self.minutes is None:
            raise ValueError("give a budget: --iterations, --minutes or both")
        if self.crop < 16 or self.crop % 16:
            raise ValueError(f"--crop must be a multiple of 16 and >= 16, got {self.crop}")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters (the network's under ``model``)."""
        return {**super().to_dict(), "model": self.model.to_dict()}

    def budget(self) -> Budget:
        """The training budget (iterations and/or minutes)."""
        return Budget(self.iterations, self.minutes)


@dataclass
class SurrogateDataset:
    """The finished samples of a make-dataset store in memory.

    ``heightfields`` (n, 7, s, s) as stored, ``targets`` (n, 2, s, s) the Monte Carlo BSE and SE, and per sample its
    index in the store, split, preset and Monte Carlo seconds (NaN where the store did not record them).
    """

    heightfields: np.ndarray
    targets: np.ndarray
    store_index: np.ndarray
    split: list[str]
    preset: list[str]
    seconds: np.ndarray
    attrs: dict[str, Any]

    def indices(self, split: str) -> np.ndarray:
        """Sample indices of one split (``train`` or ``held-out``)."""
        return np.array([i for i, s in enumerate(self.split) if s == split], dtype=np.int64)

    def inputs_for(self, config: SurrogateConfig) -> np.ndarray:
        """The network inputs (n, c, s, s) of ``config`` for every sample."""
        return np.stack([network_inputs(h, config) for h in self.heightfields]).astype(np.float32)


def read_dataset(path: str | Path) -> SurrogateDataset:
    """Load the finished samples of a make-dataset zarr store (clear errors for a missing, foreign or empty store)."""
    import zarr

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"dataset {path} not found; make one with `sparse-sem surrogate make-dataset`")
    root = zarr.open_group(str(path), mode="r")
    missing = [name for name in ("inputs", "bse", "se", "done") if name not in root]
    if missing:
        raise ValueError(f"{path} is not a surrogate dataset (it lacks {missing}); make one with make-dataset")
    attrs = dict(root.attrs)
    keep = np.flatnonzero(np.asarray(root["done"][:], dtype=bool))
    if keep.size == 0:
        raise ValueError(f"{path} holds no finished samples yet; run make-dataset (with --resume) to fill it")
    heightfields = np.asarray(root["inputs"].get_orthogonal_selection((keep,)), dtype=np.float32)
    targets = np.stack([np.asarray(root[s].get_orthogonal_selection((keep,))) for s in SIGNALS], axis=1)
    seconds = np.asarray(root["seconds"][:], float)[keep] if "seconds" in root else np.full(keep.size, np.nan)
    samples = attrs.get("samples", [])
    split = [samples[i]["split"] if i < len(samples) else "train" for i in keep]
    preset = [samples[i]["preset"] if i < len(samples) else "" for i in keep]
    return SurrogateDataset(heightfields, targets.astype(np.float32), keep, split, preset, seconds, attrs)


def config_for_dataset(config: SurrogateConfig, attrs: dict[str, Any], targets: np.ndarray) -> SurrogateConfig:
    """The config's scales from the dataset: depths by its no-surface depth, outputs by their 99th percentiles."""
    spec = attrs.get("spec", {})
    mc = spec.get("mc", {})
    no_surface = float(attrs.get("no_surface_value", config.no_surface))
    scales = tuple(float(max(np.percentile(targets[:, k], 99.0), 1e-3)) for k in range(targets.shape[1]))
    return config.with_(
        no_surface=no_surface,
        depth_scale=no_surface,
        output_scale=scales,
        pixel_size_nm=float(spec.get("pixel_size_nm", config.pixel_size_nm)),
        energy_kev=float(mc.get("energy_kev", config.energy_kev)),
        element=str(mc.get("element", config.element)),
    )


def dihedral(x: Any, k: int, normal_channels: tuple[int | None, int | None]) -> Any:
    """Apply the ``k``-th (0–7) symmetry of the square to (..., c, y, x) tensors, fixing the normal map's x/y signs."""
    import torch

    nx, ny = normal_channels
    x = x.clone()
    if k & 1:  # mirror x
        x = torch.flip(x, dims=[-1])
        if nx is not None:
            x[..., nx, :, :] *= -1
    if k & 2:  # mirror y
        x = torch.flip(x, dims=[-2])
        if ny is not None:
            x[..., ny, :, :] *= -1
    if k & 4:  # transpose: x ↔ y
        x = x.transpose(-1, -2)
        if nx is not None and ny is not None:
            x[..., [nx, ny], :, :] = x[..., [ny, nx], :, :]
    return x


def _normal_channels(config: SurrogateConfig) -> tuple[int | None, int | None]:
    channels = list(config.channels)
    return (channels.index(4) if 4 in channels else None, channels.index(5) if 5 in channels else None)


@dataclass
class SurrogateTrainingStatus:
    """Learning curves and counters of a run (saved beside the checkpoint, plotted by the widget and the CLI)."""

    iteration: int = 0
    seconds: float = 0.0
    loss: list[tuple[int, float]] = field(default_factory=list)
    validation: list[tuple[int, float, float]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready curves."""
        return asdict(self)


def state_path(path: str | Path) -> Path:
    """The resumable checkpoint beside the final weights ``path``."""
    path = Path(path)
    return path.with_name(path.stem + ".state.safetensors")


def curves_path(path: str | Path) -> Path:
    """The learning-curve PNG beside the final weights ``path`` (its numbers: ``.curves.json``)."""
    from napari_sparse_sem.nn.curves import curves_png

    return curves_png(path)


def _validation_l1(net: Any, inputs: Any, targets: Any, batch: int) -> tuple[float, float]:
    """Mean |prediction − MC| per signal on held-out samples, in the targets' units (scaled)."""
    import torch

    was_training = net.training
    net.eval()
    totals = torch.zeros(len(SIGNALS), device=inputs.device)
    with torch.inference_mode():
        for start in range(0, inputs.shape[0], batch):
            pred = net(inputs[start : start + batch]).float()
            totals += (pred - targets[start : start + batch]).abs().mean(dim=(2, 3)).sum(dim=0)
    net.train(was_training)
    values = (totals / inputs.shape[0]).cpu().numpy()
    return float(values[0]), float(values[1])


class _SurrogateTrainer(Trainer[dict[str, Any]]):
    """The surrogate's part of the training loop: symmetric random crops, L1/L2 loss, held-out L1, the files."""

    def __init__(
        self,
        config: SurrogateTrainingConfig,
        data: SurrogateDataset,
        model_config: SurrogateConfig,
        out: Path,
        device: str,
        dataset: str | Path,
        command: str,
    ) -> None:
        import torch

        super().__init__()
        self.config, self.data, self.model_config, self.out = config, data, model_config, out
        self.dataset, self.command, self.device = dataset, command, device
        self.checkpoint = state_path(out)
        self.budget = config.budget()
        self.log_every = 10
        self.checkpoint_every = int(config.checkpoint_every)
        self.train_idx, self.val_idx = data.indices("train"), data.indices("held-out")
        self.size = data.heightfields.shape[-1]
        self.crop = min(config.crop, self.size - self.size % 16)
        scale = torch.tensor(model_config.output_scale, dtype=torch.float32).view(1, -1, 1, 1)
        self.inputs = torch.from_numpy(data.inputs_for(model_config)).to(device)
        self.targets = (torch.from_numpy(data.targets) / scale).to(device)
        self.normals = _normal_channels(model_config)
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.net = build_network(model_config).to(device)
        self.optimizer = torch.optim.Adam(self.net.parameters(), lr=config.lr)
        self.status = SurrogateTrainingStatus()
        self.use_amp = device.startswith("cuda")
        if self.use_amp:
            torch.backends.cudnn.benchmark = True
        self.pending_loss: Any = None

    def resume(self, tensors: dict[str, Any], saved: dict[str, Any]) -> None:
        """Continue from the checkpoint: weights, optimiser state, curves and counters."""
        from napari_sparse_sem.nn.checkpoint import load_optimizer, unprefixed

        device = self.device
        self.net.load_state_dict({k: v.to(device) for k, v in unprefixed("net", tensors).items()})
        load_optimizer(self.optimizer, "opt", {k: v.to(device) for k, v in tensors.items()}, saved["optimizer_groups"])
        self.status = SurrogateTrainingStatus(
            saved["status"]["iteration"],
            saved["status"]["seconds"],
            [tuple(v) for v in saved["status"]["loss"]],
            [tuple(v) for v in saved["status"]["validation"]],
        )
        self.state.iteration, self.state.seconds = self.status.iteration, self.status.seconds
        self.rng = np.random.default_rng([self.config.seed, self.status.iteration])

    def learning_rate(self) -> float:
        """Cosine decay to 2 % over the iterations (or, without an iteration budget, over the minutes)."""
        config = self.config
        if config.iterations is not None:
            progress = self.state.iteration / config.iterations
        else:
            progress = self.state.seconds / (60.0 * float(config.minutes or 1.0))
        return config.lr * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))

    def losses(self) -> dict[str, float]:
        import torch

        config, rng, crop = self.config, self.rng, self.crop
        picks = rng.choice(self.train_idx, size=config.batch)
        ys = rng.integers(0, self.size - crop + 1, size=config.batch)
        xs = rng.integers(0, self.size - crop + 1, size=config.batch)
        ks = rng.integers(0, 8, size=config.batch)
        xb, yb = [], []
        for i, y0, x0, k in zip(picks, ys, xs, ks, strict=True):
            box = (slice(y0, y0 + crop), slice(x0, x0 + crop))
            xb.append(dihedral(self.inputs[i][(slice(None), *box)], int(k), self.normals))
            yb.append(dihedral(self.targets[i][(slice(None), *box)], int(k), (None, None)))
        x, y = torch.stack(xb), torch.stack(yb)
        for group in self.optimizer.param_groups:
            group["lr"] = self.learning_rate()
        with torch.autocast("cuda", dtype=torch.bfloat16, enabled=self.use_amp):
            pred = self.net(x)
        diff = pred.float() - y
        self.pending_loss = diff.abs().mean() if config.loss == "l1" else (diff * diff).mean()
        return {"loss": float(self.pending_loss.detach())}

    def validate(self) -> None:
        """Record the mean held-out L1 per signal (when the dataset has held-out samples)."""
        if self.val_idx.size:
            bse, se = _validation_l1(self.net, self.inputs[self.val_idx], self.targets[self.val_idx], self.config.batch)
            self.status.validation.append((self.state.iteration, bse, se))

    def after_step(self) -> None:
        status, iteration = self.status, self.state.iteration
        status.iteration, status.seconds = iteration, self.state.seconds
        if iteration % 10 == 0 or iteration == 1:
            status.loss.append((iteration, self.state.last["loss"]))
        if iteration % self.config.validate_every == 0:
            self.validate()

    def progress(self, means: Mapping[str, float]) -> Progress:
        iteration = self.state.iteration
        total = self.budget.expected_total(iteration, self.state.seconds)
        message = f"iteration {iteration}: {self.config.loss.upper()} {self.state.last['loss']:.4f}"
        return Progress(iteration, total, message, partial=self.status)

    def finish(self) -> dict[str, Any]:
        self.validate()
        self.save(final=True)
        status = self.status
        return {
            "out": str(self.out),
            "iterations": status.iteration,
            "seconds": round(status.seconds, 1),
            "device": self.device,
            "held_out_l1_scaled": status.validation[-1][1:] if status.validation else None,
            "train_samples": int(self.train_idx.size),
            "held_out_samples": int(self.val_idx.size),
        }

    def kept(self) -> str:
        if self.checkpoint.is_file():
            return f"the last checkpoint ({self.checkpoint.name}) is kept"
        return "nothing was saved"

    def save(self, final: bool) -> None:
        """Write the checkpoint, the weights (half precision) with their card, and the learning curves."""
        from napari_sparse_sem.nn.checkpoint import optimizer_tensors, prefixed, save_checkpoint
        from napari_sparse_sem.nn.weights import save_weights

        status, config = self.status, self.config
        status.iteration, status.seconds = self.state.iteration, self.state.seconds
        opt_tensors, groups = optimizer_tensors("opt", self.optimizer)
        card = {
            "model": "surrogate-checkpoint",
            "config": self.model_config.to_dict(),
            "training": config.to_dict(),
            "optimizer_groups": groups,
            "status": status.to_dict(),
        }
        save_checkpoint(self.checkpoint, prefixed("net", network_tensors(self.net)) | opt_tensors, card)
        metrics = {}
        if status.validation:
            metrics = {"held_out_l1_scaled": {"bse": status.validation[-1][1], "se": status.validation[-1][2]}}
        attrs = self.data.attrs
        save_weights(
            self.out,
            network_tensors(self.net, half=True),
            {
                "model": "surrogate",
                "config": self.model_config.to_dict(),
                "data": {"dataset": str(self.dataset), **{k: attrs.get(k) for k in ("spec", "electrons_per_pixel")}},
                "training": config.to_dict(),
                "iterations": status.iteration,
                "training_seconds": round(status.seconds, 1),
                "device": self.device,
                "command": self.command,
                "metrics": metrics,
                "final": final,
            },
            overwrite=True,
        )
        write_curves_json(curves_json(self.out), status.to_dict())
        save_learning_curves(status, curves_path(self.out), title=self.model_config.layout)


def train_surrogate_job(
    dataset: str | Path,
    out: str | Path,
    config: SurrogateTrainingConfig,
    resume: bool = False,
    overwrite: bool = False,
    command: str = "",
) -> Job[dict[str, Any]]:
    """Train on ``dataset``; write ``out`` (safetensors + card), a resumable checkpoint and learning curves.

    Progress events carry the status (partial) so a widget can plot live curves. Stopping the generator (Cancel)
    writes the checkpoint and the weights so far, so a run can be resumed with ``resume=True``.
    """
    from napari_sparse_sem.nn.checkpoint import load_checkpoint
    from napari_sparse_sem.runtime import pick_device

    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"the weights file must end with .safetensors, got {out.name!r}")
    checkpoint = state_path(out)
    if not resume and not overwrite and (out.exists() or checkpoint.exists()):
        raise FileExistsError(f"{out} (or its checkpoint) exists; pass --resume to continue, --overwrite to replace")
    if resume and not checkpoint.exists():
        raise FileNotFoundError(f"no checkpoint {checkpoint} to resume; start without --resume")
    device = pick_device(config.device)
    yield Progress(0, 0, "reading the dataset")
    data = read_dataset(dataset)
    if data.indices("train").size == 0:
        raise ValueError(f"{dataset} has no finished training samples")
    if resume:
        tensors, saved = load_checkpoint(checkpoint)
        model_config = SurrogateConfig.from_dict(saved["config"])
    else:
        model_config = config_for_dataset(config.model, data.attrs, data.targets[data.indices("train")])
    trainer = _SurrogateTrainer(config, data, model_config, out, device, dataset, command)
    if resume:
        trainer.resume(tensors, saved)
    trainer.net.train()
    return (yield from run_training(trainer))


def save_learning_curves(status: SurrogateTrainingStatus, path: str | Path, title: str = "") -> Path:
    """Plot the training loss and the held-out L1 per signal to a PNG."""
    validation = [
        Series([(it, bse) for it, bse, _ in status.validation], "BSE", fmt="o-", line_width=1.0),
        Series([(it, se) for it, _, se in status.validation], "SE", fmt="s-", line_width=1.0),
    ]
    return plot_curves(
        [
            Panel(f"training loss (scaled) {title}".strip(), [Series(status.loss)], log=True),
            Panel("held-out L1 (scaled units)", validation, log=True),
        ],
        path,
        size=(7.5, 3.0),
    )
