"""*Reconstruct* dock widget: fill the unscanned pixels of a sparse layer, slice by slice, in a worker thread.

The reconstruction layer ``<source> · <pattern> <cov>% · <method>`` is added at the start (zeros) and updated as every
slice finishes, so one watches it grow; Cancel stops after the current slice and keeps the finished ones. With a ground
truth chosen, an ``… · |error|`` layer and PSNR/SSIM (all pixels and unscanned pixels) follow. The chosen method's
options show as a form made from its options spec (:mod:`._method_options`); for an iterative method (a network fit)
the slice being fitted shows the current estimate every few iterations (a live preview), and a plot shows its loss and
held-out error curves. A reconstruction of layers read from files carries the run record of the same
``sparse-sem reconstruct``; *Load parameters…* reads the method and options back from such a record or from a
reconstruction the CLI wrote. *Run on cluster* (:mod:`._cluster_run`) reconstructs block by block on dask workers
into an OME-Zarr store instead, which opens lazily when it is done.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container
from napari.layers import Image
from qtpy.QtWidgets import QLabel

from napari_sparse_sem.compare.measure import Measured, reconstruct_and_measure
from napari_sparse_sem.quality.holdout import HoldoutResult
from napari_sparse_sem.recon.base import FitPreview
from napari_sparse_sem.runtime import Progress, available_devices, pick_device
from napari_sparse_sem.sampling.record import AcquisitionRecord
from napari_sparse_sem.threads import with_threads
from napari_sparse_sem.widgets._base import JobWidget
from napari_sparse_sem.widgets._cluster_run import ClusterRun
from napari_sparse_sem.widgets._form import threads_field
from napari_sparse_sem.widgets._layers import (
    SEP,
    contrast_01,
    image_layers,
    layer_mask,
    layer_volume,
    like_layer,
    mask_layers,
    meta,
    placement,
    result_name,
)
from napari_sparse_sem.widgets._method_options import MethodOptions
from napari_sparse_sem.widgets._plots import LossPlot
from napari_sparse_sem.widgets._records import command_arguments, file_source, option_items, record_options, run_record
from napari_sparse_sem.widgets._worker import error_text

NO_TRUTH = "(none)"
COMMAND = "reconstruct"
HOLDOUT_SLICES = 5  # the hold-out estimate scores at most this many slices (evenly spaced)


def _reconstruct_measure_holdout(
    job: Any, out: np.ndarray, truth: np.ndarray | None, sparse: np.ndarray, mask: np.ndarray, quality: dict | None
) -> Any:
    """Reconstruct (and score against a ground truth), then, when ``quality`` is given, the hold-out estimate; one
    job returning ``(measured, holdout)``."""
    from napari_sparse_sem.quality.holdout import holdout_job

    measured = yield from reconstruct_and_measure(job, out, truth, mask)
    if quality is None:
        return measured, None
    holdout = yield from holdout_job(sparse, mask, quality.pop("method"), **quality)
    return measured, holdout


class ReconstructWidget(JobWidget):
    """Reconstruct a sparse acquisition with a chosen method and device; optional ground truth for metrics."""

    SETTINGS_GROUP = "reconstruct"
    PARAMETERS = "a reconstruction written by `sparse-sem reconstruct`, or its run record"

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(napari_viewer)
        from napari_sparse_sem.recon import available_methods

        methods = available_methods()
        self.sparse = ComboBox(
            label="sparse", choices=self._sparse_choices, tooltip="sparse acquisition (0 = unscanned)"
        )
        self.mask = ComboBox(label="mask", choices=self._mask_choices, tooltip="scanned pixels (non-zero)")
        self.truth = ComboBox(
            label="ground truth", choices=self._truth_choices, tooltip="optional: for |error| and PSNR"
        )
        self.method = ComboBox(label="method", choices=methods, value="linear" if "linear" in methods else methods[0])
        self.device = ComboBox(label="device", choices=["auto", *available_devices()], value="auto")
        self.threads = threads_field()
        self.holdout = CheckBox(
            label="Estimate quality (hold-out)",
            value=False,
            tooltip="Without ground truth: reconstruct again with 1/5 of the scanned pixels held out (5 times, up to 5 "
            "slices) and score the held-out ones; gives the PSNR expected on the unscanned pixels",
        )
        self.form = Container(
            widgets=[self.sparse, self.mask, self.truth, self.method, self.device, self.threads, self.holdout]
        )
        self.options = MethodOptions(methods)
        self.panel = self.add_panel("Reconstruct", self.run)
        self.result_label = QLabel("")
        self.result_label.setWordWrap(True)
        self.loss_plot = LossPlot()
        self.loss_plot.setVisible(False)
        self.cluster = ClusterRun(self)

        self.body.addWidget(self.form.native)
        self.body.addWidget(self.options)
        self.body.addWidget(self.cluster.section)
        self.body.addWidget(self.panel)
        self.body.addWidget(self.cluster.info)
        self.body.addWidget(self.result_label)
        self.body.addWidget(self.loss_plot)
        self.body.addStretch(1)

        self.layer: napari.layers.Image | None = None  # the reconstruction being filled
        self.done_slices: list[int] = []
        self._preview_z: int | None = None  # the slice that shows a live DIP preview
        self.metrics: dict[str, float] | None = None
        self._run: dict[str, Any] = {}
        self.pick_layers(self.sparse, self.mask, self.truth)
        self.sparse.changed.connect(self._match_partners)
        self.listen(self.viewer.layers.events.inserted, self._on_layer_inserted)
        self._match_partners()
        self.restore_settings()
        self.method.changed.connect(self._on_method)
        self._on_method()

    def remembered(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "device": self.device,
            "threads": self.threads,
            "holdout": self.holdout,
            **self.options.settings_widgets(),
            **self.cluster.section.settings_widgets(),
        }

    def _on_method(self, *_: Any) -> None:
        self.options.show_for([self.method.value])

    def parameters_from(self, data: Mapping[str, Any], where: str) -> Callable[[], None]:
        """The method and options of a reconstruction's metadata, or of a ``reconstruct`` run record."""
        device = None
        if isinstance(data.get("method"), str) and isinstance(data.get("options", {}), Mapping):
            method, options = data["method"], dict(data.get("options") or {})
        else:
            arguments = command_arguments(data, [COMMAND], where, self.PARAMETERS)
            for name in ("method_config", "dip_config"):
                if arguments.get(name):
                    raise ValueError(
                        f"{where} reads options from a file (--{name.replace('_', '-')}); load the reconstruction "
                        "it wrote instead"
                    )
            method, device = arguments.get("method") or "linear", arguments.get("device")
            options = record_options(arguments)
            if arguments.get("dip_preset"):
                options.setdefault("preset", arguments["dip_preset"])
            if arguments.get("weights"):
                options.setdefault("weights", str(arguments["weights"]))
        if method not in self.method.choices:
            raise ValueError(f"{where} uses the method {method!r}, which is not installed here")
        spec = self.options.check_options(method, options)

        def apply() -> None:
            self.method.value = method
            if spec is not None:
                self.options.set_options(method, spec)
            if device in self.device.choices:
                self.device.value = device

        return apply

    # -- choices ---------------------------------------------------------------------------------------------------
    def _sparse_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return image_layers(self.viewer, first=lambda layer: meta(layer, "kind") == "sparse")

    def _mask_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        # Labels first, then "(no mask layer)": a dense image is never preselected as its own mask.
        return mask_layers(self.viewer)

    def _truth_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        plain = image_layers(self.viewer, first=lambda layer: meta(layer, "kind") is None)
        return [(NO_TRUTH, None), *plain]

    def _on_layer_inserted(self, event: Any) -> None:
        """A freshly made sparse acquisition becomes the input (with its mask and source), unless a job runs."""
        if meta(event.value, "kind") == "sparse" and not self.panel.busy:
            self.sparse.reset_choices()
            self.sparse.value = event.value
            self._match_partners()

    def _match_partners(self, *_: Any) -> None:
        """Preselect the mask made with the chosen sparse layer, and its source as the ground truth."""
        sparse = self.sparse.value
        acquisition_id = meta(sparse, "acquisition_id")
        if acquisition_id is None:
            return
        for _name, layer in self._mask_choices():
            if meta(layer, "kind") == "mask" and meta(layer, "acquisition_id") == acquisition_id:
                self.mask.value = layer
                break
        source = meta(sparse, "source_layer")
        for _name, layer in self._truth_choices():
            if layer is not None and layer.name == source:
                self.truth.value = layer
                break

    # -- running ---------------------------------------------------------------------------------------------------
    def _inputs(self) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        sparse_layer, mask_layer, truth_layer = self.sparse.value, self.mask.value, self.truth.value
        if sparse_layer is None:
            raise ValueError("no sparse layer; make one with the Sparse acquisition widget or open a sparse stack")
        if mask_layer is None:
            raise ValueError(
                "no mask layer: Reconstruct fills in a sparse acquisition (a sparse image and the mask of its "
                "scanned pixels); make one with the Sparse acquisition widget, or choose the layer that marks the "
                "scanned pixels"
            )
        if mask_layer is sparse_layer:
            raise ValueError(
                f"{sparse_layer.name!r} is chosen as both the sparse layer and the mask; choose the mask of its "
                "scanned pixels (made with the Sparse acquisition widget)"
            )
        record = AcquisitionRecord.from_metadata(sparse_layer.metadata)  # says how its values are stored
        sparse, _ = layer_volume(sparse_layer, "sparse", vrange=record.stored_range if record is not None else None)
        mask = layer_mask(mask_layer, "mask")
        if mask.shape != sparse.shape:
            raise ValueError(
                f"mask {mask_layer.name!r} has shape {mask.shape} but sparse {sparse_layer.name!r} has {sparse.shape}; "
                "choose the mask made with this acquisition"
            )
        if not mask.any():
            raise ValueError(f"mask {mask_layer.name!r} marks no scanned pixel; nothing to reconstruct from")
        if mask.all():
            raise ValueError(
                f"mask {mask_layer.name!r} marks every pixel as scanned, so {sparse_layer.name!r} is not a sparse "
                "acquisition and there is nothing to fill in; simulate one with the Sparse acquisition widget"
            )
        empty = np.flatnonzero(~mask.reshape(len(mask), -1).any(axis=1))
        if empty.size:
            raise ValueError(f"slice {empty[0]} of mask {mask_layer.name!r} marks no scanned pixel; check the mask")
        truth = None
        if truth_layer is not None:
            truth, _ = layer_volume(truth_layer, "ground truth", vrange=self._truth_range(sparse_layer, truth_layer))
            if truth.shape != sparse.shape:
                raise ValueError(
                    f"ground truth {truth_layer.name!r} has shape {truth.shape} but the sparse layer has "
                    f"{sparse.shape}; choose the image the acquisition was made from, or (none)"
                )
        return sparse, mask, truth

    @staticmethod
    def _truth_range(sparse_layer: Any, truth_layer: Any) -> tuple[float, float] | None:
        """The value range recorded when the acquisition was made from this very layer (so values match 1:1)."""
        record = AcquisitionRecord.from_metadata(sparse_layer.metadata)
        if record is not None and meta(sparse_layer, "source_layer") == truth_layer.name:
            return record.value_range
        return None

    def _name(self, sparse_layer: Any, method: str) -> str:
        record = AcquisitionRecord.from_metadata(sparse_layer.metadata)
        if record is not None and meta(sparse_layer, "source_layer"):
            spec = record.mask_spec
            return result_name(meta(sparse_layer, "source_layer"), spec.pattern, spec.coverage, method)
        return f"{sparse_layer.name}{SEP}{method}"

    def run_arguments(
        self, sparse_layer: Any, mask_layer: Any, method: str, options: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """The arguments of the ``sparse-sem reconstruct`` that makes this reconstruction (None unless both the
        sparse layer and the mask were read from files)."""
        sparse, mask = file_source(sparse_layer), file_source(mask_layer)
        if sparse is None or mask is None:
            return None
        return {
            "sparse": sparse,
            "mask": mask,
            "method": method,
            "device": self.device.value,
            "option": option_items(options) or None,
        }

    def run(self) -> None:
        """Start the reconstruction; the result layer fills slice by slice (bad input: message, no layer)."""
        from napari_sparse_sem.recon.volume import reconstruct_volume

        if self.panel.busy:
            return
        if self.cluster.enabled:
            self.cluster.start()
            return
        self.cluster.info.setVisible(False)
        self.result_label.setText("")
        try:
            sparse, mask, truth = self._inputs()
            device = pick_device(self.device.value)
            method = self.method.value
            options = self.options.options(method)
            out = np.zeros_like(sparse)
            job = reconstruct_volume(sparse, mask, method, device=device, options=options, out=out)
        except ValueError as exc:
            self.panel.show_error(str(exc))
            return
        self.save_settings()
        sparse_layer = self.sparse.value
        truth_layer = self.truth.value
        metadata = {k: v for k, v in (sparse_layer.metadata or {}).items() if k in ("source_layer", "acquisition_id")}
        record = AcquisitionRecord.from_metadata(sparse_layer.metadata)
        if record is not None:  # the acquisition's parameters go with its reconstruction, from the CLI or napari
            metadata.update(record.to_metadata())
        metadata.update(kind="reconstruction", method=method, device=device, sparse_layer=sparse_layer.name)
        if options:
            metadata["options"] = options
        arguments = self.run_arguments(sparse_layer, self.mask.value, method, options)
        if arguments is not None:
            metadata["run"] = run_record(COMMAND, arguments)
        self.loss_plot.setVisible(self.options.iterative([method]))
        self.loss_plot.clear(method)
        self._preview_z: int | None = None
        name = self._name(sparse_layer, method)
        self.remove_result(f"{name}{SEP}|error|")  # the earlier run's error map would not match the new result
        self.layer = self.add_result(
            Image(
                like_layer(np.zeros_like(sparse), sparse_layer),
                name=name,
                metadata=metadata,
                contrast_limits=contrast_01(sparse_layer, (0.0, 1.0)),
                colormap="gray",
                **placement(sparse_layer),
            )
        )
        self.done_slices = []
        self._run = {
            "n": sparse.shape[0],
            "seconds": 0.0,
            "truth_layer": truth_layer,
            "sparse_layer": sparse_layer,
            "name": name,
        }
        quality = None
        if self.holdout.value:
            quality = {"method": method, "options": options, "device": device, "max_slices": HOLDOUT_SLICES}
        self.panel.start(
            with_threads(_reconstruct_measure_holdout(job, out, truth, sparse, mask, quality), self.threads.value),
            desc=f"{method} reconstruction of {sparse_layer.name}",
            on_progress=self._on_progress,
            on_returned=self._on_done,
            on_aborted=self._on_cancelled,
            on_errored=self._on_failed,
        )

    def _write_slice(self, z: int, image: np.ndarray) -> None:
        if self.layer.ndim == 2:
            self.layer.data[...] = image
        else:
            self.layer.data[z] = image
        self.layer.refresh()

    def _on_preview(self, preview: FitPreview) -> None:
        """Show the fit's current estimate in its slice of the result layer, and its curves in the plot."""
        if preview.z is None:  # a warm-up fit of a neighbour: curves only
            title = f"warm-up fit, iteration {preview.iteration}"
        else:
            self._write_slice(int(preview.z), preview.image)
            self._preview_z = int(preview.z)
            title = f"slice {preview.z}: iteration {preview.iteration} of at most {preview.max_iterations}"
        self.loss_plot.show_curves(preview.loss, preview.holdout, title)

    def _drop_unfinished_preview(self) -> None:
        """A slice that only holds a preview when the run stops goes back to zeros: only finished slices are kept."""
        z = self._preview_z
        if self.layer is not None and z is not None and z not in self.done_slices:
            self._write_slice(z, np.zeros(self.layer.data.shape[-2:], dtype=self.layer.data.dtype))

    def _on_progress(self, event: Progress) -> None:
        done = event.partial
        if isinstance(done, FitPreview) and self.layer is not None:
            self._on_preview(done)
            return
        if done is None or not hasattr(done, "z") or self.layer is None:
            return
        z = int(done.z)
        self._write_slice(z, done.image)
        self.done_slices.append(z)
        self._run["seconds"] += float(getattr(done, "seconds", 0.0))
        note = getattr(done, "info", {}).get("weights_note")
        if note and note not in self._run.setdefault("notes", []):
            self._run["notes"].append(note)

    def _settle_unfinished(self) -> str:
        """After a stop: a slice that only holds a preview goes back to zeros, a layer with no finished slice is
        removed (no all-black layer left on top), one with some is marked in its name and metadata. Says what."""
        self._drop_unfinished_preview()
        layer, done = self.layer, sorted(set(self.done_slices))
        if layer is None or layer not in self.viewer.layers:
            return "no result"
        if not done:
            self.remove_result(self._run.get("name", layer.name))
            self.layer = None
            return "no slice was finished, so no layer is kept"
        n = self._run.get("n", 0)
        layer.metadata["slices_done"] = done
        layer.metadata["complete"] = False
        layer.name = f"{self._run.get('name', layer.name)} (unfinished: {len(done)} of {n} slices)"
        return f"finished slices are kept in {layer.name!r}"

    def _on_failed(self, exc: BaseException) -> None:
        """Show the error; the result keeps only finished slices (none: it is removed)."""
        self._settle_unfinished()
        self.panel.show_error(error_text(exc))

    def _on_cancelled(self) -> None:
        k, n = len(set(self.done_slices)), self._run.get("n", 0)
        kept = self._settle_unfinished()
        self.panel.set_status(f"cancelled after {k} of {n} slices; {kept}")

    def on_close(self) -> None:
        """The dock closed during a run: keep only the finished slices, as Cancel does."""
        if self._run and self.layer is not None and not self.layer.metadata.get("complete"):
            self._settle_unfinished()

    def _on_done(self, finished: tuple[Measured | None, HoldoutResult | None]) -> None:
        measured, holdout = finished
        layer = self.layer
        n, seconds = self._run["n"], self._run["seconds"]
        layer.metadata["complete"] = True
        layer.metadata["seconds"] = seconds
        text = f"{layer.metadata['method']} on {layer.metadata['device']}: {n} slices in {seconds:.2f} s"
        if measured is not None:
            truth_layer = self._run["truth_layer"]
            metrics = {key: measured.mean(key) for key in ("psnr", "ssim", "psnr_unscanned", "ssim_unscanned", "mae")}
            layer.metadata["metrics"] = metrics
            layer.metadata["ground_truth"] = truth_layer.name
            high = float(np.percentile(measured.error, 99.5)) if measured.error.size else 1.0
            self.add_result(
                Image(
                    like_layer(measured.error, layer),
                    name=f"{layer.name}{SEP}|error|",
                    metadata={
                        "kind": "error",
                        "reconstruction": layer.name,
                        "ground_truth": truth_layer.name,
                        **metrics,
                    },
                    contrast_limits=(0.0, max(high, 1e-6)),
                    colormap="magma",
                    blending="additive",
                    visible=False,
                    **placement(layer),
                )
            )
            text += (
                f"\nPSNR {metrics['psnr']:.2f} dB (unscanned {metrics['psnr_unscanned']:.2f} dB)"
                f" · SSIM {metrics['ssim']:.3f} (unscanned {metrics['ssim_unscanned']:.3f})"
            )
        if holdout is not None:
            layer.metadata["holdout"] = holdout.to_dict()
            text += (
                f"\nHold-out estimate (no ground truth, {holdout.folds} folds, {len(holdout.slices)} slice(s)): "
                f"PSNR ≈ {holdout.psnr:.2f} dB on the unscanned pixels (raw {holdout.psnr_raw:.2f} dB)"
            )
        if self._run.get("notes"):
            layer.metadata["weights_note"] = self._run["notes"][0]
            text += "\n" + "\n".join(self._run["notes"])
            for note in self._run["notes"]:
                self.panel.notify(note)
        self.metrics = layer.metadata.get("metrics")
        self.result_label.setText(text)
        self.panel.set_status(f"reconstructed {layer.name!r}")
