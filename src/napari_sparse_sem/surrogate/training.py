"""Training the neural SEM surrogate on a ``make-dataset`` store (Dahmen et al., paper 004, section 2.7).

As in the paper: L1 loss on the two output images, Adam with learning rate 10⁻³, no pretrained weights (ImageNet's
cannot be fetched here, and ours are 7-channel inputs anyway). Ours besides: random crops with the 8 flips/rotations
of the square (the normal map's x/y components flip and swap with the image, so the physics stays right; the beam is
along −z, so these symmetries hold), a cosine learning-rate decay, a time or iteration budget, checkpoints that make
a run resumable, and validation on the store's held-out (cube) samples.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from napari_sparse_sem.runtime import Job, Progress, expected_total
from napari_sparse_sem.surrogate.model import SIGNALS, SurrogateConfig, build_network, network_inputs, network_tensors


@dataclass(frozen=True)
class SurrogateTrainingConfig:
    """Training parameters (the network's own are in ``model``); ``minutes`` and ``iterations`` both cap the run."""

    model: SurrogateConfig = field(default_factory=SurrogateConfig)
    iterations: int | None = None
    minutes: float | None = None
    batch: int = 16
    crop: int = 96
    lr: float = 1e-3
    loss: str = "l2"
    validate_every: int = 250
    checkpoint_every: int = 500
    seed: int = 0
    device: str = "auto"

    def __post_init__(self) -> None:
        if self.iterations is None and self.minutes is None:
            raise ValueError("give a budget: --iterations, --minutes or both")
        if self.iterations is not None and self.iterations < 1:
            raise ValueError("--iterations must be >= 1")
        if self.minutes is not None and self.minutes <= 0:
            raise ValueError("--minutes must be positive")
        if self.loss not in ("l1", "l2"):
            raise ValueError(f"--loss must be l1 or l2, got {self.loss!r}")
        if self.crop < 16 or self.crop % 16:
            raise ValueError(f"--crop must be a multiple of 16 and >= 16, got {self.crop}")
        if self.batch < 1:
            raise ValueError("--batch must be >= 1")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready parameters."""
        return {**asdict(self), "model": self.model.to_dict()}


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
    """The learning-curve PNG beside the final weights ``path``."""
    path = Path(path)
    return path.with_name(path.stem + ".curves.png")


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
    import torch

    from napari_sparse_sem.nn.weights import load_weights, save_weights
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
    saved: dict[str, Any] = {}
    data = read_dataset(dataset)
    train_idx, val_idx = data.indices("train"), data.indices("held-out")
    if train_idx.size == 0:
        raise ValueError(f"{dataset} has no finished training samples")
    if resume:
        tensors, saved = load_weights(checkpoint)
        model_config = SurrogateConfig.from_dict(saved["config"])
    else:
        model_config = config_for_dataset(config.model, data.attrs, data.targets[train_idx])
    size = data.heightfields.shape[-1]
    crop = min(config.crop, size - size % 16)
    scale = torch.tensor(model_config.output_scale, dtype=torch.float32).view(1, -1, 1, 1)
    inputs = torch.from_numpy(data.inputs_for(model_config)).to(device)
    targets = (torch.from_numpy(data.targets) / scale).to(device)
    normals = _normal_channels(model_config)

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    net = build_network(model_config).to(device)
    optimizer = torch.optim.Adam(net.parameters(), lr=config.lr)
    status = SurrogateTrainingStatus()
    if resume:
        net.load_state_dict({k[4:]: v.to(device) for k, v in tensors.items() if k.startswith("net.")})
        from napari_sparse_sem.recon.gan_training import _load_optimizer

        _load_optimizer(optimizer, "opt", {k: v.to(device) for k, v in tensors.items()}, saved["optimizer_groups"])
        status = SurrogateTrainingStatus(
            saved["status"]["iteration"],
            saved["status"]["seconds"],
            [tuple(v) for v in saved["status"]["loss"]],
            [tuple(v) for v in saved["status"]["validation"]],
        )
        rng = np.random.default_rng([config.seed, status.iteration])
    use_amp = device.startswith("cuda")
    if use_amp:
        torch.backends.cudnn.benchmark = True
    budget_s = None if config.minutes is None else config.minutes * 60.0

    def save(final: bool) -> None:
        from napari_sparse_sem.recon.gan_training import _optimizer_tensors

        opt_tensors, groups = _optimizer_tensors("opt", optimizer)
        tensors = {f"net.{k}": v for k, v in network_tensors(net).items()} | opt_tensors
        card = {
            "model": "surrogate-checkpoint",
            "config": model_config.to_dict(),
            "training": config.to_dict(),
            "optimizer_groups": groups,
            "status": status.to_dict(),
        }
        save_weights(checkpoint, tensors, card, overwrite=True)
        metrics = {}
        if status.validation:
            metrics = {"held_out_l1_scaled": {"bse": status.validation[-1][1], "se": status.validation[-1][2]}}
        save_weights(
            out,
            network_tensors(net, half=True),
            {
                "model": "surrogate",
                "config": model_config.to_dict(),
                "data": {"dataset": str(dataset), **{k: data.attrs.get(k) for k in ("spec", "electrons_per_pixel")}},
                "training": config.to_dict(),
                "iterations": status.iteration,
                "training_seconds": round(status.seconds, 1),
                "device": device,
                "command": command,
                "metrics": metrics,
                "final": final,
            },
            overwrite=True,
        )
        (out.with_name(out.stem + ".curves.json")).write_text(json.dumps(status.to_dict()))
        save_learning_curves(status, curves_path(out), title=model_config.layout)

    def learning_rate() -> float:
        if config.iterations is not None:
            progress = status.iteration / config.iterations
        else:
            progress = status.seconds / budget_s
        return config.lr * (0.02 + 0.98 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress))))

    net.train()
    started = time.perf_counter() - status.seconds
    finished = False
    try:
        while True:
            status.seconds = time.perf_counter() - started
            if config.iterations is not None and status.iteration >= config.iterations:
                break
            if budget_s is not None and status.seconds >= budget_s:
                break
            picks = rng.choice(train_idx, size=config.batch)
            ys = rng.integers(0, size - crop + 1, size=config.batch)
            xs = rng.integers(0, size - crop + 1, size=config.batch)
            ks = rng.integers(0, 8, size=config.batch)
            xb, yb = [], []
            for i, y0, x0, k in zip(picks, ys, xs, ks, strict=True):
                box = (slice(y0, y0 + crop), slice(x0, x0 + crop))
                xb.append(dihedral(inputs[i][(slice(None), *box)], int(k), normals))
                yb.append(dihedral(targets[i][(slice(None), *box)], int(k), (None, None)))
            x, y = torch.stack(xb), torch.stack(yb)
            for group in optimizer.param_groups:
                group["lr"] = learning_rate()
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                pred = net(x)
            diff = pred.float() - y
            loss = diff.abs().mean() if config.loss == "l1" else (diff * diff).mean()
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            status.iteration += 1
            if status.iteration % 10 == 0 or status.iteration == 1:
                status.loss.append((status.iteration, float(loss.detach())))
            if val_idx.size and status.iteration % config.validate_every == 0:
                bse, se = _validation_l1(net, inputs[val_idx], targets[val_idx], config.batch)
                status.validation.append((status.iteration, bse, se))
            if status.iteration % config.checkpoint_every == 0:
                save(final=False)
            if status.iteration % 10 == 0:
                total = expected_total(config.iterations, status.iteration, status.seconds, budget_s)
                yield Progress(
                    status.iteration,
                    total,
                    f"iteration {status.iteration}: {config.loss.upper()} {float(loss.detach()):.4f}",
                    partial=status,
                )
        if val_idx.size:
            bse, se = _validation_l1(net, inputs[val_idx], targets[val_idx], config.batch)
            status.validation.append((status.iteration, bse, se))
        finished = True
    finally:
        status.seconds = time.perf_counter() - started
        if status.iteration > 0:
            save(final=finished)
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    return {
        "out": str(out),
        "iterations": status.iteration,
        "seconds": round(status.seconds, 1),
        "device": device,
        "held_out_l1_scaled": status.validation[-1][1:] if status.validation else None,
        "train_samples": int(train_idx.size),
        "held_out_samples": int(val_idx.size),
    }


def save_learning_curves(status: SurrogateTrainingStatus, path: str | Path, title: str = "") -> Path:
    """Plot the training loss and the held-out L1 per signal to a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(7.5, 3.0))
    figure.set_layout_engine("tight")
    loss_axes, val_axes = figure.subplots(1, 2)
    if status.loss:
        steps, values = zip(*status.loss, strict=True)
        loss_axes.semilogy(steps, values, lw=0.8)
    loss_axes.set_title(f"training loss (scaled) {title}".strip(), fontsize=9)
    loss_axes.set_xlabel("iteration")
    if status.validation:
        steps, bse, se = zip(*status.validation, strict=True)
        val_axes.semilogy(steps, bse, "o-", ms=3, lw=1.0, label="BSE")
        val_axes.semilogy(steps, se, "s-", ms=3, lw=1.0, label="SE")
        val_axes.legend(fontsize=7, frameon=False)
    val_axes.set_title("held-out L1 (scaled units)", fontsize=9)
    val_axes.set_xlabel("iteration")
    path = Path(path)
    figure.savefig(path, dpi=110)
    return path
