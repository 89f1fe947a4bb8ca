"""Training checkpoints: networks and optimiser states as named tensors, saved through :mod:`.weights`.

A checkpoint is a safetensors file with a JSON card beside it, like any weights file, so it is written atomically and
never unpickled. A network's tensors are stored as ``<prefix>.<name>`` and an optimiser's state as
``<prefix>.<param index>.<key>`` (Adam's ``step``, ``exp_avg``, ``exp_avg_sq``); the optimiser's parameter groups
(learning rates, betas) are JSON and go into the card. Resuming from a checkpoint restores all of it, so a resumed
run continues with the same moments as an uninterrupted one.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any


def prefixed(prefix: str, tensors: Mapping[str, Any]) -> dict[str, Any]:
    """``tensors`` (e.g. a ``state_dict()``) with names ``<prefix>.<name>``."""
    return {f"{prefix}.{name}": tensor for name, tensor in tensors.items()}


def unprefixed(prefix: str, tensors: Mapping[str, Any]) -> dict[str, Any]:
    """The tensors named ``<prefix>.<name>``, by ``<name>`` (what :func:`prefixed` stored)."""
    start = len(prefix) + 1
    return {name[start:]: tensor for name, tensor in tensors.items() if name.startswith(prefix + ".")}


def optimizer_tensors(prefix: str, optimizer: Any) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """An optimiser's state as named tensors (``<prefix>.<index>.<key>``) plus its JSON-ready parameter groups."""
    import torch

    state = optimizer.state_dict()
    tensors = {}
    for index, values in state["state"].items():
        for key, value in values.items():
            tensors[f"{prefix}.{index}.{key}"] = value if isinstance(value, torch.Tensor) else torch.tensor(value)
    return tensors, state["param_groups"]


def load_optimizer(optimizer: Any, prefix: str, tensors: Mapping[str, Any], groups: list[dict[str, Any]]) -> None:
    """Restore what :func:`optimizer_tensors` saved into ``optimizer`` (built over the same parameters)."""
    state: dict[int, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        if name.startswith(prefix + "."):
            _, index, key = name.split(".", 2)
            state.setdefault(int(index), {})[key] = tensor
    optimizer.load_state_dict({"state": state, "param_groups": groups})


def save_checkpoint(path: str | Path, tensors: dict[str, Any], card: dict[str, Any]) -> Path:
    """Write a checkpoint (replacing the previous one in one step) and return its path."""
    from napari_sparse_sem.nn.weights import save_weights

    written, _ = save_weights(path, tensors, card, overwrite=True)
    return written


def load_checkpoint(path: str | Path, device: str = "cpu") -> tuple[dict[str, Any], dict[str, Any]]:
    """``(tensors, card)`` of a checkpoint; a missing one is a :class:`FileNotFoundError` that says how to start."""
    from napari_sparse_sem.nn.weights import load_weights

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"nothing to resume: no checkpoint {path}; start without resume (--resume)")
    return load_weights(path, device=device)
