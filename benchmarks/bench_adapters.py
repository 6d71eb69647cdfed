"""asv: speed and peak memory of every registered adapter, on quick-suite cells.

Parameterized over every adapter in the registry (``uqbench.registry.adapter_names()``);
adapters that are not available here are skipped. Each benchmark works on the adapter's
quick-suite cell of seed 0 (see :mod:`benchmarks._cells`) on its *home* dataset
(``digits`` for classifiers and autoencoders, ``toy-gap`` for the regression-only
``bayes-linear``): the quick suite's hyperparameters, the harness's planning, data loading
and seeds, one torch thread and one BLAS thread, frameworks imported and warmed up in
``setup`` (untimed).

- ``Fit.time_fit_one_epoch``: ``fit`` of a fresh adapter with ``epochs=1`` on the
  training split: one pass over the data plus the per-fit set-up (building the network;
  for TFP also tracing the Keras train step and the compiled sampler). ``bayes-linear``
  has no epochs: its whole (exact) fit.
- ``Fit.peakmem_fit``: peak RSS of the process after a fit at the quick suite's budget
  (20 epochs on digits). asv's peakmem is the process maximum, so it includes the
  imported frameworks (about 0.3-0.5 GB with torch, 1.1 GB with TensorFlow): it catches
  growth, not the fit's own footprint.
- ``Fit.peakmem_sample_predictive``: the same after a one-epoch fit and
  ``sample_predictive`` of S = 100 draws on the test split.
- ``Sample.time_sample_predictive``: ``sample_predictive`` on the test split at S = 10
  and S = 100 draws (adapter fitted once per process with one epoch: the cost does not
  depend on the weights' values).
- ``QuickCell.time_quick_cell``: one whole quick-suite cell as ``uqbench run`` runs it
  (``run_cell``: fit at the quick budget, S = 50 draws on test and every OOD split,
  metrics with 100 bootstrap resamples, the report's arrays), as the first cell of a
  fresh process after the framework warm-up (TFP's first-fit overhead included, as in
  the first cell of a ``uqbench run`` worker; torch cells get up to three samples).

Every (benchmark, parameters) pair runs in its own process, which pays torch's optimizer
machinery import (about 3 s, in the warm-up), loading digits (about 1 s) and, for TFP,
TensorFlow's import (about 8 s of CPU); so each benchmark above costs about two minutes
for the 15 adapters, and only the home dataset is used. ``rounds``, ``repeat`` and
``min_run_count`` keep the whole ``asv run`` within about 20-25 minutes on 2 cores.
"""

from __future__ import annotations

from typing import Any, ClassVar

from benchmarks._cells import ADAPTERS, home_fixture, run_quick_cell

SAMPLE_SIZES = [10, 100]
PEAKMEM_SAMPLES = 100


class Fit:
    """asv: fit time of one epoch; peak memory of a quick-budget fit and of sampling."""

    params = (ADAPTERS,)
    param_names: ClassVar[list[str]] = ["adapter"]
    timeout = 180
    rounds = 1
    number = 1
    repeat = (3, 7, 3.0)
    warmup_time = 0.01  # one untimed fit first (first-call allocations, TF's first trace)

    def setup(self, adapter: str) -> None:
        self.fx = home_fixture(adapter)

    def time_fit_one_epoch(self, adapter: str) -> None:
        self.fx.fit(epochs=1)

    def peakmem_fit(self, adapter: str) -> None:
        self.fx.fit()

    def peakmem_sample_predictive(self, adapter: str) -> None:
        fitted = self.fx.fitted_adapter(epochs=1)
        fitted.sample_predictive(
            self.fx.dataset.X_test, n_samples=PEAKMEM_SAMPLES, seed=self.fx.seed("sample:test")
        )


class Sample:
    """asv: ``sample_predictive`` on the test split at S = 10 and 100 draws."""

    params = (ADAPTERS, SAMPLE_SIZES)
    param_names: ClassVar[list[str]] = ["adapter", "n_samples"]
    timeout = 180
    rounds = 1
    number = 1
    repeat = (5, 15, 2.0)
    warmup_time = 0.05

    def setup(self, adapter: str, n_samples: int) -> None:
        fx = home_fixture(adapter)
        self.adapter: Any = fx.fitted_adapter(epochs=1)  # fitted once per process
        self.X = fx.dataset.X_test
        self.seed = fx.seed("sample:test")

    def time_sample_predictive(self, adapter: str, n_samples: int) -> None:
        self.adapter.sample_predictive(self.X, n_samples=n_samples, seed=self.seed)


class QuickCell:
    """asv: one whole quick-suite cell (fit, sample, metrics, arrays), seed 0, home dataset."""

    params = (ADAPTERS,)
    param_names: ClassVar[list[str]] = ["adapter"]
    timeout = 240
    rounds = 1
    number = 1
    warmup_time = 0
    min_run_count = 1
    repeat = (1, 3, 3.0)  # one cell; more while under 3 s in all

    def setup(self, adapter: str) -> None:
        self.fx = home_fixture(adapter)

    def time_quick_cell(self, adapter: str) -> None:
        outcome = run_quick_cell(self.fx)
        if outcome.status != "ok":
            raise RuntimeError(f"cell failed at {outcome.stage}: {outcome.reason}")
