"""The one safe path for network weights: safetensors files with a JSON model card beside them.

Shipped weights (``napari_sparse_sem/weights/``) and user-trained weights are written and read only here. A weights
file ``model.safetensors`` has its card in ``model.json``: what it was trained on (data, slices), the exact command, its
evaluation numbers, the date, and the architecture config needed to rebuild the network. We never unpickle: a pickle
(a ``torch.save`` ``.pt``/``.pth`` file) can run arbitrary code when loaded, so such files are refused with a clear
error. The card records the SHA-256 of its weights file, so a card that belongs to another file is caught too.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import struct
import tempfile
from pathlib import Path
from typing import Any

from napari_sparse_sem.jsonfile import read_json_object
from napari_sparse_sem.provenance import stamp

SUFFIX = ".safetensors"
_MAX_HEADER = 100 * 1024 * 1024  # safetensors' own limit on the JSON header


def card_path(path: str | Path) -> Path:
    """The model card of a weights file: ``model.safetensors`` → ``model.json``."""
    return Path(path).with_suffix(".json")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _readable(path: Path) -> None:
    """Give a temporary file (created 0600) the usual permissions of a new file (0666 less the umask)."""
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, 0o666 & ~umask)


def _describe_non_safetensors(head: bytes) -> str:
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (what torch.save writes: a pickled .pt/.pth checkpoint)"
    if head[:1] == b"\x80" or head.startswith((b"(dp", b"}q", b"ccopy_reg")):
        return "a Python pickle (e.g. a .pt/.pth checkpoint)"
    return "not a safetensors file"


def check_safetensors(path: str | Path) -> Path:
    """Check that ``path`` exists and is a safetensors file (by its header, whatever its name); return it.

    A missing file is :class:`FileNotFoundError`; anything else (a pickle, a zip, a truncated file) is
    :class:`ValueError` saying that only safetensors are loaded.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    size = path.stat().st_size
    with open(path, "rb") as handle:
        head = handle.read(9)
    problem = None
    if len(head) < 9:
        problem = "too short to be a safetensors file"
    else:
        (header_len,) = struct.unpack("<Q", head[:8])
        if header_len > min(_MAX_HEADER, size - 8) or head[8:9] != b"{":
            problem = _describe_non_safetensors(head)
    if problem is not None:
        raise ValueError(
            f"{path} is {problem}. napari-sparse-sem only loads weights in the safetensors format, never pickles "
            "(loading a pickle can run arbitrary code). Re-save the tensors with safetensors.torch.save_file, or "
            "train them with `sparse-sem train-estimator`."
        )
    return path


def save_weights(
    path: str | Path, tensors: dict[str, Any], card: dict[str, Any], overwrite: bool = False
) -> tuple[Path, Path]:
    """Write ``tensors`` (name → torch tensor) to ``path`` (``.safetensors``) and ``card`` beside it (``.json``).

    The card should say what the weights were trained on (``data``, ``command``, ``metrics``) and hold the architecture
    config needed to rebuild the network; ``date`` (today), ``format``, ``tensors`` (their count) and ``sha256`` (of the
    weights file) are filled in. Existing files are refused unless ``overwrite``. Both files are written to a temporary
    name first and then moved into place, so an interrupted save never leaves a half-written file. Returns both paths.
    """
    import torch
    from safetensors.torch import save_file

    path = Path(path)
    if path.suffix != SUFFIX:
        raise ValueError(f"weights are saved as safetensors: the file name must end with {SUFFIX}, got {path.name!r}")
    card_file = card_path(path)
    existing = [str(p) for p in (path, card_file) if p.exists()]
    if existing and not overwrite:
        raise FileExistsError(
            f"{' and '.join(existing)} already exist(s); pass overwrite=True (--overwrite on the command line) to "
            "replace it, or choose another file name"
        )
    if not tensors:
        raise ValueError("no tensors to save")
    clean = {}
    for name, tensor in tensors.items():
        if not isinstance(tensor, torch.Tensor):
            raise TypeError(f"tensor {name!r} is a {type(tensor).__name__}, not a torch.Tensor")
        clean[str(name)] = tensor.detach().to("cpu").contiguous().clone()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}-", suffix=SUFFIX, dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        save_file(clean, str(tmp), metadata={"format": "pt", "card": card_file.name})
        _readable(tmp)
        full_card = stamp(
            {
                "date": _dt.date.today().isoformat(),
                **card,
                "format": "safetensors",
                "weights_file": path.name,
                "tensors": len(clean),
                "sha256": _sha256(tmp),
            }
        )
        json.dumps(full_card, default=_json_default)  # a card that cannot be written fails before anything is replaced
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    write_card(card_file, full_card)
    return path, card_file


