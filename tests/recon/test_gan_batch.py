"""GAN inference in batches (issue #19): ``batch`` slices per forward pass give the slices of one at a time."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_sparse_sem.metrics import psnr
from napari_sparse_sem.recon.base import create
from napari_sparse_sem.recon.gan import filled_input
from napari_sparse_sem.recon.interp import fill_nearest
from napari_sparse_sem.recon.volume import SliceDone, reconstruct_volume
from napari_sparse_sem.runtime import run_job
from napari_sparse_sem.sampling.patterns import make_masks
from napari_sparse_sem.sampling.spec import MaskSpec
from napari_sparse_sem.threads import limited_threads

TOLERANCE = 1e-5


def _scan(stack: np.ndarray, seed: int = 1, coverage: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    mask, _ = make_masks(stack.shape, MaskSpec(pattern="random", coverage=coverage, seed=seed))
    return np.where(mask, stack, 0.0).astype(np.float32), mask


def _run(sparse: np.ndarray, mask: np.ndarray, method: str = "gan-mse", slices=None, **options):
    """The volume and each finished slice's info, through the volume driver."""
    done: list[SliceDone] = []
    out = run_job(
        reconstruct_volume(sparse, mask, method, options=options, slices=slices),
        on_progress=lambda event: done.append(event.partial) if isinstance(event.partial, SliceDone) else None,
    )
    return out, {d.z: d.info for d in done}


