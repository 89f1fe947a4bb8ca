"""The comparison job and its report, on crops of the real FlyEM data."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from matplotlib.image import imread

from napari_sparse_sem.compare import (
    RECORD_KEYS,
    CompareRun,
    CompareSpec,
    compare_job,
    region_bounds,
    result_from_runs,
    summary,
)
from napari_sparse_sem.compare.report import REPORT_FILES, write_report
from napari_sparse_sem.io.volume import Volume
from napari_sparse_sem.runtime import Progress, run_job
from napari_sparse_sem.sampling.spec import PATTERNS, AcquisitionSpec


def _drive(job):
    events: list[Progress] = []
    result = run_job(job, events.append)
    return result, events


# --------------------------------------------------------------------------------------------------------- spec


def test_spec_validation_messages() -> None:
    with pytest.raises(ValueError, match=r"unknown mask pattern.*'zigzag'.*random"):
        CompareSpec(patterns=["zigzag"])
    with pytest.raises(ValueError, match=r"unknown reconstruction method.*'magic'.*linear"):
        CompareSpec(methods=["magic"])
    for bad in (0.0, 1.5, -0.1, float("nan")):
        with pytest.raises(ValueError, match=r"coverage must be in \(0, 1\]"):
            CompareSpec(coverages=[bad])
    with pytest.raises(ValueError, match="patterns must not be empty"):
        CompareSpec(patterns=[])
    with pytest.raises(ValueError, match="methods must not be empty"):
        CompareSpec(methods=[])
    with pytest.raises(ValueError, match="0 <= A < B"):
        CompareSpec(slices=(5, 5))
    with pytest.raises(ValueError, match="method_options given for"):
        CompareSpec(methods=["linear"], method_options={"linear3d": {"context": 2}})
    with pytest.raises(ValueError, match="dose"):
        CompareSpec(dose=-1)
    assert CompareSpec(patterns=["all"]).patterns == list(PATTERNS)
    spec = CompareSpec(patterns="random, grid", methods="nearest,linear", coverages=0.1)
    assert spec.patterns == ["random", "grid"] and spec.methods == ["nearest", "linear"] and spec.coverages == [0.1]
    with pytest.raises(ValueError, match=r"'linear3d' has no option\(s\) \['ctx'\]; its options are"):
        CompareSpec(methods=["linear3d"], method_options={"linear3d": {"ctx": 2}})


def test_validate_for_names_the_image_size() -> None:
    spec = CompareSpec(roi=(0, 300, 0, 100))
    with pytest.raises(ValueError, match=r"ROI 0:300,0:100 lies outside the image of size 250x250"):
        spec.validate_for((32, 250, 250))
    with pytest.raises(ValueError, match=r"slices 30:40 lie outside the volume of 32 slices"):
        CompareSpec(slices=(30, 40)).validate_for((32, 250, 250))
    assert region_bounds((32, 250, 250), (3, 5), (10, 50, 20, 90)) == (3, 5, 10, 50, 20, 90)
    assert region_bounds((250, 200), None, None) == (0, 1, 0, 250, 0, 200)


def test_spec_round_trips_through_json() -> None:
    spec = CompareSpec(
        patterns=["grid", "spiral"],
        coverages=[0.05, 0.2],
        methods=["linear", "linear3d"],
        slices=(3, 7),
        roi=(0, 64, 10, 74),
        seed=4,
        dose=20.0,
        method_options={"linear3d": {"context": 2}},
        acquisition=AcquisitionSpec(dwell_us=1.0),
    )
    again = CompareSpec.from_dict(json.loads(json.dumps(spec.to_dict())))
    assert again == spec
    assert again.acquisition_spec().dose == 20.0 and again.acquisition_spec().dwell_us == 1.0
    assert again.context_for("linear3d") == 2 and again.context_for("linear") == 0
    with pytest.raises(ValueError, match=r"unknown comparison field.*covrage"):
        CompareSpec.from_dict({"covrage": [0.1]})


# ---------------------------------------------------------------------------------------------------------- job


@pytest.fixture(scope="module")
def small_result(flyem_crop: np.ndarray):
    """random + grid at 10 % × nearest + linear on slices 5:7 of the crop, ROI 128x128."""
    volume = Volume(flyem_crop, voxel_size=(10.0, 10.0, 10.0), name="flyem")
    spec = CompareSpec(
        patterns=["random", "grid"],
        coverages=[0.1],
        methods=["nearest", "linear"],
        slices=(5, 7),
        roi=(40, 168, 60, 188),
    )
    return _drive(compare_job(volume, spec))


def test_compare_records_have_every_field(small_result) -> None:
    result, _ = small_result
    assert len(result.records) == 2 * 2 * 2  # patterns × methods × slices
    for record in result.records:
        assert tuple(record) == RECORD_KEYS
        assert record["slice"] in (5, 6)
        assert record["coverage_requested"] == 0.1
        assert abs(record["coverage"] - 0.1) < 0.015
        assert 15 < record["psnr"] < 40 and 0.2 < record["ssim"] <= 1
        assert record["psnr_unscanned"] < record["psnr"]  # the scanned pixels are exact
        assert record["seconds"] >= 0 and record["path_length_px"] > 0
        assert 0 < record["acquisition_s"] < record["dense_acquisition_s"]
    by = {(r["pattern"], r["method"], r["slice"]): r["psnr"] for r in result.records}
    for pattern in ("random", "grid"):
        for z in (5, 6):
            assert by[(pattern, "linear", z)] > by[(pattern, "nearest", z)]
    assert result.slices == (5, 7) and result.roi == (40, 168, 60, 188)
    assert result.source["voxel_size"] == [10.0, 10.0, 10.0]


def test_compare_runs_hold_arrays_and_progress_counts_every_slice(small_result, flyem_crop: np.ndarray) -> None:
    result, events = small_result
    reference = flyem_crop[5:7, 40:168, 60:188]
    np.testing.assert_allclose(result.reference, reference, atol=1e-6)
    assert [r.label for r in result.runs] == [
        "random 10% · nearest",
        "random 10% · linear",
        "grid 10% · nearest",
        "grid 10% · linear",
    ]
    for run in result.runs:
        assert run.mask.shape == run.recon.shape == run.error.shape == run.sparse.shape == (2, 128, 128)
        assert not run.sparse[~run.mask].any()
        np.testing.assert_allclose(run.error, np.abs(run.recon - reference), atol=1e-6)
    # both methods of one pattern see the very same acquisition
    assert result.runs[0].mask is result.runs[1].mask
    steps = [e.step for e in events]
    assert steps == sorted(steps) and events[-1].step == events[-1].total == 8
    partials = [e.partial for e in events if e.partial is not None]
    assert all(isinstance(p, CompareRun) for p in partials) and len(partials) == 4


def test_summary_means(small_result) -> None:
    result, _ = small_result
    rows = summary(result.records)
    assert len(rows) == 4 and all(r["n_slices"] == 2 for r in rows)
    first = [r["psnr"] for r in result.records if (r["pattern"], r["method"]) == ("random", "nearest")]
    assert rows[0]["psnr"] == pytest.approx(np.mean(first))


def test_closing_early_stops_and_keeps_finished_runs(flyem_crop: np.ndarray, tmp_path) -> None:
    spec = CompareSpec(patterns=["random", "spiral"], coverages=[0.1], methods=["nearest"], slices=(0, 1))
    job = compare_job(flyem_crop, spec)
    finished = []
    for event in job:
        if event.partial is not None:
            finished.append(event.partial)
            break
    job.close()
    with pytest.raises(StopIteration):
        next(job)
    assert len(finished) == 1 and finished[0].pattern == "random"
    partial = result_from_runs(finished, spec)
    assert len(partial.records) == 1 and partial.records[0]["slice"] == 0
    paths = write_report(partial, tmp_path / "partial")
    assert json.loads(paths["params"].read_text())["complete"] is False


def test_3d_context_is_read_but_only_selected_slices_scored(flyem_crop: np.ndarray) -> None:
    roi = (100, 164, 100, 164)
    with_3d = CompareSpec(
        patterns=["random"],
        coverages=[0.1],
        methods=["linear", "linear3d"],
        slices=(10, 12),
        roi=roi,
        method_options={"linear3d": {"context": 2}},
    )
    only_2d = CompareSpec(patterns=["random"], coverages=[0.1], methods=["linear"], slices=(10, 12), roi=roi)
    result, _ = _drive(compare_job(flyem_crop, with_3d))
    plain, _ = _drive(compare_job(flyem_crop, only_2d))
    assert sorted({r["slice"] for r in result.records}) == [10, 11]
    assert len(result.records) == 4
    # the selected slices' masks and scores do not depend on the context slices that linear3d pulled in
    np.testing.assert_array_equal(result.runs[0].mask, plain.runs[0].mask)
    assert result.records[0]["psnr"] == pytest.approx(plain.records[0]["psnr"])
    lin3d = [r for r in result.records if r["method"] == "linear3d"]
    assert all(math.isfinite(r["psnr"]) and r["psnr"] > 18 for r in lin3d)


def test_dose_adds_noise(flyem_crop: np.ndarray) -> None:
    base = {"patterns": ["random"], "coverages": [0.2], "methods": ["nearest"], "slices": (0, 1), "roi": (0, 64, 0, 64)}
    clean, _ = _drive(compare_job(flyem_crop, CompareSpec(**base)))
    noisy, _ = _drive(compare_job(flyem_crop, CompareSpec(**base, dose=5.0)))
    np.testing.assert_array_equal(clean.runs[0].mask, noisy.runs[0].mask)
    scanned = clean.runs[0].mask
    assert np.array_equal(clean.runs[0].sparse[scanned], clean.reference[scanned])
    assert not np.allclose(noisy.runs[0].sparse[scanned], noisy.reference[scanned], atol=0.02)
    assert noisy.records[0]["psnr"] < clean.records[0]["psnr"] - 3


# ------------------------------------------------------------------------------------------------------- report


def test_report_files_and_non_finite_values(small_result, flyem_crop: np.ndarray, tmp_path) -> None:
    result, _ = small_result
    paths = write_report(result, tmp_path / "report")
    assert set(paths) == set(REPORT_FILES) and all(p.exists() for p in paths.values())
    records = json.loads(paths["metrics_json"].read_text())
    assert len(records) == 8 and set(records[0]) == set(RECORD_KEYS)
    header = paths["metrics_csv"].read_text().splitlines()[0].split(",")
    assert header == list(RECORD_KEYS)
    params = json.loads(paths["params"].read_text())
    assert params["spec"]["patterns"] == ["random", "grid"] and params["version"] and params["date"]
    assert params["complete"] is True
    image = imread(paths["figure"])
    assert image.shape[0] > 600 and image.shape[1] > 800 and image[..., :3].std() > 0.05
    with pytest.raises(FileExistsError, match=r"metrics\.json.*--overwrite"):
        write_report(result, tmp_path / "report")
    write_report(result, tmp_path / "report", overwrite=True)

    # full coverage: the reconstruction is exact (PSNR inf) and there is no unscanned pixel (NaN) → JSON null
    full, _ = _drive(
        compare_job(
            flyem_crop,
            CompareSpec(patterns=["random"], coverages=[1.0], methods=["linear"], slices=(0, 1), roi=(0, 32, 0, 32)),
        )
    )
    assert full.records[0]["psnr"] == math.inf and math.isnan(full.records[0]["psnr_unscanned"])
    paths = write_report(full, tmp_path / "full")
    saved = json.loads(paths["metrics_json"].read_text())
    assert saved[0]["psnr"] is None and saved[0]["psnr_unscanned"] is None and saved[0]["ssim"] == 1.0


def test_equal_time_scores_the_dense_scan_and_spreads_its_dose(flyem_crop: np.ndarray) -> None:
    """At equal beam time and a low dose, a 5 % hexgrid scan beats the noisy dense scan by a wide margin."""
    spec = CompareSpec(
        patterns=["hexgrid"], coverages=[0.05], methods=["linear"], slices=(5, 6), dose=10.0, equal_time=True
    )
    assert spec.acquisition_for(0.05).dose == pytest.approx(200.0)
    result = run_job(compare_job(flyem_crop, spec))
    dense = [r for r in result.records if r["pattern"] == "dense"]
    sparse = [r for r in result.records if r["pattern"] == "hexgrid"]
    assert len(dense) == 1 and dense[0]["method"] == "none" and dense[0]["coverage"] == 1.0
    # Measured: dense 13.4 dB, 5 % hexgrid + linear 25.1 dB on FlyEM slice 125 at 10 e-/px.
    assert dense[0]["psnr"] < 16.0
    assert sparse[0]["psnr"] > dense[0]["psnr"] + 8.0


def test_equal_time_needs_a_dose() -> None:
    with pytest.raises(ValueError, match="equal_time needs a dose"):
        CompareSpec(equal_time=True)


def test_figure_shows_each_patterns_best_method(small_result) -> None:
    """The report figure's image rows show, per pattern, the method with the best mean PSNR (the demo figure used to
    show `nearest`, the worst, because it came first)."""
    from napari_sparse_sem.compare.figure import _shown_runs

    result, _ = small_result
    shown = _shown_runs(result)
    assert [run.pattern for run in shown] == list(dict.fromkeys(run.pattern for run in result.runs))
    for run in shown:
        rivals = [r for r in result.runs if r.pattern == run.pattern and r.coverage_requested == run.coverage_requested]
        best = max(rivals, key=lambda r: np.mean([rec["psnr"] for rec in r.records]))
        assert run.method == best.method == "linear"
