"""Adapters by name: entry points in the group ``uqbench.adapters``, loaded lazily.

In-tree adapters register exactly as a third-party package does, in its
``pyproject.toml``::

    [project.entry-points."uqbench.adapters"]
    my-method = "my_package.adapters:MyAdapter"

Nothing is imported until an adapter is selected. An adapter class may declare
``requires = ("tensorflow_probability", ...)`` (module names) and ``install_hint``; those
are checked with ``importlib.util.find_spec`` so a missing optional dependency is
reported without importing anything heavy.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from typing import Any

from uqbench.errors import AdapterUnavailableError, UserError
from uqbench.interface import TASKS

GROUP = "uqbench.adapters"


@dataclass(frozen=True)
class AdapterInfo:
    """What `uqbench list` shows for one adapter."""

    name: str
    target: str  # "module:Class"
    available: bool
    tasks: tuple[str, ...] = ()
    summary: str = ""
    reason: str = ""  # why it is unavailable


@cache
def _entry_points() -> dict[str, EntryPoint]:
    found: dict[str, EntryPoint] = {}
    for ep in entry_points(group=GROUP):
        # The first registration of a name wins; duplicates are reported by `uqbench list`.
        found.setdefault(ep.name, ep)
    return found


def adapter_names() -> list[str]:
    """Names of every registered adapter, available or not, sorted."""
    return sorted(_entry_points())


def _missing_requirements(cls: type) -> list[str]:
    return [m for m in getattr(cls, "requires", ()) if importlib.util.find_spec(m) is None]


def _validate_class(name: str, cls: Any) -> None:
    """Check the adapter contract at load time; name the adapter and what is wrong."""
    if not isinstance(cls, type):
        raise AdapterUnavailableError(f"adapter {name!r}: entry point is not a class ({cls!r})")
    for method in ("fit", "sample_predictive"):
        if not callable(getattr(cls, method, None)):
            raise AdapterUnavailableError(f"adapter {name!r}: {cls.__name__} has no {method}()")
    tasks = getattr(cls, "tasks", None)
    if not tasks or not set(tasks) <= set(TASKS):
        raise AdapterUnavailableError(
            f"adapter {name!r}: {cls.__name__}.tasks must be a non-empty subset of {TASKS}, "
            f"got {tasks!r}"
        )


def load_adapter_class(name: str) -> type:
    """Import and validate the adapter class registered as ``name``.

    Raises
    ------
    UserError
        Unknown name (lists the known ones).
    AdapterUnavailableError
        Missing optional dependency (with the install hint) or a broken adapter module.
    """
    eps = _entry_points()
    if name not in eps:
        known = ", ".join(sorted(eps)) or "none"
        raise UserError(f"unknown adapter {name!r}; known adapters: {known}")
    try:
        cls = eps[name].load()
    except ImportError as exc:
        raise AdapterUnavailableError(
            f"adapter {name!r} could not be imported ({eps[name].value}): {exc}"
        ) from exc
    except Exception as exc:  # a broken plugin must not take the whole tool down
        raise AdapterUnavailableError(
            f"adapter {name!r} is broken ({eps[name].value}): {type(exc).__name__}: {exc}"
        ) from exc
    _validate_class(name, cls)
    missing = _missing_requirements(cls)
    if missing:
        hint = getattr(cls, "install_hint", "")
        raise AdapterUnavailableError(
            f"adapter {name!r} needs {', '.join(missing)}" + (f"; {hint}" if hint else "")
        )
    return cls


def make_adapter(name: str, **params: Any) -> Any:
    """Instantiate adapter ``name`` with keyword hyperparameters."""
    cls = load_adapter_class(name)
    try:
        return cls(**params)
    except TypeError as exc:
        raise UserError(f"adapter {name!r}: bad hyperparameters {params}: {exc}") from exc


def adapter_info(name: str) -> AdapterInfo:
    """Load ``name`` if possible and describe it; never raises for a broken adapter."""
    ep = _entry_points()[name]
    try:
        cls = load_adapter_class(name)
    except AdapterUnavailableError as exc:
        return AdapterInfo(name, ep.value, False, reason=str(exc))
    doc = (cls.__doc__ or "").strip().splitlines()
    return AdapterInfo(name, ep.value, True, tuple(sorted(cls.tasks)), doc[0] if doc else "")


def available_adapters() -> list[str]:
    """Names of adapters that load, sorted."""
    return [name for name in adapter_names() if adapter_info(name).available]

