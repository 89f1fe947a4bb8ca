"""Hostile files (issue #15): what the readers make of a seeded corpus of valid, corrupt, truncated and lying files.

Run: .venv/bin/python -m benchmarks.fuzz_readers [--repeat 3]
The corpus is the one ``tests/io/test_fuzz_readers.py`` asserts on (``tests/io/fuzz_corpus.py``, seed 15): small
valid TIFF (plain, zlib, pages, ImageJ, ours, 2D, tiled LZW, 3 slices), PNG folder, zarr (ours, v2, v3), MRC and
HDF5 files, then bit flips, truncations, lying headers, wrong suffixes, empty files and odd folders. Each path is
read as the API does (``read_volume`` + the middle slice) and as napari does (``get_reader``, the reader, the middle
slice of the layer). Prints the outcomes by kind and face, by format, and the timings (the median of ``--repeat``
runs per case; no timing is asserted in the tests).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from collections import Counter
from pathlib import Path

from benchmarks._common import REPO, machine, markdown_table, today

sys.path.insert(0, str(REPO / "tests" / "io"))  # the corpus lives beside the test that asserts on it
import fuzz_corpus

FAMILIES = ("tiff", "png", "zarr", "mrc", "hdf5")


def family(name: str) -> str:
    """The format a case was derived from ('other' for empty files, odd folders and missing paths)."""
    return next((f for f in FAMILIES if name.startswith(f)), "other")


def run(repeat: int) -> tuple[dict[str, fuzz_corpus.Outcome], dict[str, fuzz_corpus.Outcome]]:
    """Outcome per case for read_volume and for the napari hook; seconds are the median over ``repeat`` runs."""
    direct: dict[str, fuzz_corpus.Outcome] = {}
    hook: dict[str, fuzz_corpus.Outcome] = {}
    with tempfile.TemporaryDirectory() as folder:
        paths = fuzz_corpus.build_corpus(Path(folder))
        for name, path in paths.items():
            for store, attempt in ((direct, fuzz_corpus.try_read_volume), (hook, fuzz_corpus.try_hook)):
                outcomes = [attempt(path) for _ in range(repeat)]
                outcome = outcomes[0]
                outcome.seconds = statistics.median(o.seconds for o in outcomes)
                outcome.message = outcome.message.replace(folder, "")
                store[name] = outcome
    return direct, hook


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--repeat", type=int, default=3, help="runs per case; the median time is reported")
    args = parser.parse_args()
    direct, hook = run(args.repeat)

    kinds = Counter(o.kind for o in direct.values()), Counter(o.kind for o in hook.values())
    rows = [[kind, kinds[0][kind], kinds[1][kind]] for kind in fuzz_corpus.KINDS]
    rows.append(["**files tried**", len(direct), len(hook)])

    by_family = [
        [fam, *(sum(1 for n, o in direct.items() if family(n) == fam and o.kind == k) for k in fuzz_corpus.KINDS)]
        for fam in (*FAMILIES, "other")
    ]

    timing = []
    for face, outcomes in (("read_volume", direct), ("napari hook", hook)):
        seconds = [o.seconds for o in outcomes.values()]
        slowest = max(outcomes, key=lambda n: outcomes[n].seconds)
        timing.append([face, statistics.median(seconds), sum(seconds), f"`{slowest}`", outcomes[slowest].seconds])

    print(f"Date {today()}; machine: {machine()}")
    print(f"Command: .venv/bin/python -m benchmarks.fuzz_readers --repeat {args.repeat}\n")
    print(markdown_table(["outcome", "read_volume", "napari hook"], rows))
    print()
    print(markdown_table(["format (read_volume)", *fuzz_corpus.KINDS], by_family))
    print()
    print(markdown_table(["face", "median s", "total s", "slowest case", "its s"], timing))
    others = [f"{n}: {o.stage}: {o.message}" for n, o in {**direct, **hook}.items() if o.kind == "other"]
    if others:
        print("\nUnexpected exceptions:\n" + "\n".join(others))


if __name__ == "__main__":
    main()
