"""``check_adapter`` catches what the harness would reject, and passes the opt-in keywords."""

from __future__ import annotations

import pytest
from _dummies import BadDrawsAdapter, NoisyAdapter, RecordingAdapter, UnnormalizedProbsAdapter

from uqbench.testing import check_adapter


def test_valid_dummies_pass() -> None:
    check_adapter(NoisyAdapter(), "classification")
    check_adapter(NoisyAdapter(), "regression")


@pytest.mark.parametrize(
    ("mode", "message"),
    [("negative", r"probs outside \[0, 1\] in draw 0 at input 0"), ("unnormalised", r"probs of draw \d+ at input \d+ sum to")],
)
def test_every_draw_must_be_a_distribution_not_only_their_mean(mode: str, message: str) -> None:
    adapter = BadDrawsAdapter(mode=mode)
    p = adapter.fit(*_cls_data(), seed=0).sample_predictive(_cls_data()[0], n_samples=4, seed=0).probs
    mean = p.mean(axis=0)  # the mixture is a valid distribution
    assert (mean >= 0).all() and abs(mean.sum(-1) - 1).max() < 1e-9
    with pytest.raises(AssertionError, match=message):
        check_adapter(adapter, "classification")
    with pytest.raises(AssertionError, match=r"sum to 0\.5"):
        check_adapter(UnnormalizedProbsAdapter(), "classification")


def test_n_classes_is_passed_and_must_be_honoured() -> None:
    # RecordingAdapter names n_classes but sizes its output from the labels (a real bug).
    with pytest.raises(AssertionError, match=r"C=3, but fit was given n_classes=4"):
        check_adapter(RecordingAdapter(), "classification")
    check_adapter(RecordingAdapter(), "regression")  # X_val/y_val/n_train go through


def _cls_data():
    from uqbench.testing import contract_data

    X, y, _ = contract_data("classification")
    return X, y
