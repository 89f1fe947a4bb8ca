"""Method option panels come from each method's options spec: a third-party method (the test plugin ``mean-fill``)
shows up in Reconstruct and Compare masks with its option field, and its option reaches the method."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_sparse_sem.recon.base import method_class
from napari_sparse_sem.widgets.compare import CompareWidget
from napari_sparse_sem.widgets.reconstruct import ReconstructWidget

PLUGIN = Path(__file__).resolve().parents[1] / "plugin_pkg"


@pytest.mark.usefixtures("mean_fill")
def test_a_plugin_method_brings_its_option_field(viewer, acquired, sample_layer, wait_done):
    mask_layer, sparse_layer = acquired
    widget = ReconstructWidget(viewer)
    assert "mean-fill" in widget.method.choices
    widget.method.value = "linear"
    assert widget.options.isHidden()  # linear takes no options
    widget.method.value = "mean-fill"
    form = widget.options.form("mean-fill")
    group = widget.options.groups[method_class("mean-fill").options]
    assert not widget.options.isHidden() and group.title() == "mean-fill options"
    assert list(form.fields) == ["fill"] and form["fill"].label == "fill"
    assert "empty: the scanned mean" in form["fill"].tooltip.lower()
    assert widget.loss_plot.isHidden()  # not iterative: no live fit plot

    form["fill"].value = "0.25"
    widget.sparse.value, widget.mask.value = sparse_layer, mask_layer
    widget.run()
    wait_done(widget.panel)
    layer = widget.layer
    assert layer.metadata["method"] == "mean-fill" and layer.metadata["options"] == {"fill": 0.25}
    scanned = mask_layer.data.astype(bool)
    np.testing.assert_array_equal(layer.data[~scanned], np.float32(0.25))
    np.testing.assert_allclose(layer.data[scanned], sample_layer.data[scanned] / 255.0, atol=1e-6)

    form["fill"].value = "3"  # out of the spec's bounds: the method's own message, nothing starts
    widget.run()
    assert "method 'mean-fill'" in widget.panel.status.text() and "fill must be in [0, 1]" in widget.panel.status.text()

    compare = CompareWidget(viewer)
    assert "mean-fill" in compare.methods.choices
    compare.methods.value = ["linear", "mean-fill"]
    assert not compare.options.isHidden()
    compare.options.form("mean-fill")["fill"].value = "0.5"
    spec, _ = compare.spec()
    assert spec.methods == ["linear", "mean-fill"] and spec.method_options == {"mean-fill": {"fill": 0.5}}


def test_no_method_is_special_cased_in_the_widgets():
    """Option panels come from the registry's options specs and flags, never from lists of method names."""
    widgets = Path(__file__).resolve().parents[2] / "src" / "napari_sparse_sem" / "widgets"
    for path in widgets.glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "DIP_METHODS" not in text and "GAN_METHODS" not in text, path.name
