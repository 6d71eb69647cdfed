"""Shared set-up of the asv benchmarks over every registered adapter.

Used by :mod:`benchmarks.bench_adapters` (time and peak memory) and
:mod:`benchmarks.bench_quality` (calibration and uncertainty quality). Every benchmark
works on a **quick-suite cell**: (adapter, dataset, seed 0) with the quick suite's
hyperparameters (``QUICK.params_for``), the cell planned by ``plan_run`` (so an adapter
runs as the task the harness would run it as), the dataset loaded as the harness loads it,
the adapters' ``warm_up`` hooks and ``warm_up_frameworks`` called first, and one torch
thread and one BLAS thread, as ``uqbench run`` runs cells.

An adapter that is not available here (a missing optional dependency) or that does not
apply to the dataset (e.g. ``vae`` on ``toy-gap``) raises :class:`NotImplementedError`
from the benchmark's ``setup``, which asv records as skipped.

Only light modules (the registry, the suites) are imported at module level: asv imports
every benchmark module during discovery, so torch and TensorFlow load in ``setup``.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Any

from uqbench import registry
from uqbench.suites import QUICK

ADAPTERS: list[str] = registry.adapter_names()
DATASETS: list[str] = list(QUICK.datasets)
# The dataset of the per-adapter speed and memory benchmarks: the first one that applies.
HOME_DATASETS = ("digits", "toy-gap")

_THREADS = contextlib.ExitStack()
_THREADS_ENTERED = False
_WARM: set[str] = set()
_FIXTURES: dict[tuple[str, str], Fixture] = {}


def cell_threads() -> None:
    """One torch thread and one BLAS/OpenMP thread for the rest of this process.

    Enters the harness's own ``one_thread()`` and never leaves it. torch is imported
    first: ``one_thread`` sets torch's threads only when torch is loaded, and the TFP
    adapters copy torch's thread count into TensorFlow's when they import it.
    """
    global _THREADS_ENTERED
    if _THREADS_ENTERED:
        return
    import torch  # noqa: F401

    from uqbench.harness.timing import one_thread

    _THREADS.enter_context(one_thread())
    _THREADS_ENTERED = True


def warm_up(catalog: Any, adapters: list[str]) -> None:
    """The adapters' ``warm_up`` hooks (framework imports) and torch's lazy set-up, untimed.

    Raises RuntimeError when a hook fails: an installed framework that cannot be imported
    is a failure, not a skip.
    """
    from uqbench.harness.timing import warm_up_frameworks

    cell_threads()
    todo = [a for a in adapters if a not in _WARM]
    broken = catalog.warm_up(todo)
    if broken:
        raise RuntimeError("; ".join(f"{a}: {why}" for a, why in broken.items()))
    _WARM.update(todo)
    warm_up_frameworks()


def check_available(adapter: str) -> None:
    """NotImplementedError (asv: skipped) unless ``adapter`` loads here."""
    info = registry.adapter_info(adapter)
    if not info.available:
        raise NotImplementedError(f"{adapter} is not available: {info.reason}")


@dataclass
class Fixture:
    """One quick-suite cell, planned and loaded, ready to build adapters.

    Attributes
    ----------
    cell : the harness's cell (its ``mode`` is the task the adapter runs as).
    dataset : the dataset of the cell's seed, loaded with ``cell.input_scaling``.
    params : the quick suite's hyperparameters for this adapter and dataset.
    suite : the quick suite as planned (``Plan.suite``).
    """

    cell: Any
    dataset: Any
    params: dict[str, Any]
    catalog: Any
    suite: Any = QUICK
    fitted: dict[int | None, Any] = field(default_factory=dict)

    @property
    def X_train(self) -> Any:
        return self.dataset.X_train

    @property
    def y_train(self) -> Any:
        """Training targets as ``fit_step`` passes them (None for reconstruction)."""
        return None if self.cell.mode == "reconstruction" else self.dataset.y_train

    def seed(self, purpose: str) -> int:
        from uqbench.harness.cell import derive_seed

        return derive_seed(self.cell.seed, purpose)

    def make(self, epochs: int | None = None) -> Any:
        """A fresh, unfitted adapter; ``epochs`` overrides the quick budget where the
        constructor takes ``epochs`` (``bayes-linear`` has no epochs: its fit is exact)."""
        params = dict(self.params)
        if epochs is not None and "epochs" in params:
            params["epochs"] = epochs
        return self.catalog.make_adapter(self.cell.adapter, params)

    def fit(self, epochs: int | None = None) -> Any:
        return self.make(epochs).fit(self.X_train, self.y_train, seed=self.seed("fit"))

    def fitted_adapter(self, epochs: int | None = None) -> Any:
        """A fitted adapter, fitted once per process and ``epochs`` (asv re-runs ``setup``
        before every timed sample)."""
        if epochs not in self.fitted:
            self.fitted[epochs] = self.fit(epochs)
        return self.fitted[epochs]


def first_seed(dataset: str) -> int:
    """The quick suite's first seed for ``dataset`` (0): the cell of ``uqbench run --seeds 1``."""
    return QUICK.seeds_for(dataset)[0]


