"""Issue #19, item 5: the surrogate retrained at the paper's accuracy with the GPU Monte Carlo teacher — one command.

    python -m benchmarks.surrogate_gpu_retrain --device cuda --out OUT [--work DIR] [--minutes 8]
    python -m benchmarks.surrogate_gpu_retrain --tiny --out OUT        # the same pipeline on a CPU in a minute or two
    python -m benchmarks.surrogate_gpu_retrain --plan [--rate 5e7]     # the sizing arithmetic only (no data made)

Within ``--minutes`` of wall time, in this order, each step cut at its deadline so the run always ends with weights
and figures (a cut is reported, never hidden):

1. the low-noise evaluation set (4 held-out cube slices at 8 000 e⁻/px as 2 replicas of 4 000;
   ``surrogate.dataset.evaluation_spec``) on the teacher's device, in this process, until ``--eval-by`` of the budget;
2. the training set (1 512 geometries × 1 cut = 1 512 slices of 128², 21.9× the shipped 69, spheres and cylinders
   in the paper's proportions, + 8 cube slices for the validation curve; ``surrogate.dataset.retrain_spec``) in
   ``--workers`` processes until ``--data-by``, at the electrons per pixel that the time left allows at the teacher
   speed step 1 measured (``--train-electrons`` fixes it);
3. training of the shipped layout (resnet34-half, L2, Adam 1e-3, batch 32, crop 96; ``surrogate.training``) until
   ``--train-by``;
4. evaluation on the held-out cubes against the targets (BSE systematic ≤ 0.2 %, SE systematic ≤ 0.9 %, BSE total
   ≤ 1.5 % of the data range; the reference's own noise separated as in ``surrogate.evaluate``), and timings: the
   surrogate, the teacher on the device and on the CPU, per 128² slice at 1 000 e⁻/px.

The stores and the training checkpoint live in ``--work`` (default: ``OUT-work`` beside OUT, so OUT stays small);
the stores resume on a rerun with the same settings. OUT receives ``surrogate_carbon.safetensors`` + its ``.json``
card (command, data, metrics, date, device), the learning curves, ``retrain.md`` (markdown tables) and
``retrain.json`` (every figure). The shipped
weights in ``src/`` are never written: copy them in after review.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import shlex
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks._common import machine, markdown_table, today

TARGETS = (("bse", "systematic_rms_pct", 0.2), ("se", "systematic_rms_pct", 0.9), ("bse", "mean_error_pct", 1.5))
"""Issue #19's targets on held-out cubes, in % of the data range (systematic: the noise-subtracted RMS)."""
PAPER = {"bse": {"mean_error_pct": 1.01, "systematic_error_pct": 0.12}, "se": {"mean_error_pct": 2.97,
         "systematic_error_pct": 0.90}}  # fmt: skip
"""Dahmen et al. Table 4, ResNet-34 (total and "total − noise" systematic, % of range)."""
SHIPPED_CPU_MC_SECONDS = 1680.0 / 16
"""CPU teacher per 128² slice at 1 000 e⁻/px: 1 680 s per 512² on a 2-core AMD EPYC (docs/benchmarks.md, #7)."""
CPU_POROUS_FACTOR = {"train": 0.066, "cubes": 0.086}
"""Teacher speed on each set's slices over bulk carbon at 2 keV: 24 training geometries and the 4 evaluation cubes,
2 rows each, on a 2-core AMD EPYC (``--plan --measure``); the GPU is assumed to keep these ratios."""
STARTUP_SECONDS = 30.0
"""Allowance for starting the worker processes (imports, numba's CUDA compilation in each)."""


@dataclasses.dataclass
class Settings:
    """Everything the run does; ``tiny()`` is the CPU proof at small scale."""

    minutes: float = 8.0
    eval_by: float = 0.30
    data_by: float = 0.62
    train_by: float = 0.92
    train_geometries: int = 1512
    train_cuts: int = 1
    train_held_out: int = 8
    train_electrons: int = 0
    eval_cubes: int = 4
    eval_geometries: int = 0
    eval_electrons: int = 8000
    eval_replicas: int = 2
    size: int = 128
    scale: float = 0.5
    layout: str = "resnet34-half"
    batch: int = 32
    crop: int = 96
    iterations: int | None = None
    cpu_rows: int = 4
    device_rows: int = 128
    timing_electrons: int = 1000
    repeats: int = 10
    workers: int = 0
    seed: int = 0

    @classmethod
    def tiny(cls) -> Settings:
        """A few 32² slices, few electrons and iterations: the whole pipeline on a CPU in a minute or two."""
        return cls(minutes=3.0, train_geometries=8, train_cuts=1, train_held_out=2, train_electrons=4, eval_cubes=1,
                   eval_geometries=1, eval_electrons=64, size=32, scale=0.3, batch=4, crop=32, iterations=30,
                   cpu_rows=2, device_rows=2, timing_electrons=20, repeats=3)  # fmt: skip


