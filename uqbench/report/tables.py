"""The report's paper-style and posterior-fidelity tables, as page data.

The same numbers as ``paper_table.md`` (:func:`uqbench.results.paper.paper_stats`, from the
results table) and ``fidelity.md`` (:func:`uqbench.results.fidelity.fidelity_stats`, from the run's
``fidelity.csv``: the report reads the tidy file ``uqbench run`` / ``uqbench report``
wrote rather than recomputing W1 from the arrays). One block per metric; rows
(dataset, split); one column per adapter, each entry ``{"text", "mean", "best"}`` or None.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["fidelity_section", "papers_section"]


def _block_rows(stats: pd.DataFrame, adapters: Sequence[str]) -> list[dict[str, Any]]:
    """Rows (dataset, split) in order of appearance, one entry per adapter (None if absent)."""
    cells: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for r in stats.itertuples(index=False):
        mean = float(r.mean)
        cells.setdefault((r.dataset, r.split), {})[r.adapter] = {
            "text": r.text,
            "mean": mean if np.isfinite(mean) else None,
            "n": int(r.n),
            "best": bool(r.best),
        }
    return [
        {"dataset": d, "split": s, "cells": [by_adapter.get(a) for a in adapters]}
        for (d, s), by_adapter in cells.items()
    ]


def _columns(stats: pd.DataFrame, adapters: Sequence[str]) -> list[str]:
    """The adapters of ``stats``: run order first, then any others sorted."""
    present = set(stats["adapter"])
    return [a for a in adapters if a in present] + sorted(present - set(adapters))


def papers_section(results: pd.DataFrame, adapters: Sequence[str]) -> dict[str, Any]:
    """Blocks of :data:`uqbench.results.paper.PAPER_BLOCKS`; ``{}`` without regression results."""
    from uqbench.results.paper import PAPER_BLOCKS, UNITS, paper_stats, seeds_note

    stats = paper_stats(results)
    if stats.empty:
        return {}
    columns = _columns(stats, adapters)
    blocks = []
    for block in PAPER_BLOCKS:
        sub = stats[stats["metric"] == block.label]
        if sub.empty:
            continue
        blocks.append({
            "label": block.label,
            "metric": block.metric,
            "higher_is_better": block.higher_is_better,
            "units": UNITS.get(block.metric, ""),
            "show_split": set(sub["split"]) != {"test"},
            "columns": columns,
            "rows": _block_rows(sub, columns),
        })
    return {"n_seeds": seeds_note(stats), "blocks": blocks}


def fidelity_section(run_dir: Path, results: pd.DataFrame, adapters: Sequence[str]) -> dict[str, Any]:
    """The fidelity blocks from ``run_dir/fidelity.csv``; ``{}`` when the run has none.

    A ``fidelity.csv`` that cannot be read as the tidy table (missing columns) is treated as
    absent rather than failing the whole report.
    """
    import pandas as pd

    from uqbench.results.fidelity import (
        COLUMNS,
        FIDELITY_CSV,
        FIDELITY_METRICS,
        REFERENCE,
        fidelity_stats,
        reference_diagnostics,
        unconverged_references,
    )
    from uqbench.results.paper import seeds_note

    path = Path(run_dir) / FIDELITY_CSV
    if not path.is_file():
        return {}
    try:
        table = pd.read_csv(path, dtype={"adapter": str, "dataset": str, "split": str, "metric": str})
    except (OSError, ValueError, pd.errors.ParserError):
        return {}
    if not set(COLUMNS) <= set(table.columns) or table.empty:
        return {}
    table = table.astype({"value": float})
    stats = fidelity_stats(table)
    columns = _columns(stats, adapters)
    blocks = []
    for metric, sub in stats.groupby("metric", sort=False):
        description = FIDELITY_METRICS.get(metric, ("", None))
        blocks.append({
            "label": metric,
            "metric": metric,
            "description": description[0],
            "target": description[1],
            "show_split": True,
            "columns": columns,
            "rows": _block_rows(sub, columns),
        })
    return {
        "reference": REFERENCE,
        "n_seeds": seeds_note(stats),
        "blocks": blocks,
        "diagnostics": reference_diagnostics(results, REFERENCE),
        "unconverged": unconverged_references(results, REFERENCE),
    }

