"""The Reconstructor protocol and the method registry.

A reconstructor fills the unscanned pixels of one slice. It sees a *slab*: the sparse values and masks of the target
slice and ``context`` neighbours on each side (``context = 0`` for purely 2D methods), so 3D methods and warm-started
networks share one driver (:mod:`napari_sparse_sem.recon.volume`). Methods register themselves by name; later issues add
``dip`` and ``gan`` the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

from napari_sparse_sem.runtime import Progress


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

    Subclasses set ``name`` and ``context`` and implement :meth:`reconstruct_slice`. Methods with inner iterations
    (networks) override :meth:`reconstruct_slice_job` to yield progress and previews while they work. One instance
    serves one volume run, slices in increasing order, so it may keep state (warm start) between slices.
    """

    name: ClassVar[str] = ""
    context: ClassVar[int] = 0
    description: ClassVar[str] = ""

    def __init__(self, device: str = "cpu", **options: Any) -> None:
        if options:
            raise TypeError(f"method {self.name!r} takes no options {sorted(options)}")
        self.device = device

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


_REGISTRY: dict[str, type[Reconstructor]] = {}


def register(cls: type[Reconstructor]) -> type[Reconstructor]:
    """Class decorator: make ``cls`` available under ``cls.name``."""
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} needs a non-empty name")
    _REGISTRY[cls.name] = cls
    return cls


def _load_builtin_methods() -> None:
    # Importing the modules runs their @register decorators.
    from napari_sparse_sem.recon import dip, gan, interp, interp3d  # noqa: F401


def available_methods() -> list[str]:
    """Names of all registered methods, in registration order."""
    _load_builtin_methods()
    return list(_REGISTRY)


def method_class(name: str) -> type[Reconstructor]:
    """The class registered as ``name``; unknown names get an error listing the choices."""
    _load_builtin_methods()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown reconstruction method {name!r}; choose one of {list(_REGISTRY)}") from None


def create(name: str, device: str = "cpu", **options: Any) -> Reconstructor:
    """Instantiate the method ``name`` for ``device`` with method-specific ``options``."""
    return method_class(name)(device=device, **options)


MethodFactory = Callable[..., Reconstructor]
