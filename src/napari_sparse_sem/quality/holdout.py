"""Quality without ground truth: k-fold hold-out of the scanned pixels, corrected to estimate the unscanned PSNR.

The scanned pixels are the only truth a real sparse scan has. :func:`holdout_job` splits the image plane into small
square blocks, deals the blocks into ``folds`` groups, and for every fold reconstructs the requested slices from the
scanned pixels *outside* that fold's blocks, then scores the reconstruction on the scanned pixels inside them. The same
(y, x) positions are held out in every slice the method reads, so a 3D method (or a stack scanned with one fixed mask)
never sees a held-out pixel through a neighbouring slice.

Held-out pixels are nearer to scanned ones than a typical unscanned pixel is (a point held out along a scan line has
scanned neighbours 1 px away; the pixels between two spiral arms do not), so the raw hold-out PSNR flatters a method.
The corrected figure reweights the errors by the distance to the nearest remaining scanned pixel: the squared errors
are binned by that distance (log-spaced bins), every slice's unscanned pixels are counted in the same bins by their
distance to all scanned pixels, and the mean squared error is the unscanned-weighted mean of the bin means. Bins
without enough held-out pixels are interpolated in log-distance; below the nearest and beyond the farthest populated
bin the curve follows the image's own structure function (the mean squared difference of scanned pixel pairs at that
distance), scaled to meet the held-out curve. The blocks' side is half the 95th percentile of the unscanned
distances: far bins get sampled while the holes stay small (bigger holes make an interpolator's triangles bigger than
an unscanned pixel's and bias the estimate low; measured with benchmarks/holdout.py). Methods with 3D context measure
distance in the slab they read (up to ±2 slices). Noisy scanned values are scored as they are, so with shot noise the
estimate also counts the noise of the held-out values.

Expensive methods can score an evenly spaced subset of the slices (``max_slices``); the result says which.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from napari_sparse_sem.runtime import Job, Progress, run_job

__all__ = ["HoldoutResult", "holdout_job", "holdout_quality", "spread_slices"]

DEFAULT_FOLDS = 5
_EDGES = np.concatenate([[0.0], np.geomspace(1.2, 4096.0, 36)])  # distance bins (px); d >= 1 for every counted pixel
_MIN_COUNT = 16  # held-out pixels a bin needs before its own mean counts
_MAX_PAIR_PX = 64.0  # the structure function is measured up to this distance
_MAX_3D = 2  # slices on each side used for 3D distances (a method's context beyond that adds little)


@dataclass
class HoldoutResult:
    """A hold-out quality estimate: ``psnr`` (corrected, dB: the estimated PSNR on the unscanned pixels), ``psnr_raw``
    (on the held-out scanned pixels), both means over the scored slices; ``per_slice`` rows
    ``{"slice", "psnr_holdout", "psnr_holdout_raw", "heldout"}``; the ``folds``, the ``slices`` scored, the block
    side ``block`` in pixels and a ``note`` (e.g. that only some slices were scored)."""

    psnr: float
    psnr_raw: float
    per_slice: list[dict[str, Any]]
    folds: int
    slices: list[int]
    block: int
    method: str
    note: str = ""
    curve: list[tuple[float, float, int]] = field(default_factory=list)  # (distance px, MSE, held-out count) per bin

    def by_slice(self) -> dict[int, float]:
        """Corrected PSNR per scored slice index."""
        return {int(r["slice"]): float(r["psnr_holdout"]) for r in self.per_slice}

    def to_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "psnr_holdout": self.psnr,
            "psnr_holdout_raw": self.psnr_raw,
            "folds": self.folds,
            "block_px": self.block,
            "slices": list(self.slices),
            "note": self.note,
            "per_slice": list(self.per_slice),
        }


def spread_slices(slices: list[int], max_slices: int | None) -> list[int]:
    """At most ``max_slices`` of ``slices``, evenly spaced (all of them when ``None`` or enough)."""
    if max_slices is None or len(slices) <= max_slices:
        return list(slices)
    if max_slices < 1:
        raise ValueError(f"max_slices must be >= 1, got {max_slices}")
    picks = np.unique(np.round(np.linspace(0, len(slices) - 1, int(max_slices))).astype(int))
    return [slices[i] for i in picks]


def _psnr(mse: float) -> float:
    if not np.isfinite(mse):
        return float("nan")
    return float("inf") if mse <= 0 else float(-10.0 * np.log10(mse))


def _distances(mask: np.ndarray, centre: int, depth: int) -> np.ndarray:
    """Distance (px) of every pixel of slice ``centre`` to the nearest scanned pixel, in 2D or over ±``depth``
    slices of ``mask`` (z spacing 1 px)."""
    from scipy.ndimage import distance_transform_edt

    z0, z1 = max(0, centre - depth), min(mask.shape[0], centre + depth + 1)
    slab = mask[z0:z1]
    if not slab.any():
        return np.full(mask.shape[1:], np.inf)
    if depth <= 0:
        return distance_transform_edt(~mask[centre])
    return distance_transform_edt(~slab)[centre - z0]


def _bin(d: np.ndarray) -> np.ndarray:
    return np.clip(np.searchsorted(_EDGES, d, side="right") - 1, 0, len(_EDGES) - 2)


def _variogram(values: np.ndarray, known: np.ndarray, rmax: float) -> tuple[np.ndarray, np.ndarray]:
    """Sums and counts per distance bin of the squared differences of scanned pixel pairs within a slice (up to
    ``rmax`` px): the image's own structure function, the shape of the error curve below the held-out distances."""
    from scipy.spatial import cKDTree

    nbins = len(_EDGES) - 1
    sums, counts = np.zeros(nbins), np.zeros(nbins, dtype=np.int64)
    for z in range(known.shape[0]):
        pts = np.argwhere(known[z])
        if len(pts) < 2:
            continue
        pairs = cKDTree(pts).query_pairs(rmax, output_type="ndarray")
        if len(pairs) > 200_000:
            pairs = pairs[np.random.default_rng(z).choice(len(pairs), 200_000, replace=False)]
        if not len(pairs):
            continue
        a, b = pts[pairs[:, 0]], pts[pairs[:, 1]]
        d = np.hypot(*(a - b).T)
        diff = (values[z][tuple(a.T)] - values[z][tuple(b.T)]).astype(np.float64) ** 2
        bins = _bin(d)
        sums += np.bincount(bins, weights=diff, minlength=nbins)
        counts += np.bincount(bins, minlength=nbins)
    return sums, counts


