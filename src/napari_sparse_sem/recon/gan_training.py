"""Train the partial-scan GAN (Ede & Beanland 2020) on a user's dense reference slices.

The practical workflow: a lab scans a few slices of a stack densely and the rest sparsely; the generator learns from
the dense ones. Each batch takes random square crops of random reference slices in one of the 8 flips/rotations; every
crop gets a freshly drawn mask (a pattern from ``patterns`` at a coverage drawn log-uniformly from ``coverage``, drawn
on a canvas up to twice the crop and cropped at a random place, so spirals and grids appear at every phase).

Two phases share one budget (iterations and/or minutes, whichever ends first):

1. **MSE pre-training** (the first ``pretrain_fraction`` of the budget): mean squared error of the restoration plus
   ``trainer_weight`` × that of the half-size trainer output, each through its own ALRC clipper
   (:mod:`napari_sparse_sem.nn.alrc`); Adam with a cosine-decayed learning rate. The generator at the end of this phase
   is saved as the ``mse`` variant (method ``gan-mse``).
2. **Adversarial fine-tuning**: the same losses plus ``adv_weight`` × the least-squares GAN loss of three discriminators
   judging crops at three scales (:class:`~napari_sparse_sem.nn.gan.MultiScaleDiscriminator`); Adam (β1 = 0.5) for
   both. Ede adds the MSE to stop mode collapse. The result is the ``gan`` variant.

A divergence guard (ours) watches every batch: a non-finite MSE, or one above :data:`DIVERGED` × the median of the
last 200, restores the state of the last log step and halves the learning rates (listed as ``rollbacks``).

A held-out part of the reference slices (``validation_fraction``, the last ones; at least one slice when there are
three or more) is reconstructed whole every
``validate_every`` iterations (each pattern at the geometric-mean coverage, fixed masks) and compared with ``linear``
on the same masks: the card and the learning-curve plot show both.

The job follows the runtime protocol: it yields :class:`~napari_sparse_sem.runtime.Progress` events whose ``partial``
is a :class:`GANTrainingStatus`, and returns a summary dict. Training is resumable: a checkpoint (the weights file
plus ``<name>.train-state.safetensors`` with discriminators, optimiser states, ALRC means and random states) is
written every ``checkpoint_minutes`` and when the job is closed early (Cancel, Ctrl-C). ``resume=True`` continues
from it until the budget is spent; iterations and minutes count across resumes.
"""

from __future__ import annotations

import copy
import math
import platform
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from napari_sparse_sem.recon.gan import CARD_KIND, filled_input
from napari_sparse_sem.runtime import Job, Progress, checked_slices, expected_total, pick_device

DIVERGED = 50.0
"""A batch whose MSE exceeds this multiple of the median of the last 200 means the training diverged: the job goes
back to the state of the last log step and halves the learning rates (at most :data:`MAX_ROLLBACKS` times). Measured
once on FlyEM: a ±1-slice compact generator at lr 1e-3 jumped from MSE ~3e-3 to ~1e7 within 500 iterations; ALRC only
clips single outliers, not a run-away."""
MAX_ROLLBACKS = 5

TRAIN_PATTERNS = ("spiral", "grid", "random")
"""The ``mixed`` pattern set (Ede trained on spirals, jittered grids and other scans)."""


def parse_patterns(text: str | Sequence[str]) -> list[str]:
    """``"mixed"`` or a comma list (or list) of mask patterns → a checked list."""
    from napari_sparse_sem.sampling.spec import PATTERNS

    items = [text] if isinstance(text, str) else list(text)
    names: list[str] = []
    for item in items:
        for name in str(item).split(","):
            name = name.strip()
            if not name:
                continue
            names.extend(TRAIN_PATTERNS if name == "mixed" else [name])
    if not names:
        raise ValueError("give at least one mask pattern (or 'mixed')")
    bad = [n for n in names if n not in PATTERNS]
    if bad:
        raise ValueError(f"unknown mask pattern(s) {bad}; choose from {list(PATTERNS)} or 'mixed'")
    return list(dict.fromkeys(names))


