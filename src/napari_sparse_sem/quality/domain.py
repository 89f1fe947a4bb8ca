"""Does a stack look like the data shipped weights were trained on? Statistics of a sparse scan and the domain guard.

Shipped networks were trained on FlyEM FIB-SEM (10 nm isotropic voxels). Three facts are compared with the ``domain``
block of a weights file's model card:

* **Neighbour-slice similarity**, measured from the *sparse* scan itself (a user has no dense stack) as the
  *effective z-step in in-plane pixels* (:func:`neighbour_step`): the in-plane semivariogram γ(d) — half the mean
  squared difference of scanned pixels ``d`` px apart in one slice — is fitted to the differences between each
  scanned pixel and the nearest scanned pixel of the next slice (``d`` px away in-plane), modelled as γ(√(d² + s²)).
  ``s`` reads as "neighbouring slices differ like pixels ``s`` px apart in one slice": ≈ 1 on FlyEM, ≈ 5 when only
  every 5th slice is kept. It needs no fill and no dense data, and works for any pattern whose neighbouring slices
  have scanned pixels within a few px of each other (fixed masks, random, grids, spirals from ~5 %).
  Its small biases depend on the mask geometry, so the reference is measured the *same way at run time*: the packaged
  FlyEM crop (slices 120-151, inside the training range) sampled with the input's own masks
  (:func:`reference_step`). A table cannot cover every pattern × coverage × per-slice choice; this can.
* **Intensity statistics** of the scanned values (mean, std, percentiles, skewness) against the card's.
* **Voxel size and anisotropy** when known.

:func:`check_domain` turns these into a :class:`DomainCheck`: ``context_fits`` (False: use the 2D weights) and notes.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

__all__ = [
    "CONTEXT_STEP_MARGIN",
    "DomainCheck",
    "StackStatistics",
    "check_domain",
    "domain_block",
    "intensity_statistics",
    "neighbour_step",
    "reference_step",
    "stack_statistics",
]

CONTEXT_STEP_MARGIN = 1.0
"""The ±1-slice context is judged not to fit when the input's effective z-step exceeds the FlyEM reference's (same
masks) by more than this many pixels (measured: ``benchmarks/domain.py``, docs/methods/gan.md)."""
MIN_CROSS_PAIRS = 100
"""Fewer pairs of scanned pixels within :data:`CROSS_RADIUS` px across neighbouring slices: the step is not measured."""
CROSS_RADIUS = 10.0
_EDGES = np.array([0.5, 1.5, 2.5, 3.5, 5.0, 7.0, 10.0, 14.0, 20.0, 28.0, 40.0])
_MIN_BIN_PAIRS = 20
_MAX_POINTS = 4000
PERCENTILES = (1, 5, 50, 95, 99)


@dataclass
class StackStatistics:
    """Statistics of a (sparse) stack; see the module docstring. ``z_step_px`` is None when not measurable."""

    mean: float
    std: float
    percentiles: dict[str, float]
    skewness: float
    coverage: float
    z_step_px: float | None = None
    cross_pairs: int = 0
    slice_pairs: int = 0
    voxel_size_nm: tuple[float, float, float] | None = None

    @property
    def anisotropy(self) -> float | None:
        """z voxel size over the mean in-plane size (None when the voxel size is unknown)."""
        if self.voxel_size_nm is None:
            return None
        z, y, x = self.voxel_size_nm
        return float(z) / max((float(y) + float(x)) / 2.0, 1e-12)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (model cards, metadata)."""
        out = asdict(self)
        out["voxel_size_nm"] = None if self.voxel_size_nm is None else [float(v) for v in self.voxel_size_nm]
        out["anisotropy"] = self.anisotropy
        return out


@dataclass
class DomainCheck:
    """The guard's verdict: ``context_fits`` (None: not measured / not asked), the input's and the reference's
    effective z-steps, and ``notes`` (one sentence each) for the user."""

    context_fits: bool | None
    z_step_px: float | None = None
    reference_z_step_px: float | None = None
    notes: list[str] = field(default_factory=list)
    statistics: StackStatistics | None = None
    same_masks: bool = False

    @property
    def note(self) -> str | None:
        """All notes as one text (None when there is nothing to say)."""
        return " ".join(self.notes) if self.notes else None


