"""The one training loop (nn/training.py) on a tiny real torch model: a 1 → 1 linear layer learning y = 3x + 1.

Budget by iterations, logging, resume (iteration count and Adam's moments), the divergence guard, the curve files and
the checkpoint kept when the job is stopped (closed, or a stop signal inside a step).
"""

from __future__ import annotations

import json
import math
import signal
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from napari_sparse_sem.nn.checkpoint import load_checkpoint, load_optimizer, optimizer_tensors, prefixed, unprefixed
from napari_sparse_sem.nn.curves import Panel, Series, curves_json, curves_png, plot_curves, write_curves_json
from napari_sparse_sem.nn.training import Budget, Trainer, TrainingDiverged, run_training
from napari_sparse_sem.runtime import Progress, Stopped, run_job


class LineFit(Trainer[dict[str, Any]]):
    """Fit y = 3x + 1 with Adam; batch ``i`` is drawn from a generator seeded with ``i`` (so a resumed run sees the
    same batches as an uninterrupted one). ``nan_at``: the batch of that iteration holds a NaN; ``stop_at``: a stop
    signal arrives while computing that iteration's losses."""

    def __init__(
        self,
        out: Path,
        iterations: int | None = 20,
        minutes: float | None = None,
        resume: bool = False,
        checkpoint_every: int | None = None,
        nan_at: int | None = None,
        stop_at: int | None = None,
    ) -> None:
        import torch

        super().__init__()
        torch.manual_seed(0)
        self.out, self.nan_at, self.stop_at = out, nan_at, stop_at
        self.budget = Budget(iterations, minutes)
        self.log_every = 5
        self.checkpoint_every = checkpoint_every
        self.model = torch.nn.Linear(1, 1)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=0.05)
        self.curve: list[tuple[int, float]] = []
        self.saves: list[tuple[int, bool]] = []
        self._loss: Any = None
        if resume:
            tensors, card = load_checkpoint(out)
            self.model.load_state_dict(unprefixed("model", tensors))
            load_optimizer(self.optimizer, "opt", tensors, card["optimizer"])
            self.state.iteration, self.state.seconds = card["iteration"], card["seconds"]
            self.curve = [tuple(p) for p in card["curve"]]  # type: ignore[misc]

    def losses(self) -> dict[str, float]:
        import torch

        upcoming = self.state.iteration + 1
        if upcoming == self.stop_at:
            raise Stopped(signal.SIGTERM)
        x = torch.rand(16, 1, generator=torch.Generator().manual_seed(upcoming))
        if upcoming == self.nan_at:
            x[0, 0] = math.nan
        self._loss = torch.nn.functional.mse_loss(self.model(x), 3 * x + 1)
        return {"mse": float(self._loss.detach())}

    def update(self) -> dict[str, float]:
        self.optimizer.zero_grad()
        self._loss.backward()
        self.optimizer.step()
        return {}

    def progress(self, means: dict[str, float]) -> Progress:
        self.curve.append((self.state.iteration, means["mse"]))
        return super().progress(means)

    def save(self, final: bool) -> None:
        opt, groups = optimizer_tensors("opt", self.optimizer)
        card = {
            "iteration": self.state.iteration,
            "seconds": self.state.seconds,
            "stopped": self.state.stopped,
            "optimizer": groups,
            "curve": self.curve,
            "final": final,
        }
        from napari_sparse_sem.nn.checkpoint import save_checkpoint

        save_checkpoint(self.out, prefixed("model", self.model.state_dict()) | opt, card)
        write_curves_json(curves_json(self.out), {"mse": self.curve})
        plot_curves([Panel("training", [Series(self.curve, "MSE")], log=True)], curves_png(self.out))
        self.saves.append((self.state.iteration, final))

    def finish(self) -> dict[str, Any]:
        self.save(final=True)
        return {"iterations": self.state.iteration, "stopped": self.state.stopped, "curve": list(self.curve)}

    def kept(self) -> str:
        return f"the last checkpoint ({self.out.name}) is kept" if self.out.exists() else "nothing was saved"


def _weights(path: Path) -> dict[str, np.ndarray]:
    tensors, _ = load_checkpoint(path)
    return {name: tensor.numpy() for name, tensor in tensors.items()}


def test_an_iteration_budget_runs_that_many_steps_logs_means_and_learns(tmp_path: Path) -> None:
    trainer = LineFit(tmp_path / "fit.safetensors", iterations=60)
    events: list[Progress] = []
    result = run_job(run_training(trainer), events.append)
    assert result["iterations"] == 60 and result["stopped"] == "iterations"
    assert [e.step for e in events] == list(range(5, 61, 5)) and {e.total for e in events} == {60}
    assert set(events[0].partial) == {"mse"} and events[0].message.startswith("iteration 5: mse ")
    losses = [value for _, value in result["curve"]]
    assert losses[-1] < 0.2 * losses[0]  # it learns
    assert trainer.saves == [(60, True)]  # no checkpoint asked for: one final save


def test_the_logged_value_is_the_mean_of_the_batches_since_the_last_log(tmp_path: Path) -> None:
    class Recording(LineFit):
        def losses(self) -> dict[str, float]:
            out = super().losses()
            self.seen.append(out["mse"])
            return out

    trainer = Recording(tmp_path / "fit.safetensors", iterations=10)
    trainer.seen = []
    result = run_job(run_training(trainer))
    assert result["curve"][0] == (5, pytest.approx(np.mean(trainer.seen[:5])))
    assert result["curve"][1] == (10, pytest.approx(np.mean(trainer.seen[5:])))


