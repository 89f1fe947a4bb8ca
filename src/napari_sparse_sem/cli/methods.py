"""What the command line knows about reconstruction methods, all of it from the method registry (design rule 9; no
method names here): ``--method help`` lists every registered method with its options, ``--weights`` goes to the chosen
methods that load weights, ``--dip-preset``/``--dip-config`` to those whose options have a ``preset``, and
``--method-config`` reads any method's options from a JSON file."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import typer

from napari_sparse_sem.cli.common import stdout_console

PRESET_OPTION = "preset"
"""The option that ``--dip-preset`` sets and ``--dip-config`` files may name (methods whose options spec has it)."""


def _joined(names: Iterable[str]) -> str:
    names = list(names)
    return ", ".join(names[:-1]) + " and " + names[-1] if len(names) > 1 else "".join(names)


def check_methods(names: Iterable[str]) -> None:
    """Refuse names that are not registered methods (listing the choices), before any work."""
    from napari_sparse_sem.recon.base import available_methods

    choices = available_methods()
    for name in names:
        if name not in choices:
            raise ValueError(
                f"unknown reconstruction method {name!r}; choose one of {choices} (--method help describes them)"
            )


def option_text(value: Any) -> str:
    """An option's value as ``--option KEY=VALUE`` takes it (JSON numbers, true/false, lists; text as it is)."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, tuple | list):
        return json.dumps(list(value))
    return str(value)


def method_listing(per_method: bool = False) -> list[str]:
    """Lines describing every registered method: name, description, what it needs, and each option with its default
    and help (from the method's options spec; a spec shared with a method listed before is named, not repeated)."""
    from napari_sparse_sem.params import fields_of
    from napari_sparse_sem.recon.base import available_methods, method_class

    form = "--option METHOD.KEY=VALUE" if per_method else "--option KEY=VALUE"
    lines = [f"Reconstruction methods (--method NAME{', or a comma list' if per_method else ''}; options: {form}):"]
    listed: dict[Any, str] = {}
    for name in available_methods():
        cls = method_class(name)
        lines.append(f"  {name:<11} {cls.description}")
        traits = [
            *(["iterative (a fit per slice)"] if cls.iterative else []),
            *(["faster on a GPU (--device)"] if cls.gpu else []),
            *(["loads trained weights (--weights)"] if cls.needs_weights else []),
        ]
        if traits:
            lines.append(f"  {'':<11} {'; '.join(traits)}")
        if cls.options is None:
            continue
        if cls.options in listed:
            lines.append(f"  {'':<11} options: those of {listed[cls.options]}")
            continue
        listed[cls.options] = name
        for view in fields_of(cls.options):
            key = f"{name}.{view.name}" if per_method else view.name
            default = "none" if view.default is None else option_text(view.default)
            unit = f" [{view.info.unit}]" if view.info.unit and not view.info.percent else ""
            lines.append(f"      {key}={default}{unit}: {view.info.help or view.label}")
    return lines


def method_help(per_method: bool = False) -> Callable[[str | None], str | None]:
    """An eager callback for ``--method``: ``--method help`` prints :func:`method_listing` and exits (before the other
    options are checked, like ``--help``)."""

    def callback(value: str | None) -> str | None:
        if value is None or value.strip().lower() != "help":
            return value
        out = stdout_console()
        for line in method_listing(per_method):
            out.print(line, markup=False)
        raise typer.Exit(0)

    return callback


# ------------------------------------------------------------------------------------------------------- weights


def weights_methods() -> list[str]:
    """The registered methods that load trained weights."""
    from napari_sparse_sem.recon.base import methods_with

    return methods_with(needs_weights=True)


def check_weights_file(weights: str | Path) -> None:
    """A file named by ``--weights`` must be a safetensors file (clear error before any work); a bare name without a
    suffix (shipped weights such as ``flyem``) is left to the method."""
    from napari_sparse_sem.nn.weights import check_safetensors

    text = str(weights)
    if Path(text).exists() or Path(text).suffix or os.sep in text or "/" in text:
        check_safetensors(text)


def weights_option(weights: Path | str | None, methods: list[str]) -> dict[str, dict[str, Any]]:
    """``{method: {"weights": path}}`` for the chosen ``methods`` that load weights (``--weights`` names their file)."""
    if weights is None:
        return {}
    loaders = set(weights_methods())
    targets = [m for m in methods if m in loaders]
    if not targets:
        raise ValueError(f"--weights applies to {_joined(weights_methods())}; add one to --method")
    check_weights_file(weights)
    return {name: {"weights": str(weights)} for name in targets}


# -------------------------------------------------------------------------------------------- presets and files


def preset_methods() -> list[str]:
    """The registered methods whose options have a ``preset`` (``--dip-preset``/``--dip-config`` apply to them)."""
    from napari_sparse_sem.recon.base import available_methods, method_class

    return [m for m in available_methods() if PRESET_OPTION in method_class(m).option_names()]


def _preset_choices(methods: list[str]) -> list[Any]:
    from napari_sparse_sem.params import fields_of
    from napari_sparse_sem.recon.base import method_class

    choices: list[Any] = []
    for name in methods:
        spec = method_class(name).options
        for view in fields_of(spec) if spec is not None else []:
            if view.name == PRESET_OPTION and view.info.choices is not None:
                choices.extend(c for c in view.info.choices if c not in choices)
    return choices


def options_file(path: Path, methods: list[str], what: str) -> dict[str, Any]:
    """A JSON object of options for each of ``methods``, checked against their options specs before any work."""
    from napari_sparse_sem.jsonfile import read_json_object
    from napari_sparse_sem.recon.base import check_options, method_class

    options = read_json_object(path, what, "method options (KEY: VALUE)")
    for name in methods:
        known = method_class(name).option_names()
        unknown = sorted(set(options) - set(known))
        if unknown:
            raise ValueError(f"{what} {path} has unknown field(s) {unknown} for {name}; known: {sorted(known)}")
        check_options(name, options)
    return options


def preset_options(
    preset: str | None, config_file: Path | None, methods: list[str], single: bool = False
) -> dict[str, dict[str, Any]]:
    """``{method: options}`` from ``--dip-config FILE.json`` (read first) and ``--dip-preset`` (wins) for the chosen
    ``methods`` whose options have a preset; ``single``: the command runs one method (reconstruct)."""
    if preset is None and config_file is None:
        return {}
    targets = [m for m in methods if m in set(preset_methods())]
    if not targets:
        where = f", not to {methods[0]!r}" if single and methods else "; add one to --method"
        raise ValueError(f"--dip-preset/--dip-config apply to {_joined(preset_methods())}{where}")
    options: dict[str, Any] = {}
    if config_file is not None:
        options.update(options_file(config_file, targets, "DIP config"))
    if preset is not None:
        choices = _preset_choices(targets)
        if choices and preset not in choices:
            raise ValueError(f"--dip-preset must be one of {choices}, got {preset!r}")
        options[PRESET_OPTION] = preset
    return {name: dict(options) for name in targets}