def fixture(adapter: str, dataset: str) -> Fixture:
    """The quick-suite cell (adapter, dataset, first seed), memoized per process.

    Raises
    ------
    NotImplementedError
        The adapter is unavailable, opt-in (a slow reference such as ``hmc``, which the
        quick suite leaves out unless asked for), or does not apply to the dataset (asv:
        skipped).
    """
    key = (adapter, dataset)
    if key in _FIXTURES:
        return _FIXTURES[key]
    check_available(adapter)
    from uqbench.harness.grid import Catalog, plan_run

    catalog = Catalog()
    # plan_run's own choice when a suite names no adapters (planning the whole grid here
    # would import every adapter module in every benchmark process).
    if catalog.adapter_opt_in(adapter) and adapter not in QUICK.adapter_datasets:
        raise NotImplementedError(f"{adapter} is opt-in: the quick suite leaves it out")
    seed = first_seed(dataset)
    plan = plan_run(QUICK.replace(adapters=(adapter,), datasets=(dataset,)), catalog=catalog)
    cells = [c for c in plan.cells if c.seed == seed]
    if not cells:
        raise NotImplementedError(f"the quick suite does not run {adapter} on {dataset}")
    (cell,) = cells
    if not cell.applicable:
        raise NotImplementedError(f"{adapter} does not apply to {dataset}: {cell.reason}")
    warm_up(catalog, [adapter])
    data = catalog.dataset(dataset).load(seed=seed, data_dir=None, input_scaling=cell.input_scaling)
    _FIXTURES[key] = make_fixture(plan.suite, catalog, cell, data)
    return _FIXTURES[key]


def make_fixture(suite: Any, catalog: Any, cell: Any, data: Any) -> Fixture:
    params = suite.params_for(cell.adapter, cell.dataset, catalog.adapter_keywords(cell.adapter))
    return Fixture(cell, data, params, catalog, suite)


def home_fixture(adapter: str) -> Fixture:
    """The adapter's cell on the first of :data:`HOME_DATASETS` it runs on (``digits`` for
    classifiers and autoencoders, ``toy-gap`` for regression-only ``bayes-linear``)."""
    reason = ""
    for dataset in HOME_DATASETS:
        try:
            return fixture(adapter, dataset)
        except NotImplementedError as exc:
            reason = str(exc)
    raise NotImplementedError(reason)


def run_quick_cell(fx: Fixture, *, arrays: bool = True) -> Any:
    """``run_cell`` on the fixture's cell as the runner (``runner._run_one``) calls it.

    ``arrays=False`` runs only the core steps (fit, sample, metrics): the optional steps
    and the final ``arrays`` step (the report figures' arrays) run after the metrics and
    change no value the metrics step writes to ``results.csv``.
    """
    from uqbench.harness.cell import CORE_STEPS, OPTIONAL_STEPS, cell_steps, run_cell
    from uqbench.harness.grid import select_metrics

    suite = fx.suite
    enabled = tuple(s for s in suite.steps if OPTIONAL_STEPS.get(s) is not None)
    steps = cell_steps(enabled) if arrays else list(CORE_STEPS)
    return run_cell(
        fx.cell,
        dataset=fx.dataset,
        make_adapter=fx.make,
        metrics=select_metrics(fx.catalog.metrics, suite.metrics),
        n_samples=suite.n_samples,
        n_bootstrap=suite.n_bootstrap,
        steps=steps,
    )


def quality_cells(dataset: str, modes: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Run, in this process, the quick-suite cell of the first seed of every adapter that
    ``uqbench run`` runs on ``dataset`` (every available one but the opt-in ones) and that
    runs there as one of ``modes``.

    Returns adapter -> ``{"status", "reason", "values"}`` with ``values`` mapping
    ``"<split>/<metric>"`` to the value ``uqbench run`` writes to ``results.csv`` for that
    cell. Cells run in the harness's order (adapters sorted), after warming up every
    adapter as the runner does. Adapters that do not run as one of ``modes`` are recorded
    with status ``"skipped"`` and not run.
    """
    from uqbench.harness.grid import Catalog, plan_run

    catalog = Catalog()
    seed = first_seed(dataset)
    plan = plan_run(QUICK.replace(datasets=(dataset,)), catalog=catalog)
    cells = [c for c in plan.cells if c.seed == seed]
    todo = [c for c in cells if c.mode in modes]
    warm_up(catalog, [c.adapter for c in todo])
    source = catalog.dataset(dataset)
    loaded: dict[str, Any] = {}
    out: dict[str, dict[str, Any]] = {}
    for cell in cells:
        if cell.mode not in modes:
            why = cell.reason or f"runs as {cell.mode}, not {' or '.join(modes)}"
            out[cell.adapter] = {"status": "skipped", "reason": why, "values": {}}
            continue
        if cell.input_scaling not in loaded:
            loaded[cell.input_scaling] = source.load(
                seed=seed, data_dir=None, input_scaling=cell.input_scaling
            )
        fx = make_fixture(plan.suite, catalog, cell, loaded[cell.input_scaling])
        outcome = run_quick_cell(fx, arrays=False)
        out[cell.adapter] = {
            "status": outcome.status,
            "reason": f"{outcome.stage}: {outcome.reason}" if outcome.reason else "",
            "values": {f"{r['split']}/{r['metric']}": float(r["value"]) for r in outcome.rows},
        }
    return out


def quality_value(cells: dict[str, dict[str, Any]], adapter: str, key: str) -> float:
    """The cached value ``key`` (``"<split>/<metric>"``) of ``adapter``'s cell.

    Raises NotImplementedError (asv: skipped) for an adapter that is unavailable or not
    run here, RuntimeError for a failed cell or a missing metric.
    """
    if adapter not in cells:
        check_available(adapter)  # unavailable: skipped
        raise NotImplementedError(f"{adapter} is not in the quick suite's grid (opt-in)")
    record = cells[adapter]
    if record["status"] == "skipped":
        raise NotImplementedError(f"{adapter}: {record['reason']}")
    if record["status"] != "ok":
        raise RuntimeError(f"{adapter}: cell failed ({record['reason']})")
    if key not in record["values"]:
        raise RuntimeError(f"{adapter}: no {key} in its results")
    return record["values"][key]
