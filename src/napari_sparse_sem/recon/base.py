"""The Reconstructor protocol: what a reconstruction method declares and how it is built from its options.

A reconstructor fills the unscanned pixels of one slice. It sees a *slab*: the sparse values and masks of the target
slice and ``context`` neighbours on each side (``context = 0`` for purely 2D methods), so 3D methods and warm-started
networks share one driver (:mod:`napari_sparse_sem.recon.volume`).

Design rule 9: a method declares its ``name``, ``context``, ``description``, its options spec (``options``, a
:class:`~napari_sparse_sem.params.Spec`, or ``None`` for none) and flags the faces need (``iterative``, ``gpu``,
``needs_weights``/``weights_kind``) on its class, and registers through the entry point group
``napari_sparse_sem.methods`` (:mod:`napari_sparse_sem.recon.registry`, whose functions this module re-exports).
Options arrive as a plain dict (``--option KEY=VALUE``, a config file, a form) and are checked against the spec before
any work: an unknown option is an error naming the method and listing its options.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Generator, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from napari_sparse_sem.params import SCHEMA_KEY, Spec, fields_of
from napari_sparse_sem.recon.registry import (
    ENTRY_POINT_GROUP,
    available_methods,
    check_options,
    create,
    method_class,
    methods_with,
    refresh_methods,
    register,
)
from napari_sparse_sem.runtime import Progress

__all__ = [
    "ENTRY_POINT_GROUP",
    "FitPreview",
    "MethodFactory",
    "Reconstructor",
    "SlabInput",
    "SliceResult",
    "available_methods",
    "check_finite",
    "check_options",
    "check_slab",
    "create",
    "method_class",
    "methods_with",
    "refresh_methods",
    "register",
]


SlabInput = tuple[np.ndarray, np.ndarray, int]
"""One slice's input to a reconstructor: the (k, y, x) sparse values, the (k, y, x) mask and the centre index."""
SliceResult = tuple[np.ndarray, dict[str, Any]]
"""One slice's output: the (y, x) float32 image and its :meth:`Reconstructor.slice_info`."""


@dataclass
class FitPreview:
    """A look inside an iterative fit (``Progress.partial`` of a network method): the current estimate of the slice
    and the curves so far. The volume driver fills in ``z``; widgets draw ``image`` and plot the curves.

    ``loss`` holds the training loss per iteration; ``holdout`` (iteration, error) pairs of the stopping rule's
    held-out pixels (empty under a fixed iteration count); ``warmup`` marks a fit of a neighbouring slice made only to
    warm the network up.
    """

    image: np.ndarray
    iteration: int
    max_iterations: int
    loss: list[float] = field(default_factory=list)
    holdout: list[tuple[int, float]] = field(default_factory=list)
    warmup: bool = False
    z: int | None = None


