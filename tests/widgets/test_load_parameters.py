"""*Load parameters…*: a widget fills its form from a saved parameter file — a report's params.json written by the
CLI, a volume or model card, or a bare run record — strictly: unknown keys or another command's record give a
message in the widget and change nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import tifffile
from typer.testing import CliRunner

from napari_sparse_sem.cli import app
from napari_sparse_sem.compare import CompareSpec
from napari_sparse_sem.recon.gan_training import GANTrainingConfig
from napari_sparse_sem.widgets._worker import ERROR_STYLE
from napari_sparse_sem.widgets.acquisition import AcquisitionWidget
from napari_sparse_sem.widgets.active import ActiveWidget
from napari_sparse_sem.widgets.compare import RANGE, CompareWidget
from napari_sparse_sem.widgets.reconstruct import ReconstructWidget
from napari_sparse_sem.widgets.train_gan import TrainGANWidget

CROP = Path(__file__).resolve().parents[2] / "src" / "napari_sparse_sem" / "data" / "flyem_medulla_crop_z120-151.tif"


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real comparison report of the packaged crop (two slices of a 32² ROI), written by ``sparse-sem compare``."""
    out = tmp_path_factory.mktemp("compare") / "report"
    flags = ["--patterns", "random,grid", "--coverage", "10%", "--method", "linear,linear3d"]
    flags += ["--option", "linear3d.context=2", "--slices", "0:2", "--roi", "0:32,0:32", "--seed", "3", "--dose", "50"]
    result = CliRunner().invoke(app, ["compare", str(CROP), "--out", str(out), *flags], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return out / "params.json"


def _form_state(widget: CompareWidget) -> tuple:
    boxes = tuple(box.value for box in widget.pattern_boxes.values())
    options = widget.options.form("linear3d").values()
    return boxes, tuple(widget.methods.value), widget.spec_form.values(), options, widget.slice_mode.value


def test_compare_loads_a_report_written_by_the_cli(viewer, sample_layer, report, tmp_path):
    saved = CompareSpec.from_dict(json.loads(report.read_text())["spec"])
    widget = CompareWidget(viewer)
    assert widget.load_button is not None and "params.json" in widget.load_button.toolTip()
    assert widget.load_parameters(report)
    assert "parameters loaded from params.json" in widget.panel.status.text()
    assert [p for p, box in widget.pattern_boxes.items() if box.value] == ["random", "grid"]
    assert list(widget.methods.value) == ["linear", "linear3d"] and widget.coverage.value == pytest.approx(10.0)
    assert widget.options.form("linear3d")["context"].value == 2 and not widget.options.isHidden()
    assert widget.slice_mode.value == RANGE and (widget.first_slice.value, widget.last_slice.value) == (0, 1)
    spec, _ = widget.spec()  # the widget now runs the CLI's comparison (the ROI is drawn, not loaded)
    assert spec == saved.replace(roi=None)

    # The run record alone (as `sparse-sem run` reads it) fills the same form.
    record = tmp_path / "record.json"
    record.write_text(json.dumps(json.loads(report.read_text())["run"]))
    again = CompareWidget(viewer)
    assert again.load_parameters(record)
    assert again.spec()[0] == spec


def test_unknown_keys_and_other_commands_change_nothing(viewer, sample_layer, report, tmp_path):
    data = json.loads(report.read_text())
    data["spec"]["colour"] = "red"
    bad = tmp_path / "params.json"
    bad.write_text(json.dumps(data))
    widget = CompareWidget(viewer)
    before = _form_state(widget)
    assert not widget.load_parameters(bad)
    text = widget.panel.status.text()
    assert "parameters not loaded" in text and "unknown comparison field(s) ['colour']" in text
    assert widget.panel.status.styleSheet() == ERROR_STYLE
    assert _form_state(widget) == before

    acquisition = AcquisitionWidget(viewer)
    before = acquisition.mask_form.values()
    assert not acquisition.load_parameters(report)
    assert "written by `sparse-sem compare`, not `sparse-sem simulate`" in acquisition.panel.status.text()
    assert acquisition.mask_form.values() == before

    (tmp_path / "notes.json").write_text('{"colour": "red"}')
    assert not acquisition.load_parameters(tmp_path / "notes.json")
    assert "holds no parameters this widget reads" in acquisition.panel.status.text()


def test_acquisition_loads_a_volume_written_by_simulate(viewer, small_stack, tmp_path):
    source, out = tmp_path / "dense.tif", tmp_path / "sparse.tif"
    tifffile.imwrite(source, small_stack)
    flags = ["--pattern", "spiral", "--coverage", "7.5%", "--seed", "4", "--dose", "30", "--fixed-mask"]
    result = CliRunner().invoke(app, ["simulate", str(source), "--out", str(out), *flags], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    widget = AcquisitionWidget(viewer)
    assert widget.load_parameters(out)
    mask_spec, acq_spec = widget.specs()
    assert (mask_spec.pattern, mask_spec.coverage, mask_spec.per_slice, mask_spec.seed) == ("spiral", 0.075, False, 4)
    assert acq_spec.dose == 30.0 and acq_spec.seed == 4


def test_active_reconstruct_and_train_gan_load_records_and_cards(viewer, tmp_path):
    active_record = {
        "command": "active",
        "arguments": {"initial": "hexgrid:0.05", "budget": "15%", "sampler": "topk", "sigma": "3.5", "seed": 2},
    }
    path = tmp_path / "active.json"
    path.write_text(json.dumps(active_record))
    active = ActiveWidget(viewer)
    assert active.load_parameters(path)
    config = active.config()
    assert (config.initial, config.budget, config.sampler, config.sigma, config.seed) == (
        "hexgrid:0.05",
        0.15,
        "topk",
        3.5,
        2,
    )

    path.write_text(json.dumps({"command": "reconstruct", "arguments": {"method": "dip", "dip_preset": "paper",
                                                                        "option": ["levels=3"]}}))  # fmt: skip
    reconstruct = ReconstructWidget(viewer)
    assert reconstruct.load_parameters(path)
    assert reconstruct.method.value == "dip"
    assert reconstruct.options.options("dip") == {"preset": "paper", "levels": 3}

    card = {"kind": "sparse-sem GAN", "training": {**GANTrainingConfig(crop=256, batch_size=4, iterations=40).to_dict(),
            "architecture": {"context": 1}, "iterations_done": 40, "device": "cpu"}}  # fmt: skip
    weights = tmp_path / "gan.json"
    weights.write_text(json.dumps(card))
    train = TrainGANWidget(viewer)
    assert train.load_parameters(weights)
    assert int(train.crop.value) == 256 and train.iterations.value == "40" and train.context.value == 1
    assert train.config().replace(architecture={}) == GANTrainingConfig(crop=256, batch_size=4, iterations=40)


def test_a_comparison_of_a_file_carries_the_record_that_runs_it_again(viewer, report, wait_done, tmp_path):
    (crop,) = viewer.open(str(CROP), plugin="napari-sparse-sem")
    widget = CompareWidget(viewer)
    widget.truth.value = crop
    assert widget.load_parameters(report)
    widget.methods.value = ["linear"]
    widget.run()
    wait_done(widget.panel)
    record = widget.result_layers[0].metadata["run"]
    assert all(layer.metadata["run"] == record for layer in widget.result_layers)
    assert record["command"] == "compare" and record["arguments"]["volume"] == str(CROP)
    params = tmp_path / "record.json"
    params.write_text(json.dumps({"run": record}))
    out = tmp_path / "again"
    result = CliRunner().invoke(app, ["run", str(params), "--out", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    again = json.loads((out / "metrics.json").read_text())
    key = ("pattern", "method", "slice")
    mine = {tuple(r[k] for k in key): r["psnr"] for r in widget.result.records}
    assert {tuple(r[k] for k in key): r["psnr"] for r in again} == pytest.approx(mine)
