"""The registry of reconstruction methods, filled through the entry point group ``napari_sparse_sem.methods``.

Design rule 9: a method declares its name, context, description, flags and options spec on its class
(:class:`~napari_sparse_sem.recon.base.Reconstructor`) and registers through an entry point; the faces list methods
and build their flags and forms from this registry, never from a list of names. The built-in methods are registered
the same way, in this package's ``pyproject.toml``::

    [project.entry-points."napari_sparse_sem.methods"]
    classical = "napari_sparse_sem.recon.interp"          # a module: its @register classes
    mean-fill = "my_package.methods:MeanFill"               # a class: registered under its ``name``

Entry points are read lazily, the first time a method is looked up. Ours come first, then the others by name; a module
contributes its methods in the order it registers them. An entry point that fails to load (missing module, an error on
import, not a method class, a name already taken) gives a ``UserWarning`` naming it and is skipped: a broken plugin
never takes the built-in methods down with it. :func:`refresh_methods` reads entry points installed since.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import types
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from napari_sparse_sem.recon.base import Reconstructor

ENTRY_POINT_GROUP = "napari_sparse_sem.methods"
"""The entry point group methods register in (``name = "module"`` or ``name = "module:Class"``)."""

_PACKAGE = "napari_sparse_sem"
_BUILTIN_MODULES = (
    "napari_sparse_sem.recon.interp",
    "napari_sparse_sem.recon.interp3d",
    "napari_sparse_sem.recon.dip",
    "napari_sparse_sem.recon.gan",
    "napari_sparse_sem.recon.self_method",
)
"""Read only when this package's metadata is missing (running from a source tree that was never installed)."""

_REGISTRY: dict[str, type[Reconstructor]] = {}
_ORDER: list[str] = []  # method names in entry point order
_LOADED: set[tuple[str, str]] = set()  # (name, value) of entry points read


def register(cls: type[Reconstructor]) -> type[Reconstructor]:
    """Class decorator: make ``cls`` available under ``cls.name`` (a module entry point's classes use it).

    A name that another class already holds is an error; registering the same class again is not.
    """
    if not cls.name:
        raise ValueError(f"{cls.__qualname__} needs a non-empty name")
    held = _REGISTRY.get(cls.name)
    if held is not None and held is not cls and _ident(held) != _ident(cls):
        raise ValueError(f"method name {cls.name!r} is taken by {_ident(held)}; {_ident(cls)} cannot register it")
    _REGISTRY[cls.name] = cls
    return cls


def _ident(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def _entry_points() -> list[importlib.metadata.EntryPoint]:
    """This group's entry points: ours first, then the others by name."""
    found = list(importlib.metadata.entry_points(group=ENTRY_POINT_GROUP))
    return sorted(found, key=lambda ep: (not ep.value.startswith(_PACKAGE + "."), ep.name, ep.value))


def _load(ep: importlib.metadata.EntryPoint) -> list[str]:
    """Load one entry point and return the names of the methods it provides (raises on any problem)."""
    from napari_sparse_sem.recon.base import Reconstructor

    obj = ep.load()
    if isinstance(obj, types.ModuleType):
        names = [name for name, cls in _REGISTRY.items() if cls.__module__ == obj.__name__]
        if not names:
            raise ValueError(f"module {obj.__name__} registers no method (decorate its classes with @register)")
        return names
    if inspect.isclass(obj) and issubclass(obj, Reconstructor):
        register(obj)
        return [obj.name]
    raise TypeError(f"{ep.value} is neither a module nor a Reconstructor subclass")


def _load_module(module: str) -> list[str]:
    importlib.import_module(module)
    return [name for name, cls in _REGISTRY.items() if cls.__module__ == module]


def refresh_methods() -> None:
    """Read the entry points not read yet (e.g. a plugin installed while napari runs)."""
    points = _entry_points()
    if not any(ep.value.startswith(_PACKAGE + ".") for ep in points) and not _LOADED:
        for module in _BUILTIN_MODULES:  # not installed: the built-ins straight from the source tree
            _extend(_load_module(module))
        _LOADED.add(("", "builtins"))
    for ep in points:
        key = (ep.name, ep.value)
        if key in _LOADED:
            continue
        _LOADED.add(key)
        try:
            names = _load(ep)
        except Exception as err:  # a broken plugin must not break the other methods
            dist = getattr(ep.dist, "name", None) or "an unknown distribution"
            warnings.warn(
                f"reconstruction method entry point {ep.name!r} = {ep.value!r} (from {dist}) could not be loaded and "
                f"is skipped: {type(err).__name__}: {err}",
                UserWarning,
                stacklevel=3,
            )
            continue
        _extend(names)


def _extend(names: list[str]) -> None:
    _ORDER.extend(name for name in names if name not in _ORDER)


def _ensure_loaded() -> None:
    if not _LOADED:
        refresh_methods()


def available_methods() -> list[str]:
    """Names of all registered methods: in entry point order, then any registered by other imports."""
    _ensure_loaded()
    return [name for name in _ORDER if name in _REGISTRY] + [name for name in _REGISTRY if name not in _ORDER]


def method_class(name: str) -> type[Reconstructor]:
    """The class registered as ``name``; unknown names get an error listing the choices."""
    _ensure_loaded()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ValueError(f"unknown reconstruction method {name!r}; choose one of {available_methods()}") from None


def create(name: str, device: str = "cpu", **options: Any) -> Reconstructor:
    """Instantiate the method ``name`` for ``device`` with its options (checked against its options spec)."""
    return method_class(name).from_options(options, device=device)


def check_options(name: str, options: Mapping[str, Any]) -> None:
    """Refuse options that method ``name`` does not take or values its spec rejects, before any work starts."""
    method_class(name).parse_options(options)


def methods_with(**flags: Any) -> list[str]:
    """Names of the methods whose class attributes equal ``flags``, e.g. ``methods_with(iterative=True)`` or
    ``methods_with(needs_weights=True)``; an unknown attribute is an error."""
    from napari_sparse_sem.recon.base import Reconstructor

    unknown = sorted(flag for flag in flags if not hasattr(Reconstructor, flag))
    if unknown:
        raise ValueError(f"unknown method attribute(s) {unknown}")
    names = available_methods()
    return [n for n in names if all(getattr(_REGISTRY[n], k) == v for k, v in flags.items())]
