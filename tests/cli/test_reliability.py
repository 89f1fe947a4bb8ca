"""Issue #15's cases, each run again: nothing written into an input, nothing stale, no traceback — bad output paths,
stop signals, full and read-only disks, broken weights, progress in log files."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
import tifffile
from typer.testing import CliRunner

from napari_sparse_sem.cli import app
from napari_sparse_sem.cli.common import LogProgress
from napari_sparse_sem.io import read_metadata, read_volume
from napari_sparse_sem.runtime import Progress

runner = CliRunner()


def invoke(*args: object):
    return runner.invoke(app, [str(a) for a in args], catch_exceptions=False)


def listing(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` (hidden ones too) with its bytes: what must not change."""
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory, flyem_crop_uint8: np.ndarray) -> dict[str, Path]:
    """A 4 x 96 x 96 FlyEM TIFF, the same slices as a folder of PNGs, and a sparse scan of the TIFF with its mask."""
    root = tmp_path_factory.mktemp("reliability")
    crop = flyem_crop_uint8[10:14, 60:156, 60:156]
    tif = root / "crop.tif"
    tifffile.imwrite(tif, crop, imagej=True)
    pngs = root / "pngs"
    pngs.mkdir()
    for z, plane in enumerate(crop):
        iio.imwrite(pngs / f"slice_{z:03d}.png", plane)
    sparse = root / "sparse.tif"
    assert invoke("simulate", tif, "--coverage", "0.1", "--out", sparse, "-q").exit_code == 0
    return {"root": root, "tif": tif, "pngs": pngs, "sparse": sparse, "mask": root / "sparse_mask.tif"}


# ------------------------------------------------------------------------------------- 1. never write into an input


@pytest.mark.parametrize("command", ["compare", "active"])
def test_a_report_is_never_written_into_its_input(data: dict[str, Path], command: str) -> None:
    before = listing(data["pngs"])
    args = ["--slices", "0:1", "--out", data["pngs"]]
    result = invoke(command, data["pngs"], *(["--method", "linear"] if command == "compare" else []), *args)
    assert result.exit_code == 2 and "is the input" in result.stderr and "Traceback" not in result.output
    result = invoke(command, data["pngs"], *args, "--overwrite")  # not even when asked
    assert result.exit_code == 2 and "is the input" in result.stderr
    assert listing(data["pngs"]) == before
    assert invoke("info", data["pngs"]).exit_code == 0  # the volume still reads


def test_outputs_inside_or_equal_to_an_input_are_refused(data: dict[str, Path], tmp_path: Path) -> None:
    store = tmp_path / "vol.zarr"
    assert invoke("reconstruct", data["sparse"], "--mask", data["mask"], "--out", store, "-q").exit_code == 0
    cases = [
        (["compare", store, "--method", "linear", "--out", store / "report"], "lies inside the input"),
        (["simulate", data["pngs"], "--out", data["pngs"] / "sparse.tif"], "lies inside the input"),
        (
            ["reconstruct", data["sparse"], "--mask", data["mask"], "--out", data["sparse"], "--overwrite"],
            "is the input",
        ),
        (["reconstruct", data["sparse"], "--mask", data["mask"], "--out", data["mask"], "--overwrite"], "is the input"),
    ]
    before = listing(data["root"])
    for args, message in cases:
        result = invoke(*args)
        assert result.exit_code == 2 and message in result.stderr, (args, result.output)
    assert listing(data["root"]) == before
    assert not (store / "report").exists()


# ------------------------------------------------------------------------------ report folders: owned, atomic, fresh


