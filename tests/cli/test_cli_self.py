"""`sparse-sem train-self` end to end on a real FlyEM crop: simulate → train-self → reconstruct --method self."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile
from typer.testing import CliRunner

from napari_sparse_sem.cli import app
from napari_sparse_sem.nn.weights import read_card

runner = CliRunner()


def invoke(*args: object) -> object:
    return runner.invoke(app, [str(a) for a in args])


def test_train_self_then_reconstruct_with_self(flyem_crop_uint8: np.ndarray, tmp_path: Path) -> None:
    volume = tmp_path / "crop.tif"
    tifffile.imwrite(volume, flyem_crop_uint8[:4, :80, :80], photometric="minisblack")
    sparse, mask = tmp_path / "sparse.tif", tmp_path / "sparse_mask.tif"
    simulated = invoke("simulate", volume, "--pattern", "random", "--coverage", "0.1", "--fixed-mask", "--out", sparse)
    assert simulated.exit_code == 0, simulated.output
    weights = tmp_path / "w.safetensors"
    args = ["train-self", sparse, "--mask", mask, "--slices", "0:4", "--iterations", "3", "--crop", "64",
            "--batch-size", "2", "--hidden", "10%:40%", "--device", "cpu", "--seed", "1", "--out", weights]  # fmt: skip
    result = invoke(*args)
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "3 iterations" in out and "start flyem, context 0" in out
    assert "validation PSNR at" in out and "linear" in out
    assert "note: one mask for every slice" in out
    assert f"next: sparse-sem reconstruct {sparse} --mask {mask} --method self --weights {weights}" in out
    card = read_card(weights)
    assert card["training"]["kind"] == "self-supervised" and card["training"]["hidden"] == [0.1, 0.4]
    assert card["training"]["minutes"] is None and card["training"]["iterations"] == 3  # --iterations alone
    assert card["command"].startswith("sparse-sem train-self") and card["data"]["file"] == "sparse.tif"
    again = invoke(*args)
    assert again.exit_code == 2 and "--overwrite" in again.output
    recon = tmp_path / "recon.tif"
    done = invoke("reconstruct", sparse, "--mask", mask, "--method", "self", "--weights", weights, "--out", recon, "-q")
    assert done.exit_code == 0, done.output
    image = tifffile.imread(recon)
    scanned = tifffile.imread(mask) > 0
    assert image.shape == (4, 80, 80) and np.array_equal(image[scanned], tifffile.imread(sparse)[scanned])
    missing = invoke("reconstruct", sparse, "--mask", mask, "--method", "self", "--out", tmp_path / "r2.tif")
    assert missing.exit_code == 2 and "sparse-sem train-self" in missing.output
    bad = invoke("train-self", sparse, "--mask", mask, "--hidden", "0.6:0.2", "--out", tmp_path / "x.safetensors")
    assert bad.exit_code == 2 and "low <= high" in bad.output
