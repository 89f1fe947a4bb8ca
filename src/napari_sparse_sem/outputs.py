"""Where results go: never into an input, never mixed with an older run, never "complete" before they are on disk.

Every face (CLI, widgets, Python API) writes through these checks, made *before* any work starts:

* :func:`check_output_file` — a volume or weights file: known extension, not an input and not inside one (a file
  written into a folder of slices would become a slice), not an existing file unless ``overwrite``, and a folder we
  can write to.
* :class:`ReportFolder` — a report folder (``compare``, ``active``): refused when it is, or lies inside, an input;
  a folder holding anything the command did not write before is refused unless ``overwrite``. The new report is
  written into a hidden sibling folder and moved into place at the end, so a reader sees the old report or the new
  one, never a mix. ``overwrite`` removes exactly the entries the previous run listed in its ``params.json``
  (``"files"``); anything else in the folder is left alone.
* :func:`scratch_array` — disk-backed scratch arrays whose blocks are reserved up front, so a full disk is an
  ``OSError`` at the start, not a "Bus error" (SIGBUS) when a memory-mapped page is first touched.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

PARAMS_FILE = "params.json"
"""The file a report folder's owner list lives in (``"files"``), next to the parameters of the run."""

PACKAGE = "napari-sparse-sem"


def _resolved(path: str | Path) -> Path:
    return Path(path).expanduser().resolve()


def _input_files(inputs: Iterable[str | Path | None]) -> list[Path]:
    """The files or folders behind input paths (``store.zarr:array`` and ``file.h5:/ds`` name their container)."""
    from napari_sparse_sem.io.readers import split_h5_path

    return [_resolved(split_h5_path(p)[0]) for p in inputs if p is not None]


def _is_within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def check_not_input(out: str | Path, inputs: Iterable[str | Path | None], what: str = "--out") -> None:
    """``ValueError`` when ``out`` is one of the ``inputs`` or lies inside one of them (even with ``overwrite``)."""
    target = _resolved(out)
    for source in _input_files(inputs):
        if target == source:
            raise ValueError(f"{what} {out} is the input {source}; writing there would replace your data — choose "
                             "another path")  # fmt: skip
        if source.is_dir() and _is_within(target, source):
            raise ValueError(
                f"{what} {out} lies inside the input {source}; writing there would change what that input reads "
                "as — choose a path outside it"
            )


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _existing_ancestor(path: Path) -> Path:
    folder = path
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    return folder if folder.is_dir() else folder.parent


def check_writable_folder(folder: str | Path) -> None:
    """Raise the ``OSError`` (read-only file system, permission denied, full disk) that writing into ``folder`` (or
    its nearest existing parent, when it does not exist yet) would raise — by creating and removing a probe file."""
    target = _existing_ancestor(_resolved(folder))
    with _errors_name(target):
        fd, probe = tempfile.mkstemp(prefix=".sparse-sem-probe-", dir=target)
    os.close(fd)
    os.unlink(probe)


@contextmanager
def _errors_name(folder: Path) -> Iterator[None]:
    """Report an OS error on a hidden helper file (probe, staging folder) as an error on the folder the user named."""
    try:
        yield
    except OSError as exc:
        raise OSError(exc.errno, exc.strerror or str(exc), str(folder)) from None


def check_free_space(folder: str | Path, nbytes: int, what: str) -> None:
    """``OSError`` (ENOSPC) naming ``what`` when the file system of ``folder`` has less than ``nbytes`` free."""
    target = _existing_ancestor(_resolved(folder))
    free = shutil.disk_usage(target).free
    if nbytes > free:
        raise OSError(
            errno.ENOSPC,
            f"not enough free space for {what}: it needs {_gib(nbytes)}, {_gib(free)} are free",
            str(target),
        )


def check_volume_space(targets: Iterable[tuple[Path, Any]], shape: tuple[int, ...]) -> None:
    """Enough free space for the TIFF volumes among ``targets`` ((path, dtype) pairs) of ``shape``, before the work:
    TIFFs are written uncompressed, so their size is known; zarr outputs are compressed and not estimated."""
    n = int(np.prod(shape, dtype=np.int64))
    tiffs = [(Path(path), np.dtype(dtype)) for path, dtype in targets if Path(path).suffix.lower() in (".tif", ".tiff")]
    if tiffs:
        needed = sum(n * max(dtype.itemsize, 1) for _, dtype in tiffs)
        check_free_space(tiffs[0][0].parent, needed, ", ".join(path.name for path, _ in tiffs))


