"""The *Train GAN* dock widget: train the partial-scan GAN (Ede & Beanland 2020) on dense reference slices of a layer.

The form maps onto :class:`~napari_sparse_sem.recon.gan_training.GANTrainingConfig`; the training runs in a worker
(progress bar, Cancel) and a plot follows the training MSE and the held-out PSNR against ``linear``. Cancel stops
after the current batch and the job writes a checkpoint; *resume* continues it. The weights file then serves the
*Reconstruct* and *Compare masks* widgets (their *GAN weights* field) and ``--weights`` on the command line.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import napari
import numpy as np
from magicgui.widgets import CheckBox, ComboBox, Container, FileEdit, FloatSpinBox, SpinBox

from napari_sparse_sem.io.volume import as_zyx, to_float01, value_range
from napari_sparse_sem.recon.gan_training import (
    GANTrainingConfig,
    GANTrainingStatus,
    parse_patterns,
    train_gan_job,
)
from napari_sparse_sem.runtime import Progress, available_devices
from napari_sparse_sem.widgets._base import JobWidget
from napari_sparse_sem.widgets._layers import image_layers, layer_array, meta
from napari_sparse_sem.widgets._plots import TrainingPlot
from napari_sparse_sem.widgets._worker import error_text

PATTERN_CHOICES = ("mixed", "spiral", "grid", "random", "lines", "lowres", "hexgrid", "bluenoise")


class TrainGANWidget(JobWidget):
    """Train a partial-scan GAN generator on the slices of a dense image layer."""

    SETTINGS_GROUP = "train_gan"

    def __init__(self, napari_viewer: napari.viewer.Viewer) -> None:
        super().__init__(napari_viewer)
        self.source = ComboBox(label="reference image", choices=self._source_choices, tooltip="dense slices to learn")
        self.first_slice = SpinBox(label="first slice", value=0, min=0, max=100_000)
        self.last_slice = SpinBox(
            label="last slice", value=0, min=0, max=100_000, tooltip="inclusive; 0 and 0 with a stack: all slices"
        )
        self.patterns = ComboBox(
            label="patterns",
            choices=list(PATTERN_CHOICES),
            value="mixed",
            tooltip="mask patterns drawn for the training crops (mixed: spiral, grid, random); type a comma list",
        )
        self.patterns.native.setEditable(True)
        self.coverage_low = FloatSpinBox(label="coverage from (%)", value=2.0, min=0.1, max=100.0, step=0.5)
        self.coverage_high = FloatSpinBox(label="coverage to (%)", value=20.0, min=0.1, max=100.0, step=0.5)
        self.minutes = FloatSpinBox(label="minutes", value=30.0, min=0.0, max=100_000.0, step=5.0, tooltip="0: none")
        self.iterations = SpinBox(
            label="iterations", value=0, min=0, max=10_000_000, tooltip="batches; 0: no limit (the minutes decide)"
        )
        self.preset = ComboBox(label="network", choices=["compact", "paper"], value="compact", tooltip="paper: GPU")
        self.context = SpinBox(label="neighbour slices", value=0, min=0, max=8, tooltip="slices on each side it sees")
        self.crop = SpinBox(label="crop (px)", value=128, min=32, max=2048, step=32)
        self.batch_size = SpinBox(label="batch size", value=8, min=1, max=256)
        self.pretrain = FloatSpinBox(
            label="MSE share", value=0.7, min=0.05, max=1.0, step=0.05, tooltip="budget share before adversarial"
        )
        self.adv_weight = FloatSpinBox(label="adversarial weight", value=0.002, min=0.0, max=10.0, step=0.001)
        self.alrc = CheckBox(text="ALRC (clip outlier losses)", value=True)
        self.seed = SpinBox(label="seed", value=0, min=0, max=2**31 - 1)
        self.device = ComboBox(label="device", choices=["auto", *available_devices()], value="auto")
        self.out = FileEdit(label="save weights to", mode="w", filter="*.safetensors", value="gan.safetensors")
        self.overwrite = CheckBox(text="overwrite", value=False)
        self.resume = CheckBox(text="resume the checkpoint", value=False)
        self.form = Container(
            widgets=[
                self.source,
                self.first_slice,
                self.last_slice,
                self.patterns,
                self.coverage_low,
                self.coverage_high,
                self.minutes,
                self.iterations,
                self.preset,
                self.context,
                self.crop,
                self.batch_size,
                self.pretrain,
                self.adv_weight,
                self.alrc,
                self.seed,
                self.device,
                self.out,
                self.overwrite,
                self.resume,
            ]
        )
        self.panel = self.add_panel("Train GAN", self.run)
        self.plot = TrainingPlot()
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
            "patterns": self.patterns,
            "coverage_low": self.coverage_low,
            "coverage_high": self.coverage_high,
            "minutes": self.minutes,
            "iterations": self.iterations,
            "preset": self.preset,
            "context": self.context,
            "crop": self.crop,
            "batch_size": self.batch_size,
            "pretrain": self.pretrain,
            "adv_weight": self.adv_weight,
            "alrc": self.alrc,
            "seed": self.seed,
            "device": self.device,
            "out": self.out,
        }

    def config(self) -> GANTrainingConfig:
        """The training config of the form (ValueError with a readable message when a field is wrong)."""
        low, high = float(self.coverage_low.value), float(self.coverage_high.value)
        if high < low:
            raise ValueError(f"coverage 'to' ({high} %) is below 'from' ({low} %); swap them")
        minutes = float(self.minutes.value) or None
        iterations = int(self.iterations.value) or None
        if minutes is None and iterations is None:
            raise ValueError("give a budget: minutes, iterations or both")
        architecture = dict(self.architecture)
        if self.context.value:
            architecture["context"] = int(self.context.value)
        return GANTrainingConfig(
            preset=self.preset.value,
            architecture=architecture,
            patterns=parse_patterns(str(self.patterns.value)),
            coverage=(low / 100.0, high / 100.0),
            crop=int(self.crop.value),
            batch_size=int(self.batch_size.value),
            iterations=iterations,
            minutes=minutes,
            pretrain_fraction=float(self.pretrain.value),
            adv_weight=float(self.adv_weight.value),
            alrc=bool(self.alrc.value),
            seed=int(self.seed.value),
        )

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
            job,
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
