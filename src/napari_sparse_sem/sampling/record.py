"""The one record of a sparse acquisition: what was scanned, how, what it cost and how the values are stored.

Every face writes it under :data:`RECORD_KEY` — the CLI into the params of a sparse stack and its mask, the *Sparse
acquisition* widget into its layers' metadata — and every reader (the *Reconstruct* widget, ``sparse-sem
reconstruct``) reads it with :meth:`AcquisitionRecord.from_metadata` and passes it on to the reconstruction, so a
sparse file made by the CLI keeps its parameters when reconstructed in napari and the other way round. Files and
layers written before the record existed (keys ``mask_spec`` with ``acquisition``/``acquisition_s`` from the CLI, or
``acquisition_spec``/``time_s`` from the widget) are still read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from napari_sparse_sem.params import Spec, param
from napari_sparse_sem.sampling.spec import AcquisitionSpec, MaskSpec

RECORD_KEY = "acquisition_record"
"""The metadata key of the record (in ``params.json`` of a file, in ``layer.metadata`` of a layer)."""

UNIT_RANGE = (0.0, 1.0)


@dataclass
class AcquisitionRecord(Spec):
    """A sparse acquisition as saved with its sparse stack and mask.

    ``value_range`` maps the dense source's values to [0, 1] (what the simulation saw); ``stored_range`` is the range
    of the *stored* sparse values that maps to [0, 1]: the source's range for files the CLI writes in the source's
    units, (0, 1) for the widget's float layers. Times and lengths are totals over the ``n_slices`` slices.
    """

    kind = "acquisition record"

    mask_spec: MaskSpec = param(default_factory=MaskSpec, help="Mask pattern, coverage and seed.")
    acquisition: AcquisitionSpec = param(default_factory=AcquisitionSpec, help="Timing and dose of the scan.")
    coverage: float | None = param(
        None, help="Achieved fraction of scanned pixels (mean over slices).", percent=True, low=0.0, high=1.0
    )
    scan_s: float | None = param(None, help="Estimated time of the sparse scan (all slices).", unit="s", low=0.0)
    dense_s: float | None = param(None, help="Time of a dense scan of the same slices.", unit="s", low=0.0)
    path_length_px: float | None = param(None, help="Beam path of all slices.", unit="px", low=0.0)
    n_slices: int | None = param(None, help="Slices scanned.", low=0)
    value_range: tuple[float, float] | None = param(None, help="Source values mapped to [0, 1] (low, high).")
    stored_range: tuple[float, float] = param(UNIT_RANGE, help="Stored sparse values that map to [0, 1] (low, high).")
    source: str = param("", help="The dense source: a file path or a layer name.")
    slices: tuple[int, int] | None = param(None, help="Slices A:B (half-open) of the source.")
    roi: tuple[int, int, int, int] | None = param(None, help="Region (y0, y1, x0, x1) of every slice.")

    def validate(self) -> None:
        for name in ("value_range", "stored_range"):
            pair = getattr(self, name)
            if pair is not None:
                if len(pair) != 2:
                    raise ValueError(f"{name} needs two numbers (low, high), got {pair!r}")
                setattr(self, name, (float(pair[0]), float(pair[1])))
        for name, size in (("slices", 2), ("roi", 4)):
            value = getattr(self, name)
            if value is not None:
                if len(value) != size:
                    raise ValueError(f"{name} needs {size} whole numbers, got {value!r}")
                setattr(self, name, tuple(int(v) for v in value))

    @property
    def speedup(self) -> float | None:
        """How many times faster than a dense scan (None when a time is unknown)."""
        if not self.scan_s or self.dense_s is None:
            return None
        return self.dense_s / self.scan_s

    def to_metadata(self) -> dict[str, Any]:
        """``{RECORD_KEY: record}`` to merge into a file's params or a layer's metadata."""
        return {RECORD_KEY: self.to_dict()}

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, Any] | None) -> AcquisitionRecord | None:
        """The record in ``metadata`` (also from the keys written before the record existed); None without one."""
        meta = dict(metadata or {})
        try:
            if RECORD_KEY in meta:
                return cls.from_dict(meta[RECORD_KEY])
            if isinstance(meta.get("mask_spec"), Mapping):
                return cls._from_old_keys(meta)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"the acquisition record is unreadable: {exc}") from None
        return None

    @classmethod
    def _from_old_keys(cls, meta: dict[str, Any]) -> AcquisitionRecord:
        from_cli = "acquisition_spec" not in meta and ("acquisition" in meta or "acquisition_s" in meta)
        acquisition = meta.get("acquisition" if from_cli else "acquisition_spec")
        value_range = meta.get("value_range")
        return cls(
            mask_spec=MaskSpec.from_dict(meta["mask_spec"]),
            acquisition=AcquisitionSpec.from_dict(acquisition)
            if isinstance(acquisition, Mapping)
            else AcquisitionSpec(),
            coverage=meta.get("coverage"),
            scan_s=meta.get("acquisition_s" if from_cli else "time_s"),
            dense_s=meta.get("dense_acquisition_s" if from_cli else "dense_time_s"),
            path_length_px=meta.get("path_length_px"),
            value_range=value_range,
            # The CLI stored its sparse stacks in the source's units, the widget float layers in [0, 1].
            stored_range=value_range if from_cli and value_range is not None else UNIT_RANGE,
            source=str(meta.get("source" if from_cli else "source_layer") or ""),
            slices=meta.get("slices") if from_cli else None,
            roi=meta.get("roi") if from_cli else None,
        )