def _curve(sums: np.ndarray, counts: np.ndarray, shape: tuple[np.ndarray, np.ndarray] | None = None) -> np.ndarray:
    """MSE per distance bin: the bin's own mean where it has enough pixels, interpolated (log-log) between them;
    below the nearest and beyond the farthest populated bin it follows ``shape`` (variogram sums and counts: the
    image's own structure function), or without one MSE ∝ distance below and the last bins' log-log slope (clipped
    to [0, 2]) beyond."""
    centres = np.log(np.sqrt(np.maximum(_EDGES[:-1], 0.6) * _EDGES[1:]))
    good = counts >= _MIN_COUNT
    if not good.any():
        good = counts > 0
    if not good.any():
        return np.full(len(counts), np.nan)
    mse = np.where(good, sums / np.maximum(counts, 1), np.nan)
    x, y = centres[good], np.log(np.maximum(mse[good], 1e-12))
    out = np.interp(centres, x, y)
    slope = 0.0
    if len(x) >= 2:
        tail = slice(max(0, len(x) - 3), len(x))
        slope = float(np.clip(np.polyfit(x[tail], y[tail], 1)[0], 0.0, 2.0))
    shape_log = None
    if shape is not None and (shape[1] >= _MIN_COUNT).any():
        vs, vc = shape
        vg = vc >= _MIN_COUNT
        vx, vy = centres[vg], np.log(np.maximum(vs[vg] / vc[vg], 1e-12))
        shape_log = np.interp(centres, vx, vy)
        low = centres < vx[0]
        shape_log[low] = vy[0] + (centres[low] - vx[0])
    b0, b1 = int(np.flatnonzero(good)[0]), int(np.flatnonzero(good)[-1])
    below, beyond = centres < x[0], centres > x[-1]
    if shape_log is None:
        out[below] = y[0] + (centres[below] - x[0])
        out[beyond] = y[-1] + slope * (centres[beyond] - x[-1])
    else:
        out[below] = y[0] + shape_log[below] - shape_log[b0]
        out[beyond] = y[-1] + shape_log[beyond] - shape_log[b1]
    return np.exp(out)


