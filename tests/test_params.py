"""The parameter-model base (``params.Spec``) and the models built on it: strict records, schema versions, bounds,
choices and percentages, nested specs and tuples, field info for the faces; every converted model round-trips and
still reads the JSON the package ships or wrote before schema versions existed."""

from __future__ import annotations

import json
from dataclasses import MISSING, dataclass
from importlib.resources import files

import numpy as np
import pytest

from napari_sparse_sem.active.pipeline import WDPPConfig
from napari_sparse_sem.nn.gan import GANConfig, gan_config
from napari_sparse_sem.nn.unet import UNetConfig
from napari_sparse_sem.params import SCHEMA_KEY, Spec, fields_of, param
from napari_sparse_sem.surrogate.dataset import DatasetSpec
from napari_sparse_sem.surrogate.geometry import GeometrySpec
from napari_sparse_sem.surrogate.model import SurrogateConfig
from napari_sparse_sem.surrogate.montecarlo import MCConfig
from napari_sparse_sem.surrogate.stack import StackSpec


@dataclass(frozen=True)
class Beam(Spec):
    kind = "beam"

    energy_kev: float = param(2.0, low=0.1, high=50.0, unit="keV", label="beam energy", help="Beam energy.")
    dwell: float = param(1.0, low=0.0, low_open=True, help="Dwell time.", flag="dwell-us")
    detector: str = param("bse", choices=("bse", "se"), help="Detector.")


@dataclass(frozen=True)
class Scan(Spec):
    kind = "scan"
    version = 2

    coverage: float = param(0.1, percent=True, low=0.0, high=1.0, low_open=True, help="Fraction scanned.")
    roi: tuple[int, int, int, int] | None = param(None, help="Region (y0, y1, x0, x1).", widget=False)
    points: tuple[tuple[int, int], ...] = param((), cli=False, help="Extra points (row, col).")
    beam: Beam = param(default_factory=Beam, help="The beam.")
    seed: int | None = param(None, none_means="a fresh random seed", help="Random seed.")
    note: str = ""  # an undeclared field: no ParamInfo, no checks

    def validate(self) -> None:
        if self.roi is not None and not (self.roi[0] < self.roi[1] and self.roi[2] < self.roi[3]):
            raise ValueError(f"roi must be (y0, y1, x0, x1) with y0 < y1 and x0 < x1, got {self.roi}")


def test_from_dict_is_strict_and_names_unknown_keys() -> None:
    assert Beam.from_dict({"energy_kev": 5.0}) == Beam(energy_kev=5.0)
    with pytest.raises(ValueError, match=r"unknown beam field\(s\) \['dwel', 'energy'\]; known fields: \["):
        Beam.from_dict({"energy": 5.0, "dwel": 2.0, "detector": "se"})
    with pytest.raises(ValueError, match="beam parameters must be a JSON object, got list"):
        Beam.from_dict([1, 2])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"unknown beam field\(s\) \['x'\]"):
        Scan.from_dict({"beam": {"x": 1}})  # nested records are strict too


def test_schema_version_round_trip_and_newer_versions_are_refused() -> None:
    data = Scan(coverage=0.2).to_dict()
    assert data[SCHEMA_KEY] == 2 and data["beam"][SCHEMA_KEY] == 1
    assert Scan.from_dict(json.loads(json.dumps(data))) == Scan(coverage=0.2)
    legacy = {k: v for k, v in data.items() if k != SCHEMA_KEY}  # records written before schema versions
    assert Scan.from_dict(legacy) == Scan(coverage=0.2)
    assert Scan.from_dict({**data, SCHEMA_KEY: 1}) == Scan(coverage=0.2)  # an older version is read as it is
    with pytest.raises(ValueError, match=r"scan parameters have schema version 3, newer than .* reads \(2\); update"):
        Scan.from_dict({**data, SCHEMA_KEY: 3})
    with pytest.raises(ValueError, match="schema version '2'"):
        Scan.from_dict({**data, SCHEMA_KEY: "2"})


