"""The record of a block-wise run inside its output store: what the run is, which blocks finished, which failed.

Beside the OME-Zarr arrays, a store written block by block holds a folder ``.sparse-sem-run/`` (zarr and OME-Zarr
readers ignore it): ``run.json`` with the run's fingerprint (everything that decides the output: inputs, method,
options, slices, the block plan) and one small JSON file per finished block in ``done/`` (written by the worker after
its chunks, so a block killed mid-write has none and is computed again) and per failed block in ``failed/``. One file
per block needs no lock, works on any shared file system and survives a SIGKILL of the driver. ``--resume`` skips the
blocks in ``done/`` and refuses a run whose fingerprint differs.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import Any

__all__ = ["RUN_FOLDER", "RunRecord", "fingerprint"]

RUN_FOLDER = ".sparse-sem-run"


def fingerprint(settings: Mapping[str, Any]) -> str:
    """A short hash of the settings that decide a run's output (JSON with sorted keys)."""
    text = json.dumps(settings, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}")
    tmp.write_text(json.dumps(data, indent=1, default=str))
    os.replace(tmp, path)  # readers never see half a file


class RunRecord:
    """The finished/failed-block record of the run stored at ``store`` (a .zarr folder)."""

    def __init__(self, store: str | Path) -> None:
        self.store = Path(store)
        self.folder = self.store / RUN_FOLDER

    # -- the run --------------------------------------------------------------------------------------------------

    def start(self, settings: Mapping[str, Any]) -> str:
        """Record a new run with these settings (a fresh store); returns the run id."""
        (self.folder / "done").mkdir(parents=True, exist_ok=True)
        (self.folder / "failed").mkdir(exist_ok=True)
        run_id = uuid.uuid4().hex[:12]
        _write_json(self.folder / "run.json", {"fingerprint": fingerprint(settings), "settings": dict(settings)})
        return run_id

    def settings(self) -> dict[str, Any] | None:
        """The settings of the recorded run; None when the store has no record."""
        try:
            return json.loads((self.folder / "run.json").read_text())["settings"]
        except (OSError, ValueError, KeyError):
            return None

    def resume(self, settings: Mapping[str, Any]) -> str:
        """Continue the recorded run: refused (ValueError naming what differs) when ``settings`` differ from it.
        Earlier failures are cleared, so those blocks are tried again; returns the new run id."""
        saved = self.settings()
        if saved is None:
            raise ValueError(
                f"{self.store} has no record of a block-wise run to resume (no {RUN_FOLDER}/run.json); "
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
        for old in (self.folder / "failed").glob("*.json"):
            old.unlink()
        return uuid.uuid4().hex[:12]

    # -- blocks ---------------------------------------------------------------------------------------------------

    def mark_done(self, key: str, info: Mapping[str, Any]) -> None:
        """Record block ``key`` as finished (called by the worker once its chunks are written)."""
        _write_json(self.folder / "done" / f"{key}.json", {"key": key, **info})

    def mark_failed(self, key: str, error: str) -> None:
        """Record that block ``key`` failed with ``error``."""
        _write_json(self.folder / "failed" / f"{key}.json", {"key": key, "error": error})

    def done(self) -> dict[str, dict[str, Any]]:
        """Finished blocks: key → what the worker recorded (seconds, worker, run id, per-slice figures...)."""
        return self._read("done")

    def failed(self) -> dict[str, dict[str, Any]]:
        """Failed blocks of the last run: key → {"error": ...}."""
        return self._read("failed")

    def _read(self, name: str) -> dict[str, dict[str, Any]]:
        out = {}
        for path in sorted((self.folder / name).glob("*.json")):
            try:
                entry = json.loads(path.read_text())
            except (OSError, ValueError):
                continue  # unreadable: treated as not finished, so the block runs again
            out[str(entry.get("key", path.stem))] = entry
        return out
