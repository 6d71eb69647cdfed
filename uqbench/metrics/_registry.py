"""``METRICS``: every metric name ``evaluate`` / ``evaluate_ood`` can emit, with its definition.

The order of ``METRICS`` is the order in which the metrics are emitted. The reconstruction
metrics' definitions live next to their code, in ``_reconstruction.DEFINITIONS``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from uqbench.metrics._classification import N_BINS
from uqbench.metrics._reconstruction import DEFINITIONS as _RECONSTRUCTION_DEFINITIONS
from uqbench.metrics._regression import COVERAGE_LEVELS, MIN_SCALE, coverage_name

MetricKind = Literal["point", "ood", "uncertainty", "curve"]

_CLS = frozenset({"classification"})
_REG = frozenset({"regression"})
_BOTH = frozenset({"classification", "regression"})
_REC = frozenset({"reconstruction"})
_ALL = _BOTH | _REC
# Reconstruction metrics specified with the other tasks' (their tasks include reconstruction).
_SHARED = frozenset({"epistemic_variance", "epistemic_ratio"})


@dataclass(frozen=True)
class MetricSpec:
    """What a metric name means.

    Attributes
    ----------
    name : the metric name in the results table.
    tasks : the tasks it is reported for.
    higher_is_better : True / False, or None when neither direction is better (a coverage
        should match its nominal level; an uncertainty level is descriptive).
    definition : one or two sentences stating the definition followed.
    kind : ``"point"`` (test-set quality), ``"uncertainty"`` (mean per-point uncertainty),
        ``"ood"`` (test vs one off-distribution set), ``"curve"`` (one point of a
        calibration curve).
    """

    name: str
    tasks: frozenset[str]
    higher_is_better: bool | None
    definition: str
    kind: MetricKind


_BINS = (
    f"{N_BINS} equal-width bins [lo, hi) on [0, 1], the last closed so a probability of "
    "exactly 1 falls in it"
)
_FLOOR = (
    f"draws' scales are floored at {MIN_SCALE:g} (standardized target units) so a scale-0 "
    "draw is a very narrow Gaussian"
)
_OOD_SCORES = {
    "epistemic": "mutual information (classification) / epistemic variance summed over "
    "outputs (regression)",
    "total": "predictive entropy (classification) / total variance summed over outputs "
    "(regression)",
    "aleatoric": "expected entropy (classification) / aleatoric variance summed over outputs "
    "(regression)",
}
_OOD_NOTE = (
    "OOD points are the positive class; scores <= 1e-12 count as exactly 0 (rounding residue "
    "of a zero decomposition)."
)


def _specs() -> list[MetricSpec]:
    specs = [
        MetricSpec(
            "accuracy_score", _CLS, True,
            "Fraction of test points whose arg-max of the mean predictive probabilities is "
            "the label.",
            "point",
        ),
        MetricSpec(
            "rmse_error", _REG, False,
            "Root mean squared error of the predictive mean (mean of the draws' means), over "
            "points and outputs.",
            "point",
        ),
        MetricSpec(
            "nll_loss", _BOTH, False,
            "Negative log-likelihood in nats, mean over points. Classification: -log of the "
            "mean predictive probability of the label. Regression: -log density of the "
            "equal-weight mixture of the S Gaussian draws (log-sum-exp), mean over points "
            f"and outputs; {_FLOOR}.",
            "point",
        ),
        MetricSpec(
            "brier_loss", _CLS, False,
            "Brier score of the mean predictive: squared error to the one-hot label summed "
            "over classes, mean over points (range [0, 2]).",
            "point",
        ),
        MetricSpec(
            "ece_error", _CLS, False,
            "Top-label expected calibration error (Guo et al. 2017): sum over bins of "
            f"(bin count / N) x |accuracy - mean confidence|, {_BINS}.",
            "point",
        ),
        MetricSpec(
            "classwise_ece_error", _CLS, False,
            "Classwise ECE (Kull et al. 2019): for each class c bin the points by p_c and "
            "sum (bin count / N) x |fraction labelled c - mean p_c|; average over classes; "
            f"{_BINS}.",
            "point",
        ),
        MetricSpec(
            "mce_error", _CLS, False,
            "Top-label maximum calibration error (Guo et al. 2017): the largest "
            "|accuracy - mean confidence| over non-empty ECE bins.",
            "point",
        ),
        MetricSpec(
            "gaussian_nll_loss", _REG, False,
            "NLL in nats of the moment-matched Gaussian (mean of the draws' means, law-of-"
            "total-variance variance floored at 1e-12), mean over points and outputs.",
            "point",
        ),
        MetricSpec(
            "crps_loss", _REG, False,
            "Continuous ranked probability score of the mixture of the draws, closed form "
            "E|X - y| - 0.5 E|X - X'| over all component pairs (Grimit et al. 2006), mean "
            "over points and outputs, in target units.",
            "point",
        ),
    ]
    for level in COVERAGE_LEVELS:
        specs.append(
            MetricSpec(
                coverage_name(level), _REG, None,
                f"Fraction of test targets inside the mixture's central {level:.0%} interval "
                f"[q_{(1 - level) / 2:.3f}, q_{(1 + level) / 2:.3f}] (exact mixture "
                f"quantiles); {level:.2f} is calibrated.",
                "curve",
            )
        )
    specs += [
        MetricSpec(
            "calibration_error", _REG, False,
            "Mean absolute calibration error (uncertainty-toolbox, central intervals): mean "
            "over the levels 0.05, 0.10, ..., 0.95 of |observed coverage - level|.",
            "point",
        ),
        MetricSpec(
            "miscalibration_area", _REG, False,
            "Miscalibration area (uncertainty-toolbox, central intervals): area between the "
            "calibration curve through (0,0), (level, observed coverage) for levels 0.05 ... "
            "0.95, (1,1), and the diagonal.",
            "point",
        ),
        MetricSpec(
            "picp_95", _REG, None,
            "Prediction-interval coverage probability: fraction of test targets inside the "
            "mixture's central 95% interval (0.95 is calibrated).",
            "point",
        ),
        MetricSpec(
            "interval_width_95", _REG, None,
            "Mean width of the mixture's central 95% interval (q_0.975 - q_0.025), in target "
            "units; narrower is better only at equal coverage.",
            "point",
        ),
        MetricSpec(
            "sharpness", _REG, None,
            "Sharpness (uncertainty-toolbox): square root of the mean predictive (mixture) "
            "variance over points and outputs; smaller is sharper, better only if calibrated.",
            "point",
        ),
        *_reconstruction_specs("point"),
        MetricSpec(
            "aleatoric_variance", _BOTH, None,
            "Mean over points of the aleatoric variance: regression, mean over draws of the "
            "noise variance, summed over outputs; classification, sum over classes of the "
            "mean over draws of p(1 - p).",
            "uncertainty",
        ),
        MetricSpec(
            "epistemic_variance", _ALL, None,
            "Mean over points of the epistemic variance: the variance across draws of the "
            "predicted mean (regression, summed over outputs), of each class probability "
            "(classification, summed over classes) or of the encoder's latent mean "
            "(reconstruction, summed over latent dimensions; 0 for a deterministic encoder).",
            "uncertainty",
        ),
        MetricSpec(
            "total_variance", _BOTH, None,
            "Mean over points of the predictive variance, aleatoric + epistemic (law of total "
            "variance); classification: sum over classes of pbar(1 - pbar).",
            "uncertainty",
        ),
        MetricSpec(
            "predictive_entropy", _CLS, None,
            "Mean over points of the entropy (nats) of the mean predictive: total "
            "uncertainty.",
            "uncertainty",
        ),
        MetricSpec(
            "expected_entropy", _CLS, None,
            "Mean over points of the mean entropy (nats) of the draws: aleatoric uncertainty.",
            "uncertainty",
        ),
        MetricSpec(
            "mutual_information", _CLS, None,
            "Mean over points of predictive minus expected entropy (nats, BALD): epistemic "
            "uncertainty.",
            "uncertainty",
        ),
        MetricSpec(
            "epistemic_ratio", _ALL, True,
            "Mean epistemic score on the OOD set / mean epistemic score on the in-distribution "
            f"test set (score: {_OOD_SCORES['epistemic']} / variance across draws of the "
            "encoder's latent mean summed over latent dimensions (reconstruction)). NaN when "
            "the test-set mean is 0, e.g. a deterministic net or encoder; scores <= 1e-12 "
            "count as 0.",
            "ood",
        ),
    ]
    for score, what in _OOD_SCORES.items():
        specs += [
            MetricSpec(
                f"auroc_{score}", _BOTH, True,
                f"Area under the ROC curve separating OOD from test points by the {score} "
                f"score ({what}); 0.5 is chance, ties count half. {_OOD_NOTE}",
                "ood",
            ),
            MetricSpec(
                f"aupr_{score}", _BOTH, True,
                f"Average precision (scikit-learn definition) of flagging OOD points by the "
                f"{score} score ({what}); chance is the OOD fraction. {_OOD_NOTE}",
                "ood",
            ),
            MetricSpec(
                f"fpr95_{score}", _BOTH, False,
                f"Fraction of test points flagged at the first threshold of the {score} score "
                f"({what}) that flags >= 95% of the OOD points. {_OOD_NOTE}",
                "ood",
            ),
        ]
    return specs + _reconstruction_specs("ood")


def _reconstruction_specs(kind: str) -> list[MetricSpec]:
    """Reconstruction-only metrics of ``kind`` from ``_reconstruction.DEFINITIONS``, in its order."""
    return [
        MetricSpec(name, _REC, higher_is_better, definition, metric_kind)
        for name, (higher_is_better, metric_kind, definition) in _RECONSTRUCTION_DEFINITIONS.items()
        if metric_kind == kind and name not in _SHARED
    ]


METRICS: dict[str, MetricSpec] = {spec.name: spec for spec in _specs()}