def test_bounds_choices_and_percent_messages() -> None:
    with pytest.raises(ValueError, match=r"energy_kev must be in \[0.1, 50\], got 60.0$"):
        Beam(energy_kev=60.0)
    with pytest.raises(ValueError, match=r"dwell must be in \(0, inf\), got 0.0$"):
        Beam(dwell=0.0)
    with pytest.raises(ValueError, match=r"dwell must be in \(0, inf\), got nan"):
        Beam(dwell=float("nan"))
    with pytest.raises(ValueError, match=r"detector must be one of \['bse', 'se'\], got 'xray'"):
        Beam(detector="xray")
    with pytest.raises(ValueError, match="energy_kev must be a number, got '2'"):
        Beam(energy_kev="2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="energy_kev must be a number, got True"):
        Beam(energy_kev=True)
    with pytest.raises(ValueError, match="energy_kev needs a value, got None"):
        Beam(energy_kev=None)  # type: ignore[arg-type]
    with pytest.raises(
        ValueError, match=r"coverage must be in \(0, 1\], got 10 \(a fraction, not a percentage: write 0.1 for 10 %\)"
    ):
        Scan(coverage=10)
    assert Scan(coverage=1.0).coverage == 1.0  # a closed bound is allowed
    assert Beam(energy_kev=np.float32(3.0)).energy_kev == 3.0 and Beam(dwell=np.int64(2)).dwell == 2  # numpy numbers
    assert Scan(seed=None).seed is None  # nullable: the default is None


def test_validate_runs_on_construction_and_replace() -> None:
    scan = Scan(roi=(0, 8, 0, 8))
    with pytest.raises(ValueError, match="y0 < y1"):
        Scan(roi=(8, 0, 0, 8))
    with pytest.raises(ValueError, match="y0 < y1"):
        scan.replace(roi=(8, 0, 0, 8))
    with pytest.raises(ValueError, match="detector must be one of"):
        scan.beam.replace(detector="xray")
    assert scan.replace(seed=3).seed == 3 and scan.seed is None


def test_nested_spec_and_tuples_round_trip_through_json() -> None:
    scan = Scan(roi=(1, 9, 2, 10), points=((1, 2), (3, 4)), beam=Beam(energy_kev=5.0, detector="se"), seed=7)
    data = json.loads(json.dumps(scan.to_dict()))
    assert data["roi"] == [1, 9, 2, 10] and data["points"] == [[1, 2], [3, 4]] and data["beam"]["detector"] == "se"
    again = Scan.from_dict(data)
    assert again == scan and isinstance(again.roi, tuple) and isinstance(again.points[0], tuple)
    assert isinstance(again.beam, Beam)


def test_fields_of_describes_every_field_for_the_faces() -> None:
    views = {v.name: v for v in fields_of(Scan)}
    assert list(views) == ["coverage", "roi", "points", "beam", "seed", "note"]
    assert fields_of(Scan(coverage=0.5))[0].name == "coverage"  # an instance works too
    coverage = views["coverage"]
    assert coverage.info.percent and coverage.info.low == 0.0 and coverage.info.low_open and coverage.info.high == 1.0
    assert coverage.label == "Coverage" and coverage.flag == "--coverage" and coverage.default == 0.1
    assert coverage.info.help == "Fraction scanned."
    assert views["roi"].info.nullable and not views["roi"].info.widget
    assert views["roi"].base_type == tuple[int, int, int, int]
    assert not views["points"].info.cli
    assert views["beam"].default == Beam() and views["beam"].base_type is Beam
    assert views["seed"].info.none_means == "a fresh random seed" and views["seed"].base_type is int
    assert not views["note"].declared and views["note"].info.help == ""
    beam = {v.name: v for v in fields_of(Beam)}
    assert beam["energy_kev"].label == "Beam energy" and beam["energy_kev"].info.unit == "keV"
    assert beam["dwell"].flag == "--dwell-us" and beam["detector"].info.choices == ("bse", "se")
    assert fields_of(UNetConfig)[0].default is MISSING  # a required field


# --- the models converted to the base -----------------------------------------------------------------------------

MODELS: list[Spec] = [
    GeometrySpec(),
    GeometrySpec("mixture", 0.3, radius=(5.0, 8.0), mixture=(0.5, 0.25, 0.25), window=(40, 64, 72), seed=3),
    MCConfig(),
    MCConfig(energy_kev=5.0, electrons_per_pixel=20, element="Au", tilt_deg=30.0, seed=2),
    SurrogateConfig(),
    SurrogateConfig(layout="compact", representation="ehf", output_scale=(0.2, 0.9), extra={"note": "x"}),
    StackSpec(),
    StackSpec(slices=3, spacing=2.5, size=32, detector="se", snr=8.33, seed=1),
    DatasetSpec(),
    DatasetSpec(geometries=1, held_out=0, cuts=2, size=24, scale=0.3, mc=MCConfig(electrons_per_pixel=4)),
    WDPPConfig(),
    WDPPConfig(initial="random:0.05", budget=0.2, rounds=2, sigma=3.0, recon_options={"a": 1}, baselines=("random",)),
    GANConfig(),
    gan_config("paper", context=2, fill="zeros"),
    UNetConfig(3, 1),
    UNetConfig(3, 2, base_channels=8, levels=2, norm="group", upsampling="transpose", dropout=0.1),
]


@pytest.mark.parametrize("spec", MODELS, ids=lambda s: type(s).__name__)
def test_every_model_round_trips_through_json(spec: Spec) -> None:
    data = json.loads(json.dumps(spec.to_dict()))
    assert data[SCHEMA_KEY] == type(spec).version
    assert type(spec).from_dict(data) == spec
    legacy = {k: v for k, v in data.items() if k != SCHEMA_KEY}
    assert type(spec).from_dict(legacy) == spec  # params.json of runs from before schema versions
    with pytest.raises(ValueError, match=r"field\(s\) \['no_such_field'\]"):
        type(spec).from_dict({**data, "no_such_field": 1})


@pytest.mark.parametrize("cls", sorted({type(s) for s in MODELS}, key=lambda c: c.__name__), ids=lambda c: c.__name__)
def test_every_model_field_is_declared_with_help(cls: type[Spec]) -> None:
    for view in fields_of(cls):
        assert view.declared and view.info.help.endswith((".", ")")), (cls.__name__, view.name)


def test_old_records_without_schema_version_still_read() -> None:
    dataset = {  # a make-dataset store's "spec" attribute as written before schema versions
        "geometries": 72, "held_out": 8, "cuts": 2, "spacing": 12.0, "size": 128, "scale": 0.5, "pixel_size_nm": 5.0,
        "seed": 0, "mc": {"energy_kev": 2.0, "electrons_per_pixel": 50, "element": "C", "cutoff_kev": 0.05,
                          "bse_min_ev": 50.0, "bse_acceptance_deg": 90.0, "se_escape_depth_nm": 3.0,
                          "se_per_kev": 30.0, "tilt_deg": 0.0, "seed": 0},
    }  # fmt: skip
    spec = DatasetSpec.from_dict(dataset)
    assert spec.mc == MCConfig(electrons_per_pixel=50) and spec.cuts == 2
    geometry = GeometrySpec.from_dict({"shape": "cubes", "porosity": 0.3, "edge": [20, 30], "window": [10, 20, 30]})
    assert geometry.edge == (20, 30) and geometry.window == (10, 20, 30)
    active = {"initial": "lowres:4", "budget": 0.1, "rounds": 1, "estimator": "gradient", "estimator_weights": None,
              "sampler": "wdpp", "mode": "greedy", "condition": True, "gamma": 1.0, "sigma": "auto", "recon": "linear",
              "recon_options": {}, "baselines": ["random"], "seed": 0, "device": "auto"}  # fmt: skip
    assert WDPPConfig.from_dict(active) == WDPPConfig(baselines=("random",))


def test_shipped_model_cards_still_read() -> None:
    weights = files("napari_sparse_sem") / "weights"
    cards = {name: json.loads((weights / f"{name}.json").read_text()) for name in
             ("gan_flyem", "gan_flyem_context1", "error_unet_flyem", "surrogate_carbon")}  # fmt: skip
    assert GANConfig.from_dict(cards["gan_flyem"]["architecture"]) == gan_config("compact")
    assert GANConfig.from_dict(cards["gan_flyem_context1"]["architecture"]) == gan_config("compact", context=1)
    assert UNetConfig.from_dict(cards["error_unet_flyem"]["architecture"]["config"]) == UNetConfig(3, 1)
    surrogate = SurrogateConfig.from_dict(cards["surrogate_carbon"]["config"])
    assert surrogate.depth_scale == 44.0 and isinstance(surrogate.output_scale, tuple)
    assert SurrogateConfig.from_dict(cards["surrogate_carbon"]["training"]["model"]) == SurrogateConfig()
    # a card written now carries the schema version and compares by spec, not by raw dict
    assert GANConfig.from_dict(gan_config("compact").to_dict()) == GANConfig.from_dict(
        cards["gan_flyem"]["architecture"]
    )


def test_model_checks_keep_their_meaning() -> None:
    with pytest.raises(ValueError, match=r"porosity must be in \(0, 1\)"):
        GeometrySpec(porosity=1.0)
    with pytest.raises(ValueError, match="radius must be an interval 0 < low <= high"):
        GeometrySpec(radius=(5, 2))
    with pytest.raises(ValueError, match="mixture is three non-negative weights"):
        GeometrySpec(mixture=(1.0, -1.0, 1.0))
    with pytest.raises(ValueError, match="cutoff_kev must lie between 0 and the beam energy"):
        MCConfig(energy_kev=1.0, cutoff_kev=1.0)
    with pytest.raises(ValueError, match=r"tilt_deg must be in \[0, 89\)"):
        MCConfig(tilt_deg=89.0)
    with pytest.raises(ValueError, match="unknown element 'Xx'"):
        MCConfig(element="Xx")
    with pytest.raises(ValueError, match="output_scale must be two positive numbers"):
        SurrogateConfig(output_scale=(0.0, 1.0))
    with pytest.raises(ValueError, match="layout must be one of"):
        SurrogateConfig(layout="vgg")
    with pytest.raises(ValueError, match=r"slices must be in \[1, 100000\]"):
        StackSpec(slices=0)
    with pytest.raises(ValueError, match="not both"):
        StackSpec(dose=1.0, snr=1.0)
    with pytest.raises(ValueError, match="at least one geometry"):
        DatasetSpec(geometries=0, held_out=0)
    with pytest.raises(ValueError, match=r"size must be in \[16, 2048\]"):
        DatasetSpec(size=8)
    with pytest.raises(ValueError, match=r"budget must be in \(0, 1\), got 10 \(a fraction"):
        WDPPConfig(budget=10)
    with pytest.raises(ValueError, match="rounds must be a positive integer"):
        WDPPConfig(rounds=1.5)
    with pytest.raises(ValueError, match=r"mode must be one of \['greedy', 'sample'\]"):
        WDPPConfig(mode="best")
    with pytest.raises(ValueError, match=r"unknown baseline pattern\(s\) \['zigzag'\]"):
        WDPPConfig(baselines=("zigzag",))
    assert WDPPConfig(baselines=["random"]).baselines == ("random",) and WDPPConfig(sigma="2").sigma == 2.0
    with pytest.raises(ValueError, match="context must be a whole number"):
        GANConfig(context=1.5)
    with pytest.raises(ValueError, match=r"context must be in \[0, 8\]"):
        GANConfig(context=9)
    with pytest.raises(ValueError, match=r"disc_crop must be in \[16, inf\)"):
        GANConfig(disc_crop=8)
    assert GANConfig(outer_widths=[8, 8, 8]).outer_widths == (8, 8, 8)
    with pytest.raises(ValueError, match="base_channels must be a multiple of 4"):
        UNetConfig(3, 1, base_channels=6, norm="group")
    with pytest.raises(ValueError, match="in_channels must be an integer"):
        UNetConfig(2.5, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"dropout must be in \[0, 1\)"):
        UNetConfig(3, 1, dropout=1.0)
