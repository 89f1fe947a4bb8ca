"""GAN training batches drawn ahead in worker processes (``data_workers``): the stream, resume, and no process left."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from napari_sparse_sem.nn.weights import load_weights, read_card
from napari_sparse_sem.recon.gan_trainer import GANData, GANTrainer
from napari_sparse_sem.recon.gan_training import (
    GANTrainingConfig,
    resumed_workers,
    state_path,
    train_gan_job,
    training_batch,
)
from napari_sparse_sem.runtime import run_job

SLICES = [0, 1, 2, 3]


@pytest.fixture(scope="module")
def stack(flyem_crop: np.ndarray) -> np.ndarray:
    """Four 80² crops of FlyEM slices 120-123 (float32 in [0, 1])."""
    return np.ascontiguousarray(flyem_crop[:4, 90:170, 60:140])


def _children() -> set[int]:
    return {p.pid for p in multiprocessing.active_children()}


def _trainer(config: GANTrainingConfig, stack: np.ndarray, tmp_path: Path) -> GANTrainer:
    data = GANData(stack[:3], SLICES[:3], [], SLICES[:3], list(stack.shape[1:]), None, None)
    return GANTrainer(config, data, tmp_path / "t.safetensors", "cpu", None)


def test_workers_draw_each_iterations_own_batch_whatever_their_number(
    make_config: Callable[..., GANTrainingConfig], stack: np.ndarray, tmp_path: Path
) -> None:
    config = make_config(seed=3)
    network = config.network()

    def keyed(*key: int) -> tuple[np.ndarray, np.ndarray]:
        return training_batch(stack[:3], config, network, np.random.default_rng(list(key)), SLICES[:3])

    # in the training loop (the default): one generator seeded with the seed, as before data_workers existed
    trainer = _trainer(config, stack, tmp_path)
    rng = np.random.default_rng(3)
    for _ in range(3):
        x, y = trainer.next_batch()
        x0, y0 = training_batch(stack[:3], config, network, rng, SLICES[:3])
        assert np.array_equal(x, x0) and np.array_equal(y, y0)
    assert trainer.prefetch is None
    before = _children()
    for workers in (1, 2):
        trainer = _trainer(config.replace(data_workers=workers), stack, tmp_path)
        try:
            for t in (0, 1, 2, 5, 6):  # batch t is drawn for the t-th iteration, in any order
                trainer.state.iteration = t
                x, y = trainer.next_batch()
                x0, y0 = keyed(3, t)
                assert np.array_equal(x, x0) and np.array_equal(y, y0)
                assert list(trainer.prefetch.pending) == [(3, s) for s in range(t + 1, t + 1 + 2 * workers)]
            assert len(_children() - before) == workers
            # a roll-back at iteration 7 draws that iteration again from a fresh key, not the diverged batch
            trainer.state.iteration = 7
            trainer.next_batch()
            trainer.rollbacks.append((7, 0.5))
            assert trainer.batch_key(7) == (3, 7, 1) and trainer.batch_key(8) == (3, 8)
            x, _ = trainer.next_batch()
            assert np.array_equal(x, keyed(3, 7, 1)[0]) and not np.array_equal(x, keyed(3, 7)[0])
        finally:
            trainer.release()
        assert _children() == before  # release ends the pool
    # only the stream differs from the training loop's (SeedSequence([3, 0]) is SeedSequence(3): batch 0 is the same)
    rng = np.random.default_rng(3)
    loop = [training_batch(stack[:3], config, network, rng, SLICES[:3])[0] for _ in range(2)]
    assert np.array_equal(loop[0], keyed(3, 0)[0]) and not np.array_equal(loop[1], keyed(3, 1)[0])


def test_a_resumed_run_with_workers_equals_an_uninterrupted_one_and_no_worker_stays(
    make_config: Callable[..., GANTrainingConfig], stack: np.ndarray, tmp_path: Path
) -> None:
    whole = run_job(train_gan_job(stack, SLICES, make_config(data_workers=1), tmp_path / "whole.safetensors"))
    assert whole["card"]["training"]["data_workers"] == 1
    before = _children()
    out = tmp_path / "gan.safetensors"
    job = train_gan_job(stack, SLICES, make_config(data_workers=2), out)
    for event in job:
        if event.step == 8:  # in the adversarial phase
            workers = _children() - before
            break
    assert len(workers) == 2
    with pytest.raises(KeyboardInterrupt):  # what Ctrl-C raises inside the job
        job.throw(KeyboardInterrupt())
    assert _children() == before and not any(Path(f"/proc/{pid}").exists() for pid in workers)
    card = read_card(out)
    assert card["training"]["stopped"] == "cancelled" and card["training"]["iterations_done"] == 8
    # resumed without asking for workers: the checkpoint's count; the stream does not depend on it
    resumed = run_job(train_gan_job(stack, SLICES, make_config(), out, resume=True))
    assert resumed["iterations"] == 12 and resumed["card"]["training"]["data_workers"] == 2
    assert _children() == before
    tensors, _ = load_weights(out)
    expected, _ = load_weights(whole["path"])
    assert set(tensors) == set(expected) and {name.split(".", 1)[0] for name in tensors} == {"mse", "gan"}
    assert all(np.array_equal(tensors[name], expected[name]) for name in expected)


def test_resume_keeps_the_way_batches_were_drawn(
    make_config: Callable[..., GANTrainingConfig], stack: np.ndarray, tmp_path: Path
) -> None:
    assert resumed_workers(2, 0) == 2 and resumed_workers(2, 4) == 4 and resumed_workers(0, 0) == 0
    out = tmp_path / "loop.safetensors"
    job = train_gan_job(stack, SLICES, make_config(), out)
    for event in job:
        if event.step == 2:
            break
    job.close()
    with pytest.raises(ValueError, match="drew its batches in the training loop"):
        run_job(train_gan_job(stack, SLICES, make_config(data_workers=2), out, resume=True))
    assert read_card(state_path(out))["config"]["data_workers"] == 0
    # parameters saved before data_workers existed read as 0 (in the training loop)
    old = {k: v for k, v in make_config().to_dict().items() if k != "data_workers"}
    assert GANTrainingConfig.from_dict(old) == make_config() and make_config().data_workers == 0
