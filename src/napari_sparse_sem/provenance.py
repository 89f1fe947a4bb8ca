"""The run record: what produced a result, saved beside it so ``sparse-sem run`` can produce it again.

A record is ``{"command": "compare", "arguments": {...}}``: the command (``surrogate train`` for a group's command) and
its arguments as JSON (paths absolute, so a re-run works from any folder). The CLI opens a record around each command
(:func:`recording`); whatever the command saves — a report's ``params.json``, a volume's metadata, a model card —
carries it under :data:`RUN_KEY` (:func:`stamp`). Widgets write the same record for results made from files.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path
from typing import Any

RUN_KEY = "run"
"""The key of the run record in every saved parameter block."""

_current: ContextVar[dict[str, Any] | None] = ContextVar("napari_sparse_sem_run", default=None)


def _plain(value: Any) -> Any:
    if isinstance(value, os.PathLike):
        return str(Path(value).absolute())
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if hasattr(value, "to_dict"):
        return value.to_dict()
    if hasattr(value, "item") and callable(value.item):  # numpy scalars
        return value.item()
    return value


def make_record(command: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """A JSON-ready run record for ``command`` called with ``arguments``."""
    return {"command": command, "arguments": {name: _plain(v) for name, v in arguments.items()}}


@contextmanager
def recording(command: str, arguments: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Make ``command(**arguments)`` the current run record while the block runs."""
    record = make_record(command, arguments)
    token = _current.set(record)
    try:
        yield record
    finally:
        _current.reset(token)


def current() -> dict[str, Any] | None:
    """The record of the command running now (None outside a recorded command, e.g. in napari or the Python API)."""
    return _current.get()


def stamp(params: dict[str, Any], record: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """``params`` with the run record (``record`` or the current one) under :data:`RUN_KEY`; unchanged without one."""
    record = record if record is not None else current()
    if record is not None:
        params[RUN_KEY] = dict(record)
    return params


def find_record(data: Any, where: str) -> dict[str, Any]:
    """The run record inside a saved parameter block (``params.json``, a model card, a volume's metadata).

    Raises ``ValueError`` naming ``where`` when there is none (a result from napari without a file source, or from a
    version before records).
    """
    if isinstance(data, Mapping):
        candidates = [
            data.get(RUN_KEY),
            data.get("parameters", {}).get(RUN_KEY) if isinstance(data.get("parameters"), Mapping) else None,
        ]
        for record in candidates:
            if (
                isinstance(record, Mapping)
                and isinstance(record.get("command"), str)
                and isinstance(record.get("arguments"), Mapping)
            ):
                return {"command": record["command"], "arguments": dict(record["arguments"])}
    raise ValueError(
        f"{where} holds no run record ({RUN_KEY!r}): it was not written by a sparse-sem command of this version "
        "(results made in napari from layers without a file, and results of older versions, cannot be re-run)"
    )


def read_saved(path: str | Path) -> dict[str, Any]:
    """The parameter block saved at ``path``: a report's ``params.json`` (or its folder), a model card (``.json``, or
    the ``.safetensors`` beside it), a JSON run record, or the metadata of a volume sparse-sem wrote.

    A missing file, invalid JSON or a file without parameters is a ``ValueError`` that names it.
    """
    import json

    path = Path(path)
    if path.is_dir() and (path / "params.json").is_file():
        path = path / "params.json"
    if path.suffix.lower() == ".safetensors" and path.with_suffix(".json").is_file():
        path = path.with_suffix(".json")
    if not path.exists():
        raise ValueError(f"{path} does not exist")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path.name} is not valid JSON ({exc.msg} at line {exc.lineno})") from None
    else:
        from napari_sparse_sem.io.readers import read_metadata

        try:
            data = read_metadata(path)
        except Exception as exc:  # any unreadable file: one message naming it, never a traceback
            raise ValueError(f"cannot read parameters from {path.name}: {exc}") from None
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path.name} holds no parameters (expected a JSON object written by sparse-sem)")
    return data