def test_report_folder_with_other_files_needs_overwrite_and_keeps_them(data: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "results"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    args = ["compare", data["tif"], "--method", "linear", "--slices", "0:1", "--out", out, "-q"]
    result = invoke(*args)
    assert result.exit_code == 2 and "notes.txt" in result.stderr and "--overwrite" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert invoke(*args, "--overwrite").exit_code == 0
    params = json.loads((out / "params.json").read_text())
    assert params["complete"] is True and params["command"] == "compare"
    assert params["files"] == ["comparison.png", "metrics.csv", "metrics.json", "params.json", "summary.csv"]
    assert (out / "notes.txt").read_text() == "mine"
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no staging folder left behind


def test_overwrite_leaves_no_stale_rescan_plan(data: dict[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "A"
    assert invoke("active", data["tif"], "--slices", "0:3", "--out", out, "-q").exit_code == 0
    assert len(list((out / "rescan").glob("slice_*_plan.json"))) == 3
    again = ["active", data["tif"], "--slices", "0:1", "--sampler", "random", "--out", out, "-q"]
    result = invoke(*again)
    assert result.exit_code == 2 and "earlier active run" in result.stderr
    assert invoke(*again, "--overwrite").exit_code == 0
    plans = sorted(p.name for p in (out / "rescan").iterdir())
    assert plans == ["slice_0000_bitmap.tif", "slice_0000_plan.json", "slice_0000_points.csv"]
    assert json.loads((out / "rescan" / "slice_0000_plan.json").read_text())["config"]["sampler"] == "random"
    params = json.loads((out / "params.json").read_text())
    assert params["complete"] is True and params["slices_done"] == [0] and "rescan" in params["files"]


# ----------------------------------------------------------------------------------- 7. bad outputs before any work


def test_bad_output_is_refused_before_any_work(data: dict[str, Path], tmp_path: Path) -> None:
    args = ["reconstruct", data["sparse"], "--mask", data["mask"], "--method", "dip", "--out", tmp_path / "rec.png"]
    result = invoke(*args)
    assert result.exit_code == 2 and "unknown extension .png" in result.stderr
    assert "dip:" not in result.stderr  # not one progress line: nothing was fitted
    result = invoke("simulate", data["tif"], "--out", tmp_path / "s.png")
    assert result.exit_code == 2 and "unknown extension" in result.stderr
    result = invoke("train-gan", data["tif"], "--out", tmp_path / "g.pt", "--iterations", "1")
    assert result.exit_code == 2 and ".safetensors" in result.stderr
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------------------------------- 2. signals

DIP_TINY = {
    "levels": 2,
    "channels": 8,
    "input_channels": 4,
    "iterations_first": 80,
    "iterations_warm": 80,
    "stopping": "fixed",
    "warmup_slices": 0,
    "preview_every": 10,
}


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGTERM, 143), (signal.SIGHUP, 129), (signal.SIGINT, 130)])
def test_stop_signals_keep_finished_slices(data: dict[str, Path], tmp_path: Path, signum: int, code: int) -> None:
    """A DIP run stopped by a signal once its first slice is done: the finished slices are written, marked
    incomplete, no scratch is left, and the exit status is the signal's."""
    config = tmp_path / "dip.json"
    config.write_text(json.dumps(DIP_TINY))
    out, log = tmp_path / "dip.tif", tmp_path / "log.txt"
    command = [
        sys.executable,
        "-m",
        "napari_sparse_sem",
        "reconstruct",
        str(data["sparse"]),
        "--mask",
        str(data["mask"]),
    ]
    command += ["--method", "dip", "--dip-config", str(config), "--device", "cpu", "--out", str(out)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with open(log, "w") as stderr:
        process = subprocess.Popen(command, stderr=stderr, stdout=subprocess.DEVNULL, env=env)
        try:
            deadline = time.monotonic() + 300  # a hang guard, not a timing assert
            while " 1/4 " not in log.read_text() and " 2/4 " not in log.read_text():
                assert process.poll() is None, log.read_text()
                assert time.monotonic() < deadline, "no slice finished"
                time.sleep(0.05)
            process.send_signal(signum)
            rc = process.wait(timeout=300)
        finally:
            process.kill()
    text = log.read_text()
    assert rc == code, text
    meta = read_metadata(out)
    done = meta["slices"][1]
    assert meta["complete"] is False and 1 <= done < 4 and meta["requested_slices"] == [0, 4]
    assert read_volume(out).shape == (done, 96, 96)
    assert f"the {done} finished of 4 slices" in text and "Traceback" not in text
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # scratch and staging removed


# ------------------------------------------------------------------------------------ 3. full and read-only disks


def _in_small_mount(tmp_path: Path, options: str, shell: str) -> subprocess.CompletedProcess:
    """Run ``shell`` with a fresh tmpfs (``options``, e.g. size=100k or ro) mounted on ``tmp_path/disk``, in a user
    and mount namespace of its own (no root needed); skips where the kernel does not allow that."""
    if shutil.which("unshare") is None:
        pytest.skip("unshare (util-linux) is not installed")
    disk = tmp_path / "disk"
    disk.mkdir()
    probe = subprocess.run(["unshare", "-rm", "mount", "-t", "tmpfs", "-o", options, "tmpfs", str(disk)], check=False)
    if probe.returncode != 0:
        pytest.skip("cannot mount a tmpfs in a user namespace here")
    script = f"mount -t tmpfs -o {options} tmpfs {disk} && cd {disk} && {shell}; echo rc=$? >&2; ls -A {disk} >&2"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, env=env, check=False)


