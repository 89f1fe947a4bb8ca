"""Small dialogs the dock widgets share."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from qtpy.QtWidgets import QMessageBox, QWidget

from napari_sparse_sem.widgets._worker import JobPanel

T = TypeVar("T")


def write_or_ask(
    parent: QWidget, panel: JobPanel, write: Callable[[bool], T], *, title: str, question: str, declined: str
) -> T | None:
    """``write(False)``; when that refuses existing files (FileExistsError), show its reason and ``question`` and, on
    Yes, ``write(True)``. Errors and a No go to ``panel``'s status line; returns what ``write`` returned, or None."""
    try:
        try:
            return write(False)
        except FileExistsError as exc:
            reason = str(exc).split("; ", 1)[0]  # the advice after ';' names command-line flags
            answer = QMessageBox.question(
                parent, title, f"{reason}.\n\n{question}", QMessageBox.Yes | QMessageBox.No, QMessageBox.No
            )
            if answer != QMessageBox.Yes:
                panel.set_status(declined)
                return None
            return write(True)
    except (ValueError, FileExistsError, OSError) as exc:
        panel.show_error(str(exc))
        return None
