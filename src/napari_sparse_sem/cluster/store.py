"""The record of a block-wise run inside its output store: what the run is, which blocks finished, which failed.

Beside the OME-Zarr arrays, a store written block by block holds a zarr group ``.sparse-sem-run`` (OME-Zarr readers
ignore it, and being plain zarr groups, no zarr tool warns about it): its attributes hold the run's fingerprint
(everything that decides the output: inputs, method, options, slices, the block plan) and settings; one small group per
finished block in ``done/`` (its attributes: seconds, worker, run id...; made by the worker after its chunks, so a
block killed mid-write has none and is computed again) and per failed block in ``failed/``. A block's group is built
in a hidden folder and renamed into place, so it appears whole or not at all. One entry per block needs no lock, works
on any shared file system and survives a SIGKILL of the driver. ``--resume`` skips the blocks in ``done/`` and refuses
a run whose fingerprint differs.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import uuid
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

__all__ = ["RUN_FOLDER", "RunRecord", "fingerprint"]

RUN_FOLDER = ".sparse-sem-run"


def fingerprint(settings: Mapping[str, Any]) -> str:
    """A short hash of the settings that decide a run's output (JSON with sorted keys)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


_GROUP = json.dumps({"zarr_format": 2})


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)  # readers never see half a file


def _make_group(folder: Path, attrs: Mapping[str, Any]) -> None:
    """A zarr v2 group at ``folder`` with ``attrs``, appearing whole (built hidden, then renamed into place)."""
    tmp = folder.with_name(f".tmp-{folder.name}-{uuid.uuid4().hex[:8]}")
    tmp.mkdir()
    (tmp / ".zattrs").write_text(json.dumps(dict(attrs), indent=1, default=str))
    (tmp / ".zgroup").write_text(_GROUP)
    if folder.exists():  # the same block again (a retried task): replace its record
        old = folder.with_name(f".old-{folder.name}-{uuid.uuid4().hex[:8]}")
        folder.rename(old)
        shutil.rmtree(old, ignore_errors=True)
    tmp.rename(folder)


def _read_attrs(folder: Path) -> dict[str, Any] | None:
    try:
        return json.loads((folder / ".zattrs").read_text())
    except (OSError, ValueError):
        return None  # unreadable: treated as missing, so the block runs again


class RunRecord:
    """The finished/failed-block record of the run stored at ``store`` (a .zarr folder)."""

    def __init__(self, store: str | Path) -> None:
        self.store = Path(store)
        self.folder = self.store / RUN_FOLDER

    # -- the run --------------------------------------------------------------------------------------------------

    def start(self, settings: Mapping[str, Any]) -> str:
        """Record a new run with these settings (a fresh store); returns the run id."""
        for folder in (self.folder, self.folder / "done", self.folder / "failed"):
            folder.mkdir(parents=True, exist_ok=True)
            (folder / ".zgroup").write_text(_GROUP)
        run = {"fingerprint": fingerprint(settings), "settings": dict(settings)}
        _write_json(self.folder / ".zattrs", json.loads(json.dumps(run, default=str)))
        return uuid.uuid4().hex[:12]

    def settings(self) -> dict[str, Any] | None:
        """The settings of the recorded run; None when the store has no record."""
        attrs = _read_attrs(self.folder)
        settings = attrs.get("settings") if attrs else None
        return settings if isinstance(settings, dict) else None

    def resume(self, settings: Mapping[str, Any]) -> str:
        """Continue the recorded run: refused (ValueError naming what differs) when ``settings`` differ from it.
        Earlier failures are cleared, so those blocks are tried again; returns the new run id."""
        saved = self.settings()
        if saved is None:
            raise ValueError(
                f"{self.store} has no record of a block-wise run to resume (no {RUN_FOLDER} group); "
                "drop --resume and use --overwrite to start again"
            )
        if fingerprint(saved) != fingerprint(settings):
            now = json.loads(json.dumps(dict(settings), default=str))
            differ = sorted(k for k in set(saved) | set(now) if saved.get(k) != now.get(k))
            detail = "; ".join(f"{k}: was {saved.get(k)!r}, now {now.get(k)!r}" for k in differ[:6])
            raise ValueError(
                f"cannot resume {self.store}: it was started with different parameters ({detail}); resume with the "
                "same parameters, or use --overwrite to start again"
            )
        for old in (self.folder / "failed").iterdir():
            if old.is_dir():
                shutil.rmtree(old, ignore_errors=True)
        return uuid.uuid4().hex[:12]

    # -- blocks ---------------------------------------------------------------------------------------------------

    def mark_done(self, key: str, info: Mapping[str, Any]) -> None:
        """Record block ``key`` as finished (called by the worker once its chunks are written)."""
        _make_group(self.folder / "done" / key, {"key": key, **info})

    def mark_failed(self, key: str, error: str) -> None:
        """Record that block ``key`` failed with ``error``."""
        _make_group(self.folder / "failed" / key, {"key": key, "error": error})

    def done(self) -> dict[str, dict[str, Any]]:
        """Finished blocks: key → what the worker recorded (seconds, worker, run id, per-slice figures...)."""
        return self._read("done")

    def complete(self, keys: Iterable[str]) -> bool:
        """Every block of ``keys`` is recorded as done and none failed (what ``complete: true`` means)."""
        done = self.done()
        return all(key in done for key in keys) and not self.failed()

    def failed(self) -> dict[str, dict[str, Any]]:
        """Failed blocks of the last run: key → {"error": ...}."""
        return self._read("failed")

    def _read(self, name: str) -> dict[str, dict[str, Any]]:
        out = {}
        folder = self.folder / name
        for path in sorted(folder.iterdir()) if folder.is_dir() else []:
            if path.name.startswith("."):
                continue  # a record being written, or an old one being removed
            entry = _read_attrs(path)
            if entry is not None:
                out[str(entry.get("key", path.name))] = entry
        return out
