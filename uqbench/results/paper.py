"""Paper-style tables of regression results: datasets × methods, mean ± s.e. over seeds.

Laid out like Hernández-Lobato & Adams (2015), Table 1 and the tables that follow it: one
block per metric, one row per dataset, one column per method, each entry ``mean ± s.e.``
over the seeds (the published splits on UCI) whose cell succeeded, with ``s.e. = sample
sd (ddof=1) / sqrt(n)``; the best mean of each row is bold in the markdown.

Units: the harness evaluates regression in *original* target units (the samples and
targets are mapped back from the standardized scale before any metric), so RMSE is in the
target's units and the test log-likelihood is per test point, as in the papers. The test
log-likelihood is ``-nll_loss``: the mean over test points (and outputs) of the log density
of the equal-weight mixture of the S Gaussian draws at the target, in nats; the draws'
scales are floored at ``uqbench.metrics.MIN_SCALE`` before taking densities.

::

    write_paper_tables(run_dir)           # -> [run_dir/paper_table.md, run_dir/paper_table.csv]
    paper_table(load_results(run_dir))    # -> DataFrame, rows (metric, dataset, split)
"""

from __future__ import annotations

import fnmatch
import io
import math
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from uqbench import store
from uqbench.metrics import METRICS
from uqbench.results.formatting import DASH, format_mean_se, markdown_table, split_order
from uqbench.results.published import PUBLISHED, PublishedTable, published_comparison

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "PAPER_BLOCKS",
    "UNITS",
    "Block",
    "mark_best",
    "mean_se",
    "paper_markdown",
    "paper_stats",
    "paper_table",
    "published_markdown",
    "seeds_note",
    "wide",
    "write_paper_tables",
]

PAPER_MD = "paper_table.md"
PAPER_CSV = "paper_table.csv"


@dataclass(frozen=True)
class Block:
    """One metric block of a paper table.

    Attributes
    ----------
    label : the block's title, e.g. ``"test LL"``.
    metric : the metric name in ``results.csv``.
    split : the split, or a shell-style pattern (``"ood:*"``: one row per dataset and OOD set).
    negate : report ``-value`` (the test log-likelihood is ``-nll_loss``).
    """

    label: str
    metric: str
    split: str = "test"
    negate: bool = False

    @property
    def higher_is_better(self) -> bool | None:
        spec = METRICS.get(self.metric)
        if spec is None or spec.higher_is_better is None:
            return None
        return spec.higher_is_better != self.negate


# Short names for paper_table(metrics=...): (label, results metric, negate).
ALIASES: dict[str, tuple[str, str, bool]] = {
    "rmse": ("RMSE", "rmse_error", False),
    "nll": ("test LL", "nll_loss", True),
    "ll": ("test LL", "nll_loss", True),
    "test_ll": ("test LL", "nll_loss", True),
    "crps": ("CRPS", "crps_loss", False),
    "calibration": ("calibration error", "calibration_error", False),
    "epistemic_ratio": ("epistemic ratio (OOD / test)", "epistemic_ratio", False),
}

PAPER_BLOCKS: tuple[Block, ...] = (
    Block("RMSE", "rmse_error"),
    Block("test LL", "nll_loss", negate=True),
    Block("calibration error", "calibration_error"),
    Block("epistemic ratio (OOD / test)", "epistemic_ratio", "ood:*"),
    Block("AUROC, epistemic score (OOD vs test)", "auroc_epistemic", "ood:*"),
)

UNITS = {  # of the paper blocks' metrics, for table captions
    "rmse_error": "original target units",
    "nll_loss": "nats per test point, original target units",
    "crps_loss": "original target units",
}

STATS_COLUMNS = ("metric", "split", "dataset", "adapter", "mean", "se", "n", "text", "best")


def _resolve(metrics: Iterable[str | Block], split: str) -> list[Block]:
    blocks = []
    for m in metrics:
        if isinstance(m, Block):
            blocks.append(m)
        elif m in ALIASES:
            label, name, negate = ALIASES[m]
            blocks.append(Block(label, name, split, negate))
        elif m in METRICS:
            blocks.append(Block(m, m, split))
        else:
            raise ValueError(f"unknown metric {m!r}; use a METRICS name or one of {sorted(ALIASES)}")
    return blocks


def regression_datasets(results: pd.DataFrame) -> list[str]:
    """Datasets with ok rows of a regression-only metric, in order of appearance."""
    names = {n for n, spec in METRICS.items() if spec.tasks == frozenset({"regression"})}
    ok = results[(results["status"] == "ok") & results["metric"].isin(names)]
    return list(dict.fromkeys(ok["dataset"]))


