"""The partial-scan GAN's part of the one training loop (:func:`napari_sparse_sem.nn.training.run_training`).

:class:`GANTrainer` supplies the batches (:mod:`.gan_data`), the losses of both phases (MSE with ALRC, then the
least-squares GAN loss of the multi-scale discriminators), the roll-back after a divergence, the held-out validation,
and the files: weights with their model card, the training-state checkpoint and the learning curves. The job that
drives it, and its configuration, are in :mod:`.gan_training`. With ``data_workers`` > 0 the batches are drawn ahead
in worker processes (:class:`BatchPrefetch`).
"""

from __future__ import annotations

import copy
import math
import platform
from collections.abc import Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_sparse_sem.nn.curves import Panel, Series, curves_json, curves_png, plot_curves, write_curves_json
from napari_sparse_sem.nn.training import Trainer, TrainingDiverged
from napari_sparse_sem.recon.gan import CARD_KIND
from napari_sparse_sem.recon.gan_data import Validation, training_batch
from napari_sparse_sem.runtime import Progress

if TYPE_CHECKING:
    from napari_sparse_sem.recon.gan_training import GANTrainingConfig

DIVERGED = 50.0
"""A batch whose MSE exceeds this multiple of the median of the last 200 means the training diverged: the job goes
back to the state of the last log step and halves the learning rates (at most :data:`MAX_ROLLBACKS` times). Measured
once on FlyEM: a ±1-slice compact generator at lr 1e-3 jumped from MSE ~3e-3 to ~1e7 within 500 iterations; ALRC only
clips single outliers, not a run-away."""
MAX_ROLLBACKS = 5


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

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GANTrainingStatus:
        """The status saved in a checkpoint (``asdict``), curves as tuples again."""
        status = cls(**data)
        status.loss = [tuple(v) for v in status.loss]  # type: ignore[misc]
        status.disc_loss = [tuple(v) for v in status.disc_loss]  # type: ignore[misc]
        status.validation = [tuple(v) for v in status.validation]  # type: ignore[misc]
        return status


def state_path(path: str | Path) -> Path:
    """The training-state checkpoint beside weights file ``path``: ``model.train-state.safetensors``."""
    path = Path(path)
    return path.with_name(f"{path.stem}.train-state.safetensors")


curves_path = curves_png
"""The learning-curve plot beside weights file ``path``: ``model.curves.png`` (its numbers: ``.curves.json``)."""


def _learning_rate(config: GANTrainingConfig, progress: float) -> float:
    """Cosine decay from ``lr`` to 5 % of it over the pre-training phase (``progress`` in [0, 1])."""
    return config.lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, max(0.0, progress)))))


@dataclass
class GANData:
    """What a GAN training learns from: the reference slices, their split and where they came from."""

    train: np.ndarray  # (n_train, y, x) float32 in [0, 1]
    train_slices: list[int]
    val_slices: list[int]
    slices: list[int]
    shape: list[int]
    validation: Validation | None
    name: str | None


_WORKER: dict[str, Any] = {}
"""A batch-drawing process's training data, config, network config and slice numbers (set by its initialiser)."""


def _watch_parent() -> None:
    """End this worker process when its parent is gone (killed without shutting the pool down)."""
    import multiprocessing
    import os
    import threading

    parent = multiprocessing.parent_process()
    if parent is not None:
        threading.Thread(target=lambda: (parent.join(), os._exit(0)), daemon=True).start()


def _worker_start(train: np.ndarray, config: dict[str, Any], slices: list[int]) -> None:
    """Initialiser of a batch-drawing process: keep the data, use one thread, leave stop signals to the parent."""
    import signal

    from napari_sparse_sem.recon.gan_training import GANTrainingConfig
    from napari_sparse_sem.threads import set_threads

    for name in ("SIGINT", "SIGTERM", "SIGHUP"):  # Ctrl-C reaches the whole process group: the parent stops us
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), signal.SIG_IGN)
    _watch_parent()
    set_threads(1)
    spec = GANTrainingConfig.from_dict(config)
    _WORKER.update(train=train, config=spec, network=spec.network(), slices=slices)