def _cli(*args: object) -> str:
    return " ".join([sys.executable, "-m", "napari_sparse_sem", *(str(a) for a in args)])


def test_full_disk_is_one_line_and_leaves_nothing(data: dict[str, Path], tmp_path: Path) -> None:
    run = _in_small_mount(tmp_path, "size=100k", _cli("simulate", data["tif"], "--out", "s.tif"))
    assert "rc=2" in run.stderr and "Bus error" not in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert "not enough free space" in run.stderr and "the disk is full" in run.stderr
    assert run.stderr.strip().endswith("rc=2")  # the disk is left empty: no scratch, no partial output


def test_full_disk_during_a_report_leaves_no_report(data: dict[str, Path], tmp_path: Path) -> None:
    shell = _cli("compare", data["tif"], "--method", "linear", "--slices", "0:2", "--out", "rep", "-q")
    run = _in_small_mount(tmp_path, "size=60k", shell)
    assert "rc=2" in run.stderr and "No space left on device" in run.stderr and "Traceback" not in run.stderr
    assert run.stderr.strip().endswith("rc=2")  # no params.json claiming anything, no staging folder


@pytest.mark.parametrize("command", ["reconstruct", "compare", "active"])
def test_read_only_target_is_refused_before_the_work(data: dict[str, Path], tmp_path: Path, command: str) -> None:
    args = {
        "reconstruct": ["reconstruct", data["sparse"], "--mask", data["mask"], "--out", "r.tif"],
        "compare": ["compare", data["tif"], "--method", "linear", "--out", "rep"],
        "active": ["active", data["tif"], "--out", "act"],
    }[command]
    run = _in_small_mount(tmp_path, "ro", _cli(*args))
    assert "rc=2" in run.stderr and "read-only" in run.stderr and "Traceback" not in run.stderr, run.stderr
    assert f"{command}:" not in run.stderr  # refused before the first progress line


# ------------------------------------------------------------------------------------------------ 5. broken weights


def _nan_copy(source: Path, target: Path) -> Path:
    """The weights of ``source`` with every float tensor NaN, saved with a matching card (sha256 and all)."""
    from napari_sparse_sem.nn.weights import load_weights, save_weights

    tensors, card = load_weights(source)
    broken = {k: v.float() * float("nan") if v.is_floating_point() else v for k, v in tensors.items()}
    save_weights(target, broken, {k: v for k, v in card.items() if k != "sha256"})
    return target


def test_nan_gan_weights_are_refused(data: dict[str, Path], tmp_path: Path) -> None:
    from napari_sparse_sem.recon.gan import resolve_weights

    weights = _nan_copy(resolve_weights("flyem"), tmp_path / "nan.safetensors")
    out = tmp_path / "g.tif"
    result = invoke("reconstruct", data["sparse"], "--mask", data["mask"], "--method", "gan", "--weights", weights,
                    "--out", out)  # fmt: skip
    assert result.exit_code == 2 and "NaN or infinite values" in result.stderr and "nan.safetensors" in result.stderr
    assert not out.exists()


