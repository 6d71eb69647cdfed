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

import difflib
import importlib.util
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import cache
from importlib.metadata import EntryPoint, entry_points
from pathlib import Path
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
        raise UnknownAdapterError(name, sorted(eps))
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


class UnknownAdapterError(UserError):
    """No entry point of that name at all (a typo): one line naming the closest known name."""

    def __init__(self, name: str, known: list[str]) -> None:
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        super().__init__(f"unknown adapter {name!r}{hint}; known adapters: {', '.join(known) or 'none'}")


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


def adapter_provenance(name: str) -> dict[str, Any]:
    """Where adapter ``name`` comes from, without importing it.

    ``entry_point`` (``module:Class``), the installed ``distribution`` that registers it
    and its ``version`` (``importlib.metadata``; None for an entry point outside any
    distribution), and ``git_commit``: the VCS commit pip recorded (``direct_url.json``)
    or, for a local or editable install, the commit of the git checkout holding the
    source (None when it cannot be known).
    """
    ep = _entry_points()[name]
    dist = getattr(ep, "dist", None)
    out: dict[str, Any] = {
        "entry_point": ep.value,
        "distribution": None if dist is None else dist.metadata["Name"],
        "version": None if dist is None else dist.version,
        "git_commit": None,
    }
    if dist is not None:
        out["git_commit"] = _commit_of(dist, ep.value.split(":")[0].split(".")[0])
    return out


PROVENANCE_KEYS = ("distribution", "version", "entry_point")


def provenance_changes(before: Mapping[str, Any], after: Mapping[str, Any]) -> list[str]:
    """One line per adapter in both ``run.json`` ``adapters`` records whose distribution,
    version or entry point differs (a git commit alone is not reported: every commit of
    an in-tree adapter would be)."""
    out = []
    for name in before:
        old, new = before.get(name) or {}, after.get(name) or {}
        if name not in after or not old.get("version") or not new.get("version"):
            continue
        if any(old.get(k) != new.get(k) for k in PROVENANCE_KEYS):
            out.append(
                f"adapter {name}: {old.get('distribution')} {old.get('version')} ({old.get('entry_point')}) "
                f"-> {new.get('distribution')} {new.get('version')} ({new.get('entry_point')})"
            )
    return out


def _commit_of(dist: Any, top_module: str) -> str | None:
    """The git commit of ``dist``: pip's VCS record, else the checkout of a local source."""
    try:
        direct = json.loads(dist.read_text("direct_url.json") or "null")
    except (OSError, ValueError):
        direct = None
    if isinstance(direct, dict):
        commit = (direct.get("vcs_info") or {}).get("commit_id")
        if commit:
            return str(commit)
        url = str(direct.get("url", ""))
        if url.startswith("file://") and (direct.get("dir_info") or {}).get("editable"):
            return _git_commit(url.removeprefix("file://"))
    spec = importlib.util.find_spec(top_module) if top_module else None
    origin = None if spec is None else (spec.origin or next(iter(spec.submodule_search_locations or []), None))
    return None if origin is None else _git_commit(str(Path(origin).parent))


@cache
def _git_commit(directory: str) -> str | None:
    from uqbench.environment import git_state

    return git_state(directory)["commit"] if Path(directory).is_dir() else None


def available_adapters() -> list[str]:
    """Names of adapters that load, sorted."""
    return [name for name in adapter_names() if adapter_info(name).available]

