"""Several DIP networks fitted at once (recon/dip_batch.py, issue #19): the same fits as one network at a time, frozen
networks stay frozen, interleaved slice groups, the volume driver — tiny nets on real FlyEM crops, CPU, float32."""

from __future__ import annotations

import dataclasses
import itertools

import numpy as np
import pytest
import torch

from napari_sparse_sem.metrics import psnr
from napari_sparse_sem.nn.skipnet import SkipNet, grouped_forward
from napari_sparse_sem.recon import FitPreview, create
from napari_sparse_sem.recon.dip import dip_config
from napari_sparse_sem.recon.dip_batch import FitTask, NetworkBatch, _adam_step, interleaved_groups
from napari_sparse_sem.recon.volume import SliceDone, reconstruct_volume
from napari_sparse_sem.runtime import run_job

TINY = {"levels": 3, "channels": 16, "input_channels": 8, "preview_every": 0}


@pytest.fixture(scope="module")
def crop(flyem_crop: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Slices 125-130, 40 x 40, a 20 % random mask per slice: (dense, sparse, mask)."""
    dense = np.ascontiguousarray(flyem_crop[5:11, 60:100, 60:100])
    mask = np.random.default_rng(0).random(dense.shape) < 0.2
    return dense, np.where(mask, dense, 0).astype(np.float32), mask


def _slab(sparse: np.ndarray, mask: np.ndarray, z: int, context: int) -> tuple[np.ndarray, np.ndarray, int]:
    """The slab the volume driver hands over for slice ``z``."""
    z0, z1 = max(0, z - context), min(len(sparse), z + context + 1)
    return sparse[z0:z1], mask[z0:z1], z - z0


def test_grouped_forward_runs_each_network_on_its_own() -> None:
    torch.manual_seed(0)
    nets = [SkipNet(5, 2, levels=2, channels=8, skip_channels=2) for _ in range(3)]
    weights = {
        name: torch.stack([dict(net.named_parameters())[name] for net in nets])
        for name, _ in nets[0].named_parameters()
    }
    x = torch.rand(3, 5, 21, 19)  # padded to a multiple of 4 and cropped back, as SkipNet does
    alone = torch.cat([net(x[j : j + 1]) for j, net in enumerate(nets)])
    for channels_last in (False, True):
        together = grouped_forward(nets[0], weights, x, channels_last=channels_last)
        assert together.shape == (3, 2, 21, 19)
        np.testing.assert_allclose(together.detach().numpy(), alone.detach().numpy(), atol=2e-6)


GUIDED = {
    "guide": "linear",
    "residual": True,
    "ema": 0.0,
    "stopping": "fixed",
    "iterations_first": 20,
    "iterations_warm": 8,
}


@pytest.mark.parametrize(("method", "extra"), [("dip", {}), ("dip3d", {"neighbours": 1}), ("dip", GUIDED)])
def test_one_network_in_the_batch_is_bit_identical_to_a_fit_of_its_own(crop, method, extra) -> None:
    # A batch of one runs ungrouped convolutions, so every other part of the batched fit — seed, noise stream,
    # held-out pixels, Adam with its step count, EMA, stopping rule, warm-up, warm start, dip3d's head shift — must
    # reproduce the one-network fit exactly.
    _, sparse, mask = crop
    options = {**TINY, "iterations_first": 60, "iterations_warm": 30, "patience": 20, "check_every": 5, **extra}
    alone = create(method, **options)
    done = [
        e.partial for e in reconstruct_volume(sparse, mask, alone, slices=[3, 4]) if isinstance(e.partial, SliceDone)
    ]
    batched = create(method, **options, batch=4)
    results = []
    for z in (3, 4):  # one slice per group: network 0 warm-starts from its previous slice
        results += run_job(batched.reconstruct_batch_job([_slab(sparse, mask, z, batched.context)]))
    for slice_done, (image, info) in zip(done, results, strict=True):
        np.testing.assert_array_equal(image, slice_done.image)
        assert info == slice_done.info
    first, warm = options["iterations_first"], options["iterations_warm"]
    assert [h["iterations"] for h in batched.history] == [h["iterations"] for h in alone.history]
    assert [h["iterations"] for h in alone.history] == [first, warm, warm, warm]  # cold warm-up, warm-up, 3, 4
    assert [h["holdout_curve"] for h in batched.history] == [h["holdout_curve"] for h in alone.history]
    assert done[0].info["warmup_iterations"] == first + warm and done[1].info["warm"]


def test_networks_fitted_together_match_fits_of_their_own(crop) -> None:
    # Three networks at once against three fits of their own. Grouped convolutions sum in another order (~1e-7
    # relative at the first iteration); Adam's first steps are nearly sign(gradient), so that rounding grows to ~1e-2
    # in the loss — as much as a fit of its own on inputs changed by one float ulp moves (measured: up to 0.02 max
    # abs, 0.04 dB on this crop). Exactness is therefore not possible; the fits must agree in quality.
    dense, sparse, mask = crop
    options = {**TINY, "iterations_first": 80, "patience": 1000, "check_every": 10, "warmup_slices": 0}
    batched = create("dip", **options, batch=3)
    together = run_job(batched.reconstruct_batch_job([(sparse[j : j + 1], mask[j : j + 1], 0) for j in range(3)]))
    for j, (image, info) in enumerate(together):
        alone = create("dip", **options)
        own = alone.reconstruct_slice(sparse[j : j + 1], mask[j : j + 1], 0)
        assert info == alone.slice_info()
        mine, theirs = batched.history[j], alone.history[-1]
        np.testing.assert_allclose(mine["loss_curve"][0], theirs["loss_curve"][0], rtol=1e-5)  # the same start
        assert [i for i, _ in mine["holdout_curve"]] == [i for i, _ in theirs["holdout_curve"]]
        np.testing.assert_allclose(
            [e for _, e in mine["holdout_curve"]], [e for _, e in theirs["holdout_curve"]], rtol=0.1
        )
        assert abs(psnr(dense[j], image) - psnr(dense[j], own)) <= 0.05
        assert np.abs(image - own).max() < 0.05


def test_a_stopped_network_is_frozen_while_the_others_go_on(crop) -> None:
    _, sparse, mask = crop
    short = dip_config(**TINY, iterations_first=10, iterations_warm=8, stopping="fixed")
    long = dataclasses.replace(short, iterations_first=30)
    fitters = []
    for config in (short, long):
        fitter = NetworkBatch(short, 0, "cpu", "dip")
        run_job(fitter.fit_job([FitTask(2, sparse[5:6], mask[5:6])]))  # network 2 is warm now
        fitter.config = config
        # Networks 0 and 1 start cold (10 or 30 iterations); warm network 2 stops after 8 and is frozen; with two
        # of three still fitting the batch is not compacted, so network 2 stays in the grouped pass.
        runs = run_job(fitter.fit_job([FitTask(j, sparse[j : j + 1], mask[j : j + 1]) for j in range(3)]))
        assert [run.iteration for run in runs] == [config.iterations_first] * 2 + [8]
        fitters.append((fitter, runs))
    (ended, ended_runs), (went_on, went_on_runs) = fitters
    # Until iteration 8 both batches computed the same; after it network 2's state and image did not change.
    for key in ("flat", "exp_avg", "exp_avg_sq", "steps"):
        assert torch.equal(getattr(went_on, key)[2], getattr(ended, key)[2])
    assert went_on.steps[2] == 10 + 8 and went_on.steps[0] == 30
    assert torch.equal(went_on.generators[2].get_state(), ended.generators[2].get_state())  # no noise drawn since
    np.testing.assert_array_equal(went_on_runs[2].image, ended_runs[2].image)
    assert not np.array_equal(went_on_runs[0].image, ended_runs[0].image)  # the others did go on


def test_loss_scaling_skips_a_network_with_overflowing_gradients_only() -> None:
    rows, width = 2, 6
    flat = torch.rand(rows, width)
    grad = torch.rand(rows, width) * 1024.0
    grad[1, 3] = float("inf")  # network 1 overflowed in float16
    state = [torch.zeros(rows, width), torch.zeros(rows, width), torch.zeros(rows, dtype=torch.float64)]
    scale, growth = torch.full((rows,), 1024.0), torch.tensor([5, 5])
    before = flat.clone()
    _adam_step(flat, grad, *state, scale, growth, torch.tensor([True, True]), 0.01, True)
    assert torch.equal(flat[1], before[1]) and state[2].tolist() == [1.0, 0.0]  # skipped, step count unchanged
    assert scale.tolist() == [1024.0, 512.0] and growth.tolist() == [6, 0]
    # Network 0 took Adam's first step on its unscaled gradient: lr * sign(gradient) up to eps.
    np.testing.assert_allclose((before[0] - flat[0]).numpy(), 0.01, rtol=1e-4)


def test_float16_and_bfloat16_batches_run(crop) -> None:
    # float16 with per-network loss scaling is meant for CUDA; its arithmetic runs on the CPU too.
    dense, sparse, mask = crop
    config = dip_config(**TINY, iterations_first=30, stopping="fixed")
    scores = {}
    for amp in (None, torch.float16, torch.bfloat16):
        fitter = NetworkBatch(config, 0, "cpu", "dip", amp)
        runs = run_job(fitter.fit_job([FitTask(j, sparse[j : j + 1], mask[j : j + 1]) for j in range(2)]))
        scores[amp] = [psnr(dense[j], run.image) for j, run in enumerate(runs)]
        assert all(np.isfinite(run.image).all() for run in runs)
    for amp in (torch.float16, torch.bfloat16):
        assert np.allclose(scores[amp], scores[None], atol=0.5)


def test_interleaved_groups_cover_every_slice_and_continue_each_run() -> None:
    assert interleaved_groups(list(range(10)), 3) == [[0, 4, 7], [1, 5, 8], [2, 6, 9], [3]]
    assert interleaved_groups([4, 9], 8) == [[4, 9]]
    assert interleaved_groups([], 4) == []
    for count, batch in [(250, 32), (250, 64), (7, 7), (5, 2), (1, 3)]:
        slices = list(range(100, 100 + count))
        groups = interleaved_groups(slices, batch)
        assert sorted(z for group in groups for z in group) == slices
        assert len(groups[0]) == min(batch, count) and all(len(a) >= len(b) for a, b in itertools.pairwise(groups))
        for earlier, later in itertools.pairwise(groups):  # position j always continues run j
            assert all(b == a + 1 for a, b in zip(earlier, later, strict=False))


def test_tiled_slices_are_not_batched() -> None:
    dip = create("dip", batch=4, tile=32, tile_overlap=4)
    dip.prepare(np.zeros((6, 64, 64), np.float32), np.ones((6, 64, 64), bool), list(range(6)))
    assert dip.slice_groups(list(range(6))) == [[z] for z in range(6)]
    dip.prepare(np.zeros((6, 30, 30), np.float32), np.ones((6, 30, 30), bool), list(range(6)))
    assert dip.slice_groups(list(range(6))) == [[0, 2, 4, 5], [1, 3]]  # runs [0, 1], [2, 3], [4], [5]
    assert create("dip").slice_groups([3, 4]) == [[3], [4]]


def test_batch_through_the_volume_driver(crop) -> None:
    dense, sparse, mask = crop
    options = {**TINY, "iterations_first": 120, "iterations_warm": 40, "patience": 40, "check_every": 10}
    dip = create("dip", **{**options, "preview_every": 20}, batch=3)
    events = list(reconstruct_volume(sparse, mask, dip))
    done = {e.partial.z: e.partial for e in events if isinstance(e.partial, SliceDone)}
    assert sorted(done) == list(range(6))
    # Runs [0, 1], [2, 3], [4, 5]: network 0 starts cold at slice 0 (nothing before it to warm up on), networks 1
    # and 2 fit their two preceding slices first; the second group is warm-started from the first.
    assert [done[z].info["warm"] for z in (0, 2, 4, 1, 3, 5)] == [False, True, True, True, True, True]
    assert done[0].info["warmup_iterations"] == 0 and done[2].info["warmup_iterations"] > 0
    assert all(done[z].info["iterations"] <= 40 for z in (1, 3, 5, 2, 4))
    previews = [e.partial for e in events if isinstance(e.partial, FitPreview)]
    assert {p.z for p in previews if not p.warmup} <= set(range(6)) and any(p.warmup for p in previews)
    scores = [psnr(dense[z], done[z].image) for z in range(6)]
    one_by_one = run_job(reconstruct_volume(sparse, mask, "dip", options=options))
    alone = [psnr(dense[z], one_by_one[z]) for z in range(6)]
    # Measured: 26.5 (cold slice 0) to 31.0 dB, within 0.3 dB of the one-network run slice by slice (26.5-31.2).
    assert min(scores) > 26.0 and abs(np.mean(scores) - np.mean(alone)) < 0.3
    assert dip.batch_fitter is None  # released at the end of the run


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch.compile of the step takes ~3 minutes on 2 CPU cores")
def test_compiled_step_fits_as_the_plain_one(crop) -> None:
    dense, sparse, mask = crop
    options = {**TINY, "iterations_first": 30, "stopping": "fixed", "warmup_slices": 0}
    slabs = [(sparse[j : j + 1], mask[j : j + 1], 0) for j in range(2)]
    plain = run_job(create("dip", **options, batch=2, device="cuda").reconstruct_batch_job(slabs))
    compiled = run_job(create("dip", **options, batch=2, device="cuda", compile=True).reconstruct_batch_job(slabs))
    for j, ((a, _), (b, _)) in enumerate(zip(plain, compiled, strict=True)):
        assert abs(psnr(dense[j], a) - psnr(dense[j], b)) < 0.3
