"""Widget forms generated from parameter models: one field per widget-visible field of a
:class:`~napari_sparse_sem.params.Spec`, with the model's label, help (tooltip), bounds, choices and percent display, so
a widget and the CLI can never disagree on a default (design rule 3).

``SpecForm(MaskSpec)`` is a magicgui ``Container``; ``form.spec()`` builds the validated model (its ``ValueError`` is
the message to show), ``form.set_spec(spec_or_dict)`` fills the form, e.g. from a saved ``params.json``. A widget may
give its own field widget for a field (``widgets=``: a layer's device list, a file chooser; any object with a
``value`` in the model's terms, see :mod:`._fields`) and put fields people rarely change behind an *Advanced* toggle
(``advanced=``).
"""

from __future__ import annotations

import typing
from collections.abc import Iterable, Mapping
from dataclasses import MISSING
from typing import Any

from magicgui.widgets import CheckBox, ComboBox, Container, LineEdit, SpinBox, Widget

from napari_sparse_sem.params import FieldView, Spec, fields_of
from napari_sparse_sem.params_text import sequence_kind
from napari_sparse_sem.widgets._fields import NumbersEdit, Section, align_labels, number_box

ADVANCED = "Advanced"
MAX_THREADS = 1024


def _is_nested(base: Any) -> bool:
    return typing.get_origin(base) is dict or base is dict or (isinstance(base, type) and issubclass(base, Spec))


def form_fields(spec: type[Spec], exclude: Iterable[str] = (), custom: Iterable[str] = ()) -> list[FieldView]:
    """The fields of ``spec`` a widget shows: declared for widgets, of a type a form field can carry (or given a
    ``custom`` widget), not excluded."""
    skipped, own = set(exclude), set(custom)
    out = []
    for view in fields_of(spec):
        if view.name in skipped:
            continue
        if view.name in own or (view.info.widget and not _is_nested(view.base_type)):
            out.append(view)
    return out


def _tooltip(view: FieldView) -> str:
    text = view.info.help or view.label
    if view.info.nullable:
        text += f" Empty: {view.info.none_means}."
    return text


def face_label(text: str) -> str:
    """A label as the dock widgets write them: lower case first (``Coverage`` → ``coverage``), acronyms kept
    (``DIP preset``, ``SNR``)."""
    first = text.split(" ", 1)[0]
    if len(first) > 1 and first.isupper():
        return text
    return text[:1].lower() + text[1:]


def _label(view: FieldView) -> str:
    label = face_label(view.label)
    if view.info.percent:
        return f"{label} (%)"
    return f"{label} ({view.info.unit})" if view.info.unit else label


def _fixed_numbers(view: FieldView) -> list[type] | None:
    """The item types of a fixed-length tuple of numbers (shown as spin boxes side by side), else None."""
    kind, items = sequence_kind(view)
    if kind == "tuple" and items and Ellipsis not in items and all(t in (int, float) for t in items):
        return list(items) if not view.info.nullable else None
    return None


def _scale(view: FieldView) -> float:
    return 100.0 if view.info.percent else 1.0


def _start(view: FieldView, value: Any) -> Any:
    """A value to show for a field without a default (a model with required fields)."""
    if value is not MISSING:
        return value
    if view.base_type in (int, float) and not view.info.nullable:
        return view.info.low if view.info.low is not None else 0
    return None


def field_widget(view: FieldView, value: Any) -> Widget:
    """The magicgui widget for one field, showing ``value`` (in the model's terms)."""
    info = view.info
    common = {"name": view.name, "label": _label(view), "tooltip": _tooltip(view)}
    value = _start(view, value)
    base = view.base_type
    scale = _scale(view)
    low = None if info.low is None else info.low * scale
    high = None if info.high is None else info.high * scale
    step = info.step if info.step is not None else (0.5 if info.percent else None)
    if info.choices is not None:
        return ComboBox(choices=list(info.choices), value=value, **common)
    if base is bool:
        return CheckBox(value=bool(value), **common)
    if base in (int, float) and not info.nullable:
        return number_box(base, value * scale, low=low, high=high, step=step, **common)
    numbers = _fixed_numbers(view)
    if numbers is not None:
        shown = [v * scale for v in value]
        return NumbersEdit(numbers, shown, low=low, high=high, step=step, **common)
    return LineEdit(value=_text(view, value), **common)


