"""*Run on cluster* for the Reconstruct widget: the block-wise reconstruction of
:func:`~napari_sparse_sem.cluster.reconstruct.reconstruct_blocks_job` driven from napari.

The workers read files, so each input layer is passed as the file it was read from when it still holds that file's
data (napari's ``layer.source.path``, or the ``source_path`` our reader records in ``layer.metadata``); any other layer
is written once, unchanged, to a hidden scratch store beside the output (``.<output stem>.inputs/sparse.zarr`` and
``mask.zarr``) with its metadata, so its acquisition record and value range travel with it. The scratch copies carry a
fingerprint of the layer's data: Resume reuses them only for the same data, and they are removed once the run is
complete. The run shows its dashboard link, one progress step per block and the failed blocks; Cancel closes the job
(the running blocks stop, the finished ones stay in the store, and Resume runs only the rest). The finished store
opens lazily as a layer named like the in-memory result, marked ``(cluster)``.
"""

from __future__ import annotations

import hashlib
import html
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from magicgui.widgets import CheckBox, Container, LineEdit, SpinBox
from napari.layers import Image
from qtpy.QtCore import Qt
from qtpy.QtWidgets import QLabel

from napari_sparse_sem.runtime import Job, Progress
from napari_sparse_sem.widgets._fields import FileField, Section
from napari_sparse_sem.widgets._layers import layer_array, placement
from napari_sparse_sem.widgets._records import file_source
from napari_sparse_sem.widgets._worker import error_text

if TYPE_CHECKING:
    from napari_sparse_sem.widgets.reconstruct import ReconstructWidget

FINGERPRINT_KEY = "layer_fingerprint"
CLUSTER_TIP = (
    "where the blocks run: local (a worker per core or GPU on this machine), local:N (N workers), "
    "tcp://HOST:PORT (a running dask scheduler), FILE.json (a scheduler file) or FILE.yaml (a dask-jobqueue "
    "configuration for SLURM/PBS...)"
)


# ------------------------------------------------------------------------------------------------- inputs as files
@dataclass(frozen=True)
class LayerInput:
    """What the worker thread needs of one input layer, read on the GUI thread."""

    role: str  # "sparse" or "mask"
    name: str
    data: Any  # (z, y, x), full resolution
    metadata: dict[str, Any]
    voxel_size: tuple[float, float, float] | None
    path: Path | None  # the file the layer was read from, if any


def layer_file(layer: Any) -> Path | None:
    """The file ``layer`` was read from: napari's ``source.path``, else the path our reader recorded."""
    path = file_source(layer)
    if path is not None:
        return path
    info = layer.metadata or {}
    if not info.get("source_path") or not info.get("format"):
        return None
    if info["format"] == "hdf5" and info.get("dataset"):
        return Path(f"{info['source_path']}:{info['dataset']}")
    return Path(info["source_path"])


def layer_input(layer: Any, role: str) -> LayerInput:
    """Capture ``layer`` for the worker thread (a pyramid counts by its full-resolution level)."""
    from napari_sparse_sem.io.napari_hooks import layer_voxel_size
    from napari_sparse_sem.io.volume import as_zyx

    data = layer.data[0] if getattr(layer, "multiscale", False) else layer_array(layer, role)
    voxel = layer_voxel_size({"scale": tuple(layer.scale), "metadata": layer.metadata})
    return LayerInput(
        role=role,
        name=layer.name,
        data=as_zyx(data, f"{role} layer {layer.name!r}"),
        metadata=dict(layer.metadata or {}),
        voxel_size=voxel if layer.ndim == 3 or voxel is None else None,
        path=layer_file(layer),
    )


def data_fingerprint(data: Any) -> str:
    """A hash of a (z, y, x) array's shape, dtype and values, read one slice at a time."""
    digest = hashlib.blake2b(digest_size=16)
    digest.update(repr((tuple(data.shape), str(np.dtype(data.dtype)))).encode())
    for z in range(data.shape[0]):
        digest.update(np.ascontiguousarray(np.asarray(data[z])).tobytes())
    return digest.hexdigest()


