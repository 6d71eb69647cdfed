"""Reading a finished run directory: every table and page made from it.

>>> from uqbench.results import write_outputs
>>> write_outputs("reports/run-...", console=Console())   # tables + index.html

The modules, each reading only what :mod:`uqbench.store` wrote:

- :mod:`~uqbench.results.summary` -- the per-cell summary printed after a run (``summary.txt``);
- :mod:`~uqbench.results.parity` -- PyTorch vs TFP twins of one method (``parity.csv``);
- :mod:`~uqbench.results.paper` -- the papers' table layout (``paper_table.md/.csv``), with
  :mod:`~uqbench.results.published` holding the published numbers it is checked against;
- :mod:`~uqbench.results.fidelity` -- each method against the HMC reference (``fidelity.md/.csv``);
- :mod:`~uqbench.results.compare` -- the regression gate of ``uqbench compare``;
- :mod:`~uqbench.results.formatting` and :mod:`~uqbench.results.stats` -- the one number
  formatter and markdown writer, and the t-tests and intervals (``scipy.stats``) they all use.

The HTML page itself is :mod:`uqbench.report`. Heavy modules (pandas, matplotlib) are imported
inside :func:`write_outputs`, so importing this package is cheap.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["write_outputs"]


def write_outputs(run_dir: os.PathLike[str] | str, *, console: Any = None,
                  cells: dict[str, Any] | None = None) -> list[Path]:
    """Write every output of a finished run into ``run_dir`` and return their paths.

    With ``cells`` (the cell records of the session that just ran, as returned by the
    harness) the summary is printed to ``console`` and saved (``summary.txt``), and the
    twins' parity table is saved (``parity.csv``; printed too for the ``parity`` suite).
    Then, always: the paper tables, the fidelity tables when the run has an HMC reference,
    and the HTML report. Each path written is printed to ``console`` (a ``rich`` console;
    ``None`` prints to stdout). Unwritable files raise :class:`uqbench.store.StoreWriteError`.
    """
    from uqbench.report import write_report
    from uqbench.results.fidelity import write_fidelity
    from uqbench.results.paper import write_paper_tables

    def say(text: str) -> None:
        if console is None:
            print(text, flush=True)
        else:
            console.print(text, highlight=False)

    written: list[Path] = []
    if cells is not None:
        written += _write_summary(run_dir, console, cells, say)
    paper = write_paper_tables(run_dir)
    if paper:
        say(f"paper table: {paper[0]}")
        written += paper
    fidelity = write_fidelity(run_dir)
    if fidelity is not None:
        say(f"posterior fidelity (vs hmc): {fidelity}")
        written.append(Path(fidelity))
    report = Path(write_report(run_dir))
    say(f"report: {report}")
    written.append(report)
    return written


def _write_summary(run_dir: os.PathLike[str] | str, console: Any, cells: dict[str, Any],
                   say: Any) -> list[Path]:
    """summary.txt (printed too) and, when the run has both twins of a method, parity.csv."""
    from uqbench import store
    from uqbench.results import parity, summary

    record = store.read_run_json(run_dir)
    order = {"datasets": record["suite"]["datasets"], "adapters": record["suite"]["adapters"]}
    results = store.load_results(run_dir)
    text = summary.summary_text(results, cells, **order)
    if console is not None:
        console.print()
        summary.print_summary(console, results, cells, **order)
    else:
        print(text, flush=True)
    written = [store.write_atomic(Path(run_dir, store.SUMMARY_TXT), text)]
    say(f"results: {Path(run_dir, store.RESULTS_CSV)}")
    table = parity.parity_table(results)
    if not table.empty:
        path = store.write_atomic(Path(run_dir, "parity.csv"), table.to_csv(index=False))
        if record["suite"]["name"] == "parity" and console is not None:
            console.print(summary.parity_renderable(table))
        say(f"parity (PyTorch vs TFP twins): {path}")
        written.append(path)
    return written
