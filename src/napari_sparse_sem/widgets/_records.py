"""Run records between napari and the command line, both ways.

Results made from a layer whose data came from a file carry the run record the CLI would write for the same run
(:func:`~napari_sparse_sem.provenance.make_record`: the command's name and its arguments, named as the command's
parameters, which :func:`~napari_sparse_sem.params_text.param_name` derives from the models' fields), so
``sparse-sem run`` can make them again; layers from in-memory data carry none. The other way, *Load parameters…*
reads a saved file (:func:`read_parameters`) and a widget fills its forms from its models' blocks or from a run
record's arguments (:func:`command_arguments`, :func:`spec_values`).
"""

from __future__ import annotations

import json
import typing
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from napari.layers import Layer

from napari_sparse_sem.params import FieldView, Spec, fields_of
from napari_sparse_sem.params_text import convert, param_name, parse_options
from napari_sparse_sem.provenance import RUN_KEY, make_record, read_saved


# ---------------------------------------------------------------------------------------------- results → records
def file_source(layer: Layer | None) -> Path | None:
    """The file ``layer``'s data was read from (napari's ``layer.source.path``), or None for in-memory data."""
    source = getattr(layer, "source", None)
    path = getattr(source, "path", None)
    return Path(path) if path else None


argument_name = param_name
"""The command parameter of a model field: its CLI flag with underscores (``--pixel-size`` → ``pixel_size``)."""


def _on_command_line(view: FieldView) -> bool:
    """True for a field a CLI flag carries (declared for the CLI; not a dict or a nested model)."""
    base = view.base_type
    nested = base is dict or typing.get_origin(base) is dict or (isinstance(base, type) and issubclass(base, Spec))
    return view.info.cli and not nested


def spec_arguments(spec: Spec, exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The command arguments that give ``spec``'s fields (the ones a flag carries), by parameter name."""
    skipped = set(exclude)
    return {
        argument_name(view): getattr(spec, view.name)
        for view in fields_of(spec)
        if _on_command_line(view) and view.name not in skipped
    }


def option_items(options: Mapping[str, Any], method: str | None = None) -> list[str]:
    """``{"levels": 2}`` as the ``--option`` values ``["levels=2"]`` (``["dip.levels=2"]`` with ``method``)."""
    out = []
    for key, value in options.items():
        text = value if isinstance(value, str) else json.dumps(value)
        out.append(f"{method}.{key}={text}" if method else f"{key}={text}")
    return out


def run_record(command: str, arguments: Mapping[str, Any]) -> dict[str, Any]:
    """The run record of ``sparse-sem COMMAND`` with ``arguments`` (paths made absolute)."""
    return make_record(command, arguments)


# ------------------------------------------------------------------------------------------- files → form values
read_parameters = read_saved
"""The saved parameter block at a path (see :func:`napari_sparse_sem.provenance.read_saved`)."""


def find_run(data: Mapping[str, Any]) -> dict[str, Any] | None:
    """The run record in ``data`` (``data`` itself when it is one), or None."""
    for candidate in (data, data.get(RUN_KEY)):
        if (
            isinstance(candidate, Mapping)
            and isinstance(candidate.get("command"), str)
            and isinstance(candidate.get("arguments"), Mapping)
        ):
            return {"command": candidate["command"], "arguments": dict(candidate["arguments"])}
    return None


def command_arguments(data: Mapping[str, Any], commands: Iterable[str], where: str, expected: str) -> dict[str, Any]:
    """The arguments of the run record in ``data`` when one of ``commands`` wrote it; a ``ValueError`` that says what
    the widget reads (``expected``) when there is none or another command wrote it."""
    names = list(commands)
    record = find_run(data)
    if record is None:
        raise ValueError(f"{where} holds no parameters this widget reads: expected {expected}")
    if record["command"] not in names:
        wanted = " or ".join(f"`sparse-sem {n}`" for n in names)
        raise ValueError(
            f"{where} was written by `sparse-sem {record['command']}`, not {wanted}; load one of its parameter files"
        )
    return record["arguments"]


def spec_values(spec: type[Spec], arguments: Mapping[str, Any], exclude: Iterable[str] = ()) -> dict[str, Any]:
    """The field values of ``spec`` in a run record's ``arguments`` (the command's flags as typed: ``5%``, ``a,b``,
    ``none``); arguments left unset (None) take the model's default, arguments of other models are not read."""
    skipped = set(exclude)
    out: dict[str, Any] = {}
    for view in fields_of(spec):
        name = argument_name(view)
        if view.name in skipped or not _on_command_line(view) or arguments.get(name) is None:
            continue
        try:
            out[view.name] = convert(view, arguments[name])
        except ValueError as exc:
            raise ValueError(f"{spec.describe()} argument {name}: {exc}") from None
    return out


def record_options(arguments: Mapping[str, Any], per_method: bool = False) -> dict[str, Any]:
    """The ``--option`` values of a run record as a dict (``{method: {key: value}}`` with ``per_method``)."""
    return parse_options(list(arguments.get("option") or []), per_method=per_method)
