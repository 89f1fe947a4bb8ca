"""Parameter models of masks and acquisitions (strict, with the faces' metadata), the acquisition record (also read
from the keys written before it existed) and the slice-by-slice simulation job."""

from __future__ import annotations

import numpy as np
import pytest

from napari_sparse_sem.params import fields_of
from napari_sparse_sem.runtime import run_job
from napari_sparse_sem.sampling import (
    PATTERNS,
    AcquisitionRecord,
    AcquisitionSpec,
    MaskSpec,
    make_masks,
    simulate_acquisition,
    simulate_job,
)


def test_mask_spec_from_dict_is_strict_and_round_trips() -> None:
    with pytest.raises(ValueError, match=r"unknown MaskSpec field\(s\) \['colour'\]"):
        MaskSpec.from_dict({"pattern": "grid", "colour": "red"})
    with pytest.raises(ValueError, match="unknown AcquisitionSpec field"):
        AcquisitionSpec.from_dict({"dwell": 3.0})
    spec = MaskSpec(pattern="hexgrid", coverage=0.125, per_slice=False, seed=None, jitter=0.2)
    assert MaskSpec.from_dict(spec.to_dict()) == spec
    old = {k: v for k, v in spec.to_dict().items() if k != "schema_version"}  # saved before schema versions
    assert MaskSpec.from_dict(old) == spec
    assert MaskSpec().coverage == 0.05  # 5 % everywhere


def test_specs_declare_what_the_faces_show() -> None:
    fields = {view.name: view.info for view in fields_of(MaskSpec)}
    assert fields["pattern"].choices == PATTERNS and fields["coverage"].percent
    assert all(info.help for info in fields.values())
    assert all(view.info.help for view in fields_of(AcquisitionSpec))
    with pytest.raises(ValueError, match="unknown mask pattern"):
        MaskSpec(pattern="zigzag")
    with pytest.raises(ValueError, match=r"coverage must be in \(0, 1\]"):
        MaskSpec(coverage=5.0)
    with pytest.raises(ValueError, match="lines_mode"):
        MaskSpec(lines_mode="diagonal")
    with pytest.raises(ValueError, match="dose must be a positive number"):
        AcquisitionSpec(dose=0.0)
    assert MaskSpec(coverage=np.float32(0.25), seed=np.int64(3)).to_dict()["seed"] == 3


def test_record_reads_the_keys_written_before_it() -> None:
    mask = {"pattern": "random", "coverage": 0.1, "per_slice": True, "seed": 0}
    acq = {"dwell_us": 2.0, "settle_us": 1.0, "move_us_per_px": 0.001, "dose": None, "seed": 0}
    cli = {
        "kind": "sparse",
        "source": "crop.tif",
        "slices": [2, 6],
        "roi": [0, 64, 0, 64],
        "mask_spec": mask,
        "acquisition": acq,
        "coverage": 0.099,
        "value_range": [0.0, 255.0],
        "acquisition_s": 0.5,
        "dense_acquisition_s": 4.0,
    }
    record = AcquisitionRecord.from_metadata(cli)
    assert record.mask_spec == MaskSpec(**mask) and record.acquisition.dwell_us == 2.0
    assert record.scan_s == 0.5 and record.dense_s == 4.0 and record.speedup == 8.0
    assert record.stored_range == (0.0, 255.0)  # the CLI stored the source's units
    assert record.source == "crop.tif" and record.slices == (2, 6) and record.roi == (0, 64, 0, 64)

    widget = {"kind": "sparse", "source_layer": "flyem", "mask_spec": mask, "acquisition_spec": acq, "time_s": 0.5}
    widget |= {"dense_time_s": 4.0, "value_range": [0.0, 255.0], "coverage": 0.1, "path_length_px": 900.0}
    record = AcquisitionRecord.from_metadata(widget)
    assert record.stored_range == (0.0, 1.0) and record.source == "flyem" and record.path_length_px == 900.0
    assert AcquisitionRecord.from_metadata(record.to_metadata()) == record
    assert AcquisitionRecord.from_metadata({"kind": "reconstruction"}) is None
    with pytest.raises(ValueError, match=r"acquisition record is unreadable.*colour"):
        AcquisitionRecord.from_metadata({"acquisition_record": {"colour": 1}})


@pytest.mark.parametrize("per_slice", [True, False])
def test_simulate_job_equals_the_whole_stack_at_once(flyem_crop: np.ndarray, per_slice: bool) -> None:
    dense = flyem_crop[:3, :80, :96]
    spec = MaskSpec(pattern="bluenoise", coverage=0.1, per_slice=per_slice, seed=3)
    acq = AcquisitionSpec(dose=25.0, seed=5)
    events = []
    scan = run_job(simulate_job(dense, spec, acq, z_offset=10), events.append)
    masks, _ = make_masks(dense.shape, spec)
    np.testing.assert_array_equal(scan.mask, masks)
    np.testing.assert_array_equal(scan.sparse, simulate_acquisition(dense, masks, acq))
    assert [e.message for e in events] == ["slice 10", "slice 11", "slice 12"]
    assert scan.coverage == pytest.approx(masks.mean(axis=(1, 2)))
    record = scan.record("crop", (0.0, 255.0), slices=(10, 13))
    assert record.n_slices == 3 and record.scan_s == pytest.approx(scan.scan_s.sum()) and 0 < record.scan_s
    assert record.speedup > 5  # 10 % of the pixels, with jumps between them

    # Into uint8 in the source's units (what the CLI writes): the same values, rounded.
    stored = np.zeros(dense.shape, np.uint8)
    again = run_job(simulate_job(dense, spec, acq, sparse_out=stored, stored_range=(0.0, 255.0)))
    assert again.sparse is stored and again.record("crop", (0.0, 255.0)).stored_range == (0.0, 255.0)
    np.testing.assert_allclose(stored / 255.0, scan.sparse, atol=0.5 / 255 + 1e-6)
