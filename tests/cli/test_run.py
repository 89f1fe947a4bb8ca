"""`sparse-sem run`: a saved result runs again from the record beside it and reproduces its numbers."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from napari_sparse_sem.cli import app
from napari_sparse_sem.io import read_volume
from napari_sparse_sem.io.readers import read_metadata

runner = CliRunner()
CROP = Path(__file__).resolve().parents[2] / "src" / "napari_sparse_sem" / "data" / "flyem_medulla_crop_z120-151.tif"
WALL_CLOCK = ("seconds", "sampler_seconds")
"""Record fields that measure wall-clock time: the only ones a re-run may change."""


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def without_timings(records: list[dict]) -> list[dict]:
    return [{k: v for k, v in r.items() if k not in WALL_CLOCK} for r in records]


def test_run_reproduces_a_saved_comparison(tmp_path: Path) -> None:
    first = tmp_path / "first"
    made = invoke(
        "compare", CROP, "--out", first, "--slices", "3:5", "--roi", "0:96,0:96", "--patterns", "random,hexgrid",
        "--coverage", "5%,20%", "--method", "linear,biharmonic", "-q",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    params = json.loads((first / "params.json").read_text())
    assert params["run"]["command"] == "compare"
    assert params["run"]["arguments"]["volume"] == str(CROP)

    again = invoke("run", first / "params.json", "--out", tmp_path / "again", "-q")
    assert again.exit_code == 0, again.output
    old = json.loads((first / "metrics.json").read_text())
    new = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert len(old) == 2 * 2 * 2 * 2
    assert without_timings(new) == without_timings(old)  # every number but wall-clock seconds, exactly

    # The old folder is not replaced without --overwrite.
    refused = invoke("run", first / "params.json")
    assert refused.exit_code == 2 and "--overwrite" in refused.output


def test_run_reproduces_a_saved_active_run(tmp_path: Path) -> None:
    first = tmp_path / "first"
    made = invoke(
        "active", CROP, "--out", first, "--slices", "5:6", "--roi", "0:96,0:96", "--initial", "lowres:4",
        "--budget", "10%", "--estimator", "gradient", "--baselines", "random", "-q",
    )  # fmt: skip
    assert made.exit_code == 0, made.output
    again = invoke("run", first, "--out", tmp_path / "again", "-q")  # the report folder works as well
    assert again.exit_code == 0, again.output
    old = json.loads((first / "metrics.json").read_text())
    new = json.loads((tmp_path / "again" / "metrics.json").read_text())
    assert without_timings(new["records"]) == without_timings(old["records"])
    assert new["curves"] == old["curves"] and new["config"] == old["config"]


def test_run_writes_a_simulated_volume_again_from_its_metadata(tmp_path: Path) -> None:
    sparse = tmp_path / "sparse.tif"
    made = invoke("simulate", CROP, "--out", sparse, "--slices", "0:3", "--pattern", "spiral", "--coverage", "10%")
    assert made.exit_code == 0, made.output
    assert read_metadata(sparse)["run"]["command"] == "simulate"
    again = invoke("run", sparse, "--out", tmp_path / "again.tif")
    assert again.exit_code == 0, again.output
    np.testing.assert_array_equal(read_volume(tmp_path / "again.tif").data, read_volume(sparse).data)
    np.testing.assert_array_equal(
        read_volume(tmp_path / "again_mask.tif").data, read_volume(tmp_path / "sparse_mask.tif").data
    )


def test_run_refuses_files_without_a_record(tmp_path: Path) -> None:
    plain = tmp_path / "params.json"
    plain.write_text(json.dumps({"command": "compare"}))
    result = invoke("run", plain)
    assert result.exit_code == 2
    assert "no run record" in result.output
    assert invoke("run", tmp_path / "missing.json").exit_code == 2


def test_rendered_command_line_runs_the_same_command(tmp_path: Path) -> None:
    """Model cards and messages show a record as a shell command; that command, typed in, does the same work."""
    import shlex

    from napari_sparse_sem.cli.run import command_line

    sparse = tmp_path / "sparse.tif"
    args = ["simulate", CROP, "--out", sparse, "--slices", "2:4", "--pattern", "hexgrid", "--coverage", "7%"]
    assert invoke(*args, "--fixed-mask", "--seed", "5").exit_code == 0
    record = read_metadata(sparse)["run"]
    words = shlex.split(command_line(record["command"], record["arguments"]))
    assert words[:3] == ["sparse-sem", "simulate", str(CROP)]
    assert "--fixed-mask" in words and "--quiet" not in words
    words[words.index("--out") + 1] = str(tmp_path / "typed.tif")
    assert invoke(*words[1:]).exit_code == 0
    np.testing.assert_array_equal(read_volume(tmp_path / "typed.tif").data, read_volume(sparse).data)
