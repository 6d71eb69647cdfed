"""evaluate / curves / METRICS: names, agreement with the individual functions, dispatch."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from uqbench.interface import ClassificationSamples, ReconstructionSamples, RegressionSamples
from uqbench.metrics import (
    COVERAGE_LEVELS,
    METRICS,
    MetricSpec,
    MetricValue,
    accuracy_score,
    brier_loss,
    calibration_error,
    categorical_nll_loss,
    classwise_ece_error,
    crps_loss,
    curves,
    ece_error,
    evaluate,
    evaluate_ood,
    gaussian_nll_loss,
    interval_coverage,
    interval_width,
    mce_error,
    miscalibration_area,
    mixture_nll_loss,
    picp,
    reliability_curve,
    rmse_error,
    sharpness,
)


def _classification(seed, s=12, n=80, c=5, dtype=np.float64):
    rng = np.random.default_rng(seed)
    logits = 2 * rng.normal(size=(1, n, c)) + 0.7 * rng.normal(size=(s, n, c))
    p = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    return ClassificationSamples(p.astype(dtype)), rng.integers(0, c, n)


def _regression(seed, s=10, n=70, d=2):
    rng = np.random.default_rng(seed)
    loc = rng.normal(size=(1, n, d)) + 0.4 * rng.normal(size=(s, n, d))
    scale = rng.uniform(0.1, 1.0, size=(s, n, d))
    return RegressionSamples(loc, scale), rng.normal(size=(n, d))


def _names(task, kinds):
    return [n for n, spec in METRICS.items() if task in spec.tasks and spec.kind in kinds]


def test_classification_evaluate_matches_functions():
    samples, y = _classification(0, dtype=np.float32)
    values = {v.name: v for v in evaluate(samples, y, seed=0, n_bootstrap=20)}
    assert list(values) == _names("classification", {"point", "uncertainty", "curve"})
    p = samples.mean()
    expected = {
        "accuracy_score": accuracy_score(p, y),
        "nll_loss": categorical_nll_loss(p, y),
        "brier_loss": brier_loss(p, y),
        "ece_error": ece_error(p, y),
        "classwise_ece_error": classwise_ece_error(p, y),
        "mce_error": mce_error(p, y),
        "aleatoric_variance": samples.aleatoric_variance().mean(),
        "epistemic_variance": samples.epistemic_variance().mean(),
        "total_variance": samples.total_variance().mean(),
        "predictive_entropy": samples.predictive_entropy().mean(),
        "expected_entropy": samples.expected_entropy().mean(),
        "mutual_information": samples.mutual_information().mean(),
    }
    assert set(values) == set(expected)
    for name, value in expected.items():
        assert values[name].value == pytest.approx(value, rel=1e-12, abs=1e-15), name
        assert isinstance(values[name], MetricValue)
        assert values[name].ci_low <= values[name].ci_high


def test_regression_evaluate_matches_functions():
    samples, y = _regression(1)
    loc, scale = samples.loc, samples.scale
    values = {v.name: v for v in evaluate(samples, y, seed=1, n_bootstrap=20)}
    assert list(values) == _names("regression", {"point", "uncertainty", "curve"})
    coverage = interval_coverage(loc, scale, y)
    expected = {
        "rmse_error": rmse_error(loc, y),
        "nll_loss": mixture_nll_loss(loc, scale, y),
        "gaussian_nll_loss": gaussian_nll_loss(loc, scale, y),
        "crps_loss": crps_loss(loc, scale, y),
        **{f"coverage_{lv:.2f}": c for lv, c in zip(COVERAGE_LEVELS, coverage, strict=True)},
        "calibration_error": calibration_error(loc, scale, y),
        "miscalibration_area": miscalibration_area(loc, scale, y),
        "picp_95": picp(loc, scale, y),
        "interval_width_95": interval_width(loc, scale),
        "sharpness": sharpness(loc, scale),
        "aleatoric_variance": samples.aleatoric_variance().sum(-1).mean(),
        "epistemic_variance": samples.epistemic_variance().sum(-1).mean(),
        "total_variance": samples.total_variance().sum(-1).mean(),
    }
    assert set(values) == set(expected)
    for name, value in expected.items():
        assert values[name].value == pytest.approx(value, rel=1e-12, abs=1e-15), name
    assert values["picp_95"].value == values["coverage_0.95"].value


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**32 - 1), st.booleans())
def test_uncertainty_invariants(seed, classification):
    samples, y = _classification(seed, n=20) if classification else _regression(seed, n=20)
    v = {m.name: m.value for m in evaluate(samples, y, seed=0, n_bootstrap=5)}
    assert v["total_variance"] == pytest.approx(
        v["aleatoric_variance"] + v["epistemic_variance"], rel=1e-10
    )
    assert v["epistemic_variance"] >= 0
    if classification:
        assert v["mutual_information"] >= 0
        assert v["predictive_entropy"] == pytest.approx(
            v["expected_entropy"] + v["mutual_information"], rel=1e-10
        )


def test_all_values_finite_and_every_registered_name_is_emitted():
    emitted = set()
    for samples, y in (_classification(2), _regression(3)):
        values = evaluate(samples, y, seed=0, n_bootstrap=10)
        values += evaluate_ood(samples, samples.subset(np.arange(30)), seed=0, n_bootstrap=10)
        for v in values:
            assert np.isfinite([v.value, v.ci_low, v.ci_high]).all(), v
            assert samples.task in METRICS[v.name].tasks
            emitted.add(v.name)
    # Reconstruction's names: tests/harness/test_reconstruction_cells.py.
    assert emitted == {n for n, spec in METRICS.items() if spec.tasks - {"reconstruction"}}


def test_registry_specs():
    assert len(METRICS) == len({spec.name for spec in METRICS.values()})
    for name, spec in METRICS.items():
        assert isinstance(spec, MetricSpec)
        assert spec.name == name
        assert spec.kind in {"point", "ood", "uncertainty", "curve"}
        assert spec.tasks and spec.tasks <= {"classification", "regression", "reconstruction"}
        assert len(spec.definition) > 40
        if name.endswith("_score"):
            assert spec.higher_is_better is True
        if name.endswith(("_error", "_loss")):
            assert spec.higher_is_better is False
    assert [n for n in METRICS if n.startswith("coverage_")] == [
        f"coverage_{lv:.2f}" for lv in COVERAGE_LEVELS
    ]


def test_curves():
    samples, y = _classification(4)
    out = curves(samples, y)
    ref = reliability_curve(samples.mean(), y)
    assert set(out) == {f"reliability_{k}" for k in ref}
    for k, v in ref.items():
        np.testing.assert_array_equal(out[f"reliability_{k}"], v)
    assert out["reliability_counts"].sum() == len(y)

    samples, y = _regression(5)
    out = curves(samples, y)
    np.testing.assert_array_equal(out["coverage_expected"], COVERAGE_LEVELS)
    np.testing.assert_array_equal(
        out["coverage_observed"], interval_coverage(samples.loc, samples.scale, y)
    )


def test_dispatch_errors():
    recon = ReconstructionSamples(np.zeros((2, 3, 4)), np.zeros((2, 3, 2)))
    with pytest.raises(ValueError, match="pass X="):
        evaluate(recon, None, seed=0)
    with pytest.raises(ValueError, match="ndarray"):
        evaluate(np.zeros((2, 3, 4)), None, seed=0)
    samples, y = _regression(6)
    with pytest.raises(ValueError, match="float"):
        evaluate(samples, y.astype(int), seed=0)
    samples, y = _classification(6)
    with pytest.raises(ValueError, match="integer"):
        evaluate(samples, y.astype(float), seed=0)