def intensity_statistics(values: np.ndarray) -> dict[str, Any]:
    """Mean, std, percentiles (:data:`PERCENTILES`) and skewness of 1D float values (scanned pixels, [0, 1])."""
    values = np.asarray(values, dtype=np.float64).ravel()
    if values.size == 0:
        raise ValueError("no scanned values to measure")
    mean, std = float(values.mean()), float(values.std())
    skew = float(np.mean(((values - mean) / std) ** 3)) if std > 0 else 0.0
    pct = np.percentile(values, PERCENTILES)
    return {
        "mean": mean,
        "std": std,
        "percentiles": {str(p): float(v) for p, v in zip(PERCENTILES, pct, strict=True)},
        "skewness": skew,
    }


def _points(values: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    yx = np.argwhere(mask)
    if len(yx) > _MAX_POINTS:
        yx = yx[np.sort(rng.choice(len(yx), _MAX_POINTS, replace=False))]
    return yx.astype(np.float64), np.asarray(values, dtype=np.float64)[yx[:, 0], yx[:, 1]]


def _variogram_sums(yx: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from scipy.spatial import cKDTree

    bins = len(_EDGES) - 1
    if len(yx) < 2:
        return np.zeros(bins), np.zeros(bins), np.zeros(bins)
    pairs = cKDTree(yx).query_pairs(_EDGES[-1], output_type="ndarray")
    if len(pairs) == 0:
        return np.zeros(bins), np.zeros(bins), np.zeros(bins)
    dist = np.hypot(*(yx[pairs[:, 0]] - yx[pairs[:, 1]]).T)
    sq = (values[pairs[:, 0]] - values[pairs[:, 1]]) ** 2
    idx = np.digitize(dist, _EDGES) - 1
    ok = (idx >= 0) & (idx < bins)
    return (
        np.bincount(idx[ok], sq[ok], bins),
        np.bincount(idx[ok], None, bins).astype(float),
        np.bincount(idx[ok], dist[ok], bins),
    )


def neighbour_step(
    pairs: Iterable[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]], seed: int = 0
) -> tuple[float | None, int]:
    """The effective z-step in in-plane pixels of neighbouring slices, from their scanned pixels only.

    ``pairs``: ``(values_z, mask_z, values_z+1, mask_z+1)`` 2D arrays (values in [0, 1]). Returns ``(s, n)``: ``s``
    (None when fewer than :data:`MIN_CROSS_PAIRS` scanned pixels have a scanned pixel of the next slice within
    :data:`CROSS_RADIUS` px, or the in-plane variogram cannot be measured) and ``n``, the number of such pixels.
    ``s`` is capped at 40 px (neighbouring slices unrelated at any scale measured).
    """
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(seed)
    bins = len(_EDGES) - 1
    sums, counts, dists = np.zeros(bins), np.zeros(bins), np.zeros(bins)
    cross_d: list[np.ndarray] = []
    cross_sq: list[np.ndarray] = []
    for a, ma, b, mb in pairs:
        pa, pb = _points(a, ma, rng), _points(b, mb, rng)
        if len(pa[0]) == 0 or len(pb[0]) == 0:
            continue
        for yx, values in (pa, pb):
            s, n, d = _variogram_sums(yx, values)
            sums, counts, dists = sums + s, counts + n, dists + d
        dist, j = cKDTree(pb[0]).query(pa[0], distance_upper_bound=CROSS_RADIUS)
        near = np.isfinite(dist)
        cross_d.append(dist[near])
        cross_sq.append((pa[1][near] - pb[1][j[near]]) ** 2)
    d_all = np.concatenate(cross_d) if cross_d else np.zeros(0)
    n_cross = int(d_all.size)
    ok = counts >= _MIN_BIN_PAIRS
    if n_cross < MIN_CROSS_PAIRS or ok.sum() < 3:
        return None, n_cross
    gamma = np.maximum.accumulate(sums[ok] / counts[ok])  # a variogram grows with distance (noise smoothed out)
    at = np.r_[0.0, dists[ok] / counts[ok]]
    gamma = np.r_[0.0, gamma]
    target = float(np.concatenate(cross_sq).mean())

    def excess(step: float) -> float:
        return float(np.interp(np.hypot(d_all, step), at, gamma).mean()) - target

    lo, hi = 0.0, float(at[-1])
    if excess(hi) < 0:
        return hi, n_cross
    if excess(lo) >= 0:
        return 0.0, n_cross
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if excess(mid) < 0 else (lo, mid)
    return 0.5 * (lo + hi), n_cross


def _window(shape: Sequence[int], size: int) -> tuple[slice, slice]:
    """A centred window of at most ``size`` px per axis."""
    out = []
    for n in shape[-2:]:
        m = min(int(n), int(size))
        start = (int(n) - m) // 2
        out.append(slice(start, start + m))
    return out[0], out[1]


def _read(array: Any, z: int, window: tuple[slice, slice]) -> np.ndarray:
    try:
        return np.asarray(array[z, window[0], window[1]])
    except (TypeError, IndexError, ValueError):
        return np.asarray(array[z])[window]


def _pair_starts(nz: int, slices: Sequence[int] | None, count: int) -> list[int]:
    """Up to ``count`` slices ``z`` (with ``z + 1`` in the stack) spread over the requested slices."""
    candidates = sorted({int(z) for z in (range(nz) if slices is None else slices)})
    starts = [z if z + 1 < nz else z - 1 for z in candidates]
    starts = sorted({z for z in starts if 0 <= z and z + 1 < nz})
    if len(starts) <= count:
        return starts
    picks = np.linspace(0, len(starts) - 1, count).round().astype(int)
    return sorted({starts[i] for i in picks})


def read_pairs(
    sparse: Any, mask: Any, slices: Sequence[int] | None = None, count: int = 4, window: int = 512
) -> list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]:
    """A few neighbouring slice pairs of a (z, y, x) stack (numpy, dask, zarr: only these slices, only a centred
    ``window`` px square of them, are read), as ``(values_z, mask_z, values_z+1, mask_z+1)``."""
    shape = tuple(sparse.shape)
    if len(shape) != 3:
        return []
    box = _window(shape, window)
    out = []
    for z in _pair_starts(shape[0], slices, count):
        a, b = (_read(sparse, k, box).astype(np.float32) for k in (z, z + 1))
        ma, mb = (_read(mask, k, box).astype(bool) for k in (z, z + 1))
        out.append((a, ma, b, mb))
    return out


