"""The npe2 manifest is valid and every command it names imports."""

from __future__ import annotations

import importlib

from npe2 import PluginManifest


def test_manifest_validates_and_commands_import() -> None:
    manifest = PluginManifest.from_distribution("napari-sparse-sem")
    assert manifest.name == "napari-sparse-sem"
    assert {w.display_name for w in manifest.contributions.widgets} == {
        "Sparse acquisition",
        "Reconstruct",
        "Compare masks",
        "Active acquisition",
        "Train GAN",
        "Train on this scan",
        "Porous material",
        "Simulate SEM",
    }
    for command in manifest.contributions.commands:
        module_name, attribute = command.python_name.split(":")
        module = importlib.import_module(module_name)
        assert callable(getattr(module, attribute)), command.python_name


def test_core_import_is_light() -> None:
    """Importing the package must not pull in torch, Qt or napari (fast napari start-up, headless use)."""
    import subprocess
    import sys

    code = (
        "import sys, napari_sparse_sem, napari_sparse_sem.recon, napari_sparse_sem.sampling, napari_sparse_sem.io;"
        "import napari_sparse_sem.surrogate.geometry, napari_sparse_sem.surrogate.montecarlo;"
        "import napari_sparse_sem.surrogate.stack, napari_sparse_sem.surrogate.noise;"
        "heavy = [m for m in ('torch', 'napari', 'qtpy', 'PyQt5', 'numba') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", f"heavy modules imported at package import: {out}"
