"""Cross-framework parity: the same method in PyTorch and in TFP, compared seed by seed.

:func:`parity_table` turns a tidy results table (``results.csv`` of a run that has both
twins on the same datasets and seeds) into one row per method pair, dataset, split and
metric:

- **quality** rows: the mean over seeds of the paired difference ``PyTorch - TFP`` with a
  95% Student-t interval of the per-seed differences (``d_bar ± t(0.975, n-1) s / sqrt(n)``,
  :func:`uqbench.results.stats.paired_interval`).
  A cell seed fixes the data split and both twins' training seeds, so the two values of one
  seed share the split: pairing removes the split-to-split variation that both see. A
  bootstrap over 3-5 seeds has only a handful of distinct resamples and too-narrow
  intervals, hence the t-interval. ``differs`` is True when the interval excludes 0 (needs
  at least 2 seeds; with identical differences across seeds the interval has width 0).
- **speed** rows (``fit_wall_seconds``, ``sample_seconds_per_draw``): the same difference,
  plus ``ratio`` = the median over seeds of ``torch / TFP`` (below 1: TFP is slower). The
  median, not the mean, so that the one-off TensorFlow import timed in the first TFP cell
  of a process does not dominate.

Other timing and memory rows (``fit_cpu_seconds``, ``*_peak_rss_mb``, ``samples_per_second``)
are left out; ``n_parameters`` is kept as a quality row (its difference is 0 when the twins
have the same architecture). Failed cells and NaN values are dropped before pairing; a row
reports how many seeds were paired (``n_seeds``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
import pandas as pd

from uqbench.results.stats import paired_interval

__all__ = ["COLUMNS", "DEFAULT_PAIRS", "SPEED_METRICS", "parity_table"]

DEFAULT_PAIRS: dict[str, str] = {
    "bbb": "tfp-bbb",
    "flipout": "tfp-flipout",
    "lrt": "tfp-lrt",
    "mc-dropout": "tfp-mc-dropout",
    "vae": "tfp-vae",
}
SPEED_METRICS = ("fit_wall_seconds", "sample_seconds_per_draw")
_SKIPPED_RESOURCE_METRICS = frozenset(
    {"fit_cpu_seconds", "fit_peak_rss_mb", "sample_peak_rss_mb", "samples_per_second"}
)
_REQUIRED = ("adapter", "dataset", "seed", "split", "metric", "value")
_KEY = ("dataset", "split", "metric")

COLUMNS = (
    "torch",
    "tfp",
    "dataset",
    "split",
    "metric",
    "kind",
    "n_seeds",
    "torch_mean",
    "tfp_mean",
    "diff",
    "ci_low",
    "ci_high",
    "differs",
    "ratio",
)


def parity_table(results: pd.DataFrame, pairs: Mapping[str, str] | None = None) -> pd.DataFrame:
    """PyTorch-vs-TFP parity of every metric, per method pair and dataset (see the module docstring).

    Parameters
    ----------
    results : tidy results (columns ``adapter``, ``dataset``, ``seed``, ``split``, ``metric``,
        ``value`` and optionally ``status``; one row per measurement).
    pairs : torch adapter name -> TFP adapter name; default :data:`DEFAULT_PAIRS`. Pairs
        absent from ``results`` are skipped.

    Returns
    -------
    DataFrame with columns :data:`COLUMNS`, one row per (pair, dataset, split, metric) with
    at least one seed measured by both twins; ``kind`` is ``"quality"`` or ``"speed"``;
    ``ratio`` is NaN for quality rows.
    """
    if not isinstance(results, pd.DataFrame):
        raise ValueError(f"results must be a pandas DataFrame, got {type(results).__name__}")
    missing = [c for c in _REQUIRED if c not in results.columns]
    if missing:
        raise ValueError(f"results lacks column(s) {missing}; it has {list(results.columns)}")
    pairs = DEFAULT_PAIRS if pairs is None else pairs
    if not isinstance(pairs, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in pairs.items()
    ):
        raise ValueError(f"pairs must map torch adapter names to TFP adapter names, got {pairs!r}")

    rows = results
    if "status" in rows.columns:
        rows = rows[rows["status"].fillna("ok") == "ok"]
    rows = rows[~rows["metric"].isin(_SKIPPED_RESOURCE_METRICS)]
    rows = rows.assign(value=pd.to_numeric(rows["value"], errors="coerce"), seed=rows["seed"].astype(int))
    rows = rows[np.isfinite(rows["value"].to_numpy(dtype=np.float64))]

    out = []
    for torch_name, tfp_name in pairs.items():
        a = rows[rows["adapter"] == torch_name]
        b = rows[rows["adapter"] == tfp_name]
        if a.empty or b.empty:
            continue
        index = [*_KEY, "seed"]
        # A re-run may repeat a cell's rows: keep the last measurement.
        a = a.drop_duplicates(index, keep="last").set_index(index)["value"]
        b = b.drop_duplicates(index, keep="last").set_index(index)["value"]
        joined = pd.concat({"torch": a, "tfp": b}, axis=1, join="inner").reset_index()
        for (dataset, split, metric), g in joined.groupby(list(_KEY), sort=True):
            t, f = g["torch"].to_numpy(np.float64), g["tfp"].to_numpy(np.float64)
            mean, low, high = paired_interval(t - f)
            speed = metric in SPEED_METRICS
            with np.errstate(divide="ignore", invalid="ignore"):
                ratio = float(np.median(t / f)) if speed else math.nan
            out.append(
                {
                    "torch": torch_name,
                    "tfp": tfp_name,
                    "dataset": dataset,
                    "split": split,
                    "metric": metric,
                    "kind": "speed" if speed else "quality",
                    "n_seeds": len(g),
                    "torch_mean": float(t.mean()),
                    "tfp_mean": float(f.mean()),
                    "diff": mean,
                    "ci_low": low,
                    "ci_high": high,
                    "differs": bool(low > 0.0 or high < 0.0),
                    "ratio": ratio,
                }
            )
    return pd.DataFrame(out, columns=list(COLUMNS))