def test_nan_estimator_weights_are_refused(data: dict[str, Path], tmp_path: Path) -> None:
    from napari_sparse_sem.active.error_estimation import DEFAULT_UNET_WEIGHTS

    weights = _nan_copy(DEFAULT_UNET_WEIGHTS, tmp_path / "nan_est.safetensors")
    out = tmp_path / "act"
    result = invoke("active", data["tif"], "--slices", "0:1", "--estimator", "unet", "--weights", weights, "--out", out)
    assert result.exit_code == 2 and "NaN or infinite values" in result.stderr
    assert not out.exists()


# ----------------------------------------------------------------------------------- 8. progress, help and messages


def test_progress_in_a_log_file_is_whole_plain_lines(data: dict[str, Path], tmp_path: Path) -> None:
    args = ["reconstruct", data["sparse"], "--mask", data["mask"], "--out"]
    result = invoke(*args, tmp_path / "a.tif")
    assert result.exit_code == 0
    lines = [line for line in result.stderr.splitlines() if line.startswith("linear: ")]
    assert lines and lines[-1].startswith("linear: 4/4 (100 %) · elapsed ")
    assert "\x1b[" not in result.stderr  # no terminal control codes in a log
    quiet = invoke(*args, tmp_path / "b.tif", "--quiet")
    assert quiet.exit_code == 0 and quiet.stderr == ""


def test_log_progress_lines_per_step_and_heartbeat() -> None:
    class Stream:
        def __init__(self) -> None:
            self.text = ""

        def write(self, text: str) -> None:
            self.text += text

        def flush(self) -> None:
            pass

    now = [0.0]
    stream = Stream()
    log = LogProgress("dip", stream, clock=lambda: now[0])
    for t, step, message in [(2, 0, "it 10"), (5, 0, "it 20"), (13, 0, "it 30"), (20, 1, "slice 0"), (20.5, 2, "")]:
        now[0] = t
        log(Progress(step, 4, message))
    now[0] = 21.0
    log(Progress(4, 4, "slice 3"))
    lines = stream.text.splitlines()
    assert lines[0] == "dip: 0/4 (0 %) · elapsed 2.00 s · it 10"  # the first event
    assert lines[1] == "dip: 0/4 (0 %) · elapsed 13.00 s · it 30"  # heartbeat after 10 s without a finished step
    assert lines[2] == "dip: 1/4 (25 %) · elapsed 20.00 s · ETA 60.00 s · slice 0"  # a finished step
    assert lines[3] == "dip: 4/4 (100 %) · elapsed 21.00 s · slice 3"  # step 2 came too soon; the last always shows
    assert len(lines) == 4


def test_method_help_lists_every_method() -> None:
    from napari_sparse_sem.recon.base import available_methods

    for command in ("reconstruct", "compare"):
        result = invoke(command, "--method", "help")
        assert result.exit_code == 0
        for name in available_methods():
            assert f"  {name} " in result.stdout


def test_small_cli_messages(data: dict[str, Path], tmp_path: Path) -> None:
    result = invoke("active", data["tif"], "--budget", "1", "--out", tmp_path / "b")
    assert result.exit_code == 2 and "--budget must be in (0, 1)" in result.stderr
    assert (
        invoke("active", data["tif"], "--budget", "0.2", "--slices", "0:1", "--out", tmp_path / "ok", "-q").exit_code
        == 0
    )


def test_cards_without_their_fields_get_plain_messages(tmp_path: Path) -> None:
    import torch

    from napari_sparse_sem.active.error_estimation import load_unet
    from napari_sparse_sem.nn.weights import save_weights
    from napari_sparse_sem.recon.gan import load_generator

    path, _ = save_weights(tmp_path / "w.safetensors", {"x": torch.zeros(2)}, {"data": "none"})
    with pytest.raises(ValueError, match="a network whose model card names no kind") as gan_error:
        load_generator(path, "mse")
    assert "'different'" not in str(gan_error.value)
    with pytest.raises(ValueError, match="does not list the inputs of an error estimator") as unet_error:
        load_unet(path)
    assert "None" not in str(unet_error.value)
