"""Train the partial-scan GAN (Ede & Beanland 2020) on a user's dense reference slices.

The practical workflow: a lab scans a few slices of a stack densely and the rest sparsely; the generator learns from
the dense ones. Batches are random crops with freshly drawn masks (:mod:`.gan_data`).

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
three or more) is reconstructed whole every ``validate_every`` iterations (each pattern at the geometric-mean
coverage, fixed masks) and compared with ``linear`` on the same masks: the card and the learning-curve plot show both.

The loop itself (budget, logging, checkpoints, stop, device release) is :func:`napari_sparse_sem.nn.training.
run_training`; this module supplies the batches, losses, networks and evaluation. The job yields
:class:`~napari_sparse_sem.runtime.Progress` events whose ``partial`` is a :class:`GANTrainingStatus`, and returns a
summary dict. Training is resumable: a checkpoint (the weights file plus ``<name>.train-state.safetensors`` with
discriminators, optimiser states, ALRC means and random states) is written every ``checkpoint_minutes`` and when the
job is closed early (Cancel, Ctrl-C). ``resume=True`` continues from it until the budget is spent; iterations and
minutes count across resumes.

With ``data_workers`` > 0 the batches are drawn ahead by that many worker processes (see :class:`~.gan_trainer.
BatchPrefetch`): batch ``t`` (the ``t``-th counted iteration, from 0) comes from ``numpy.random.default_rng([seed,
t])``, so the stream does not depend on the number of workers and a resumed run draws the same batches as an
uninterrupted one; it differs from the stream drawn in the training loop (``data_workers`` 0, one generator seeded
with ``seed``), which stays the default. The workers are spawned processes, which import the caller's main module:
a script that runs the job with workers needs the usual ``if __name__ == "__main__":`` guard.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from napari_sparse_sem.nn.curves import curves_json
from napari_sparse_sem.nn.training import Budget, run_training
from napari_sparse_sem.params import Spec, param
from napari_sparse_sem.recon.gan_data import (
    NEIGHBOUR_DROP,
    TRAIN_PATTERNS,
    Validation,
    load_reference,
    parse_coverage,
    parse_patterns,
    random_mask,
    training_batch,
)
from napari_sparse_sem.recon.gan_trainer import (
    DIVERGED,
    MAX_ROLLBACKS,
    GANData,
    GANTrainer,
    GANTrainingStatus,
    curves_path,
    save_learning_curves,
    state_path,
)
from napari_sparse_sem.runtime import Job, Progress, checked_slices, pick_device

__all__ = [  # the data helpers (gan_data) and the trainer's names (gan_trainer) stay importable from here
    "DIVERGED",
    "MAX_ROLLBACKS",
    "NEIGHBOUR_DROP",
    "TRAIN_PATTERNS",
    "GANTrainingConfig",
    "GANTrainingStatus",
    "curves_path",
    "parse_coverage",
    "parse_patterns",
    "random_mask",
    "resumed_workers",
    "save_learning_curves",
    "state_path",
    "train_gan_job",
    "training_batch",
]

_POSITIVE = {"low": 0, "low_open": True}
_ADVANCED = {"cli": False, "widget": False}


@dataclass
class GANTrainingConfig(Spec):
    """Parameters of :func:`train_gan_job`; ``preset`` and ``architecture`` (field overrides) choose the network."""

    kind: ClassVar[str] = "gan-training"

    preset: str = param(
        "compact", label="network", help="Network size: compact (a 2 M-parameter generator, CPU) or paper (Ede, GPU)."
    )
    architecture: dict[str, Any] = param(
        default_factory=dict, help="GANConfig fields that replace the preset's (e.g. fill, context).", **_ADVANCED
    )
    patterns: list[str] = param(
        default_factory=lambda: list(TRAIN_PATTERNS),
        help="Mask patterns drawn for the training crops: a comma list, or mixed (spiral, grid, random).",
    )
    coverage: tuple[float, float] = param(
        (0.02, 0.2),
        percent=True,
        help="Coverage range (low, high) of the training masks, drawn log-uniformly per crop.",
    )
    crop: int = param(128, unit="px", low=1, help="Side of the random square training crops.")
    batch_size: int = param(8, low=1, help="Crops per batch.")
    iterations: int | None = param(
        2000, nullable=True, low=1, help="Training batches, across resumes (with minutes: whichever ends first)."
    )
    minutes: float | None = param(
        None, unit="min", label="time budget", **_POSITIVE, help="Training time budget, across resumes."
    )
    pretrain_fraction: float = param(
        0.7,
        label="MSE share",
        high=1,
        **_POSITIVE,
        help="Share of the budget for MSE pre-training (1: no adversarial).",
    )
    lr: float = param(1e-3, **_POSITIVE, help="Adam learning rate of the MSE pre-training (cosine decay to 5 %).")
    lr_adversarial: float = param(1e-4, **_POSITIVE, **_ADVANCED, help="Generator learning rate, adversarial phase.")
    disc_lr: float = param(2e-4, **_POSITIVE, **_ADVANCED, help="Learning rate of the discriminators.")
    trainer_weight: float = param(0.5, low=0, **_ADVANCED, help="Weight of the half-size trainer output's MSE.")
    adv_weight: float = param(2e-3, low=0, help="Weight of the adversarial loss against the MSE.")
    alrc: bool = param(True, label="ALRC", help="Adaptive learning rate clipping of outlier losses (Ede).")
    alrc_sigmas: float = param(
        3.0, **_POSITIVE, **_ADVANCED, help="ALRC clips losses above the running mean + this many standard deviations."
    )
    validation_fraction: float = param(
        0.1, low=0, high=1, high_open=True, **_ADVANCED, help="Share of the reference slices held out (the last ones)."
    )
    validate_every: int = param(500, low=1, **_ADVANCED, help="Iterations between validations on held-out slices.")
    checkpoint_minutes: float = param(10.0, unit="min", **_POSITIVE, **_ADVANCED, help="Minutes between checkpoints.")
    seed: int = param(0, low=0, help="Seed of crops, masks, augmentation and initial weights.")
    data_workers: int = param(
        0,
        low=0,
        label="data workers",
        help="Processes that draw training batches ahead (0: in the training loop); on a GPU e.g. 4 keeps it busy.",
    )
    log_every: int = param(10, low=1, **_ADVANCED, help="Iterations per logged loss (their mean).")

    def __post_init__(self) -> None:
        self.patterns = parse_patterns(self.patterns)
        self.coverage = parse_coverage(self.coverage)
        self.architecture = dict(self.architecture or {})
        super().__post_init__()

    def validate(self) -> None:
        network = self.network()  # a clear error for a bad preset/field, before any work
        if self.iterations is None and self.minutes is None:
            raise ValueError("give a training budget: iterations, minutes or both")
        if int(self.crop) < 4 * network.disc_crop:
            raise ValueError(
                f"crop ({self.crop} px) must hold the largest discriminator crop: 4 × disc_crop = "
                f"{4 * network.disc_crop} px"
            )

    def network(self) -> Any:
        """The :class:`~napari_sparse_sem.nn.gan.GANConfig` of the network to train."""
        from napari_sparse_sem.nn.gan import gan_config

        return gan_config(self.preset, **self.architecture)

    def budget(self) -> Budget:
        """The training budget (iterations and/or minutes)."""
        return Budget(self.iterations, self.minutes)


def resumed_workers(saved: int, given: int) -> int:
    """The ``data_workers`` of a resumed training whose checkpoint used ``saved`` and whose caller asks ``given``.

    The batches must go on being drawn the way they were: with workers, batch ``t`` comes from its own generator
    (``default_rng([seed, t])``) whatever their number, so a different count (``given`` > 0) is taken; ``given`` 0
    (the default) keeps the saved count. A checkpoint whose batches were drawn in the training loop (``saved`` 0)
    continues that stream, so asking for workers then is refused.
    """
    if saved == 0 and given > 0:
        raise ValueError(
            "this training drew its batches in the training loop (data_workers 0) and --resume continues the same "
            "stream: resume without --data-workers, or start a new training with it"
        )
    return int(given) if given > 0 else int(saved)


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
    (``mse.*`` and, after the adversarial phase started, ``gan.*`` tensors) with a model card, the learning curves
    (:func:`curves_path`, and their numbers beside it as ``.curves.json``) and the training state
    (:func:`state_path`). Existing files are refused unless ``overwrite`` (or ``resume``, which continues from them
    with the checkpoint's config: only the budget and the number of data workers (:func:`resumed_workers`) come from
    ``config``). Returns a summary dict.
    """
    from napari_sparse_sem.nn.weights import read_card

    config = config or GANTrainingConfig()
    out_path = Path(out_path)
    state_file = state_path(out_path)
    if resume:
        if not state_file.is_file():
            raise FileNotFoundError(
                f"nothing to resume: {state_file} not found (it is written beside {out_path.name} by a training run)"
            )
        saved = read_card(state_file)
        saved_config = GANTrainingConfig.from_dict(saved["config"])  # a checkpoint without data_workers: 0
        config = saved_config.replace(
            iterations=config.iterations,
            minutes=config.minutes,
            data_workers=resumed_workers(saved_config.data_workers, config.data_workers),
        )
    elif not overwrite:
        existing = [str(p) for p in (out_path, state_file, curves_path(out_path), curves_json(out_path)) if p.exists()]
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
    reference = load_reference(volume, slices)
    train_data = reference[: len(train_slices)]
    if min(train_data.shape[1:]) < config.crop:
        raise ValueError(
            f"the slices ({train_data.shape[1]}×{train_data.shape[2]} px) are smaller than the training crop "
            f"({config.crop} px): choose a smaller crop"
        )
    validation = Validation.build(reference, slices, n_val, config, network)
    data = GANData(train_data, train_slices, val_slices, slices, list(reference.shape[1:]), validation, data_name)
    trainer = GANTrainer(config, data, out_path, device, command)
    if resume:
        trainer.resume()
    trainer.generator.train()
    trainer.keep_good_state()
    return (yield from run_training(trainer))