def _text(view: FieldView, value: Any) -> str:
    """A value as a line edit shows it (percent fields as percentages; sequences as ``a, b``; None empty)."""
    if value is None:
        return ""
    scale = _scale(view)

    def one(v: Any) -> str:
        if isinstance(v, bool) or not isinstance(v, int | float):
            return str(v)
        return _number_text(v * scale) if scale != 1.0 or isinstance(v, float) else str(v)

    if isinstance(value, tuple | list):
        return ", ".join(one(v) for v in value)
    return one(value)


def _number_text(v: Any) -> str:
    text = f"{v:g}"
    return text if float(text) == v else repr(v)


def _parse(view: FieldView, text: str) -> Any:
    """A line edit's text in the model's terms (``ValueError`` naming the field when it is not a number)."""
    text = str(text).strip()
    if text == "" and view.info.nullable:
        return None
    scale = _scale(view)

    def one(kind: Any, part: str) -> Any:
        part = part.strip()
        if scale != 1.0:
            return float(part.rstrip("%").strip()) / scale
        return kind(part) if kind in (int, float) else part

    try:
        kind, items = sequence_kind(view)
        if kind:
            item = next((t for t in items if t is not Ellipsis), str)
            values = [one(item, p) for p in text.replace(";", ",").split(",") if p.strip()]
            return tuple(values) if kind == "tuple" else values
        return one(view.base_type, text)
    except ValueError:
        raise ValueError(f"{view.label}: expected a number, got {text!r}") from None


class SpecForm(Container):
    """A form for one parameter model.

    ``exclude`` hides fields the widget sets itself (e.g. a window from the image size); ``values`` starts fields
    elsewhere than the model's defaults; ``widgets`` gives a field its own widget (anything with a ``value`` in the
    model's terms); ``advanced`` fields go into :attr:`advanced`, shown in a :class:`~._fields.Section` titled
    ``section`` under the form (``section=""``: the widget places :attr:`advanced` itself, e.g. in one section with
    another form's).
    """

    def __init__(
        self,
        spec: type[Spec],
        *,
        exclude: Iterable[str] = (),
        values: Mapping[str, Any] | None = None,
        widgets: Mapping[str, Any] | None = None,
        advanced: Iterable[str] = (),
        section: str = ADVANCED,
    ):
        custom = dict(widgets or {})
        self._spec = spec
        self._views = form_fields(spec, exclude, custom)
        names = [v.name for v in self._views]
        hidden = list(advanced)
        unknown = sorted((set(hidden) | set(custom)) - set(names))
        if unknown:
            raise TypeError(f"{spec.__name__} shows no field(s) {unknown} in a form")
        start = dict(values or {})
        made: dict[str, Any] = {}
        for view in self._views:
            value = start.get(view.name, view.default)
            if view.name in custom:
                widget = custom[view.name]
                if not getattr(widget, "tooltip", None):
                    widget.tooltip = _tooltip(view)
                if value is not MISSING:
                    _write(view, widget, value, custom=True)
            else:
                widget = field_widget(view, value)
            made[view.name] = widget
        self._fields = made
        self._custom = set(custom)
        super().__init__(widgets=[made[n] for n in names if n not in hidden], labels=True)
        self.advanced = Container(widgets=[made[n] for n in names if n in hidden], labels=True)
        for container in (self, self.advanced):  # forms stack in a dock: no blank band above and below each
            left, _, right, _ = container.margins
            container.margins = (left, 0, right, 0)
        self.section: Section | None = None
        if hidden and section:
            self.section = Section(section, self.advanced.native)
            self.native.layout().addWidget(self.section)
        align_labels(self, self.advanced)

    def __getitem__(self, key: Any) -> Any:
        fields = self.__dict__.get("_fields")
        if isinstance(key, str) and fields is not None and key in fields:
            return fields[key]
        return super().__getitem__(key)

    @property
    def model(self) -> type[Spec]:
        """The parameter model this form shows."""
        return self._spec

    @property
    def fields(self) -> dict[str, Any]:
        """The field widgets by field name (for settings persistence)."""
        return dict(self._fields)

    def values(self) -> dict[str, Any]:
        """The form's values as model fields (percent fields back to fractions); a percentage out of its bounds is
        a ``ValueError`` in the form's own units."""
        out = {}
        for view in self._views:
            value = _read(view, self._fields[view.name], view.name in self._custom)
            if view.info.percent and view.name not in self._custom:
                _check_percent(view, value)
            out[view.name] = value
        return out

    def spec(self, **fixed: Any) -> Spec:
        """The validated model from the form plus ``fixed`` fields; a ``ValueError`` says what to fix."""
        return self._spec(**{**self.values(), **fixed})

    def set_values(self, values: Mapping[str, Any]) -> None:
        """Show these field values (model terms); fields the form does not show are ignored."""
        for view in self._views:
            if view.name in values:
                _write(view, self._fields[view.name], values[view.name], view.name in self._custom)

    def set_spec(self, spec: Spec | Mapping[str, Any]) -> None:
        """Show ``spec`` (a model or a saved dict, checked strictly) in the form."""
        model = spec if isinstance(spec, Spec) else self._spec.from_dict(spec)
        self.set_values({view.name: getattr(model, view.name) for view in self._views})


