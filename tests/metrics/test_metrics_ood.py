"""OOD separation metrics against scikit-learn; evaluate_ood end to end."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import average_precision_score, roc_auc_score, roc_curve

from uqbench.interface import ClassificationSamples, RegressionSamples
from uqbench.metrics import (
    METRICS,
    aupr_score,
    auroc_score,
    epistemic_ratio,
    evaluate_ood,
    fpr_at_tpr_error,
    ood_scores,
)


def _sklearn(scores_in, scores_ood):
    y = np.concatenate([np.zeros(len(scores_in)), np.ones(len(scores_ood))])
    s = np.concatenate([scores_in, scores_ood])
    fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
    return roc_auc_score(y, s), average_precision_score(y, s), fpr[tpr >= 0.95].min()


@st.composite
def score_sets(draw):
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    n_in, n_ood = draw(st.integers(1, 60)), draw(st.integers(1, 60))
    shift = draw(st.sampled_from([0.0, 0.5, 3.0]))
    s_in, s_ood = rng.normal(size=n_in), rng.normal(size=n_ood) + shift
    if draw(st.booleans()):  # heavy ties, within and across the two sets
        s_in, s_ood = np.round(s_in), np.round(s_ood)
    return s_in, s_ood


@settings(max_examples=60, deadline=None)
@given(score_sets())
def test_against_sklearn(data):
    s_in, s_ood = data
    auroc, ap, fpr95 = _sklearn(s_in, s_ood)
    assert auroc_score(s_in, s_ood) == pytest.approx(auroc, abs=1e-12)
    assert aupr_score(s_in, s_ood) == pytest.approx(ap, abs=1e-12)
    assert fpr_at_tpr_error(s_in, s_ood) == pytest.approx(fpr95, abs=1e-12)


def test_fpr_at_other_tpr():
    rng = np.random.default_rng(0)
    s_in, s_ood = rng.normal(size=50), rng.normal(size=30) + 1
    y = np.r_[np.zeros(50), np.ones(30)]
    fpr, tpr, _ = roc_curve(y, np.r_[s_in, s_ood], drop_intermediate=False)
    assert fpr_at_tpr_error(s_in, s_ood, tpr=0.5) == pytest.approx(fpr[tpr >= 0.5].min())


def test_separable_and_identical_scores():
    assert auroc_score(np.zeros(5), np.ones(3)) == 1.0
    assert aupr_score(np.zeros(5), np.ones(3)) == 1.0
    assert fpr_at_tpr_error(np.zeros(5), np.ones(3)) == 0.0
    assert auroc_score(np.ones(5), np.zeros(3)) == 0.0
    assert auroc_score(np.zeros(5), np.zeros(3)) == 0.5
    assert aupr_score(np.zeros(5), np.zeros(3)) == pytest.approx(3 / 8)
    assert fpr_at_tpr_error(np.zeros(5), np.zeros(3)) == 1.0


def test_epistemic_ratio():
    assert epistemic_ratio(np.array([1.0, 3.0]), np.array([4.0, 8.0, 6.0])) == pytest.approx(3.0)
    assert math.isnan(epistemic_ratio(np.zeros(4), np.ones(2)))


def test_invalid_scores():
    with pytest.raises(ValueError, match="finite"):
        auroc_score(np.array([np.nan]), np.ones(2))
    with pytest.raises(ValueError, match=r"shape \(0,\)"):
        aupr_score(np.array([]), np.ones(2))
    with pytest.raises(ValueError, match="got 0"):
        fpr_at_tpr_error(np.ones(2), np.ones(2), tpr=0)


def _ood_names():
    return [name for name, spec in METRICS.items() if spec.kind == "ood" and "regression" in spec.tasks]


def test_evaluate_ood_regression_matches_functions():
    rng = np.random.default_rng(1)
    s, n_in, n_ood = 20, 80, 50
    loc_in = rng.normal(size=(1, n_in, 2)) + 0.2 * rng.normal(size=(s, n_in, 2))
    loc_ood = rng.normal(size=(1, n_ood, 2)) + 0.6 * rng.normal(size=(s, n_ood, 2))
    samples_in = RegressionSamples(loc_in, rng.uniform(0.1, 1.0, size=(s, n_in, 2)))
    samples_ood = RegressionSamples(loc_ood, rng.uniform(0.1, 1.0, size=(s, n_ood, 2)))
    values = {v.name: v for v in evaluate_ood(samples_in, samples_ood, seed=0, n_bootstrap=50)}
    assert list(values) == _ood_names()
    score_in, score_ood = ood_scores(samples_in), ood_scores(samples_ood)
    # Scores are the containers' variances summed over outputs.
    np.testing.assert_allclose(score_in["epistemic"], np.var(loc_in, axis=0).sum(-1))
    np.testing.assert_allclose(score_in["total"], samples_in.total_variance().sum(-1))
    np.testing.assert_allclose(score_in["aleatoric"], samples_in.aleatoric_variance().sum(-1))
    for key in ("epistemic", "total", "aleatoric"):
        auroc, ap, fpr95 = _sklearn(score_in[key], score_ood[key])
        assert values[f"auroc_{key}"].value == pytest.approx(auroc, abs=1e-12)
        assert values[f"aupr_{key}"].value == pytest.approx(ap, abs=1e-12)
        assert values[f"fpr95_{key}"].value == pytest.approx(fpr95, abs=1e-12)
    ratio = score_ood["epistemic"].mean() / score_in["epistemic"].mean()
    assert values["epistemic_ratio"].value == pytest.approx(ratio, rel=1e-12)
    assert values["epistemic_ratio"].value > 1  # wider spread off-distribution
    for v in values.values():
        assert v.ci_low <= v.ci_high
        assert np.isfinite([v.value, v.ci_low, v.ci_high]).all()


def test_evaluate_ood_classification_scores():
    rng = np.random.default_rng(2)
    logits_in = 3 * rng.normal(size=(1, 40, 4)) + 0.3 * rng.normal(size=(10, 40, 4))
    logits_ood = 0.5 * rng.normal(size=(1, 30, 4)) + 1.5 * rng.normal(size=(10, 30, 4))
    p_in = np.exp(logits_in) / np.exp(logits_in).sum(-1, keepdims=True)
    p_ood = np.exp(logits_ood) / np.exp(logits_ood).sum(-1, keepdims=True)
    c_in, c_ood = ClassificationSamples(p_in), ClassificationSamples(p_ood)
    scores = ood_scores(c_in)
    np.testing.assert_allclose(scores["epistemic"], c_in.mutual_information())
    np.testing.assert_allclose(scores["total"], c_in.predictive_entropy())
    np.testing.assert_allclose(scores["aleatoric"], c_in.expected_entropy())
    values = {v.name: v.value for v in evaluate_ood(c_in, c_ood, seed=3, n_bootstrap=20)}
    mi_in, mi_ood = c_in.mutual_information(), c_ood.mutual_information()
    assert values["auroc_epistemic"] == pytest.approx(_sklearn(mi_in, mi_ood)[0], abs=1e-12)
    assert values["epistemic_ratio"] == pytest.approx(mi_ood.mean() / mi_in.mean(), rel=1e-12)


def test_deterministic_net_gives_nan_ratio_and_chance_ranking():
    # Identical draws (a deterministic net): the epistemic variance is rounding residue.
    rng = np.random.default_rng(4)
    loc_in = np.repeat(rng.normal(size=(1, 30, 1)), 50, axis=0)
    loc_ood = np.repeat(rng.normal(size=(1, 20, 1)) * 3, 50, axis=0)
    scale = 0.3
    samples_in = RegressionSamples(loc_in, np.full_like(loc_in, scale))
    samples_ood = RegressionSamples(loc_ood, np.full_like(loc_ood, scale))
    values = {v.name: v for v in evaluate_ood(samples_in, samples_ood, seed=0, n_bootstrap=30)}
    ratio = values["epistemic_ratio"]
    assert math.isnan(ratio.value) and math.isnan(ratio.ci_low) and math.isnan(ratio.ci_high)
    assert values["auroc_epistemic"].value == 0.5
    assert values["fpr95_epistemic"].value == 1.0
    assert values["aupr_epistemic"].value == pytest.approx(20 / 50)
    for name, v in values.items():
        if name != "epistemic_ratio":
            assert np.isfinite([v.value, v.ci_low, v.ci_high]).all(), name


def test_evaluate_ood_rejects_mismatched_samples():
    c = ClassificationSamples(np.full((2, 3, 4), 0.25))
    r = RegressionSamples(np.zeros((2, 3, 1)), np.ones((2, 3, 1)))
    with pytest.raises(ValueError, match="RegressionSamples"):
        evaluate_ood(c, r, seed=0)
    with pytest.raises(ValueError, match="samples_ood has 5"):
        evaluate_ood(c, ClassificationSamples(np.full((2, 3, 5), 0.2)), seed=0)
