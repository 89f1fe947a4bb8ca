"""Form fields beyond magicgui's one-value widgets, and the pieces that lay forms out.

Each composite field is a magicgui ``Container`` with a ``value`` in the model's terms, so a
:class:`~napari_sparse_sem.widgets._form.SpecForm` reads and fills it like any field and the settings store it:
:class:`NumbersEdit` (a fixed-length tuple of numbers side by side, e.g. an interval), :class:`TextChoice` (an
editable combo box: suggestions, or type your own), :class:`FileField` (a file, or empty for the model's default),
:class:`ChecksField` (a tuple of names as check boxes) and :class:`AutoNumber` (a number, or "auto"). :class:`Section`
hides a form's advanced fields behind a toggle; :func:`align_labels` gives forms stacked in one widget one label column.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, SpinBox, Widget
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QToolButton, QVBoxLayout, QWidget

_BIG = 1e9


class _Composite(Container):
    """A row of widgets that stands for one field (no labels of its own, no margins)."""

    def __init__(self, widgets: Sequence[Widget], **kwargs: Any) -> None:
        super().__init__(widgets=list(widgets), layout="horizontal", labels=False, **kwargs)
        self.margins = (0, 0, 0, 0)


class NumbersEdit(_Composite):
    """A fixed-length tuple of numbers, one spin box each (``kinds``: ``int`` or ``float`` per item)."""

    def __init__(
        self,
        kinds: Sequence[type],
        value: Sequence[float],
        *,
        low: float | None = None,
        high: float | None = None,
        step: float | None = None,
        **kwargs: Any,
    ) -> None:
        boxes = [number_box(kind, v, low=low, high=high, step=step) for kind, v in zip(kinds, value, strict=True)]
        super().__init__(boxes, **kwargs)

    @property
    def value(self) -> tuple[float, ...]:
        return tuple(box.value for box in self._list)

    @value.setter
    def value(self, values: Iterable[float]) -> None:
        values = list(values)
        if len(values) != len(self._list):
            raise ValueError(f"{self.label or self.name} takes {len(self._list)} numbers, got {values}")
        for box, v in zip(self._list, values, strict=True):
            box.value = v


class TextChoice(_Composite):
    """An editable combo box: pick a suggestion or type your own text (a list value shows as ``a, b``)."""

    def __init__(self, choices: Sequence[str], value: Any = None, **kwargs: Any) -> None:
        self.combo = ComboBox(choices=list(choices))
        self.combo.native.setEditable(True)
        self.combo.native.setInsertPolicy(self.combo.native.InsertPolicy.NoInsert)
        super().__init__([self.combo], **kwargs)
        if value is not None:
            self.value = value

    @property
    def value(self) -> str:
        return self.combo.native.currentText().strip()

    @value.setter
    def value(self, text: Any) -> None:
        if isinstance(text, list | tuple):
            text = ", ".join(str(t) for t in text)
        self.combo.native.setEditText(str(text))


class FileField(_Composite):
    """A file chooser whose value is the path as text, or ``None`` when empty (the model's default).

    ``check()`` refuses a path that is not a file, naming the field."""

    def __init__(self, *, filter: str = "", mode: str = "r", value: str | None = None, **kwargs: Any) -> None:
        self.file = FileEdit(mode=mode, filter=filter, nullable=True, value=value or None)
        super().__init__([self.file], **kwargs)

    @property
    def value(self) -> str | None:
        return None if self.file.value is None else str(self.file.value)

    @value.setter
    def value(self, path: Any) -> None:
        self.file.value = None if path in (None, "", ".") else str(path)

    def check(self) -> str | None:
        """The value, after making sure a given path is a file."""
        value = self.value
        if value is not None and not Path(value).is_file():
            name = self.label or self.name
            raise ValueError(f"{name} {value!r} is not a file; choose an existing file or clear the field")
        return value


class ChecksField(_Composite):
    """A tuple of names, one check box per possible name."""

    def __init__(self, choices: Sequence[str], value: Iterable[str] = (), **kwargs: Any) -> None:
        self.boxes = {name: CheckBox(text=name, value=False) for name in choices}
        super().__init__(list(self.boxes.values()), **kwargs)
        self.value = value

    @property
    def value(self) -> tuple[str, ...]:
        return tuple(name for name, box in self.boxes.items() if box.value)

    @value.setter
    def value(self, names: Iterable[str]) -> None:
        chosen = list(names or ())
        unknown = [n for n in chosen if n not in self.boxes]
        if unknown:
            raise ValueError(f"{self.label or self.name}: unknown choice(s) {unknown}; choose from {list(self.boxes)}")
        for name, box in self.boxes.items():
            box.value = name in chosen


class AutoNumber(_Composite):
    """A number, or the text ``auto`` when the *auto* box is ticked (the number box is then disabled)."""

    def __init__(self, value: Any = "auto", *, low: float = 0.0, high: float = _BIG, step: float = 0.5, **kwargs: Any):
        self.number = FloatSpinBox(value=max(low, 2.0), min=low, max=high, step=step)
        self.auto = CheckBox(text="auto", value=True)
        super().__init__([self.number, self.auto], **kwargs)
        self.auto.changed.connect(self._on_auto)
        self.value = value

    def _on_auto(self, *_: Any) -> None:
        self.number.enabled = self.enabled and not self.auto.value

    @property
    def value(self) -> float | str:
        return "auto" if self.auto.value else float(self.number.value)

    @value.setter
    def value(self, value: Any) -> None:
        if value == "auto":
            self.auto.value = True
        else:
            self.number.value = float(value)
            self.auto.value = False
        self._on_auto()


def number_box(
    kind: type,
    value: float,
    *,
    low: float | None = None,
    high: float | None = None,
    step: float | None = None,
    **kwargs: Any,
) -> Widget:
    """A spin box for one number: ``SpinBox`` for ints, ``FloatSpinBox`` with a step (and decimals) that suits the
    value for floats (a learning rate of 0.001 steps by 0.0001, not by 0.01)."""
    lo = -_BIG if low is None else low
    hi = _BIG if high is None else high
    if kind is int:
        return SpinBox(value=int(value), min=int(max(lo, -(2**31))), max=int(min(hi, 2**31 - 1)), **kwargs)
    step = step if step is not None else float_step(value)
    return FloatSpinBox(value=float(value), min=lo, max=hi, step=step, **kwargs)


def float_step(value: float) -> float:
    """A spin box step one digit below the value's leading digit (0.01 for zero)."""
    import math

    magnitude = abs(float(value))
    if magnitude == 0 or not math.isfinite(magnitude):
        return 0.01
    return min(0.1, 10.0 ** (math.floor(math.log10(magnitude)) - 1))


class Section(QWidget):
    """A part of a form behind a toggle button (e.g. advanced fields): closed by default, so forms fit a screen."""

    def __init__(self, title: str, content: QWidget, expanded: bool = False) -> None:
        super().__init__()
        self.toggle = QToolButton()
        self.toggle.setText(title)
        self.toggle.setCheckable(True)
        self.toggle.setAutoRaise(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.content = content
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(0)
        layout.addWidget(self.toggle)
        layout.addWidget(content)
        self.toggle.toggled.connect(self.set_expanded)
        self.set_expanded(expanded)

    @property
    def expanded(self) -> bool:
        """True while the content shows."""
        return self.toggle.isChecked()

    def set_expanded(self, expanded: bool) -> None:
        """Show or hide the content."""
        if self.toggle.isChecked() != expanded:
            self.toggle.setChecked(expanded)  # calls back here once
            return
        self.toggle.setArrowType(Qt.DownArrow if expanded else Qt.RightArrow)
        self.content.setVisible(expanded)


def align_labels(*containers: Container) -> None:
    """One label column for several labelled magicgui containers shown one above the other."""
    from magicgui.application import use_app

    measure = use_app().get_obj("get_text_width")
    labelled = []
    for container in containers:
        for widget in container:
            outer = getattr(widget, "_labeled_widget", lambda: None)()
            if outer is not None:
                labelled.append((widget, outer))
    if not labelled:
        return
    widest = max(measure(widget.label) for widget, _ in labelled)
    for _, outer in labelled:
        with contextlib.suppress(AttributeError):
            outer.label_width = widest
