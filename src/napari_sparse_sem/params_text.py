"""Parameter values as text: a flag typed on the command line, a field of a saved run record, a line in a form.

The one parser between text and a model field's value (:func:`convert`), so the CLI (``cli/spec_options.py``) and the
widgets reading a run record (``widgets/_records.py``) read ``5%``, ``a,b``, ``LOW:HIGH``, ``none`` and ``KEY=VALUE``
options the same way. A :class:`Form` is how one field's text differs from what its model declares.
"""

from __future__ import annotations

import json
import typing
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from napari_sparse_sem.params import FieldView

NONE_WORDS = ("", "none", "derived")
"""What an empty nullable field (or an empty list) reads as on the command line."""
DERIVED = "derived"
"""The :class:`~napari_sparse_sem.params.ParamInfo` ``none_means`` that says nothing more than "unset"."""


@dataclass(frozen=True)
class Form:
    """How one field's option differs from what its model declares.

    ``aliases``: more flags for the same option; ``parse(text, flag)``: the field's value from the flag's text (for
    forms the generic parser does not know, e.g. ``Y0:Y1,X0:X1``); ``metavar``: the form shown in ``--help``;
    ``help``: replaces the model's help (e.g. for a field one flag sets in two models); ``repeat``: the flag may be
    given several times, each value one item of a list field; ``callback``: an eager typer callback (``--method help``).
    """

    aliases: tuple[str, ...] = ()
    parse: Callable[[str, str], Any] | None = None
    metavar: str | None = None
    help: str | None = None
    repeat: bool = False
    callback: Callable[[Any], Any] | None = None


def parse_fraction(text: str, flag: str) -> float:
    """``"0.05"`` or ``"5%"`` → 0.05 (bounds are the model's to check)."""
    raw = str(text).strip()
    try:
        return float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise ValueError(f"{flag} expects a fraction such as 0.05 (or 5%), got {text!r}") from None


def param_name(view: FieldView, prefix: str = "") -> str:
    """The command parameter of a field: its flag with underscores (``--coverage`` → ``coverage``)."""
    return prefix + view.flag[2:].replace("-", "_")


def sequence_kind(view: FieldView) -> tuple[str, tuple[Any, ...]]:
    """``("list", (item,))``, ``("tuple", items)`` (``items`` ends in ``...`` when its length is free), or
    ``("", ())`` for a scalar field."""
    for candidate in (view.base_type, *typing.get_args(view.base_type)):
        origin = typing.get_origin(candidate)
        if origin is list or candidate is list:
            return "list", typing.get_args(candidate) or (str,)
        if origin is tuple or candidate is tuple:
            return "tuple", typing.get_args(candidate) or (str, ...)
    return "", ()


def item_type(items: tuple[Any, ...]) -> Any:
    kinds = [a for a in items if a is not Ellipsis]
    return kinds[0] if kinds else str


def metavar(view: FieldView, form: Form) -> str:
    """How ``--help`` shows the form of a field's text (``A,B,...``, ``LOW:HIGH``, ``<fraction>`` ...)."""
    if form.metavar:
        return form.metavar
    kind, items = sequence_kind(view)
    if kind == "list":
        return "A,B,..."
    if kind == "tuple":
        if Ellipsis in items:
            return "A,B,..."
        return "LOW:HIGH" if len(items) == 2 else ",".join("ABCDEFGH"[: len(items)])
    if view.info.percent:
        return "<fraction>"
    kinds = typing.get_args(view.base_type) or (view.base_type,)
    return "<" + "|".join(getattr(k, "__name__", "str") for k in kinds if k is not type(None)) + ">"


def split_text(text: str, separators: str) -> list[str]:
    for sep in separators[1:]:
        text = text.replace(sep, separators[0])
    return [p.strip() for p in text.split(separators[0]) if p.strip()]


def scalar_value(text: str, kind: Any, view: FieldView, flag: str) -> Any:
    if view.info.percent and kind in (int, float):
        return parse_fraction(text, flag)
    if kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            what = "a whole number" if kind is int else "a number"
            raise ValueError(f"{flag} expects {what}, got {text!r}") from None
    if kind is bool:
        lowered = text.lower()
        if lowered in ("true", "yes", "on", "1"):
            return True
        if lowered in ("false", "no", "off", "0"):
            return False
        raise ValueError(f"{flag} expects true or false, got {text!r}")
    return text


def convert(view: FieldView, raw: Any, form: Form = Form()) -> Any:
    """A flag's value → the field's value (numbers and switches pass as they are; text is parsed by its field type)."""
    flag = view.flag
    if isinstance(raw, list | tuple) and form.repeat:  # one item per flag given
        kind = item_type(sequence_kind(view)[1])
        return [form.parse(t, flag) if form.parse else scalar_value(str(t).strip(), kind, view, flag) for t in raw]
    if not isinstance(raw, str):
        return raw
    if form.parse is not None:
        return form.parse(raw, flag)
    text = raw.strip()
    if view.info.nullable and text.lower() in NONE_WORDS:
        return None
    kind, items = sequence_kind(view)
    if kind and text.lower() in NONE_WORDS:
        return [] if kind == "list" else ()
    if kind == "list":
        return [scalar_value(p, item_type(items), view, flag) for p in split_text(text, ",")]
    if kind == "tuple":
        parts = split_text(text, ",:")
        if Ellipsis not in items and len(parts) != len(items):
            raise ValueError(f"{flag} expects {metavar(view, form)} ({len(items)} values), got {raw!r}")
        kinds = [item_type(items)] * len(parts) if Ellipsis in items else list(items)
        return tuple(scalar_value(p, k, view, flag) for p, k in zip(parts, kinds, strict=True))
    if view.base_type in (int, float, bool):
        return scalar_value(text, view.base_type, view, flag)
    if view.info.percent:
        return parse_fraction(text, flag)
    return text


def option_value(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_options(items: list[str] | None, per_method: bool = False) -> dict[str, Any]:
    """``["key=value", ...]`` → dict (values parsed as JSON when possible: numbers, true/false, lists).

    With ``per_method`` the keys read ``method.key`` and the result is ``{method: {key: value}}``.
    """
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        key = key.strip()
        if not sep or not key:
            form = "METHOD.KEY=VALUE (e.g. linear3d.context=5)" if per_method else "KEY=VALUE (e.g. context=5)"
            raise ValueError(f"--option expects {form}, got {item!r}")
        if per_method:
            method, dot, name = key.partition(".")
            if not dot or not method or not name:
                raise ValueError(f"--option expects METHOD.KEY=VALUE (e.g. linear3d.context=5), got {item!r}")
            out.setdefault(method, {})[name] = option_value(value)
        else:
            out[key] = option_value(value)
    return out
