"""The volume driver with methods that take several slices at once (``slice_groups`` + ``reconstruct_batch_job``)."""

from __future__ import annotations

from collections.abc import Generator

import numpy as np
import pytest

from napari_sparse_sem.recon import FitPreview, Reconstructor, SliceDone, reconstruct_volume
from napari_sparse_sem.recon.interp import fill_linear
from napari_sparse_sem.runtime import Progress, run_job


class Grouped(Reconstructor):
    """A real (tiny) batch method: linear on each centre slice, groups of ``size`` interleaved like a batched DIP
    (runs of neighbouring slices side by side), recording each group it is handed."""

    name = "grouped"

    def __init__(self, size: int, context: int = 0, previews: int = 0, bad_groups: bool = False) -> None:
        super().__init__()
        self.size, self.context, self.previews, self.bad_groups = size, context, previews, bad_groups
        self.groups: list[list[tuple[int, int]]] = []  # per group: (slab depth, centre) per slice

    def slice_groups(self, slices: list[int]) -> list[list[int]]:
        if self.bad_groups:
            return [slices[:-1]]  # the last slice is missing
        runs = np.array_split(np.asarray(slices), self.size)
        length = max(len(run) for run in runs)
        return [[int(run[k]) for run in runs if k < len(run)] for k in range(length)]

    def reconstruct_batch_job(self, slabs) -> Generator[Progress, None, list]:
        self.groups.append([(values.shape[0], center) for values, _, center in slabs])
        for step in range(self.previews):
            image = np.zeros(slabs[-1][0].shape[1:], np.float32)
            yield Progress(step, self.previews, "fitting", FitPreview(image, step, self.previews, z=len(slabs) - 1))
        return [
            (fill_linear(values[center], known[center]), {"group_size": len(slabs), "position": i})
            for i, (values, known, center) in enumerate(slabs)
        ]


@pytest.fixture(scope="module")
def acquisition(flyem_crop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    volume = flyem_crop[:10]
    mask = np.random.default_rng(2).random(volume.shape) < 0.05
    return np.where(mask, volume, 0).astype(np.float32), mask


def drain(job) -> tuple[list[Progress], object]:
    """Every event of a job and its result."""
    events: list[Progress] = []
    return events, run_job(job, events.append)


def test_groups_give_the_same_volume_as_one_slice_at_a_time(acquisition) -> None:
    sparse, mask = acquisition
    method = Grouped(size=3, context=1)
    events, out = drain(reconstruct_volume(sparse, mask, method))
    assert [(depth, c) for depth, c in method.groups[0]] == [(2, 0), (3, 1), (3, 1)]  # the slab at z=0 is clipped
    assert [len(group) for group in method.groups] == [3, 3, 3, 1]  # runs of 4, 3, 3 slices side by side
    done = [e.partial for e in events if isinstance(e.partial, SliceDone)]
    assert sorted(d.z for d in done) == list(range(10))
    assert [d.z for d in done][:3] == [0, 4, 7]  # the first group: the first slice of each run
    assert [e.step for e in events] == list(range(1, 11)) and all(e.total == 10 for e in events)
    for d in done:
        np.testing.assert_array_equal(out[d.z], fill_linear(sparse[d.z], mask[d.z]))
        np.testing.assert_array_equal(d.image, out[d.z])
        assert d.info["group_size"] in (1, 3)
    assert [d.info["position"] for d in done[:3]] == [0, 1, 2]  # each slice keeps its own info


def test_previews_name_the_slice_of_the_group(acquisition) -> None:
    sparse, mask = acquisition
    events, _ = drain(reconstruct_volume(sparse, mask, Grouped(size=2, previews=2), slices=[2, 3, 6, 7]))
    previews = [e.partial for e in events if isinstance(e.partial, FitPreview)]
    assert [p.z for p in previews] == [6, 6, 7, 7]  # index 1 of groups [2, 6] and [3, 7]
    assert events[0].message.startswith("slices 2, 6: ")


def test_a_group_that_misses_a_slice_is_an_error(acquisition) -> None:
    sparse, mask = acquisition
    with pytest.raises(RuntimeError, match="grouped the slices wrongly"):
        drain(reconstruct_volume(sparse, mask, Grouped(size=2, bad_groups=True)))


def test_closing_keeps_the_finished_groups(acquisition) -> None:
    sparse, mask = acquisition
    out = np.zeros_like(sparse)
    job = reconstruct_volume(sparse, mask, Grouped(size=5), out=out)
    finished = [next(job).partial.z for _ in range(5)]  # the first group: one slice of each run
    job.close()
    assert finished == [0, 2, 4, 6, 8]
    for z in range(10):
        assert out[z].any() == (z in finished)


class CountingArray:
    """A read-only (z, y, x) array that counts how often each slice is read (like a lazy zarr input)."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.shape, self.dtype, self.ndim = data, data.shape, data.dtype, data.ndim
        self.reads = np.zeros(data.shape[0], int)

    def __getitem__(self, z: int) -> np.ndarray:
        self.reads[z] += 1
        return self.data[z]


def test_interleaved_groups_read_each_slice_about_once(acquisition) -> None:
    sparse, mask = acquisition
    lazy = CountingArray(sparse)
    _, out = drain(reconstruct_volume(lazy, mask, Grouped(size=3, context=1)))
    assert lazy.reads.min() == 1 and lazy.reads.max() <= 2  # the windows of a group are kept together (not 3 reads)
    assert lazy.reads.sum() <= 12
    for z in range(10):
        np.testing.assert_array_equal(out[z], fill_linear(sparse[z], mask[z]))