class Reconstructor:
    """Base class for reconstruction methods.

    Subclasses set ``name``, ``context``, ``description`` and, when they take options, ``options`` (a ``Spec``
    dataclass whose fields are the options, each declared with :func:`~napari_sparse_sem.params.param`), and implement
    :meth:`reconstruct_slice`. The constructor checks the options and keeps them as ``self.settings`` (an instance of
    the spec, or ``None``); subclasses that override it call ``super().__init__(device, **options)`` first. Methods
    with inner iterations (networks) override :meth:`reconstruct_slice_job` to yield progress and previews while they
    work. One instance serves one volume run, slices in increasing order (or in the groups and order of
    :meth:`slice_groups`, for methods that do several slices at once), so it may keep state (warm start) between
    slices.

    Flags for the faces: ``iterative`` (fits each slice in a loop: slow, yields :class:`FitPreview` partials worth a
    live preview and a loss plot), ``gpu`` (much faster on a GPU: offer the device choice), ``needs_weights`` (loads a
    trained network from a ``weights`` option; ``weights_kind`` is the model card kind the file must hold),
    ``tile_halo`` (None: needs whole slices, e.g. a global interpolation; a number: a big slice may be cut into
    y/x tiles for block-wise runs, each read with this many extra pixels on every side).
    """

    name: ClassVar[str] = ""
    context: ClassVar[int] = 0
    description: ClassVar[str] = ""
    options: ClassVar[type[Spec] | None] = None
    iterative: ClassVar[bool] = False
    gpu: ClassVar[bool] = False
    needs_weights: ClassVar[bool] = False
    weights_kind: ClassVar[str] = ""
    tile_halo: ClassVar[int | None] = None

    def __init__(self, device: str = "cpu", **options: Any) -> None:
        self.settings: Any = self.parse_options(options)
        self.device = device

    @classmethod
    def option_names(cls) -> list[str]:
        """The names of the options this method takes, in declaration order (none without an options spec)."""
        return [] if cls.options is None else [view.name for view in fields_of(cls.options)]

    @classmethod
    def parse_options(cls, options: Mapping[str, Any] | Spec | None = None) -> Any:
        """The options as an instance of the method's spec (``None`` for a method without options), checked.

        Unknown names are an error naming the method and listing its options; values are checked for their kind
        (numbers, flags) and by the spec (bounds, choices, relations between fields).
        """
        if cls.options is not None and isinstance(options, cls.options):
            return options
        values = dict(options or {})
        if cls.options is None:
            if values:
                raise ValueError(f"method {cls.name!r} takes no options, got {sorted(values)}")
            return None
        allowed = cls.option_names()
        unknown = sorted(set(values) - set(allowed) - {SCHEMA_KEY})
        if unknown:
            raise ValueError(f"method {cls.name!r} has no option(s) {unknown}; its options are {allowed}")
        values = _typed_options(cls.name, cls.options, values)
        try:
            return cls.options.from_dict(values)
        except ValueError as err:
            raise ValueError(f"method {cls.name!r}: {err}") from None

    @classmethod
    def from_options(cls, options: Mapping[str, Any] | Spec | None = None, device: str = "cpu") -> Reconstructor:
        """An instance for ``device`` built from a dict of options (or an instance of the options spec)."""
        if isinstance(options, Spec):
            options = {view.name: getattr(options, view.name) for view in fields_of(options)}
        return cls(device=device, **dict(options or {}))

    def reconstruct_slice(self, sparse: np.ndarray, mask: np.ndarray, center: int) -> np.ndarray:
        """Return the (y, x) float32 reconstruction of slab slice ``center``.

        ``sparse`` and ``mask`` are (k, y, x) slabs (float32 values in [0, 1], unscanned pixels 0; boolean mask).
        """
        raise NotImplementedError

    def reconstruct_slice_job(
        self, sparse: np.ndarray, mask: np.ndarray, center: int
    ) -> Generator[Progress, None, np.ndarray]:
        """Generator form of :meth:`reconstruct_slice`; the default yields nothing and returns at once."""
        return self.reconstruct_slice(sparse, mask, center)
        yield  # pragma: no cover - makes this a generator

    def slice_groups(self, slices: list[int]) -> list[list[int]]:
        """How the volume driver hands ``slices`` over: one group per :meth:`reconstruct_batch_job` call, every slice
        in exactly one group. The default is one slice at a time in increasing order; a method that works on several
        slices at once (a batch of slices in one forward pass, several networks fitted together) returns bigger groups
        and may choose their order (e.g. interleaved runs of neighbouring slices, so each run keeps its warm start)."""
        return [[z] for z in slices]

    def reconstruct_batch_job(self, slabs: list[SlabInput]) -> Generator[Progress, None, list[SliceResult]]:
        """Reconstruct one group of :meth:`slice_groups`: ``slabs`` holds ``(sparse, mask, center)`` per slice, as
        :meth:`reconstruct_slice_job` takes them; returns ``(image, info)`` per slice in the same order, ``info`` being
        what :meth:`slice_info` says about that slice. The default does the slices one by one. A
        :class:`FitPreview` yielded here may set ``z`` to the slice's index in ``slabs``; the driver replaces it with
        the slice number."""
        results: list[SliceResult] = []
        for values, known, center in slabs:
            image = yield from self.reconstruct_slice_job(values, known, center)
            results.append((image, self.slice_info()))
        return results

    def prepare(self, sparse: Any, mask: Any, slices: list[int]) -> None:
        """Look at the whole run once before its first slice (the volume driver calls it): ``sparse`` and ``mask`` are
        the (z, y, x) inputs, possibly lazy (dask, zarr: read only the few slices needed), ``slices`` the slices to
        do. The default does nothing; the GAN checks here that its shipped weights fit the data (the domain guard)."""

    def slice_info(self) -> dict[str, Any]:
        """Facts about the slice just finished that belong in the results (e.g. ``iterations``); none by default."""
        return {}

    def close(self) -> None:
        """Release resources (GPU memory, threads) when a run ends or is cancelled."""


def check_slab(sparse: np.ndarray, mask: np.ndarray, center: int) -> tuple[np.ndarray, np.ndarray]:
    """Validate a (k, y, x) slab pair and slice index; return them as a float array and a boolean mask."""
    sparse = np.asarray(sparse)
    mask = np.asarray(mask, dtype=bool)
    if sparse.ndim != 3 or sparse.shape != mask.shape:
        raise ValueError(f"expected (k, y, x) slabs of the same shape, got {sparse.shape} and {mask.shape}")
    if not 0 <= center < sparse.shape[0]:
        raise ValueError(f"center {center} is outside the slab of {sparse.shape[0]} slices")
    return sparse, mask


def check_finite(image: np.ndarray, what: str) -> np.ndarray:
    """``image`` unchanged, or a ``ValueError`` when it holds NaN/infinity: a broken network (weights, options) must
    stop the run with a clear message instead of leaving zeros or NaN in a result that looks finished."""
    if not np.all(np.isfinite(image)):
        bad = int(np.size(image) - np.count_nonzero(np.isfinite(image)))
        raise ValueError(
            f"{what} has {bad} NaN/infinite pixels; its weights or options are broken (nothing of it was kept) — "
            "check them or choose another method"
        )
    return image


def _typed_options(method: str, spec: type[Spec], values: Mapping[str, Any]) -> dict[str, Any]:
    """``values`` with whole-number options as ``int`` (JSON may say ``2.0``); a value of the wrong kind for a number
    or flag option (``--option tile=big``) is a clear error instead of a failure deep inside the method."""
    out = dict(values)
    for view in fields_of(spec):
        if view.name not in out or out[view.name] is None:
            continue
        value, kind = out[view.name], view.base_type
        is_bool = isinstance(value, bool | np.bool_)
        if kind is bool:
            ok, what = is_bool, "true or false"
        elif kind is int:
            ok = not is_bool and (
                isinstance(value, numbers.Integral) or (isinstance(value, numbers.Real) and float(value).is_integer())
            )
            what = "a whole number"
            if ok:
                out[view.name] = int(value)
        elif kind is float:
            ok, what = isinstance(value, numbers.Real) and not is_bool, "a number"
        else:
            continue
        if not ok:
            raise ValueError(f"method {method!r} option {view.name} must be {what}, got {value!r}")
    return out


MethodFactory = Callable[..., Reconstructor]