def _gib(nbytes: float) -> str:
    return f"{nbytes / 2**30:.2f} GiB" if nbytes >= 2**28 else f"{nbytes / 2**20:.1f} MiB"


def check_output_file(out: str | Path, inputs: Iterable[str | Path | None] = (), *, overwrite: bool = False) -> Path:
    """Check a volume output before any work: a name we can write (.tif or .zarr), not an input or inside one, not
    an existing file unless ``overwrite``, a writable folder. Returns ``out`` as a Path."""
    from napari_sparse_sem.io.writers import check_target, output_kind

    path = Path(out).expanduser()
    output_kind(path)
    check_not_input(path, inputs)
    check_target(path, overwrite)
    check_writable_folder(path.parent)
    return path


@contextmanager
def staged_files(targets: Iterable[str | Path]) -> Iterator[list[Path]]:
    """Hidden sibling paths to write ``targets`` to (same suffix, so writers pick the same format); when the block
    ends without an error they replace the targets one right after the other, so files that belong together (a
    sparse stack and its mask) never come from different runs. On an error the staged files are removed."""
    from napari_sparse_sem.io.writers import move_into_place, remove_path

    final = [Path(t).expanduser() for t in targets]
    staged = [t.with_name(f".{t.stem}.staged-{uuid.uuid4().hex[:8]}{t.suffix}") for t in final]
    for target in final:
        target.parent.mkdir(parents=True, exist_ok=True)
    try:
        yield staged
        for tmp, target in zip(staged, final, strict=True):
            move_into_place(tmp, target)
    finally:
        for tmp in staged:
            remove_path(tmp)