def stack_statistics(
    sparse: Any,
    mask: Any,
    slices: Sequence[int] | None = None,
    *,
    voxel_size_nm: Sequence[float] | None = None,
    count: int = 4,
    window: int = 512,
    pairs: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] | None = None,
) -> StackStatistics:
    """:class:`StackStatistics` of a sparse stack (values in [0, 1], unscanned 0; bool mask), from ``count``
    neighbouring slice pairs among ``slices`` (a 2D image gives intensity statistics only). A dense stack is a sparse
    one with every pixel scanned."""
    if pairs is None:
        pairs = read_pairs(sparse, mask, slices, count, window)
    if pairs:
        values = np.concatenate([p[0][p[1]] for p in pairs] + [p[2][p[3]] for p in pairs])
        coverage = float(np.mean([p[1].mean() for p in pairs] + [p[3].mean() for p in pairs]))
        step, n_cross = neighbour_step(pairs)
    else:
        box = _window(tuple(sparse.shape), window)
        if len(sparse.shape) == 3:
            z = int(next(iter(slices), 0)) if slices is not None else 0
            v, m = _read(sparse, z, box), _read(mask, z, box).astype(bool)
        else:
            v, m = np.asarray(sparse)[box], np.asarray(mask)[box].astype(bool)
        values, coverage, step, n_cross = v[m], float(m.mean()), None, 0
    stats = intensity_statistics(values)
    voxel = None if voxel_size_nm is None else tuple(float(v) for v in voxel_size_nm)
    return StackStatistics(
        **stats,
        coverage=coverage,
        z_step_px=step,
        cross_pairs=n_cross,
        slice_pairs=len(pairs),
        voxel_size_nm=voxel,  # type: ignore[arg-type]
    )


