"""Read the JSON parameter files users hand to the CLI (comparison specs, DIP configs), with errors that help."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_json_object(path: str | Path, what: str, holds: str) -> dict[str, Any]:
    """The JSON object in ``path``; ``what`` names the file in errors (e.g. "DIP config"), ``holds`` its fields."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} file not found: {path}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"{what} {path} is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise ValueError(f"{what} {path} must hold a JSON object of {holds}")
    return data