def training_spec(settings: Settings, device: str, electrons: int | None = None) -> Any:
    """The training set's spec (``electrons`` per pixel: the setting's unless given)."""
    from napari_sparse_sem.surrogate.dataset import retrain_spec

    spec = retrain_spec(max(1, electrons or settings.train_electrons), settings.train_geometries,
                        settings.train_cuts, settings.train_held_out, device, settings.seed)  # fmt: skip
    return spec.replace(size=settings.size, scale=settings.scale)


def eval_spec(settings: Settings, device: str) -> Any:
    """The evaluation set's spec (another seed than the training set's)."""
    from napari_sparse_sem.surrogate.dataset import evaluation_spec

    spec = evaluation_spec(settings.eval_electrons, settings.eval_cubes, settings.eval_geometries,
                           settings.eval_replicas, device, settings.seed + 2)  # fmt: skip
    return spec.replace(size=settings.size, scale=settings.scale)


def cli_line(spec: Any, out: str, workers: int = 1) -> str:
    """The ``sparse-sem surrogate make-dataset`` command that writes the same store."""
    mc = spec.mc
    words = ["sparse-sem", "surrogate", "make-dataset", "--out", out, "--geometries", spec.geometries, "--held-out",
             spec.held_out, "--cuts", spec.cuts, "--spacing", f"{spec.spacing:g}", "--size", spec.size, "--scale",
             f"{spec.scale:g}", "--electrons", mc.electrons_per_pixel, "--replicas", spec.replicas, "--seed",
             spec.seed]  # fmt: skip
    if getattr(mc, "device", "cpu") != "cpu":
        words += ["--device", mc.device]
    if workers > 1:
        words += ["--workers", workers]
    return " ".join(str(w) for w in words)


class Clock:
    """Seconds since the start and the deadlines as fractions of the budget."""

    def __init__(self, minutes: float) -> None:
        self.start, self.budget = time.monotonic(), 60.0 * minutes

    def now(self) -> float:
        return time.monotonic() - self.start

    def left_until(self, fraction: float) -> float:
        return fraction * self.budget - self.now()

    def log(self, message: str) -> None:
        print(f"[{self.now():7.1f} s] {message}", flush=True)


def make_store(spec: Any, path: Path, clock: Clock, by: float, label: str, workers: int) -> dict[str, Any]:
    """Fill (or resume) the store ``path`` until the deadline ``by``; what was done, and whether it was cut."""
    from napari_sparse_sem.runtime import Cancelled, run_job
    from napari_sparse_sem.surrogate.dataset import make_dataset

    started, last = clock.now(), [0.0]
    state: dict[str, Any] = {"cut": False}

    def report(event: Any) -> None:
        state["step"], state["total"] = event.step, event.total
        if clock.now() - last[0] > 15 or event.step == event.total:
            last[0] = clock.now()
            clock.log(f"{label}: {event.message}")

    job = make_dataset(spec, path, resume=path.exists(), held_out_first=True, workers=workers)
    try:
        summary = run_job(job, report, should_stop=lambda: clock.left_until(by) <= 0)
    except Cancelled:
        state["cut"] = True
        summary = {"out": str(path), "samples": state.get("total"), "done": state.get("step")}
        clock.log(f"{label}: deadline reached at {summary['done']}/{summary['samples']} slices (the store resumes)")
    return summary | {"cut": state["cut"], "wall_seconds": round(clock.now() - started, 1)}


def store_rate(path: Path) -> dict[str, float]:
    """Slices finished, Monte Carlo seconds and trajectories per second of a store (its recorded seconds)."""
    import numpy as np
    import zarr

    root = zarr.open_group(str(path), mode="r")
    done = np.asarray(root["done"][:], bool)
    seconds = float(np.nansum(np.asarray(root["seconds"][:], float)[done]))
    size = int(root["bse"].shape[-1])
    trajectories = float(done.sum()) * size * size * int(root.attrs["electrons_per_pixel"])
    return {"slices": int(done.sum()), "mc_seconds": round(seconds, 2),
            "trajectories_per_second": trajectories / seconds if seconds > 0 else float("nan")}  # fmt: skip


