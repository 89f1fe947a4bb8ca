"""CLI options generated from parameter models: one typer option per field of a :class:`~napari_sparse_sem.params.Spec`,
so flags, help text, choices and defaults come from the model (design rule 3) and never drift from the widgets.

``@spec_options(MaskSpec, into="mask_spec")`` on a command adds the model's options to its signature and passes
the built, validated spec as ``mask_spec``; a bad value raises the model's ``ValueError``, which the CLI's error
boundary turns into one line and exit code 2.
"""

from __future__ import annotations

import functools
import inspect
import typing
from collections.abc import Callable, Iterable, Mapping
from typing import Annotated, Any

import typer

from napari_sparse_sem.params import FieldView, Spec, fields_of


def parse_fraction(text: str, flag: str) -> float:
    """``"0.05"`` or ``"5%"`` → 0.05 (bounds are the model's to check)."""
    raw = str(text).strip()
    try:
        return float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise ValueError(f"{flag} expects a fraction such as 0.05 (or 5%), got {text!r}") from None


def _tuple_items(view: FieldView) -> tuple[type, ...]:
    for candidate in (view.base_type, *typing.get_args(view.base_type)):
        if typing.get_origin(candidate) is tuple:
            return tuple(a for a in typing.get_args(candidate) if a is not Ellipsis) or (str,)
    return ()


def _parse_tuple(text: str, view: FieldView) -> tuple[Any, ...]:
    kinds = _tuple_items(view)
    parts = [p.strip() for p in str(text).replace(";", ",").split(",") if p.strip()]
    kind = kinds[0] if kinds else str
    try:
        return tuple(kind(p) for p in parts)
    except ValueError:
        raise ValueError(f"{view.flag} expects comma-separated values such as 1,2, got {text!r}") from None


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


def _help(view: FieldView) -> str:
    parts = [view.info.help or view.label]
    if view.info.unit and not view.info.percent:
        parts.append(f"Unit: {view.info.unit}.")
    if view.info.percent:
        parts.append("A fraction (0.05) or a percentage (5%).")
    if view.info.choices is not None:
        parts.append("One of: " + ", ".join(str(c) for c in view.info.choices) + ".")
    span = _range_text(view)
    if span:
        parts.append(f"Range {span}.")
    if view.info.nullable:
        parts.append(f"'none': {view.info.none_means}.")
    return " ".join(p.rstrip() for p in parts if p)


def cli_fields(spec: type[Spec], exclude: Iterable[str] = ()) -> list[FieldView]:
    """The fields of ``spec`` that the CLI shows: declared for the CLI, of a type a flag can carry, not excluded."""
    skipped = set(exclude)
    out = []
    for view in fields_of(spec):
        if not view.info.cli or view.name in skipped:
            continue
        base = view.base_type
        if typing.get_origin(base) is dict or base is dict or (isinstance(base, type) and issubclass(base, Spec)):
            continue
        out.append(view)
    return out


def _option(view: FieldView, param_name: str, default: Any, panel: str | None) -> tuple[Any, Any]:
    """(annotation, default) for one generated parameter."""
    base = view.base_type
    kwargs: dict[str, Any] = {"help": _help(view), "show_default": True}
    if panel:
        kwargs["rich_help_panel"] = panel
    flag = view.flag
    if base is bool and not view.info.nullable:
        # ``flag="per-slice/fixed-mask"`` names both switches; by default ``--x/--no-x``.
        on, _, off = (view.info.flag or view.name.replace("_", "-")).partition("/")
        return Annotated[bool, typer.Option(f"--{on}/--{off or 'no-' + on}", **kwargs)], bool(default)
    if view.info.percent or _tuple_items(view) or view.info.nullable or base not in (int, float, str):
        kwargs["metavar"] = "VALUE"
        shown = "" if default is None else _show(default, view)
        kwargs["show_default"] = shown or "derived"
        return Annotated[str | None, typer.Option(flag, **kwargs)], None
    return Annotated[base, typer.Option(flag, **kwargs)], default


def _show(value: Any, view: FieldView) -> str:
    if view.info.percent and isinstance(value, int | float):
        return f"{value * 100:g}%"
    if isinstance(value, tuple | list):
        return ",".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    return str(value)


def _convert(view: FieldView, raw: Any) -> Any:
    """A flag's value → the field's value (``None`` for an untouched string flag means "keep the default")."""
    if not isinstance(raw, str) or view.base_type is str:
        return raw
    text = raw.strip()
    if view.info.nullable and text.lower() in ("", "none", "auto", "derived"):
        return None
    if _tuple_items(view):
        return _parse_tuple(text, view)
    if view.info.percent:
        return parse_fraction(text, view.flag)
    base = view.base_type
    if base in (int, float):
        try:
            return base(text)
        except ValueError:
            kind = "a whole number" if base is int else "a number"
            raise ValueError(f"{view.flag} expects {kind}, got {raw!r}") from None
    return text


def spec_options(
    spec: type[Spec],
    *,
    into: str,
    prefix: str = "",
    exclude: Iterable[str] = (),
    defaults: Mapping[str, Any] | None = None,
    panel: str | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator for a typer command: add one option per CLI field of ``spec`` and pass the built spec as ``into``.

    ``prefix`` is prepended to the parameter names (not the flags) so two models can share a command; ``defaults``
    overrides a model default for this command only; ``panel`` groups the options in ``--help``.
    """
    views = cli_fields(spec, exclude)
    overrides = dict(defaults or {})

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        base_signature = inspect.signature(command, eval_str=True)
        kept = [p for p in base_signature.parameters.values() if p.name != into]
        annotations = {p.name: p.annotation for p in kept}
        added = []
        names: dict[str, FieldView] = {}
        for view in views:
            param_name = f"{prefix}{view.name}"
            default = overrides.get(view.name, view.default)
            annotation, value = _option(view, param_name, default, panel)
            added.append(
                inspect.Parameter(param_name, inspect.Parameter.KEYWORD_ONLY, default=value, annotation=annotation)
            )
            annotations[param_name] = annotation
            names[param_name] = view

        @functools.wraps(command)
        def run(*args: Any, **kwargs: Any) -> Any:
            values = dict(overrides)
            for param_name, view in names.items():
                raw = kwargs.pop(param_name, None)
                if raw is None and (
                    view.info.percent
                    or _tuple_items(view)
                    or view.info.nullable
                    or view.base_type not in (int, float, str, bool)
                ):
                    continue  # flag not given: the model's (or this command's) default
                values[view.name] = _convert(view, raw)
            kwargs[into] = spec(**values)
            return command(*args, **kwargs)

        run.__signature__ = base_signature.replace(parameters=[*kept, *added])  # type: ignore[attr-defined]
        run.__annotations__ = annotations
        return run

    return decorate
