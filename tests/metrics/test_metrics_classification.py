"""Classification metrics against scikit-learn and plain per-bin loops."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import accuracy_score as sk_accuracy
from sklearn.metrics import brier_score_loss, log_loss

from uqbench.metrics import (
    accuracy_score,
    brier_loss,
    categorical_nll_loss,
    classwise_ece_error,
    ece_error,
    mce_error,
    reliability_curve,
)

N_BINS = 15
EDGES = np.linspace(0.0, 1.0, N_BINS + 1)


def _random_probs(rng, n, c, *, concentration=1.0, extremes=False):
    p = rng.dirichlet(np.full(c, concentration), size=n)
    if extremes:
        # One-hot rows (confidence exactly 1.0), uniform rows and rows sitting on bin edges.
        k = max(1, n // 5)
        p[:k] = np.eye(c)[rng.integers(0, c, k)]
        p[k : 2 * k] = 1.0 / c
        if c == 2:
            edge = EDGES[rng.integers(8, N_BINS, k)]
            p[2 * k : 3 * k] = np.stack([edge, 1.0 - edge], axis=1)
    return p


CASES = [
    # (n, c, concentration, extremes)
    (1, 2, 1.0, False),
    (7, 3, 0.3, False),
    (200, 10, 0.5, True),
    (300, 2, 2.0, True),
    (150, 5, 5.0, False),
]


def _bin(value):
    """Bin of a value by comparing with the edges one by one: [lo, hi), last [lo, 1]."""
    for k in range(N_BINS):
        lo, hi = EDGES[k], EDGES[k + 1]
        if lo <= value < hi or (k == N_BINS - 1 and value == hi):
            return k
    raise AssertionError(value)


def _loop_ece_mce(p, y):
    conf = p.max(axis=1)
    pred = p.argmax(axis=1)
    bins = [[] for _ in range(N_BINS)]
    for i in range(len(y)):
        bins[_bin(conf[i])].append(i)
    ece, mce = 0.0, 0.0
    for members in bins:
        if not members:
            continue
        acc = np.mean([pred[i] == y[i] for i in members])
        cf = np.mean([conf[i] for i in members])
        ece += len(members) / len(y) * abs(acc - cf)
        mce = max(mce, abs(acc - cf))
    return ece, mce


def _loop_classwise(p, y):
    n, c = p.shape
    total = 0.0
    for cls in range(c):
        bins = [[] for _ in range(N_BINS)]
        for i in range(n):
            bins[_bin(p[i, cls])].append(i)
        for members in bins:
            if members:
                frac = np.mean([y[i] == cls for i in members])
                mean_p = np.mean([p[i, cls] for i in members])
                total += len(members) / n * abs(frac - mean_p)
    return total / c


@pytest.mark.parametrize(("n", "c", "conc", "extremes"), CASES)
def test_against_sklearn(n, c, conc, extremes):
    rng = np.random.default_rng(n * 31 + c)
    p = _random_probs(rng, n, c, concentration=conc, extremes=extremes)
    y = rng.integers(0, c, n)
    labels = np.arange(c)
    assert accuracy_score(p, y) == pytest.approx(sk_accuracy(y, p.argmax(axis=1)), abs=1e-15)
    # log_loss clips at float eps; keep probabilities above that to compare exactly.
    q = np.clip(p, 1e-6, None)
    q /= q.sum(axis=1, keepdims=True)
    assert categorical_nll_loss(q, y) == pytest.approx(log_loss(y, q, labels=labels), rel=1e-12)
    expected = brier_score_loss(y, p, labels=labels, scale_by_half=False)
    assert brier_loss(p, y) == pytest.approx(expected, rel=1e-12, abs=1e-15)
    # Per-class adaptation: the multiclass Brier is the sum of the one-vs-rest binary ones
    # (binary Brier = mean (p - 1{y = k})^2, scikit-learn's halved two-column form).
    per_class = sum(
        brier_score_loss((y == k).astype(int), p[:, k], pos_label=1, scale_by_half=True)
        for k in range(c)
    )
    assert brier_loss(p, y) == pytest.approx(per_class, rel=1e-12, abs=1e-15)


def test_nll_of_zero_probability_is_large_but_finite():
    p = np.array([[1.0, 0.0], [0.5, 0.5]])
    y = np.array([1, 0])
    value = categorical_nll_loss(p, y)
    assert np.isfinite(value)
    assert value > 300


@pytest.mark.parametrize(("n", "c", "conc", "extremes"), CASES)
def test_calibration_errors_against_loops(n, c, conc, extremes):
    rng = np.random.default_rng(n * 7 + c)
    p = _random_probs(rng, n, c, concentration=conc, extremes=extremes)
    # Labels drawn from the probabilities, so some bins are well calibrated and some not.
    y = np.array([rng.choice(c, p=row) for row in p])
    ece, mce = _loop_ece_mce(p, y)
    assert ece_error(p, y) == pytest.approx(ece, abs=1e-12)
    assert mce_error(p, y) == pytest.approx(mce, abs=1e-12)
    assert classwise_ece_error(p, y) == pytest.approx(_loop_classwise(p, y), abs=1e-12)


def test_confidence_one_falls_in_last_bin_and_edges_are_left_closed():
    # Binary rows whose top confidence is exactly an edge k / 15 (k >= 8) or exactly 1.
    conf = np.concatenate([EDGES[8:], [1.0]])
    p = np.stack([conf, 1.0 - conf], axis=1)
    y = np.zeros(len(conf), dtype=int)
    counts = reliability_curve(p, y)["counts"]
    expected = np.zeros(N_BINS, dtype=int)
    for k in range(8, N_BINS):
        expected[k] += 1
    expected[N_BINS - 1] += 2  # edge 15/15 = 1.0 and the extra 1.0
    np.testing.assert_array_equal(counts, expected)


def test_perfect_and_worst_calibration():
    y = np.array([0, 1, 2, 1])
    onehot = np.eye(3)[y]
    assert ece_error(onehot, y) == 0.0
    assert mce_error(onehot, y) == 0.0
    assert classwise_ece_error(onehot, y) == 0.0
    wrong = np.eye(3)[(y + 1) % 3]
    assert ece_error(wrong, y) == pytest.approx(1.0)
    assert mce_error(wrong, y) == pytest.approx(1.0)


def test_reliability_curve_against_loop():
    rng = np.random.default_rng(3)
    p = _random_probs(rng, 120, 4, concentration=0.4, extremes=True)
    y = rng.integers(0, 4, 120)
    curve = reliability_curve(p, y)
    np.testing.assert_allclose(curve["bin_edges"], EDGES)
    np.testing.assert_allclose(curve["bin_centers"], (EDGES[:-1] + EDGES[1:]) / 2)
    conf, pred = p.max(axis=1), p.argmax(axis=1)
    assert curve["counts"].sum() == 120
    for k in range(N_BINS):
        members = [i for i in range(120) if _bin(conf[i]) == k]
        assert curve["counts"][k] == len(members)
        if members:
            assert curve["accuracy"][k] == pytest.approx(np.mean(pred[members] == y[members]))
            assert curve["confidence"][k] == pytest.approx(np.mean(conf[members]))
        else:
            assert np.isnan(curve["accuracy"][k]) and np.isnan(curve["confidence"][k])


def test_n_bins_option():
    rng = np.random.default_rng(5)
    p = _random_probs(rng, 50, 3)
    y = rng.integers(0, 3, 50)
    # One bin: ECE is |accuracy - mean confidence|.
    expected = abs(np.mean(p.argmax(1) == y) - p.max(1).mean())
    assert ece_error(p, y, n_bins=1) == pytest.approx(expected)
    assert ece_error(p, y, n_bins=1) <= ece_error(p, y, n_bins=30) + 1e-12


@st.composite
def probs_and_labels(draw):
    n = draw(st.integers(1, 40))
    c = draw(st.integers(2, 6))
    seed = draw(st.integers(0, 2**32 - 1))
    conc = draw(st.sampled_from([0.05, 0.5, 1.0, 20.0]))
    rng = np.random.default_rng(seed)
    p = _random_probs(rng, n, c, concentration=conc, extremes=draw(st.booleans()))
    return p, rng.integers(0, c, n)


@settings(max_examples=40, deadline=None)
@given(probs_and_labels())
def test_calibration_error_bounds(data):
    p, y = data
    ece, mce, cw = ece_error(p, y), mce_error(p, y), classwise_ece_error(p, y)
    assert 0.0 <= ece <= 1.0
    assert 0.0 <= cw <= 1.0
    assert ece <= mce + 1e-12 <= 1.0 + 1e-12
    assert 0.0 <= brier_loss(p, y) <= 2.0
    assert categorical_nll_loss(p, y) >= 0.0


@pytest.mark.parametrize(
    ("probs", "labels", "match"),
    [
        (np.array([[0.5, 0.6]]), np.array([0]), "sum to 1"),
        (np.array([[1.2, -0.2]]), np.array([0]), ">= 0"),
        (np.array([[0.5, 0.5]]), np.array([2]), r"\[0, 2\)"),
        (np.array([[0.5, 0.5]]), np.array([0.0]), "integer"),
        (np.array([0.5, 0.5]), np.array([0]), "shape"),
        (np.array([[np.nan, 1.0]]), np.array([0]), "finite"),
        (np.array([[0.5, 0.5]]), np.array([0, 1]), "2 labels"),
    ],
)
def test_invalid_input(probs, labels, match):
    with pytest.raises(ValueError, match=match):
        ece_error(probs, labels)


def test_invalid_n_bins():
    with pytest.raises(ValueError, match="got 0"):
        ece_error(np.array([[0.5, 0.5]]), np.array([0]), n_bins=0)
