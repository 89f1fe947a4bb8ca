"""The one training loop of every network we train (the GAN, the error estimator, the SEM surrogate).

A trainer subclasses :class:`Trainer` and supplies only what is its own: the losses of a batch (:meth:`~Trainer.
losses`), the update (:meth:`~Trainer.update`), what to do after a step (validation), the progress event it shows,
the files it saves (weights, model card, checkpoint, curves) and its result. :func:`run_training` does the rest, the
same way for all of them:

* **budget**: iterations and/or minutes (:class:`Budget`), whichever ends first; both count across resumes, because
  the loop starts from the trainer's :class:`LoopState` (iteration and seconds restored from its checkpoint);
* **logging**: the losses of each batch are averaged over ``log_every`` iterations and handed to
  :meth:`~Trainer.progress`, whose :class:`~napari_sparse_sem.runtime.Progress` carries the curves so far, so a
  widget can plot them live;
* **checkpoints**: every ``checkpoint_every`` iterations and/or ``checkpoint_minutes``, and when the job is stopped;
* **divergence guard**: a non-finite loss (or what :meth:`~Trainer.diverged` adds) stops the training with
  :class:`TrainingDiverged` before the bad batch updates anything, unless :meth:`~Trainer.recover` handles it (the GAN
  rolls back); nothing is saved then, so the last checkpoint written, from a good state, is the one that stays;
* **stop**: closing the generator (a widget's Cancel, :func:`~napari_sparse_sem.runtime.run_job` after Ctrl-C or
  SIGTERM) or a :class:`~napari_sparse_sem.runtime.Stopped` raised inside a step saves what was trained
  (``stopped = "cancelled"``) before the stop goes on;
* **device release**: the trainer's device cache is emptied when the job ends, however it ends.

torch is imported lazily, so importing this module costs nothing.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from napari_sparse_sem.runtime import Job, Progress, expected_total

T = TypeVar("T")

STOP_REASONS = ("iterations", "time", "cancelled")
"""``LoopState.stopped``: the iteration budget was reached, the time budget was, or the job was stopped early."""


@dataclass(frozen=True)
class Budget:
    """How long a training runs: ``iterations`` batches and/or ``minutes`` of training, whichever ends first."""

    iterations: int | None = None
    minutes: float | None = None

    def __post_init__(self) -> None:
        if self.iterations is None and self.minutes is None:
            raise ValueError("give a training budget: iterations, minutes or both")

    @property
    def seconds(self) -> float | None:
        """The time budget in seconds (``None``: no time limit)."""
        return None if self.minutes is None else 60.0 * float(self.minutes)

    def fraction(self, iteration: int, seconds: float) -> float:
        """How much of the budget is spent (the larger of the two fractions; may exceed 1)."""
        done = 0.0
        if self.iterations is not None:
            done = iteration / self.iterations
        if self.seconds is not None:
            done = max(done, seconds / self.seconds)
        return done

    def reached(self, iteration: int, seconds: float) -> str | None:
        """``"iterations"`` or ``"time"`` once that budget is spent, else ``None``."""
        if self.iterations is not None and iteration >= self.iterations:
            return "iterations"
        if self.seconds is not None and seconds >= self.seconds:
            return "time"
        return None

    def expected_total(self, iteration: int, seconds: float) -> int:
        """The iteration count the budget allows at the speed so far (a progress bar's total)."""
        return expected_total(self.iterations, iteration, seconds, self.seconds)


@dataclass
class LoopState:
    """Where a training is: iterations done, seconds trained (both across resumes), why it stopped, the losses of
    the last batch and those not yet averaged into a log step (``window``)."""

    iteration: int = 0
    seconds: float = 0.0
    stopped: str = "cancelled"
    last: dict[str, float] = field(default_factory=dict)
    window: dict[str, list[float]] = field(default_factory=dict)

    @property
    def completed(self) -> bool:
        """Whether the budget was spent (not stopped early)."""
        return self.stopped != "cancelled"

    def window_means(self) -> dict[str, float]:
        """The mean of each loss over the batches since the last log step (losses without batches left out)."""
        return {name: float(sum(values) / len(values)) for name, values in self.window.items() if values}


class TrainingDiverged(FloatingPointError):
    """A loss became non-finite (or the trainer saw a run-away): training stopped, the last checkpoint was kept."""


class Trainer(Generic[T]):
    """What one training supplies to :func:`run_training`.

    Set ``budget``, ``device``, ``log_every``, ``checkpoint_every`` (iterations) and/or ``checkpoint_minutes`` and
    ``state`` (restored from a checkpoint when resuming); implement :meth:`losses`, :meth:`update`, :meth:`save` and
    :meth:`finish`; override the other hooks where needed.
    """

    budget: Budget
    device: str = "cpu"
    log_every: int = 10
    checkpoint_every: int | None = None
    checkpoint_minutes: float | None = None

    optimizer: Any = None
    pending_loss: Any = None

    def __init__(self) -> None:
        self.state = LoopState()

    def losses(self) -> dict[str, float]:
        """Draw one batch and compute its losses (no update yet); the divergence guard checks these values."""
        raise NotImplementedError

    def update(self) -> dict[str, float]:
        """Apply the update of the batch :meth:`losses` computed; return further losses to log (e.g. a
        discriminator's), or an empty dict. The default is one optimizer step on ``self.pending_loss`` (the loss
        tensor :meth:`losses` kept) with ``self.optimizer``; trainers with several networks override it."""
        loss, self.pending_loss = self.pending_loss, None
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return {}

    def diverged(self, losses: Mapping[str, float]) -> bool:
        """Whether this batch's losses mean the training diverged (default: any loss is not finite)."""
        return not all(math.isfinite(v) for v in losses.values())

    def recover(self, losses: Mapping[str, float]) -> bool:
        """Handle a divergence (e.g. roll back to a good state) and return ``True`` to go on, or ``False`` to stop
        with :class:`TrainingDiverged` (the default)."""
        return False

    def after_step(self) -> None:
        """Called after each counted iteration, before logging (validation, the trainer's own records)."""

    def progress(self, means: Mapping[str, float]) -> Progress:
        """The event of a log step; ``means`` are the losses averaged since the previous one."""
        total = self.budget.expected_total(self.state.iteration, self.state.seconds)
        text = ", ".join(f"{name} {value:.4g}" for name, value in means.items())
        return Progress(self.state.iteration, total, f"iteration {self.state.iteration}: {text}", dict(means))

    def save(self, final: bool) -> Any:
        """Write the weights, model card, checkpoint and curves as they are now (``final``: the budget is spent)."""
        raise NotImplementedError

    def finish(self) -> T:
        """After the budget is spent: the last evaluation, the final save, and the job's result."""
        raise NotImplementedError

    def kept(self) -> str:
        """What stays on disk when the training diverges, for the error message (default: nothing)."""
        return "nothing was saved"

    def release(self) -> None:
        """Give the device's cached memory back (called when the job ends, however it ends)."""
        release_device(self.device)


def release_device(device: str) -> None:
    """Empty the cache of a CUDA or MPS ``device`` so other programs (and the next job) get the memory back."""
    if not str(device).startswith(("cuda", "mps")):
        return
    import torch

    if str(device).startswith("cuda") and torch.cuda.is_available():
        torch.cuda.empty_cache()
    elif str(device).startswith("mps") and hasattr(torch, "mps") and torch.backends.mps.is_available():
        torch.mps.empty_cache()


def run_training(trainer: Trainer[T]) -> Job[T]:
    """Run ``trainer`` until its budget is spent (a generator job: yields progress, returns ``trainer.finish()``).

    See the module notes for the budget, logging, checkpoints, divergence guard, stop and device release.
    """
    state = trainer.state
    start = time.perf_counter() - state.seconds
    last_checkpoint = time.perf_counter()
    try:
        while True:
            state.seconds = time.perf_counter() - start
            reason = trainer.budget.reached(state.iteration, state.seconds)
            if reason is not None:
                state.stopped = reason
                break
            losses = trainer.losses()
            if trainer.diverged(losses):
                if trainer.recover(losses):
                    continue
                text = ", ".join(f"{name} {value:.3g}" for name, value in losses.items())
                raise TrainingDiverged(
                    f"training diverged at iteration {state.iteration + 1} (loss {text}); {trainer.kept()}. "
                    "Try a lower learning rate."
                )
            losses = {**losses, **trainer.update()}
            state.iteration += 1
            state.last = losses
            for name, value in losses.items():
                state.window.setdefault(name, []).append(value)
            state.seconds = time.perf_counter() - start
            trainer.after_step()
            if state.iteration % trainer.log_every == 0:
                means = state.window_means()
                state.window.clear()
                yield trainer.progress(means)
            due = trainer.checkpoint_every is not None and state.iteration % trainer.checkpoint_every == 0
            if trainer.checkpoint_minutes is not None:
                due = due or time.perf_counter() - last_checkpoint > 60.0 * trainer.checkpoint_minutes
            if due:
                trainer.save(final=False)
                last_checkpoint = time.perf_counter()
        return trainer.finish()
    except (GeneratorExit, KeyboardInterrupt):
        state.stopped = "cancelled"
        if state.iteration:
            trainer.save(final=False)
        raise
    finally:
        trainer.release()
