"""The options of reconstruction methods as forms, built from each method's options spec (design rule 9).

:class:`MethodOptions` holds one :class:`~napari_sparse_sem.widgets._form.SpecForm` per options spec of the
registered methods (``dip`` and ``dip3d`` share :class:`~napari_sparse_sem.recon.dip.DIPConfig`, a plugin brings its
own) and shows those of the chosen methods. Nothing here knows a method by name: a spec with a ``preset`` field gets
a preset chooser that fills the other fields; a method that ``needs_weights`` gets a file chooser for its ``weights``
option (empty: the method's default weights); an ``iterative`` method gets the widget's live fit preview and loss
plot (:meth:`MethodOptions.iterative`). :meth:`MethodOptions.options` returns the preset and only the fields that
differ from it (or from the spec's defaults), so a saved run says exactly what was changed.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from qtpy.QtWidgets import QGroupBox, QVBoxLayout, QWidget

from napari_sparse_sem.params import Spec
from napari_sparse_sem.widgets._fields import FileField
from napari_sparse_sem.widgets._form import SpecForm, face_label, form_fields

SHOWN_FIELDS = 3
"""Options specs with at most this many fields (besides preset and weights) show them all; larger ones keep the rest
behind a *more options* toggle."""
FRONT = ("preset", "weights")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return list(a) == list(b)
    return a == b


class SpecOptions(QGroupBox):
    """The form of one options spec, for the methods that take it (titled with the chosen ones)."""

    def __init__(self, spec: type[Spec], needs_weights: bool) -> None:
        super().__init__()
        self.spec = spec
        self.methods: list[str] = []
        names = [view.name for view in form_fields(spec)]
        custom: dict[str, Any] = {}
        if needs_weights and "weights" in names:
            custom["weights"] = FileField(filter="*.safetensors", label="weights")
        rest = [name for name in names if name not in FRONT]
        advanced = rest if len(rest) > SHOWN_FIELDS else []
        self.form = SpecForm(spec, widgets=custom, advanced=advanced, section="more options")
        if "weights" in custom:
            self.form["weights"].label = _weights_label(spec)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.form.native)
        self.has_preset = "preset" in names
        if self.has_preset:
            self.form["preset"].changed.connect(self._fill_from_preset)
            self._fill_from_preset()

    def _base(self, preset: Any = None) -> Spec | None:
        """The values the options start from: the preset's, or the spec's defaults (None if it has none)."""
        try:
            return self.spec.from_dict({"preset": preset} if self.has_preset else {})
        except (TypeError, ValueError):
            return None

    def _fill_from_preset(self, *_: Any) -> None:
        base = self._base(self.form["preset"].value)
        if base is not None:
            self.form.set_spec(base)

    def options(self) -> dict[str, Any]:
        """The preset (if any) and the fields that differ from where they started."""
        values = self.form.values()
        base = self._base(values.get("preset"))
        out = {"preset": values["preset"]} if self.has_preset else {}
        for name, value in values.items():
            if name == "preset":
                continue
            if base is None or not _same(value, getattr(base, name)):
                out[name] = value
        weights = self.form.fields.get("weights")
        if isinstance(weights, FileField) and "weights" in out:
            weights.check()
        return out

    def show_methods(self, chosen: Iterable[str]) -> None:
        """Visible with the methods among ``chosen`` that take these options, in the title."""
        mine = [m for m in chosen if m in self.methods]
        self.setTitle(f"{', '.join(mine)} options")
        self.setVisible(bool(mine))


def _weights_label(spec: type[Spec]) -> str:
    view = next(v for v in form_fields(spec) if v.name == "weights")
    return face_label(view.label)


class MethodOptions(QWidget):
    """The option forms of ``methods`` (one per options spec), shown for the chosen methods."""

    def __init__(self, methods: Sequence[str]) -> None:
        from napari_sparse_sem.recon.base import method_class

        super().__init__()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.groups: dict[type[Spec], SpecOptions] = {}
        self._of: dict[str, SpecOptions] = {}
        for name in methods:
            cls = method_class(name)
            if cls.options is None or not form_fields(cls.options):
                continue
            group = self.groups.get(cls.options)
            if group is None:
                group = self.groups[cls.options] = SpecOptions(cls.options, cls.needs_weights)
                layout.addWidget(group)
            group.methods.append(name)
            self._of[name] = group
        self.show_for([])

    # -- what the widgets ask --------------------------------------------------------------------------------------
    def form(self, method: str) -> SpecForm | None:
        """The options form of ``method`` (None for a method without options)."""
        group = self._of.get(method)
        return group.form if group is not None else None

    def show_for(self, methods: Iterable[str]) -> None:
        """Show the options of the chosen ``methods`` only."""
        chosen = list(methods)
        for group in self.groups.values():
            group.show_methods(chosen)
        self.setVisible(any(m in self._of for m in chosen))

    def options(self, method: str) -> dict[str, Any]:
        """The options of ``method`` as its ``options`` dict (``{}`` for defaults or none), checked by the method
        (a ``ValueError`` naming the method and the field to fix)."""
        from napari_sparse_sem.recon.base import method_class

        group = self._of.get(method)
        if group is None:
            return {}
        options = group.options()
        method_class(method).parse_options(options)
        return options

    def check_options(self, method: str, options: Mapping[str, Any]) -> Spec | None:
        """``options`` read strictly by ``method`` (unknown names, bad values: ``ValueError``), without showing them."""
        from napari_sparse_sem.recon.base import method_class

        if method not in self._of:
            if options:
                raise ValueError(f"method {method!r} takes no options here, got {sorted(options)}")
            return None
        return method_class(method).parse_options(dict(options))

    def set_options(self, method: str, options: Mapping[str, Any] | Spec) -> None:
        """Show ``options`` (a dict checked by the method, or its spec) in the method's form."""
        group = self._of.get(method)
        if group is None:
            return
        spec = options if isinstance(options, Spec) else self.check_options(method, options)
        if group.has_preset:
            group.form["preset"].value = spec.preset  # fills the preset's values first (no-op when unchanged)
        group.form.set_spec(spec)

    @staticmethod
    def iterative(methods: Iterable[str]) -> bool:
        """True when one of ``methods`` fits iteratively (worth a live preview and a loss plot)."""
        from napari_sparse_sem.recon.base import method_class

        return any(method_class(m).iterative for m in methods)

    def settings_widgets(self) -> dict[str, Any]:
        """The fields remembered between sessions, as ``<first method>_<field>`` (a preset before its fields)."""
        out: dict[str, Any] = {}
        for group in self.groups.values():
            fields = group.form.fields
            order = [name for name in FRONT if name in fields] + [n for n in fields if n not in FRONT]
            out.update({f"{group.methods[0]}_{name}": fields[name] for name in order})
        return out