def _holds_file_data(layer: LayerInput) -> bool:
    """True when the layer's file exists and holds the layer's data (an in-memory copy is compared slice by slice)."""
    from napari_sparse_sem.io import read_volume
    from napari_sparse_sem.io.volume import as_zyx

    if layer.path is None:
        return False
    try:
        stored = as_zyx(read_volume(layer.path, lazy=True).data, str(layer.path))
    except (OSError, ValueError):
        return False
    if tuple(stored.shape) != tuple(layer.data.shape):
        return False
    if not isinstance(layer.data, np.ndarray):  # the lazy array the reader gave
        return True
    return all(np.array_equal(np.asarray(stored[z]), layer.data[z]) for z in range(layer.data.shape[0]))


def _nonzero(plane: np.ndarray) -> np.ndarray:
    return plane != 0


def input_file(layer: LayerInput, scratch: Path, resume: bool) -> Generator[Progress, None, tuple[Path, bool]]:
    """The file the workers read for ``layer``: its own file, else a scratch copy in ``scratch`` (written once; a
    resumed run reuses the copy of the same data). Returns the path and whether it is a scratch copy."""
    from napari_sparse_sem.io import read_metadata, write_volume
    from napari_sparse_sem.io.volume import SliceMap

    if _holds_file_data(layer):
        return Path(layer.path), False  # type: ignore[arg-type]
    target = scratch / f"{layer.role}.zarr"
    stamp = data_fingerprint(layer.data)
    if target.exists():
        try:
            saved = read_metadata(target).get(FINGERPRINT_KEY)
        except (OSError, ValueError):
            saved = None
        if saved == stamp:
            return target, True
        if resume:
            raise ValueError(
                f"the {layer.role} layer {layer.name!r} is not the data of the interrupted run ({target} differs); "
                "resume with the same layers, or untick Resume and choose another output name"
            )
    yield Progress(0, 0, f"writing the {layer.role} layer {layer.name!r} to {scratch.name}/ (the workers read files)")
    data = SliceMap(layer.data, _nonzero, bool) if layer.role == "mask" else layer.data
    info = {**layer.metadata, "layer_name": layer.name, FINGERPRINT_KEY: stamp}
    if layer.role == "mask":
        info["kind"] = "mask"
    write_volume(target, data, voxel_size=layer.voxel_size, metadata=info, overwrite=True)
    return target, True


def scratch_folder(out: Path) -> Path:
    """Where in-memory input layers are written for a run into ``out``: ``.<stem>.inputs`` beside it."""
    return out.parent / f".{out.stem}.inputs"


@dataclass
class ClusterOutcome:
    """How a cluster run ended: the store, its saved metadata and the layers that went through scratch copies."""

    out: Path
    metadata: dict[str, Any]
    scratch: list[str] = field(default_factory=list)


def cluster_reconstruct_job(
    sparse: LayerInput, mask: LayerInput, method: str, out: Path, **kwargs: Any
) -> Job[ClusterOutcome]:
    """Make both inputs files, then run the block-wise reconstruction (``kwargs``: its keywords); a complete run
    removes its scratch copies."""
    from napari_sparse_sem.cluster.reconstruct import reconstruct_blocks_job
    from napari_sparse_sem.io.writers import remove_path

    scratch = scratch_folder(out)
    sparse_path, sparse_copy = yield from input_file(sparse, scratch, bool(kwargs.get("resume")))
    mask_path, mask_copy = yield from input_file(mask, scratch, bool(kwargs.get("resume")))
    copies = [layer.name for layer, copied in ((sparse, sparse_copy), (mask, mask_copy)) if copied]
    saved = yield from reconstruct_blocks_job(sparse_path, mask_path, method, out, **kwargs)
    if saved.get("complete") and copies:
        remove_path(scratch)
    return ClusterOutcome(out, dict(saved), copies)