def train(settings: Settings, data: Path, weights: Path, device: str, clock: Clock, command: str) -> dict[str, Any]:
    """Train the shipped layout on ``data`` until the ``train_by`` deadline (or ``iterations``)."""
    from napari_sparse_sem.runtime import run_job
    from napari_sparse_sem.surrogate.model import SurrogateConfig
    from napari_sparse_sem.surrogate.training import SurrogateTrainingConfig, train_surrogate_job

    minutes = max(clock.left_until(settings.train_by) / 60.0, 0.1)
    config = SurrogateTrainingConfig(model=SurrogateConfig(layout=settings.layout), minutes=minutes,
                                     iterations=settings.iterations, batch=settings.batch, crop=settings.crop,
                                     loss="l2", lr=1e-3, seed=settings.seed, device=device)  # fmt: skip
    clock.log(f"training {settings.layout} for {minutes:.2f} min on {device}")
    last = [0.0]

    def report(event: Any) -> None:
        if clock.now() - last[0] > 20:
            last[0] = clock.now()
            clock.log(event.message)

    result = run_job(train_surrogate_job(data, weights, config, overwrite=True, command=command), report)
    clock.log(f"trained: {result['iterations']} iterations in {result['seconds']} s")
    return result | {"config": config.to_dict()}


def timings(weights: Path, eval_store: Path, device: str, teacher: str, settings: Settings) -> dict[str, Any]:
    """Per 128² (``size``²) slice: surrogate (network; + heightfield), teacher on ``teacher`` and on the CPU."""
    import torch
    import zarr

    from napari_sparse_sem.surrogate.dataset import DatasetSpec
    from napari_sparse_sem.surrogate.evaluate import teacher_seconds
    from napari_sparse_sem.surrogate.geometry import GeometrySpec, generate
    from napari_sparse_sem.surrogate.heightfield import extended_heightfield
    from napari_sparse_sem.surrogate.model import load_surrogate

    root = zarr.open_group(str(eval_store), mode="r")
    attrs = dict(root.attrs)
    done = root["done"][:]
    held_out = [i for i, d in enumerate(done) if d and attrs["samples"][i]["split"] == "held-out"]
    index = int(held_out[0] if held_out else next(i for i, d in enumerate(done) if d))  # a cube when there is one
    spec, sample = DatasetSpec.from_dict(attrs["spec"]), attrs["samples"][index]
    surrogate = load_surrogate(weights, device=device)
    heightfield = root["inputs"][index]
    primitives = generate(GeometrySpec.from_dict(sample["geometry"]))
    hf_device = device if device.startswith("cuda") and torch.cuda.is_available() else "cpu"

    def median_seconds(fn: Any, repeats: int = 10) -> float:
        fn()
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            fn()
            if hf_device.startswith("cuda"):
                torch.cuda.synchronize()
            times.append(time.perf_counter() - started)
        return statistics.median(times)

    network = median_seconds(lambda: surrogate.predict(heightfield), settings.repeats)
    hf = median_seconds(lambda: extended_heightfield(primitives, sample["z0"], max_depth=float(spec.guard),
                                                     device=hf_device), settings.repeats)  # fmt: skip
    out: dict[str, Any] = {"slice": f"{spec.size}² ({sample['preset']})", "electrons_per_pixel": 1000,
                           "surrogate_s": network, "heightfield_s": hf}  # fmt: skip
    electrons = settings.timing_electrons  # timed at this count, scaled linearly to 1 000 e⁻/px
    scale = 1000 / electrons
    out["teacher_device_s"] = teacher_seconds(attrs, index, settings.device_rows, electrons, teacher) * scale
    out["teacher_device"] = teacher
    if teacher != "cpu":
        out["teacher_cpu_s"] = teacher_seconds(attrs, index, settings.cpu_rows, electrons, "cpu") * scale
    else:
        out["teacher_cpu_s"] = out["teacher_device_s"]
    out["teacher_cpu_rows_timed"] = settings.cpu_rows if teacher != "cpu" else settings.device_rows
    out["timed_electrons_per_pixel"] = electrons
    out["teacher_cpu_shipped_s"] = SHIPPED_CPU_MC_SECONDS * (spec.size / 128) ** 2
    for key in ("teacher_device_s", "teacher_cpu_s", "teacher_cpu_shipped_s"):
        out[f"speedup_{key[:-2]}"] = out[key] / network
        out[f"speedup_{key[:-2]}_with_heightfield"] = out[key] / (network + hf)
    return out