def _worker_batch(key: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The batch of ``key`` (seed, iteration[, retry]) drawn in a worker process."""
    rng = np.random.default_rng(list(key))
    return training_batch(_WORKER["train"], _WORKER["config"], _WORKER["network"], rng, _WORKER["slices"])


class BatchPrefetch:
    """Training batches drawn ahead by ``workers`` processes (spawned at the first batch, given the training data
    once): each batch has its key, ``(seed, t)`` for the ``t``-th counted iteration, and comes from
    ``np.random.default_rng(key)``, so what is drawn does not depend on the number of workers or on when they run.
    Up to 2 × ``workers`` batches of the next keys wait in the queue; :meth:`close` ends the processes (pending
    batches cancelled)."""

    def __init__(self, workers: int, train: np.ndarray, config: GANTrainingConfig, slices: Sequence[int]) -> None:
        self.workers, self.depth = int(workers), 2 * int(workers)
        self.initargs = (train, config.to_dict(), [int(z) for z in slices])
        self.pool: ProcessPoolExecutor | None = None
        self.pending: dict[tuple[int, ...], Future] = {}

    def get(self, key: tuple[int, ...], ahead: Sequence[tuple[int, ...]]) -> tuple[np.ndarray, np.ndarray]:
        """The batch of ``key``; the queue then holds the batches of ``ahead`` (the next keys), others cancelled."""
        if self.pool is None:
            from multiprocessing import get_context

            self.pool = ProcessPoolExecutor(
                self.workers, mp_context=get_context("spawn"), initializer=_worker_start, initargs=self.initargs
            )
        future = self.pending.pop(key, None) or self.pool.submit(_worker_batch, key)
        wanted = list(ahead)[: self.depth]
        for stale in [k for k in self.pending if k not in wanted]:
            self.pending.pop(stale).cancel()
        for next_key in wanted:
            if next_key not in self.pending:
                self.pending[next_key] = self.pool.submit(_worker_batch, next_key)
        return future.result()

    def close(self) -> None:
        """Cancel the batches not started and end the worker processes (waits for those being drawn)."""
        pool, self.pool = self.pool, None
        self.pending.clear()
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


class GANTrainer(Trainer[dict[str, Any]]):
    """The partial-scan GAN's part of the training loop: batches, the two phases' losses, roll-backs, saving."""

    def __init__(
        self,
        config: GANTrainingConfig,
        data: GANData,
        out_path: Path,
        device: str,
        command: str | None,
    ) -> None:
        import torch

        from napari_sparse_sem.nn.alrc import ALRC, NoClipping
        from napari_sparse_sem.nn.gan import Generator

        super().__init__()
        self.config, self.data, self.out_path, self.command = config, data, out_path, command
        self.state_file = state_path(out_path)
        self.network = config.network()
        self.budget = config.budget()
        self.device = device
        self.log_every = int(config.log_every)
        self.checkpoint_minutes = float(config.checkpoint_minutes)
        torch.manual_seed(config.seed)
        self.rng = np.random.default_rng(config.seed)
        self.crop_rng = torch.Generator().manual_seed(config.seed)
        self.generator = Generator(self.network).to(device)
        self.optimizer_g = torch.optim.Adam(self.generator.parameters(), lr=config.lr)
        self.discriminator: Any = None
        self.optimizer_d: Any = None
        self.clip = ALRC if config.alrc else NoClipping
        self.clippers = {"out": self.clip(config.alrc_sigmas), "trainer": self.clip(config.alrc_sigmas)}
        self.mse_state: dict[str, Any] | None = None  # the generator at the end of pre-training
        validation = data.validation
        self.status = GANTrainingStatus("pretrain", linear_psnr=None if validation is None else validation.linear_psnr)
        self.val_detail: dict[str, Any] = {}
        self.lr_factor = 1.0  # halved by each roll-back after a divergence
        self.rollbacks: list[tuple[int, float]] = []
        self.recent: list[float] = []  # per-batch restoration MSE, the divergence guard's reference
        self.good: dict[str, Any] = {}
        self._batch: tuple[Any, ...] = ()
        workers = int(config.data_workers)
        self.prefetch = BatchPrefetch(workers, data.train, config, data.train_slices) if workers > 0 else None

    # -- phases and state ------------------------------------------------------------------------------------------
    def start_adversarial(self) -> None:
        """Keep the pre-trained generator (the ``mse`` variant) and start the discriminators and the adversarial
        learning rates."""
        import torch

        from napari_sparse_sem.nn.gan import MultiScaleDiscriminator

        config = self.config
        self.mse_state = {k: v.detach().clone() for k, v in self.generator.state_dict().items()}
        self.discriminator = MultiScaleDiscriminator(self.network).to(self.device)
        self.optimizer_d = torch.optim.Adam(
            self.discriminator.parameters(), lr=config.disc_lr * self.lr_factor, betas=(0.5, 0.999)
        )
        for group in self.optimizer_g.param_groups:
            group["lr"], group["betas"] = config.lr_adversarial * self.lr_factor, (0.5, 0.999)
        self.status.phase, self.status.pretrain_iterations = "adversarial", self.state.iteration

    def resume(self) -> None:
        """Continue from the checkpoint: networks, optimisers, ALRC means, random states, curves and counters."""
        import torch

        from napari_sparse_sem.nn.checkpoint import load_checkpoint, load_optimizer, unprefixed

        tensors, saved = load_checkpoint(self.state_file)
        self.generator.load_state_dict(unprefixed("g", tensors))
        self.state.iteration, self.state.seconds = int(saved["iteration"]), float(saved["seconds"])
        self.status = GANTrainingStatus.from_dict(
            {**saved["status"], "iteration": self.state.iteration, "seconds": self.state.seconds}
        )
        if self.status.phase == "adversarial":
            pretrain = self.status.pretrain_iterations
            self.start_adversarial()
            self.status.pretrain_iterations = pretrain
            self.mse_state = unprefixed("mse", tensors)
            self.discriminator.load_state_dict(unprefixed("d", tensors))
            load_optimizer(self.optimizer_d, "opt_d", tensors, saved["optimizer_d"])
        load_optimizer(self.optimizer_g, "opt_g", tensors, saved["optimizer_g"])
        self.clippers = {name: self.clip.from_state(s) for name, s in saved["alrc"].items()}
        self.rng.bit_generator.state = saved["numpy_rng"]
        self.crop_rng.set_state(tensors["rng.torch"].to(torch.uint8))
        self.val_detail = saved.get("validation_detail", {})
        self.lr_factor = float(saved.get("lr_factor", 1.0))
        self.rollbacks = [tuple(r) for r in saved.get("rollbacks", [])]  # type: ignore[misc]

    def keep_good_state(self) -> None:
        """Remember the networks, optimisers and ALRC means: a divergence rolls back to them."""
        self.good = {
            "g": copy.deepcopy(self.generator.state_dict()),
            "opt_g": copy.deepcopy(self.optimizer_g.state_dict()),
            "d": None if self.discriminator is None else copy.deepcopy(self.discriminator.state_dict()),
            "opt_d": None if self.optimizer_d is None else copy.deepcopy(self.optimizer_d.state_dict()),
            "alrc": {name: c.state_dict() for name, c in self.clippers.items()},
        }

    def validate(self) -> None:
        """Score the generator on the held-out slices (PSNR per pattern) and record it."""
        if self.data.validation is None:
            return
        iteration = self.state.iteration
        mean, per_pattern = self.data.validation.score(self.generator, self.device)
        self.status.validation.append((iteration, round(mean, 3)))
        self.val_detail[self.status.phase] = {
            "iteration": iteration,
            "psnr": round(mean, 3),
            "per_pattern": per_pattern,
        }

    # -- the loop's hooks ------------------------------------------------------------------------------------------
    def losses(self) -> dict[str, float]:
        import torch

        config = self.config
        progress = self.budget.fraction(self.state.iteration, self.state.seconds)
        if self.status.phase == "pretrain" and config.pretrain_fraction < 1 and progress >= config.pretrain_fraction:
            self.validate()
            self.start_adversarial()
        if self.status.phase == "pretrain":
            for group in self.optimizer_g.param_groups:
                group["lr"] = self.lr_factor * _learning_rate(config, progress / config.pretrain_fraction)
        x, y = self.next_batch()
        xt, yt = torch.from_numpy(x).to(self.device), torch.from_numpy(y).to(self.device)
        out, trainer = self.generator(xt)
        loss_out = torch.nn.functional.mse_loss(out, yt)
        self._batch = (len(x), yt, out, trainer, loss_out)
        return {"mse": float(loss_out.detach())}

    def next_batch(self) -> tuple[np.ndarray, np.ndarray]:
        """One batch of (inputs, targets) crops (:func:`~.gan_data.training_batch`): drawn here with ``self.rng``
        (``data_workers`` 0), or the batch of :meth:`batch_key` from the worker processes."""
        if self.prefetch is None:
            return training_batch(self.data.train, self.config, self.network, self.rng, self.data.train_slices)
        iteration = self.state.iteration
        ahead = [self.batch_key(t) for t in range(iteration + 1, iteration + 1 + self.prefetch.depth)]
        return self.prefetch.get(self.batch_key(iteration), ahead)

    def batch_key(self, iteration: int) -> tuple[int, ...]:
        """The seed of the batch of counted iteration ``iteration`` (from 0) when workers draw the batches:
        ``(seed, iteration)``, or ``(seed, iteration, n)`` after the ``n``-th roll-back at that iteration (the loop
        does not count a diverged batch and draws again for the same iteration: a fresh batch, not the one that
        diverged). Roll-backs are saved in the checkpoint, so a resumed run draws the same keys."""
        retries = sum(1 for at, _ in self.rollbacks if at == iteration)
        return (int(self.config.seed), int(iteration), *((retries,) if retries else ()))

    def diverged(self, losses: Mapping[str, float]) -> bool:
        value = losses["mse"]
        return not math.isfinite(value) or (len(self.recent) >= 20 and value > DIVERGED * float(np.median(self.recent)))

    def recover(self, losses: Mapping[str, float]) -> bool:
        """Training diverged (a non-finite loss or one far above the recent ones): go back to the last good state
        and halve the learning rates; after :data:`MAX_ROLLBACKS` roll-backs, stop. The iteration count stays (the
        diverged batch is not counted) and the loop draws for the same iteration again: in the training loop the
        generator's next batch, with data workers the batch of a fresh key (:meth:`batch_key`)."""
        value, iteration = losses["mse"], self.state.iteration
        self._batch = ()
        if len(self.rollbacks) >= MAX_ROLLBACKS:
            raise TrainingDiverged(
                f"training diverged {len(self.rollbacks) + 1} times (last loss {value:.3g} at iteration {iteration}); "
                "try a lower --lr"
            )
        good = self.good
        self.generator.load_state_dict(good["g"])
        self.optimizer_g.load_state_dict(good["opt_g"])
        if self.discriminator is not None and good["d"] is not None:
            self.discriminator.load_state_dict(good["d"])
            self.optimizer_d.load_state_dict(good["opt_d"])
        self.clippers = {name: self.clip.from_state(state) for name, state in good["alrc"].items()}
        self.lr_factor *= 0.5
        self.rollbacks.append((iteration, round(self.lr_factor, 4)))
        config = self.config
        for group in self.optimizer_g.param_groups:
            group["lr"] = (config.lr_adversarial if self.status.phase == "adversarial" else config.lr) * self.lr_factor
        if self.optimizer_d is not None:
            for group in self.optimizer_d.param_groups:
                group["lr"] = config.disc_lr * self.lr_factor
        self.recent.clear()
        return True

    def update(self) -> dict[str, float]:
        import torch

        config, clippers = self.config, self.clippers
        count, yt, out, trainer, loss_out = self._batch
        self._batch = ()
        self.recent = [*self.recent[-199:], float(loss_out.detach())]
        loss = clippers["out"](loss_out)
        if config.trainer_weight > 0:
            half = torch.nn.functional.avg_pool2d(yt, 2)
            loss = loss + config.trainer_weight * clippers["trainer"](torch.nn.functional.mse_loss(trainer, half))
        adversarial = self.status.phase == "adversarial"
        if adversarial:
            boxes = self.discriminator.crop_boxes(config.crop, config.crop, count, self.crop_rng)
            for p in self.discriminator.parameters():
                p.requires_grad_(False)
            fake_scores = self.discriminator(out, boxes)
            loss = loss + config.adv_weight * sum(((s - 1.0) ** 2).mean() for s in fake_scores) / len(fake_scores)
        self.optimizer_g.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer_g.step()
        if not adversarial:
            return {}
        for p in self.discriminator.parameters():
            p.requires_grad_(True)
        real_scores = self.discriminator(yt, boxes)
        fake_scores = self.discriminator(out.detach(), boxes)
        d_loss = sum(
            0.5 * (((r - 1.0) ** 2).mean() + (f**2).mean()) for r, f in zip(real_scores, fake_scores, strict=True)
        ) / len(real_scores)
        self.optimizer_d.zero_grad(set_to_none=True)
        d_loss.backward()
        self.optimizer_d.step()
        return {"disc": float(d_loss.detach())}

    def after_step(self) -> None:
        if self.state.iteration % self.config.validate_every == 0:
            self.validate()

    def progress(self, means: Mapping[str, float]) -> Progress:
        self.keep_good_state()
        status, iteration, seconds = self.status, self.state.iteration, self.state.seconds
        status.loss.append((iteration, means["mse"]))
        if "disc" in means:
            status.disc_loss.append((iteration, means["disc"]))
        status.iteration, status.seconds = iteration, seconds
        status.iterations = self.budget.expected_total(iteration, seconds)
        message = f"{status.phase}: iteration {iteration}, MSE {status.loss[-1][1]:.5f}"
        return Progress(iteration, status.iterations, message, status.snapshot())

    def finish(self) -> dict[str, Any]:
        means = self.state.window_means()
        if "mse" in means:
            self.status.loss.append((self.state.iteration, means["mse"]))
        if not self.status.validation or self.status.validation[-1][0] != self.state.iteration:
            self.validate()
        self.generator.eval()
        return self.save(final=True)

    def release(self) -> None:
        """Give the device's cached memory back and end the batch-drawing processes (however the job ends)."""
        try:
            super().release()
        finally:
            if self.prefetch is not None:
                self.prefetch.close()

    def kept(self) -> str:
        if self.state_file.is_file():
            return f"the last checkpoint ({self.state_file.name}) is kept"
        return "nothing was saved"

    # -- files -----------------------------------------------------------------------------------------------------
    def card(self) -> dict[str, Any]:
        """The model card of the weights file as things are now."""
        import torch

        from napari_sparse_sem.nn.gan import count_parameters

        config, data, state, status = self.config, self.data, self.state, self.status
        metrics: dict[str, Any] = {}
        if data.validation is not None:
            metrics = {
                "validation_slices": data.val_slices,
                "validation_coverage": round(float(np.sqrt(config.coverage[0] * config.coverage[1])), 4),
                "linear_psnr": round(data.validation.linear_psnr, 3),
                **{("gan-mse" if k == "pretrain" else "gan"): v for k, v in self.val_detail.items()},
            }
        adversarial = self.mse_state is not None
        training = {
            **config.to_dict(),
            "iterations_done": state.iteration,
            "pretrain_iterations": status.pretrain_iterations if adversarial else state.iteration,
            "seconds": round(state.seconds, 1),
            "device": self.device,
            "stopped": state.stopped,
            "completed": state.completed,
            "alrc_clipped": {name: c.clipped for name, c in self.clippers.items()},
            "rollbacks": self.rollbacks,
            "final_mse": status.loss[-1][1] if status.loss else None,
        }
        return {
            "kind": CARD_KIND,
            "description": (
                "Partial-scan GAN generator (Ede & Beanland 2020): input = (partial scan with unscanned pixels "
                f"filled by {self.network.fill!r}, mask), values in [0, 1]; tensors 'mse.*' = after MSE pre-training "
                "(method gan-mse), 'gan.*' = after adversarial fine-tuning (method gan)"
            ),
            "variants": ["mse"] + (["gan"] if adversarial else []),
            "architecture": self.network.to_dict(),
            "parameters": count_parameters(self.generator),
            "data": {
                "file": data.name,
                "slices": data.slices,
                "train_slices": data.train_slices,
                "shape": data.shape,
            },
            "training": training,
            "metrics": metrics,
            "command": self.command,
            "software": {"torch": torch.__version__, "python": platform.python_version()},
        }

    def save(self, final: bool) -> dict[str, Any]:
        """Write the weights with their card, the checkpoint and the learning curves."""
        from napari_sparse_sem.nn.checkpoint import optimizer_tensors, prefixed, save_checkpoint
        from napari_sparse_sem.nn.weights import save_weights

        state = self.state
        weights = prefixed("mse", self.mse_state or self.generator.state_dict())
        if self.mse_state is not None:
            weights.update(prefixed("gan", self.generator.state_dict()))
        card = self.card()
        path, card_file = save_weights(self.out_path, weights, card, overwrite=True)
        tensors = prefixed("g", self.generator.state_dict())
        g_tensors, g_groups = optimizer_tensors("opt_g", self.optimizer_g)
        tensors.update(g_tensors)
        tensors["rng.torch"] = self.crop_rng.get_state()
        state_card: dict[str, Any] = {
            "kind": "partial-scan-gan-training-state",
            "config": self.config.to_dict(),
            "data": {"file": self.data.name, "slices": self.data.slices},
            "iteration": state.iteration,
            "seconds": state.seconds,
            "status": asdict(self.status),
            "optimizer_g": g_groups,
            "alrc": {name: c.state_dict() for name, c in self.clippers.items()},
            "numpy_rng": self.rng.bit_generator.state,
            "lr_factor": self.lr_factor,
            "rollbacks": self.rollbacks,
            "validation_detail": self.val_detail,
        }
        if self.mse_state is not None:
            tensors.update(prefixed("mse", self.mse_state))
            tensors.update(prefixed("d", self.discriminator.state_dict()))
            d_tensors, d_groups = optimizer_tensors("opt_d", self.optimizer_d)
            tensors.update(d_tensors)
            state_card["optimizer_d"] = d_groups
        save_checkpoint(self.state_file, tensors, state_card)
        plot = save_learning_curves(self.status, curves_path(self.out_path), title=self.out_path.name)
        write_curves_json(curves_json(self.out_path), asdict(self.status))
        return {
            "path": path,
            "card_path": card_file,
            "state_path": self.state_file,
            "curves_path": plot,
            "iterations": state.iteration,
            "seconds": state.seconds,
            "stopped": state.stopped,
            "card": card,
            "final": final,
        }


def save_learning_curves(status: GANTrainingStatus, path: str | Path, title: str = "") -> Path:
    """Plot the training MSE, the discriminator loss and the held-out PSNR (vs ``linear``) to a PNG."""
    phase = [(status.pretrain_iterations, "adversarial phase starts")] if status.pretrain_iterations else []
    losses = Panel(
        f"training {title}".strip(),
        [
            Series(status.loss, "restoration MSE (training crops)"),
            Series(status.disc_loss, "discriminator loss", color="C2"),
        ],
        log=True,
        vlines=list(phase),
    )
    psnr = Panel(
        "validation",
        [Series(status.validation, "generator", fmt="o-", line_width=1.0)],
        ylabel="PSNR (dB), held-out slices",
        vlines=list(phase),
        hlines=[] if status.linear_psnr is None else [(status.linear_psnr, "linear interpolation")],
    )
    return plot_curves([losses, psnr], path, size=(8.0, 3.2))