# ---------------------------------------------------------------------------------------------------- the section
class ClusterSection(Section):
    """The *Run on cluster* fields: on/off, cluster, output store, slab, resume, pyramid."""

    def __init__(self) -> None:
        self.enabled = CheckBox(
            text="run on cluster", value=False, tooltip="reconstruct block by block on dask workers"
        )
        self.cluster = LineEdit(label="cluster", value="local", tooltip=CLUSTER_TIP)
        self.output = FileField(label="output", mode="w", filter="*.zarr")
        self.output.tooltip = "the OME-Zarr store (*.zarr) the workers write into"
        self.slab = SpinBox(
            label="slab", value=0, min=0, max=100_000, tooltip="slices per block; 0 = auto (blocks of about 512 MB)"
        )
        self.resume = CheckBox(
            text="resume", value=False, tooltip="finish an interrupted run into the same output: only missing blocks"
        )
        self.pyramid = CheckBox(
            text="pyramid", value=True, tooltip="add a multiscale pyramid when complete (fast browsing of big stores)"
        )
        self.form = Container(widgets=[self.enabled, self.cluster, self.output, self.slab, self.resume, self.pyramid])
        super().__init__("Run on cluster", self.form.native)
        self.enabled.changed.connect(self._on_enabled)

    def _on_enabled(self, *_: Any) -> None:
        if self.enabled.value:
            self.set_expanded(True)

    def settings_widgets(self) -> dict[str, Any]:
        """The fields remembered with the widget's settings."""
        return {
            "cluster_run": self.enabled,
            "cluster": self.cluster,
            "cluster_output": self.output,
            "cluster_slab": self.slab,
            "cluster_resume": self.resume,
            "cluster_pyramid": self.pyramid,
        }

    def checked_output(self) -> Path:
        """The output store, refused when missing, not *.zarr, or existing without Resume."""
        text = self.output.value
        if not text:
            raise ValueError("choose an output store (*.zarr) under Run on cluster: the workers write into it")
        out = Path(text).expanduser()
        if out.suffix.lower() != ".zarr":
            raise ValueError(f"a cluster run writes OME-Zarr: name the output *.zarr, not {out.name!r}")
        if out.exists() and not self.resume.value:
            raise ValueError(f"{out} already exists: tick Resume to finish the run in it, or choose another name")
        return out


