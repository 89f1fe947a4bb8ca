"""Remember widget parameters between napari sessions (QSettings, one JSON blob per widget)."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

from qtpy.QtCore import QSettings

ORGANIZATION = "napari-sparse-sem"
APPLICATION = "widgets"


def _settings() -> QSettings:
    return QSettings(QSettings.IniFormat, QSettings.UserScope, ORGANIZATION, APPLICATION)


def save_values(group: str, widgets: Mapping[str, Any]) -> None:
    """Store the ``.value`` of each magicgui widget under ``group``."""
    values = {}
    for name, widget in widgets.items():
        value = widget.value
        if isinstance(value, tuple):
            value = list(value)
        elif isinstance(value, os.PathLike):
            value = os.fspath(value)
        values[name] = value
    settings = _settings()
    settings.setValue(f"{group}/values", json.dumps(values))
    settings.sync()


def restore_values(group: str, widgets: Mapping[str, Any]) -> None:
    """Put stored values back into the widgets; values that no longer fit (a removed choice) are skipped."""
    raw = _settings().value(f"{group}/values", "")
    try:
        values = json.loads(raw) if raw else {}
    except (TypeError, ValueError):
        return
    if not isinstance(values, dict):
        return
    for name, value in values.items():
        widget = widgets.get(name)
        if widget is None:
            continue
        try:
            widget.value = value
        except (ValueError, TypeError, KeyError):
            continue
