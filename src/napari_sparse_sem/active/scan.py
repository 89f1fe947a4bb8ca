"""Initial-scan specs written as short text: ``lowres:4`` (every 4th pixel in y and x), ``random:0.05``,
``hexgrid:0.05`` ... — the form the CLI, the widget and saved parameters use."""

from __future__ import annotations

from napari_sparse_sem.sampling.spec import PATTERNS, MaskSpec

INITIAL_HELP = "PATTERN:VALUE — lowres:F (every F-th pixel, F = 4, 8, 16 ...) or PATTERN:COVERAGE (e.g. random:0.05)"


def parse_initial(text: str, seed: int | None = 0) -> MaskSpec:
    """The :class:`MaskSpec` of an initial scan written as ``lowres:F`` or ``PATTERN:COVERAGE``.

    The mask is the same on every slice for ``lowres`` (a lattice) and drawn per slice (seeded) otherwise.
    """
    pattern, sep, value = str(text).strip().partition(":")
    pattern = pattern.strip().lower()
    if not sep or pattern not in PATTERNS or not value.strip():
        raise ValueError(f"initial scan {text!r} is not {INITIAL_HELP}; patterns: {list(PATTERNS)}")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"initial scan {text!r}: {value!r} is not a number ({INITIAL_HELP})") from None
    if pattern == "lowres":
        factor = round(number)
        if factor < 2 or factor != number:
            raise ValueError(f"initial scan {text!r}: the lowres factor must be an integer >= 2, e.g. lowres:4")
        return MaskSpec(pattern="lowres", coverage=1.0 / factor**2, lowres_factor=factor, per_slice=False, seed=seed)
    if not 0 < number < 1:
        raise ValueError(f"initial scan {text!r}: the coverage must be a fraction in (0, 1), e.g. {pattern}:0.05")
    return MaskSpec(pattern=pattern, coverage=number, per_slice=True, seed=seed)


def format_initial(spec: MaskSpec) -> str:
    """The text form of an initial-scan spec (inverse of :func:`parse_initial`)."""
    if spec.pattern == "lowres" and spec.lowres_factor:
        return f"lowres:{spec.lowres_factor}"
    return f"{spec.pattern}:{spec.coverage:g}"
