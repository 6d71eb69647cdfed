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
from uqbench.suites import BUDGET_KEYS, Suite, SuiteError, did_you_mean

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

    def adapter_names(self) -> list[str]:
        """Every adapter name the catalog knows, available or not (the registry's entry points)."""
        if self._adapters is None:
            from uqbench import registry

            return registry.adapter_names()
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
            hint = did_you_mean(name, list(sources))
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
            raise UserError(f"unknown metric {pattern!r}{did_you_mean(pattern, known)}; known metrics: {', '.join(known)}")
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


def _is_pattern(name: str) -> bool:
    return any(ch in name for ch in "*?[")


def _check_dataset_refs(what: str, names: Sequence[str], known: list[str]) -> None:
    """Each plain name in ``names`` is a known dataset, each pattern matches one."""
    for name in names:
        if _is_pattern(name):
            if not any(fnmatch.fnmatchcase(k, name) for k in known):
                raise SuiteError(f"{what}: dataset pattern {name!r} matches no known dataset; known datasets: {', '.join(known)}")
        elif name not in known:
            raise SuiteError(
                f"{what}: unknown dataset {name!r}{did_you_mean(name, known)}; known datasets: {', '.join(known)}"
            )


def check_scoping(suite: Suite, catalog: Catalog) -> None:
    """The keys of ``adapter_seeds`` / ``adapter_datasets`` name known adapters, those of
    ``dataset_seeds`` and the values of ``adapter_datasets`` known datasets (or patterns
    matching one).

    A misspelt name there would otherwise be silently ignored: ``adapter_seeds = {hcm =
    [0]}`` runs hmc on every seed, ``dataset_seeds = {"uci-boston " = [...]}`` keeps the
    default seeds. Known, not "in this grid": the built-in suites scope ``hmc``, which a
    run with ``--adapters`` may leave out.

    Raises
    ------
    SuiteError
        Naming the key, the unknown name and the closest known one.
    """
    adapters = catalog.adapter_names()
    for key in ("adapter_seeds", "adapter_datasets"):
        for name in getattr(suite, key):
            if name not in adapters:
                raise SuiteError(
                    f"{key}: unknown adapter {name!r}{did_you_mean(name, adapters)}; "
                    f"known adapters: {', '.join(adapters)}"
                )
    datasets = catalog.dataset_names()
    _check_dataset_refs("dataset_seeds", list(suite.dataset_seeds), datasets)
    for adapter, patterns in suite.adapter_datasets.items():
        _check_dataset_refs(f"adapter_datasets[{adapter!r}]", patterns, datasets)


def _keywords_of(catalog: Catalog, names: Sequence[str]) -> tuple[set[str], bool]:
    """(union of the constructor keywords of adapters ``names``, whether one takes ``**kwargs``);
    adapters that cannot be loaded are skipped."""
    keywords: set[str] = set()
    for name in names:
        try:
            accepted = catalog.adapter_keywords(name)
        except UserError:
            continue
        if accepted is None:
            return keywords, True
        keywords |= accepted
    return keywords, False


def check_dataset_params(suite: Suite, catalog: Catalog, datasets: Sequence[str], adapters: Sequence[str]) -> None:
    """Every key of ``dataset_params[<dataset>]`` is a constructor keyword of some adapter.

    :meth:`Suite.params_for` gives each adapter only the budget keys its constructor
    accepts (so ``epochs`` reaches the MLPs and not a closed-form model); a misspelt key
    (``epoch``) is then accepted by none and silently dropped, and every adapter trains
    with its default budget. A key no adapter of this run accepts is still fine when it
    is one of the built-in suites' :data:`~uqbench.suites.BUDGET_KEYS` or another
    available adapter takes it (the quick suite's ``lengthscale`` for ``bayes-linear`` in
    a run of ``--adapters deterministic``); only then are the other adapters loaded.

    Raises
    ------
    SuiteError
        The dataset, the unknown key and the closest known keyword.
    """
    grid_keywords: dict[str, tuple[set[str], bool]] = {}
    everyone: tuple[set[str], bool] | None = None
    for dataset in datasets:
        keys = list(suite.dataset_params.get(dataset, {}))
        if not keys:
            continue
        running = [a for a in adapters if suite.runs_on(a, dataset)]
        group = ",".join(running)
        if group not in grid_keywords:
            grid_keywords[group] = _keywords_of(catalog, running)
        known, anything = grid_keywords[group]
        unknown = [] if anything else [k for k in keys if k not in known and k not in BUDGET_KEYS]
        if not unknown:
            continue
        if everyone is None:
            everyone = _keywords_of(catalog, catalog.available_adapters())
        if everyone[1]:
            continue
        all_known = sorted(known | everyone[0] | set(BUDGET_KEYS))
        unknown = [k for k in unknown if k not in all_known]
        if unknown:
            hints = ", ".join(f"{k!r}{did_you_mean(k, all_known)}" for k in unknown)
            raise SuiteError(
                f"dataset_params[{dataset!r}]: unknown hyperparameter(s) {hints}: no adapter's "
                "constructor takes them, so they would be silently ignored"
            )


def plan_run(suite: Suite, *, catalog: Catalog, data_dir: str | os.PathLike[str] | None = None) -> Plan:
    """Resolve ``suite`` into cells.

    An adapter named in ``suite.adapters`` that cannot be imported or lacks a requirement
    is not an error here: it goes into ``Plan.unavailable`` with the reason, and each of
    its cells (one per dataset and seed, run as the dataset's task) fails with it.

    Raises
    ------
    UserError
        Unknown adapter (no such entry point: a typo), dataset or metric name, a device
        torch does not see, no adapter available, a missing data directory, an unknown
        name in ``adapter_seeds`` / ``adapter_datasets`` / ``dataset_seeds``, a
        ``dataset_params`` key no adapter takes, a bad ``UQBENCH_MAX_SAMPLE_BYTES``, or
        a grid without a single applicable cell.
    """
    datasets = expand_datasets(suite.datasets, catalog.dataset_names())
    sources = [catalog.dataset(name) for name in datasets]
    check_scoping(suite, catalog)
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
    check_dataset_params(suite, catalog, datasets, tuple(tasks))
    from uqbench.harness.timing import sample_byte_limit

    sample_byte_limit()  # a bad UQBENCH_MAX_SAMPLE_BYTES: one line now, not every cell failing
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
    if not any(c.applicable for c in cells):
        raise UserError(_empty_grid_message(cells))
    resolved = suite.replace(adapters=tuple(adapters), datasets=datasets, metrics=metrics)
    return Plan(resolved, tuple(cells), resolved_dir, unavailable)


def _empty_grid_message(cells: Sequence[Cell]) -> str:
    """Why a grid has nothing to run: no cell at all, or the first inapplicable cells' reasons.

    An empty grid used to run, measure nothing and exit 0 with "no failed cells": a
    mismatched --adapters/--datasets (an autoencoder on UCI data) read as a success.
    """
    if not cells:
        return (
            "the grid is empty: adapter_datasets / adapter_seeds leave no (adapter, dataset, seed) "
            "cell to run; check their names and seeds"
        )
    reasons = list(dict.fromkeys(f"{c.adapter} on {c.dataset}: {c.reason}" for c in cells))
    more = f" and {len(reasons) - 3} more" if len(reasons) > 3 else ""
    return (
        f"no cell of the grid is applicable, nothing would run ({'; '.join(reasons[:3])}{more}); "
        "choose adapters whose tasks match the datasets (`uqbench list` shows both)"
    )
