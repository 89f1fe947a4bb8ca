"""The *Train GAN* dock widget: train the partial-scan GAN (Ede & Beanland 2020) on dense reference slices of a layer.

The form is generated from :class:`~napari_sparse_sem.recon.gan_training.GANTrainingConfig` (learning rates and
loss weights behind *Advanced*; *Load parameters…* fills it from a model card or a ``train-gan`` run record); the
training runs in a worker
(progress bar, Cancel) and a plot follows the training MSE and the held-out PSNR against ``linear``. Cancel stops
after the current batch and the job writes a checkpoint; *resume* continues it. The weights file then serves the
*Reconstruct* and *Compare masks* widgets (their *GAN weights* field) and ``--weights`` on the command line.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, SpinBox

from napari_sparse_sem.io.volume import as_zyx, to_float01, value_range
from napari_sparse_sem.params import fields_of
from napari_sparse_sem.recon.gan_training import GANTrainingConfig, GANTrainingStatus, train_gan_job
from napari_sparse_sem.runtime import Progress, available_devices
from napari_sparse_sem.threads import with_threads
from napari_sparse_sem.widgets._base import JobWidget
from napari_sparse_sem.widgets._fields import TextChoice, align_labels
from napari_sparse_sem.widgets._form import SpecForm, threads_field
from napari_sparse_sem.widgets._layers import image_layers, layer_array, meta
from napari_sparse_sem.widgets._plots import TrainingPlot
from napari_sparse_sem.widgets._records import command_arguments, spec_values
from napari_sparse_sem.widgets._worker import error_text

PATTERN_CHOICES = ("mixed", "spiral", "grid", "random", "lines", "lowres", "hexgrid", "bluenoise")
ADVANCED_FIELDS = ("lr", "adv_weight", "alrc")
COMMAND = "train-gan"


class TrainGANWidget(JobWidget):
    """Train a partial-scan GAN generator on the slices of a dense image layer."""

    SETTINGS_GROUP = "train_gan"
    PARAMETERS = "a GAN's model card (.json or its .safetensors), or a run record of `sparse-sem train-gan`"

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(napari_viewer)
        from napari_sparse_sem.nn.gan import PRESETS

        self.source = ComboBox(label="reference image", choices=self._source_choices, tooltip="dense slices to learn")
        self.first_slice = SpinBox(label="first slice", value=0, min=0, max=100_000)
        self.last_slice = SpinBox(
            label="last slice", value=0, min=0, max=100_000, tooltip="inclusive; 0 and 0 with a stack: all slices"
        )
        self.inputs = Container(widgets=[self.source, self.first_slice, self.last_slice])
        self.patterns = TextChoice(PATTERN_CHOICES, label="patterns")
        self.preset = ComboBox(label="network", choices=list(PRESETS), tooltip="paper: GPU")
        self.config_form = SpecForm(
            GANTrainingConfig,
            widgets={"patterns": self.patterns, "preset": self.preset},
            advanced=ADVANCED_FIELDS,
        )
        fields = self.config_form.fields
        self.coverage, self.minutes, self.iterations = fields["coverage"], fields["minutes"], fields["iterations"]
        self.crop, self.batch_size, self.pretrain = fields["crop"], fields["batch_size"], fields["pretrain_fraction"]
        self.seed = fields["seed"]
        self.context = SpinBox(label="neighbour slices", value=0, min=0, max=8, tooltip="slices on each side it sees")
        self.device = ComboBox(label="device", choices=["auto", *available_devices()], value="auto")
        self.threads = threads_field()
        self.out = FileEdit(label="save weights to", mode="w", filter="*.safetensors", value="gan.safetensors")
        self.overwrite = CheckBox(text="overwrite", value=False)
        self.resume = CheckBox(text="resume the checkpoint", value=False)
        self.form = Container(widgets=[self.context, self.device, self.threads, self.out, self.overwrite, self.resume])
        align_labels(self.inputs, self.config_form, self.config_form.advanced, self.form)
        self.panel = self.add_panel("Train GAN", self.run)
        self.plot = TrainingPlot()
        self.body.addWidget(self.inputs.native)
        self.body.addWidget(self.config_form.native)
        self.body.addWidget(self.form.native)
        self.body.addWidget(self.panel)
        self.body.addWidget(self.plot, 1)

        self.architecture: dict[str, Any] = {}  # extra GANConfig fields (e.g. for tests or expert use)
        self.result: dict[str, Any] | None = None
        self.pick_layers(self.source)
        self.restore_settings()

    # -- parameters ------------------------------------------------------------------------------------------------
    def _source_choices(self, _widget: Any = None) -> list[tuple[str, Any]]:
        return image_layers(self.viewer, first=lambda layer: meta(layer, "kind") is None)

    def remembered(self) -> dict[str, Any]:
        return {
            **self.config_form.fields,
            "context": self.context,
            "device": self.device,
            "threads": self.threads,
            "out": self.out,
        }

    def config(self) -> GANTrainingConfig:
        """The training config of the form (ValueError with a readable message when a field is wrong)."""
        architecture = dict(self.architecture)
        if self.context.value:
            architecture["context"] = int(self.context.value)
        return self.config_form.spec(architecture=architecture)

    def parameters_from(self, data: Mapping[str, Any], where: str) -> Callable[[], None]:
        """The training block of a model card (its config fields), or a ``train-gan`` run record."""
        context = None
        training = data.get("training")
        if isinstance(training, Mapping):
            names = {view.name for view in fields_of(GANTrainingConfig)}
            config = GANTrainingConfig.from_dict({k: v for k, v in training.items() if k in names})
            context = config.architecture.get("context")
        else:
            arguments = command_arguments(data, [COMMAND], where, self.PARAMETERS)
            config = GANTrainingConfig.from_dict(spec_values(GANTrainingConfig, arguments))
            context = arguments.get("context")

        def apply() -> None:
            self.config_form.set_spec(config)
            self.context.value = int(context or 0)

        return apply

    def plan(self) -> tuple[GANTrainingConfig, np.ndarray, list[int], Path]:
        """The config, the reference slices as float32 in [0, 1], their numbers, and the weights file."""
        source = self.source.value
        if source is None:
            raise ValueError("no image layer; open a dense reference stack (or File > Open Sample) first")
        data = as_zyx(layer_array(source, "image"), what=f"image layer {source.name!r}")
        nz = int(data.shape[0])
        first, last = int(self.first_slice.value), int(self.last_slice.value)
        if first == 0 and last == 0:
            last = nz - 1
        if last < first:
            raise ValueError(f"last slice {last} is before first slice {first}; swap them")
        if last >= nz:
            raise ValueError(f"last slice {last} is outside the stack of {nz} slices (0 to {nz - 1})")
        config = self.config()
        out = Path(str(self.out.value))
        if out.suffix != ".safetensors":
            raise ValueError(f"the weights file must end with .safetensors, got {out.name!r}")
        if self.resume.value and self.overwrite.value:
            raise ValueError("'resume' continues a training and 'overwrite' starts a new one: tick one of them")
        if out.exists() and not (self.resume.value or self.overwrite.value):
            raise ValueError(
                f"{out} already exists: tick 'overwrite' to replace it, 'resume' to continue it, or rename"
            )
        raw = np.asarray(data[first : last + 1])
        reference = to_float01(raw, f"image layer {source.name!r}", value_range(raw))
        return config, reference, list(range(first, last + 1)), out

    # -- running ---------------------------------------------------------------------------------------------------
    def run(self) -> None:
        """Start training (bad input: message in the widget, nothing starts)."""
        if self.panel.busy:
            return
        try:
            config, reference, numbers, out = self.plan()
        except ValueError as exc:
            self.panel.show_error(str(exc))
            return
        self.save_settings()
        self.result = None
        self.plot.clear()
        source = self.source.value
        job = train_gan_job(
            _Renumbered(reference, numbers[0]),
            numbers,
            config,
            out,
            overwrite=bool(self.overwrite.value),
            resume=bool(self.resume.value),
            device=self.device.value,
            data_name=source.name,
            command=f"napari Train GAN widget on layer {source.name!r}, slices {numbers[0]}:{numbers[-1] + 1}",
        )
        self.panel.start(
            with_threads(job, self.threads.value),
            desc=f"training a GAN on {source.name} ({len(numbers)} slices)",
            on_progress=self._on_progress,
            on_returned=self._on_done,
            on_aborted=self._on_cancelled,
            on_errored=lambda exc: self.panel.show_error(error_text(exc)),
        )

    def _on_progress(self, event: Progress) -> None:
        status = event.partial
        if isinstance(status, GANTrainingStatus) and status.phase != "prepare":
            self.plot.show_curves(status.loss, status.validation, status.linear_psnr, status.pretrain_iterations)

    def _on_done(self, result: dict[str, Any]) -> None:
        self.result = result
        card = result["card"]
        metrics = card.get("metrics", {})
        scores = ", ".join(f"{name} {metrics[name]['psnr']:.2f} dB" for name in ("gan-mse", "gan") if name in metrics)
        held_out = f"; held-out PSNR {scores} (linear {metrics['linear_psnr']:.2f} dB)" if scores else ""
        self.panel.notify(
            f"saved {result['path'].name} ({', '.join(card['variants'])}): {result['iterations']} iterations in "
            f"{result['seconds'] / 60:.1f} min{held_out}. Choose it as 'GAN weights' in Reconstruct or Compare masks."
        )

    def _on_cancelled(self) -> None:
        out = Path(str(self.out.value))
        self.panel.set_status(
            f"cancelled; the checkpoint is saved in {out.name} — tick 'resume the checkpoint' and Train to continue"
        )


class _Renumbered:
    """``reference`` (slices ``first``, ``first + 1``, …) indexed by the slice numbers of the source stack."""

    def __init__(self, reference: np.ndarray, first: int) -> None:
        self.reference = reference
        self.first = first
        self.shape = (first + reference.shape[0], *reference.shape[1:])

    def __getitem__(self, z: int) -> np.ndarray:
        return self.reference[int(z) - self.first]
