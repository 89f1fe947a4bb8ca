"""The *Train on this scan* dock widget: train method ``self`` on a sparse layer and its mask alone, then reconstruct.

A real sparse scan has no dense slices to learn from; :func:`~napari_sparse_sem.recon.self_training.train_self_job`
hides part of the scanned pixels from the network's input and learns to predict them (self-supervised). The form is
generated from :class:`~napari_sparse_sem.recon.self_training.SelfTrainingConfig` (crop, batch size and network behind
*Advanced*; *Load parameters…* fills it from a self-trained model card or a ``train-self`` run record); the training
runs in a worker (progress bar, Cancel) and a plot follows the MSE at the hidden scanned pixels and the PSNR at the
held-out validation pixels against ``linear`` on the same pixels. The job's notes (e.g. one mask for every slice) show
under the plot. Cancel stops after the current batch and keeps what was trained in the weights file.

*Reconstruct this scan* then runs method ``self`` with those weights on the same two layers in a worker and adds the
result as a new layer ``<source> · <pattern> <cov>% · self`` (filled slice by slice; Cancel keeps the finished
slices). The input layers are never modified; the weights also serve the *Reconstruct* widget (method ``self``) and
``sparse-sem reconstruct --method self --weights FILE``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, SpinBox
from napari.layers import Image
from qtpy.QtWidgets import QLabel

from napari_sparse_sem.params import fields_of
from napari_sparse_sem.recon.self_training import (
    INITS,
    TRAINING_KIND,
    SelfTrainingConfig,
    SelfTrainingStatus,
    train_self_job,
)
from napari_sparse_sem.runtime import Progress, available_devices, pick_device
from napari_sparse_sem.sampling.record import AcquisitionRecord
from napari_sparse_sem.threads import with_threads
from napari_sparse_sem.widgets._base import JobWidget
from napari_sparse_sem.widgets._fields import TextChoice, align_labels, number_box
from napari_sparse_sem.widgets._form import SpecForm, threads_field
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
from napari_sparse_sem.widgets._plots import TrainingPlot
from napari_sparse_sem.widgets._records import (
    command_arguments,
    file_source,
    option_items,
    run_record,
    spec_values,
)
from napari_sparse_sem.widgets._worker import error_text

COMMAND = "train-self"
METHOD = "self"
ADVANCED_FIELDS = ("crop", "batch_size", "preset", "seed")
"""Fields behind *Advanced* (crop, batch size and network are not in the model's default form: given here so a GPU
user can raise them)."""


class SelfTrainingPlot(TrainingPlot):
    """:class:`~._plots.TrainingPlot` titled for self-supervision: the MSE at hidden scanned pixels, and the PSNR at
    held-out scanned pixels (network against ``linear``)."""

    def clear(self) -> None:
        super().clear()
        self.loss_axes.set_title("hidden-pixel MSE", fontsize=9)
        self.psnr_axes.set_title("validation PSNR (dB)", fontsize=9)

    def show_curves(
        self,
        loss: list[tuple[int, float]],
        validation: list[tuple[int, float]],
        baseline: float | None = None,
        switch: int | None = None,
    ) -> None:
        """As :meth:`TrainingPlot.show_curves`; a loss within one decade (fine-tuning) on a linear axis, which labels
        it readably."""
        super().show_curves(loss, validation, baseline, switch)
        values = [value for _, value in loss if value > 0]
        if values and max(values) < 10.0 * min(values):
            self.loss_axes.set_yscale("linear")
            self.loss_axes.ticklabel_format(axis="y", style="sci", scilimits=(-2, 3))
            self.loss_axes.yaxis.get_offset_text().set_fontsize(7)


class TrainSelfWidget(JobWidget):
    """Train method ``self`` on a sparse layer and its mask (no dense slice needed), then reconstruct that scan."""

    SETTINGS_GROUP = "train_self"
    PARAMETERS = "a self-trained model card (.json or its .safetensors), or a run record of `sparse-sem train-self`"

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(napari_viewer)
        defaults = SelfTrainingConfig()
        self.sparse = ComboBox(
            label="sparse", choices=self._sparse_choices, tooltip="the sparse scan to learn from (0 = unscanned)"
        )
        self.mask = ComboBox(label="mask", choices=self._mask_choices, tooltip="its scanned pixels (non-zero)")
        self.first_slice = SpinBox(label="first slice", value=0, min=0, max=100_000)
        self.last_slice = SpinBox(
            label="last slice", value=0, min=0, max=100_000, tooltip="inclusive; 0 and 0 with a stack: all slices"
        )
        self.inputs = Container(widgets=[self.sparse, self.mask, self.first_slice, self.last_slice])
        self.init = TextChoice(INITS, label="start from")
        self.config_form = SpecForm(
            SelfTrainingConfig,
            widgets={
                "init": self.init,
                "crop": number_box(int, defaults.crop, low=32, label="crop (px)"),
                "batch_size": number_box(int, defaults.batch_size, low=1, label="batch size"),
                "preset": ComboBox(label="network", choices=["compact", "paper"], value=defaults.preset),
            },
            advanced=ADVANCED_FIELDS,
        )
        fields = self.config_form.fields
        self.context, self.minutes, self.iterations = fields["context"], fields["minutes"], fields["iterations"]
        self.hidden, self.crop, self.batch_size = fields["hidden"], fields["crop"], fields["batch_size"]
        self.preset, self.seed = fields["preset"], fields["seed"]
        self.device = ComboBox(label="device", choices=["auto", *available_devices()], value="auto")
        self.threads = threads_field()
        self.out = FileEdit(label="save weights to", mode="w", filter="*.safetensors", value="self.safetensors")
        self.overwrite = CheckBox(text="overwrite", value=False, tooltip="replace an existing weights file")
        self.form = Container(widgets=[self.device, self.threads, self.out, self.overwrite])
        align_labels(self.inputs, self.config_form, self.config_form.advanced, self.form)
        self.panel = self.add_panel("Train on this scan", self.run)
        self.plot = SelfTrainingPlot()
        self.notes = QLabel("")
        self.notes.setWordWrap(True)
        self.notes.setVisible(False)
        self.recon_panel = self.add_panel("Reconstruct this scan", self.reconstruct)
        self.recon_panel.run_button.setToolTip("method self with the weights just trained, on the same layers")
        self.recon_panel.run_button.setEnabled(False)
        self.recon_label = QLabel("")
        self.recon_label.setWordWrap(True)

        self.body.addWidget(self.inputs.native)
        self.body.addWidget(self.config_form.native)
        self.body.addWidget(self.form.native)
        self.body.addWidget(self.panel)
        self.body.addWidget(self.plot, 1)
        self.body.addWidget(self.notes)
        self.body.addWidget(self.recon_panel)
        self.body.addWidget(self.recon_label)

        self.extra: dict[str, Any] = {}  # SelfTrainingConfig fields the form does not show (tests, expert use)
        self.result: dict[str, Any] | None = None
        self.weights: Path | None = None  # the weights Reconstruct this scan uses (trained here)
        self.layer: Image | None = None  # the reconstruction being filled
        self.done_slices: list[int] = []
        self._trained: dict[str, Any] = {}  # the layers and weights file of the last training
        self._run: dict[str, Any] = {}
        self.panel.finished.connect(self._after_training)
        self.recon_panel.finished.connect(lambda: self.panel.run_button.setEnabled(True))
        self.pick_layers(self.sparse, self.mask)
        self.sparse.changed.connect(self._match_mask)
        self.listen(self.viewer.layers.events.inserted, self._on_layer_inserted)
        self._match_mask()
        self.restore_settings()

    # -- layers ----------------------------------------------------------------------------------------------------
    def _sparse_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return image_layers(self.viewer, first=lambda layer: meta(layer, "kind") == "sparse")

    def _mask_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return mask_layers(self.viewer)

    def _on_layer_inserted(self, event: Any) -> None:
        """A freshly made sparse acquisition becomes the input (with its mask), unless a job runs."""
        if meta(event.value, "kind") == "sparse" and not self.busy:
            self.sparse.reset_choices()
            self.sparse.value = event.value
            self._match_mask()

    def _match_mask(self, *_: Any) -> None:
        """Preselect the mask made with the chosen sparse layer (same acquisition)."""
        acquisition_id = meta(self.sparse.value, "acquisition_id")
        if acquisition_id is None:
            return
        for _name, layer in self._mask_choices():
            if meta(layer, "kind") == "mask" and meta(layer, "acquisition_id") == acquisition_id:
                self.mask.value = layer
                return

    def _inputs(self) -> tuple[Any, Any, np.ndarray, np.ndarray]:
        """The chosen sparse and mask layers and their data as float32 [0, 1] and bool (z, y, x) copies."""
        return self._read(self.sparse.value, self.mask.value)

    @staticmethod
    def _read(sparse_layer: Any, mask_layer: Any) -> tuple[Any, Any, np.ndarray, np.ndarray]:
        """``sparse_layer`` and ``mask_layer`` with their data as float32 [0, 1] and bool (z, y, x) copies."""
        if sparse_layer is None:
            raise ValueError("no sparse layer; open a sparse scan or make one with the Sparse acquisition widget")
        if mask_layer is None:
            raise ValueError(
                "no mask layer: choose the layer that marks the scanned pixels of the sparse scan (non-zero = scanned)"
            )
        if mask_layer is sparse_layer:
            raise ValueError(f"{sparse_layer.name!r} is chosen as both the sparse layer and the mask; choose its mask")
        record = AcquisitionRecord.from_metadata(sparse_layer.metadata)  # says how its values are stored
        sparse, _ = layer_volume(sparse_layer, "sparse", vrange=record.stored_range if record is not None else None)
        mask = layer_mask(mask_layer, "mask")
        if mask.shape != sparse.shape:
            raise ValueError(
                f"mask {mask_layer.name!r} has shape {mask.shape} but sparse {sparse_layer.name!r} has {sparse.shape}; "
                "choose the mask of this scan"
            )
        if not mask.any():
            raise ValueError(f"mask {mask_layer.name!r} marks no scanned pixel; there is nothing to learn from")
        if mask.all():
            raise ValueError(
                f"mask {mask_layer.name!r} marks every pixel as scanned: {sparse_layer.name!r} is not a sparse scan"
            )
        return sparse_layer, mask_layer, sparse, mask

    # -- parameters ------------------------------------------------------------------------------------------------
    def remembered(self) -> dict[str, Any]:
        return {**self.config_form.fields, "device": self.device, "threads": self.threads, "out": self.out}

    def config(self) -> SelfTrainingConfig:
        """The training config of the form (ValueError with a readable message when a field is wrong)."""
        return self.config_form.spec(**self.extra)

    def parameters_from(self, data: Mapping[str, Any], where: str) -> Callable[[], None]:
        """The training block of a self-trained model card, or a ``train-self`` run record."""
        training = data.get("training")
        if isinstance(training, Mapping):
            if training.get("kind") != TRAINING_KIND:
                raise ValueError(
                    f"{where} is the card of a generator trained on dense slices, not on a sparse scan; load it in "
                    "Train GAN, or load a card written by Train on this scan / `sparse-sem train-self`"
                )
            names = {view.name for view in fields_of(SelfTrainingConfig)}
            config = SelfTrainingConfig.from_dict({k: v for k, v in training.items() if k in names})
        else:
            arguments = command_arguments(data, [COMMAND], where, self.PARAMETERS)
            config = SelfTrainingConfig.from_dict(spec_values(SelfTrainingConfig, arguments))

        def apply() -> None:
            self.config_form.set_spec(config)

        return apply

    def plan(self) -> tuple[Any, Any, np.ndarray, np.ndarray, list[int], SelfTrainingConfig, Path]:
        """The layers, their data, the slices to learn from, the config and the weights file (ValueError: why not)."""
        sparse_layer, mask_layer, sparse, mask = self._inputs()
        nz = int(sparse.shape[0])
        first, last = int(self.first_slice.value), int(self.last_slice.value)
        if first == 0 and last == 0:
            last = nz - 1
        if last < first:
            raise ValueError(f"last slice {last} is before first slice {first}; swap them")
        if last >= nz:
            raise ValueError(f"last slice {last} is outside the stack of {nz} slices (0 to {nz - 1})")
        slices = list(range(first, last + 1))
        empty = [z for z in slices if not mask[z].any()]
        if empty:
            raise ValueError(f"slice {empty[0]} of mask {mask_layer.name!r} marks no scanned pixel; check the mask")
        config = self.config()
        out = Path(str(self.out.value))
        if out.suffix != ".safetensors":
            raise ValueError(f"the weights file must end with .safetensors, got {out.name!r}")
        if not self.overwrite.value:
            from napari_sparse_sem.nn.curves import curves_json, curves_png
            from napari_sparse_sem.nn.weights import card_path

            existing = [p.name for p in (out, card_path(out), curves_png(out), curves_json(out)) if p.exists()]
            if existing:
                raise ValueError(
                    f"{', '.join(existing)} already exist(s) in {out.parent}: tick 'overwrite' to replace, or choose "
                    "another name"
                )
        return sparse_layer, mask_layer, sparse, mask, slices, config, out

    # -- training --------------------------------------------------------------------------------------------------
    def run(self) -> None:
        """Start training (bad input: message in the widget, nothing starts)."""
        if self.busy:
            return
        try:
            sparse_layer, mask_layer, sparse, mask, slices, config, out = self.plan()
        except (ValueError, TypeError) as exc:
            self.panel.show_error(str(exc))
            return
        self.save_settings()
        self.result = None
        self.plot.clear()
        self._show_notes([])
        self.recon_panel.run_button.setEnabled(False)
        self.weights = None
        self._trained = {"sparse": sparse_layer, "mask": mask_layer, "out": out, "cancelled": False}
        job = train_self_job(
            sparse,
            mask,
            config,
            out,
            overwrite=bool(self.overwrite.value),
            device=self.device.value,
            slices=slices,
            data_name=sparse_layer.name,
            command=(
                f"napari Train on this scan widget on layers {sparse_layer.name!r} and {mask_layer.name!r}, "
                f"slices {slices[0]}:{slices[-1] + 1}"
            ),
        )
        self.panel.start(
            with_threads(job, self.threads.value),
            desc=f"training method self on {sparse_layer.name} ({len(slices)} slices)",
            on_progress=self._on_progress,
            on_returned=self._on_trained,
            on_aborted=self._on_training_cancelled,
            on_errored=lambda exc: self.panel.show_error(error_text(exc)),
        )

    def _show_notes(self, notes: list[str]) -> None:
        self.notes.setText("\n".join(f"note: {note}" for note in notes))
        self.notes.setVisible(bool(notes))

    def _on_progress(self, event: Progress) -> None:
        status = event.partial
        if not isinstance(status, SelfTrainingStatus):
            return
        if status.notes != self._trained.get("notes"):
            self._trained["notes"] = list(status.notes)
            self._show_notes(status.notes)
        if status.phase != "prepare":
            self.plot.show_curves(status.loss, status.validation, status.linear_psnr)

    def _on_trained(self, result: dict[str, Any]) -> None:
        self.result = result
        self.weights = Path(result["path"])
        status_notes = list(result.get("notes") or [])
        self._show_notes(status_notes)
        own, linear = result.get("validation_psnr"), result.get("linear_psnr")
        scores = ""
        if own is not None and linear is not None:
            scores = f"; validation PSNR {own:.2f} dB (linear {linear:.2f} dB, {own - linear:+.2f} dB)"
        self.panel.notify(
            f"saved {self.weights.name}: {result['iterations']} iterations in {result['seconds'] / 60:.1f} min"
            f"{scores}. Reconstruct this scan below, or choose the file as weights of method self in Reconstruct."
        )

    def _on_training_cancelled(self) -> None:
        self._trained["cancelled"] = True

    def _after_training(self) -> None:
        """The training's worker has ended (a stop saved what was trained first): offer Reconstruct this scan."""
        from napari_sparse_sem.nn.weights import card_path, read_card

        out = self._trained.get("out")
        if self.weights is None and self._trained.get("cancelled") and out is not None and card_path(out).exists():
            training = read_card(out).get("training", {})
            if training.get("stopped") == "cancelled" and out.exists():
                self.weights = Path(out)
                self.panel.set_status(
                    f"cancelled; the weights after {training.get('iterations_done')} iterations are saved in "
                    f"{self.weights.name}: Reconstruct this scan uses them"
                )
        self.recon_panel.run_button.setEnabled(self.weights is not None and self.weights.exists())

    # -- reconstruction ----------------------------------------------------------------------------------------------
    def _result_name(self, sparse_layer: Any) -> str:
        record = AcquisitionRecord.from_metadata(sparse_layer.metadata)
        if record is not None and meta(sparse_layer, "source_layer"):
            spec = record.mask_spec
            return result_name(meta(sparse_layer, "source_layer"), spec.pattern, spec.coverage, METHOD)
        return f"{sparse_layer.name}{SEP}{METHOD}"

    def reconstruct(self) -> None:
        """Reconstruct the trained-on layers with method ``self`` and the new weights into a new layer."""
        from napari_sparse_sem.recon.volume import reconstruct_volume

        if self.busy:
            return
        sparse_layer, mask_layer = self._trained.get("sparse"), self._trained.get("mask")
        if self.weights is None or not self.weights.exists() or sparse_layer is None:
            self.recon_panel.show_error("train first: there are no weights from this widget to reconstruct with")
            return
        if sparse_layer not in self.viewer.layers or mask_layer not in self.viewer.layers:
            self.recon_panel.show_error("the layers the weights were trained on are no longer in the viewer")
            return
        self.recon_label.setText("")
        try:
            _, _, sparse, mask = self._read(sparse_layer, mask_layer)
            device = pick_device(self.device.value)
            options = {"weights": str(self.weights)}
            out = np.zeros_like(sparse)
            job = reconstruct_volume(sparse, mask, METHOD, device=device, options=options, out=out)
        except (ValueError, TypeError) as exc:
            self.recon_panel.show_error(str(exc))
            return
        metadata = {k: v for k, v in (sparse_layer.metadata or {}).items() if k in ("source_layer", "acquisition_id")}
        record = AcquisitionRecord.from_metadata(sparse_layer.metadata)
        if record is not None:
            metadata.update(record.to_metadata())
        metadata.update(
            kind="reconstruction", method=METHOD, device=device, sparse_layer=sparse_layer.name, options=options
        )
        if self.result is not None:
            metadata["training"] = {k: self.result.get(k) for k in ("iterations", "validation_psnr", "linear_psnr")}
        sources = file_source(sparse_layer), file_source(mask_layer)
        if None not in sources:  # the same run from the command line
            arguments = {"sparse": sources[0], "mask": sources[1], "method": METHOD, "device": self.device.value}
            metadata["run"] = run_record("reconstruct", {**arguments, "option": option_items(options)})
        name = self._result_name(sparse_layer)
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
        self._run = {"n": int(sparse.shape[0]), "seconds": 0.0, "name": name}
        self.panel.run_button.setEnabled(False)
        self.recon_panel.start(
            with_threads(job, self.threads.value),
            desc=f"method self on {sparse_layer.name}",
            on_progress=self._on_slice,
            on_returned=self._on_reconstructed,
            on_aborted=self._on_reconstruct_cancelled,
            on_errored=self._on_reconstruct_failed,
        )

    def _on_slice(self, event: Progress) -> None:
        done = event.partial
        if self.layer is None or done is None or not hasattr(done, "z") or not hasattr(done, "image"):
            return
        z = int(done.z)
        if self.layer.ndim == 2:
            self.layer.data[...] = done.image
        else:
            self.layer.data[z] = done.image
        self.layer.refresh()
        self.done_slices.append(z)
        self._run["seconds"] += float(getattr(done, "seconds", 0.0))
        note = (getattr(done, "info", None) or {}).get("weights_note")
        if note:
            self._run["note"] = note

    def _settle_unfinished(self) -> str:
        """After a stop: a layer without a finished slice is removed, one with some is marked (name, metadata)."""
        layer, done = self.layer, sorted(set(self.done_slices))
        if layer is None or layer not in self.viewer.layers:
            return "no result"
        if not done:
            self.remove_result(self._run.get("name", layer.name))
            self.layer = None
            return "no slice was finished, so no layer is kept"
        layer.metadata["slices_done"] = done
        layer.metadata["complete"] = False
        layer.name = f"{self._run.get('name', layer.name)} (unfinished: {len(done)} of {self._run.get('n', 0)} slices)"
        return f"finished slices are kept in {layer.name!r}"

    def _on_reconstruct_cancelled(self) -> None:
        k, n = len(set(self.done_slices)), self._run.get("n", 0)
        self.recon_panel.set_status(f"cancelled after {k} of {n} slices; {self._settle_unfinished()}")

    def _on_reconstruct_failed(self, exc: BaseException) -> None:
        self._settle_unfinished()
        self.recon_panel.show_error(error_text(exc))

    def _on_reconstructed(self, _out: Any) -> None:
        layer = self.layer
        if layer is None:
            return
        layer.metadata["complete"] = True
        layer.metadata["seconds"] = self._run["seconds"]
        text = f"method self on {layer.metadata['device']}: {self._run['n']} slices in {self._run['seconds']:.2f} s"
        if self._run.get("note"):
            text += f"\nnote: {self._run['note']}"
        self.recon_label.setText(text)
        self.recon_panel.set_status(f"reconstructed {layer.name!r}")

    def on_close(self) -> None:
        """The dock closed during a reconstruction: keep only the finished slices, as Cancel does."""
        if self._run and self.layer is not None and not self.layer.metadata.get("complete"):
            self._settle_unfinished()
