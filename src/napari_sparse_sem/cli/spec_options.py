"""CLI options generated from parameter models: one typer option per field of a :class:`~napari_sparse_sem.params.Spec`,
so flags, help text, units, ranges, choices and defaults come from the model (design rule 3) and never drift from the
widgets.

``@spec_options(MaskSpec, into="mask_spec")`` on a command adds the model's options to its signature and passes
the built, validated spec as ``mask_spec``; a bad value raises the model's ``ValueError`` (naming the flag), which the
CLI's error boundary turns into one line and exit code 2.

The generated parameters are named after their flags (``--coverage`` → ``coverage``) and take plain values (text,
numbers, switches), so a command's arguments stay the JSON-ready run record that ``sparse-sem run`` replays. Values a
flag cannot carry as a number are text the model's type is parsed from: ``5%`` for a fraction, comma lists, ``A:B``
tuples, ``none`` for an empty nullable field. A :class:`Form` changes one field's option where the command line has
its own habits (an extra name, a parser, a repeatable flag).
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from dataclasses import MISSING
from typing import Annotated, Any

import typer

from napari_sparse_sem.params import FieldView, Spec, fields_of
from napari_sparse_sem.params_text import (
    DERIVED,
    Form,
    convert,
    metavar,
    param_name,
    sequence_kind,
)

# --------------------------------------------------------------------------------------------------- field kinds


def _is_plain(view: FieldView) -> bool:
    """A field click can type by itself: an int, float or str, not nullable, not a fraction."""
    return view.base_type in (int, float, str) and not view.info.nullable and not view.info.percent


def _range_text(view: FieldView) -> str:
    info = view.info
    if info.low is None and info.high is None:
        return ""
    scale, unit = (100.0, " %") if info.percent else (1.0, f" {info.unit}" if info.unit else "")
    if info.high is None:
        return f"{'>' if info.low_open else '≥'} {info.low * scale:g}{unit}"
    if info.low is None:
        return f"{'<' if info.high_open else '≤'} {info.high * scale:g}{unit}"
    low, high = f"{info.low * scale:g}", f"{info.high * scale:g}"
    left = "(" if info.low_open else "["
    right = ")" if info.high_open else "]"
    return f"{left}{low}, {high}{right}{unit}"


def _help(view: FieldView, form: Form) -> str:
    parts = [form.help or view.info.help or view.label]
    span = _range_text(view)
    if view.info.unit and not view.info.percent and not span:
        parts.append(f"Unit: {view.info.unit}.")
    if view.info.percent:
        parts.append("A fraction (0.05) or a percentage (5%).")
    kind, _ = sequence_kind(view)
    if form.repeat:
        parts.append("Repeatable.")
    elif kind == "list":
        parts.append("Comma-separated.")
    if view.info.choices is not None:
        parts.append("One of: " + ", ".join(str(c) for c in view.info.choices) + ".")
    if span:
        parts.append(f"Range {span}.")
    if view.info.nullable and form.parse is None and view.info.none_means != DERIVED:
        parts.append(f"'none': {view.info.none_means}.")
    return " ".join(p.rstrip() for p in parts if p)


def show_value(value: Any, view: FieldView) -> str:
    """A field's value as the flag would take it (``5%``, ``spiral,grid``, ``10:15``)."""

    def one(v: Any) -> str:
        if view.info.percent and isinstance(v, int | float) and not isinstance(v, bool):
            return f"{v * 100:g}%"
        return f"{v:g}" if isinstance(v, float) else str(v)

    if value is None or (isinstance(value, tuple | list) and not value):
        return "none"
    if isinstance(value, tuple | list):
        separator = ":" if sequence_kind(view)[0] == "tuple" and len(value) == 2 else ","
        return separator.join(one(v) for v in value)
    if isinstance(value, bool):
        return str(value).lower()
    return one(value)


def cli_fields(spec: type[Spec], exclude: Iterable[str] = ()) -> list[FieldView]:
    """The fields of ``spec`` that the CLI shows: declared for the CLI, of a type a flag can carry, not excluded."""
    skipped = set(exclude)
    unknown = skipped - {view.name for view in fields_of(spec)}
    if unknown:
        raise TypeError(f"{spec.__name__} has no field(s) {sorted(unknown)} to exclude")
    out = []
    for view in fields_of(spec):
        if not view.info.cli or view.name in skipped:
            continue
        base = view.base_type
        if typing.get_origin(base) is dict or base is dict or (isinstance(base, type) and issubclass(base, Spec)):
            continue
        out.append(view)
    return out


# ------------------------------------------------------------------------------------------------ options, values


def _switches(view: FieldView) -> tuple[str, str]:
    """The on and off names of a boolean field's switch (``flag="per-slice/fixed-mask"``; by default ``x``/``no-x``)."""
    on, _, off = (view.info.flag or view.name.replace("_", "-")).partition("/")
    return on, off or "no-" + on


def default_text(view: FieldView, default: Any) -> str:
    """The default as ``--help`` shows it: the switch's name, the form the flag takes, or what ``none`` means."""
    if view.base_type is bool and not view.info.nullable:
        return _switches(view)[0 if default else 1]
    if default is None and view.info.none_means != DERIVED:
        return view.info.none_means
    return show_value(default, view)


