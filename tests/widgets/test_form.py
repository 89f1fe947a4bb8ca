"""Widget forms generated from parameter models show the model's defaults and build the same model back."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from magicgui.widgets import ComboBox, FloatSpinBox, LineEdit

from napari_sparse_sem.params import Spec, param
from napari_sparse_sem.widgets._fields import AutoNumber, ChecksField, NumbersEdit, TextChoice
from napari_sparse_sem.widgets._form import SpecForm


@dataclass
class Scan(Spec):
    pattern: str = param("random", help="Mask pattern.", choices=("random", "grid"))
    coverage: float = param(0.05, help="Fraction scanned.", percent=True, low=0, high=1, low_open=True)
    per_slice: bool = param(True, help="A new mask per slice.")
    seed: int | None = param(0, help="Seed.", nullable=True, none_means="a fresh random seed")
    factor: int | None = param(None, help="Lowres factor.", low=1)
    radius: tuple[float, float] = param((10.0, 15.0), help="Radius interval.", unit="px")
    hidden: int = param(3, widget=False)


@dataclass
class Training(Spec):
    coverage: tuple[float, float] = param((0.02, 0.2), percent=True, help="Coverage range.")
    coverages: list[float] = param(default_factory=lambda: [0.05], percent=True, help="Coverages.")
    patterns: list[str] = param(default_factory=lambda: ["spiral"], help="Patterns.")
    lr: float = param(1e-3, low=0, low_open=True, help="Learning rate.")
    sigma: float | str = param("auto", help="Kernel width.")
    baselines: tuple[str, ...] = param((), help="Baselines.")
    device: str = param("cpu", help="Device.")


def test_form_round_trips_defaults_and_changes(qtbot):
    form = SpecForm(Scan)
    assert form.spec() == Scan()
    assert "hidden" not in form.fields
    assert form["coverage"].value == pytest.approx(5.0)  # shown as a percentage
    assert form["coverage"].label == "coverage (%)"  # lower case, as the dock widgets write labels
    assert isinstance(form["radius"], NumbersEdit) and form["radius"].value == (10.0, 15.0)
    changed = Scan(pattern="grid", coverage=0.125, per_slice=False, seed=None, factor=3, radius=(1.0, 2.5))
    form.set_spec(changed.to_dict())
    assert form.spec() == changed


def test_form_reports_bad_values_and_unknown_keys(qtbot):
    form = SpecForm(Scan)
    form["factor"].value = "x"
    with pytest.raises(ValueError, match="Factor: expected a number"):
        form.spec()
    form["factor"].value = ""
    before = form.values()
    with pytest.raises(ValueError, match=r"unknown Scan field\(s\) \['colour'\]"):
        form.set_spec({"colour": "red"})
    assert form.values() == before  # nothing changed


def test_percent_ranges_lists_small_numbers_and_own_widgets(qtbot):
    devices = ComboBox(choices=["auto", "cpu"])
    form = SpecForm(
        Training,
        widgets={
            "sigma": AutoNumber(),
            "baselines": ChecksField(["random", "hexgrid"]),
            "patterns": TextChoice(["spiral", "mixed"]),
            "device": devices,
        },
        values={"device": "auto"},
    )
    assert form["coverage"].value == pytest.approx((2.0, 20.0))  # a percent interval as two percent boxes
    assert form["coverages"].value == "5"
    lr = form["lr"]
    assert isinstance(lr, FloatSpinBox) and lr.value == pytest.approx(0.001)  # not rounded to 0.00
    assert form["device"] is devices and devices.value == "auto"
    assert form.spec() == Training(device="auto")
    form["coverages"].value = "5, 10%"
    form["patterns"].value = "spiral, mixed"
    form["sigma"].value = 2.5
    form["baselines"].value = ("hexgrid",)
    spec = form.spec()
    assert spec.coverages == [0.05, 0.1] and spec.patterns == ["spiral", "mixed"] and spec.sigma == 2.5
    assert spec.baselines == ("hexgrid",)
    form.set_spec(Training(patterns=["grid"], coverage=(0.05, 0.5)))
    assert form["patterns"].value == "grid" and form["coverage"].value == pytest.approx((5.0, 50.0))


def test_advanced_fields_sit_behind_a_toggle(qtbot):
    form = SpecForm(Scan, advanced=("factor", "radius"))
    qtbot.addWidget(form.native)
    assert form.section is not None and not form.section.expanded
    assert [w.name for w in form] == ["pattern", "coverage", "per_slice", "seed"]
    assert set(form.fields) == {"pattern", "coverage", "per_slice", "seed", "factor", "radius"}
    assert form.advanced.native.isHidden()
    form.section.toggle.click()
    assert form.section.expanded and not form.advanced.native.isHidden()
    assert isinstance(form["factor"], LineEdit)
    with pytest.raises(TypeError, match="no field"):
        SpecForm(Scan, advanced=("hidden",))
