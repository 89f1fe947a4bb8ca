"""Where results go: refusals (inputs, foreign files), owned-file replacement, staged writes and reserved scratch."""

from __future__ import annotations

import errno
import json
from pathlib import Path

import numpy as np
import pytest

from napari_sparse_sem import outputs
from napari_sparse_sem.outputs import ReportFolder, check_not_input, check_output_file, scratch_array, staged_files


def _report(folder: ReportFolder, names: list[str]) -> None:
    for name in names:
        (folder.stage / name).write_text(name)
    outputs.write_json(folder.stage / "params.json", {"package": outputs.PACKAGE, "command": "demo",
                                                      "files": outputs.owned_entries(folder.stage)})  # fmt: skip


def test_report_folder_replaces_exactly_what_it_owned(tmp_path: Path) -> None:
    out = tmp_path / "rep"
    with ReportFolder(out, "demo") as folder:
        _report(folder, ["a.txt", "b.txt"])
        folder.commit()
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "b.txt", "params.json"]
    with pytest.raises(FileExistsError, match="earlier demo run"):
        ReportFolder(out, "demo")
    (out / "mine.txt").write_text("keep")
    with pytest.raises(FileExistsError, match=r"did not write \(mine\.txt\)"):
        ReportFolder(out, "demo")
    with ReportFolder(out, "demo", overwrite=True) as folder:
        _report(folder, ["a.txt"])
        assert sorted(p.name for p in out.iterdir()) == ["a.txt", "b.txt", "mine.txt", "params.json"]  # until commit
        folder.commit()
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "mine.txt", "params.json"]
    assert json.loads((out / "params.json").read_text())["files"] == ["a.txt", "params.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]  # no staging or backup folder left


def test_a_failed_report_leaves_the_old_one(tmp_path: Path) -> None:
    out = tmp_path / "rep"
    with ReportFolder(out, "demo") as folder:
        _report(folder, ["a.txt"])
        folder.commit()
    with pytest.raises(RuntimeError), ReportFolder(out, "demo", overwrite=True) as folder:
        _report(folder, ["new.txt"])
        raise RuntimeError("the work failed")
    assert sorted(p.name for p in out.iterdir()) == ["a.txt", "params.json"]
    assert [p.name for p in tmp_path.iterdir()] == ["rep"]


def test_another_commands_report_is_foreign(tmp_path: Path) -> None:
    out = tmp_path / "rep"
    with ReportFolder(out, "demo") as folder:
        _report(folder, ["a.txt"])
        folder.commit()
    with pytest.raises(FileExistsError, match="did not write"):
        ReportFolder(out, "other")


def test_inputs_are_never_outputs(tmp_path: Path) -> None:
    volume = tmp_path / "slices"
    volume.mkdir()
    (volume / "s0.png").write_bytes(b"")
    with pytest.raises(ValueError, match="is the input"):
        ReportFolder(volume, "demo", inputs=[volume], overwrite=True)
    with pytest.raises(ValueError, match="lies inside the input"):
        ReportFolder(volume / "rep", "demo", inputs=[volume])
    with pytest.raises(ValueError, match="lies inside the input"):
        check_output_file(volume / "out.tif", [volume], overwrite=True)
    with pytest.raises(ValueError, match="is the input"):
        check_not_input(tmp_path / "store.zarr", [f"{tmp_path / 'store.zarr'}:bse"])  # a member names its store
    assert sorted(p.name for p in volume.iterdir()) == ["s0.png"]
    with pytest.raises(ValueError, match="unknown extension"):
        check_output_file(tmp_path / "out.png")
    check_output_file(tmp_path / "new" / "out.zarr")  # a missing folder is fine: its parent is writable
    assert not (tmp_path / "new").exists()


def test_staged_files_arrive_together_or_not_at_all(tmp_path: Path) -> None:
    a, b = tmp_path / "a.txt", tmp_path / "b.txt"
    a.write_text("old a")
    b.write_text("old b")
    with pytest.raises(OSError), staged_files([a, b]) as (new_a, new_b):
        new_a.write_text("new a")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert (a.read_text(), b.read_text()) == ("old a", "old b")
    with staged_files([a, b]) as (new_a, new_b):
        new_a.write_text("new a")
        new_b.write_text("new b")
    assert (a.read_text(), b.read_text()) == ("new a", "new b")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "b.txt"]


def test_scratch_is_reserved_or_refused(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    array = scratch_array(tmp_path, "block", np.float32, (3, 16, 16))
    assert array.shape == (3, 16, 16) and not array.any()
    assert (tmp_path / "block.npy").stat().st_blocks * 512 >= 3 * 16 * 16 * 4  # the blocks are allocated, not sparse

    class Usage:
        free = 1000

    monkeypatch.setattr(outputs.shutil, "disk_usage", lambda path: Usage)
    with pytest.raises(OSError, match="not enough free space") as full:
        scratch_array(tmp_path, "big", np.float32, (3, 16, 16))
    assert full.value.errno == errno.ENOSPC and not (tmp_path / "big.npy").exists()