def _option(view: FieldView, default: Any, panel: str | None, form: Form, as_dict: bool) -> tuple[Any, Any]:
    """(annotation, default) of one generated parameter."""
    kwargs: dict[str, Any] = {"help": _help(view, form), "show_default": True}
    if panel:
        kwargs["rich_help_panel"] = panel
    if form.callback is not None:
        kwargs.update(callback=form.callback, is_eager=True)
    names = [view.flag, *form.aliases]
    if view.base_type is bool and not view.info.nullable and form.parse is None:
        switch = "--{}/--{}".format(*_switches(view))
        if as_dict:  # unset unless given: a config file's value stays
            kwargs["show_default"] = default_text(view, default)
            return Annotated[bool | None, typer.Option(switch, *form.aliases, **kwargs)], None
        return Annotated[bool, typer.Option(switch, *form.aliases, **kwargs)], bool(default)
    if _is_plain(view) and form.parse is None and not form.repeat:
        if as_dict:
            kwargs["show_default"] = default_text(view, default)
            return Annotated[view.base_type | None, typer.Option(*names, **kwargs)], None
        return Annotated[view.base_type, typer.Option(*names, **kwargs)], default
    kwargs["metavar"] = metavar(view, form)
    kwargs["show_default"] = default_text(view, default)
    if form.repeat:
        return Annotated[list[str] | None, typer.Option(*names, **kwargs)], None
    return Annotated[str | None, typer.Option(*names, **kwargs)], None


def build(spec: type[Spec], values: Mapping[str, Any]) -> Spec:
    """``spec`` from field values (lists become tuples where the model has tuples); the model's error messages name
    the flag instead of the field (``budget must be …`` → ``--budget must be …``)."""
    try:
        return spec.from_dict(values)
    except ValueError as err:
        message = str(err)
        for view in cli_fields(spec):
            if message.startswith(view.name + " ") and view.flag[2:] != view.name:
                raise ValueError(view.flag + message[len(view.name) :]) from None
            if message.startswith(view.name + " "):
                raise ValueError("--" + message) from None
        raise


def spec_options(
    spec: type[Spec],
    *,
    into: str,
    prefix: str = "",
    exclude: Iterable[str] = (),
    defaults: Mapping[str, Any] | None = None,
    panel: str | None = None,
    forms: Mapping[str, Form] | None = None,
    as_dict: bool = False,
    given: str | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator for a typer command: add one option per CLI field of ``spec`` and pass the built spec as ``into``.

    ``prefix`` is prepended to the parameter names (not the flags) so two models with a field of the same name can
    share a command (exclude one of them when one flag sets both); ``defaults`` overrides a model default for this
    command only; ``panel`` groups the options in ``--help``; ``forms`` adjusts single fields (:class:`Form`).
    ``as_dict`` passes only the values given on the command line, as ``{field: value}`` (every option starts unset),
    for a command that lays them over a config file. ``given`` names a parameter of the command that receives the
    set of fields given on the command line (e.g. to tell ``--minutes`` alone from ``--minutes`` with
    ``--iterations``).
    """
    views = cli_fields(spec, exclude)
    overrides = dict(defaults or {})
    adjust = dict(forms or {})
    unknown = (set(overrides) | set(adjust)) - {view.name for view in fields_of(spec)}
    if unknown:
        raise TypeError(f"{spec.__name__} has no field(s) {sorted(unknown)}")

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        base_signature = inspect.signature(command, eval_str=True)
        hidden = {into, given}
        kept = [p for p in base_signature.parameters.values() if p.name not in hidden]
        taken = {p.name for p in kept}
        annotations = {p.name: p.annotation for p in kept}
        added = []
        names: dict[str, FieldView] = {}
        for view in views:
            name = param_name(view, prefix)
            if name in taken:
                raise TypeError(f"{command.__name__}: the option {view.flag} of {spec.__name__}.{view.name} clashes")
            form = adjust.get(view.name, Form())
            default = overrides.get(view.name, view.default)
            annotation, value = _option(view, default, panel, form, as_dict)
            added.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=value, annotation=annotation))
            annotations[name] = annotation
            names[name] = view
            taken.add(name)

        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> Any:
            values: dict[str, Any] = {} if as_dict else dict(overrides)
            set_here = set()
            for name, view in names.items():
                raw = kwargs.pop(name, None)
                if raw is None:
                    continue  # not given: the model's (or this command's) default, or the config file's value
                if not isinstance(raw, str) and not as_dict and raw == overrides.get(view.name, view.default):
                    values[view.name] = raw  # a typed option at its default (click fills those in)
                    continue
                values[view.name] = convert(view, raw, adjust.get(view.name, Form()))
                set_here.add(view.name)
            kwargs[into] = values if as_dict else build(spec, values)
            if given is not None:
                kwargs[given] = frozenset(set_here)
            return command(*args, **kwargs)

        # The options of this model come before those of decorators below it (the order of the decorators).
        generated = set(getattr(command, "spec_fields", {}))
        own = [p for p in kept if p.name not in generated]
        below = [p for p in kept if p.name in generated]
        run.__signature__ = base_signature.replace(parameters=[*own, *added, *below])  # type: ignore[attr-defined]
        run.__annotations__ = annotations
        run.spec_fields = {  # type: ignore[attr-defined]
            **getattr(command, "spec_fields", {}),
            **{n: (spec, v, overrides.get(v.name, v.default)) for n, v in names.items()},
        }
        return run

    return decorate


def generated_options(callback: Callable[..., Any]) -> dict[str, tuple[type[Spec], FieldView, Any]]:
    """The parameters that :func:`spec_options` added to a command: ``{name: (model, field, default)}`` (the default
    this command uses: the model's unless ``defaults`` overrides it)."""
    return dict(getattr(callback, "spec_fields", {}))


def field_default(spec: type[Spec], name: str) -> Any:
    """The model's default of field ``name`` (``MISSING`` when it has none)."""
    for view in fields_of(spec):
        if view.name == name:
            return view.default
    return MISSING
