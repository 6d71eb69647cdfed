"""The bootstrap: fast statistics agree with recomputing on subsets; seeding; coverage."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uqbench.interface import ClassificationSamples, RegressionSamples
from uqbench.metrics import (
    bootstrap_interval,
    calibration_error,
    categorical_nll_loss,
    classwise_ece_error,
    crps_loss,
    ece_error,
    evaluate,
    mce_error,
    rmse_error,
)


def _classification(seed, s=8, n=60, c=4):
    rng = np.random.default_rng(seed)
    logits = 2 * rng.normal(size=(1, n, c)) + 0.5 * rng.normal(size=(s, n, c))
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return ClassificationSamples(p), rng.integers(0, c, n)


def _regression(seed, s=6, n=50, d=2):
    rng = np.random.default_rng(seed)
    loc = rng.normal(size=(1, n, d)) + 0.3 * rng.normal(size=(s, n, d))
    scale = rng.uniform(0.2, 1.0, size=(s, n, d))
    return RegressionSamples(loc, scale), rng.normal(size=(n, d))


@pytest.mark.parametrize(
    ("name", "metric"),
    [
        ("ece_error", lambda s, y: ece_error(s.mean(), y)),
        ("mce_error", lambda s, y: mce_error(s.mean(), y)),
        ("classwise_ece_error", lambda s, y: classwise_ece_error(s.mean(), y)),
        ("nll_loss", lambda s, y: categorical_nll_loss(s.mean(), y)),
        ("mutual_information", lambda s, y: s.mutual_information().mean()),
    ],
)
def test_fast_classification_bootstrap_equals_recomputing_on_subsets(name, metric):
    samples, y = _classification(0)
    fast = {v.name: v for v in evaluate(samples, y, seed=11, n_bootstrap=40)}[name]
    slow = bootstrap_interval(name, metric, samples, y, n_bootstrap=40, seed=11)
    assert fast.value == pytest.approx(slow.value, rel=1e-12, abs=1e-15)
    assert fast.ci_low == pytest.approx(slow.ci_low, rel=1e-9, abs=1e-12)
    assert fast.ci_high == pytest.approx(slow.ci_high, rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(
    ("name", "metric"),
    [
        ("rmse_error", lambda s, y: rmse_error(s.loc, y)),
        ("crps_loss", lambda s, y: crps_loss(s.loc, s.scale, y)),
        ("calibration_error", lambda s, y: calibration_error(s.loc, s.scale, y)),
        ("epistemic_variance", lambda s, y: s.epistemic_variance().sum(-1).mean()),
    ],
)
def test_fast_regression_bootstrap_equals_recomputing_on_subsets(name, metric):
    samples, y = _regression(1)
    fast = {v.name: v for v in evaluate(samples, y, seed=5, n_bootstrap=30)}[name]
    slow = bootstrap_interval(name, metric, samples, y, n_bootstrap=30, seed=5)
    assert fast.value == pytest.approx(slow.value, rel=1e-12, abs=1e-15)
    assert fast.ci_low == pytest.approx(slow.ci_low, rel=1e-9, abs=1e-12)
    assert fast.ci_high == pytest.approx(slow.ci_high, rel=1e-9, abs=1e-12)


def test_same_seed_same_interval_and_other_seed_differs():
    samples, y = _regression(2)
    a = evaluate(samples, y, seed=3, n_bootstrap=50)
    b = evaluate(samples, y, seed=3, n_bootstrap=50)
    c = evaluate(samples, y, seed=4, n_bootstrap=50)
    assert a == b
    assert [v.value for v in a] == [v.value for v in c]
    assert any(x.ci_low != z.ci_low for x, z in zip(a, c, strict=True))


def test_no_bootstrap_gives_nan_intervals():
    samples, y = _classification(3)
    for v in evaluate(samples, y, seed=0, n_bootstrap=0):
        assert np.isfinite(v.value)
        assert math.isnan(v.ci_low) and math.isnan(v.ci_high)


def test_interval_narrows_with_more_points():
    small, y_small = _regression(4, n=40)
    large, y_large = _regression(4, n=1600)
    width = {}
    for key, (samples, y) in {"small": (small, y_small), "large": (large, y_large)}.items():
        v = {m.name: m for m in evaluate(samples, y, seed=0, n_bootstrap=100)}["crps_loss"]
        width[key] = v.ci_high - v.ci_low
    # Standard error shrinks like 1 / sqrt(N): 40x the points, about 6x narrower.
    assert width["large"] < width["small"] / 3


@pytest.mark.parametrize("bad", [1.5, "1", None, True])
def test_invalid_seed(bad):
    samples, y = _classification(5, n=5)
    with pytest.raises(ValueError, match="seed must be an integer"):
        evaluate(samples, y, seed=bad)


def test_invalid_n_bootstrap():
    samples, y = _classification(5, n=5)
    with pytest.raises(ValueError, match="got -1"):
        evaluate(samples, y, seed=0, n_bootstrap=-1)


_MEAN_METRICS = {
    "accuracy_score", "nll_loss", "brier_loss", "gaussian_nll_loss", "crps_loss",
    "interval_width_95", "picp_95", "aleatoric_variance", "epistemic_variance",
    "total_variance", "predictive_entropy", "expected_entropy", "mutual_information",
}  # fmt: skip


@settings(max_examples=20, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 40), st.booleans())
def test_interval_contains_point_estimate_of_mean_metrics(seed, n, classification):
    samples, y = _classification(seed, n=n) if classification else _regression(seed, n=n, d=1)
    values = evaluate(samples, y, seed=seed, n_bootstrap=60)
    checked = 0
    for v in values:
        assert v.ci_low <= v.ci_high
        if v.name in _MEAN_METRICS or v.name.startswith("coverage_"):
            tol = 1e-12 * max(1.0, abs(v.value))
            assert v.ci_low - tol <= v.value <= v.ci_high + tol, v
            checked += 1
    assert checked >= 7