def scratch_array(folder: str | Path, name: str, dtype: Any, shape: tuple[int, ...]) -> np.memmap:
    """A zero-filled disk-backed array ``folder/name.npy`` whose disk blocks are reserved now.

    A plain memory map of a sparse file fails with SIGBUS ("Bus error") when the disk fills while it is written; here
    a full disk is an ``OSError`` (ENOSPC) before any work. The free space is checked first for a clear message.
    """
    path = Path(folder) / f"{name}.npy"
    nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
    check_free_space(Path(folder).parent, nbytes, f"the scratch array {path.name} (in {Path(folder).name})")
    array = np.lib.format.open_memmap(path, mode="w+", dtype=dtype, shape=shape)
    reserve = getattr(os, "posix_fallocate", None)
    if reserve is not None:
        with open(path, "r+b") as handle:
            try:
                reserve(handle.fileno(), 0, os.fstat(handle.fileno()).st_size)
            except OSError as exc:
                if exc.errno not in (errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
                    del array
                    path.unlink(missing_ok=True)
                    raise OSError(
                        exc.errno, f"cannot reserve {_gib(nbytes)} for the scratch array", str(path)
                    ) from None
    return array


def fsync_tree(folder: str | Path) -> None:
    """Flush every file under ``folder`` (and the folders themselves) to disk."""
    for root, _dirs, files in os.walk(folder):
        for name in files:
            with open(Path(root) / name, "rb") as handle:
                os.fsync(handle.fileno())
        _fsync_dir(Path(root))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # Windows cannot open folders
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: str | Path, data: Any) -> None:
    """Write ``data`` as indented JSON through a temporary file that replaces ``path`` once flushed."""
    path = Path(path)
    text = json.dumps(data, indent=2, allow_nan=False) + "\n"
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}-", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_owned_files(folder: Path, command: str, legacy: Callable[[Path], set[str]] | None = None) -> set[str]:
    """Names of the entries of ``folder`` that an earlier run of ``command`` wrote (from its ``params.json``).

    Reports written before the owner list existed are recognised by ``legacy`` (folder → the names it wrote).
    """
    try:
        params = json.loads((folder / PARAMS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        params = None
    if isinstance(params, dict) and params.get("package") == PACKAGE and params.get("command", command) == command:
        files = params.get("files")
        if isinstance(files, list):
            return {str(f) for f in files if isinstance(f, str) and "/" not in f and f not in ("", ".", "..")}
    return legacy(folder) if legacy is not None else set()


class ReportFolder:
    """A report folder written all at once: check it before the work, write into :attr:`stage`, then :meth:`commit`.

    ``command`` names what writes it (recorded in ``params.json``, so another command's report counts as foreign);
    ``inputs`` are the paths the run reads; ``legacy`` recognises reports written before ``params.json`` listed its
    files; ``names`` are the entries the new report will have (a foreign entry of the same name is replaced only
    with ``overwrite``). Construction checks everything and creates the hidden staging folder beside ``out`` (so a
    read-only parent fails now). Use it as a context manager: leaving without :meth:`commit` removes the stage.
    """

    def __init__(
        self,
        out: str | Path,
        command: str,
        *,
        inputs: Iterable[str | Path | None] = (),
        overwrite: bool = False,
        legacy: Callable[[Path], set[str]] | None = None,
        names: Iterable[str] = (),
    ) -> None:
        self.out = Path(out).expanduser()
        self.command = command
        self.inputs = _input_files(inputs)
        check_not_input(self.out, self.inputs)
        if self.out.exists() and not self.out.is_dir():
            raise FileExistsError(f"{self.out} exists and is not a folder; choose a folder for the report")
        self.owned: set[str] = set()
        self.foreign: list[str] = []
        if self.out.is_dir():
            owned = read_owned_files(self.out, command, legacy)
            present = sorted(entry.name for entry in self.out.iterdir())
            self.owned = {name for name in present if name in owned}
            self.foreign = [name for name in present if name not in owned]
            self._refuse_unless_overwrite(overwrite, set(names))
        self.out.parent.mkdir(parents=True, exist_ok=True)
        with _errors_name(self.out.parent):
            self.stage = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.partial-", dir=self.out.parent))
        os.chmod(self.stage, 0o777 & ~_umask())  # mkdtemp makes it private; the report folder is an ordinary one
        self.committed = False

    def _refuse_unless_overwrite(self, overwrite: bool, names: set[str]) -> None:
        inside = [p for p in self.inputs if _is_within(p, _resolved(self.out))]
        for name in self.owned:
            entry = _resolved(self.out / name)
            if any(_is_within(p, entry) for p in inside):
                raise ValueError(f"{self.out / name} holds an input of this run; choose another report folder")
        if overwrite:
            return
        if self.foreign:
            shown = ", ".join(self.foreign[:4]) + (
                f" and {len(self.foreign) - 4} more" if len(self.foreign) > 4 else ""
            )
            clash = sorted(names.intersection(self.foreign))
            kept = f"they are kept, but {', '.join(clash)} would be replaced" if clash else "they are kept"
            raise FileExistsError(
                f"{self.out} already holds files this command did not write ({shown}); choose a new or empty folder, "
                f"or use --overwrite to write the report beside them ({kept})"
            )
        if self.owned:
            owned = ", ".join(sorted(self.owned))
            raise FileExistsError(
                f"{self.out} already holds the report of an earlier {self.command} run ({owned}); use --overwrite to "
                "replace it or choose another folder"
            )

    def __enter__(self) -> ReportFolder:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        self.discard()
        if isinstance(exc, OSError) and not exc.filename:  # e.g. matplotlib's savefig on a full disk names no file
            raise OSError(exc.errno, exc.strerror or str(exc), str(self.out)) from exc

    def discard(self) -> None:
        """Remove the staging folder (nothing of the new report reaches ``out``)."""
        if not self.committed:
            shutil.rmtree(self.stage, ignore_errors=True)

    def commit(self) -> Path:
        """Flush the staged report and move it into ``out``, replacing the previous run's entries; returns ``out``."""
        fsync_tree(self.stage)
        if not self.out.exists():
            os.rename(self.stage, self.out)
        elif not self.foreign:  # only our old report (or nothing): swap whole folders
            old = self.out.with_name(f".{self.out.name}.old-{uuid.uuid4().hex[:8]}")
            os.rename(self.out, old)
            try:
                os.rename(self.stage, self.out)
            except BaseException:
                os.rename(old, self.out)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:  # other files live here too: move our entries one by one, theirs stay (unless named like ours)
            old = Path(tempfile.mkdtemp(prefix=f".{self.out.name}.old-", dir=self.out.parent))
            staged = {entry.name for entry in self.stage.iterdir()}
            for name in sorted(self.owned | (staged & set(self.foreign))):
                os.rename(self.out / name, old / name)
            for entry in sorted(self.stage.iterdir()):
                os.replace(entry, self.out / entry.name)
            shutil.rmtree(old, ignore_errors=True)
            shutil.rmtree(self.stage, ignore_errors=True)
        _fsync_dir(self.out.parent)
        self.committed = True
        return self.out


def owned_entries(folder: Path) -> list[str]:
    """The entries of a staged report folder, ``params.json`` included: what its ``"files"`` list records."""
    return sorted({entry.name for entry in folder.iterdir()} | {PARAMS_FILE})
