"""The safe weights path: safetensors + model card round trips, refusals (overwrite, pickles, missing cards), U-Net."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_sparse_sem.nn.unet import UNet, UNetConfig, count_parameters
from napari_sparse_sem.nn.weights import card_path, load_weights, read_card, save_weights, update_card


def _tensors() -> dict[str, torch.Tensor]:
    gen = torch.Generator().manual_seed(0)
    return {
        "conv.weight": torch.randn(4, 3, 3, 3, generator=gen),
        "bn.num_batches_tracked": torch.tensor(7, dtype=torch.int64),
        "half": torch.randn(5, generator=gen).half(),
    }


def test_round_trip_keeps_tensors_and_card(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    tensors = _tensors()
    card = {"data": "flyem.tif", "command": "sparse-sem train-estimator ...", "metrics": {"r": 0.5}, "arch": [1, 2]}
    written, card_file = save_weights(path, tensors, card)
    assert written == path and card_file == tmp_path / "model.json" == card_path(path)
    loaded, loaded_card = load_weights(path)
    assert set(loaded) == set(tensors)
    for name, tensor in tensors.items():
        assert loaded[name].dtype == tensor.dtype
        assert torch.equal(loaded[name], tensor)
    for key, value in card.items():
        assert loaded_card[key] == value
    assert loaded_card["format"] == "safetensors" and loaded_card["tensors"] == 3
    assert len(loaded_card["sha256"]) == 64 and loaded_card["date"][:2] == "20"
    assert json.loads(card_file.read_text())["weights_file"] == "model.safetensors"
    assert path.stat().st_mode & 0o044  # readable by others (not the 0600 of a temporary file)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary files left


def test_refuses_to_overwrite_unless_asked(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_weights(path, _tensors(), {"v": 1})
    with pytest.raises(FileExistsError, match="overwrite"):
        save_weights(path, _tensors(), {"v": 2})
    assert read_card(path)["v"] == 1
    save_weights(path, {"x": torch.ones(2)}, {"v": 2}, overwrite=True)
    tensors, card = load_weights(path)
    assert card["v"] == 2 and list(tensors) == ["x"]
    # a stray card alone also blocks a new file of that name
    other = tmp_path / "other.safetensors"
    card_path(other).write_text("{}")
    with pytest.raises(FileExistsError, match="choose another file name"):
        save_weights(other, _tensors(), {})


def test_save_rejects_other_suffixes_and_non_tensors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"\.safetensors"):
        save_weights(tmp_path / "model.pt", _tensors(), {})
    with pytest.raises(TypeError, match=r"not a torch\.Tensor"):
        save_weights(tmp_path / "model.safetensors", {"a": np.ones(3)}, {})
    with pytest.raises(TypeError, match="model card"):
        save_weights(tmp_path / "model.safetensors", _tensors(), {"bad": object()})
    assert not list(tmp_path.iterdir())  # nothing half-written


@pytest.mark.parametrize("kind", ["torch.save", "pickle", "text"])
def test_refuses_pickles_and_other_files(tmp_path: Path, kind: str) -> None:
    path = tmp_path / "model.safetensors"  # the name does not matter: the content is checked
    if kind == "torch.save":
        torch.save({"w": torch.ones(3)}, path)
    elif kind == "pickle":
        path.write_bytes(pickle.dumps({"w": [1.0, 2.0]}))
    else:
        path.write_text("hello, these are not weights")
    card_path(path).write_text(json.dumps({"data": "x"}))
    with pytest.raises(ValueError, match="only loads weights in the safetensors format, never pickles"):
        load_weights(path)


def test_missing_file_card_and_mismatched_card(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="weights file not found"):
        load_weights(tmp_path / "absent.safetensors")
    path = tmp_path / "model.safetensors"
    save_weights(path, _tensors(), {"v": 1})
    save_weights(tmp_path / "b.safetensors", {"x": torch.zeros(1)}, {"v": 2})
    card_path(path).unlink()
    with pytest.raises(FileNotFoundError, match=r"model card .* not found"):
        load_weights(path)
    card_path(path).write_text((tmp_path / "b.json").read_text())  # another file's card
    with pytest.raises(ValueError, match="belongs to another weights file"):
        load_weights(path)
    card_path(path).write_text("[1, 2]")
    with pytest.raises(ValueError, match="JSON object"):
        load_weights(path)


def test_update_card_adds_metrics(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_weights(path, _tensors(), {"v": 1})
    update_card(path, metrics={"correlation": 0.5})
    _, card = load_weights(path)  # the weights' checksum still matches
    assert card["metrics"] == {"correlation": 0.5} and card["v"] == 1


@pytest.mark.parametrize("shape", [(64, 64), (37, 250), (5, 9)])
def test_unet_any_size_and_size(shape: tuple[int, int]) -> None:
    torch.manual_seed(0)
    net = UNet(UNetConfig(3, 2)).eval()
    assert 200_000 <= count_parameters(net) <= 600_000
    with torch.no_grad():
        out = net(torch.rand(2, 3, *shape))
    assert out.shape == (2, 2, *shape)
    assert torch.isfinite(out).all()


def test_unet_config_round_trip_and_errors() -> None:
    config = UNetConfig(3, 1, base_channels=8, levels=2, norm="group", upsampling="transpose")
    assert UNetConfig.from_dict(config.to_dict()) == config
    with pytest.raises(ValueError, match=r"unknown U-Net config field\(s\)"):
        UNetConfig.from_dict({**config.to_dict(), "width": 3})
    with pytest.raises(ValueError, match="levels"):
        UNetConfig(3, 1, levels=0)
    with pytest.raises(ValueError, match="norm"):
        UNetConfig(3, 1, norm="layer")


def test_unet_weights_round_trip_give_the_same_outputs(tmp_path: Path) -> None:
    torch.manual_seed(1)
    config = UNetConfig(3, 1, base_channels=8, levels=2)
    net = UNet(config)
    net.train()
    net(torch.rand(4, 3, 32, 32))  # move the batch-norm statistics away from their initial values
    net.eval()
    path = tmp_path / "unet.safetensors"
    save_weights(path, net.state_dict(), {"architecture": {"name": "unet", "config": config.to_dict()}})
    tensors, card = load_weights(path)
    rebuilt = UNet(UNetConfig.from_dict(card["architecture"]["config"]))
    rebuilt.load_state_dict(tensors)
    rebuilt.eval()
    x = torch.rand(1, 3, 40, 30)
    with torch.no_grad():
        assert torch.equal(net(x), rebuilt(x))


def test_non_finite_weights_are_refused_naming_the_file(tmp_path: Path) -> None:
    tensors = _tensors()
    tensors["conv.weight"][0, 0, 0, 0] = float("nan")
    tensors["half"][1] = float("inf")
    path, _ = save_weights(tmp_path / "broken.safetensors", tensors, {"data": "test"})
    with pytest.raises(ValueError, match=r"broken\.safetensors holds NaN or infinite values in 2 tensor\(s\)"):
        load_weights(path)
