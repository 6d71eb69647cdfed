"""What a worker runs: the per-process state and one cell's execution, for every executor.

The serial executor runs it in the driver, the process executor in each child process, the
Ray executor in each actor. :mod:`uqbench.harness.runner` (the driver: planning, writing
cells, resuming) and :mod:`uqbench.harness.executors` (where cells run) both import this
module and neither imports the other.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from uqbench.errors import UserError
from uqbench.harness.cell import CellOutcome, cell_steps, one_line, run_cell
from uqbench.harness.grid import Catalog, Cell, Plan, cell_params, select_metrics
from uqbench.store import make_row

__all__ = ["DatasetCache", "WorkerSpec", "WorkerState", "failed_outcome", "now", "run_one", "set_worker_threads"]


def now() -> str:
    """The local time, ISO 8601 to the second (the cells' ``started``/``ended``)."""
    return datetime.now().astimezone().isoformat(timespec="seconds")


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker needs to run cells of one run (pickled to each worker)."""

    run_dir: Path
    plan: Plan
    step_names: tuple[str, ...]
    catalog: Catalog


def failed_outcome(cell: Cell, stage: str, reason: str) -> CellOutcome:
    """The outcome of a cell that failed before or outside :func:`run_cell`: one failed row."""
    row = make_row(cell.adapter, cell.dataset, cell.seed, stage, "", float("nan"), status="failed", error=reason)
    return CellOutcome("failed", [row], {}, reason, stage)


class WorkerState:
    """A loaded catalog, dataset cache, warmed-up frameworks and thread limits."""

    def __init__(self, spec: WorkerSpec, adapters: Sequence[str], *, own_process: bool = True) -> None:
        self.spec = spec
        self.steps = cell_steps(spec.step_names)
        self.cache = DatasetCache(spec.catalog, spec.plan.data_dir)
        self.broken: dict[str, str] = {}
        if not adapters:  # only not-applicable cells: nothing to load
            return
        for name in adapters:  # import every adapter module (torch, ...) before the limits
            spec.catalog.adapter_tasks(name)
        if own_process:  # the serial executor limits threads itself, for the run only
            set_worker_threads()
            # Adapters that cache expensive fits (hmc) keep them with the run.
            os.environ.setdefault("UQBENCH_CACHE_DIR", str(Path(spec.run_dir) / "cache"))
        self.broken = spec.catalog.warm_up(list(adapters))
        from uqbench.harness.timing import warm_up_frameworks

        warm_up_frameworks()

    def run_cell(self, cell: Cell) -> tuple[CellOutcome, str, str]:
        started = now()
        outcome = run_one(cell, self.spec.plan, self.spec.catalog, self.cache, self.steps, self.broken)
        return outcome, started, now()


def set_worker_threads() -> None:
    """One thread for torch, BLAS/OpenMP pools and (if imported later) TensorFlow."""
    from threadpoolctl import threadpool_limits

    from uqbench.harness.timing import CELL_THREADS

    os.environ["OMP_NUM_THREADS"] = str(CELL_THREADS)
    # Kept alive for the worker's lifetime (the limits are undone when collected).
    _KEEP.append(threadpool_limits(limits=CELL_THREADS))
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(CELL_THREADS)


_KEEP: list[Any] = []


class DatasetCache:
    """Datasets of the current (dataset, seed), one per input scaling; earlier ones dropped."""

    def __init__(self, catalog: Catalog, data_dir: str | None) -> None:
        self.catalog, self.data_dir = catalog, data_dir
        self._key: tuple[str, int] | None = None
        self._items: dict[str, Any] = {}

    def get(self, cell: Cell) -> Any:
        """The dataset, or the exception loading it raised (cached too: fails once per cell)."""
        if self._key != (cell.dataset, cell.seed):
            self._key, self._items = (cell.dataset, cell.seed), {}
        if cell.input_scaling not in self._items:
            source = self.catalog.dataset(cell.dataset)
            try:
                value: Any = source.load(seed=cell.seed, data_dir=self.data_dir, input_scaling=cell.input_scaling)
            except UserError:
                raise  # missing or unreadable data: the user must fix it, stop the run
            except Exception as exc:
                value = exc
            self._items[cell.input_scaling] = value
        return self._items[cell.input_scaling]


def run_one(
    cell: Cell, plan: Plan, catalog: Catalog, cache: DatasetCache, steps: list[Any],
    broken: dict[str, str] | None = None,
) -> CellOutcome:
    """One cell, start to end: the reason it cannot run (adapter unavailable or broken at
    warm-up, dataset unloadable) as a failed outcome, else :func:`run_cell`; the outcome
    records the adapter's constructor parameters."""
    if not cell.applicable:
        return run_cell(cell, dataset=None, make_adapter=lambda: None, metrics=None, n_samples=1, n_bootstrap=1)
    suite = plan.suite
    params = cell_params(plan, catalog, cell.adapter, cell.dataset)
    if cell.adapter in plan.unavailable:
        outcome = failed_outcome(cell, "import", plan.unavailable[cell.adapter])
    elif broken and cell.adapter in broken:
        outcome = failed_outcome(cell, "warm_up", broken[cell.adapter])
    elif isinstance(dataset := cache.get(cell), Exception):
        outcome = failed_outcome(cell, "load", one_line(dataset))
    else:
        outcome = run_cell(
            cell,
            dataset=dataset,
            make_adapter=lambda: catalog.make_adapter(cell.adapter, params),
            metrics=select_metrics(catalog.metrics, suite.metrics),
            n_samples=suite.n_samples,
            n_bootstrap=suite.n_bootstrap,
            steps=steps,
            validation_fraction=suite.validation_fraction,
        )
    outcome.record["params"] = params
    return outcome
