"""Widget forms generated from parameter models: one magicgui field per widget-visible field of a
:class:`~napari_sparse_sem.params.Spec`, with the model's label, help (tooltip), bounds, choices and percent display, so
a widget and the CLI can never disagree on a default (design rule 3).

``SpecForm(MaskSpec)`` is a magicgui ``Container``; ``form.spec()`` builds the validated model (its ``ValueError`` is
the message to show), ``form.set_spec(spec_or_dict)`` fills the form, e.g. from a saved ``params.json``.
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping
from typing import Any

from magicgui.widgets import CheckBox, ComboBox, Container, FloatSpinBox, LineEdit, SpinBox, Widget

from napari_sparse_sem.params import FieldView, Spec, fields_of

_BIG = 1e9


def form_fields(spec: type[Spec], exclude: Iterable[str] = ()) -> list[FieldView]:
    """The fields of ``spec`` a widget shows: declared for widgets, of a type a form field can carry, not excluded."""
    skipped = set(exclude)
    out = []
    for view in fields_of(spec):
        base = view.base_type
        if not view.info.widget or view.name in skipped:
            continue
        if typing.get_origin(base) is dict or base is dict or (isinstance(base, type) and issubclass(base, Spec)):
            continue
        out.append(view)
    return out


def _tooltip(view: FieldView) -> str:
    text = view.info.help or view.label
    if view.info.nullable:
        text += f" Empty: {view.info.none_means}."
    return text


def _label(view: FieldView) -> str:
    if view.info.percent:
        return f"{view.label} (%)"
    return f"{view.label} ({view.info.unit})" if view.info.unit else view.label


def _is_tuple(view: FieldView) -> bool:
    base = view.base_type
    return typing.get_origin(base) is tuple or base is tuple


def field_widget(view: FieldView, value: Any) -> Widget:
    """The magicgui widget for one field, showing ``value``."""
    info = view.info
    common = {"name": view.name, "label": _label(view), "tooltip": _tooltip(view)}
    base = view.base_type
    if info.choices is not None:
        return ComboBox(choices=list(info.choices), value=value, **common)
    if base is bool:
        return CheckBox(value=bool(value), **common)
    if base in (int, float) and not info.nullable:
        scale = 100.0 if info.percent else 1.0
        low = -_BIG if info.low is None else info.low * scale
        high = _BIG if info.high is None else info.high * scale
        if base is int:
            return SpinBox(value=int(value), min=int(max(low, -(2**31))), max=int(min(high, 2**31 - 1)), **common)
        step = info.step if info.step is not None else (0.5 if info.percent else 0.01)
        shown = float(value) * scale
        return FloatSpinBox(value=shown, min=low, max=high, step=step, **common)
    return LineEdit(value=_text(view, value), **common)


def _text(view: FieldView, value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, tuple | list):
        return ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value)
    if view.info.percent and isinstance(value, int | float):
        return f"{value * 100:g}"
    return str(value)


def _read(view: FieldView, widget: Widget) -> Any:
    value = widget.value
    if not isinstance(widget, LineEdit):
        if view.info.percent and isinstance(value, float):
            return value / 100.0
        return value
    text = str(value).strip()
    if text == "" and view.info.nullable:
        return None
    base = view.base_type
    try:
        if _is_tuple(view):
            kinds = [a for a in typing.get_args(base) if a is not Ellipsis] or [str]
            return tuple(kinds[0](p.strip()) for p in text.replace(";", ",").split(",") if p.strip())
        if view.info.percent:
            return float(text.rstrip("%")) / 100.0
        if base in (int, float):
            return base(text)
    except ValueError:
        raise ValueError(f"{view.label}: expected a number, got {text!r}") from None
    return text


class SpecForm(Container):
    """A form for one parameter model; ``exclude`` hides fields the widget sets itself (e.g. a seed from a layer)."""

    def __init__(self, spec: type[Spec], *, exclude: Iterable[str] = (), values: Mapping[str, Any] | None = None):
        self._spec = spec
        self._views = form_fields(spec, exclude)
        start = dict(values or {})
        widgets = [field_widget(v, start.get(v.name, v.default)) for v in self._views]
        super().__init__(widgets=widgets, labels=True)

    @property
    def fields(self) -> dict[str, Widget]:
        """The field widgets by field name (for settings persistence)."""
        return {v.name: self[v.name] for v in self._views}

    def values(self) -> dict[str, Any]:
        """The form's values as model fields (percent fields back to fractions)."""
        return {v.name: _read(v, self[v.name]) for v in self._views}

    def spec(self, **fixed: Any) -> Spec:
        """The validated model from the form plus ``fixed`` fields; a ``ValueError`` says what to fix."""
        return self._spec(**{**self.values(), **fixed})

    def set_spec(self, spec: Spec | Mapping[str, Any]) -> None:
        """Show ``spec`` (a model or a saved dict, checked strictly) in the form."""
        model = spec if isinstance(spec, Spec) else self._spec.from_dict(spec)
        for view in self._views:
            widget = self[view.name]
            value = getattr(model, view.name)
            if isinstance(widget, LineEdit):
                widget.value = _text(view, value)
            elif view.info.percent:
                widget.value = float(value) * 100.0
            else:
                widget.value = value
