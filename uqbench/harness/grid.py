"""The grid of a run: cells adapter × dataset × seed, and where their parts come from.

:class:`Catalog` is the one place the harness looks up adapters, datasets and metrics.
By default it uses the entry-point registry, :mod:`uqbench.datasets` and
:mod:`uqbench.metrics`; tests inject plain mappings instead::

    Catalog(adapters={"dummy": DummyAdapter}, datasets={"toy": DatasetSource(...)})

:func:`plan_run` resolves a :class:`~uqbench.suites.Suite` against a catalog (unknown names,
missing data directory -> :class:`~uqbench.errors.UserError`) into an ordered tuple of
cells, each knowing whether and as which task it runs. :func:`select_metrics` narrows a
metrics object to a suite's ``metrics`` selection.
"""

from __future__ import annotations

import difflib
import fnmatch
import inspect
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from uqbench.errors import AdapterUnavailableError, DataNotFoundError, UserError
from uqbench.store import cell_key
from uqbench.suites import Suite

DATA_ENV = "UQBENCH_DATA"
KEY_SEPARATOR = "__"


@dataclass(frozen=True)
class Cell:
    """One (adapter, dataset, seed) of the grid.

    Attributes
    ----------
    mode : the task the adapter runs as on this dataset (``"regression"``,
        ``"classification"`` or ``"reconstruction"``), or None when not applicable.
    reason : why the cell is not applicable ("" otherwise).
    """

    adapter: str
    dataset: str
    seed: int
    mode: str | None = None
    reason: str = ""

    @property
    def key(self) -> str:
        """File stem of the cell's records: ``<adapter>__<dataset>__<seed>``."""
        return cell_key(self.adapter, self.dataset, self.seed)

    @property
    def applicable(self) -> bool:
        return self.mode is not None

    @property
    def input_scaling(self) -> str:
        """Autoencoders see pixels in [0, 1]; everything else standardized inputs."""
        return "unit" if self.mode == "reconstruction" else "standardize"

    def __str__(self) -> str:
        return f"{self.adapter} / {self.dataset} / seed {self.seed}"


def cell_mode(adapter_tasks: frozenset[str], dataset_task: str, image: bool) -> tuple[str | None, str]:
    """How an adapter with ``adapter_tasks`` runs on a dataset: (mode, reason if not)."""
    tasks = frozenset(adapter_tasks)
    if dataset_task in tasks:
        return dataset_task, ""
    if tasks == {"reconstruction"} and image:
        return "reconstruction", ""
    return None, (
        f"adapter tasks {{{', '.join(sorted(tasks))}}} lack {dataset_task!r}"
        + ("" if image or "reconstruction" not in tasks else " (reconstruction needs image data)")
    )


@dataclass(frozen=True)
class DatasetSource:
    """A dataset as the runner sees it before loading.

    Attributes
    ----------
    load : ``load(*, seed, data_dir, input_scaling) -> Dataset``.
    """

    name: str
    task: str
    image: bool
    load: Callable[..., Any]
    needs_data_dir: bool = False
    summary: str = ""