def mean_se(df: pd.DataFrame, by: Sequence[str]) -> pd.DataFrame:
    """Mean, s.e. (sd ddof=1 / sqrt n; NaN for n = 1) and n of the finite ``value`` per group."""
    finite = df[np.isfinite(df["value"].to_numpy(dtype=float))]
    g = finite.groupby(list(by), sort=False)["value"].agg(["mean", "std", "count"]).reset_index()
    g["se"] = g["std"] / np.sqrt(g["count"])
    return g.rename(columns={"count": "n"}).drop(columns="std")


def mark_best(stats: pd.DataFrame, by: Sequence[str], key: Callable[[float], float] | None) -> pd.Series:
    """True for the rows whose mean minimises ``key(mean)`` within each group (ties all True)."""
    import pandas as pd

    if key is None or stats.empty:
        return pd.Series(False, index=stats.index)
    score = stats["mean"].map(key)
    best = score.groupby([stats[c] for c in by], sort=False).transform("min")
    return (score == best) & np.isfinite(score)


def paper_stats(results: pd.DataFrame, metrics: Iterable[str | Block] = PAPER_BLOCKS, split: str = "test") -> pd.DataFrame:
    """Tidy mean / s.e. per (metric block, split, dataset, adapter) over seeds.

    Columns :data:`STATS_COLUMNS`: ``metric`` is the block label, ``text`` the
    ``mean ± s.e.`` string, ``best`` whether the mean is the row's best by the metric's
    direction (``METRICS[...].higher_is_better``, flipped for a negated metric; never for a
    metric without a direction). Only ok rows with finite values of regression datasets
    count. ``metrics`` as :func:`paper_table`.
    """
    import pandas as pd

    datasets = regression_datasets(results)
    ok = results[(results["status"] == "ok") & results["dataset"].isin(datasets)]
    adapters = list(dict.fromkeys(ok["adapter"]))
    parts = []
    for block in _resolve(metrics, split):
        rows = ok[ok["metric"] == block.metric]
        rows = rows[[fnmatch.fnmatchcase(s, block.split) for s in rows["split"]]]
        if rows.empty:
            continue
        rows = rows.assign(value=-rows["value"] if block.negate else rows["value"])
        stats = mean_se(rows, ("split", "dataset", "adapter"))
        if stats.empty:
            continue
        stats.insert(0, "metric", block.label)
        stats["text"] = [format_mean_se(m, s) for m, s in zip(stats["mean"], stats["se"], strict=True)]
        direction = block.higher_is_better
        key = None if direction is None else (lambda m: -m) if direction else (lambda m: m)
        stats["best"] = mark_best(stats, ("split", "dataset"), key)
        stats = stats.assign(
            _d=stats["dataset"].map(datasets.index),
            _s=stats["split"].map(split_order),
            _a=stats["adapter"].map(adapters.index),
        ).sort_values(["_d", "_s", "_a"], kind="stable")
        parts.append(stats.drop(columns=["_d", "_s", "_a"]))
    if not parts:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in STATS_COLUMNS})
    return pd.concat(parts, ignore_index=True)[list(STATS_COLUMNS)]


def wide(
    stats: pd.DataFrame,
    index: Sequence[str],
    *,
    bold: bool = False,
    columns: Sequence[str] | None = None,
) -> pd.DataFrame:
    """``stats`` as rows ``index`` × adapter columns of ``text`` (``—`` where missing).

    ``columns``: the adapters, in order (default: those in ``stats``); ``bold`` wraps the
    rows' best entries in ``**``.
    """
    import pandas as pd

    if stats.empty:
        return pd.DataFrame(index=pd.MultiIndex.from_tuples([], names=list(index)))
    text = stats["text"].where(~stats["best"].astype(bool), "**" + stats["text"] + "**") if bold else stats["text"]
    out = stats.assign(text=text).pivot(index=list(index), columns="adapter", values="text")
    rows = list(dict.fromkeys(zip(*(stats[c] for c in index), strict=True)))
    columns = list(dict.fromkeys(stats["adapter"])) if columns is None else list(columns)
    out = out.reindex(index=pd.MultiIndex.from_tuples(rows, names=list(index)), columns=columns)
    out.columns.name = None
    return out.fillna(DASH)


def paper_table(results: pd.DataFrame, metrics: Iterable[str | Block] = ("rmse", "nll"), split: str = "test") -> pd.DataFrame:
    """Datasets × methods table of ``mean ± s.e.`` strings over seeds.

    Parameters
    ----------
    results : a run's results table (:func:`uqbench.store.load_results`).
    metrics : short names (``"rmse"``, ``"nll"``/``"ll"`` -> the test log-likelihood
        ``-nll_loss``, ``"crps"``, ``"calibration"``, ``"epistemic_ratio"``), ``METRICS``
        names (reported as they are) or :class:`Block` objects (which carry their split).
    split : the split (or shell-style pattern, e.g. ``"ood:*"``) of the named metrics.

    Returns
    -------
    DataFrame indexed by (metric, dataset, split), one column per method (order of first
    appearance), ``—`` where a method has no finite value; only regression datasets.
    """
    return wide(paper_stats(results, metrics, split), ("metric", "dataset", "split"))