def _fold_map(shape: tuple[int, int], block: int, folds: int, rng: np.random.Generator) -> np.ndarray:
    """Fold index of every (y, x): square blocks of side ``block`` (random offset) dealt evenly into ``folds``."""
    oy, ox = (int(v) for v in rng.integers(0, block, size=2))
    by = (np.arange(shape[0]) + oy) // block
    bx = (np.arange(shape[1]) + ox) // block
    nby, nbx = int(by[-1]) + 1, int(bx[-1]) + 1
    labels = rng.permutation(nby * nbx) % folds
    return labels.reshape(nby, nbx)[by[:, None], bx[None, :]]


def _read_stack(sparse: Any, mask: Any, needed: list[int]) -> tuple[np.ndarray, np.ndarray]:
    values = np.stack([np.asarray(sparse[z], dtype=np.float32) for z in needed])
    known = np.stack([np.asarray(mask[z]).astype(bool) for z in needed])
    return values, known


def holdout_job(
    sparse: Any,
    mask: Any,
    method: str,
    *,
    options: dict[str, Any] | None = None,
    device: str = "cpu",
    slices: Iterable[int] | None = None,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    max_slices: int | None = None,
    block: int | None = None,
) -> Job[HoldoutResult]:
    """The hold-out estimate of ``method`` on a sparse scan, as a generator job (one event per fold and slice).

    ``sparse`` (floats in [0, 1], unscanned 0) and ``mask`` (bool) are (z, y, x) or (y, x) arrays (numpy, dask or
    zarr: only the slices the method reads are loaded). ``slices``: the slices to score (all by default), thinned to
    ``max_slices`` evenly spaced ones. ``folds`` >= 2; ``block``: the fold blocks' side in px (by default from the
    unscanned distances). Returns a :class:`HoldoutResult`.
    """
    from napari_sparse_sem.recon.base import create
    from napari_sparse_sem.recon.volume import reconstruct_volume

    if len(sparse.shape) == 2:
        sparse, mask = np.asarray(sparse)[None], np.asarray(mask)[None]
    if tuple(sparse.shape) != tuple(mask.shape) or len(sparse.shape) != 3:
        raise ValueError(f"sparse {tuple(sparse.shape)} and mask {tuple(mask.shape)} must be the same (z, y, x) shape")
    folds = int(folds)
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    nz = int(sparse.shape[0])
    requested = list(range(nz)) if slices is None else sorted({int(z) for z in slices})
    bad = [z for z in requested if not 0 <= z < nz]
    if bad or not requested:
        raise ValueError(f"slices {bad or requested} are not slices of a stack of {nz}")
    scored = spread_slices(requested, max_slices)
    probe = create(method, device="cpu", **(options or {}))
    context = max(0, int(probe.context))
    probe.close()
    needed = sorted({z for s in scored for z in range(max(0, s - context), min(nz, s + context + 1))})
    values, known = _read_stack(sparse, mask, needed)
    local = [needed.index(s) for s in scored]
    depth = min(context, _MAX_3D)

    # Distances of the unscanned pixels to all scanned ones: the histogram the estimate is reweighted to.
    unscanned_hist = []
    far = []
    for i in local:
        d = _distances(known, i, depth)[~known[i]]
        d = d[np.isfinite(d)]
        unscanned_hist.append(np.bincount(_bin(d), minlength=len(_EDGES) - 1))
        if d.size:
            far.append(np.quantile(d, 0.95))
    h, w = known.shape[1:]
    if block is None:
        block = int(np.clip(round(0.5 * max(far, default=2.0)), 1, max(2, min(h, w) // 3)))
    rng = np.random.default_rng(seed)
    folds_of = _fold_map((h, w), int(block), folds, rng)

    nbins = len(_EDGES) - 1
    sums, counts = np.zeros(nbins), np.zeros(nbins, dtype=np.int64)
    per = {s: {"err": [], "bins": []} for s in scored}
    total = folds * len(scored)
    for f in range(folds):
        hold = folds_of == f
        kept = known & ~hold[None]
        if not kept[local].reshape(len(local), -1).any(axis=1).all():
            raise ValueError(f"fold {f + 1} leaves a slice with no scanned pixels; use fewer folds or a smaller block")
        job = reconstruct_volume(
            np.where(kept, values, 0).astype(np.float32),
            kept,
            method,
            device=device,
            options=options,
            slices=local,
        )
        try:
            while True:
                try:
                    event = next(job)
                except StopIteration as stop:
                    recon = stop.value
                    break
                yield Progress(f * len(scored) + event.step, total, f"hold-out fold {f + 1}/{folds}: {event.message}")
        finally:
            job.close()
        for s, i in zip(scored, local, strict=True):
            target = known[i] & hold
            if not target.any():
                continue
            err = (np.asarray(recon[i], dtype=np.float64) - values[i])[target] ** 2
            bins = _bin(_distances(kept, i, depth)[target])
            per[s]["err"].append(err)
            per[s]["bins"].append(bins)
            sums += np.bincount(bins, weights=err, minlength=nbins)
            counts += np.bincount(bins, minlength=nbins)

    populated = np.flatnonzero(counts >= _MIN_COUNT)
    farthest = int(np.flatnonzero(np.sum(unscanned_hist, axis=0))[-1]) if np.sum(unscanned_hist) else 0
    shape = None
    if populated.size and (populated[0] > 0 or farthest > populated[-1]):  # bins to fill outside the held-out ones
        rmax = float(min(max(_EDGES[populated[0] + 1], _EDGES[farthest + 1]), _MAX_PAIR_PX))
        shape = _variogram(values[local[:4]], known[local[:4]], rmax)
    curve = _curve(sums, counts, shape)
    rows = []
    for s, hist in zip(scored, unscanned_hist, strict=True):
        if not per[s]["err"]:
            rows.append({"slice": s, "psnr_holdout": float("nan"), "psnr_holdout_raw": float("nan"), "heldout": 0})
            continue
        err = np.concatenate(per[s]["err"])
        bins = np.concatenate(per[s]["bins"])
        expected = float(np.sum(curve[bins]))
        scale = float(err.sum()) / expected if expected > 0 else 1.0  # this slice's error level vs the pooled curve
        estimate = scale * float(np.sum(hist * curve) / max(hist.sum(), 1))
        rows.append(
            {
                "slice": s,
                "psnr_holdout": _psnr(estimate) if hist.sum() else float("nan"),
                "psnr_holdout_raw": _psnr(float(err.mean())),
                "heldout": int(err.size),
            }
        )

    def mean(key: str) -> float:
        v = np.array([r[key] for r in rows], dtype=np.float64)
        v = v[np.isfinite(v)]
        return float(v.mean()) if v.size else float("nan")

    note = ""
    if len(scored) < len(requested):
        note = f"hold-out scored {len(scored)} of {len(requested)} slices (max_slices={max_slices})"
    centres = np.sqrt(np.maximum(_EDGES[:-1], 0.6) * _EDGES[1:])
    used = [(float(c), float(m), int(n)) for c, m, n in zip(centres, curve, counts, strict=True) if n]
    yield Progress(total, total, f"hold-out: {mean('psnr_holdout'):.2f} dB")
    return HoldoutResult(
        psnr=mean("psnr_holdout"),
        psnr_raw=mean("psnr_holdout_raw"),
        per_slice=rows,
        folds=folds,
        slices=scored,
        block=int(block),
        method=method,
        note=note,
        curve=used,
    )


def holdout_quality(
    sparse: Any,
    mask: Any,
    method: str,
    *,
    options: dict[str, Any] | None = None,
    device: str = "cpu",
    slices: Iterable[int] | None = None,
    folds: int = DEFAULT_FOLDS,
    seed: int = 0,
    max_slices: int | None = None,
    block: int | None = None,
) -> HoldoutResult:
    """:func:`holdout_job` run to the end (see there for the arguments)."""
    return run_job(
        holdout_job(
            sparse,
            mask,
            method,
            options=options,
            device=device,
            slices=slices,
            folds=folds,
            seed=seed,
            max_slices=max_slices,
            block=block,
        )
    )
