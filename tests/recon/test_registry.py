"""Methods declare their options spec and flags and register through entry points (design rule 9).

The plugin tests "install" ``tests/plugin_pkg`` the way pip does, as far as Python can tell: its package and a
``*.dist-info`` folder whose ``entry_points.txt`` holds the entry points its ``pyproject.toml`` declares, in a temporary
folder on ``sys.path``.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from napari_sparse_sem.params import Spec, fields_of
from napari_sparse_sem.recon.base import (
    ENTRY_POINT_GROUP,
    Reconstructor,
    available_methods,
    check_options,
    create,
    method_class,
    methods_with,
    refresh_methods,
)
from napari_sparse_sem.recon.dip import PRESETS, DIPConfig, dip_config, load_dip_options

PLUGIN = Path(__file__).resolve().parents[1] / "plugin_pkg"
BUILTINS = ["nearest", "linear", "harmonic", "biharmonic", "linear3d", "dip", "dip3d", "gan", "gan-mse", "self"]


def test_builtins_come_from_our_entry_points_in_order() -> None:
    assert available_methods()[: len(BUILTINS)] == BUILTINS
    assert methods_with(iterative=True) == ["dip", "dip3d"]
    assert methods_with(needs_weights=True) == ["gan", "gan-mse", "self"]
    assert methods_with(gpu=False, context=0) == ["nearest", "linear", "harmonic", "biharmonic"]
    assert method_class("gan").weights_kind == "partial-scan-gan" and not method_class("dip").needs_weights
    with pytest.raises(ValueError, match=r"unknown method attribute\(s\) \['slow'\]"):
        methods_with(slow=True)


@pytest.mark.parametrize("name", BUILTINS)
def test_every_option_is_declared_with_help(name: str) -> None:
    cls = method_class(name)
    assert cls.description
    if cls.options is None:
        assert cls.option_names() == []
        return
    assert issubclass(cls.options, Spec)
    views = fields_of(cls.options)
    assert [v.name for v in views] == cls.option_names()
    assert all(v.declared and v.info.help for v in views), [v.name for v in views if not v.info.help]
    cls.parse_options({})  # the defaults are valid


def test_options_are_checked_against_the_spec() -> None:
    message = "method 'linear3d' has no option(s) ['ctx']; its options are ['context', 'z_scale']"
    with pytest.raises(ValueError, match=re.escape(message)):
        create("linear3d", ctx=2)
    with pytest.raises(ValueError, match=re.escape("method 'linear' takes no options, got ['context']")):
        check_options("linear", {"context": 1})
    with pytest.raises(ValueError, match="option tile must be a whole number, got 'big'"):
        create("dip", tile="big")
    with pytest.raises(ValueError, match="option warm_start must be true or false, got 1"):
        create("dip", warm_start=1)
    with pytest.raises(ValueError, match=r"method 'gan-mse': tile must be in \[64, inf\), got 32"):
        check_options("gan-mse", {"tile": 32})
    with pytest.raises(ValueError, match=r"overlap must be in \[0, tile/2\)"):
        check_options("gan", {"tile": 64, "overlap": 32})
    method = method_class("linear3d").from_options({"context": 2, "z_scale": 0.5})
    assert (method.context, method.z_scale, method.device) == (2, 0.5, "cpu")
    assert create("linear3d", context=1).settings.to_dict() == {"context": 1, "z_scale": 1.0, "schema_version": 1}


def test_dip_options_start_from_their_preset(tmp_path: Path) -> None:
    config = create("dip", preset="paper", lr=0.005).config
    assert (config.preset, config.levels, config.channels, config.stopping, config.lr) == (
        "paper",
        5,
        128,
        "fixed",
        0.005,
    )
    assert create("dip").config == PRESETS["default"] == DIPConfig()
    again = DIPConfig.from_dict(dip_config("paper", iterations_warm=7).to_dict())
    assert again == dip_config("paper", iterations_warm=7) and again.channels == 128
    with pytest.raises(ValueError, match="unknown DIP preset 'fast'"):
        create("dip", preset="fast")
    with pytest.raises(ValueError, match=r"holdout_fraction must be in \(0, 0.5\)"):
        create("dip3d", holdout_fraction=5)
    path = tmp_path / "dip.json"
    path.write_text('{"preset": "paper", "iterations_first": 50}')
    assert load_dip_options(path) == {"preset": "paper", "iterations_first": 50}
    path.write_text('{"preset": "paper", "iterations": 50}')
    with pytest.raises(ValueError, match=r"unknown field\(s\) \['iterations'\]"):
        load_dip_options(path)


# ----------------------------------------------------------------------------------------------------- plugins


def _slab() -> tuple[np.ndarray, np.ndarray]:
    mask = np.zeros((1, 4, 5), dtype=bool)
    mask[0, ::2, ::2] = True
    sparse = np.where(mask, np.linspace(0.1, 0.9, 20, dtype=np.float32).reshape(1, 4, 5), 0).astype(np.float32)
    return sparse, mask


@pytest.mark.usefixtures("mean_fill")
def test_a_plugin_method_is_listed_created_and_checked() -> None:
    assert available_methods() == [*BUILTINS, "mean-fill"]
    cls = method_class("mean-fill")
    assert issubclass(cls, Reconstructor) and cls.option_names() == ["fill"]
    sparse, mask = _slab()
    image = create("mean-fill", fill=0.3).reconstruct_slice(sparse, mask, 0)
    np.testing.assert_array_equal(image[~mask[0]], np.float32(0.3))
    np.testing.assert_array_equal(image[mask[0]], sparse[0][mask[0]])
    default = create("mean-fill").reconstruct_slice(sparse, mask, 0)
    np.testing.assert_allclose(default[~mask[0]], sparse[0][mask[0]].mean(), rtol=1e-6)
    with pytest.raises(
        ValueError, match=re.escape("method 'mean-fill' has no option(s) ['colour']; its options are ['fill']")
    ):
        create("mean-fill", colour=0.3)
    with pytest.raises(ValueError, match=r"fill must be in \[0, 1\], got 3"):
        create("mean-fill", fill=3)


def test_a_broken_plugin_warns_and_the_others_still_work(site: Path, install_distribution) -> None:
    install_distribution(
        site,
        "broken-plugin",
        "1.0",
        {ENTRY_POINT_GROUP: {"ghost": "sparse_sem_no_such_module:Ghost", "not-a-method": "json:loads"}},
    )
    with pytest.warns(UserWarning) as caught:
        refresh_methods()
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == 2
    assert "'ghost' = 'sparse_sem_no_such_module:Ghost' (from broken-plugin)" in messages[0]
    assert "ModuleNotFoundError" in messages[0]
    assert "'not-a-method' = 'json:loads'" in messages[1] and "neither a module nor a Reconstructor" in messages[1]
    assert available_methods() == BUILTINS
    assert create("linear").reconstruct_slice(*_slab(), 0).shape == (4, 5)


def test_a_plugin_cannot_take_a_builtin_name(site: Path, install_distribution) -> None:
    (site / "copycat_method.py").write_text(
        "from napari_sparse_sem.recon.interp import Nearest\n\n\nclass Linear(Nearest):\n    name = 'linear'\n"
    )
    install_distribution(site, "copycat", "1.0", {ENTRY_POINT_GROUP: {"copy": "copycat_method:Linear"}})
    with pytest.warns(UserWarning, match="'linear' is taken by napari_sparse_sem.recon.interp.Linear"):
        refresh_methods()
    assert method_class("linear").__module__ == "napari_sparse_sem.recon.interp"
    sys.modules.pop("copycat_method", None)


@pytest.mark.usefixtures("mean_fill")
def test_the_cli_runs_a_plugin_method(tmp_path: Path) -> None:
    from napari_sparse_sem.cli import app

    sparse, mask = _slab()
    sparse_path, mask_path, out = tmp_path / "sparse.tif", tmp_path / "mask.tif", tmp_path / "out.tif"
    tifffile.imwrite(sparse_path, np.repeat(sparse, 3, axis=0))
    tifffile.imwrite(mask_path, np.repeat(mask, 3, axis=0).astype(np.uint8))
    runner = CliRunner()
    listing = runner.invoke(app, ["reconstruct", "--method", "help"])
    assert listing.exit_code == 0 and "mean-fill" in listing.stdout
    args = ["reconstruct", str(sparse_path), "--mask", str(mask_path), "--out", str(out), "--method", "mean-fill"]
    result = runner.invoke(app, [*args, "--option", "fill=0.3", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    image = tifffile.imread(out)
    assert image.shape == (3, 4, 5)
    np.testing.assert_allclose(image[:, ~mask[0]], 0.3, atol=1e-6)
    refused = runner.invoke(app, [*args, "--option", "colour=0.3", "--overwrite"])
    assert refused.exit_code == 2 and "its options are ['fill']" in refused.stderr
