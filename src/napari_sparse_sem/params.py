"""The one base for parameter models (design rule 3): every job's parameters are a dataclass deriving from
:class:`Spec`, and each field is declared with :func:`param`, which carries what the faces need to show it — help,
label, unit, percent display, bounds and choices. The CLI builds its options and the widgets build their forms from
these declarations (``cli/spec_options.py``, ``widgets/_form.py``), and the metadata saved beside every result is
``spec.to_dict()``, so a result can be re-run from it.

``from_dict`` is strict: an unknown key is an error naming it (a typo in a config file must not be ignored), and a
record written by a newer schema is refused with advice instead of being half read.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
import sys
import types
import typing
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, dataclass
from typing import Any, ClassVar, TypeVar

SCHEMA_KEY = "schema_version"
"""The key :meth:`Spec.to_dict` adds to every record; :meth:`Spec.from_dict` reads and checks it."""

S = TypeVar("S", bound="Spec")


@dataclass(frozen=True)
class ParamInfo:
    """How the faces show one field of a :class:`Spec`.

    ``low``/``high`` bound numbers (``low_open``/``high_open`` exclude the bound itself); ``choices`` restrict
    values to a list; ``percent`` means the value is a fraction that faces show and accept as a percentage; ``flag``
    is the CLI option's name (default: the field name with dashes) and ``cli``/``widget`` say whether a face shows
    the field at all (advanced fields stay in config files); ``nullable`` allows ``None``, which faces show as
    ``none_means`` (e.g. "derived", "a fresh random seed").
    """

    help: str = ""
    label: str = ""
    unit: str = ""
    percent: bool = False
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: tuple[Any, ...] | None = None
    nullable: bool = False
    none_means: str = "derived"
    flag: str | None = None
    cli: bool = True
    widget: bool = True
    step: float | None = None


def param(
    default: Any = MISSING,
    *,
    default_factory: Any = MISSING,
    help: str = "",
    label: str = "",
    unit: str = "",
    percent: bool = False,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    high_open: bool = False,
    choices: Sequence[Any] | None = None,
    nullable: bool | None = None,
    none_means: str = "derived",
    flag: str | None = None,
    cli: bool = True,
    widget: bool = True,
    step: float | None = None,
) -> Any:
    """A dataclass field with its :class:`ParamInfo`; ``nullable`` defaults to "the default is None"."""
    info = ParamInfo(
        help=help,
        label=label,
        unit=unit,
        percent=percent,
        low=low,
        high=high,
        low_open=low_open,
        high_open=high_open,
        choices=tuple(choices) if choices is not None else None,
        nullable=(default is None) if nullable is None else nullable,
        none_means=none_means,
        flag=flag,
        cli=cli,
        widget=widget,
        step=step,
    )
    if default_factory is not MISSING:
        return dataclasses.field(default_factory=default_factory, metadata={"param": info})
    return dataclasses.field(default=default, metadata={"param": info})


@dataclass(frozen=True)
class FieldView:
    """One field of a spec as a face sees it: name, type, default and :class:`ParamInfo`."""

    name: str
    type: Any
    default: Any
    info: ParamInfo
    declared: bool = True

    @property
    def label(self) -> str:
        text = self.info.label or self.name.replace("_", " ")
        return text[:1].upper() + text[1:]

    @property
    def flag(self) -> str:
        """The CLI option (the first switch of a ``"on/off"`` boolean flag)."""
        return "--" + (self.info.flag or self.name.replace("_", "-")).partition("/")[0]

    @property
    def base_type(self) -> Any:
        """The annotation without ``None`` (``float | None`` → ``float``)."""
        args = [a for a in typing.get_args(self.type) if a is not type(None)]
        if typing.get_origin(self.type) in (typing.Union, types.UnionType) and len(args) == 1:
            return args[0]
        return self.type


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """Resolved field annotations; a name only imported for type checking resolves to ``Any``."""
    try:
        return typing.get_type_hints(cls)
    except NameError:
        module = vars(sys.modules[cls.__module__]) if cls.__module__ in sys.modules else {}
        hints: dict[str, Any] = {}
        for f in dataclasses.fields(cls):
            try:
                hints[f.name] = eval(f.type, module) if isinstance(f.type, str) else f.type
            except NameError:
                hints[f.name] = Any
        return hints


def fields_of(spec: type[Spec] | Spec) -> list[FieldView]:
    """The fields of a spec class (or instance), in declaration order, each with its :class:`ParamInfo`."""
    cls = spec if isinstance(spec, type) else type(spec)
    hints = _hints(cls)
    out = []
    for f in dataclasses.fields(cls):
        if f.default is not MISSING:
            default = f.default
        elif f.default_factory is not MISSING:
            default = f.default_factory()
        else:
            default = MISSING
        info = f.metadata.get("param")
        out.append(FieldView(f.name, hints.get(f.name, Any), default, info or ParamInfo(), info is not None))
    return out


def _is_spec_type(tp: Any) -> type[Spec] | None:
    for candidate in (tp, *typing.get_args(tp)):
        if isinstance(candidate, type) and issubclass(candidate, Spec):
            return candidate
    return None


def _is_tuple_type(tp: Any) -> bool:
    return any(typing.get_origin(c) is tuple or c is tuple for c in (tp, *typing.get_args(tp)))


def _jsonable(value: Any) -> Any:
    if isinstance(value, Spec):
        return value.to_dict()
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    return value


def check_value(name: str, value: Any, info: ParamInfo) -> None:
    """Raise a ``ValueError`` that names ``name`` when ``value`` breaks the declared choices or bounds."""
    if value is None:
        if info.nullable:
            return
        raise ValueError(f"{name} needs a value, got None")
    if info.choices is not None and value not in info.choices:
        raise ValueError(f"{name} must be one of {list(info.choices)}, got {value!r}")
    if info.low is None and info.high is None:
        return
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a number, got {value!r}")
    too_low = info.low is not None and (value <= info.low if info.low_open else value < info.low)
    too_high = info.high is not None and (value >= info.high if info.high_open else value > info.high)
    if not math.isfinite(value) or too_low or too_high:
        left = "(" if info.low_open or info.low is None else "["
        right = ")" if info.high_open or info.high is None else "]"
        low = "-inf" if info.low is None else f"{info.low:g}"
        high = "inf" if info.high is None else f"{info.high:g}"
        example = (value / 100, value) if 1 < value <= 100 else (0.05, 5)
        hint = f" (a fraction, not a percentage: write {example[0]:g} for {example[1]:g} %)" if info.percent else ""
        raise ValueError(f"{name} must be in {left}{low}, {high}{right}, got {value!r}{hint}")


class Spec:
    """Base of every parameter model (mix into a ``@dataclass``).

    Subclasses declare fields with :func:`param` and may add checks in :meth:`validate`; ``kind`` names the model in
    saved records and ``version`` is its schema version (raise it when a field changes meaning).
    """

    kind: ClassVar[str] = ""
    version: ClassVar[int] = 1

    def __post_init__(self) -> None:
        for view in fields_of(self):
            if view.declared:
                check_value(view.name, getattr(self, view.name), view.info)
        self.validate()

    def validate(self) -> None:
        """Checks beyond bounds and choices (relations between fields); the default has none."""

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (tuples become lists, nested specs dicts) plus :data:`SCHEMA_KEY`."""
        data = {f.name: _jsonable(getattr(self, f.name)) for f in dataclasses.fields(self)}  # type: ignore[arg-type]
        data[SCHEMA_KEY] = self.version
        return data

    @classmethod
    def from_dict(cls: type[S], data: Mapping[str, Any]) -> S:
        """The spec saved by :meth:`to_dict` or written in a config file; unknown keys are an error that names them."""
        if not isinstance(data, Mapping):
            raise ValueError(f"{cls.describe()} parameters must be a JSON object, got {type(data).__name__}")
        values = dict(data)
        version = values.pop(SCHEMA_KEY, cls.version)
        if not isinstance(version, int) or version > cls.version:
            raise ValueError(
                f"{cls.describe()} parameters have schema version {version!r}, newer than this napari-sparse-sem "
                f"reads ({cls.version}); update napari-sparse-sem"
            )
        views = {v.name: v for v in fields_of(cls)}
        unknown = sorted(set(values) - set(views))
        if unknown:
            raise ValueError(f"unknown {cls.describe()} field(s) {unknown}; known fields: {sorted(views)}")
        for name, value in values.items():
            tp = views[name].type
            nested = _is_spec_type(tp)
            if nested is not None and isinstance(value, Mapping):
                values[name] = nested.from_dict(value)
            elif isinstance(value, list) and _is_tuple_type(tp):
                values[name] = tuple(tuple(v) if isinstance(v, list) else v for v in value)
        return cls(**values)

    @classmethod
    def describe(cls) -> str:
        """The model's name in messages (``kind`` or the class name)."""
        return cls.kind or cls.__name__

    def replace(self: S, **changes: Any) -> S:
        """A copy with some fields changed (checked again)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]
