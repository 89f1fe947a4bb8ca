"""Make the user guide's screenshots from a real napari session on the FlyEM sample.

Run under a (virtual) display::

    xvfb-run -a .venv/bin/python docs/make_screenshots.py [--out docs/images]

    xvfb-run -a .venv/bin/python docs/make_screenshots.py --only active   # just some of them

Writes ``acquisition.png``, ``reconstruct.png``, ``compare_grid.png`` (also the README's picture), ``active.png`` (an
active acquisition of one slice: initial reconstruction, error maps, rescan points, final reconstruction) and
``reconstruct_cluster.png`` (the same scan
reconstructed block by block on a local cluster of two workers: the dashboard link and the lazy OME-Zarr result),
``dip_live.png`` (a DIP run mid-fit: its live preview and loss curves), ``gan_compare.png`` (linear, gan-mse and gan on
a 5 % spiral scan with the shipped weights), ``train_gan.png`` (the Train GAN widget after a short training on the
sample), ``train_self.png`` (Train on this scan after a short self-supervised training on a 5 % random scan of the
sample, and the scan reconstructed with it) and ``porous.png`` (the Porous material widget: solid phase, normal map,
Monte Carlo BSE and SE of a cut).
Every picture comes from the widgets doing their real work, the same way a user drives them.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import napari
from napari.layers import Layer
from qtpy.QtCore import QSettings
from qtpy.QtWidgets import QApplication

from napari_sparse_sem.io.sample_data import flyem_sample
from napari_sparse_sem.widgets.demo import PLUGIN, WIDGETS

WINDOW_SIZE = (1600, 1000)
SLICE = 16  # the slice shown (of the 32 in the sample)
SHOTS = (
    "acquisition", "reconstruct", "reconstruct_cluster", "compare_grid", "active", "dip_live", "gan_compare",
    "train_gan", "train_self", "porous", "simulate",
)  # fmt: skip


def _settle(seconds: float = 0.5) -> None:
    """Let Qt draw everything (docks, canvas, plots)."""
    end = time.perf_counter() + seconds
    app = QApplication.instance()
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.02)


def _wait(panel, timeout: float = 300.0) -> None:
    end = time.perf_counter() + timeout
    while panel.busy:
        if time.perf_counter() > end:
            raise TimeoutError("a widget job did not finish in time")
        QApplication.instance().processEvents()
        time.sleep(0.02)
    _settle()


def _show_dock(widget) -> None:
    """Bring a (tabified) dock widget to the front."""
    dock = widget.parent()
    while dock is not None and not hasattr(dock, "setFloating"):
        dock = dock.parent()
    if dock is not None:
        dock.show()
        dock.raise_()
    _settle(0.3)


def _only_visible(viewer: napari.Viewer, names: list[str]) -> None:
    for layer in viewer.layers:
        layer.visible = layer.name in names


def _shoot(viewer: napari.Viewer, path: Path) -> None:
    _settle()
    viewer.screenshot(str(path), canvas_only=False, flash=False)
    print(f"wrote {path}")


def _close_notifications() -> None:
    """Close the pop-up notifications still shown over the canvas (they would hide part of the picture)."""
    from napari._qt.dialogs.qt_notification import NapariQtNotification

    for toast in QApplication.instance().allWidgets():
        if isinstance(toast, NapariQtNotification) and toast.isVisible():
            toast.close()
    _settle()


def _no_backend_toast() -> None:
    """napari shows a one-off PyQt5 deprecation toast over the canvas; keep it out of the pictures."""
    try:
        import napari._qt.qt_main_window as qt_main_window

        qt_main_window.SHOW_QT_WARNING = False
    except (ImportError, AttributeError):  # pragma: no cover - other napari versions
        pass


def main(out: Path, only: tuple[str, ...] = SHOTS) -> None:
    out.mkdir(parents=True, exist_ok=True)
    _no_backend_toast()
    # Start from the widgets' defaults, not from what a user's own sessions remembered (and leave those alone).
    QSettings.setPath(QSettings.IniFormat, QSettings.UserScope, tempfile.mkdtemp(prefix="sparse-sem-shots-"))
    viewer = napari.Viewer(title="napari-sparse-sem", show=True)
    viewer.window._qt_window.resize(*WINDOW_SIZE)
    for data, kwargs, layer_type in flyem_sample():
        sample = viewer.add_layer(Layer.create(data, kwargs, layer_type))
    names = (*WIDGETS, "Active acquisition", "Train GAN", "Train on this scan", "Porous material", "Simulate SEM")
    widgets = [viewer.window.add_plugin_dock_widget(PLUGIN, name, tabify=True)[1] for name in names]
    acquisition, reconstruct, compare, active, train_gan, train_self, porous, simulate = widgets
    viewer.dims.set_current_step(0, SLICE)
    _settle(1.0)
    viewer.screenshot(canvas_only=False, flash=False)  # first full-window grab: the canvas is drawn from then on
    if {"acquisition", "reconstruct", "reconstruct_cluster"} & set(only):
        _acquire_and_reconstruct(viewer, sample, acquisition, reconstruct, out, only)
    if "compare_grid" in only:
        _compare(viewer, sample, compare, out)
    if "active" in only:
        _active(viewer, sample, active, out)
    if "gan_compare" in only:
        _gan_compare(viewer, sample, compare, out)
    if "train_gan" in only:
        _train_gan(viewer, sample, train_gan, out)
    if "train_self" in only:
        _train_self(viewer, sample, acquisition, train_self, out)
    if "dip_live" in only:
        _dip_live(viewer, sample, acquisition, reconstruct, out)
    if "porous" in only:  # last: it clears the FlyEM layers
        _porous(viewer, porous, out)
    if "simulate" in only:  # also clears the layers
        _simulate(viewer, simulate, out)
    viewer.close()


def _simulate(viewer, simulate, out: Path) -> None:
    # 9. Simulate SEM: 32 slices of porous carbon from the shipped surrogate (SNR 8.33), the solid labels over the BSE,
    #    then the Monte Carlo check of slice 16: MC SE beside |surrogate − MC|.
    viewer.canvas.grid.enabled = False
    viewer.layers.clear()
    _show_dock(simulate)
    simulate.size.value = 160
    simulate.slices.value = 32
    simulate.seed.value = 3
    simulate.stack_form["snr"].value = "8.33"
    simulate.mc_electrons.value = 100
    simulate.run()
    _wait(simulate.stack_panel, timeout=300.0)
    viewer.dims.set_current_step(0, 16)
    simulate.compare_with_monte_carlo()
    _wait(simulate.mc_panel, timeout=900.0)
    names = [
        "simulated · BSE",
        "simulated · SE",
        "simulated · MC SE slice 16",
        "simulated · |surrogate − MC| SE slice 16",
    ]
    _only_visible(viewer, names)
    for i, name in enumerate(names):
        viewer.layers.move(viewer.layers.index(name), len(viewer.layers) - 1 - i)
    grid = viewer.canvas.grid
    grid.stride, grid.shape, grid.enabled = -1, (2, 2), True
    viewer.reset_view()
    _settle(6.0)
    _shoot(viewer, out / "simulate_sem.png")
    grid.enabled = False


def _porous(viewer, porous, out: Path) -> None:
    # 8. Porous carbon (spheres r 50–75 nm, Φ 0.5, 5-nm pixels): the solid phase under the cut, the normal map, and the
    #    Monte Carlo BSE and SE images of the cut at 2 keV, 100 electrons per pixel, side by side.
    viewer.canvas.grid.enabled = False
    viewer.layers.clear()  # only the simulated cut, so the grid frames it
    _show_dock(porous)
    porous.size.value = 160
    porous.depth.value = 96
    porous.seed.value = 3
    porous.electrons.value = 100
    porous.make_geometry()
    _wait(porous.geometry_panel)
    porous.run_monte_carlo()
    _wait(porous.mc_panel, timeout=900.0)
    names = ["porous · solid", "porous · normal map", "porous · MC BSE", "porous · MC SE"]
    _only_visible(viewer, names)
    for i, name in enumerate(names):
        viewer.layers.move(viewer.layers.index(name), len(viewer.layers) - 1 - i)
    viewer.dims.set_current_step(0, 0)
    grid = viewer.canvas.grid
    grid.stride, grid.shape, grid.enabled = -1, (2, 2), True
    viewer.reset_view()
    _settle(6.0)  # let the "done" notifications fade
    _shoot(viewer, out / "porous.png")
    grid.enabled = False


def _acquire_and_reconstruct(viewer, sample, acquisition, reconstruct, out: Path, only: tuple[str, ...]) -> None:
    # 1. Sparse acquisition: a 10 % random scan; the sparse layer over the sample.
    _show_dock(acquisition)
    acquisition.source.value = sample
    acquisition.pattern.value = "random"
    acquisition.coverage.value = 10.0
    acquisition.run()
    _wait(acquisition.panel)
    sparse_name = f"{sample.name} · random 10% · sparse"
    _only_visible(viewer, [sparse_name])
    viewer.camera.zoom *= 2.0  # closer, so single scanned pixels are visible
    if "acquisition" in only:
        _shoot(viewer, out / "acquisition.png")
    viewer.reset_view()
    if "reconstruct" not in only and "reconstruct_cluster" not in only:
        return

    # 2. Reconstruct with the biharmonic method, against the sample as ground truth.
    _show_dock(reconstruct)
    reconstruct.sparse.value = viewer.layers[sparse_name]
    reconstruct.method.value = "biharmonic"
    reconstruct.run()
    _wait(reconstruct.panel)
    recon_name = reconstruct.layer.name
    viewer.layers.selection.active = reconstruct.layer
    # Sample, sparse scan, reconstruction and its error side by side (grid view).
    error_name = f"{recon_name} · |error|"
    _only_visible(viewer, [sample.name, sparse_name, recon_name, error_name])
    viewer.layers[error_name].blending = "translucent"
    grid = viewer.canvas.grid
    grid.stride, grid.shape, grid.enabled = 1, (2, 2), True
    viewer.reset_view()
    if "reconstruct" in only:
        _shoot(viewer, out / "reconstruct.png")
    grid.enabled = False
    if "reconstruct_cluster" in only:
        _reconstruct_cluster(viewer, sparse_name, reconstruct, out)


def _reconstruct_cluster(viewer, sparse_name: str, reconstruct, out: Path) -> None:
    # 3. The same scan block by block on a local cluster of two workers, into an OME-Zarr store opened lazily.
    section = reconstruct.cluster.section
    section.enabled.value = True
    section.cluster.value = "local:2"
    section.output.value = Path(tempfile.mkdtemp(prefix="sparse-sem-shots-")) / "recon.zarr"
    section.slab.value = 4
    reconstruct.sparse.value = viewer.layers[sparse_name]
    reconstruct.method.value = "linear"
    reconstruct.run()
    _wait(reconstruct.panel)
    result = next(layer for layer in viewer.layers if layer.name.endswith("(cluster)"))
    _only_visible(viewer, [sparse_name, result.name])
    viewer.layers.selection.active = result
    grid = viewer.canvas.grid
    grid.stride, grid.shape, grid.enabled = 1, (1, 2), True
    viewer.reset_view()
    _shoot(viewer, out / "reconstruct_cluster.png")
    grid.enabled = False


def _compare(viewer, sample, compare, out: Path) -> None:
    # 3. Compare four mask patterns with the better classical methods (linear, biharmonic) on the current slice: grid
    #    view (fitted to the canvas by the widget, every cell labelled), table and bars.
    _show_dock(compare)
    for layer in viewer.layers:
        layer.visible = layer is sample
    compare.truth.value = sample
    for pattern, box in compare.pattern_boxes.items():
        box.value = pattern in ("random", "grid", "spiral", "lowres")
    compare.methods.value = ["linear", "biharmonic"]
    compare.coverage.value = 10.0
    compare.run()
    _wait(compare.panel)
    _shoot(viewer, out / "compare_grid.png")
    compare.clear_results()
    viewer.canvas.grid.enabled = False


def _gan_compare(viewer, sample, compare, out: Path) -> None:
    # 6. A 5 % spiral scan of the current slice filled by linear, gan-mse and gan (shipped weights), with error maps.
    _show_dock(compare)
    for layer in viewer.layers:
        layer.visible = layer is sample
    compare.truth.value = sample
    for pattern, box in compare.pattern_boxes.items():
        box.value = pattern == "spiral"
    compare.methods.value = ["linear", "gan-mse", "gan"]
    compare.coverage.value = 5.0
    compare.run()
    _wait(compare.panel)
    _shoot(viewer, out / "gan_compare.png")
    compare.clear_results()
    viewer.canvas.grid.enabled = False


def _train_gan(viewer, sample, train_gan, out: Path) -> None:
    # 7. The Train GAN widget after a short (300-iteration) training on the sample's slices: form, status, curves.
    _show_dock(train_gan)
    for layer in viewer.layers:
        layer.visible = layer is sample
    train_gan.source.value = sample
    train_gan.minutes.value = ""  # no time budget: the iterations decide
    train_gan.iterations.value = 300
    train_gan.out.value = str(Path(tempfile.mkdtemp(prefix="sparse-sem-gan-")) / "my_gan.safetensors")
    train_gan.run()
    _wait(train_gan.panel, timeout=900.0)
    _shoot(viewer, out / "train_gan.png")


def _train_self(viewer, sample, acquisition, train_self, out: Path) -> None:
    # 8. Train on this scan: a 5 % random scan of the sample (a new mask per slice), 2 minutes of self-supervised
    #    fine-tuning of the shipped ±1-slice generator on it alone, then Reconstruct this scan. Grid view: the sample,
    #    the sparse scan and the reconstruction; the dock shows the form, the curves and the status.
    viewer.canvas.grid.enabled = False
    acquisition.source.value = sample
    acquisition.pattern.value, acquisition.coverage.value = "random", 5.0
    acquisition.run()
    _wait(acquisition.panel)
    sparse_name = f"{sample.name} · random 5% · sparse"
    _show_dock(train_self)
    train_self.sparse.value = viewer.layers[sparse_name]
    train_self.minutes.value = "2"
    train_self.iterations.value = ""
    train_self.extra = {"validate_every": 25}  # more points on the validation curve of a short run
    train_self.out.value = str(Path(tempfile.mkdtemp(prefix="sparse-sem-self-")) / "my_scan.safetensors")
    train_self.run()
    _wait(train_self.panel, timeout=900.0)
    train_self.reconstruct()
    _wait(train_self.recon_panel, timeout=900.0)
    names = [sample.name, sparse_name, train_self.layer.name]
    _only_visible(viewer, names)
    for i, name in enumerate(names):
        viewer.layers.move(viewer.layers.index(name), len(viewer.layers) - 1 - i)
    viewer.layers.selection.active = train_self.layer
    grid = viewer.canvas.grid
    grid.stride, grid.shape, grid.enabled = -1, (1, 3), True
    viewer.reset_view()
    _close_notifications()
    bar = train_self.scroll.verticalScrollBar()
    bar.setValue(bar.maximum())  # down to the reconstruction's line
    _shoot(viewer, out / "train_self.png")
    grid.enabled = False


def _active(viewer, sample, active, out: Path) -> None:
    # 4. Active acquisition of the current slice: lowres:4 (6.25 %) plus WDPP rescans up to 10 %, gradient estimate,
    #    with static random/hexgrid baselines at the same total. Grid view: the initial reconstruction and its
    #    estimated and true error (top), the rescan points, the final reconstruction and its error (bottom).
    _show_dock(active)
    for layer in viewer.layers:
        layer.visible = False
    active.source.value = sample
    active.slice_mode.value = "current slice"
    active.initial.value = "lowres:4"
    active.budget.value = 10.0
    active.estimator.value = "gradient"
    active.sampler.value = "wdpp"
    active.recon.value = "linear"
    for box in active.baseline_boxes.values():
        box.value = True
    active.run()
    _wait(active.panel)
    order = ["initial recon", "estimated error", "true error", "rescan points", "final recon", "|error|"]
    layers = [active.result_layers[what] for what in order]
    for layer in layers:
        layer.visible = True
    # Grid cells follow the layer list from the top (stride -1): put ours on top, in reading order.
    for i, layer in enumerate(layers):
        viewer.layers.move(viewer.layers.index(layer), len(viewer.layers) - 1 - i)
    grid = viewer.canvas.grid
    grid.stride, grid.shape, grid.enabled = -1, (2, 3), True
    viewer.layers.selection.active = active.result_layers["rescan points"]
    viewer.reset_view()
    _shoot(viewer, out / "active.png")
    grid.enabled = False
    active.clear_results()


def _dip_live(viewer, sample, acquisition, reconstruct, out: Path) -> None:
    # 5. Deep image prior on a 128² crop, mid-run: the DIP form, the live preview of the slice being fitted, the curves.
    grid = viewer.canvas.grid
    grid.enabled = False
    crop_data, scale = sample.data[SLICE - 2 : SLICE + 2, 60:188, 60:188].copy(), tuple(sample.scale)
    viewer.layers.clear()  # only the crop and its results, so the view frames them
    crop = viewer.add_image(crop_data, name="crop", colormap="gray", scale=scale)
    _show_dock(acquisition)
    acquisition.source.value = crop
    acquisition.pattern.value, acquisition.coverage.value = "random", 10.0  # also when run with --only dip_live
    acquisition.run()
    _wait(acquisition.panel)
    crop_sparse = viewer.layers["crop · random 10% · sparse"]
    _show_dock(reconstruct)
    reconstruct.sparse.value = crop_sparse
    reconstruct.method.value = "dip"
    reconstruct.options.form("dip")["preview_every"].value = 25
    reconstruct.run()
    layer = reconstruct.layer
    _only_visible(viewer, [crop.name, layer.name])
    grid.stride, grid.shape, grid.enabled = 1, (1, 2), True
    viewer.dims.set_current_step(0, 1)
    end = time.perf_counter() + 900
    while not (reconstruct.done_slices and reconstruct._preview_z == 1 and len(reconstruct.loss_plot.axes.lines) > 1):
        if time.perf_counter() > end:
            raise TimeoutError("the DIP run did not reach slice 1")
        QApplication.instance().processEvents()
        time.sleep(0.05)
    _settle(8.0)  # a few more previews of slice 1
    viewer.reset_view()
    _shoot(viewer, out / "dip_live.png")
    reconstruct.panel.cancel()
    _wait(reconstruct.panel)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "images")
    parser.add_argument("--only", nargs="+", choices=SHOTS, default=list(SHOTS), help="make only these pictures")
    args = parser.parse_args()
    main(args.out, tuple(args.only))
