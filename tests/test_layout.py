"""The package's shape (docs/architecture.md): small modules, no import cycles across folders, Qt only in widgets/."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "napari_sparse_sem"
MAX_LINES = 600
GUI_MODULES = ("qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "napari", "magicgui", "superqt", "vispy")


def modules() -> dict[str, Path]:
    """Dotted module name → file, for every module of the package."""
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def imported(path: Path, name: str, known: set[str]) -> set[str]:
    """Our modules that ``path`` imports, at the top or inside functions (a lazy import is still a dependency)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            targets = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def folder(name: str, files: dict[str, Path]) -> Path:
    return files[name].parent


def test_no_module_is_longer_than_the_limit() -> None:
    long = {
        str(path.relative_to(PACKAGE)): n
        for path in PACKAGE.rglob("*.py")
        if (n := len(path.read_text(encoding="utf-8").splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines (split them by job): {long}"


def test_no_import_cycle_between_folders() -> None:
    files = modules()
    graph = nx.DiGraph()
    for name, path in files.items():
        for target in imported(path, name, set(files)):
            # A package's __init__ re-exporting its own modules is not a dependency of theirs on it.
            if not target.startswith(name + ".") and not name.startswith(target + "."):
                graph.add_edge(name, target)
    # Every edge of a strongly connected component lies on a cycle, so a component spanning two folders holds a cycle
    # that crosses between them.
    crossing = [
        sorted(group) for group in nx.strongly_connected_components(graph) if len({folder(n, files) for n in group}) > 1
    ]
    assert not crossing, f"import cycles across folders (modules that import each other, directly or not): {crossing}"


@pytest.mark.parametrize("name", sorted(n for n in modules() if ".widgets" not in n))
def test_core_never_imports_qt_or_napari(name: str) -> None:
    path = modules()[name]
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        roots = []
        if isinstance(node, ast.Import):
            roots = [alias.name.split(".")[0] for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            roots = [node.module.split(".")[0]]
        bad = [r for r in roots if r in GUI_MODULES]
        assert not bad, f"{path.relative_to(PACKAGE)} imports {bad} (only widgets/ may)"


def test_faces_do_not_import_each_other() -> None:
    """The CLI and the widgets share the core, not each other (the CLI's demo opens napari with the widgets: the one
    exception)."""
    files = modules()
    crossing = []
    for name, path in files.items():
        targets = imported(path, name, set(files))
        if ".widgets" in name:
            crossing += [(name, t) for t in targets if t.startswith("napari_sparse_sem.cli")]
        elif name.startswith("napari_sparse_sem.cli") and not name.endswith(".demo"):
            crossing += [(name, t) for t in targets if t.startswith("napari_sparse_sem.widgets")]
    assert not crossing, f"a face imports the other: {crossing}"
