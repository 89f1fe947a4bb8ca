"""Several deep image priors fitted at once (issue #19): a batch of slices, one network each, on one GPU.

With ``DIPConfig.batch`` = B > 1 the slices to do are cut into B contiguous runs and handed over interleaved
(:func:`interleaved_groups`: group k holds the k-th slice of every run), and the B networks — network j belongs to run
j and starts from the network of the previous slice of its own run — are fitted together as one grouped network
(:func:`~napari_sparse_sem.nn.skipnet.grouped_forward`: every convolution grouped, batch normalisation per network).

Every network keeps what a fit of its own (``batch = 1``) has: its own initial weights and input (the seed's, as every
cold start), input-noise stream, held-out pixels, Adam moments and step count (Adam is elementwise, so one update of
the stacked parameters with per-network bias corrections is B Adam updates), float16 loss scale, stopping rule, output
average and best output. A network that has stopped is frozen — its weights, optimiser state and noise stream no
longer change and its image is kept — while the others go on; the round ends when every network has stopped. When
half of the networks still in the batch have stopped, the batch is compacted to the ones still fitting, so a long cold
fit does not drag finished networks along. B fits together therefore give what B separate fits give, up to float
rounding: the grouped convolutions sum in another order (tests/recon/test_dip_batch.py measures how close).

Warm-up fits (``warmup_slices``) of cold networks run as rounds before the group's main round, aligned so every
network's last warm-up comes just before its own slice. Tiled fits (``tile`` > 0 on slices larger than the tile) are
not batched: such runs go slice by slice as with ``batch = 1``.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Generator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from napari_sparse_sem.recon.base import FitPreview, SlabInput, SliceResult, check_slab
from napari_sparse_sem.runtime import Progress

if TYPE_CHECKING:
    from napari_sparse_sem.recon.dip import DeepImagePrior, DIPConfig

__all__ = ["FitTask", "NetworkBatch", "fit_group", "interleaved_groups"]

BETA1, BETA2, EPS = 0.9, 0.999, 1e-8  # torch.optim.Adam's defaults, as the one-network fit uses them
SCALE_INIT, SCALE_GROWTH_INTERVAL = 2.0**16, 2000  # torch.amp.GradScaler's defaults (per network here)


def interleaved_groups(slices: list[int], batch: int) -> list[list[int]]:
    """``slices`` cut into ``batch`` contiguous runs (the longer runs first), handed over interleaved: group k is
    ``[run_0[k], run_1[k], ...]``, so position j of every group continues run j."""
    if not slices:
        return []
    runs = [[int(z) for z in run] for run in np.array_split(np.asarray(slices), min(batch, len(slices)))]
    return [[run[k] for run in runs if k < len(run)] for k in range(len(runs[0]))]


@dataclass
class FitTask:
    """One network's fit in a round: ``values``/``known`` are the (2 * radius + 1, y, x) targets and scanned masks;
    ``slot`` is the slice's index in its group (a preview's ``z``)."""

    network: int
    values: np.ndarray
    known: np.ndarray
    warmup: bool = False
    slot: int = 0


@dataclass
class _Run:
    """Host-side record of one task during a round."""

    task: FitTask
    cap: int
    warm: bool
    started: float
    done: bool = False
    iteration: int = 0
    best_error: float = np.inf
    best_iteration: int = 0
    losses: list[float] = field(default_factory=list)
    held_out: list[tuple[int, float]] = field(default_factory=list)
    image: np.ndarray | None = None
    entry: dict[str, Any] = field(default_factory=dict)


@dataclass
class _Round:
    """The working state of a round: ``work`` maps rows of the working tensors to ``runs``; ``state`` holds the
    optimiser rows of those networks, ``data`` their targets; ``smooth``/``best`` the (averaged) and best outputs;
    ``pending`` the per-iteration losses not yet fetched from the device."""

    runs: list[_Run]
    work: list[int]
    data: dict[str, Any]
    state: dict[str, Any]
    smooth: Any = None
    best: Any = None
    noise: Any = None
    pending: list[Any] = field(default_factory=list)
    live_cache: tuple[tuple[bool, ...], Any] = ((), None)

    def run(self, row: int) -> _Run:
        return self.runs[self.work[row]]

    def live_rows(self) -> list[int]:
        """Rows whose network is still fitting."""
        return [row for row, i in enumerate(self.work) if not self.runs[i].done]

    def live_mask(self, device: str) -> Any:
        """The same as a boolean device tensor (rebuilt only when it changes, so no transfer every iteration)."""
        import torch

        live = tuple(not self.runs[i].done for i in self.work)
        if live != self.live_cache[0]:
            self.live_cache = (live, torch.tensor(live, device=device))
        return self.live_cache[1]


class NetworkBatch:
    """The state of up to ``size`` DIP networks with one architecture (``config``; ``radius`` slices on each side of
    the centre as extra output channels, as dip3d), kept stacked: all parameters of network j are row j of ``flat``
    (``(size, P)``), with its Adam moments in ``exp_avg``/``exp_avg_sq`` and its step count in ``steps``."""

    def __init__(self, config: DIPConfig, radius: int, device: str, name: str, amp_dtype: Any = None) -> None:
        import torch

        from napari_sparse_sem.nn.skipnet import SkipNet

        cfg = self.config = config
        self.radius, self.device, self.name, self.amp_dtype = radius, device, name, amp_dtype
        self.width = 2 * radius + 1
        in_channels = cfg.input_channels + (cfg.guide != "none")
        # The weights every cold start begins from, and the state of the noise stream after them: what a fit of its
        # own gets from torch.manual_seed(seed) (the global generator is left as it was).
        with torch.random.fork_rng(devices=[]):
            torch.random.default_generator.manual_seed(cfg.seed)  # the CPU part of torch.manual_seed(seed)
            self.template = SkipNet(in_channels, self.width, cfg.levels, cfg.channels, cfg.skip_channels)
            self._noise_state = torch.get_rng_state()
        if cfg.residual:  # zero head: sigmoid(0) = 0.5, so the fit starts exactly at the guide
            torch.nn.init.zeros_(self.template.head.weight)
            torch.nn.init.zeros_(self.template.head.bias)
        named = list(self.template.named_parameters())
        self.names = [name for name, _ in named]
        self.shapes = [tuple(p.shape) for _, p in named]
        self.sizes = [p.numel() for _, p in named]
        self.offsets = dict(zip(self.names, np.cumsum([0, *self.sizes[:-1]]).tolist(), strict=True))
        self.init = torch.cat([p.detach().reshape(-1) for _, p in named]).to(device)
        self.cuda = device.startswith("cuda")
        self.channels_last = self.cuda and amp_dtype is not None
        self.size = 0
        zeros = torch.zeros((0, self.init.numel()), device=device)
        self.flat, self.exp_avg, self.exp_avg_sq = zeros, zeros.clone(), zeros.clone()
        self.steps = torch.zeros(0, dtype=torch.float64, device=device)
        self.scale = torch.zeros(0, device=device)
        self.growth = torch.zeros(0, dtype=torch.int64, device=device)
        self.ready: list[bool] = []
        self.generators: list[Any] = []
        self.slices_done: list[int] = []
        self.shape: tuple[int, int] | None = None
        self.base_input = None
        self._loss_fn, self._adam_fn = self._forward_loss, _adam_step
        if cfg.compile:
            self._loss_fn, self._adam_fn = torch.compile(self._forward_loss), torch.compile(_adam_step)

    # --- per-network state ---------------------------------------------------------------------------------------
    def _grow(self, size: int) -> None:
        """Room for ``size`` networks (new rows are not set up)."""
        import torch

        extra = size - self.size
        if extra <= 0:
            return

        def more(tensor: Any, *shape: int) -> Any:
            return torch.cat([tensor, torch.zeros((extra, *shape), dtype=tensor.dtype, device=self.device)])

        width = self.init.numel()
        self.flat, self.exp_avg, self.exp_avg_sq = (more(t, width) for t in (self.flat, self.exp_avg, self.exp_avg_sq))
        self.steps, self.scale, self.growth = more(self.steps), more(self.scale), more(self.growth)
        self.ready += [False] * extra
        self.generators += [None] * extra
        self.slices_done += [0] * extra
        self.size = size

    def cold(self, network: int, shape: tuple[int, int]) -> bool:
        """Whether network ``network``'s next fit starts from scratch (as ``DeepImagePrior._cold`` for one)."""
        return network >= self.size or not self.ready[network] or not self.config.warm_start or shape != self.shape

    def _reshape(self, shape: tuple[int, int]) -> None:
        """A new slice size: every network starts cold, with the seed's input of that size."""
        import torch

        cfg = self.config
        generator = torch.Generator().manual_seed(cfg.seed)
        noise = torch.rand((1, cfg.input_channels, *shape), generator=generator) * cfg.input_scale
        self.base_input = noise.to(self.device)
        self.shape = shape
        self.ready = [False] * self.size

    def _setup(self, network: int) -> None:
        """Network ``network`` back to the seed's weights, a fresh optimiser and the seed's noise stream."""
        import torch

        self.flat[network] = self.init
        self.exp_avg[network] = 0.0
        self.exp_avg_sq[network] = 0.0
        self.steps[network] = 0.0
        self.scale[network] = SCALE_INIT
        self.growth[network] = 0
        if self.cuda:  # a fit of its own draws from the CUDA generator that torch.manual_seed(seed) seeded
            generator = torch.Generator(device=self.device).manual_seed(self.config.seed)
        else:
            generator = torch.Generator()
            generator.set_state(self._noise_state)
        self.generators[network] = generator
        self.ready[network] = True

    def _shift_head(self, network: int) -> None:
        """dip3d, next slice: the head's output rows (and their Adam moments) move down by one slice."""
        for name in ("head.weight", "head.bias"):
            start = self.offsets[name]
            stop = start + self.sizes[self.names.index(name)]
            for tensor in (self.flat, self.exp_avg, self.exp_avg_sq):
                rows = tensor[network, start:stop].view(self.width, -1)
                rows[:-1] = rows[1:].clone()

    def _take(self, networks: list[int]) -> dict[str, Any]:
        """The optimiser state of ``networks`` as working tensors (their parameters a leaf that takes gradients)."""
        import torch

        index = torch.tensor(networks, device=self.device)
        state = {key: getattr(self, key)[index] for key in ("exp_avg", "exp_avg_sq", "steps", "scale", "growth")}
        state["flat"] = self.flat[index].requires_grad_(True)
        state["index"] = index
        return state

    def _put(self, state: dict[str, Any]) -> None:
        """Write working state back into the rows it came from."""
        index = state["index"]
        for key in ("flat", "exp_avg", "exp_avg_sq", "steps", "scale", "growth"):
            getattr(self, key)[index] = state[key].detach()

    # --- the fit -------------------------------------------------------------------------------------------------
    def _forward_loss(self, flat: Any, x: Any, target: Any, fit_w: Any, n_fit: Any, guide: Any) -> tuple[Any, Any]:
        """Outputs ``(n, width, y, x)`` of the ``n`` networks whose parameters are the rows of ``flat`` and their
        masked losses ``(n,)``."""
        import torch

        from napari_sparse_sem.nn.skipnet import grouped_forward

        count = flat.shape[0]
        pieces = flat.split(self.sizes, dim=1)
        weights = {
            name: piece.reshape(count, *shape)
            for name, piece, shape in zip(self.names, pieces, self.shapes, strict=True)
        }
        device_type = self.device.split(":")[0]
        with torch.autocast(device_type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            raw = grouped_forward(self.template, weights, x, self.channels_last)
        raw = raw.float()
        output = (guide + (raw - 0.5)).clamp(0.0, 1.0) if self.config.residual else raw
        loss = ((output - target) ** 2 * fit_w).sum(dim=(1, 2, 3)) / n_fit
        return loss, output

    def _task_tensors(self, runs: list[_Run]) -> dict[str, Any]:
        """Targets, loss and held-out weights (and guides) of the round's tasks, stacked; held-out pixels drawn from
        each network's own count of fits, as a fit of its own draws them."""
        import torch

        from napari_sparse_sem.recon.dip import guide_image, holdout_pixels

        cfg, mid = self.config, self.radius
        targets, fits, holds, guides = [], [], [], []
        for run in runs:
            values, known = run.task.values, run.task.known
            holdout = holdout_pixels(cfg, known, mid, self.slices_done[run.task.network])
            fit = known & ~holdout
            targets.append(values)
            fits.append(fit)
            holds.append(holdout[mid : mid + 1])
            if cfg.guide != "none":
                guides.append(guide_image(cfg, values[mid], fit[mid])[None])

        def stack(arrays: list[np.ndarray]) -> Any:
            return torch.from_numpy(np.ascontiguousarray(np.stack(arrays), dtype=np.float32)).to(self.device)

        data = {"target": stack(targets), "fit": stack(fits), "hold": stack(holds)}
        data["n_fit"] = data["fit"].sum(dim=(1, 2, 3)).clamp_min(1.0)
        data["n_hold"] = data["hold"].sum(dim=(1, 2, 3)).clamp_min(1.0)
        data["guide"] = stack(guides) if guides else None
        return data

    def fit_job(self, tasks: list[FitTask]) -> Generator[Progress, None, list[_Run]]:
        """Fit every task's network to its targets together until each has stopped (held-out rule or its iteration
        cap); yields a progress step per iteration (a :class:`FitPreview` of the first network still fitting every
        ``preview_every``) and returns each task's finished :class:`_Run` (``image``, ``entry``) in task order."""
        shape = tuple(tasks[0].values.shape[1:])
        if any(tuple(task.values.shape[1:]) != shape for task in tasks):
            raise ValueError("the slices of a batch must have the same size")
        self._grow(max(task.network for task in tasks) + 1)
        if shape != self.shape:
            self._reshape(shape)
        started = time.perf_counter()
        runs = []
        for task in tasks:
            cold = self.cold(task.network, shape)
            if cold:
                self._setup(task.network)
            elif self.radius:
                self._shift_head(task.network)
            cap = self.config.iterations_first if cold else self.config.iterations_warm
            runs.append(_Run(task, cap, not cold, started))
        batch = _Round(runs, list(range(len(runs))), self._task_tensors(runs), self._take([t.network for t in tasks]))
        what = f"{self.name}{' warm-up on neighbours' if tasks[0].warmup else ''}"
        iteration = 0
        try:
            while batch.live_rows():
                iteration += 1
                self._step(batch)
                preview, stopping = self._checks(batch, iteration)
                rows = batch.live_rows()
                for row in stopping:
                    self._finish(batch, row, iteration)
                message = f"{what}: iteration {iteration}, {len(rows) - len(stopping)} of {len(runs)} networks fitting"
                yield Progress(iteration, max(batch.run(row).cap for row in rows), message, preview)
                still = batch.live_rows()
                if still and len(still) <= len(batch.work) // 2:  # compact: drop the stopped networks
                    self._compact(batch, still)
        finally:  # also when the job is closed early: the networks keep their state so far
            self._put(batch.state)
        return runs

    def _step(self, batch: _Round) -> None:
        """One iteration of every network still fitting: input noise, forward, masked loss, backward, Adam; the
        frozen rows keep their state and outputs."""
        import torch

        cfg, mid = self.config, self.radius
        live = batch.live_mask(self.device)
        data, state = batch.data, batch.state
        count = len(batch.work)
        net_input = self.base_input.expand(count, -1, -1, -1)
        if cfg.noise_reg > 0:  # each network draws from its own stream, frozen ones draw nothing
            if batch.noise is None:
                batch.noise = torch.empty((count, *self.base_input.shape[1:]), device=self.device)
            for row in batch.live_rows():
                batch.noise[row].normal_(generator=self.generators[batch.run(row).task.network])
            net_input = self.base_input + cfg.noise_reg * batch.noise[:count]
        if data["guide"] is not None:
            net_input = torch.cat([net_input, data["guide"]], dim=1)
        scaled = self.amp_dtype == torch.float16
        with self._conv_flags():
            loss, output = self._loss_fn(
                state["flat"], net_input, data["target"], data["fit"], data["n_fit"], data["guide"]
            )
            state["flat"].grad = None
            ((loss * state["scale"]).sum() if scaled else loss.sum()).backward()
        with torch.no_grad():
            moments = (state[key] for key in ("exp_avg", "exp_avg_sq", "steps", "scale", "growth"))
            self._adam_fn(state["flat"], state["flat"].grad, *moments, live, cfg.lr, scaled)
            batch.pending.append(loss.detach())
            centre = output.detach()[:, mid : mid + 1]
            if batch.smooth is None:
                batch.smooth = centre
            else:
                new = cfg.ema * batch.smooth + (1 - cfg.ema) * centre if cfg.ema > 0 else centre
                batch.smooth = torch.where(live[:, None, None, None], new, batch.smooth)

    def _checks(self, batch: _Round, iteration: int) -> tuple[FitPreview | None, list[int]]:
        """After an iteration: fetch the losses, check the held-out error where due (keeping each network's best
        output), make the preview; return it and the rows that stop now (held-out rule or their cap)."""
        import torch

        cfg, mid = self.config, self.radius
        rows = batch.live_rows()
        capped = [row for row in rows if iteration == batch.run(row).cap]
        due = [row for row in rows if iteration % cfg.check_every == 0 or row in capped]
        previewing = bool(cfg.preview_every) and (iteration % cfg.preview_every == 0 or bool(capped))
        if due or previewing:  # one transfer for the losses since the last check
            fetched = torch.stack(batch.pending).cpu().numpy()
            batch.pending.clear()
            for row in rows:
                batch.run(row).losses += fetched[:, row].tolist()
        stopping: list[int] = []
        if cfg.stopping == "holdout" and due:
            data = batch.data
            with torch.no_grad():
                errors = ((batch.smooth - data["target"][:, mid : mid + 1]) ** 2 * data["hold"]).sum(dim=(1, 2, 3))
                errors = (errors / data["n_hold"]).cpu().numpy()
            improved = []
            for row in due:
                run, error = batch.run(row), float(errors[row])
                run.held_out.append((iteration, error))
                if error < run.best_error:
                    run.best_error, run.best_iteration = error, iteration
                    improved.append(row)
                elif iteration - run.best_iteration >= cfg.patience:
                    stopping.append(row)
            if improved:
                chosen = torch.zeros(len(batch.work), dtype=torch.bool, device=self.device)
                chosen[improved] = True
                smooth = batch.smooth
                batch.best = (
                    smooth if batch.best is None else torch.where(chosen[:, None, None, None], smooth, batch.best)
                )
        stopping += [row for row in capped if row not in stopping]
        preview = None
        if previewing:
            shown = batch.run(rows[0])
            image = batch.smooth[rows[0], 0].float().cpu().numpy()
            losses, held_out = list(shown.losses), list(shown.held_out)
            preview = FitPreview(image, iteration, shown.cap, losses, held_out, shown.task.warmup, z=shown.task.slot)
        return preview, stopping

    def _compact(self, batch: _Round, keep: list[int]) -> None:
        """Only rows ``keep`` stay in the batch (the others are written back, frozen)."""
        import torch

        self._put(batch.state)
        index = torch.tensor(keep, device=self.device)
        batch.work = [batch.work[row] for row in keep]
        batch.state = self._take([batch.runs[i].task.network for i in batch.work])
        batch.data = {key: None if value is None else value[index] for key, value in batch.data.items()}
        batch.smooth = batch.smooth[index]
        batch.best = None if batch.best is None else batch.best[index]
        batch.live_cache = ((), None)

    @contextlib.contextmanager
    def _conv_flags(self) -> Generator[None, None, None]:
        """On CUDA, cuDNN times its kernels once per shape and keeps the fastest (our shapes stay fixed for hundreds
        of iterations); the previous setting is restored after the step, so nothing global stays changed."""
        import torch

        if not self.cuda:
            yield
            return
        previous = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = True
        try:
            yield
        finally:
            torch.backends.cudnn.benchmark = previous

    def _finish(self, batch: _Round, row: int, iteration: int) -> None:
        """The network of ``row`` stopped at ``iteration``: keep its image (the best by held-out error, or the last
        output) with the scanned pixels set back to their values, and its history entry; it is frozen from now on."""
        cfg, mid = self.config, self.radius
        run = batch.run(row)
        use_best = cfg.stopping == "holdout" and np.isfinite(run.best_error) and batch.best is not None
        final = batch.best[row] if use_best else batch.smooth[row]
        image = np.clip(final[0].float().cpu().numpy(), 0.0, 1.0)
        values, known = run.task.values, run.task.known
        image[known[mid]] = values[mid][known[mid]]
        run.image, run.done, run.iteration = image.astype(np.float32), True, iteration
        run.entry = {
            "iterations": iteration,
            "best_iteration": run.best_iteration if cfg.stopping == "holdout" else iteration,
            "seconds": time.perf_counter() - run.started,
            "warm": run.warm,
            "warmup": run.task.warmup,
            "loss_curve": run.losses,
            "holdout_curve": run.held_out,
            "network": run.task.network,
        }
        self.slices_done[run.task.network] += 1


def _adam_step(
    flat: Any,
    grad: Any,
    exp_avg: Any,
    exp_avg_sq: Any,
    steps: Any,
    scale: Any,
    growth: Any,
    live: Any,
    lr: float,
    scaled: bool,
) -> None:
    """One Adam step (torch.optim.Adam's single-tensor arithmetic) on every row of ``flat`` whose ``live`` flag is
    set, with each row's own step count, in place. ``scaled``: float16 gradients are unscaled per row, and a row with
    non-finite gradients skips its step and halves its loss scale (torch.amp.GradScaler's rule, per network)."""
    import torch

    if scaled:
        grad = grad * scale.double().reciprocal().float()[:, None]
        finite = torch.isfinite(grad).all(dim=1)
        step = live & finite
        grown = torch.where(finite, growth + 1, torch.zeros_like(growth))
        full = grown >= SCALE_GROWTH_INTERVAL
        factor = torch.where(finite, torch.where(full, 2.0, 1.0), 0.5)
        scale.copy_(torch.where(live, scale * factor, scale))
        growth.copy_(torch.where(live, torch.where(full, 0, grown), growth))
        grad = torch.where(step[:, None], grad, 0.0)
    else:
        step = live
    rows = step[:, None]
    steps.add_(step.double())
    exp_avg.copy_(torch.where(rows, exp_avg.lerp(grad, 1 - BETA1), exp_avg))
    exp_avg_sq.copy_(torch.where(rows, (exp_avg_sq * BETA2).addcmul_(grad, grad, value=1 - BETA2), exp_avg_sq))
    count = steps.clamp_min(1.0)
    step_size = (lr / (1 - BETA1**count)).float()[:, None]
    correction2 = (1 - BETA2**count).sqrt().float()[:, None]
    denom = (exp_avg_sq.sqrt() / correction2).add_(EPS)
    flat.copy_(torch.where(rows, flat + (-step_size) * exp_avg / denom, flat))


def fit_group(method: DeepImagePrior, slabs: list[SlabInput]) -> Generator[Progress, None, list[SliceResult]]:
    """``DeepImagePrior.reconstruct_batch_job`` for ``batch`` > 1: network j fits slab j of the group (warm-started
    from the slice it fitted in the previous group); cold networks first fit up to ``warmup_slices`` preceding slices
    of their slab, in rounds aligned so each network's last warm-up comes just before its own slice."""
    cfg = method.config
    checked = []
    for values, known, center in slabs:
        values, known = check_slab(values, known, center)
        if not known[center].any():
            raise ValueError("the slice has no scanned pixels; check the mask")
        checked.append((values, known, center))
    if method.batch_fitter is None:
        method.batch_fitter = NetworkBatch(cfg, method.radius, method.device, method.name, method.autocast_dtype())
    fitter = method.batch_fitter
    plans: list[list[int]] = []
    for network, (values, known, center) in enumerate(checked):
        plan = []
        if cfg.warmup_slices and fitter.cold(network, tuple(values.shape[1:])):
            plan = [k for k in range(max(0, center - cfg.warmup_slices), center) if known[k].any()]
        plans.append(plan)
    rounds = max(len(plan) for plan in plans)
    warmup_iterations = [0] * len(checked)
    for r in range(rounds):
        tasks = []
        for network, (plan, (values, known, _)) in enumerate(zip(plans, checked, strict=True)):
            if r >= rounds - len(plan):
                targets, masks = method._slab_targets(values, known, plan[r - (rounds - len(plan))])
                tasks.append(FitTask(network, targets, masks, warmup=True, slot=network))
        for run in (yield from fitter.fit_job(tasks)):
            warmup_iterations[run.task.network] += run.iteration
            method.history.append(run.entry)
    tasks = []
    for network, (values, known, center) in enumerate(checked):
        targets, masks = method._slab_targets(values, known, center)
        tasks.append(FitTask(network, targets, masks, slot=network))
    results: list[SliceResult] = []
    for run in (yield from fitter.fit_job(tasks)):
        method.history.append(run.entry)
        info = {
            "iterations": run.entry["iterations"],
            "best_iteration": run.entry["best_iteration"],
            "warm": run.warm,
            "warmup_iterations": warmup_iterations[run.task.network],
        }
        results.append((run.image, info))
    return results