def _json_default(value: Any) -> Any:
    try:
        import numpy as np

        if isinstance(value, np.generic):
            return value.item()
        if isinstance(value, np.ndarray):
            return value.tolist()
    except ImportError:  # pragma: no cover
        pass
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"cannot write {type(value).__name__} to a model card")


def write_card(card_file: str | Path, card: dict[str, Any]) -> Path:
    """Write a model card (JSON) atomically."""
    card_file = Path(card_file)
    text = json.dumps(card, indent=2, default=_json_default) + "\n"
    fd, tmp_name = tempfile.mkstemp(prefix=f".{card_file.stem}-", suffix=".json", dir=card_file.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        _readable(Path(tmp_name))
        os.replace(tmp_name, card_file)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return card_file


def read_card(path: str | Path) -> dict[str, Any]:
    """The model card of the weights file ``path`` (clear errors when it is missing or not a JSON object)."""
    card_file = card_path(path)
    if not card_file.is_file():
        raise FileNotFoundError(
            f"model card {card_file} not found beside {Path(path).name}: every weights file needs its card (it holds "
            "the architecture needed to rebuild the network)"
        )
    return read_json_object(card_file, "model card", "model-card fields (architecture, data, command, metrics)")


def update_card(path: str | Path, **fields: Any) -> dict[str, Any]:
    """Add or replace top-level ``fields`` of the card of weights file ``path`` (e.g. evaluation ``metrics``)."""
    card = read_card(path)
    card.update(fields)
    write_card(card_path(path), card)
    return card


def load_weights(path: str | Path, device: str = "cpu") -> tuple[dict[str, Any], dict[str, Any]]:
    """``(tensors, card)`` of the weights file ``path``; tensors are placed on ``device``.

    Errors: :class:`FileNotFoundError` for a missing file or card; :class:`ValueError` for a file that is not
    safetensors (pickles are never loaded), a card whose ``sha256`` names another file, or NaN/infinite weights.
    """
    from safetensors.torch import load_file

    path = check_safetensors(path)
    card = read_card(path)
    expected = card.get("sha256")
    if expected and expected != _sha256(path):
        raise ValueError(
            f"the model card {card_path(path).name} belongs to another weights file (its sha256 does not match "
            f"{path.name}); re-save the weights and card together"
        )
    try:
        tensors = load_file(str(path), device=str(device))
    except Exception as exc:  # safetensors raises its own error types for corrupt files
        raise ValueError(f"cannot read the safetensors file {path}: {exc}") from None
    check_finite(tensors, path)
    return tensors, card


def check_finite(tensors: dict[str, Any], path: str | Path) -> None:
    """``ValueError`` naming the file and tensors when any floating-point tensor holds NaN or infinity.

    Such weights (a diverged training, a damaged file whose card was re-made) would silently turn every output pixel
    into NaN or 0, so they are refused at load time."""
    import torch

    bad = [
        name
        for name, tensor in tensors.items()
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all())
    ]
    if bad:
        shown = ", ".join(bad[:3]) + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        raise ValueError(
            f"{path} holds NaN or infinite values in {len(bad)} tensor(s) ({shown}); these weights are broken (a "
            "diverged training?) — use other weights or train again"
        )