def target_rows(records: list[dict]) -> list[dict[str, Any]]:
    """The targets against the held-out cube records."""
    cubes = {r["signal"]: r for r in records if r["geometry"] == "cubes"}
    rows = []
    for signal, key, target in TARGETS:
        value = cubes.get(signal, {}).get(key, float("nan"))
        upper = cubes.get(signal, {}).get("systematic_rms_upper_pct") if key == "systematic_rms_pct" else None
        rows.append({"signal": signal, "figure": key, "target": target, "value": value, "upper": upper,
                     "met": bool(value <= target)})  # fmt: skip
    return rows


def write_report(out: Path, figures: dict[str, Any]) -> str:
    """``retrain.md`` and ``retrain.json`` in ``out``; returns the markdown."""
    ev, t = figures["evaluation"], figures["timings"]
    lines = [f"# Surrogate retrained with the {figures['teacher_device']} teacher ({figures['date']})", "",
             f"Machine: {figures['machine']}. Command: `{figures['command']}`.", ""]  # fmt: skip
    data = figures["data"]
    lines += [markdown_table(
        ["set", "slices done / planned", "e⁻/px", "MC s", "traj/s", "wall s", "cut by deadline"],
        [[name, f"{d['rate']['slices']} / {d['planned']}", d["electrons"], d["rate"]["mc_seconds"],
          f"{d['rate']['trajectories_per_second']:.3g}", d["wall_seconds"], d["cut"]] for name, d in data.items()],
    ), "", f"Training: {figures['training']['iterations']} iterations in {figures['training']['seconds']} s on "
       f"{figures['training']['device']} ({figures['training']['train_samples']} slices).", ""]  # fmt: skip
    rows = [[r["signal"].upper(), r["geometry"], r["samples"], r["mean_error_pct"], r["noise_pct"],
             r["systematic_error_pct"], f"{r['systematic_rms_pct']:.3f} (≤ {r['systematic_rms_upper_pct']:.3f})",
             r["ssim"], r["psnr"], r["noise_source"]] for r in ev["records"]]  # fmt: skip
    lines += [f"Held-out evaluation ({ev['electrons_per_pixel']} e⁻/px in {ev['replicas']} replicas; % of the data "
              "range):", "", markdown_table(["signal", "geometry", "n", "total %", "ref. noise %",
              "total − noise %", "systematic RMS %", "SSIM", "PSNR", "noise from"], rows), ""]  # fmt: skip
    for signal, paper in PAPER.items():
        lines.append(f"Paper (ResNet-34, cubes) {signal.upper()}: total {paper['mean_error_pct']} %, "
                     f"systematic {paper['systematic_error_pct']} %.")  # fmt: skip
    trows = [[r["signal"].upper(), r["figure"], f"≤ {r['target']}", r["value"],
              "" if r["upper"] is None else f"{r['upper']:.3f}", "met" if r["met"] else "missed"]
             for r in figures["targets"]]  # fmt: skip
    lines += ["", markdown_table(["signal", "figure (cubes)", "target %", "measured %", "upper bound %", ""], trows),
              "", f"Timings per {t['slice']} slice at 1 000 e⁻/px:", "", markdown_table(
                  ["what", "seconds", "speed-up (network)", "speed-up (heightfield + network)"],
                  [["surrogate network", t["surrogate_s"], "", ""], ["heightfield", t["heightfield_s"], "", ""],
                   [f"teacher on {t['teacher_device']}", t["teacher_device_s"], f"{t['speedup_teacher_device']:.3g}",
                    f"{t['speedup_teacher_device_with_heightfield']:.3g}"],
                   [f"teacher on this CPU ({t['teacher_cpu_rows_timed']} rows timed)", t["teacher_cpu_s"],
                    f"{t['speedup_teacher_cpu']:.3g}", f"{t['speedup_teacher_cpu_with_heightfield']:.3g}"],
                   ["teacher, shipped 2-core CPU figure", t["teacher_cpu_shipped_s"],
                    f"{t['speedup_teacher_cpu_shipped']:.3g}",
                    f"{t['speedup_teacher_cpu_shipped_with_heightfield']:.3g}"]]), ""]  # fmt: skip
    text = "\n".join(lines)
    (out / "retrain.md").write_text(text + "\n")
    (out / "retrain.json").write_text(json.dumps(_finite(figures), indent=1) + "\n")
    return text