class Catalog:
    """Adapters, datasets and metrics for a run.

    Parameters
    ----------
    adapters : name -> factory (an adapter class, or any callable taking the keyword
        hyperparameters and exposing ``tasks``); None -> the entry-point registry.
    datasets : name -> :class:`DatasetSource`; None -> :mod:`uqbench.datasets`.
    metrics : an object with ``evaluate``, ``evaluate_ood``, ``curves`` and optionally
        ``ood_scores`` as in :mod:`uqbench.metrics`; None -> that module.
    """

    def __init__(
        self,
        *,
        adapters: Mapping[str, Callable[..., Any]] | None = None,
        datasets: Mapping[str, DatasetSource] | None = None,
        metrics: Any = None,
    ) -> None:
        self._adapters = None if adapters is None else dict(adapters)
        self._datasets = None if datasets is None else dict(datasets)
        self._metrics = metrics
        self._injected = any(x is not None for x in (adapters, datasets, metrics))

    def is_default(self) -> bool:
        """True when nothing was injected (a worker process can rebuild it as ``Catalog()``)."""
        return not self._injected

    # -- adapters ------------------------------------------------------------------------
    def available_adapters(self) -> list[str]:
        if self._adapters is None:
            from uqbench import registry

            return registry.available_adapters()
        return sorted(self._adapters)

    def _adapter_factory(self, name: str) -> Callable[..., Any]:
        if self._adapters is None:
            from uqbench import registry

            return registry.load_adapter_class(name)
        if name not in self._adapters:
            raise UserError(f"unknown adapter {name!r}; known adapters: {', '.join(sorted(self._adapters))}")
        return self._adapters[name]

    def adapter_tasks(self, name: str) -> frozenset[str]:
        """The adapter's ``tasks``; loading it (UserError if unknown or unavailable)."""
        tasks = getattr(self._adapter_factory(name), "tasks", None)
        if not tasks:
            raise AdapterUnavailableError(f"adapter {name!r} declares no tasks")
        return frozenset(tasks)

    def adapter_opt_in(self, name: str) -> bool:
        """True for adapters run only when asked for (``opt_in = True``, e.g. slow references)."""
        try:
            return bool(getattr(self._adapter_factory(name), "opt_in", False))
        except UserError:
            return False

    def adapter_keywords(self, name: str) -> frozenset[str] | None:
        """Keyword names the adapter's constructor accepts; None when it takes ``**kwargs``."""
        factory = self._adapter_factory(name)
        try:
            parameters = inspect.signature(factory).parameters.values()
        except (TypeError, ValueError):
            return None
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
            return None
        return frozenset(p.name for p in parameters if p.kind is not inspect.Parameter.VAR_POSITIONAL)

    def warm_up(self, names: Sequence[str]) -> dict[str, str]:
        """Call each adapter class's optional ``warm_up()`` (e.g. a framework import), untimed.

        Returns adapter name -> one-line reason for those whose warm-up raised: a framework
        that is installed but cannot be imported fails that adapter's cells, not the run.
        """
        broken = {}
        for name in names:
            hook = getattr(self._adapter_factory(name), "warm_up", None)
            if callable(hook):
                try:
                    hook()
                except Exception as exc:
                    broken[name] = f"warm_up failed: {type(exc).__name__}: {exc}".splitlines()[0][:300]
        return broken

    def make_adapter(self, name: str, params: Mapping[str, Any]) -> Any:
        if self._adapters is None:
            from uqbench import registry

            return registry.make_adapter(name, **params)
        try:
            return self._adapter_factory(name)(**params)
        except TypeError as exc:
            raise UserError(f"adapter {name!r}: bad hyperparameters {dict(params)}: {exc}") from exc

    # -- datasets ------------------------------------------------------------------------
    def _dataset_sources(self) -> dict[str, DatasetSource]:
        if self._datasets is None:
            import functools

            from uqbench import datasets

            self._datasets = {
                name: DatasetSource(
                    name=name,
                    task=spec.task,
                    image=spec.image,
                    needs_data_dir=spec.needs_data_dir,
                    summary=spec.summary,
                    load=functools.partial(datasets.load_dataset, name),
                )
                for name, spec in datasets.DATASETS.items()
            }
        return self._datasets

    def dataset_names(self) -> list[str]:
        return list(self._dataset_sources())

    def dataset(self, name: str) -> DatasetSource:
        sources = self._dataset_sources()
        if name not in sources:
            close = difflib.get_close_matches(name, list(sources), n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(f"unknown dataset {name!r}{hint}; known datasets: {', '.join(sources)}")
        return sources[name]

    # -- metrics -------------------------------------------------------------------------
    def metric_names(self) -> list[str]:
        """Every metric name the metrics can record (``uqbench.metrics.METRICS``)."""
        from uqbench.metrics import METRICS

        return list(METRICS)

    @property
    def metrics(self) -> Any:
        if self._metrics is None:
            from uqbench import metrics

            self._metrics = SimpleNamespace(
                evaluate=metrics.evaluate,
                evaluate_ood=metrics.evaluate_ood,
                curves=metrics.curves,
                ood_scores=metrics.ood_scores,
            )
        return self._metrics


def expand_datasets(patterns: tuple[str, ...], known: list[str]) -> tuple[str, ...]:
    """Dataset names matching ``patterns`` (plain names or shell patterns), in order."""
    out: list[str] = []
    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            matches = [n for n in known if fnmatch.fnmatchcase(n, pattern)]
            if not matches:
                raise UserError(f"dataset pattern {pattern!r} matches nothing; known datasets: {', '.join(known)}")
        else:
            matches = [pattern]
        out += [m for m in matches if m not in out]
    return tuple(out)


def expand_metrics(patterns: tuple[str, ...], known: list[str]) -> tuple[str, ...]:
    """Metric names matching ``patterns`` (plain names or shell patterns), in order.

    Raises
    ------
    UserError
        An unknown name (with the closest known one) or a pattern matching nothing.
    """
    out: list[str] = []
    for pattern in patterns:
        if any(ch in pattern for ch in "*?["):
            matches = [n for n in known if fnmatch.fnmatchcase(n, pattern)]
            if not matches:
                raise UserError(f"metric pattern {pattern!r} matches nothing; known metrics: {', '.join(known)}")
        elif pattern not in known:
            close = difflib.get_close_matches(pattern, known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise UserError(f"unknown metric {pattern!r}{hint}; known metrics: {', '.join(known)}")
        else:
            matches = [pattern]
        out += [m for m in matches if m not in out]
    return tuple(out)


class SelectedMetrics:
    """A metrics object that records only the metrics ``names``.

    ``evaluate`` and ``evaluate_ood`` return only the selected values (computed exactly as
    without a selection, so they equal a full run's); ``curves`` and ``ood_scores`` (the
    report's arrays) pass through.
    """

    def __init__(self, metrics: Any, names: Sequence[str]) -> None:
        self.selected = frozenset(names)
        self._metrics = metrics
        self.curves = metrics.curves
        scores = getattr(metrics, "ood_scores", None)
        if scores is not None:
            self.ood_scores = scores

    def evaluate(self, *args: Any, **kwargs: Any) -> list[Any]:
        return [v for v in self._metrics.evaluate(*args, **kwargs) if v.name in self.selected]

    def evaluate_ood(self, *args: Any, **kwargs: Any) -> list[Any]:
        return [v for v in self._metrics.evaluate_ood(*args, **kwargs) if v.name in self.selected]


def select_metrics(metrics: Any, names: Sequence[str] | None) -> Any:
    """``metrics`` restricted to ``names`` (a resolved ``Suite.metrics``); None: unchanged."""
    return metrics if names is None else SelectedMetrics(metrics, names)


def resolve_data_dir(data_dir: str | os.PathLike[str] | None, needed_by: list[str]) -> str | None:
    """The data directory if some dataset needs one: argument, else env ``UQBENCH_DATA``."""
    if data_dir in (None, ""):
        data_dir = os.environ.get(DATA_ENV) or None
        source = f"${DATA_ENV}"
    else:
        source = "--data-dir"
    if not needed_by:
        return None if data_dir is None else str(data_dir)
    if data_dir is None:
        names = ", ".join(needed_by[:3]) + (f" and {len(needed_by) - 3} more" if len(needed_by) > 3 else "")
        raise DataNotFoundError(f"{names} need a data directory: pass --data-dir DIR or set {DATA_ENV}")
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise DataNotFoundError(f"data directory {path} (from {source}) does not exist")
    return str(path)


@dataclass(frozen=True)
class Plan:
    """A suite resolved against a catalog: concrete names and the ordered cells.

    Cells run dataset by dataset, seed by seed, so each (dataset, seed) is loaded once.
    """

    suite: Suite
    cells: tuple[Cell, ...]
    data_dir: str | None = None
    unavailable: Mapping[str, str] = field(default_factory=dict)

    @property
    def applicable(self) -> tuple[Cell, ...]:
        return tuple(c for c in self.cells if c.applicable)


def cell_params(plan: Plan, catalog: Catalog, adapter: str, dataset: str) -> dict[str, Any]:
    """The constructor keywords ``adapter`` gets on ``dataset``: the suite's budgets it
    accepts, the device, and its ``adapter_params`` (unfiltered for an unavailable adapter,
    whose constructor cannot be inspected)."""
    accepted = None if adapter in plan.unavailable else catalog.adapter_keywords(adapter)
    return plan.suite.params_for(adapter, dataset, accepted)


def plan_run(suite: Suite, *, catalog: Catalog, data_dir: str | os.PathLike[str] | None = None) -> Plan:
    """Resolve ``suite`` into cells.

    An adapter named in ``suite.adapters`` that cannot be imported or lacks a requirement
    is not an error here: it goes into ``Plan.unavailable`` with the reason, and each of
    its cells (one per dataset and seed, run as the dataset's task) fails with it.

    Raises
    ------
    UserError
        Unknown adapter (no such entry point: a typo), dataset or metric name, a device
        torch does not see, no adapter available, or a missing data directory.
    """
    datasets = expand_datasets(suite.datasets, catalog.dataset_names())
    sources = [catalog.dataset(name) for name in datasets]
    resolved_dir = resolve_data_dir(data_dir, [s.name for s in sources if s.needs_data_dir])
    metrics = None if suite.metrics is None else expand_metrics(suite.metrics, catalog.metric_names())
    if suite.adapters is not None:
        adapters = suite.adapters
    else:  # every available adapter; opt-in ones (slow references) only when scoped
        adapters = tuple(
            a for a in catalog.available_adapters()
            if a in suite.adapter_datasets or not catalog.adapter_opt_in(a)
        )
    if not adapters:
        raise UserError("no adapter is available; `uqbench list` shows why")
    for name in (*adapters, *datasets):
        if KEY_SEPARATOR in name or "/" in name or os.sep in name:
            raise UserError(f"name {name!r} may not contain {KEY_SEPARATOR!r} or a path separator")
    tasks: dict[str, frozenset[str]] = {}
    unavailable: dict[str, str] = {}
    for name in adapters:
        try:
            tasks[name] = catalog.adapter_tasks(name)
        except AdapterUnavailableError as exc:  # installed but unusable: its cells fail
            unavailable[name] = str(exc)
    if suite.device != "cpu":
        from uqbench.devices import resolve_device

        try:
            resolve_device(suite.device)
        except ValueError as exc:
            raise UserError(str(exc)) from None
    for name in tasks:
        # Constructors only store hyperparameters: building one now turns a typo in
        # adapter_params into one UserError before the run instead of failed cells.
        for dataset in datasets:
            if not suite.runs_on(name, dataset):
                continue
            catalog.make_adapter(
                name, suite.params_for(name, dataset, catalog.adapter_keywords(name))
            )
    cells = []
    for source in sources:
        for seed in suite.seeds_for(source.name):
            for adapter in adapters:
                if not suite.runs_on(adapter, source.name, seed):
                    continue
                if adapter in unavailable:  # its tasks are unknown: fail the cell, run as the data's task
                    mode, reason = source.task, ""
                else:
                    mode, reason = cell_mode(tasks[adapter], source.task, source.image)
                cells.append(Cell(adapter, source.name, seed, mode, reason))
    resolved = suite.replace(adapters=tuple(adapters), datasets=datasets, metrics=metrics)
    return Plan(resolved, tuple(cells), resolved_dir, unavailable)
