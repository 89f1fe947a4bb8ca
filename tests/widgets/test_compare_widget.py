"""The Compare masks widget in a real viewer: grid view, matched contrast, table, plot, ROI/range, errors, report."""

from __future__ import annotations

import numpy as np
import pytest
from qtpy.QtWidgets import QFileDialog, QMessageBox

from napari_sparse_sem.metrics import psnr
from napari_sparse_sem.recon.dip import DIPConfig
from napari_sparse_sem.widgets._worker import ERROR_STYLE
from napari_sparse_sem.widgets.compare import RANGE, CompareWidget

WAIT_MS = 120_000  # how long a test waits for a worker: a bound for a stuck run, not a timing claim

PATTERNS3 = ("random", "grid", "spiral")


def _choose(widget: CompareWidget, patterns=PATTERNS3, methods=("nearest", "linear"), coverage=10.0) -> None:
    for pattern, box in widget.pattern_boxes.items():
        box.value = pattern in patterns
    widget.methods.value = list(methods)
    widget.coverage.value = coverage


def test_three_patterns_in_grid_with_matched_contrast(viewer, sample_layer, small_stack, wait_done):
    before = sample_layer.data.copy()
    viewer.dims.set_current_step(0, 2)
    widget = CompareWidget(viewer)
    assert widget.truth.value is sample_layer
    _choose(widget)
    spec, _ = widget.spec()
    assert spec.slices == (2, 3) and spec.roi is None  # the slice the viewer shows
    widget.run()
    wait_done(widget.panel)

    assert viewer.canvas.grid.enabled
    layers = widget.result_layers
    by_what = {what: [la for la in layers if la.metadata["what"] == what] for what in ("mask", "recon", "error")}
    assert [len(by_what[w]) for w in ("mask", "recon", "error")] == [3, 6, 6]
    assert len({tuple(la.contrast_limits) for la in by_what["recon"]}) == 1
    assert len({tuple(la.contrast_limits) for la in by_what["error"]}) == 1
    assert by_what["error"][0].contrast_limits[0] == 0.0
    for layer in layers:
        assert layer.data.shape == (1, 96, 96)
        np.testing.assert_allclose(layer.translate, (2 * 30.0, 5.0, -20.0))
        np.testing.assert_array_equal(layer.scale, sample_layer.scale)

    # One grid column per pattern: masks in the first row, reconstructions below, error maps last.
    grid, all_layers = viewer.canvas.grid, list(viewer.layers)
    assert grid.actual_shape(all_layers)[1] == 3
    for column, pattern in enumerate(PATTERNS3):
        mask = next(la for la in by_what["mask"] if la.metadata["pattern"] == pattern)
        assert grid.position(all_layers.index(mask), all_layers) == (0, column)
        linear = next(
            la for la in by_what["recon"] if la.metadata["pattern"] == pattern and la.metadata["method"] == "linear"
        )
        assert grid.position(all_layers.index(linear), all_layers) == (2, column)

    table = widget.table
    assert table.rowCount() == 6
    assert table.values("pattern") == [p for p in PATTERNS3 for _ in range(2)]
    assert table.values("method") == ["nearest", "linear"] * 3
    psnrs = dict(
        zip(zip(table.values("pattern"), table.values("method"), strict=True), table.values("psnr"), strict=True)
    )
    reference = small_stack[2] / 255.0
    for layer in by_what["recon"]:
        key = (layer.metadata["pattern"], layer.metadata["method"])
        assert psnrs[key] == pytest.approx(psnr(reference, layer.data[0]), abs=1e-4)
    assert all(psnrs[(p, "linear")] > 22.0 for p in PATTERNS3)
    assert all(psnrs[(p, "linear")] > psnrs[(p, "nearest")] for p in PATTERNS3)
    assert all(0.08 < c < 0.12 for c in table.values("coverage"))
    assert len(widget.plot.axes[0].patches) == 6 and len(widget.plot.axes[1].patches) == 6

    # A second run replaces the first one's layers; the user's layer is never touched.
    widget.run()
    wait_done(widget.panel)
    assert len(viewer.layers) == 1 + 15
    assert all(layer not in viewer.layers for layer in layers)
    assert viewer.layers[0] is sample_layer
    np.testing.assert_array_equal(sample_layer.data, before)


