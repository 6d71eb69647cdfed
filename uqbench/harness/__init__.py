"""The benchmark harness: plan a grid of cells, run each, store the results.

- :mod:`~uqbench.harness.grid`: :class:`Cell`, :class:`Catalog` (where adapters, datasets
  and metrics come from), :func:`plan_run`;
- :mod:`~uqbench.harness.cell`: one cell as a list of steps (the extension point for
  optional steps such as a probe), seeds, sample validation;
- :mod:`~uqbench.harness.probe`: the optional gradient-variance probe step;
- :mod:`~uqbench.harness.timing`: wall/CPU time and peak process RSS;
- :mod:`~uqbench.harness.worker`: what a worker runs (its state, one cell start to end);
- :mod:`~uqbench.harness.executors`: where cells run (serial, child processes, Ray);
- :mod:`~uqbench.harness.runner`: the driver: the loop, progress, resume, failures.
"""

from uqbench.harness.cell import OPTIONAL_STEPS, CellContext, derive_seed, run_cell
from uqbench.harness.grid import Catalog, Cell, DatasetSource, Plan, plan_run
from uqbench.harness.runner import RunResult, execute, prepare, prepare_resume, run_suite

__all__ = [
    "OPTIONAL_STEPS",
    "Catalog",
    "Cell",
    "CellContext",
    "DatasetSource",
    "Plan",
    "RunResult",
    "derive_seed",
    "execute",
    "plan_run",
    "prepare",
    "prepare_resume",
    "run_cell",
    "run_suite",
]