def test_resume_continues_the_iteration_count_and_the_optimizer_state(tmp_path: Path) -> None:
    straight = tmp_path / "straight.safetensors"
    run_job(run_training(LineFit(straight, iterations=20)))
    halves = tmp_path / "halves.safetensors"
    run_job(run_training(LineFit(halves, iterations=12, checkpoint_every=4)))
    first = load_checkpoint(halves)[1]
    assert first["iteration"] == 12 and first["stopped"] == "iterations"
    resumed = LineFit(halves, iterations=20, resume=True)
    assert resumed.state.iteration == 12 and resumed.optimizer.state_dict()["state"][0]["step"] == 12
    events: list[Progress] = []
    result = run_job(run_training(resumed), events.append)
    assert result["iterations"] == 20 and [e.step for e in events] == [15, 20]
    assert [it for it, _ in result["curve"]] == [5, 10, 15, 20]
    a, b = _weights(straight), _weights(halves)
    assert a.keys() == b.keys() and float(b["opt.0.step"]) == 20
    for name in a:  # Adam's moments carried over: the same weights as one uninterrupted run
        np.testing.assert_allclose(a[name], b[name], rtol=1e-6, atol=1e-7)


def test_checkpoints_follow_checkpoint_every(tmp_path: Path) -> None:
    trainer = LineFit(tmp_path / "fit.safetensors", iterations=10, checkpoint_every=3)
    run_job(run_training(trainer))
    assert trainer.saves == [(3, False), (6, False), (9, False), (10, True)]


def test_a_non_finite_loss_stops_with_a_clear_error_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "fit.safetensors"
    trainer = LineFit(out, iterations=20, checkpoint_every=4, nan_at=7)
    with pytest.raises(TrainingDiverged, match=r"diverged at iteration 7 \(loss mse nan\); the last checkpoint"):
        run_job(run_training(trainer))
    assert isinstance(TrainingDiverged("x"), FloatingPointError)
    tensors, card = load_checkpoint(out)  # loads: no NaN weights were written
    assert card["iteration"] == 4 and trainer.saves == [(4, False)]
    assert all(np.isfinite(t.numpy()).all() for t in tensors.values())
    assert np.isfinite(trainer.model.weight.detach().numpy()).all()  # the bad batch never updated the model

    fresh = tmp_path / "early.safetensors"
    with pytest.raises(TrainingDiverged, match="nothing was saved"):
        run_job(run_training(LineFit(fresh, iterations=20, nan_at=1)))
    assert not fresh.exists()


def test_a_trainer_may_recover_from_a_divergence_and_go_on(tmp_path: Path) -> None:
    class Skipping(LineFit):
        skipped = 0

        def recover(self, losses: dict[str, float]) -> bool:
            self.skipped += 1
            self.nan_at = None  # the next draw of this iteration is clean
            return True

    trainer = Skipping(tmp_path / "fit.safetensors", iterations=10, nan_at=3)
    result = run_job(run_training(trainer))
    assert trainer.skipped == 1 and result["iterations"] == 10  # the skipped batch is not counted


def test_the_curve_files_are_written_beside_the_weights(tmp_path: Path) -> None:
    out = tmp_path / "fit.safetensors"
    result = run_job(run_training(LineFit(out, iterations=15)))
    assert curves_png(out) == tmp_path / "fit.curves.png" and curves_json(out) == tmp_path / "fit.curves.json"
    assert curves_png(out).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and curves_png(out).stat().st_size > 5_000
    saved = json.loads(curves_json(out).read_text())
    assert saved == {"mse": [[it, pytest.approx(v)] for it, v in result["curve"]]}
    write_curves_json(tmp_path / "odd.json", {"loss": [[1, math.nan], [2, math.inf], [3, 0.5]]})
    assert json.loads((tmp_path / "odd.json").read_text()) == {"loss": [[1, None], [2, None], [3, 0.5]]}


def test_closing_the_job_keeps_a_checkpoint_of_what_was_trained(tmp_path: Path) -> None:
    out = tmp_path / "fit.safetensors"
    trainer = LineFit(out, iterations=1000)
    job = run_training(trainer)
    for event in job:
        if event.step == 10:
            break
    job.close()  # a widget's Cancel, or run_job after Ctrl-C
    card = load_checkpoint(out)[1]
    assert card["iteration"] == 10 and card["stopped"] == "cancelled" and not card["final"]
    result = run_job(run_training(LineFit(out, iterations=15, resume=True)))
    assert result["iterations"] == 15 and result["stopped"] == "iterations"

    early = tmp_path / "early.safetensors"
    job = run_training(LineFit(early, iterations=1000))
    job.close()  # before the first batch: nothing to keep
    assert not early.exists()


def test_a_stop_signal_inside_a_step_keeps_a_checkpoint_and_goes_on(tmp_path: Path) -> None:
    out = tmp_path / "fit.safetensors"
    trainer = LineFit(out, iterations=1000, stop_at=8)
    with pytest.raises(Stopped):
        run_job(run_training(trainer))
    card = load_checkpoint(out)[1]
    assert card["iteration"] == 7 and card["stopped"] == "cancelled"


def test_budget_fractions_limits_and_totals() -> None:
    both = Budget(iterations=100, minutes=1.0)
    assert both.seconds == 60.0 and both.fraction(25, 30.0) == 0.5 and both.fraction(50, 6.0) == 0.5
    assert both.reached(99, 59.0) is None and both.reached(100, 1.0) == "iterations" and both.reached(3, 60.0) == "time"
    assert both.expected_total(10, 30.0) == 20 and Budget(iterations=7).expected_total(1, 1.0) == 7
    with pytest.raises(ValueError, match="budget"):
        Budget()


def test_a_time_budget_stops_on_time(tmp_path: Path) -> None:
    result = run_job(run_training(LineFit(tmp_path / "fit.safetensors", iterations=None, minutes=0.002)))
    assert result["stopped"] == "time" and result["iterations"] >= 1