def test_slice_range_and_roi_from_shapes(viewer, sample_layer, small_stack, wait_done, tmp_path, monkeypatch):
    # A rectangle over rows 20..68 and columns 10..74 of the sample (world coordinates: 10 nm pixels, offset).
    roi = viewer.add_shapes(
        [np.array([[5 + 10 * 20, -20 + 10 * 10], [5 + 10 * 68, -20 + 10 * 74]])], shape_type="rectangle", name="roi"
    )
    widget = CompareWidget(viewer)
    widget.truth.value = sample_layer
    _choose(widget, patterns=("random", "lowres"), methods=("linear",), coverage=25.0)
    widget.slice_mode.value = RANGE
    widget.first_slice.value, widget.last_slice.value = 1, 2
    widget.roi.value = roi
    spec, _ = widget.spec()
    assert spec.slices == (1, 3) and spec.roi == (20, 68, 10, 74)
    widget.run()
    wait_done(widget.panel)

    assert widget.table.rowCount() == 2
    for layer in widget.result_layers:
        assert layer.data.shape == (2, 48, 64)
        np.testing.assert_allclose(layer.translate, (30.0, 5.0 + 10 * 20, -20.0 + 10 * 10))
    recon = next(
        la for la in widget.result_layers if la.metadata["what"] == "recon" and la.metadata["pattern"] == "random"
    )
    assert psnr(small_stack[1:3, 20:68, 10:74] / 255.0, recon.data) > 24.0

    paths = widget.save_report(tmp_path / "report")
    assert all(path.exists() for path in paths.values())

    # a folder with the user's own files: refused at first, then (after a Yes) written beside them, which stay
    shared = tmp_path / "shared"
    shared.mkdir()
    (shared / "notes.txt").write_text("mine")
    with pytest.raises(FileExistsError, match=r"notes\.txt"):
        widget.save_report(shared)
    monkeypatch.setattr(QFileDialog, "getExistingDirectory", lambda *args, **kwargs: str(shared))
    monkeypatch.setattr(QMessageBox, "question", lambda *args, **kwargs: QMessageBox.Yes)
    widget._ask_save_report()
    assert (shared / "notes.txt").read_text() == "mine" and (shared / "params.json").exists()
    assert "report saved" in widget.panel.status.text()


def test_bad_input_shows_error_and_adds_nothing(viewer, sample_layer):
    rgb = viewer.add_image(np.zeros((64, 64, 3), np.uint8), name="rgb", rgb=True)
    widget = CompareWidget(viewer)
    cases = [
        (lambda: _choose(widget, patterns=()), "tick at least one mask pattern"),
        (lambda: _choose(widget, methods=()), "select at least one reconstruction method"),
        (lambda: _choose(widget, coverage=0.0), "coverage must be more than 0"),
        (lambda: setattr(widget.truth, "value", rgb), "RGB"),
    ]
    for prepare, message in cases:
        widget.truth.value = sample_layer
        _choose(widget)
        prepare()
        widget.run()
        assert not widget.panel.busy
        assert message in widget.panel.status.text()
        assert widget.panel.status.styleSheet() == ERROR_STYLE
        assert len(viewer.layers) == 2
    widget.truth.value = sample_layer
    _choose(widget)
    widget.slice_mode.value = RANGE
    widget.first_slice.value, widget.last_slice.value = 2, 9
    widget.run()
    assert "outside the stack of 4 slices" in widget.panel.status.text()
    assert not viewer.canvas.grid.enabled


