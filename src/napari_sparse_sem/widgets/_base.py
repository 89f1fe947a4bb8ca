"""The base of every dock widget: a scrolling body, job panels, layer pickers, remembered settings, result layers
that replace their predecessors, and one way to close.

A widget closes when its dock's × removes it (napari takes it out of the dock: its parent becomes None), when it is
closed itself, or when the main window it is docked in closes. Closing cancels its running jobs and drops whatever they
still report (:meth:`JobPanel.discard <napari_sparse_sem.widgets._worker.JobPanel.discard>`), so no layer is added to a
viewer after the widget that started the job has gone; the job's own cleanup still runs in its worker thread.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, ClassVar

import napari
from napari.layers import Layer
from qtpy.QtCore import QEvent, QObject, QSize, Qt
from qtpy.QtWidgets import (
    QFileDialog,
    QFrame,
    QHBoxLayout,
    QMainWindow,
    QPushButton,
    QScrollArea,
    QVBoxLayout,
    QWidget,
)

from napari_sparse_sem.widgets._layers import LayerChoices
from napari_sparse_sem.widgets._settings import restore_values, save_values
from napari_sparse_sem.widgets._worker import JobPanel

MAX_HEIGHT_HINT = 900  # px: a widget's preferred height fits a 1080 px screen with the window's bars


class _WindowWatch(QObject):
    """Tells its widget when the main window it is docked in closes.

    It watches the widget's ancestors (its dock, then the main window the dock is added to; Qt's public API only),
    following them as they change. A programmatic close (``viewer.close()``) cannot be refused, so it counts at
    once; a close from the window manager may still be refused by napari's confirmation dialog, so it counts only
    when the window then hides.
    """

    def __init__(self, widget: JobWidget) -> None:
        super().__init__(widget)
        self._widget = widget
        self._asked = False
        self._watched: list[QObject] = []

    def follow(self) -> None:
        """Watch every ancestor of the widget (installing a filter twice keeps one)."""
        ancestor = self._widget.parentWidget()
        while ancestor is not None:
            ancestor.installEventFilter(self)
            if ancestor not in self._watched:
                self._watched.append(ancestor)
            ancestor = ancestor.parentWidget()

    def stop(self) -> None:
        """Stop watching (the widget closed)."""
        for obj in self._watched:
            with contextlib.suppress(RuntimeError):  # already deleted
                obj.removeEventFilter(self)
        self._watched = []

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        kind = event.type()
        if kind == QEvent.ParentChange:
            self.follow()
        elif isinstance(obj, QMainWindow) and obj.parentWidget() is None and obj.isAncestorOf(self._widget):
            if kind == QEvent.Close:
                if event.spontaneous() and obj.isVisible():
                    self._asked = True
                else:
                    self._widget.shutdown()
            elif kind == QEvent.Hide and self._asked and not event.spontaneous():
                self._widget.shutdown()
        return False


class _VerticalScroll(QScrollArea):
    """Scrolls up and down only: as wide as its content needs, and never asks for more height than a screen has
    (:data:`MAX_HEIGHT_HINT`)."""

    def __init__(self, content: QWidget) -> None:
        super().__init__()
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.setWidget(content)
        content.installEventFilter(self)  # its layout changes (a section shown or hidden): new hints

    def _extra_width(self) -> int:
        return self.verticalScrollBar().sizeHint().width() + 2 * self.frameWidth()

    def minimumSizeHint(self) -> QSize:
        hint = super().minimumSizeHint()
        hint.setWidth(self.widget().minimumSizeHint().width() + self._extra_width())
        return hint

    def sizeHint(self) -> QSize:
        content = self.widget().sizeHint()
        return QSize(content.width() + self._extra_width(), min(content.height(), MAX_HEIGHT_HINT))

    def eventFilter(self, obj: QObject, event: QEvent) -> bool:
        if obj is self.widget() and event.type() == QEvent.LayoutRequest:
            self.updateGeometry()
        return False


class JobWidget(QWidget):
    """A dock widget that runs core jobs: subclasses put their form into :attr:`body`, make their panels with
    :meth:`add_panel`, register layer combo boxes with :meth:`pick_layers`, list the fields to remember in
    :meth:`remembered`, add results with :meth:`add_result`, and clean up their own state in :meth:`on_close`.

    A widget whose form comes from parameter models sets :attr:`PARAMETERS` (what it reads, for the tooltip) and
    implements :meth:`parameters_from`: the base then shows a *Load parameters…* button that fills the form from a
    saved file (:meth:`load_parameters`)."""

    SETTINGS_GROUP: ClassVar[str] = ""
    PARAMETERS: ClassVar[str] = ""

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__()
        self.viewer = napari_viewer
        self.closed = False
        self.panels: list[JobPanel] = []
        self._choices = LayerChoices(napari_viewer)
        self._listening: list[tuple[Any, Callable[..., Any]]] = []
        self._results: dict[str, Layer] = {}
        self._docked = False

        # Forms are taller than a laptop screen: the body scrolls instead of pushing the dock off the screen.
        content = QWidget()
        self.body = QVBoxLayout(content)
        self.scroll = scroll = _VerticalScroll(content)
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(scroll)
        self._window_watch = _WindowWatch(self)
        self.load_button: QPushButton | None = None
        if self.PARAMETERS:
            self.load_button = QPushButton("Load parameters…")
            self.load_button.setToolTip(f"fill the form from {self.PARAMETERS}")
            self.load_button.clicked.connect(self._ask_parameters)
            row = QHBoxLayout()
            row.addStretch(1)
            row.addWidget(self.load_button)
            self.body.addLayout(row)

    # -- building ------------------------------------------------------------------------------------------------
    def add_panel(self, run_text: str, run: Callable[[], Any] | None = None) -> JobPanel:
        """A Run/Cancel/progress panel (not yet placed in the body); its Run button calls ``run``."""
        panel = JobPanel(run_text)
        self.panels.append(panel)
        if run is not None:
            panel.run_button.clicked.connect(lambda _checked=False: run())
        return panel

    def pick_layers(self, *combos: Any) -> None:
        """Keep these magicgui combo boxes of layers in step with the viewer's layer list."""
        for combo in combos:
            self._choices.add(combo)

    def listen(self, emitter: Any, slot: Callable[..., Any]) -> None:
        """Connect ``slot`` to a viewer event until the widget closes."""
        emitter.connect(slot)
        self._listening.append((emitter, slot))

    # -- settings ------------------------------------------------------------------------------------------------
    def remembered(self) -> Mapping[str, Any]:
        """The fields (objects with ``.value``) remembered between sessions under :attr:`SETTINGS_GROUP`."""
        return {}

    def restore_settings(self) -> None:
        """Put the remembered values back into the fields."""
        if self.SETTINGS_GROUP:
            restore_values(self.SETTINGS_GROUP, self.remembered())

    def save_settings(self) -> None:
        """Remember the current values (called when a run starts)."""
        if self.SETTINGS_GROUP:
            save_values(self.SETTINGS_GROUP, self.remembered())

    # -- parameter files ------------------------------------------------------------------------------------------
    def parameters_from(self, data: Mapping[str, Any], where: str) -> Callable[[], None]:
        """Check the saved parameters ``data`` (from the file ``where``) against the widget's models and return what
        fills the form with them; a ``ValueError`` (unknown keys, bad values, another command's record) says why
        not, before anything changed. Subclasses with :attr:`PARAMETERS` implement it."""
        raise ValueError("this widget does not load parameter files")

    def load_parameters(self, path: str | Path) -> bool:
        """Fill the form from a saved ``params.json``, model card or run record; a problem is shown in the widget
        and changes nothing. Returns whether the form was filled."""
        from napari_sparse_sem.widgets._records import read_parameters

        panel = self.panels[0] if self.panels else None
        name = Path(path).name
        try:
            apply = self.parameters_from(read_parameters(path), name)
        except (ValueError, TypeError) as exc:  # a value of the wrong kind in the file is a message too
            if panel is not None:
                panel.show_error(f"parameters not loaded: {exc}")
            return False
        apply()
        if panel is not None:
            panel.set_status(f"parameters loaded from {name}")
        return True

    def _ask_parameters(self) -> None:
        path, _ = QFileDialog.getOpenFileName(
            self, "Load parameters", "", "Parameters (*.json *.safetensors *.tif *.tiff *.zarr);;All files (*)"
        )
        if path:
            self.load_parameters(path)

    # -- results -------------------------------------------------------------------------------------------------
    def add_result(self, layer: Layer, key: str | None = None) -> Layer:
        """Add ``layer``; this widget's earlier result under the same ``key`` (default: the layer's name) is removed
        and the new one takes its place in the layer list, so a re-run replaces instead of adding '… [1]'."""
        key = layer.name if key is None else key
        old = self._results.pop(key, None)
        layers = self.viewer.layers
        if old is not None and old in layers:
            index = layers.index(old)
            layers.remove(old)
            layers.insert(index, layer)
        else:
            self.viewer.add_layer(layer)
        self._results[key] = layer
        return layer

    def remove_result(self, key: str) -> None:
        """Remove this widget's result layer under ``key`` (if it is still in the viewer)."""
        old = self._results.pop(key, None)
        if old is not None and old in self.viewer.layers:
            self.viewer.layers.remove(old)

    def remove_layers(self, layers: Any) -> None:
        """Remove those of ``layers`` still in the viewer (one batched update)."""
        with self.viewer.layers.batched_update():
            for layer in list(layers):
                if layer in self.viewer.layers:
                    self.viewer.layers.remove(layer)

    # -- closing -------------------------------------------------------------------------------------------------
    @property
    def busy(self) -> bool:
        """True while one of the widget's jobs runs."""
        return any(panel.busy for panel in self.panels)

    def on_close(self) -> None:
        """Subclasses: settle what a job left half done (the widget is closing; its jobs were cancelled)."""

    def shutdown(self) -> None:
        """Cancel the running jobs, drop what they still report, and stop listening to the viewer (once)."""
        if self.closed:
            return
        self.closed = True
        self._window_watch.stop()
        for panel in self.panels:
            panel.discard()
        try:
            self.on_close()
        finally:
            self._choices.disconnect()
            for emitter, slot in self._listening:
                emitter.disconnect(slot)
            self._listening = []

    def closeEvent(self, event: Any) -> None:
        self.shutdown()
        super().closeEvent(event)

    def event(self, event: QEvent) -> bool:
        # Docked: watch the window. The dock's × takes the widget out of its dock (napari's remove_dock_widget sets
        # its parent to None): that closes it.
        if event.type() == QEvent.ParentChange:
            if self.parent() is not None:
                self._docked = True
                self._window_watch.follow()
            elif self._docked:
                self.shutdown()
        return super().event(event)
