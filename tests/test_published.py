"""Published UCI tables: the sd -> s.e. conversion, the comparison and its markdown."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from uqbench.results.paper import paper_markdown, paper_stats, published_markdown
from uqbench.results.published import (
    GAL2016_DROPOUT,
    PublishedTable,
    published_comparison,
)


def _results(adapter: str, dataset: str, rmse: np.ndarray, nll: np.ndarray) -> list[dict]:
    rows = []
    for seed, (r, n) in enumerate(zip(rmse, nll, strict=True)):
        for metric, value in (("rmse_error", r), ("nll_loss", n)):
            rows.append(dict(adapter=adapter, dataset=dataset, seed=seed, split="test", metric=metric,
                             value=float(value), status="ok"))
    return rows


def test_gal_table_matches_the_paper_standard_errors() -> None:
    # The paper's Table 1 prints s.e. = sd / sqrt(20): Boston RMSE 2.97 ± 0.19, LL -2.46 ± 0.06,
    # yacht RMSE 1.11 ± 0.09 (readme.md sd 0.85, 0.25, 0.38).
    n = math.sqrt(GAL2016_DROPOUT.n_splits)
    assert GAL2016_DROPOUT.values["uci-boston"]["RMSE"][1] / n == pytest.approx(0.19, abs=0.005)
    assert GAL2016_DROPOUT.values["uci-boston"]["test LL"][1] / n == pytest.approx(0.06, abs=0.005)
    assert GAL2016_DROPOUT.values["uci-yacht"]["RMSE"][1] / n == pytest.approx(0.085, abs=0.005)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_comparison_against_a_direct_computation(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = int(rng.integers(2, 21))
    rmse, nll = rng.normal(3.2, 0.8, n), rng.normal(2.5, 0.3, n)
    rows = _results("mc-dropout", "uci-boston", rmse, nll)
    rows += _results("bbb", "uci-boston", rmse + 1, nll + 1)  # no published table for bbb
    rows += _results("ensemble", "uci-yacht", rmse / 2, nll / 2)
    rows += _results("mc-dropout", "toy-gap", rmse, nll)  # no published row for toy-gap
    cmp = published_comparison(paper_stats(pd.DataFrame(rows)))
    assert list(zip(cmp["method"], cmp["dataset"], cmp["metric"], strict=True)) == [
        ("mc-dropout", "uci-boston", "RMSE"), ("mc-dropout", "uci-boston", "test LL"),
        ("ensemble", "uci-yacht", "RMSE"), ("ensemble", "uci-yacht", "test LL")]
    for method, metric, ours, (pub, sd) in (
        ("mc-dropout", "RMSE", rmse, (2.97, 0.85)),
        ("mc-dropout", "test LL", -nll, (-2.46, 0.25)),
        ("ensemble", "RMSE", rmse / 2, (1.58, 0.48)),  # Lakshminarayanan et al. Table 1
        ("ensemble", "test LL", -nll / 2, (-1.18, 0.21)),  # their NLL 1.18 ± 0.21
    ):
        row = cmp[(cmp["metric"] == metric) & (cmp["method"] == method)].iloc[0]
        se_ours = ours.std(ddof=1) / math.sqrt(n)
        se_pub = sd / math.sqrt(20)
        assert row["ours"] == pytest.approx(ours.mean()) and row["n"] == n
        assert row["ours_se"] == pytest.approx(se_ours)
        assert row["published"] == pub and row["published_se"] == pytest.approx(se_pub)
        assert row["z"] == pytest.approx((ours.mean() - pub) / math.sqrt(se_ours**2 + se_pub**2))


def test_zero_published_spread_gives_no_z_and_markdown_shows_it() -> None:
    table = PublishedTable("deterministic", "a test table", "as ours", 20,
                           {"uci-naval": {"RMSE": (0.01, 0.0), "test LL": (3.8, 0.05)}})
    rows = _results("deterministic", "uci-naval", np.array([0.004, 0.006]),
                    np.array([-3.5, -3.7]))
    stats = paper_stats(pd.DataFrame(rows))
    cmp = published_comparison(stats, (table,))
    assert math.isnan(cmp.loc[cmp["metric"] == "RMSE", "z"].iloc[0])
    md = published_markdown(cmp, (table,))
    assert md.startswith("## Against published results")
    line = next(x for x in md.splitlines() if "| uci-naval | RMSE |" in x)
    assert line.endswith("| — |")
    # LL = -NLL = 3.6 ± 0.1; z = -0.2 / sqrt(0.1² + (0.05/√20)²) = -1.99
    assert "| uci-naval | test LL | 3.60 ± 0.10 | 3.800 ± 0.011 | -0.2 | -2.0 |" in md
    assert published_markdown(cmp.iloc[0:0], (table,)) == ""
    assert "Against published" not in paper_markdown(stats)