def _finite(value: Any) -> Any:
    """NaN/inf as JSON null."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def plan(settings: Settings, rate: float, measure: bool) -> None:
    """Print the projected seconds of each step at a bulk-carbon teacher speed ``rate`` (the sizing arithmetic)."""
    factors = measure_factors(settings) if measure else dict(CPU_POROUS_FACTOR)
    train_rate, eval_rate = rate * factors["train"], rate * factors["cubes"]
    budget, pixels = 60 * settings.minutes, settings.size**2
    evaluation = eval_spec(settings, "cpu")
    eval_s = evaluation.held_out_slices * pixels * settings.eval_electrons / eval_rate
    slices = (settings.train_geometries + settings.train_held_out) * settings.train_cuts
    eval_done = min(settings.eval_by * budget, STARTUP_SECONDS + eval_s)  # this process compiles the kernel first
    window = settings.data_by * budget - eval_done - STARTUP_SECONDS  # the workers compile it again
    electrons = settings.train_electrons or auto_electrons(settings, eval_rate, window, factors)
    train_s = slices * pixels * electrons / train_rate
    print(
        f"bulk {rate:.3g} traj/s → training mix {train_rate:.3g} traj/s (×{factors['train']:.3f}), cubes "
        f"{eval_rate:.3g} traj/s (×{factors['cubes']:.3f}); start-up allowances {STARTUP_SECONDS:.0f} s each"
    )
    print(markdown_table(["step", "work", "projected s", "deadline s"], [
        ["evaluation set", f"{evaluation.held_out_slices} × {settings.size}² × {settings.eval_electrons} e⁻/px "
         f"({settings.eval_replicas} replicas)", eval_s, settings.eval_by * budget],
        ["training set", f"{slices} × {settings.size}² × {electrons} e⁻/px", train_s, settings.data_by * budget],
        ["training", f"{settings.layout}, batch {settings.batch}, crop {settings.crop}",
         (settings.train_by - settings.data_by) * budget, settings.train_by * budget],
        ["evaluation + timings", "", (1 - settings.train_by) * budget, budget]]))  # fmt: skip


def measure_factors(settings: Settings, rows: int = 2, electrons: int = 20) -> dict[str, float]:
    """This CPU's teacher speed on the first 24 training geometries and the eval cubes over its bulk-carbon speed."""
    from napari_sparse_sem.runtime import run_job
    from napari_sparse_sem.surrogate.dataset import plan_geometries
    from napari_sparse_sem.surrogate.geometry import generate
    from napari_sparse_sem.surrogate.montecarlo import MCConfig, bulk_run, simulate_slice

    bulk = bulk_run(MCConfig(), electrons=100_000)["trajectories_per_second"]
    factors = {}
    for name, spec in zip(
        ("train", "cubes"), (training_spec(settings, "cpu"), eval_spec(settings, "cpu")), strict=True
    ):
        spec = spec.replace(mc=spec.mc.replace(electrons_per_pixel=electrons), replicas=1)
        chosen = [g for split, _, g in plan_geometries(spec) if (split == "held-out") == (name == "cubes")][:24]
        m, s, seconds = spec.margin, spec.size, 0.0
        for geometry in chosen:
            started = time.perf_counter()
            run_job(simulate_slice(generate(geometry), spec.cut_planes()[0], spec.mc, region=(m, m + rows, m, m + s)))
            seconds += time.perf_counter() - started
        factors[name] = len(chosen) * rows * s * electrons / seconds / bulk
    print(f"measured on this CPU: bulk {bulk:.3g} traj/s, factors {factors}")
    return factors