def test_cancel_shows_the_finished_runs(viewer, flyem_crop_uint8, wait_done, qtbot):
    # Full 250 x 250 slices with the 3D linear method (~0.7 s a run): Cancel after the first run lands before the end.
    stack = viewer.add_image(flyem_crop_uint8[:3].copy(), name="stack3")
    viewer.dims.set_current_step(0, 1)
    widget = CompareWidget(viewer)
    widget.truth.value = stack
    _choose(widget, patterns=("random", "grid", "spiral", "lowres"), methods=("linear3d",))
    widget.run()
    qtbot.waitUntil(lambda: len(widget.partial_runs) >= 1, timeout=WAIT_MS)
    widget.panel.cancel_button.click()
    wait_done(widget.panel)

    k = len(widget.partial_runs)
    assert 1 <= k < 4
    assert f"cancelled after {k} of 4 runs" in widget.panel.status.text()
    assert widget.table.rowCount() == k
    assert len(widget.result_layers) == 3 * k  # mask, reconstruction and error of every finished run
    assert all(layer.data[0].any() for layer in widget.result_layers if layer.metadata["what"] == "recon")


def test_equal_beam_time_adds_the_dense_scan_row(viewer, sample_layer, wait_done):
    widget = CompareWidget(viewer)
    _choose(widget, patterns=("hexgrid",), methods=("linear",), coverage=5.0)
    widget.equal_time.value = True
    widget.run()  # no dose yet: refused with a message, nothing added
    assert "needs a dose" in widget.panel.status.text() and len(viewer.layers) == 1
    widget.dose.value = 10.0
    widget.run()
    wait_done(widget.panel)
    assert widget.table.values("pattern") == ["dense", "hexgrid"]
    dense_db, sparse_db = widget.table.values("psnr")
    assert sparse_db > dense_db + 5.0  # 10 e-/px dense is very noisy; 5 % at 200 e-/px is not


def test_dip_methods_show_their_options_and_pass_them_on(viewer, sample_layer, wait_done):
    widget = CompareWidget(viewer)
    _choose(widget, patterns=("random",), methods=("linear",), coverage=20.0)
    assert widget.options.isHidden()
    widget.methods.value = ["linear", "dip", "dip3d"]
    form = widget.options.form("dip")
    assert not widget.options.isHidden() and widget.options.groups[DIPConfig].title() == "dip, dip3d options"
    tiny = {"levels": 2, "channels": 8, "iterations_first": 12, "stopping": "fixed", "warmup_slices": 0}
    for name, value in {**tiny, "neighbours": 1}.items():
        form[name].value = value
    spec, _ = widget.spec()
    tiny = {"preset": "default", **tiny, "neighbours": 1}  # one form for both (dip reads no neighbours)
    assert spec.method_options == {"dip": tiny, "dip3d": tiny}
    widget.run()
    wait_done(widget.panel)
    iterations = {r["method"]: r["iterations"] for r in widget.result.records}
    assert iterations == {"linear": None, "dip": 12, "dip3d": 12}
    # The fits' curves and their last estimate were shown while they ran.
    assert not widget.fit_plot.isHidden() and widget.fit_plot.axes.lines and widget.fit_plot.image_axes.images
    # The choices are remembered: a new widget comes up with the same DIP fields.
    again = CompareWidget(viewer)
    again_form = again.options.form("dip")
    assert again_form["iterations_first"].value == 12 and again_form["neighbours"].value == 1


def test_table_shows_the_holdout_estimate_and_the_noise_ceiling(viewer, sample_layer, wait_done):
    widget = CompareWidget(viewer)
    _choose(widget, patterns=("random",), methods=("nearest", "linear"), coverage=10.0)
    assert "holdout" in widget.spec_form.fields and "holdout_folds" in widget.spec_form.fields
    widget.run()
    wait_done(widget.panel)
    holdout = widget.table.values("psnr_holdout")
    unscanned = [row["psnr_unscanned"] for row in widget.result.summary()]
    assert len(holdout) == 2 and all(np.isfinite(holdout))
    assert all(abs(h - u) < 2.0 for h, u in zip(holdout, unscanned, strict=True))  # 96² crop: a rough estimate
    assert "PSNR cannot exceed" in widget.panel.status.text()
    widget.spec_form.fields["holdout"].value = False
    widget.run()
    wait_done(widget.panel)
    assert all(v is None or np.isnan(v) for v in widget.table.values("psnr_holdout"))
