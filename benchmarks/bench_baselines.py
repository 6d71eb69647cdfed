"""Speed of the sampling and post-hoc baselines beside the others, in one serial run.

Runs the quick suite's cells (toy-gap and digits, 3 seeds, the quick budgets) of
``deterministic``, ``mc-dropout``, ``bbb``, ``ensemble``, ``swag``, ``sgld``, ``sghmc`` and
``laplace`` one after another in this process's harness (serial executor: no neighbour
shares the core), then prints per dataset and adapter the median fit wall time as a
ratio to ``deterministic``'s in the same run, and the median sampling time per draw
(``sample_seconds_per_draw``: drawing S functions on the test split, per draw) as a ratio too. Ratios, not seconds: run it on
an otherwise idle machine and quote the machine::

    .venv/bin/python -m benchmarks.bench_baselines
"""

from __future__ import annotations

import argparse
import tempfile

from uqbench import store
from uqbench.harness import run_suite
from uqbench.registry import adapter_info
from uqbench.suites import SUITES

ADAPTERS = ("deterministic", "mc-dropout", "bbb", "ensemble", "swag", "sgld", "sghmc", "laplace")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds per dataset (default 3, the quick suite's)")
    args = parser.parse_args()
    adapters = tuple(a for a in ADAPTERS if adapter_info(a).available)
    suite = SUITES["quick"].replace(adapters=adapters, seeds=tuple(range(args.seeds)))
    with tempfile.TemporaryDirectory() as out:
        result = run_suite(suite, out=out, executor="serial")
        if result.exit_code != 0:
            raise SystemExit(f"{len(result.failures)} cell(s) failed")
        df = store.load_results(result.run_dir)
    ok = df[df["status"] == "ok"]
    fit = ok[ok["metric"] == "fit_wall_seconds"].groupby(["dataset", "adapter"])["value"].median()
    draw = ok[ok["metric"] == "sample_seconds_per_draw"]
    draw = draw.groupby(["dataset", "adapter"])["value"].median()
    print(f"{'dataset':<9} {'adapter':<14} {'fit / det':>10} {'draw / det':>11}")
    for dataset in suite.datasets:
        base_fit, base_draw = fit[(dataset, "deterministic")], draw[(dataset, "deterministic")]
        for adapter in adapters:
            print(f"{dataset:<9} {adapter:<14} {fit[(dataset, adapter)] / base_fit:>10.2f} "
                  f"{draw[(dataset, adapter)] / base_draw:>11.2f}")


if __name__ == "__main__":
    main()
