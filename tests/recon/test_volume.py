"""The volume driver: slab extraction, progress and partial results, stopping, lazy arrays, input validation."""

from __future__ import annotations

from collections.abc import Generator

import dask.array as da
import numpy as np
import pytest
import zarr
from skimage.metrics import peak_signal_noise_ratio

from napari_sparse_sem.recon import Reconstructor, SliceDone, create, reconstruct_volume
from napari_sparse_sem.recon.interp import fill_linear
from napari_sparse_sem.recon.interp3d import fill_linear3d
from napari_sparse_sem.runtime import Cancelled, Progress, run_job


class Recording(Reconstructor):
    """A real (tiny) method: linear on the centre slice, recording what the driver hands it."""

    name = "recording"

    def __init__(self, context: int = 0, inner_steps: int = 0) -> None:
        super().__init__()
        self.context = context
        self.inner_steps = inner_steps
        self.slabs: list[tuple[int, int]] = []  # (slab depth, centre)
        self.closed = 0

    def reconstruct_slice(self, sparse: np.ndarray, mask: np.ndarray, center: int) -> np.ndarray:
        self.slabs.append((sparse.shape[0], center))
        return fill_linear(sparse[center], mask[center])

    def reconstruct_slice_job(self, sparse, mask, center) -> Generator[Progress, None, np.ndarray]:
        for step in range(self.inner_steps):
            yield Progress(step + 1, self.inner_steps, f"iteration {step + 1}", partial=("preview", step))
        return self.reconstruct_slice(sparse, mask, center)

    def close(self) -> None:
        self.closed += 1