def parse_coverage(text: str | float | Sequence[float]) -> tuple[float, float]:
    """``0.05`` (one coverage) or ``0.02:0.2`` (a range, drawn log-uniformly) → (low, high), both in (0, 1]."""
    if isinstance(text, (int, float)):
        low = high = float(text)
    elif isinstance(text, str):
        parts = text.split(":")
        if len(parts) > 2:
            raise ValueError(f"coverage must be C or LOW:HIGH (e.g. 0.05 or 0.02:0.2), got {text!r}")
        try:
            values = [float(p) for p in parts]
        except ValueError:
            raise ValueError(f"coverage must be C or LOW:HIGH (e.g. 0.05 or 0.02:0.2), got {text!r}") from None
        low, high = values[0], values[-1]
    else:
        low, high = (float(v) for v in text)
    if not (0 < low <= high <= 1):
        raise ValueError(f"coverage must satisfy 0 < low <= high <= 1 (fractions of pixels), got {low}:{high}")
    return low, high


@dataclass
class GANTrainingConfig:
    """Parameters of :func:`train_gan_job`; ``preset`` and ``architecture`` (field overrides) choose the network."""

    preset: str = "compact"
    architecture: dict[str, Any] = field(default_factory=dict)
    patterns: list[str] = field(default_factory=lambda: list(TRAIN_PATTERNS))
    coverage: tuple[float, float] = (0.02, 0.2)
    crop: int = 128
    batch_size: int = 8
    iterations: int | None = 2000
    minutes: float | None = None
    pretrain_fraction: float = 0.7
    lr: float = 1e-3
    lr_adversarial: float = 1e-4
    disc_lr: float = 2e-4
    trainer_weight: float = 0.5
    adv_weight: float = 2e-3
    alrc: bool = True
    alrc_sigmas: float = 3.0
    validation_fraction: float = 0.1
    validate_every: int = 500
    checkpoint_minutes: float = 10.0
    seed: int = 0
    log_every: int = 10

    def __post_init__(self) -> None:
        from napari_sparse_sem.nn.gan import gan_config

        self.patterns = parse_patterns(self.patterns)
        self.coverage = parse_coverage(self.coverage)
        self.architecture = dict(self.architecture or {})
        network = gan_config(self.preset, **self.architecture)  # a clear error for a bad preset/field, before any work
        if self.iterations is None and self.minutes is None:
            raise ValueError("give a training budget: iterations, minutes or both")
        if self.iterations is not None and (isinstance(self.iterations, bool) or int(self.iterations) < 1):
            raise ValueError(f"iterations must be a positive integer, got {self.iterations}")
        if self.minutes is not None and not (math.isfinite(self.minutes) and self.minutes > 0):
            raise ValueError(f"minutes must be a positive number, got {self.minutes}")
        if int(self.crop) < 4 * network.disc_crop:
            raise ValueError(
                f"crop ({self.crop} px) must hold the largest discriminator crop: 4 × disc_crop = "
                f"{4 * network.disc_crop} px"
            )
        for name in ("batch_size", "validate_every", "log_every"):
            value = getattr(self, name)
            if isinstance(value, bool) or int(value) < 1:
                raise ValueError(f"{name} must be a positive integer, got {value}")
        if not 0 < self.pretrain_fraction <= 1:
            raise ValueError(
                f"pretrain_fraction must be in (0, 1] (1: MSE training only), got {self.pretrain_fraction}"
            )
        for name in ("lr", "lr_adversarial", "disc_lr", "alrc_sigmas", "checkpoint_minutes"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        for name in ("trainer_weight", "adv_weight"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if not 0 <= self.validation_fraction < 1:
            raise ValueError(f"validation_fraction must be in [0, 1), got {self.validation_fraction}")
        if isinstance(self.seed, bool) or int(self.seed) < 0:
            raise ValueError(f"seed must be a non-negative integer, got {self.seed}")

    def network(self) -> Any:
        """The :class:`~napari_sparse_sem.nn.gan.GANConfig` of the network to train."""
        from napari_sparse_sem.nn.gan import gan_config

        return gan_config(self.preset, **self.architecture)

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["coverage"] = list(self.coverage)
        return out


@dataclass
class GANTrainingStatus:
    """``Progress.partial`` of a training job: the phase, where it is, and the curves so far.

    ``loss``: (iteration, mean restoration MSE over the last ``log_every`` batches); ``disc_loss``: the same for the
    discriminators (adversarial phase); ``validation``: (iteration, mean PSNR in dB of the held-out slices);
    ``linear_psnr``: the ``linear`` baseline on the same masks.
    """

    phase: str  # "prepare", "pretrain" or "adversarial"
    iteration: int = 0
    iterations: int | None = None
    seconds: float = 0.0
    loss: list[tuple[int, float]] = field(default_factory=list)
    disc_loss: list[tuple[int, float]] = field(default_factory=list)
    validation: list[tuple[int, float]] = field(default_factory=list)
    linear_psnr: float | None = None
    pretrain_iterations: int | None = None

    def snapshot(self) -> GANTrainingStatus:
        """A copy whose curves do not grow with the running job (what a progress event carries)."""
        return replace(self, loss=list(self.loss), disc_loss=list(self.disc_loss), validation=list(self.validation))


def state_path(path: str | Path) -> Path:
    """The training-state checkpoint beside weights file ``path``: ``model.train-state.safetensors``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.train-state.safetensors")


def curves_path(path: str | Path) -> Path:
    """The learning-curve plot beside weights file ``path``: ``model.curves.png``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.curves.png")


# ----------------------------------------------------------------------------------------------------------- data


NEIGHBOUR_DROP = 0.1
"""With ``context > 0``: the chance that a training crop's neighbour slice is blanked (as at the ends of a stack)."""


def random_mask(
    shape: tuple[int, int],
    patterns: Sequence[str],
    coverage: tuple[float, float],
    rng: np.random.Generator,
    like: tuple[str, float] | None = None,
) -> tuple[np.ndarray, str, float]:
    """A fresh mask of ``shape``: a random pattern at a log-uniform coverage (or ``like`` = (pattern, coverage)),
    drawn on a canvas up to twice as large and cropped at a random place. Returns (mask, pattern, coverage)."""
    from napari_sparse_sem.sampling.patterns import slice_mask
    from napari_sparse_sem.sampling.spec import MaskSpec

    if like is None:
        pattern = str(patterns[int(rng.integers(len(patterns)))])
        low, high = coverage
        cov = float(np.exp(rng.uniform(np.log(low), np.log(high)))) if high > low else low
    else:
        pattern, cov = like
    canvas = tuple(int(rng.integers(s, 2 * s + 1)) for s in shape)
    spec = MaskSpec(pattern, cov, seed=int(rng.integers(2**31)))
    full = slice_mask(canvas, spec, 0).mask
    y0 = int(rng.integers(canvas[0] - shape[0] + 1))
    x0 = int(rng.integers(canvas[1] - shape[1] + 1))
    mask = full[y0 : y0 + shape[0], x0 : x0 + shape[1]]
    if not mask.any():  # a tiny crop of a sparse pattern can miss every scanned pixel
        mask = mask.copy()
        mask[int(rng.integers(shape[0])), int(rng.integers(shape[1]))] = True
    return mask, pattern, cov


def training_batch(
    slices: np.ndarray,
    config: GANTrainingConfig,
    network: Any,
    rng: np.random.Generator,
    numbers: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(inputs (b, channels, c, c), targets (b, 1, c, c)): random crops, flips/rotations and fresh masks.

    With ``network.context = k`` each crop comes with the same crop of the k slices on each side, each with its own
    mask of the same pattern and coverage (per-slice masks); ``numbers`` are the slice numbers of ``slices`` (a
    neighbour exists only where they are consecutive). Neighbours are blanked with probability
    :data:`NEIGHBOUR_DROP`, and the slab's z order is reversed half of the time.
    """
    size, batch, k = int(config.crop), int(config.batch_size), int(network.context)
    count, height, width = slices.shape
    numbers = list(range(count)) if numbers is None else [int(n) for n in numbers]
    inputs = np.empty((batch, network.in_channels, size, size), dtype=np.float32)
    targets = np.empty((batch, 1, size, size), dtype=np.float32)
    for i in range(batch):
        z = int(rng.integers(count))
        y0, x0 = int(rng.integers(height - size + 1)), int(rng.integers(width - size + 1))
        turns, flip = int(rng.integers(4)), bool(rng.integers(2))
        offsets = list(range(-k, k + 1))
        if k and rng.integers(2):
            offsets.reverse()
        like = None
        for offset in [0, *[o for o in offsets if o]]:  # the restored slice first: its mask sets the pattern
            j = z + offset
            present = 0 <= j < count and numbers[j] == numbers[z] + offset
            if offset and (not present or rng.random() < NEIGHBOUR_DROP):
                plane = np.zeros((2, size, size), dtype=np.float32)
            else:
                crop = np.rot90(slices[j, y0 : y0 + size, x0 : x0 + size], turns)
                crop = np.ascontiguousarray(crop[:, ::-1] if flip else crop)
                mask, pattern, cov = random_mask((size, size), config.patterns, config.coverage, rng, like)
                like = like or (pattern, cov)
                plane = filled_input(np.where(mask, crop, 0.0), mask, network.fill)
                if offset == 0:
                    targets[i, 0] = crop
            position = offsets.index(offset)
            inputs[i, 2 * position : 2 * position + 2] = plane
    return inputs, targets


@dataclass
class _Validation:
    """Fixed held-out slices and masks (and their neighbours' with ``context``), and ``linear`` on them."""

    inputs: list[np.ndarray]
    references: list[np.ndarray]
    masks: list[np.ndarray]
    labels: list[str]
    linear_psnr: float

    @classmethod
    def build(
        cls, reference: np.ndarray, numbers: Sequence[int], held_out: int, config: GANTrainingConfig, network: Any
    ) -> _Validation | None:
        """The last ``held_out`` of the ``reference`` slices (slice numbers ``numbers``), each pattern at the
        geometric-mean coverage; neighbours (any reference slice, each with its own mask) where ``context > 0``."""
        from napari_sparse_sem.metrics import psnr
        from napari_sparse_sem.recon.gan import slab_input
        from napari_sparse_sem.recon.interp import fill_linear
        from napari_sparse_sem.sampling.patterns import slice_mask
        from napari_sparse_sem.sampling.spec import MaskSpec

        if not held_out:
            return None
        k = int(network.context)
        coverage = float(np.sqrt(config.coverage[0] * config.coverage[1]))
        numbers = [int(n) for n in numbers]
        validation = cls([], [], [], [], 0.0)
        scores = []
        for v in range(len(reference) - held_out, len(reference)):
            for pattern in config.patterns:
                planes, masks = [], []
                for offset in range(-k, k + 1):
                    j = v + offset
                    if 0 <= j < len(reference) and numbers[j] == numbers[v] + offset:
                        spec = MaskSpec(pattern, coverage, seed=1000)
                        mask = slice_mask(reference[j].shape, spec, numbers[j]).mask
                        planes.append(np.where(mask, reference[j], 0.0).astype(np.float32))
                    else:
                        mask = np.zeros(reference[v].shape, dtype=bool)
                        planes.append(np.zeros(reference[v].shape, dtype=np.float32))
                    masks.append(mask)
                sparse, mask_slab = np.stack(planes), np.stack(masks)
                validation.inputs.append(slab_input(sparse, mask_slab, k, k, network.fill))
                validation.references.append(reference[v])
                validation.masks.append(mask_slab[k])
                validation.labels.append(pattern)
                scores.append(psnr(reference[v], fill_linear(sparse[k], mask_slab[k])))
        validation.linear_psnr = float(np.mean(scores))
        return validation

    def score(self, net: Any, device: str) -> tuple[float, dict[str, float]]:
        """Mean PSNR of ``net`` over the held-out slices (scanned pixels kept), overall and per pattern."""
        import torch

        from napari_sparse_sem.metrics import psnr

        was_training = net.training
        net.eval()
        per: dict[str, list[float]] = {}
        with torch.inference_mode():
            for inputs, reference, mask, label in zip(
                self.inputs, self.references, self.masks, self.labels, strict=True
            ):
                out = net(torch.from_numpy(inputs[None]).to(device))[0]
                image = np.clip(out[0, 0].float().cpu().numpy(), 0.0, 1.0)
                image[mask] = reference[mask]
                per.setdefault(label, []).append(psnr(reference, image))
        net.train(was_training)
        means = {label: float(np.mean(v)) for label, v in per.items()}
        return float(np.mean([s for v in per.values() for s in v])), means


# ---------------------------------------------------------------------------------------------------- checkpoint


def _optimizer_tensors(prefix: str, optimizer: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Flatten an optimiser's state into named tensors plus its JSON-ready parameter groups."""
    import torch

    state = optimizer.state_dict()
    tensors = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            tensors[f"{prefix}.{index}.{key}"] = value if isinstance(value, torch.Tensor) else torch.tensor(value)
    return tensors, state["param_groups"]


def _load_optimizer(optimizer: Any, prefix: str, tensors: dict[str, Any], groups: list[dict[str, Any]]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        if name.startswith(prefix + "."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = tensor
    optimizer.load_state_dict({"state": state, "param_groups": groups})


# --------------------------------------------------------------------------------------------------------- the job


def _learning_rate(config: GANTrainingConfig, progress: float) -> float:
    """Cosine decay from ``lr`` to 5 % of it over the pre-training phase (``progress`` in [0, 1])."""
    return config.lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, progress)))))


def _load_reference(volume: Any, slices: Sequence[int]) -> np.ndarray:
    planes = []
    for z in slices:
        plane = np.asarray(volume[z], dtype=np.float32)
        if plane.ndim != 2:
            raise ValueError(f"slice {z} is not a 2D image (shape {plane.shape})")
        if not np.all(np.isfinite(plane)) or plane.min() < 0 or plane.max() > 1:
            raise ValueError(f"slice {z} must hold finite values in [0, 1] (scale the volume first)")
        planes.append(plane)
    if len({p.shape for p in planes}) > 1:
        raise ValueError("the reference slices differ in shape")
    return np.stack(planes)


def train_gan_job(
    volume: Any,
    slices: Sequence[int],
    config: GANTrainingConfig | None = None,
    out_path: str | Path = "gan.safetensors",
    overwrite: bool = False,
    resume: bool = False,
    device: str = "cpu",
    *,
    data_name: str | None = None,
    command: str | None = None,
) -> Job[dict[str, Any]]:
    """Train the partial-scan GAN on the dense ``slices`` of ``volume`` and save it to ``out_path``.

    ``volume``: (z, y, x) float32 in [0, 1] (anything whose ``volume[z]`` is a 2D slice). Writes the weights
    (``mse.*`` and, after the adversarial phase started, ``gan.*`` tensors) with a model card, the learning-curve plot
    (:func:`curves_path`) and the training state (:func:`state_path`). Existing files are refused unless
    ``overwrite`` (or ``resume``, which continues from them). Returns a summary dict.
    """
    import torch

    from napari_sparse_sem.nn.alrc import ALRC, NoClipping
    from napari_sparse_sem.nn.gan import Generator, MultiScaleDiscriminator, count_parameters
    from napari_sparse_sem.nn.weights import load_weights, read_card, save_weights

    config = config or GANTrainingConfig()
    out_path = Path(out_path)
    state_file = state_path(out_path)
    if resume:
        if not state_file.is_file():
            raise FileNotFoundError(
                f"nothing to resume: {state_file} not found (it is written beside {out_path.name} by a training run)"
            )
        saved = read_card(state_file)
        config = GANTrainingConfig(**{**saved["config"], "iterations": config.iterations, "minutes": config.minutes})
    elif not overwrite:
        existing = [str(p) for p in (out_path, state_file, curves_path(out_path)) if p.exists()]
        if existing:
            raise FileExistsError(
                f"{' and '.join(existing)} already exist(s); pass overwrite=True (--overwrite) to replace, "
                "resume=True (--resume) to continue training, or choose another file name"
            )
    slices = checked_slices(slices, int(volume.shape[0]))
    if resume and slices != saved["data"]["slices"]:
        raise ValueError(
            f"--resume continues the same training: the checkpoint was trained on slices {saved['data']['slices'][0]}"
            f"..{saved['data']['slices'][-1]} ({len(saved['data']['slices'])}), not on the ones given"
        )
    device = pick_device(device)
    network = config.network()
    n_val = (
        max(1, round(config.validation_fraction * len(slices))) if config.validation_fraction and len(slices) > 2 else 0
    )
    train_slices, val_slices = slices[: len(slices) - n_val], slices[len(slices) - n_val :]
    yield Progress(0, 0, f"loading {len(slices)} reference slices", GANTrainingStatus("prepare"))
    reference = _load_reference(volume, slices)
    train_data = reference[: len(train_slices)]
    if min(train_data.shape[1:]) < config.crop:
        raise ValueError(
            f"the slices ({train_data.shape[1]}×{train_data.shape[2]} px) are smaller than the training crop "
            f"({config.crop} px): choose a smaller crop"
        )
    validation = _Validation.build(reference, slices, n_val, config, network)

    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    crop_rng = torch.Generator().manual_seed(config.seed)
    generator = Generator(network).to(device)
    optimizer_g = torch.optim.Adam(generator.parameters(), lr=config.lr)
    discriminator: Any = None
    optimizer_d: Any = None
    clip = ALRC if config.alrc else NoClipping
    clippers = {"out": clip(config.alrc_sigmas), "trainer": clip(config.alrc_sigmas)}
    mse_state: dict[str, Any] | None = None  # the generator at the end of pre-training
    status = GANTrainingStatus("pretrain", linear_psnr=None if validation is None else validation.linear_psnr)
    iteration, train_s = 0, 0.0
    val_detail: dict[str, Any] = {}
    lr_factor = 1.0  # halved by each roll-back after a divergence
    rollbacks: list[tuple[int, float]] = []

    def start_adversarial() -> None:
        nonlocal discriminator, optimizer_d, mse_state
        mse_state = {k: v.detach().clone() for k, v in generator.state_dict().items()}
        discriminator = MultiScaleDiscriminator(network).to(device)
        optimizer_d = torch.optim.Adam(discriminator.parameters(), lr=config.disc_lr * lr_factor, betas=(0.5, 0.999))
        for group in optimizer_g.param_groups:
            group["lr"], group["betas"] = config.lr_adversarial * lr_factor, (0.5, 0.999)
        status.phase, status.pretrain_iterations = "adversarial", iteration

    if resume:
        tensors, state_card = load_weights(state_file)
        generator.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("g.")})
        iteration, train_s = int(state_card["iteration"]), float(state_card["seconds"])
        status = GANTrainingStatus(**{**state_card["status"], "iteration": iteration, "seconds": train_s})
        status.loss = [tuple(v) for v in status.loss]  # type: ignore[misc]
        status.disc_loss = [tuple(v) for v in status.disc_loss]  # type: ignore[misc]
        status.validation = [tuple(v) for v in status.validation]  # type: ignore[misc]
        if status.phase == "adversarial":
            pretrain = status.pretrain_iterations
            start_adversarial()
            status.pretrain_iterations = pretrain
            mse_state = {k[4:]: v for k, v in tensors.items() if k.startswith("mse.")}
            discriminator.load_state_dict({k[2:]: v for k, v in tensors.items() if k.startswith("d.")})
            _load_optimizer(optimizer_d, "opt_d", tensors, state_card["optimizer_d"])
        _load_optimizer(optimizer_g, "opt_g", tensors, state_card["optimizer_g"])
        clippers = {name: clip.from_state(s) for name, s in state_card["alrc"].items()}
        rng.bit_generator.state = state_card["numpy_rng"]
        crop_rng.set_state(tensors["rng.torch"].to(torch.uint8))
        val_detail = state_card.get("validation_detail", {})
        lr_factor = float(state_card.get("lr_factor", 1.0))
        rollbacks = [tuple(r) for r in state_card.get("rollbacks", [])]  # type: ignore[misc]

    budget_s = None if config.minutes is None else 60.0 * float(config.minutes)
    stopped = "cancelled"
    window: list[float] = []
    disc_window: list[float] = []

    def progress() -> float:
        done = 0.0
        if config.iterations is not None:
            done = iteration / config.iterations
        if budget_s is not None:
            done = max(done, train_s / budget_s)
        return done

    def validate() -> None:
        if validation is None:
            return
        mean, per_pattern = validation.score(generator, device)
        status.validation.append((iteration, round(mean, 3)))
        val_detail[status.phase] = {"iteration": iteration, "psnr": round(mean, 3), "per_pattern": per_pattern}

    def save(final: bool) -> dict[str, Any]:
        weights = {f"mse.{k}": v for k, v in (mse_state or generator.state_dict()).items()}
        if mse_state is not None:
            weights.update({f"gan.{k}": v for k, v in generator.state_dict().items()})
        variants = ["mse"] + (["gan"] if mse_state is not None else [])
        metrics: dict[str, Any] = {}
        if validation is not None:
            metrics = {
                "validation_slices": val_slices,
                "validation_coverage": round(float(np.sqrt(config.coverage[0] * config.coverage[1])), 4),
                "linear_psnr": round(validation.linear_psnr, 3),
                **{("gan-mse" if k == "pretrain" else "gan"): v for k, v in val_detail.items()},
            }
        training = {
            **config.to_dict(),
            "iterations_done": iteration,
            "pretrain_iterations": status.pretrain_iterations if mse_state is not None else iteration,
            "seconds": round(train_s, 1),
            "device": device,
            "stopped": stopped,
            "completed": stopped != "cancelled",
            "alrc_clipped": {name: c.clipped for name, c in clippers.items()},
            "rollbacks": rollbacks,
            "final_mse": status.loss[-1][1] if status.loss else None,
        }
        card = {
            "kind": CARD_KIND,
            "description": (
                "Partial-scan GAN generator (Ede & Beanland 2020): input = (partial scan with unscanned pixels "
                f"filled by {network.fill!r}, mask), values in [0, 1]; tensors 'mse.*' = after MSE pre-training "
                "(method gan-mse), 'gan.*' = after adversarial fine-tuning (method gan)"
            ),
            "variants": variants,
            "architecture": network.to_dict(),
            "parameters": count_parameters(generator),
            "data": {
                "file": data_name,
                "slices": slices,
                "train_slices": train_slices,
                "shape": list(reference.shape[1:]),
            },
            "training": training,
            "metrics": metrics,
            "command": command,
            "software": {"torch": torch.__version__, "python": platform.python_version()},
        }
        path, card_file = save_weights(out_path, weights, card, overwrite=True)
        state = {f"g.{k}": v for k, v in generator.state_dict().items()}
        g_tensors, g_groups = _optimizer_tensors("opt_g", optimizer_g)
        state.update(g_tensors)
        state["rng.torch"] = crop_rng.get_state()
        state_card: dict[str, Any] = {
            "kind": "partial-scan-gan-training-state",
            "config": config.to_dict(),
            "data": {"file": data_name, "slices": slices},
            "iteration": iteration,
            "seconds": train_s,
            "status": asdict(status),
            "optimizer_g": g_groups,
            "alrc": {name: c.state_dict() for name, c in clippers.items()},
            "numpy_rng": rng.bit_generator.state,
            "lr_factor": lr_factor,
            "rollbacks": rollbacks,
            "validation_detail": val_detail,
        }
        if mse_state is not None:
            state.update({f"mse.{k}": v for k, v in mse_state.items()})
            state.update({f"d.{k}": v for k, v in discriminator.state_dict().items()})
            d_tensors, d_groups = _optimizer_tensors("opt_d", optimizer_d)
            state.update(d_tensors)
            state_card["optimizer_d"] = d_groups
        save_weights(state_file, state, state_card, overwrite=True)
        plot = save_learning_curves(status, curves_path(out_path), title=out_path.name)
        return {
            "path": path,
            "card_path": card_file,
            "state_path": state_file,
            "curves_path": plot,
            "iterations": iteration,
            "seconds": train_s,
            "stopped": stopped,
            "card": card,
            "final": final,
        }

    mse = torch.nn.functional.mse_loss
    recent: list[float] = []  # per-batch restoration MSE, the divergence guard's reference
    good: dict[str, Any] = {}

    def keep_good_state() -> None:
        good.clear()
        good.update(
            g=copy.deepcopy(generator.state_dict()),
            opt_g=copy.deepcopy(optimizer_g.state_dict()),
            d=None if discriminator is None else copy.deepcopy(discriminator.state_dict()),
            opt_d=None if optimizer_d is None else copy.deepcopy(optimizer_d.state_dict()),
            alrc={name: c.state_dict() for name, c in clippers.items()},
        )

    def roll_back(value: float) -> None:
        """Training diverged (a non-finite loss or one far above the recent ones): go back to the last good state
        and halve the learning rates."""
        nonlocal lr_factor
        if len(rollbacks) >= MAX_ROLLBACKS:
            raise FloatingPointError(
                f"training diverged {len(rollbacks) + 1} times (last loss {value:.3g} at iteration {iteration}); "
                "try a lower --lr"
            )
        generator.load_state_dict(good["g"])
        optimizer_g.load_state_dict(good["opt_g"])
        if discriminator is not None and good["d"] is not None:
            discriminator.load_state_dict(good["d"])
            optimizer_d.load_state_dict(good["opt_d"])
        for name, state in good["alrc"].items():
            clippers[name] = clip.from_state(state)
        lr_factor *= 0.5
        rollbacks.append((iteration, round(lr_factor, 4)))
        for group in optimizer_g.param_groups:
            group["lr"] = (config.lr_adversarial if status.phase == "adversarial" else config.lr) * lr_factor
        if optimizer_d is not None:
            for group in optimizer_d.param_groups:
                group["lr"] = config.disc_lr * lr_factor
        recent.clear()

    generator.train()
    keep_good_state()
    start = time.perf_counter() - train_s
    last_checkpoint = time.perf_counter()
    try:
        while True:
            train_s = time.perf_counter() - start
            if config.iterations is not None and iteration >= config.iterations:
                stopped = "iterations"
                break
            if budget_s is not None and train_s >= budget_s:
                stopped = "time"
                break
            if status.phase == "pretrain" and config.pretrain_fraction < 1 and progress() >= config.pretrain_fraction:
                validate()
                start_adversarial()
            if status.phase == "pretrain":
                for group in optimizer_g.param_groups:
                    group["lr"] = lr_factor * _learning_rate(config, progress() / config.pretrain_fraction)
            x, y = training_batch(train_data, config, network, rng, train_slices)
            xt, yt = torch.from_numpy(x).to(device), torch.from_numpy(y).to(device)
            out, trainer = generator(xt)
            loss_out = mse(out, yt)
            value = float(loss_out.detach())
            if not math.isfinite(value) or (len(recent) >= 20 and value > DIVERGED * float(np.median(recent))):
                roll_back(value)
                continue
            recent = [*recent[-199:], value]
            loss = clippers["out"](loss_out)
            if config.trainer_weight > 0:
                loss = loss + config.trainer_weight * clippers["trainer"](
                    mse(trainer, torch.nn.functional.avg_pool2d(yt, 2))
                )
            if status.phase == "adversarial":
                boxes = discriminator.crop_boxes(config.crop, config.crop, len(x), crop_rng)
                for p in discriminator.parameters():
                    p.requires_grad_(False)
                fake_scores = discriminator(out, boxes)
                loss = loss + config.adv_weight * sum(((s - 1.0) ** 2).mean() for s in fake_scores) / len(fake_scores)
            optimizer_g.zero_grad(set_to_none=True)
            loss.backward()
            optimizer_g.step()
            if status.phase == "adversarial":
                for p in discriminator.parameters():
                    p.requires_grad_(True)
                real_scores = discriminator(yt, boxes)
                fake_scores = discriminator(out.detach(), boxes)
                d_loss = sum(
                    0.5 * (((r - 1.0) ** 2).mean() + (f**2).mean())
                    for r, f in zip(real_scores, fake_scores, strict=True)
                ) / len(real_scores)
                optimizer_d.zero_grad(set_to_none=True)
                d_loss.backward()
                optimizer_d.step()
                disc_window.append(float(d_loss.detach()))
            iteration += 1
            window.append(float(loss_out.detach()))
            train_s = time.perf_counter() - start
            if iteration % config.validate_every == 0:
                validate()
            if iteration % config.log_every == 0:
                keep_good_state()
                status.loss.append((iteration, float(np.mean(window))))
                if disc_window:
                    status.disc_loss.append((iteration, float(np.mean(disc_window))))
                window, disc_window = [], []
                status.iteration, status.seconds = iteration, train_s
                status.iterations = expected_total(config.iterations, iteration, train_s, budget_s)
                message = f"{status.phase}: iteration {iteration}, MSE {status.loss[-1][1]:.5f}"
                yield Progress(iteration, status.iterations, message, status.snapshot())
            if time.perf_counter() - last_checkpoint > 60.0 * config.checkpoint_minutes:
                save(final=False)
                last_checkpoint = time.perf_counter()
    except GeneratorExit:
        if iteration:
            generator.eval()
            save(final=False)
        raise
    finally:
        if device.startswith("cuda"):
            torch.cuda.empty_cache()
    if window:
        status.loss.append((iteration, float(np.mean(window))))
    if not status.validation or status.validation[-1][0] != iteration:
        validate()
    generator.eval()
    return save(final=True)


