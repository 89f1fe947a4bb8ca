"""CLI options come from the parameter models: the defaults a command shows and uses are the model's, its help is the
model's, a bad value gets the model's message (naming the flag) and exit code 2; methods are described by the
registry, a plugin's included."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated

import click
import numpy as np
import pytest
import tifffile
import typer
from typer.testing import CliRunner

from napari_sparse_sem.cli import app
from napari_sparse_sem.cli.run import record_commands
from napari_sparse_sem.cli.spec_options import Form, default_text, generated_options, spec_options
from napari_sparse_sem.compare.spec import CompareSpec
from napari_sparse_sem.io import read_metadata
from napari_sparse_sem.params import Spec, fields_of, param
from napari_sparse_sem.sampling.record import AcquisitionRecord
from napari_sparse_sem.sampling.spec import AcquisitionSpec, MaskSpec

runner = CliRunner(env={"COLUMNS": "400"})
SRC = Path(__file__).resolve().parents[2] / "src" / "napari_sparse_sem"
PLUGIN = Path(__file__).resolve().parents[1] / "plugin_pkg"

CONVERTED = {
    "simulate": {MaskSpec, AcquisitionSpec},
    "compare": {CompareSpec},
    "active": {"WDPPConfig"},
    "train-estimator": {"EstimatorTrainingConfig"},
    "train-gan": {"GANTrainingConfig"},
    "surrogate backscatter": {"MCConfig"},
    "surrogate geometry": {"GeometrySpec"},
    "surrogate make-dataset": {"DatasetSpec", "MCConfig"},
    "surrogate train": {"SurrogateTrainingConfig", "SurrogateConfig"},
    "surrogate simulate-stack": {"GeometrySpec", "StackSpec"},
}
"""The commands whose model flags are generated, and their models."""
CLI_DEFAULTS = {("surrogate backscatter", "energy_kev"): 20.0, ("surrogate train", "iterations"): 2000}
"""The only defaults a command sets itself (the model has another, or none that makes a valid run)."""
SHARED_HELP = ("seed", "iterations")
"""Fields whose flag has help of its own: one --seed sets two models; --iterations says when its default holds."""


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args])


def click_command(name: str) -> click.Command:
    command = typer.main.get_command(app)
    for part in name.split():
        command = command.commands[part]  # type: ignore[attr-defined]
    return command


# ------------------------------------------------------------------------------------------------ every command


@pytest.mark.parametrize("name", sorted(CONVERTED))
def test_defaults_shown_and_used_are_the_models(name: str) -> None:
    generated = generated_options(record_commands(app)[name])
    models = {spec if isinstance(spec, str) else spec.__name__ for spec in CONVERTED[name]}
    assert {spec.__name__ for spec, _, _ in generated.values()} == models
    options = {p.name: p for p in click_command(name).params}
    for param_name, (_, view, default) in generated.items():
        expected = CLI_DEFAULTS.get((name, view.name), view.default)
        assert default == expected, (name, view.name)
        option = options[param_name]
        if option.default is not None:  # a typed option: click passes the default itself
            assert option.default == default, (name, view.name)
        else:  # a text option: unset means the model's default, which --help shows
            assert option.show_default == default_text(view, default), (name, view.name)
        assert view.info.help and (view.info.help in option.help or view.name in SHARED_HELP), (name, view.name)
    declared = {view.name for spec, _, _ in generated.values() for view in fields_of(spec) if view.info.cli}
    assert {view.name for _, view, _ in generated.values()} <= declared


def test_simulate_without_flags_uses_the_model_defaults(flyem_crop_uint8: np.ndarray, tmp_path: Path) -> None:
    source = tmp_path / "crop.tif"
    tifffile.imwrite(source, flyem_crop_uint8[:2, :48, :48])
    result = invoke("simulate", source, "--out", tmp_path / "s.tif")
    assert result.exit_code == 0, result.output
    meta = read_metadata(tmp_path / "s.tif")
    record = AcquisitionRecord.from_metadata(meta)
    assert record.mask_spec == MaskSpec() and record.acquisition == AcquisitionSpec()
    # the run record holds the arguments by their flag names, as plain values (what `sparse-sem run` replays)
    arguments = meta["run"]["arguments"]
    assert {"pattern", "coverage", "per_slice", "seed", "dose", "dwell_us", "lowres_factor"} <= set(arguments)
    assert arguments["coverage"] is None and arguments["pattern"] == "random"


def test_compare_without_flags_uses_the_model_defaults(flyem_crop_uint8: np.ndarray, tmp_path: Path) -> None:
    source = tmp_path / "crop.tif"
    tifffile.imwrite(source, flyem_crop_uint8[:2, :48, :48])
    result = invoke("compare", source, "--slices", "0:1", "--out", tmp_path / "r", "-q")
    assert result.exit_code == 0, result.output
    spec = json.loads((tmp_path / "r" / "params.json").read_text())["spec"]
    assert spec == CompareSpec(slices=(0, 1)).to_dict()


def test_help_shows_the_models_help_units_ranges_and_choices() -> None:
    text = invoke("simulate", "--help").stdout
    assert "Mask pattern: which pixels the beam visits." in text  # MaskSpec.pattern's help
    assert "One of: random, grid, spiral, lines, lowres, hexgrid, bluenoise." in text
    assert "Range (0, 100] %." in text and "Range ≥ 0 µs." in text and "'none': noiseless." in text
    assert "Mask (MaskSpec)" in text and "Acquisition (AcquisitionSpec)" in text
    text = invoke("compare", "--help").stdout
    assert "Mask patterns to compare (a list, or 'all' for every pattern)." in text
    assert "--equal-time" in text and "--equal-dose" in text and "--per-slice" in text and "--fixed-mask" in text
    text = invoke("active", "--help").stdout
    assert "Total fraction of pixels scanned (initial scan + rescans)" in text and "Range (0, 100) %." in text
    assert "One of: unet, gradient, variance, entropy, oracle." in text
    text = invoke("surrogate", "geometry", "--help").stdout
    assert "Pore fraction Φ of the volume" in text and "DEPTH,HEIGHT,WIDTH" in text and "LOW:HIGH" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["simulate", "{v}", "--coverage", "1.5"], "--coverage must be in (0, 1]"),
        (["simulate", "{v}", "--coverage", "five"], "--coverage expects a fraction"),
        (["simulate", "{v}", "--dwell-us", "-1"], "--dwell-us must be a non-negative number"),
        (["simulate", "{v}", "--seed", "x"], "--seed expects a whole number"),
        (["simulate", "{v}", "--lines-mode", "zigzag"], "--lines-mode must be one of ['regular', 'random']"),
        (["active", "{v}", "--rounds", "0"], "--rounds must be in [1, inf)"),
        (["active", "{v}", "--sampler", "best"], "--sampler must be one of"),
        (["compare", "{v}", "--seed", "-1"], "--seed must be in [0, inf)"),
        (["compare", "{v}", "--coverage", "5%,150%"], "coverage must be in (0, 1]"),
        (["train-gan", "{v}", "--pretrain-fraction", "0"], "--pretrain-fraction must be in (0, 1]"),
        (["train-gan", "{v}", "--coverage", "1:2:3"], "--coverage expects C or LOW:HIGH"),
        (["train-estimator", "{v}", "--levels", "0"], "--levels must be in [1, inf)"),
        (["surrogate", "geometry", "--porosity", "1"], "--porosity must be in (0, 1)"),
        (["surrogate", "geometry", "--window", "1,2"], "--window expects DEPTH,HEIGHT,WIDTH (3 values)"),
        (["surrogate", "make-dataset", "--size", "8"], "--size must be in [16, 2048]"),
        (["surrogate", "train", "{v}", "--loss", "l3"], "--loss must be one of ['l1', 'l2']"),
        (["surrogate", "simulate-stack", "--dose", "10", "--snr", "5"], "give a dose or an SNR for the noise"),
    ],
)
def test_a_bad_value_gets_the_models_message_and_exit_2(args: list[str], message: str, tmp_path: Path) -> None:
    out = ["--out", tmp_path / ("o.zarr" if "surrogate" in args else "o.safetensors" if "train" in args[0] else "o")]
    result = invoke(*[a.format(v=tmp_path / "in.tif") for a in args], *out)
    assert result.exit_code == 2, result.output
    assert "Error: " in result.stderr and message in result.stderr, result.stderr
    assert "Traceback" not in result.output and list(tmp_path.iterdir()) == []


def test_training_budget_minutes_alone_drops_the_iterations_default() -> None:
    from napari_sparse_sem.cli.train import training_budget
    from napari_sparse_sem.recon.gan_training import GANTrainingConfig

    config = GANTrainingConfig(minutes=5)
    assert training_budget(config, frozenset({"minutes"})).iterations is None
    assert training_budget(config, frozenset({"minutes", "iterations"})).iterations == 2000
    assert training_budget(GANTrainingConfig(), frozenset()).iterations == 2000


# ----------------------------------------------------------------------------------------------- the decorator


@dataclass
class Demo(Spec):
    pattern: str = param("random", help="Mask pattern.", choices=("random", "grid"))
    coverages: list[float] = param(default_factory=lambda: [0.05], help="Fractions.", percent=True, flag="coverage")
    per_slice: bool = param(True, help="New mask per slice.", flag="per-slice/fixed-mask")
    seed: int | None = param(0, help="Seed.", low=0, nullable=True)
    radius: tuple[float, float] = param((10.0, 15.0), help="Radius interval.", unit="px")
    names: list[str] = param(default_factory=lambda: ["a"], help="Names.")


def _demo_app(**options: object) -> tuple[typer.Typer, list[object]]:
    seen: list[object] = []
    demo_app = typer.Typer()

    @demo_app.command()
    @spec_options(Demo, into="spec", **options)  # type: ignore[arg-type]
    def go(path: Annotated[str, typer.Argument()], spec: object, extra: int = 0) -> None:
        seen.append(spec)

    @demo_app.command()
    def other() -> None:
        pass

    return demo_app, seen


def test_spec_options_parses_the_text_forms() -> None:
    demo_app, seen = _demo_app(forms={"names": Form(repeat=True, aliases=("--name",))})
    assert runner.invoke(demo_app, ["go", "x"]).exit_code == 0
    assert seen[-1] == Demo()
    args = ["go", "x", "--coverage", "5%,0.2", "--fixed-mask", "--seed", "none", "--radius", "1:2", "--name", "b"]
    result = runner.invoke(demo_app, [*args, "--names", "c,d", "--pattern", "grid"])
    assert result.exit_code == 0, result.output
    assert seen[-1] == Demo("grid", [0.05, 0.2], False, None, (1.0, 2.0), ["b", "c,d"])
    bad = runner.invoke(demo_app, ["go", "x", "--radius", "1"])
    assert bad.exit_code == 1 and "--radius expects LOW:HIGH (2 values)" in str(bad.exception)
    bad = runner.invoke(demo_app, ["go", "x", "--seed", "-2"])
    assert "--seed must be in [0, inf)" in str(bad.exception)


def test_spec_options_as_dict_keeps_only_what_was_given() -> None:
    demo_app, seen = _demo_app(as_dict=True)
    assert runner.invoke(demo_app, ["go", "x"]).exit_code == 0
    assert seen[-1] == {}
    assert runner.invoke(demo_app, ["go", "x", "--per-slice", "--coverage", "10%"]).exit_code == 0
    assert seen[-1] == {"per_slice": True, "coverages": [0.1]}


def test_spec_options_refuses_clashing_flags() -> None:
    with pytest.raises(TypeError, match="clashes"):

        @spec_options(Demo, into="spec")
        def clash(spec: object, seed: int = 0) -> None:
            pass


# --------------------------------------------------------------------------------------------------- methods


def test_no_method_is_special_cased_in_the_cli() -> None:
    for path in (SRC / "cli").glob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert "DIP_METHODS" not in text and "GAN_METHODS" not in text, path.name


@pytest.mark.usefixtures("mean_fill")
def test_method_help_lists_every_method_with_its_options_a_plugins_too(tmp_path: Path) -> None:
    listing = invoke("reconstruct", "--method", "help")
    assert listing.exit_code == 0
    text = listing.stdout
    assert "  mean-fill   Every unscanned pixel takes the mean of the scanned ones" in text
    assert "      fill=none: value of the unscanned pixels; empty: the scanned mean" in text
    assert "      context=5 [slices]: slices on each side" in text  # linear3d's options spec
    assert "      tile=512 [px]: slices larger than this" in text and "loads trained weights (--weights)" in text
    assert "options: those of dip" in text  # dip3d shares dip's options spec
    text = invoke("compare", "--method", "help").stdout
    assert "      mean-fill.fill=none:" in text and "--option METHOD.KEY=VALUE" in text

    # the plugin takes its options through --option in compare too
    source = tmp_path / "flat.tif"
    tifffile.imwrite(source, np.full((1, 32, 32), 200, np.uint8))
    result = invoke(
        "compare", source, "--method", "mean-fill", "--option", "mean-fill.fill=0.5", "--out", tmp_path / "r"
    )
    assert result.exit_code == 0, result.output
    spec = json.loads((tmp_path / "r" / "params.json").read_text())["spec"]
    assert spec["method_options"] == {"mean-fill": {"fill": 0.5}}
    refused = invoke(
        "compare", source, "--method", "mean-fill", "--option", "mean-fill.colour=1", "--out", tmp_path / "x"
    )
    assert refused.exit_code == 2 and "its options are ['fill']" in refused.stderr


def test_weights_and_presets_follow_the_method_flags(tmp_path: Path) -> None:
    volume = tmp_path / "in.tif"
    result = invoke(
        "compare", volume, "--method", "linear,nearest", "--weights", "w.safetensors", "--out", tmp_path / "r"
    )
    assert result.exit_code == 2 and "--weights applies to gan, gan-mse and self; add one to --method" in result.stderr
    result = invoke("compare", volume, "--method", "linear", "--dip-preset", "paper", "--out", tmp_path / "r")
    assert result.exit_code == 2 and "--dip-preset/--dip-config apply to dip and dip3d" in result.stderr
    result = invoke("compare", volume, "--method", "dip3d", "--dip-preset", "quick", "--out", tmp_path / "r")
    assert result.exit_code == 2 and "--dip-preset must be one of ['paper', 'default'], got 'quick'" in result.stderr


def test_reconstruct_reads_method_options_from_a_file(flyem_crop_uint8: np.ndarray, tmp_path: Path) -> None:
    source = tmp_path / "crop.tif"
    tifffile.imwrite(source, flyem_crop_uint8[:3, :40, :40])
    assert invoke("simulate", source, "--coverage", "20%", "--out", tmp_path / "s.tif", "-q").exit_code == 0
    options = tmp_path / "linear3d.json"
    options.write_text(json.dumps({"context": 1, "z_scale": 2.0}))
    args = ["reconstruct", tmp_path / "s.tif", "--mask", tmp_path / "s_mask.tif", "--method", "linear3d"]
    result = invoke(*args, "--method-config", options, "--option", "z_scale=0.5", "--out", tmp_path / "r.tif")
    assert result.exit_code == 0, result.output
    assert read_metadata(tmp_path / "r.tif")["options"] == {"context": 1, "z_scale": 0.5}  # --option wins
    options.write_text(json.dumps({"contxt": 1}))
    result = invoke(*args, "--method-config", options, "--out", tmp_path / "r2.tif")
    assert result.exit_code == 2 and "unknown field(s) ['contxt'] for linear3d" in result.stderr