@pytest.fixture(scope="module")
def acquisition(flyem_crop: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The first 8 crop slices at 5 % random, per-slice masks."""
    volume = flyem_crop[:8]
    mask = np.random.default_rng(1).random(volume.shape) < 0.05
    return np.where(mask, volume, 0).astype(np.float32), mask


def drain(job) -> tuple[list[Progress], object]:
    events = []
    while True:
        try:
            events.append(next(job))
        except StopIteration as stop:
            return events, stop.value


def test_linear_volume_progress_and_result(flyem_crop: np.ndarray, acquisition) -> None:
    sparse, mask = acquisition
    sparse_copy, mask_copy = sparse.copy(), mask.copy()
    events, out = drain(reconstruct_volume(sparse, mask, "linear"))
    assert [e.step for e in events] == list(range(1, 9)) and all(e.total == 8 for e in events)
    assert [e.partial.z for e in events] == list(range(8))
    assert all(isinstance(e.partial, SliceDone) and e.partial.seconds > 0 for e in events)
    assert events[3].message.startswith("slice 3: ")
    assert out.shape == sparse.shape and out.dtype == np.float32
    for z in range(8):
        np.testing.assert_array_equal(out[z], fill_linear(sparse[z], mask[z]))
        np.testing.assert_array_equal(events[z].partial.image, out[z])
    db = peak_signal_noise_ratio(flyem_crop[:8], out, data_range=1.0)
    assert db > 24.0
    np.testing.assert_array_equal(sparse, sparse_copy)  # inputs untouched
    np.testing.assert_array_equal(mask, mask_copy)


def test_slabs_are_clipped_at_the_ends(acquisition) -> None:
    sparse, mask = acquisition
    method = Recording(context=2)
    drain(reconstruct_volume(sparse, mask, method))
    assert method.slabs == [(3, 0), (4, 1), (5, 2), (5, 2), (5, 2), (5, 2), (4, 2), (3, 2)]
    assert method.closed == 1


def test_linear3d_through_the_driver(acquisition) -> None:
    sparse, mask = acquisition
    events, out = drain(reconstruct_volume(sparse, mask, "linear3d", options={"context": 2}, slices=[6, 1]))
    assert [e.partial.z for e in events] == [1, 6]  # increasing order
    np.testing.assert_array_equal(out[1], fill_linear3d(sparse[0:4], mask[0:4], 1))
    np.testing.assert_array_equal(out[6], fill_linear3d(sparse[4:8], mask[4:8], 2))
    assert not out[[0, 2, 3, 4, 5, 7]].any()  # slices not asked for stay 0


def test_inner_events_are_passed_through(acquisition) -> None:
    sparse, mask = acquisition
    events, _ = drain(reconstruct_volume(sparse[:3], mask[:3], Recording(inner_steps=2)))
    assert len(events) == 9
    inner = [e for e in events if not isinstance(e.partial, SliceDone)]
    assert [e.partial for e in inner[:2]] == [("preview", 0), ("preview", 1)]
    assert [e.step for e in events[:3]] == [0, 0, 1] and inner[0].message == "slice 0: iteration 1"


def test_close_keeps_finished_slices(acquisition) -> None:
    sparse, mask = acquisition
    out = np.zeros(sparse.shape, dtype=np.float32)
    method = Recording()
    job = reconstruct_volume(sparse, mask, method, out=out)
    for _ in range(3):
        next(job)
    job.close()
    assert method.closed == 1
    for z in range(3):
        np.testing.assert_array_equal(out[z], fill_linear(sparse[z], mask[z]))
    assert not out[3:].any()


def test_run_job_should_stop_keeps_finished_slices(acquisition) -> None:
    sparse, mask = acquisition
    out = np.zeros(sparse.shape, dtype=np.float32)
    seen: list[Progress] = []
    with pytest.raises(Cancelled):
        run_job(reconstruct_volume(sparse, mask, "nearest", out=out), seen.append, lambda: len(seen) >= 2)
    assert out[:2].any(axis=(1, 2)).all() and not out[2:].any()


def test_lazy_inputs_and_zarr_output(acquisition) -> None:
    sparse, mask = acquisition
    lazy_sparse = da.from_array(sparse, chunks=(1, 125, 125))
    lazy_mask = da.from_array(mask, chunks=(1, 250, 250))
    out = zarr.zeros(shape=sparse.shape, dtype="float32", chunks=(1, 250, 250))
    result = run_job(reconstruct_volume(lazy_sparse, lazy_mask, "linear", out=out, slices=range(4)))
    assert result is out
    for z in range(4):
        np.testing.assert_array_equal(out[z], fill_linear(sparse[z], mask[z]))
    bad = sparse.copy()
    bad[2, 5, 5] = np.nan
    job = reconstruct_volume(da.from_array(bad, chunks=(1, 250, 250)), lazy_mask, "linear")
    with pytest.raises(ValueError, match="slice 2 of sparse contains NaN"):
        drain(job)


def test_2d_input_gives_2d_output(acquisition) -> None:
    sparse, mask = acquisition
    events, out = drain(reconstruct_volume(sparse[4], mask[4], "linear"))
    assert out.shape == sparse.shape[1:] and len(events) == 1
    np.testing.assert_array_equal(out, fill_linear(sparse[4], mask[4]))


def test_bad_inputs_are_clear_errors(acquisition) -> None:
    sparse, mask = acquisition

    def run(*args, **kwargs):
        return drain(reconstruct_volume(*args, **kwargs))

    with pytest.raises(ValueError, match="same shape"):
        run(sparse, mask[:, :100], "linear")
    with pytest.raises(ValueError, match=r"2D .* or a 3D"):
        run(sparse[None], mask[None], "linear")
    for value in (np.nan, np.inf):
        bad = sparse.copy()
        bad[3, 0, 0] = value
        with pytest.raises(ValueError, match="NaN or infinite"):
            run(bad, mask, "linear")
    with pytest.raises(ValueError, match="outside \\[0, 1\\]"):
        run(sparse * 255, mask, "linear")
    with pytest.raises(ValueError, match="floating point"):
        run((sparse * 255).astype(np.uint8), mask, "linear")
    empty = mask.copy()
    empty[5] = False
    with pytest.raises(ValueError, match="slice 5 has no scanned pixels; check the mask"):
        run(sparse, empty, "linear")
    run(sparse, empty, "linear", slices=[4])  # fine when that slice is not asked for
    with pytest.raises(ValueError, match=r"slice indices \[8, -1\] are out of range"):
        run(sparse, mask, "linear", slices=[0, 8, -1])
    with pytest.raises(ValueError, match="out has shape"):
        run(sparse, mask, "linear", out=np.zeros((2, 3, 4), np.float32))
    with pytest.raises(ValueError, match="unknown reconstruction method"):
        run(sparse, mask, "magic")
    with pytest.raises(ValueError, match="already a Reconstructor"):
        run(sparse, mask, create("linear"), options={"context": 1})


def test_method_errors_still_close_the_reconstructor(acquisition) -> None:
    sparse, mask = acquisition

    class Failing(Recording):
        def reconstruct_slice(self, sparse, mask, center):
            raise RuntimeError("boom")

    method = Failing()
    with pytest.raises(RuntimeError, match="boom"):
        drain(reconstruct_volume(sparse, mask, method))
    assert method.closed == 1


def test_non_finite_results_stop_the_run_and_are_not_kept(acquisition) -> None:
    """A broken network (NaN weights, say) must not leave NaN or zeros in a result that looks finished."""
    sparse, mask = acquisition

    class Broken(Recording):
        def reconstruct_slice(self, sparse, mask, center):
            image = super().reconstruct_slice(sparse, mask, center)
            return np.full_like(image, np.nan) if len(self.slabs) > 2 else image

    out = np.zeros(sparse.shape, np.float32)
    method = Broken()
    with pytest.raises(ValueError, match="NaN/infinite pixels"):
        drain(reconstruct_volume(sparse, mask, method, out=out))
    assert out[:2].any(axis=(1, 2)).all() and not out[2:].any()  # the finished slices stay, the broken one is not kept
    assert method.closed == 1