def _reference_crop() -> np.ndarray:
    """The packaged FlyEM crop (32 slices, z 120-151 of the training volume) as float32 [0, 1]."""
    global _CROP
    if _CROP is None:
        from napari_sparse_sem.io.sample_data import load_sample_volume
        from napari_sparse_sem.io.volume import to_float01

        _CROP = to_float01(np.asarray(load_sample_volume().data), "FlyEM sample")
    return _CROP


_CROP: np.ndarray | None = None


_REFERENCE_STEPS: dict[tuple[str, int], tuple[float | None, int]] = {}
"""Earlier :func:`reference_step` answers by (digest of the masks, seed): a stack reconstructed again with the same
masks (compare's methods, benchmarks, the widget's reruns) does not measure the crop again."""


def _masks_digest(masks: Sequence[tuple[np.ndarray, np.ndarray]]) -> str:
    digest = hashlib.blake2b(digest_size=16)
    for pair in masks:
        for m in pair:
            m = np.asarray(m, dtype=bool)
            digest.update(repr(m.shape).encode())
            digest.update(np.packbits(m).tobytes())
    return digest.hexdigest()


def reference_step(masks: Sequence[tuple[np.ndarray, np.ndarray]], seed: int = 0) -> tuple[float | None, int]:
    """:func:`neighbour_step` of the packaged FlyEM crop sampled with the given mask pairs ``(mask_z, mask_z+1)``
    (each cut to the crop's 250 x 250 px from its centre; pair ``i`` uses crop slices spread over the 32). Answers are
    kept per masks and seed for the life of the process (the measurement is deterministic)."""
    key = (_masks_digest(masks), int(seed))
    if key not in _REFERENCE_STEPS:
        if len(_REFERENCE_STEPS) >= 64:
            _REFERENCE_STEPS.pop(next(iter(_REFERENCE_STEPS)))
        _REFERENCE_STEPS[key] = _measure_reference_step(masks, seed)
    return _REFERENCE_STEPS[key]


def _measure_reference_step(masks: Sequence[tuple[np.ndarray, np.ndarray]], seed: int) -> tuple[float | None, int]:
    crop = _reference_crop()
    nz = crop.shape[0]
    pairs = []
    for i, (ma, mb) in enumerate(masks):
        box = _window(ma.shape, min(crop.shape[1:]))
        ma, mb = np.asarray(ma)[box], np.asarray(mb)[box]
        cbox = _window(crop.shape, min(ma.shape))
        z = round(i * (nz - 2) / max(len(masks) - 1, 1)) if len(masks) > 1 else nz // 2
        a, b = crop[z][cbox], crop[z + 1][cbox]
        pairs.append((a, ma[: a.shape[0], : a.shape[1]], b, mb[: b.shape[0], : b.shape[1]]))
    return neighbour_step(pairs, seed)


def _intensity_notes(stats: StackStatistics, ref: Mapping[str, Any], what: str) -> list[str]:
    notes = []
    mean, std, skew = float(ref["mean"]), float(ref["std"]), float(ref.get("skewness", 0.0))
    unlike = []
    if abs(stats.mean - mean) > std:
        unlike.append(f"mean {stats.mean:.2f} vs {mean:.2f}")
    if not 0.5 <= stats.std / max(std, 1e-9) <= 2.0:
        unlike.append(f"std {stats.std:.3f} vs {std:.3f}")
    if abs(skew) > 0.25 and abs(stats.skewness) > 0.25 and np.sign(skew) != np.sign(stats.skewness):
        unlike.append(f"skewness {stats.skewness:+.2f} vs {skew:+.2f} (inverted contrast?)")
    if unlike:
        notes.append(
            f"The scanned intensities are unlike the training data of the {what} ({', '.join(unlike)} on a 0-1 scale); "
            "results may suffer — check the contrast (dark/inverted) or train on your own data."
        )
    return notes


