"""The Active acquisition widget in a real viewer on FlyEM crops: layers, rescan points, metrics, cancel, export."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
import tifffile
from qtpy.QtWidgets import QMessageBox

from napari_sparse_sem.active.scan import parse_initial
from napari_sparse_sem.sampling.patterns import slice_mask
from napari_sparse_sem.widgets import active as active_module
from napari_sparse_sem.widgets._worker import ERROR_STYLE
from napari_sparse_sem.widgets.active import ALL, EXPORT_ALL, EXPORT_CURRENT, RANGE, ActiveWidget

WHATS = ("initial recon", "true error", "estimated error", "final recon", "|error|", "rescan points")


def _setup(widget: ActiveWidget, layer, initial="lowres:4", budget=10.0, baselines=()) -> None:
    widget.source.value = layer
    widget.initial.value = initial
    widget.budget.value = budget
    widget.estimator.value = "gradient"
    widget.sampler.value = "wdpp"
    widget.recon.value = "linear"
    for pattern, box in widget.baseline_boxes.items():
        box.value = pattern in baselines


def _rescan_count(shape, initial: str, budget: float, z: int) -> int:
    n_initial = int(slice_mask(shape, parse_initial(initial), z).mask.sum())
    return round(budget * shape[0] * shape[1]) - n_initial


def test_run_on_a_slice_range(viewer, sample_layer, small_stack, wait_done, tmp_path):
    before = sample_layer.data.copy()
    widget = ActiveWidget(viewer)
    _setup(widget, sample_layer, baselines=("random", "hexgrid"))
    widget.slice_mode.value = RANGE
    widget.first_slice.value, widget.last_slice.value = 1, 2
    widget.run()
    wait_done(widget.panel)

    names = {what: f"flyem · active lowres:4→10% · {what}" for what in WHATS}
    layers = {what: viewer.layers[name] for what, name in names.items()}
    assert len(viewer.layers) == 1 + len(WHATS)
    reference = small_stack[1:3] / 255.0
    for what in WHATS[:-1]:
        layer = layers[what]
        assert layer.data.shape == (2, 96, 96)
        np.testing.assert_allclose(layer.translate, (30.0, 5.0, -20.0))  # slice 1 of the sample, same x/y
        np.testing.assert_array_equal(layer.scale, sample_layer.scale)
        assert layer.data.any(axis=(1, 2)).all()
    initial, final = layers["initial recon"].data, layers["final recon"].data
    np.testing.assert_allclose(layers["true error"].data, np.abs(reference - initial), atol=1e-5)
    np.testing.assert_allclose(layers["|error|"].data, np.abs(reference - final), atol=1e-5)

    # The rescan points: exactly the budget minus the initial scan per slice, never on an initially scanned pixel.
    points = layers["rescan points"].data
    np.testing.assert_allclose(layers["rescan points"].translate, (30.0, 5.0, -20.0))
    for plane, z in enumerate((1, 2)):
        pts = points[points[:, 0] == plane][:, 1:].astype(int)
        assert len(pts) == _rescan_count((96, 96), "lowres:4", 0.10, z) == 346
        initial_mask = slice_mask((96, 96), parse_initial("lowres:4"), z).mask
        assert not initial_mask[pts[:, 0], pts[:, 1]].any()
        assert len({tuple(p) for p in pts}) == len(pts)

    # Table: initial scan, the active acquisition, the two baselines; final PSNR beats the initial reconstruction's.
    table = widget.table
    assert table.values("scan") == ["initial lowres:4", "wdpp-greedy", "static random", "static hexgrid"]
    psnrs = table.values("psnr")
    assert psnrs[1] > psnrs[0] + 1.0
    assert psnrs[1] == pytest.approx(np.mean([r["psnr"] for r in layers["final recon"].metadata["records"]]))
    assert table.values("coverage")[0] == pytest.approx(1 / 16)
    assert table.values("coverage")[1] == pytest.approx(0.10, abs=1e-4)
    assert all(0.099 < c < 0.101 for c in table.values("coverage")[2:])
    assert all(v is not None for v in table.values("error_correlation")[1:2] + table.values("sampler_seconds")[1:2])
    assert len(widget.plot.axes.lines) == 2  # estimate and oracle sparsification curves
    assert "mean of 2 slices" in widget.plot.axes.get_title()

    # Metadata: the config and the records of both slices (and of the baselines).
    meta = layers["rescan points"].metadata
    assert meta["config"] == widget.config().to_dict()
    assert meta["config"]["initial"] == "lowres:4" and meta["config"]["budget"] == pytest.approx(0.10)
    assert [r["slice"] for r in meta["records"]] == [1, 2] and meta["slices"] == [1, 2]
    assert len(meta["baseline_records"]) == 4 and meta["complete"] is True
    assert "PSNR" in widget.panel.status.text()

    # Export every processed slice of the stack: three files per slice, with the slice in the name.
    files = widget.export_rescan(tmp_path / "plan", EXPORT_ALL)
    assert sorted(f.name for f in files) == sorted(
        f"plan_z{z:04d}{suffix}" for z in (1, 2) for suffix in ("_bitmap.tif", "_points.csv", "_plan.json")
    )
    assert all(f.exists() for f in files)

    # A second run replaces this run's layers; the user's layer is never touched.
    old = list(layers.values())
    widget.slice_mode.value = ALL
    widget.run()
    wait_done(widget.panel)
    assert len(viewer.layers) == 1 + len(WHATS) and all(layer not in viewer.layers for layer in old)
    assert viewer.layers[names["final recon"]].data.shape == (4, 96, 96)
    assert viewer.layers[0] is sample_layer
    np.testing.assert_array_equal(sample_layer.data, before)


def test_cancel_keeps_the_finished_slices(viewer, flyem_crop_uint8, wait_done):
    stack = viewer.add_image(flyem_crop_uint8[:4].copy(), name="stack4")
    widget = ActiveWidget(viewer)
    _setup(widget, stack, baselines=("random", "hexgrid"))
    widget.slice_mode.value = ALL
    widget.run()
    # Cancel as soon as the first slice is reported (full 250² slices take ~0.5 s each).
    worker = widget.panel.worker
    worker.yielded.connect(lambda event: widget.panel.cancel() if event.partial is not None else None)
    wait_done(widget.panel)

    k = len(widget.finished)
    assert 1 <= k < 4
    assert f"cancelled after {k} of 4 slices" in widget.panel.status.text()
    for what in WHATS[:-1]:
        layer = viewer.layers[f"stack4 · active lowres:4→10% · {what}"]
        assert layer.data.shape == (k, 250, 250)
        assert layer.data.any(axis=(1, 2)).all()
        assert layer.metadata["complete"] is False and layer.metadata["slices"] == list(range(k))
    points = viewer.layers["stack4 · active lowres:4→10% · rescan points"].data
    assert len(points) == k * _rescan_count((250, 250), "lowres:4", 0.10, 0)
    assert set(points[:, 0].astype(int)) == set(range(k))
    assert widget.table.rowCount() == 4 and widget.export_button.isEnabled()


def test_bad_parameters_show_an_error_and_start_nothing(viewer, sample_layer, tmp_path):
    widget = ActiveWidget(viewer)
    cases = [
        (lambda: setattr(widget.initial, "value", "lowres:3.5"), "lowres factor must be an integer"),
        (lambda: setattr(widget.initial, "value", "blob:0.1"), "is not PATTERN:VALUE"),
        (lambda: setattr(widget.initial, "value", "random:5"), "coverage must be a fraction"),
        (lambda: setattr(widget.budget, "value", 5.0), "raise the budget"),  # lowres:4 alone is 6.25 %
        (lambda: setattr(widget.budget, "value", 0.0), "budget must be more than 0 %"),
        (
            lambda: (
                setattr(widget.estimator, "value", "unet"),
                setattr(widget.weights, "value", tmp_path / "missing.safetensors"),
            ),
            "is not a file",
        ),
        (lambda: (setattr(widget.slice_mode, "value", RANGE), setattr(widget.last_slice, "value", 9)), "outside"),
    ]
    for prepare, message in cases:
        _setup(widget, sample_layer)
        widget.rounds.value, widget.slice_mode.value = 1, ALL
        prepare()
        widget.run()
        assert not widget.panel.busy
        assert message in widget.panel.status.text()
        assert widget.panel.status.styleSheet() == ERROR_STYLE
        assert len(viewer.layers) == 1
    assert not widget.export_button.isEnabled()


def test_2d_image_export_refuses_to_overwrite(viewer, small_stack, wait_done, tmp_path, monkeypatch):
    image = viewer.add_image(small_stack[3].copy(), name="plane")
    before = image.data.copy()
    widget = ActiveWidget(viewer)
    _setup(widget, image, initial="random:0.05", budget=12.0)
    widget.sampler.value = "topk"
    widget.rounds.value = 2
    widget.run()
    wait_done(widget.panel)

    final = viewer.layers["plane · active random:0.05→12% · final recon"]
    points = viewer.layers["plane · active random:0.05→12% · rescan points"]
    assert final.data.shape == (96, 96) and points.data.shape[1] == 2
    n_rescan = _rescan_count((96, 96), "random:0.05", 0.12, 0)
    assert len(points.data) == n_rescan
    assert len({tuple(c) for c in np.round(points.face_color, 3)}) == 2  # one colour per round
    assert widget.table.values("psnr")[1] > widget.table.values("psnr")[0]
    np.testing.assert_array_equal(image.data, before)

    files = widget.export_rescan(tmp_path / "rescan", EXPORT_CURRENT)
    assert [f.name for f in files] == ["rescan_bitmap.tif", "rescan_points.csv", "rescan_plan.json"]
    bitmap = tifffile.imread(files[0])
    chosen = np.argwhere(bitmap == 255)
    assert len(chosen) == n_rescan
    np.testing.assert_array_equal(np.sort(chosen, axis=0), np.sort(points.data.astype(int), axis=0))
    with open(files[1]) as fh:
        assert len(list(csv.DictReader(fh))) == n_rescan
    plan = json.loads(files[2].read_text())
    assert plan["n_points"] == n_rescan and plan["source_layer"] == "plane"
    assert plan["config"]["initial"] == "random:0.05" and plan["record"]["psnr"] == widget.finished[0].record["psnr"]

    stamp = files[0].stat().st_mtime_ns
    with pytest.raises(FileExistsError, match="already exist"):
        widget.export_rescan(tmp_path / "rescan")
    assert files[0].stat().st_mtime_ns == stamp

    # Through the button: a prefix from the file dialog; the overwrite question answered No, then Yes.
    answers = []
    monkeypatch.setattr(
        active_module.QFileDialog, "getSaveFileName", lambda *a, **k: (str(tmp_path / "rescan.csv"), "")
    )
    monkeypatch.setattr(QMessageBox, "question", lambda *a, **k: answers.pop(0))
    answers.append(QMessageBox.No)
    widget.export_button.click()
    assert "nothing was written" in widget.panel.status.text() and files[0].stat().st_mtime_ns == stamp
    answers.append(QMessageBox.Yes)
    widget.export_button.click()
    assert "rescan plan written: 3 files" in widget.panel.status.text()
    assert files[0].stat().st_mtime_ns != stamp and not answers


def test_parameters_are_remembered_and_fields_follow_choices(viewer, sample_layer, tmp_path):
    weights = tmp_path / "mine.safetensors"
    weights.write_bytes(b"")  # only its path matters here
    widget = ActiveWidget(viewer)
    assert not widget.weights.enabled and widget.sigma.number.enabled is False
    widget.estimator.value = "unet"
    assert widget.weights.enabled
    widget.sigma.auto.value = False
    assert widget.sigma.number.enabled
    widget.sampler.value = "topk"
    assert not widget.mode.enabled and not widget.condition.enabled
    assert widget.options.isHidden()
    widget.recon.value = "dip"
    assert not widget.options.isHidden()
    assert "linear3d" not in widget.recon.choices  # 2D methods only

    widget.initial.value = "hexgrid:0.05"
    widget.budget.value = 15.0
    widget.weights.value = weights
    widget.baseline_boxes["hexgrid"].value = True
    widget.sigma.value = 3.5
    widget.budget.value = 4.0  # refused (below the initial scan's 5 %), but the choices are kept ...
    widget.run()
    assert widget.panel.status.styleSheet() == ERROR_STYLE
    widget.budget.value = 15.0
    widget.slice_mode.value = "current slice"
    widget.save_settings()  # ... as a run saves them
    again = ActiveWidget(viewer)
    assert again.initial.value == "hexgrid:0.05"
    assert again.budget.value == 15.0 and again.estimator.value == "unet" and again.sampler.value == "topk"
    assert str(again.weights.value) == str(weights) and again.weights.enabled
    assert again.baseline_boxes["hexgrid"].value and not again.baseline_boxes["random"].value
    assert again.sigma.value == 3.5 and not again.sigma.auto.value and again.recon.value == "dip"
    config = again.config()
    assert config.sigma == 3.5 and config.baselines == ("hexgrid",) and config.recon_options == {"preset": "default"}