def save_learning_curves(status: GANTrainingStatus, path: str | Path, title: str = "") -> Path:
    """Plot the training MSE, the discriminator loss and the held-out PSNR (vs ``linear``) to a PNG."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    from matplotlib.figure import Figure

    figure = Figure(figsize=(8.0, 3.2))
    figure.set_layout_engine("tight")
    loss_axes, psnr_axes = figure.subplots(1, 2)
    if status.loss:
        steps, values = zip(*status.loss, strict=True)
        loss_axes.semilogy(steps, values, lw=0.8, label="restoration MSE (training crops)")
    if status.disc_loss:
        steps, values = zip(*status.disc_loss, strict=True)
        loss_axes.semilogy(steps, values, lw=0.8, color="C2", label="discriminator loss")
    for axes in (loss_axes, psnr_axes):
        if status.pretrain_iterations:
            axes.axvline(status.pretrain_iterations, color="0.5", ls=":", lw=0.8, label="adversarial phase starts")
        axes.set_xlabel("iteration")
    loss_axes.set_title(f"training {title}".strip(), fontsize=9)
    loss_axes.legend(fontsize=7, frameon=False)
    if status.validation:
        steps, values = zip(*status.validation, strict=True)
        psnr_axes.plot(steps, values, "o-", ms=3, lw=1.0, label="generator")
    if status.linear_psnr is not None:
        psnr_axes.axhline(status.linear_psnr, color="C3", lw=1.0, ls="--", label="linear interpolation")
    psnr_axes.set_ylabel("PSNR (dB), held-out slices")
    psnr_axes.set_title("validation", fontsize=9)
    psnr_axes.legend(fontsize=7, frameon=False)
    path = Path(path)
    figure.savefig(path, dpi=110)
    return path
