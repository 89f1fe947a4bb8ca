"""`sparse-sem train-gan`, and `--method gan/gan-mse --weights` in `reconstruct` and `compare`, on real FlyEM crops."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from napari_sparse_sem.cli import app
from napari_sparse_sem.nn.weights import read_card

runner = CliRunner()


@pytest.fixture(scope="module")
def trained(flyem_crop_uint8: np.ndarray, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(volume, weights): 4 slices of 136² FlyEM and a compact generator trained on them for 4 iterations."""
    folder = tmp_path_factory.mktemp("cli_gan")
    volume = folder / "crop.tif"
    tifffile.imwrite(volume, flyem_crop_uint8[:4, 50:186, 50:186], photometric="minisblack")
    out = folder / "gan.safetensors"
    args = [
        "train-gan", volume, "--slices", "0:4", "--patterns", "spiral,random", "--coverage", "0.05:0.1",
        "--iterations", "4", "--batch-size", "2", "--pretrain-fraction", "0.5", "--device", "cpu", "--seed", "2",
        "--out", out,
    ]  # fmt: skip
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "4 iterations" in result.stdout and "variants mse, gan" in result.stdout and "held-out PSNR" in result.stdout
    return volume, out


def test_train_gan_writes_weights_card_curves_and_refuses_to_overwrite(trained: tuple[Path, Path]) -> None:
    volume, out = trained
    card = read_card(out)
    assert card["data"]["slices"] == [0, 1, 2, 3] and card["training"]["patterns"] == ["spiral", "random"]
    assert card["training"]["coverage"] == [0.05, 0.1] and card["training"]["seed"] == 2
    # The card's command is rendered from the run record: the flags given, in the CLI's own spelling.
    assert card["command"].startswith(f"sparse-sem train-gan {volume} --out {out} --slices 0:4 --device cpu")
    for flags in ("--patterns spiral,random", "--coverage 0.05:0.1", "--iterations 4", "--seed 2"):
        assert flags in card["command"], flags
    assert out.with_name("gan.curves.png").is_file() and out.with_name("gan.train-state.safetensors").is_file()
    again = runner.invoke(app, ["train-gan", str(volume), "--iterations", "4", "--out", str(out)])
    assert again.exit_code == 2 and "--resume" in again.output
    both = runner.invoke(app, ["train-gan", str(volume), "--out", str(out), "--resume", "--overwrite"])
    assert both.exit_code == 2 and "give one of them" in both.output
    bad = runner.invoke(
        app, ["train-gan", str(volume), "--coverage", "0.3:0.1", "--out", str(out.parent / "x.safetensors")]
    )
    assert bad.exit_code == 2 and "low <= high" in bad.output


def test_reconstruct_and_compare_take_gan_weights(trained: tuple[Path, Path], tmp_path: Path) -> None:
    volume, weights = trained
    sparse = tmp_path / "sim.tif"
    result = runner.invoke(
        app,
        ["simulate", str(volume), "--pattern", "spiral", "--coverage", "0.05", "--out", str(sparse), "--slices", "3:4"],
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    mask = tmp_path / "sim_mask.tif"
    out = tmp_path / "rec.tif"
    args = ["reconstruct", sparse, "--mask", mask, "--out", out, "--method", "gan-mse", "--weights", weights]
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert tifffile.imread(out).shape[-2:] == (136, 136)

    report = tmp_path / "report"
    args = [
        "compare", volume, "--out", report, "--patterns", "spiral", "--coverage", "0.05", "--slices", "3:4",
        "--method", "linear,gan-mse,gan", "--weights", weights,
    ]  # fmt: skip
    result = runner.invoke(app, [str(a) for a in args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    records = json.loads((report / "metrics.json").read_text())
    assert sorted({r["method"] for r in records}) == ["gan", "gan-mse", "linear"]
    assert all(np.isfinite(r["psnr"]) for r in records)

    wrong = runner.invoke(app, [str(a) for a in [*args[:-3], "linear", "--weights", weights]])
    assert wrong.exit_code == 2 and "--weights applies to gan, gan-mse and self" in wrong.output
    pickle = tmp_path / "model.pt"
    pickle.write_bytes(b"\x80\x04\x95 not a safetensors file")
    bad = runner.invoke(app, [str(a) for a in [*args[:-1], pickle]])
    assert bad.exit_code == 2 and "safetensors" in bad.output