def _voxel_notes(stats: StackStatistics, ref: Mapping[str, Any], what: str) -> list[str]:
    ref_voxel = ref.get("voxel_size_nm")
    if stats.voxel_size_nm is None or not ref_voxel:
        return []
    _, y, x = stats.voxel_size_nm
    rz, ry, rx = (float(v) for v in ref_voxel)
    notes = []
    pixel, ref_pixel = (y + x) / 2, (ry + rx) / 2
    if not 0.5 <= pixel / ref_pixel <= 2.0:
        notes.append(
            f"The pixel size {pixel:g} nm is unlike that of the training data of the {what} ({ref_pixel:g} nm): "
            f"structures appear {ref_pixel / pixel:.2g}x their trained size."
        )
    anisotropy, ref_aniso = stats.anisotropy or 1.0, rz / max(ref_pixel, 1e-12)
    if anisotropy > 1.5 * ref_aniso:
        notes.append(
            f"The voxel size says slices are {anisotropy:.1f}x the pixel size apart (training data: {ref_aniso:.1f}x)."
        )
    return notes


def check_domain(
    sparse: Any,
    mask: Any,
    card: Mapping[str, Any],
    slices: Sequence[int] | None = None,
    *,
    context: int = 0,
    what: str = "weights",
    voxel_size_nm: Sequence[float] | None = None,
    count: int = 4,
) -> DomainCheck:
    """Compare a sparse stack with a model card's ``domain`` block (:func:`domain_block`).

    With ``context > 0`` the effective z-step of the input is measured and compared with the FlyEM reference under
    the same masks: ``context_fits`` is False when it exceeds it by more than :data:`CONTEXT_STEP_MARGIN` px, and
    when every slice has the same mask (``same_masks``: neighbours scan the same pixels, so they add little; the 2D
    weights measured 0.4-1.8 dB better then, on FlyEM too).
    Intensity statistics and voxel size only add notes. A card without a domain block gives an empty check.
    """
    ref = card.get("domain")
    if not isinstance(ref, Mapping):
        return DomainCheck(context_fits=None)
    pairs = read_pairs(sparse, mask, slices, count) if context > 0 else []
    stats = stack_statistics(
        sparse, mask, slices, voxel_size_nm=voxel_size_nm, pairs=pairs or None, count=count if context > 0 else 0
    )
    check = DomainCheck(context_fits=None, z_step_px=stats.z_step_px, statistics=stats)
    if context > 0 and pairs:
        ref_step, _ = reference_step([(p[1], p[3]) for p in pairs])
        check.reference_z_step_px = ref_step
        check.same_masks = all(np.array_equal(p[1], p[3]) for p in pairs)
        if check.same_masks:  # neighbours add no new pixels: the 2D weights do better even on FlyEM (measured)
            check.context_fits = False
        elif stats.z_step_px is None or ref_step is None:
            check.notes.append(
                f"Neighbouring slices could not be compared ({stats.cross_pairs} scanned pixels have a scanned pixel "
                f"within {CROSS_RADIUS:g} px in the next slice; {MIN_CROSS_PAIRS} needed), so the ±{context}-slice "
                "weights are used unchecked."
            )
        else:
            check.context_fits = stats.z_step_px - ref_step <= CONTEXT_STEP_MARGIN
    intensity = ref.get("intensity")
    if isinstance(intensity, Mapping):
        check.notes.extend(_intensity_notes(stats, intensity, what))
    check.notes.extend(_voxel_notes(stats, ref, what))
    return check


def domain_block(volume: np.ndarray, voxel_size_nm: Sequence[float], data: str, count: int = 20) -> dict[str, Any]:
    """The ``domain`` block of a model card for dense training data ``volume`` (z, y, x; float [0, 1])."""
    volume = np.asarray(volume, dtype=np.float32)
    stats = stack_statistics(volume, np.ones(volume.shape, dtype=bool), count=count, voxel_size_nm=voxel_size_nm)
    return {
        "data": data,
        "voxel_size_nm": [float(v) for v in voxel_size_nm],
        "intensity": intensity_statistics(volume[:: max(1, volume.shape[0] // 20)].ravel()),
        "z_step_px_dense": stats.z_step_px,
        "context_step_margin_px": CONTEXT_STEP_MARGIN,
        "reference": (
            "neighbour-slice statistic (napari_sparse_sem.quality.domain): measured at run time on the packaged "
            "FlyEM crop (z 120-151) sampled with the input's own masks"
        ),
    }