def seeds_note(stats: pd.DataFrame) -> str:
    """``"n"`` or ``"lo–hi"``: the range of the ``n`` column (seeds per entry)."""
    lo, hi = int(stats["n"].min()), int(stats["n"].max())
    return f"{lo}" if lo == hi else f"{lo}–{hi}"


def paper_markdown(stats: pd.DataFrame, blocks: Sequence[Block] = PAPER_BLOCKS) -> str:
    """The markdown document of :func:`paper_stats` output: one table per metric block."""
    out = [
        "# Regression results: datasets × methods",
        "",
        f"Mean ± standard error over seeds (s.e. = sample sd / √n; n = {seeds_note(stats)} "
        "seeds); best mean per row in **bold**; — no finite value. RMSE and test LL in "
        "original target units; test LL = −NLL, the mean over test points of the log "
        "density of the draws' Gaussian mixture (nats).",
    ]
    directions = {b.label: b.higher_is_better for b in blocks}
    adapters = list(dict.fromkeys(stats["adapter"]))
    for label, sub in stats.groupby("metric", sort=False):
        table = wide(sub, ("dataset", "split"), bold=True, columns=adapters)
        splits = set(sub["split"])
        show_split = splits != {"test"}
        metric = next((b.metric for b in blocks if b.label == label), "")
        note = {True: "higher is better", False: "lower is better"}.get(directions.get(label), "")
        units = UNITS.get(metric, "")
        where = "test split" if not show_split else ", ".join(sorted(splits, key=split_order))
        extra = "; ".join(x for x in (where, units, note) if x)
        out += ["", f"## {label}" + (f" ({metric})" if metric and metric != label else ""), "", extra, ""]
        header = ["dataset", *(["split"] if show_split else []), *table.columns]
        rows = [
            [ds, *([sp] if show_split else []), *vals]
            for (ds, sp), vals in zip(table.index, table.to_numpy().tolist(), strict=True)
        ]
        out.append(markdown_table(header, rows, n_labels=2 if show_split else 1))
    return "\n".join(out) + "\n"


def paper_csv(stats: pd.DataFrame) -> str:
    """CSV of the blocks stacked: columns metric, split, dataset, then one per method."""
    table = wide(stats, ("metric", "dataset", "split")).reset_index()
    table = table[["metric", "split", "dataset", *table.columns[3:]]]
    buf = io.StringIO()
    table.to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue()


def write_paper_tables(run_dir: str | os.PathLike[str], blocks: Sequence[Block] = PAPER_BLOCKS) -> list[Path]:
    """Write ``paper_table.md`` and ``paper_table.csv`` into ``run_dir`` (atomically).

    Blocks: RMSE, test LL, calibration error (test split) and, per OOD set, the epistemic
    ratio and the epistemic AUROC (the UCI ``*-extrapolate`` datasets' ``ood:extrapolate``,
    toy-gap's ``ood:gap`` / ``ood:outside``); blocks without data are left out. The markdown
    ends with our numbers beside the published ones where :mod:`uqbench.results.published` has
    them (:mod:`uqbench.results.published`: MC dropout and the deep ensemble on the UCI sets). Returns the
    paths written; ``[]`` (nothing written) when the run has no regression results.
    """
    run_dir = store.require_run_dir(run_dir)
    stats = paper_stats(store.load_results(run_dir), blocks)
    if stats.empty:
        return []
    md, csv = run_dir / PAPER_MD, run_dir / PAPER_CSV
    text = paper_markdown(stats, blocks)
    published = published_markdown(published_comparison(stats))
    if published:
        text += "\n" + published
    store.write_atomic(md, text)
    store.write_atomic(csv, paper_csv(stats))
    return [md, csv]


def published_markdown(comparison: pd.DataFrame, tables: tuple[PublishedTable, ...] = PUBLISHED) -> str:
    """A markdown section (``## Against published results``) for ``comparison``; ``""`` if empty."""
    if comparison.empty:
        return ""
    out = ["## Against published results", ""]
    for table in tables:
        sub = comparison[comparison["method"] == table.method]
        if sub.empty:
            continue
        out += [
            f"`{table.method}` vs {table.source}. Published protocol: {table.protocol}. "
            f"s.e. = sd / √{table.n_splits}; z = difference / √(s.e.² + s.e.²), conservative "
            "because both use the same splits.",
            "",
        ]
        rows = [
            [r.dataset, r.metric, format_mean_se(r.ours, r.ours_se), format_mean_se(r.published, r.published_se),
             f"{r.difference:+.3g}", DASH if not math.isfinite(r.z) else f"{r.z:+.1f}"]
            for r in sub.itertuples(index=False)
        ]
        out.append(markdown_table(["dataset", "metric", "uqbench", "published", "difference", "z"], rows, n_labels=2))
        out.append("")
    return "\n".join(out)