def run(settings: Settings, out: Path, work: Path, device: str, teacher: str, command: str) -> dict[str, Any]:
    """The whole pipeline; returns the figures written to ``out``."""
    from napari_sparse_sem.nn.weights import update_card
    from napari_sparse_sem.runtime import run_job
    from napari_sparse_sem.surrogate.evaluate import evaluate_job
    from napari_sparse_sem.surrogate.model import load_surrogate

    clock = Clock(settings.minutes)
    work.mkdir(parents=True, exist_ok=True)
    out.mkdir(parents=True, exist_ok=True)
    data = make_data(settings, work, teacher, clock)
    weights = work / "surrogate_carbon.safetensors"  # its checkpoint (~75 MB with Adam's moments) stays in work
    training = train(settings, work / "train.zarr", weights, device, clock, command)
    clock.log("evaluating on the held-out set")
    surrogate = load_surrogate(weights, device=device)
    evaluation = run_job(evaluate_job(surrogate, work / "eval.zarr", mc_rows=0))
    clock.log("timing the surrogate and the teacher")
    timing = timings(weights, work / "eval.zarr", device, teacher, settings)
    targets = target_rows(evaluation["records"])
    figures = {"date": today(), "machine": machine(), "command": command, "device": device,
               "teacher_device": teacher, "settings": dataclasses.asdict(settings), "data": data, "training": training,
               "evaluation": evaluation, "timings": timing, "targets": targets,
               "wall_seconds": round(clock.now(), 1)}  # fmt: skip
    cubes = {f"{r['signal']}_{k}": r[k] for r in evaluation["records"] if r["geometry"] == "cubes"
             for k in ("mean_error_pct", "noise_pct", "systematic_error_pct", "systematic_rms_pct",
                       "systematic_rms_upper_pct", "ssim", "psnr")}  # fmt: skip
    update_card(weights, command=command, hardware=machine(), device=device, metrics=_finite({"held_out_cubes": cubes}),
                data={"training_set": f"{data['training']['command']} ({data['training']['rate']['slices']} slices "
                      f"finished)", "evaluation_set": f"{data['evaluation']['command']} "
                      f"({data['evaluation']['rate']['slices']} slices finished)",
                      "script": "benchmarks/surrogate_gpu_retrain.py", "training_spec": data["training"]["spec"]},
                evaluation=_finite({"targets": targets, "timings": timing}))  # fmt: skip
    for name in ("surrogate_carbon.safetensors", "surrogate_carbon.json", "surrogate_carbon.curves.png",
                 "surrogate_carbon.curves.json"):  # fmt: skip
        shutil.copy2(work / name, out / name)
    text = write_report(out, figures)
    print(text)
    clock.log(f"wrote {out}")
    return figures


def _store(name: str, spec: Any, path: Path, clock: Clock, by: float, workers: int) -> dict[str, Any]:
    clock.log(f"{name} set: {cli_line(spec, path.name, workers)}")
    summary = make_store(spec, path, clock, by, name, workers)
    planned = spec.training_slices + spec.held_out_slices
    return summary | {"planned": planned, "electrons": spec.mc.electrons_per_pixel, "rate": store_rate(path),
                      "spec": spec.to_dict(), "command": cli_line(spec, path.name, workers)}  # fmt: skip


def make_data(settings: Settings, work: Path, teacher: str, clock: Clock) -> dict[str, Any]:
    """The evaluation set (in this process: GPU-bound at thousands of e⁻/px), then the training set (``workers``
    processes) at the electrons per pixel that fit its deadline at the teacher speed the evaluation set measured."""
    from napari_sparse_sem.surrogate.dataset import DatasetSpec

    evaluation = eval_spec(settings, teacher)
    data = {"evaluation": _store("evaluation", evaluation, work / "eval.zarr", clock, settings.eval_by, 1)}
    train_path, electrons = work / "train.zarr", settings.train_electrons
    workers = settings.workers or default_workers(teacher)
    if train_path.exists():  # a rerun resumes the store with its own electrons per pixel
        import zarr

        electrons = DatasetSpec.from_dict(
            zarr.open_group(str(train_path), mode="r").attrs["spec"]
        ).mc.electrons_per_pixel
    elif electrons <= 0:
        window = clock.left_until(settings.data_by) - (STARTUP_SECONDS if workers > 1 else 0.0)
        electrons = auto_electrons(settings, data["evaluation"]["rate"]["trajectories_per_second"], window)
        clock.log(f"training set at {electrons} e⁻/px: what {window:.0f} s allow at the measured teacher speed")
    spec = training_spec(settings, teacher, electrons)
    data["training"] = _store("training", spec, train_path, clock, settings.data_by, workers)
    for name in ("evaluation", "training"):
        if data[name]["rate"]["slices"] == 0:
            raise SystemExit(f"no {name} slice finished within its deadline: give more --minutes or fewer electrons")
    return data