def _check_percent(view: FieldView, value: Any) -> None:
    """Bounds of a percent field said in percent (the model's own message speaks of fractions)."""
    info = view.info
    name = view.label[:1].lower() + view.label[1:]
    for v in value if isinstance(value, tuple | list) else [value]:
        if not isinstance(v, int | float) or isinstance(v, bool):
            continue
        if info.low is not None and (v <= info.low if info.low_open else v < info.low):
            word = "more than" if info.low_open else "at least"
            raise ValueError(f"{name} must be {word} {info.low * 100:g} %, got {v * 100:g} %")
        if info.high is not None and (v >= info.high if info.high_open else v > info.high):
            word = "less than" if info.high_open else "at most"
            raise ValueError(f"{name} must be {word} {info.high * 100:g} %, got {v * 100:g} %")


def _read(view: FieldView, widget: Any, custom: bool) -> Any:
    value = widget.value
    if custom:  # its own value, but a list typed as text (e.g. "spiral, grid") is split
        return _parse(view, value) if isinstance(value, str) and sequence_kind(view)[0] else value
    if isinstance(widget, LineEdit):
        return _parse(view, value)
    scale = _scale(view)
    if scale != 1.0 and isinstance(value, tuple):
        return tuple(v / scale for v in value)
    if scale != 1.0 and isinstance(value, int | float) and not isinstance(value, bool):
        return value / scale
    return value


def _write(view: FieldView, widget: Any, value: Any, custom: bool) -> None:
    if custom:
        widget.value = value
    elif isinstance(widget, LineEdit):
        widget.value = _text(view, value)
    elif isinstance(value, tuple | list) and _fixed_numbers(view) is not None:
        widget.value = [v * _scale(view) for v in value]
    elif view.info.percent and isinstance(value, int | float):
        widget.value = float(value) * 100.0
    else:
        widget.value = value


def threads_field(value: int = 0) -> SpinBox:
    """The *threads* field a widget shows beside its device: the CPU threads its jobs use (0: auto,
    ``OMP_NUM_THREADS`` when set, else the cores napari may use less those busy elsewhere as the job starts). The job
    applies it in its worker thread with :func:`napari_sparse_sem.threads.with_threads` and puts the previous counts
    back when it ends."""
    from napari_sparse_sem.threads import usable_cores

    return SpinBox(
        name="threads",
        label="threads (0: auto)",
        value=value,
        min=0,
        max=MAX_THREADS,
        tooltip=f"CPU threads of this job (auto: OMP_NUM_THREADS when set, else those of the {usable_cores()} usable "
        "cores that other programs do not keep busy as the job starts)",
    )


def place_after(form: Container, anchor: Widget, widget: Widget) -> None:
    """Show ``widget`` right after ``anchor`` in ``form`` (or in a :class:`SpecForm`'s advanced section, wherever
    ``anchor`` is), e.g. the threads field beside a model's device field; a field outside the model is not one of
    the form's :meth:`SpecForm.values`."""
    for container in (form, getattr(form, "advanced", None)):
        if container is not None and anchor in list(container):
            container.insert(list(container).index(anchor) + 1, widget)
            return
    raise ValueError(f"{anchor.name!r} is not in this form")
