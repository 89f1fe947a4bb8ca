"""Widget forms generated from parameter models show the model's defaults and build the same model back."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from napari_sparse_sem.params import Spec, param
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


def test_form_round_trips_defaults_and_changes(qtbot):
    form = SpecForm(Scan)
    assert form.spec() == Scan()
    assert "hidden" not in form.fields
    assert form["coverage"].value == pytest.approx(5.0)  # shown as a percentage
    assert form["coverage"].label == "Coverage (%)"
    changed = Scan(pattern="grid", coverage=0.125, per_slice=False, seed=None, factor=3, radius=(1.0, 2.5))
    form.set_spec(changed.to_dict())
    assert form.spec() == changed


def test_form_reports_bad_values_and_unknown_keys(qtbot):
    form = SpecForm(Scan)
    form["radius"].value = "1, x"
    with pytest.raises(ValueError, match="Radius"):
        form.spec()
    with pytest.raises(ValueError, match=r"unknown Scan field\(s\) \['colour'\]"):
        form.set_spec({"colour": "red"})