def auto_electrons(settings: Settings, cube_rate: float, window_s: float, factors: dict | None = None) -> int:
    """Training electrons per pixel whose Monte Carlo fills 80 % of ``window_s`` at ``cube_rate`` (traj/s on the
    evaluation cubes), scaled to the training mix by the CPU's ratio of the two; between 4 and 1 000."""
    factors = factors or CPU_POROUS_FACTOR
    rate = cube_rate * factors["train"] / factors["cubes"]
    slices = settings.train_geometries * settings.train_cuts + settings.train_held_out * settings.train_cuts
    if not (math.isfinite(rate) and rate > 0 and window_s > 0):
        return 4
    return int(min(1000, max(4, 0.8 * window_s * rate / (slices * settings.size**2))))


def default_workers(teacher: str) -> int:
    """Processes that make the slices: one on the CPU (the teacher uses every core), several beside a GPU teacher,
    whose slices otherwise wait for each one's serial host work (cell grid ~0.34 s single-threaded per 128² slice
    of the retrain mix here, heightfield, writes)."""
    if teacher == "cpu":
        return 1
    from napari_sparse_sem.threads import usable_cores

    return max(1, min(8, usable_cores() - 2))


def _refuse_package_weights(out: Path) -> None:
    from importlib.resources import files

    package = Path(str(files("napari_sparse_sem"))).resolve()
    if out.resolve() == package or package in out.resolve().parents:
        raise SystemExit(f"--out {out} lies inside the package ({package}): write elsewhere and copy after review")


HELP = {
    "minutes": "wall-time budget of the whole run (default 8); the steps end at fixed fractions of it",
    "train_electrons": "electrons per pixel of the training slices (default 0: what the time left allows at the "
    "teacher speed the evaluation set measured)",
    "workers": "processes that make the training slices (default 0: 1 on the CPU, up to 8 beside a GPU)",
}
"""The settings shown in ``--help`` (every field of :class:`Settings` is a flag, e.g. ``--eval-electrons``)."""


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, help="folder for the weights, card, retrain.md and retrain.json")
    parser.add_argument("--work", type=Path, help="folder for the zarr stores (default: OUT-work beside OUT)")
    parser.add_argument("--device", default="auto", help="training/surrogate device: auto, cpu or cuda")
    parser.add_argument("--teacher-device", default=None, help="Monte Carlo device (default: --device)")
    parser.add_argument("--tiny", action="store_true", help="the CPU proof: a few 32² slices, a few iterations")
    parser.add_argument("--overwrite", action="store_true", help="replace weights already in OUT")
    parser.add_argument("--plan", action="store_true", help="print the sizing arithmetic and stop")
    parser.add_argument("--measure", action="store_true", help="with --plan: measure the porous factors here")
    parser.add_argument("--rate", type=float, default=5e7, help="with --plan: bulk-carbon teacher traj/s")
    for field in dataclasses.fields(Settings):
        kind = float if field.type in ("float", float) else int
        parser.add_argument(f"--{field.name.replace('_', '-')}", type=kind, default=None,
                            help=argparse.SUPPRESS if field.name not in HELP else HELP[field.name])  # fmt: skip
    args = parser.parse_args(argv)
    settings = Settings.tiny() if args.tiny else Settings()
    overrides = {f.name: getattr(args, f.name) for f in dataclasses.fields(Settings)}
    settings = dataclasses.replace(settings, **{k: v for k, v in overrides.items() if v is not None})
    if args.plan:
        plan(settings, args.rate, args.measure)
        return None
    if args.out is None:
        parser.error("--out is required")
    from napari_sparse_sem.runtime import pick_device

    _refuse_package_weights(args.out)
    if (args.out / "surrogate_carbon.safetensors").exists() and not args.overwrite:
        parser.error(f"{args.out / 'surrogate_carbon.safetensors'} exists: pass --overwrite or another --out")
    device = pick_device(args.device)
    teacher = args.teacher_device or device.split(":")[0]
    work = args.work or args.out.with_name(args.out.name + "-work")
    command = "python -m benchmarks.surrogate_gpu_retrain " + shlex.join(sys.argv[1:] if argv is None else argv)
    return run(settings, args.out, work, device, teacher, command)


if __name__ == "__main__":
    main()
