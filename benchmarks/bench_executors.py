"""Scaling of the executors: the same 16-cell grid with 1 and 2 workers.

Prints, per executor and worker count, the wall time of the whole grid, the speedup over
one process worker, and the per-cell overhead: (wall × workers − Σ cell wall) / cells,
the time a worker spends outside cells (start-up, imports, warm-up, hand-off, writing).
Ratios within one run of this script; run it on an otherwise idle machine::

    .venv/bin/python -m benchmarks.bench_executors [--ray]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from uqbench import store
from uqbench.harness import run_suite
from uqbench.suites import Suite

# 16 cells of similar cost (about 6 s each on one core): long enough that start-up is an
# overhead, not the measurement.
GRID = Suite(
    name="scaling",
    datasets=("toy-gap",),
    seeds=(0, 1, 2, 3, 4, 5, 6, 7),
    n_samples=20,
    adapters=("deterministic", "mc-dropout"),
    dataset_params={"toy-gap": {"epochs": 1000}},
    n_bootstrap=20,
)


def measure(executor: str, workers: int, out: Path) -> tuple[float, float, int]:
    """(grid wall seconds, summed cell wall seconds, cells) of one run."""
    t0 = time.perf_counter()
    result = run_suite(GRID, out=out, executor=executor, workers=workers)
    wall = time.perf_counter() - t0
    if result.exit_code != 0:
        raise SystemExit(f"{executor} x{workers}: {len(result.failures)} cell(s) failed")
    cells = store.read_cells(result.run_dir).values()
    busy = sum(c["times"].get("cell_wall_seconds", 0.0) for c in cells)
    return wall, busy, len(cells)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ray", action="store_true", help="also measure the ray executor (needs uqbench[ray])")
    args = parser.parse_args()
    configs = [("serial", 1), ("process", 1), ("process", 2)]
    if args.ray:
        configs += [("ray", 1), ("ray", 2)]
    with tempfile.TemporaryDirectory() as tmp:
        rows = [(name, workers, *measure(name, workers, Path(tmp) / f"{name}{workers}")) for name, workers in configs]
    base = next(wall for name, workers, wall, _, _ in rows if (name, workers) == ("process", 1))
    print(f"{'executor':<10}{'workers':>8}{'wall s':>9}{'speedup':>9}{'overhead s/cell':>17}")
    for name, workers, wall, busy, n in rows:
        overhead = (wall * workers - busy) / n
        print(f"{name:<10}{workers:>8}{wall:>9.1f}{base / wall:>9.2f}{overhead:>17.2f}")
    print("speedup: wall of process x1 / wall; overhead: (wall x workers - sum of cell walls) / cells")


if __name__ == "__main__":
    main()