@pytest.fixture(scope="module")
def stack(flyem_crop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eight FlyEM slices (120-127), 128² crops, random 5 % with a mask per slice."""
    return _scan(flyem_crop[:8, 40:168, 60:188])


@pytest.mark.parametrize(
    "options",
    [
        {},  # the default: the ±1-slice weights (the guard keeps them on FlyEM)
        {"weights": "flyem"},  # the 2D weights
        {"keep_scanned": False},
        {"tile": 64, "overlap": 16},  # tiles of one slice batched
    ],
    ids=["context1", "2d", "keep_scanned_off", "tiles"],
)
def test_batches_equal_one_slice_at_a_time(stack, options) -> None:
    sparse, mask = stack
    one, infos_one = _run(sparse, mask, batch=1, **options)
    with limited_threads(2):  # the inputs of a group are filled in two threads
        four, infos_four = _run(sparse, mask, batch=4, **options)
    assert np.abs(one - four).max() < TOLERANCE
    assert infos_one == infos_four and sorted(infos_four) == list(range(8))
    expected = "gan_flyem.safetensors" if options.get("weights") == "flyem" else "gan_flyem_context1.safetensors"
    assert {info["weights"] for info in infos_four.values()} == {expected}
    if options.get("keep_scanned", True):
        np.testing.assert_array_equal(four[mask], sparse[mask])
    else:
        assert np.abs(four[mask] - sparse[mask]).max() > 0  # the network's values, not the measured ones


def test_augment_in_batches(stack) -> None:
    sparse, mask = stack
    one, _ = _run(sparse[:3, :64, :64], mask[:3, :64, :64], batch=1, augment=True)
    three, _ = _run(sparse[:3, :64, :64], mask[:3, :64, :64], batch=3, augment=True)
    plain, _ = _run(sparse[:3, :64, :64], mask[:3, :64, :64], batch=3)
    assert np.abs(one - three).max() < TOLERANCE
    assert np.abs(three - plain).max() > 1e-3  # augment did change the output


def test_the_guard_switches_every_slice_of_a_batch_to_2d(flyem_crop: np.ndarray) -> None:
    sparse, mask = _scan(flyem_crop[::5, :128, :128])  # 50 nm between slices: the ±1 weights do not fit
    one, infos_one = _run(sparse, mask, batch=1)
    four, infos_four = _run(sparse, mask, batch=4)
    assert np.abs(one - four).max() < TOLERANCE
    assert infos_one == infos_four
    assert {info["weights"] for info in infos_four.values()} == {"gan_flyem.safetensors"}
    assert all("do not fit this stack" in info["weights_note"] for info in infos_four.values())
    two_d, _ = _run(sparse, mask, batch=4, weights="flyem")
    assert np.abs(two_d - four).max() < TOLERANCE  # it is the 2D generator's output


def test_slices_without_neighbours_go_to_the_2d_companion_within_a_batch(stack) -> None:
    sparse, mask = stack
    slabs = [
        (sparse[0:3], mask[0:3], 1),
        (sparse[4:5], mask[4:5], 0),
        (sparse[2:5], mask[2:5], 1),
        (sparse[6:8], mask[6:8], 1),
    ]
    method = create("gan-mse", weights="flyem-context1", batch=4)
    results = method.reconstruct_batch(slabs)
    alone = create("gan-mse", weights="flyem-context1", batch=1)
    for (values, known, center), (image, info) in zip(slabs, results, strict=True):
        expected = alone.reconstruct_slice(values, known, center)
        assert np.abs(image - expected).max() < TOLERANCE
        assert info == alone.slice_info()
    assert [info["weights"] for _, info in results] == [
        "gan_flyem_context1.safetensors",
        "gan_flyem.safetensors",  # a lone slice: the card's single_slice_weights
        "gan_flyem_context1.safetensors",
        "gan_flyem_context1.safetensors",  # a slab clipped at the stack's end still has a neighbour
    ]
    assert method.slice_info()["weights"] == "gan_flyem_context1.safetensors"  # the last slice's
    method.close()
    alone.close()


def test_slice_groups() -> None:
    method = create("gan-mse", batch=3, weights="flyem-context1")
    assert method.slice_groups(list(range(8))) == [[0, 1, 2], [3, 4, 5], [6, 7]]
    assert method.slice_groups([2, 5, 9]) == [[2, 5, 9]]
    assert create("gan-mse", batch=1).slice_groups([4, 5]) == [[4], [5]]
    big = np.zeros((3, 600, 600), np.float32)
    method.prepare(big, big > 0, [0, 1, 2])  # slices bigger than a tile: one slice per group, its tiles batched
    assert method.slice_groups([0, 1, 2]) == [[0], [1], [2]]


def test_options_are_checked() -> None:
    with pytest.raises(ValueError, match=r"batch must be in \[1, inf\)"):
        create("gan-mse", batch=0)
    with pytest.raises(ValueError, match="precision"):
        create("gan-mse", precision="half")
    with pytest.raises(ValueError, match="batch must be a whole number"):
        create("gan-mse", batch=2.5)
    method = create("gan", batch=16, precision="bfloat16")
    assert method.settings.batch == 16 and method.autocast_dtype() is torch.bfloat16
    default = create("gan-mse")
    assert default.autocast_dtype() is None and default.batch == 1  # auto: float32, one slice a pass on the CPU


def test_lower_precision_stays_close(stack, flyem_crop: np.ndarray) -> None:
    sparse, mask = stack
    full, _ = _run(sparse[:3], mask[:3], batch=3)
    half, _ = _run(sparse[:3], mask[:3], batch=3, precision="float16")
    reference = flyem_crop[:3, 40:168, 60:188]
    assert 0 < np.abs(half - full).max() < 5e-3
    assert abs(psnr(reference, half) - psnr(reference, full)) < 0.01


class _SmallGPU(torch.nn.Module):
    """The generator on a device that holds only ``limit`` slices per pass: bigger passes raise CUDA's
    out-of-memory error (a stand-in for a full GPU; no CUDA needed)."""

    def __init__(self, net: torch.nn.Module, limit: int) -> None:
        super().__init__()
        self.net, self.limit, self.config = net, limit, net.config
        self.passes: list[int] = []

    def forward(self, x: torch.Tensor):  # type: ignore[no-untyped-def]
        if x.shape[0] > self.limit:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        self.passes.append(int(x.shape[0]))
        return self.net(x)


def test_out_of_memory_halves_the_batch(stack) -> None:
    sparse, mask = stack
    method = create("gan-mse", batch=8)
    method.net = _SmallGPU(method.net, limit=3)
    with pytest.warns(RuntimeWarning, match="ran out of memory; going on with batch=2"):
        out, _ = _run(sparse, mask, method)
    assert method.batch == 2 and method.net.passes == [2, 2, 2, 2]
    expected, _ = _run(sparse, mask, batch=8)
    assert np.abs(out - expected).max() < TOLERANCE
    method = create("gan-mse", batch=2)
    method.net = _SmallGPU(method.net, limit=0)  # not even one slice fits (and the CPU cannot do better)
    with pytest.warns(RuntimeWarning, match="batch=1"), pytest.raises(torch.cuda.OutOfMemoryError):
        method.reconstruct_slice(sparse[:3], mask[:3], 1)


def test_the_nearest_fill_equals_the_classical_one(flyem_slice125: np.ndarray) -> None:
    mask = np.random.default_rng(4).random(flyem_slice125.shape) < 0.03
    for values in (np.where(mask, flyem_slice125, 0.0), np.where(mask, 1.3 * flyem_slice125 - 0.1, 0.0)):
        planes = filled_input(values, mask, "nearest")
        np.testing.assert_array_equal(planes[0], fill_nearest(values, mask))  # scanned values kept even outside [0, 1]
        np.testing.assert_array_equal(planes[1], mask)
