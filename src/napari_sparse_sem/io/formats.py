"""What every volume reader shares: the formats we know and how a path is matched to one (:func:`detect_format`,
'file.h5:/group/ds' paths), unit conversion to nm, the checked voxel size, the JSON block we save in files we write,
and :class:`RawRead`, what a format reader hands to :func:`~napari_sparse_sem.io.readers.read_volume`.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

METADATA_KEY = "napari_sparse_sem"
"""Key of our saved block in zarr attributes (and the JSON object inside a TIFF's ImageJ 'Info')."""

INFO_MARKER = "napari-sparse-sem metadata (JSON):"
"""First line of the ImageJ 'Info' text we write; the JSON block follows it."""

READER_KEYS = (
    "format",
    "source_path",
    "dtype",
    "lazy",
    "dataset",
    "n_files",
    "n_levels",
    "ome_scale",
    "voxel_size_nm",
    "voxel_size_note",
    "missing_chunks",
)
"""Metadata keys that describe a file read (set by readers/hooks), not saved parameters; writers drop them."""

TIFF_SUFFIXES = (".tif", ".tiff")
SLICE_SUFFIXES = (".tif", ".tiff", ".png")
ZARR_SUFFIXES = (".zarr",)
MRC_SUFFIXES = (".mrc", ".map", ".rec", ".st")
HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf")
ZARR_MARKERS = (".zarray", ".zgroup", ".zattrs", "zarr.json")

SUPPORTED_FORMATS: dict[str, str] = {
    "tiff": "TIFF stack (.tif, .tiff; multi-page, ImageJ hyperstack, OME-TIFF)",
    "folder": "folder of 2D slices (.tif, .tiff, .png; natural sort order)",
    "zarr": "zarr / OME-Zarr (.zarr or a folder with zarr metadata; zarr v2 and v3)",
    "mrc": "MRC (.mrc, .map, .rec, .st)",
    "hdf5": "HDF5 (.h5, .hdf5, .hdf; pick a dataset with dataset= or 'file.h5:/group/ds')",
}

_UNIT_NM = {
    "nm": 1.0,
    "nanometer": 1.0,
    "nanometers": 1.0,
    "nanometre": 1.0,
    "um": 1e3,
    "µm": 1e3,  # micro sign U+00B5
    "μm": 1e3,  # greek mu U+03BC
    "\\u00b5m": 1e3,  # ImageJ writes the micro sign escaped
    "micron": 1e3,
    "microns": 1e3,
    "micrometer": 1e3,
    "micrometers": 1e3,
    "micrometre": 1e3,
    "mm": 1e6,
    "millimeter": 1e6,
    "cm": 1e7,
    "centimeter": 1e7,
    "m": 1e9,
    "meter": 1e9,
    "å": 0.1,
    "angstrom": 0.1,
    "angstroms": 0.1,
    "ångström": 0.1,
    "pm": 1e-3,
    "picometer": 1e-3,
}


def unit_to_nm(unit: Any) -> float | None:
    """Nanometres per ``unit`` (e.g. 'micron' -> 1000); None for unknown units or 'pixel'."""
    if not isinstance(unit, str):
        return None
    return _UNIT_NM.get(unit.strip().lower())


def _clean(value: float) -> float:
    """Drop float noise from unit conversions (0.01 µm * 1000 -> 10.0)."""
    return float(f"{float(value):.10g}")


def valid_voxel(values: Any) -> tuple[float, float, float] | None:
    """A validated (z, y, x) voxel size: three positive finite numbers, else None."""
    try:
        out = tuple(_clean(v) for v in values)
    except (TypeError, ValueError):
        return None
    if len(out) != 3 or not all(np.isfinite(v) and v > 0 for v in out):
        return None
    return out  # type: ignore[return-value]


_H5_INNER = re.compile(r"^(?P<file>.+\.(?:h5|hdf5|hdf|zarr)):(?P<inner>[^\\:]+)$", re.IGNORECASE)


def split_h5_path(path: str | Path) -> tuple[Path, str | None]:
    """Split 'file.h5:/group/ds' (or 'store.zarr:array') into the file and the inner name; else (path, None)."""
    text = str(path)
    match = _H5_INNER.match(text)
    if match and not Path(text).exists():
        return Path(match["file"]).expanduser(), match["inner"]
    return Path(text).expanduser(), None


def is_zarr_dir(path: Path) -> bool:
    """True for a folder holding zarr metadata (v2 or v3), whatever its name."""
    return path.is_dir() and any((path / marker).exists() for marker in ZARR_MARKERS)


def slice_files(folder: Path) -> list[Path]:
    """2D slice files of ``folder`` in natural order (slice_9 before slice_10); hidden files are ignored."""
    files = [
        f for f in folder.iterdir() if f.suffix.lower() in SLICE_SUFFIXES and not f.name.startswith(".") and f.is_file()
    ]
    return sorted(files, key=_natural_key)


def _natural_key(path: Path) -> list[Any]:
    parts = re.split(r"(\d+)", path.name.lower())
    return [int(p) if p.isdigit() else p for p in parts]


def detect_format(path: str | Path) -> str | None:
    """Which reader handles ``path`` ('tiff', 'folder', 'zarr', 'mrc', 'hdf5'), or None when none does.

    Decided from the name and, for folders, their content; nothing is read. A '.zarr' path that does not exist still
    counts as zarr, so reading it gives a clear FileNotFoundError.
    """
    file, _ = split_h5_path(path)
    suffix = file.suffix.lower()
    if suffix in ZARR_SUFFIXES or is_zarr_dir(file):
        return "zarr"
    if file.is_dir():
        try:
            return "folder" if slice_files(file) else None
        except OSError:
            return None
    if suffix in TIFF_SUFFIXES:
        return "tiff"
    if suffix in MRC_SUFFIXES:
        return "mrc"
    if suffix in HDF5_SUFFIXES:
        return "hdf5"
    return None


def supported_text() -> str:
    """The supported formats as one line for error messages."""
    return "; ".join(SUPPORTED_FORMATS.values())


@dataclass
class RawRead:
    """What a format reader found: 2D/3D data, voxel size, our saved block (if any) and extra metadata."""

    data: Any
    voxel_size: tuple[float, float, float] | None = None
    saved: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def saved_from_json_text(text: Any) -> dict[str, Any] | None:
    """Our saved block from an ImageJ 'Info' text we wrote (after :data:`INFO_MARKER`); None for any other text."""
    if not isinstance(text, str) or INFO_MARKER not in text:
        return None
    try:
        block = json.loads(text.split(INFO_MARKER, 1)[1])
    except json.JSONDecodeError:
        return None
    saved = block.get(METADATA_KEY) if isinstance(block, dict) else None
    return saved if isinstance(saved, dict) else None
