"""Tests of the PyTorch-vs-TFP parity table on synthetic results with known differences."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from uqbench.results.parity import COLUMNS, DEFAULT_PAIRS, parity_table
from uqbench.results.stats import paired_interval


def _rows(adapter: str, dataset: str, split: str, metric: str, values: dict[int, float], status: str = "ok") -> list[dict]:
    return [
        {
            "schema_version": 1, "adapter": adapter, "dataset": dataset, "seed": seed, "split": split,
            "metric": metric, "value": value, "ci_low": math.nan, "ci_high": math.nan,
            "status": status, "error": "",
        }
        for seed, value in values.items()
    ]


@pytest.fixture
def results() -> pd.DataFrame:
    rows = []
    # nll: torch - tfp = 1, 2, 3, 4 over seeds 0..3 -> clearly differs.
    rows += _rows("bbb", "toy-gap", "test", "nll_loss", {0: 1.0, 1: 2.0, 2: 3.0, 3: 4.0})
    rows += _rows("tfp-bbb", "toy-gap", "test", "nll_loss", {0: 0.0, 1: 0.0, 2: 0.0, 3: 0.0})
    # rmse: differences +1, -1, +1, -1 -> mean 0, interval straddles 0.
    rows += _rows("bbb", "toy-gap", "test", "rmse_error", {0: 1.0, 1: 0.0, 2: 1.0, 3: 0.0})
    rows += _rows("tfp-bbb", "toy-gap", "test", "rmse_error", {0: 0.0, 1: 1.0, 2: 0.0, 3: 1.0})
    # An OOD split is its own row; seed 3 only in torch (unpaired), seed 2 NaN in tfp.
    rows += _rows("bbb", "toy-gap", "ood:gap", "auroc_epistemic", {0: 0.9, 1: 0.8, 2: 0.7, 3: 0.6})
    rows += _rows("tfp-bbb", "toy-gap", "ood:gap", "auroc_epistemic", {0: 0.7, 1: 0.7, 2: math.nan})
    # Speed: torch / tfp per seed = 0.5, 0.5, 5 -> median 0.5 (the outlier is ignored).
    rows += _rows("bbb", "toy-gap", "fit", "fit_wall_seconds", {0: 1.0, 1: 1.0, 2: 10.0, 3: 1.0})
    rows += _rows("tfp-bbb", "toy-gap", "fit", "fit_wall_seconds", {0: 2.0, 1: 2.0, 2: 2.0, 3: 2.0})
    rows += _rows("bbb", "toy-gap", "fit", "fit_cpu_seconds", {0: 1.0, 1: 1.0})
    rows += _rows("tfp-bbb", "toy-gap", "fit", "fit_cpu_seconds", {0: 2.0, 1: 2.0})
    rows += _rows("bbb", "toy-gap", "fit", "n_parameters", {0: 302.0, 1: 302.0})
    rows += _rows("tfp-bbb", "toy-gap", "fit", "n_parameters", {0: 302.0, 1: 302.0})
    # A failed TFP cell (seed 1 on digits) is dropped; one seed left -> no interval.
    rows += _rows("mc-dropout", "digits", "test", "accuracy_score", {0: 0.9, 1: 0.8})
    rows += _rows("tfp-mc-dropout", "digits", "test", "accuracy_score", {0: 0.85})
    rows += _rows("tfp-mc-dropout", "digits", "fit", "", {1: math.nan}, status="failed")
    # An adapter without its twin produces nothing.
    rows += _rows("flipout", "digits", "test", "accuracy_score", {0: 0.9, 1: 0.8})
    return pd.DataFrame(rows)


def _row(table: pd.DataFrame, **key: str) -> pd.Series:
    hit = table
    for column, value in key.items():
        hit = hit[hit[column] == value]
    assert len(hit) == 1, f"{key}: {len(hit)} rows"
    return hit.iloc[0]


def test_paired_interval_matches_scipy_paired_t_test() -> None:
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=7), rng.normal(size=7) + 0.3
    mean, low, high = paired_interval(a - b)
    ci = stats.ttest_rel(a, b).confidence_interval(0.95)
    assert mean == pytest.approx(np.mean(a - b))
    assert (low, high) == pytest.approx((ci.low, ci.high))


def test_known_difference_gives_the_t_interval_and_is_flagged(results: pd.DataFrame) -> None:
    table = parity_table(results)
    assert list(table.columns) == list(COLUMNS)
    row = _row(table, metric="nll_loss")
    # d = 1..4: mean 2.5, sd sqrt(5/3), t(0.975, 3) = 3.182446...
    half = stats.t.ppf(0.975, 3) * math.sqrt(5.0 / 3.0) / 2.0
    assert (row["torch"], row["tfp"], row["dataset"], row["split"]) == ("bbb", "tfp-bbb", "toy-gap", "test")
    assert row["kind"] == "quality" and row["n_seeds"] == 4
    assert row["diff"] == pytest.approx(2.5)
    assert (row["ci_low"], row["ci_high"]) == pytest.approx((2.5 - half, 2.5 + half))
    assert row["torch_mean"] == pytest.approx(2.5) and row["tfp_mean"] == 0.0
    assert bool(row["differs"]) and math.isnan(row["ratio"])


def test_zero_mean_difference_is_not_flagged(results: pd.DataFrame) -> None:
    row = _row(parity_table(results), metric="rmse_error")
    assert row["diff"] == pytest.approx(0.0)
    assert row["ci_low"] < 0.0 < row["ci_high"]
    assert not bool(row["differs"])


def test_pairs_only_seeds_measured_by_both(results: pd.DataFrame) -> None:
    row = _row(parity_table(results), metric="auroc_epistemic")
    assert row["split"] == "ood:gap"
    assert row["n_seeds"] == 2  # seed 2 NaN in TFP, seed 3 missing there
    assert row["diff"] == pytest.approx(((0.9 - 0.7) + (0.8 - 0.7)) / 2)


def test_speed_ratio_is_median_of_per_seed_ratios(results: pd.DataFrame) -> None:
    table = parity_table(results)
    row = _row(table, metric="fit_wall_seconds")
    assert row["kind"] == "speed"
    assert row["ratio"] == pytest.approx(0.5)
    assert row["diff"] == pytest.approx((-1 - 1 + 8 - 1) / 4)
    assert "fit_cpu_seconds" not in set(table["metric"])
    n_params = _row(table, metric="n_parameters")
    assert n_params["kind"] == "quality" and n_params["diff"] == 0.0 and not bool(n_params["differs"])


def test_failed_cells_dropped_and_one_seed_has_no_interval(results: pd.DataFrame) -> None:
    table = parity_table(results)
    row = _row(table, torch="mc-dropout", metric="accuracy_score")
    assert row["n_seeds"] == 1 and row["diff"] == pytest.approx(0.05)
    assert math.isnan(row["ci_low"]) and math.isnan(row["ci_high"]) and not bool(row["differs"])
    assert "flipout" not in set(table["torch"])
    assert set(table["torch"]) <= set(DEFAULT_PAIRS)


def test_custom_pairs_and_empty_result(results: pd.DataFrame) -> None:
    only = parity_table(results, pairs={"mc-dropout": "tfp-mc-dropout"})
    assert set(only["torch"]) == {"mc-dropout"}
    empty = parity_table(results, pairs={"vae": "tfp-vae"})
    assert empty.empty and list(empty.columns) == list(COLUMNS)


def test_bad_input_is_rejected(results: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="lacks column"):
        parity_table(results.drop(columns=["seed"]))
    with pytest.raises(ValueError, match="DataFrame"):
        parity_table(results.to_dict())  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="pairs"):
        parity_table(results, pairs={"bbb": 3})  # type: ignore[dict-item]
