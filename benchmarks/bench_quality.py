"""asv: calibration and uncertainty quality of every registered adapter, as ``track_`` values.

A calibration regression then shows in the asv graphs as a slowdown does. The values are
those ``uqbench run`` writes to ``results.csv`` for the quick suite's cell of seed 0
(``uqbench run --seeds 1``): the same planning, data loading, hyperparameters, seeds,
harness (``run_cell``) and metrics (:mod:`uqbench.metrics`); see :mod:`benchmarks._cells`.
Each dataset's cells are computed once per ``asv run``, in a ``setup_cache`` shared by
the classes of that dataset (asv runs every ``track_`` in its own process), for all
adapters in one process, in the harness's order.

- ``QualityDigits.track_ece`` / ``track_nll``: top-label ECE (15 bins) and NLL (nats) on
  the digits test split (classification adapters).
- ``QualityToyGapOOD.track_epistemic_ratio_outside``: mean epistemic variance on toy-gap's
  ``outside`` OOD set over that on the test split (higher: the model knows it is
  extrapolating). Skipped where it is undefined (no epistemic variance: ``deterministic``,
  ``output-only``).
- ``QualityToyGap.track_coverage_error``: mean |observed coverage - level| of central
  intervals at levels 0.05 ... 0.95 on the toy-gap test split (``calibration_error``;
  0 is calibrated).

``python -m benchmarks.bench_quality`` prints the same values as a table.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

from benchmarks._cells import ADAPTERS, quality_cells, quality_value

Cells = dict[str, dict[str, Any]]


# Module-level setup_cache functions, shared through staticmethod: asv keys a setup_cache by
# its source location, so every class using one of these computes the cells once.
def digits_cells() -> Cells:
    return quality_cells("digits", ("classification",))


def toy_gap_cells() -> Cells:
    return quality_cells("toy-gap", ("regression",))


digits_cells.timeout = 900  # type: ignore[attr-defined]
toy_gap_cells.timeout = 900  # type: ignore[attr-defined]


class QualityDigits:
    """asv: ECE and NLL on the digits test split (quick-suite cell, seed 0)."""

    params = (ADAPTERS,)
    param_names: ClassVar[list[str]] = ["adapter"]
    timeout = 120
    setup_cache = staticmethod(digits_cells)

    def setup(self, cells: Cells, adapter: str) -> None:
        quality_value(cells, adapter, "test/ece_error")  # skips / fails here, not in track_

    def track_ece(self, cells: Cells, adapter: str) -> float:
        return quality_value(cells, adapter, "test/ece_error")

    track_ece.unit = "ECE"  # type: ignore[attr-defined]

    def track_nll(self, cells: Cells, adapter: str) -> float:
        return quality_value(cells, adapter, "test/nll_loss")

    track_nll.unit = "nats"  # type: ignore[attr-defined]


class QualityToyGap:
    """asv: coverage error of the central intervals on the toy-gap test split (seed 0)."""

    params = (ADAPTERS,)
    param_names: ClassVar[list[str]] = ["adapter"]
    timeout = 120
    setup_cache = staticmethod(toy_gap_cells)

    def setup(self, cells: Cells, adapter: str) -> None:
        quality_value(cells, adapter, "test/calibration_error")

    def track_coverage_error(self, cells: Cells, adapter: str) -> float:
        return quality_value(cells, adapter, "test/calibration_error")

    track_coverage_error.unit = "|coverage - level|"  # type: ignore[attr-defined]


class QualityToyGapOOD:
    """asv: epistemic ratio of toy-gap's ``outside`` set over the test split (seed 0).

    Skipped for adapters whose ratio is undefined (NaN: no epistemic variance on the test
    split, e.g. ``deterministic`` and ``output-only``).
    """

    params = (ADAPTERS,)
    param_names: ClassVar[list[str]] = ["adapter"]
    timeout = 120
    setup_cache = staticmethod(toy_gap_cells)

    def setup(self, cells: Cells, adapter: str) -> None:
        if math.isnan(quality_value(cells, adapter, "ood:outside/epistemic_ratio")):
            raise NotImplementedError(f"{adapter}: no epistemic variance, the ratio is undefined")

    def track_epistemic_ratio_outside(self, cells: Cells, adapter: str) -> float:
        return quality_value(cells, adapter, "ood:outside/epistemic_ratio")

    track_epistemic_ratio_outside.unit = "ratio"  # type: ignore[attr-defined]


TRACKED = {
    "digits": (("classification",), {"ece": "test/ece_error", "nll": "test/nll_loss"}),
    "toy-gap": (
        ("regression",),
        {"epistemic_ratio_outside": "ood:outside/epistemic_ratio", "coverage_error": "test/calibration_error"},
    ),
}


def main() -> None:
    """Print every tracked value (one process, as ``setup_cache`` computes them)."""
    for dataset, (modes, metrics) in TRACKED.items():
        cells = quality_cells(dataset, modes)
        print(f"{dataset}: " + ", ".join(metrics))
        for adapter in ADAPTERS:
            record = cells.get(adapter, {"status": "not run (unavailable or opt-in)", "values": {}})
            if record["status"] != "ok":
                print(f"  {adapter:<15} {record['status']}")
                continue
            print(f"  {adapter:<15} " + "  ".join(f"{record['values'].get(k, float('nan')):.6g}" for k in metrics.values()))


if __name__ == "__main__":
    main()
