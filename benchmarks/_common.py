"""Helpers shared by benchmark scripts: the data path, machine description and markdown tables."""

from __future__ import annotations

import datetime as _dt
import platform
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FLYEM = REPO.parent / "shared" / "data" / "flyem_medulla_fibsem_sample1.tif"


def machine() -> str:
    """CPU model and core count (and the GPU when torch sees one)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import os

    text = f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"
    try:
        import torch

        if torch.cuda.is_available():
            text += f", GPU {torch.cuda.get_device_name(0)}"
    except ImportError:
        pass
    return text


def today() -> str:
    return _dt.date.today().isoformat()


def markdown_table(header: list[str], rows: list[list[object]]) -> str:
    """A GitHub markdown table; floats printed with sensible precision."""

    def cell(value: object) -> str:
        if isinstance(value, float):
            return f"{value:.3f}" if abs(value) < 10 else f"{value:.2f}"
        return str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
