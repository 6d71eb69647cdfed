"""``evaluate``, ``evaluate_ood`` and ``curves``: all metrics of one cell, dispatched by task.

Each task registers a :class:`TaskMetrics` in ``_TASKS``. To add a task (reconstruction
metrics go in ``uqbench/metrics/_reconstruction.py``), write its three functions, add one
entry to ``_TASKS`` and the emitted names to ``METRICS`` in ``_registry.py``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from uqbench.interface import (
    ClassificationSamples,
    ReconstructionSamples,
    RegressionSamples,
)
from uqbench.metrics._bootstrap import MetricValue, Statistic, mean_statistic, run_bootstrap
from uqbench.metrics._classification import classification_statistics, reliability_curve
from uqbench.metrics._ood import ranking_statistic, ratio_statistic
from uqbench.metrics._registry import METRICS
from uqbench.metrics._regression import coverage_curve, regression_statistics
from uqbench.metrics._uncertainty import (
    classification_ood_scores,
    classification_uncertainty,
    regression_ood_scores,
    regression_uncertainty,
)

Samples = RegressionSamples | ClassificationSamples | ReconstructionSamples


@dataclass(frozen=True)
class TaskMetrics:
    """How one task is evaluated.

    Attributes
    ----------
    statistics : ``(samples, y_true) -> [Statistic]`` for every test-set metric (quality
        and mean uncertainty), each over one group of N points; validates ``y_true``.
    ood_scores : ``samples -> {"epistemic", "total", "aleatoric": [N]}``, higher = more OOD.
    curves : ``(samples, y_true) -> {name: array}`` for the report's figures.
    """

    statistics: Callable[[Samples, np.ndarray | None], list[Statistic]]
    ood_scores: Callable[[Samples], dict[str, np.ndarray]]
    curves: Callable[[Samples, np.ndarray | None], dict[str, np.ndarray]]


def _classification_statistics(samples: ClassificationSamples, y_true) -> list[Statistic]:
    return [
        *classification_statistics(samples.mean(), y_true),
        mean_statistic(classification_uncertainty(samples)),
    ]


def _classification_curves(samples: ClassificationSamples, y_true) -> dict[str, np.ndarray]:
    curve = reliability_curve(samples.mean(), y_true)
    return {f"reliability_{k}": v for k, v in curve.items()}


def _regression_targets(samples: RegressionSamples, y_true) -> np.ndarray:
    y = np.asarray(y_true)
    if y.ndim != 2 or not np.issubdtype(y.dtype, np.floating):
        raise ValueError(
            f"regression y_true must be float [N, D], got dtype {y.dtype} shape {y.shape}"
        )
    return y


def _regression_statistics(samples: RegressionSamples, y_true) -> list[Statistic]:
    y = _regression_targets(samples, y_true)
    return [
        *regression_statistics(samples.loc, samples.scale, y),
        mean_statistic(regression_uncertainty(samples)),
    ]


def _regression_curves(samples: RegressionSamples, y_true) -> dict[str, np.ndarray]:
    curve = coverage_curve(samples.loc, samples.scale, _regression_targets(samples, y_true))
    return {f"coverage_{k}": v for k, v in curve.items()}


_TASKS: dict[str, TaskMetrics] = {
    "classification": TaskMetrics(
        _classification_statistics, classification_ood_scores, _classification_curves
    ),
    "regression": TaskMetrics(_regression_statistics, regression_ood_scores, _regression_curves),
    # "reconstruction": TaskMetrics(...) from uqbench/metrics/_reconstruction.py
}

_CONTAINERS = (RegressionSamples, ClassificationSamples, ReconstructionSamples)


def _task_metrics(samples: object) -> TaskMetrics:
    if not isinstance(samples, _CONTAINERS):
        raise ValueError(
            f"samples must be a RegressionSamples, ClassificationSamples or "
            f"ReconstructionSamples, got {type(samples).__name__}"
        )
    try:
        return _TASKS[samples.task]
    except KeyError:
        raise NotImplementedError(
            f"no metrics for task {samples.task!r} yet (register them in "
            f"uqbench/metrics/_evaluate.py _TASKS)"
        ) from None


def _ordered(values: list[MetricValue]) -> list[MetricValue]:
    rank = {name: i for i, name in enumerate(METRICS)}
    return sorted(values, key=lambda v: rank.get(v.name, len(rank)))


def _main_array(samples: Samples) -> np.ndarray:
    if isinstance(samples, ClassificationSamples):
        return samples.probs
    if isinstance(samples, RegressionSamples):
        return samples.loc
    return samples.recon


def _n_points(samples: Samples) -> int:
    return _main_array(samples).shape[1]


def evaluate(
    samples: Samples, y_true: np.ndarray | None, *, seed: int, n_bootstrap: int = 200
) -> list[MetricValue]:
    """All test-set metrics of one predictive, each with a bootstrap 95% interval.

    Parameters
    ----------
    samples : the predictive draws at the N test inputs; the task follows from its type.
    y_true : targets in the units of ``samples``: int ``[N]`` (classification) or float
        ``[N, D]`` (regression).
    seed : seeds the bootstrap resampling of test points (the same resamples for all
        metrics of the call).
    n_bootstrap : number of resamples; 0 gives NaN intervals.

    Returns
    -------
    One :class:`MetricValue` per metric, in ``METRICS`` order: the point metrics then the
    mean per-point uncertainties (see ``METRICS`` for the names and definitions).
    """
    handler = _task_metrics(samples)
    statistics = handler.statistics(samples, y_true)
    values = run_bootstrap(
        statistics, [_n_points(samples)], n_bootstrap=n_bootstrap, seed=seed
    )
    return _ordered(values)


def ood_scores(samples: Samples) -> dict[str, np.ndarray]:
    """Per-point OOD scores ``{"epistemic", "total", "aleatoric": [N]}`` of one predictive.

    Regression: epistemic, total and aleatoric variance summed over outputs.
    Classification: mutual information, predictive entropy, expected entropy (nats).
    Values at or below 1e-12 are exactly 0.
    """
    return _task_metrics(samples).ood_scores(samples)


def evaluate_ood(
    samples_in: Samples, samples_ood: Samples, *, seed: int, n_bootstrap: int = 200
) -> list[MetricValue]:
    """How well each uncertainty score separates one OOD set from the test set.

    Emits ``epistemic_ratio`` and ``auroc_/aupr_/fpr95_`` x ``epistemic/total/aleatoric``
    (OOD is the positive class; scores from :func:`ood_scores`). The bootstrap resamples
    the in-distribution and the OOD points independently.

    Parameters
    ----------
    samples_in : draws at the in-distribution test inputs.
    samples_ood : draws of the same model at the OOD inputs (same container type).
    seed, n_bootstrap : as in :func:`evaluate`.
    """
    handler = _task_metrics(samples_in)
    if type(samples_ood) is not type(samples_in):
        raise ValueError(
            f"samples_ood is {type(samples_ood).__name__} but samples_in is "
            f"{type(samples_in).__name__}"
        )
    width_in, width_ood = _main_array(samples_in).shape[2], _main_array(samples_ood).shape[2]
    if width_in != width_ood:
        raise ValueError(
            f"samples_in has {width_in} outputs per point but samples_ood has {width_ood}"
        )
    scores_in = handler.ood_scores(samples_in)
    scores_ood = handler.ood_scores(samples_ood)
    statistics = [ratio_statistic(scores_in["epistemic"], scores_ood["epistemic"])]
    statistics += [ranking_statistic(k, scores_in[k], scores_ood[k]) for k in scores_in]
    values = run_bootstrap(
        statistics,
        [_n_points(samples_in), _n_points(samples_ood)],
        n_bootstrap=n_bootstrap,
        seed=seed,
    )
    return _ordered(values)


def curves(samples: Samples, y_true: np.ndarray | None) -> dict[str, np.ndarray]:
    """Arrays for the report's calibration figure.

    Classification (reliability diagram of the top-label confidence, the ECE bins):
    ``reliability_bin_edges [16]``, ``reliability_bin_centers [15]``,
    ``reliability_accuracy [15]``, ``reliability_confidence [15]`` (NaN in empty bins),
    ``reliability_counts [15]``.
    Regression (central-interval calibration curve): ``coverage_expected [19]`` (levels
    0.05 ... 0.95) and ``coverage_observed [19]``.
    """
    return _task_metrics(samples).curves(samples, y_true)