# -------------------------------------------------------------------------------------------------- the controller
class ClusterRun:
    """Runs the Reconstruct widget's inputs on a cluster with its panel (progress, Cancel) and adds the store."""

    def __init__(self, widget: ReconstructWidget) -> None:
        self.widget = widget
        self.section = ClusterSection()
        self.info = QLabel("")
        self.info.setWordWrap(True)
        self.info.setTextFormat(Qt.RichText)
        self.info.setOpenExternalLinks(True)
        self.info.setTextInteractionFlags(Qt.TextBrowserInteraction)
        self.info.setVisible(False)
        self._run: dict[str, Any] = {}
        self.section.enabled.changed.connect(self._on_enabled)
        widget.panel.finished.connect(self._on_finished)

    @property
    def enabled(self) -> bool:
        """True when Run goes to the cluster."""
        return bool(self.section.enabled.value)

    def _on_enabled(self, *_: Any) -> None:
        self.widget.panel.run_button.setText("Reconstruct on cluster" if self.enabled else "Reconstruct")

    # -- starting --------------------------------------------------------------------------------------------------
    def _plan(self) -> dict[str, Any]:
        from napari_sparse_sem.cluster.connect import parse_cluster

        w = self.widget
        sparse_layer, mask_layer = w.sparse.value, w.mask.value
        if sparse_layer is None:
            raise ValueError("no sparse layer; make one with the Sparse acquisition widget or open a sparse stack")
        if mask_layer is None or mask_layer is sparse_layer:
            raise ValueError("choose the mask of the sparse layer's scanned pixels (made with Sparse acquisition)")
        sparse, mask = layer_input(sparse_layer, "sparse"), layer_input(mask_layer, "mask")
        if tuple(sparse.data.shape) != tuple(mask.data.shape):
            raise ValueError(
                f"mask {mask_layer.name!r} has shape {tuple(mask.data.shape)} but sparse {sparse_layer.name!r} has "
                f"{tuple(sparse.data.shape)}; choose the mask made with this acquisition"
            )
        cluster = str(self.section.cluster.value).strip() or "local"
        parse_cluster(cluster)
        method = w.method.value
        return {
            "sparse": sparse,
            "mask": mask,
            "method": method,
            "options": w.options.options(method),
            "out": self.section.checked_output(),
            "cluster": cluster,
        }

    def start(self) -> None:
        """Check the inputs and the output, then start the block-wise run (bad input: a message, nothing runs)."""
        w = self.widget
        if w.panel.busy:
            return
        w.result_label.setText("")
        try:
            plan = self._plan()
        except (ValueError, FileNotFoundError) as exc:
            w.panel.show_error(str(exc))
            return
        w.save_settings()
        sparse_layer, method, out = w.sparse.value, plan["method"], plan["out"]
        name = w._name(sparse_layer, method)
        keep = {k: v for k, v in (sparse_layer.metadata or {}).items() if k in ("source_layer", "acquisition_id")}
        self._run = {
            "out": out,
            "name": name,
            "key": f"{name} (cluster)",
            "sparse_layer": sparse_layer,
            "metadata": {**keep, "sparse_layer": sparse_layer.name, "cluster": plan["cluster"], "store": str(out)},
            "total": 0,
            "failed": [],
            "ending": None,
        }
        self.info.setText("starting the cluster…")
        self.info.setVisible(True)
        job = cluster_reconstruct_job(
            plan["sparse"],
            plan["mask"],
            method,
            out,
            cluster=plan["cluster"],
            device=w.device.value,
            options=plan["options"],
            resume=bool(self.section.resume.value),
            slab=int(self.section.slab.value) or None,
            pyramid=bool(self.section.pyramid.value),
        )
        w.panel.start(
            job,
            desc=f"{method} reconstruction of {sparse_layer.name} on {plan['cluster']}",
            on_progress=self._on_progress,
            on_returned=self._on_done,
            on_aborted=self._on_cancelled,
            on_errored=self._on_failed,
        )

    # -- events (GUI thread) -----------------------------------------------------------------------------------------
    def _on_progress(self, event: Progress) -> None:
        from napari_sparse_sem.cluster.run import BlockFailed, ClusterStarted

        partial = event.partial
        if isinstance(partial, ClusterStarted):
            self._run.update(total=partial.blocks, started=partial)
            self._show_info()
        elif isinstance(partial, BlockFailed):
            self._run["failed"].append(f"{partial.key}: {partial.error}")
            self._show_info()

    def _show_info(self) -> None:
        started = self._run.get("started")
        if started is None:
            return
        link = started.dashboard
        text = (
            f'dashboard: <a href="{html.escape(link, quote=True)}" style="color: #6ab0ff">{html.escape(link)}</a>'
            if link
            else "no dashboard (install bokeh to get one)"
        )
        text += f" · {started.workers} worker(s) · {started.blocks} block(s)"
        if started.already_done:
            text += f", {started.already_done} done before"
        failed = self._run["failed"]
        if failed:
            text += "<br>failed: " + "; ".join(html.escape(f) for f in failed[:5])
            text += f" (and {len(failed) - 5} more)" if len(failed) > 5 else ""
        self.info.setText(text)

    def _on_done(self, outcome: ClusterOutcome) -> None:
        saved, out = outcome.metadata, outcome.out
        blocks = saved.get("blocks") or {}
        copies = f"; in-memory layer(s) {', '.join(map(repr, outcome.scratch))} went through scratch copies" + (
            " (removed)" if saved.get("complete") else f" in {scratch_folder(out).name}/"
        )
        copies = copies if outcome.scratch else ""
        if saved.get("complete"):
            layer = self._add_store(out, self._run["name"] + " (cluster)", saved)
            text = (
                f"reconstructed {layer.name!r}: {blocks.get('total', '?')} block(s) in {out.name} in "
                f"{float(saved.get('seconds', 0.0)):.1f} s{copies}"
            )
            self.widget.panel.set_status(text)
            return
        failed = saved.get("failed_blocks") or []
        done, total = blocks.get("done", 0), blocks.get("total", 0)
        lines = "; ".join(f"{f['key']}: {f['error']}" for f in failed[:5])
        self._add_unfinished(done, total)
        self.widget.panel.show_error(
            f"{len(failed)} block(s) failed ({lines}); {done} of {total} blocks are in {out.name}: tick Resume and run "
            f"again to retry the rest{copies}",
            notify=False,
        )

    def _on_cancelled(self) -> None:
        self._run["ending"] = "cancelled"
        self.widget.panel.set_status("cancelling: stopping the running blocks and the cluster…")

    def _on_failed(self, exc: BaseException) -> None:
        self._run["ending"] = "failed"
        self.widget.panel.show_error(error_text(exc))

    def _on_finished(self) -> None:
        """After a cancelled or failed run (the job is closed, so the store is final): say what the store holds."""
        run = self._run
        ending = run.get("ending") if run else None
        if ending is None or self.widget.closed:
            return
        run["ending"] = None
        total, out = int(run.get("total") or 0), run["out"]
        done = _blocks_done(out) if total else 0
        if not done:  # the blocks never started (total unknown), or none finished
            if ending == "cancelled":
                self.widget.panel.set_status(
                    "cancelled before any block finished" if total else "cancelled before the blocks started"
                )
            return
        text = f"{done} of {total} blocks are in {out.name}; tick Resume and run again to finish the rest"
        self._add_unfinished(done, total)
        if ending == "cancelled":
            self.widget.panel.set_status(f"cancelled: {text}")
        else:
            status = self.widget.panel.status
            status.setText(f"{status.text()}\n{text}")

    # -- result layers -----------------------------------------------------------------------------------------------
    def _add_unfinished(self, done: int, total: int) -> None:
        if done:
            self._add_store(self._run["out"], f"{self._run['name']} (cluster, unfinished: {done} of {total} blocks)")

    def _add_store(self, out: Path, name: str, saved: dict[str, Any] | None = None) -> Image:
        """Open the store lazily as this widget's cluster result (replacing its earlier one), placed on the sparse
        layer."""
        from napari_sparse_sem.io.napari_hooks import read_layers

        ((data, kwargs, _kind),) = read_layers(str(out))
        sparse_layer = self._run["sparse_layer"]
        multiscale = bool(kwargs.get("multiscale"))
        if sparse_layer.ndim == 2:  # a 2D sparse layer gets a 2D result, as in memory
            data = [level[0] for level in data] if multiscale else data[0]
        limits = getattr(sparse_layer, "contrast_limits", None)
        metadata = {**kwargs.get("metadata", {}), **(saved or {}), **self._run["metadata"]}
        metadata.setdefault("kind", "reconstruction")
        layer = Image(
            data,
            name=name,
            metadata=metadata,
            multiscale=multiscale,
            contrast_limits=tuple(limits) if limits is not None else None,
            colormap="gray",
            **placement(sparse_layer),
        )
        return self.widget.add_result(layer, key=self._run["key"])


def _blocks_done(out: Path) -> int:
    from napari_sparse_sem.cluster.store import RunRecord

    return len(RunRecord(out).done()) if out.exists() else 0
