"""``evaluate``, ``evaluate_ood`` and ``curves``: all metrics of one cell, dispatched by task.

Regression and classification register a :class:`TaskMetrics` in ``_TASKS``: their metrics
are functions of the samples and the targets. Reconstruction metrics also need the inputs
that were reconstructed (keyword ``X`` / ``X_in``, ``X_ood``), so ``ReconstructionSamples``
go to ``_reconstruction.evaluate_reconstruction`` / ``evaluate_reconstruction_ood``
directly. To add a task, write its functions, dispatch to them here and add the emitted
names to ``METRICS`` in ``_registry.py``.
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
from uqbench.metrics._reconstruction import (
    check_reconstruction_inputs,
    elbo_per_point,
    evaluate_reconstruction,
    evaluate_reconstruction_ood,
    reconstruction_epistemic,
)
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
}

_CONTAINERS = (RegressionSamples, ClassificationSamples, ReconstructionSamples)


def _check_container(samples: object) -> Samples:
    if not isinstance(samples, _CONTAINERS):
        raise ValueError(
            f"samples must be a RegressionSamples, ClassificationSamples or "
            f"ReconstructionSamples, got {type(samples).__name__}"
        )
    if isinstance(samples, ClassificationSamples):
        samples.check()  # every draw a distribution, not only their mean
    return samples


def _task_metrics(samples: object) -> TaskMetrics:
    """The regression / classification handler (reconstruction is dispatched by the callers)."""
    _check_container(samples)
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
    samples: Samples,
    y_true: np.ndarray | None,
    *,
    seed: int,
    n_bootstrap: int = 200,
    X: np.ndarray | None = None,
) -> list[MetricValue]:
    """All test-set metrics of one predictive, each with a bootstrap 95% interval.

    Parameters
    ----------
    samples : the predictive draws at the N test inputs; the task follows from its type.
    y_true : targets in the units of ``samples``: int ``[N]`` (classification) or float
        ``[N, D]`` (regression); for reconstruction the class labels ``[N]`` of the inputs
        (for the latent-separability metrics) or None.
    seed : seeds the bootstrap resampling of test points (the same resamples for all
        metrics of the call).
    n_bootstrap : number of resamples; 0 gives NaN intervals.
    X : ``[N, D]`` the inputs. Required for ``ReconstructionSamples`` (the
        reconstructions are scored against them); not used by the other tasks.

    Returns
    -------
    One :class:`MetricValue` per metric, in ``METRICS`` order: the point metrics then the
    mean per-point uncertainties (see ``METRICS`` for the names and definitions).
    """
    if isinstance(samples, ReconstructionSamples):
        if X is None:
            raise ValueError(
                "reconstruction metrics need the reconstructed inputs: pass X=[N, D], got X=None"
            )
        return _ordered(
            evaluate_reconstruction(samples, X, y_true, seed=seed, n_bootstrap=n_bootstrap)
        )
    handler = _task_metrics(samples)
    statistics = handler.statistics(samples, y_true)
    values = run_bootstrap(
        statistics, [_n_points(samples)], n_bootstrap=n_bootstrap, seed=seed
    )
    return _ordered(values)


def ood_scores(samples: Samples, *, X: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-point OOD scores ``[N]`` of one predictive, higher = more off-distribution.

    Regression: ``epistemic``, ``total`` and ``aleatoric`` variance summed over outputs.
    Classification: mutual information, predictive entropy, expected entropy (nats).
    Values at or below 1e-12 are exactly 0.

    Reconstruction: ``epistemic`` (variance across draws of the encoder's latent mean,
    summed over latent dimensions; <= 1e-12 -> 0), ``latent_variance`` (of the latent
    draws) and, given the inputs ``X`` ``[N, D]`` and q's parameters, ``neg_elbo`` (the
    per-point negative ELBO, nats): the scores ``evaluate_ood`` ranks. ``X`` is not used by
    the other tasks.
    """
    if isinstance(samples, ReconstructionSamples):
        scores = {"epistemic": reconstruction_epistemic(samples), "latent_variance": samples.latent_variance()}
        if X is not None:
            lower = elbo_per_point(samples, check_reconstruction_inputs(samples, X, "X"))
            if lower is not None:
                scores["neg_elbo"] = -lower
        return scores
    return _task_metrics(samples).ood_scores(samples)


def evaluate_ood(
    samples_in: Samples,
    samples_ood: Samples,
    *,
    seed: int,
    n_bootstrap: int = 200,
    X_in: np.ndarray | None = None,
    X_ood: np.ndarray | None = None,
) -> list[MetricValue]:
    """How well each uncertainty score separates one OOD set from the test set.

    Regression and classification: ``epistemic_ratio`` and ``auroc_/aupr_/fpr95_`` x
    ``epistemic/total/aleatoric``. Reconstruction: ``epistemic_ratio``,
    ``auroc_neg_elbo`` (NaN unless ``X_in`` and ``X_ood`` are given) and
    ``auroc_latent_variance``. OOD is the positive class; scores from :func:`ood_scores`.
    The bootstrap resamples the in-distribution and the OOD points independently.

    Parameters
    ----------
    samples_in : draws at the in-distribution test inputs.
    samples_ood : draws of the same model at the OOD inputs (same container type).
    seed, n_bootstrap : as in :func:`evaluate`.
    X_in, X_ood : ``[N, D]`` and ``[M, D]`` the inputs of ``samples_in`` and
        ``samples_ood``; used by reconstruction only.
    """
    _check_container(samples_in)
    if type(samples_ood) is not type(samples_in):
        raise ValueError(
            f"samples_ood is {type(samples_ood).__name__} but samples_in is "
            f"{type(samples_in).__name__}"
        )
    if isinstance(samples_in, ReconstructionSamples):
        return _ordered(
            evaluate_reconstruction_ood(
                samples_in, samples_ood, X_in=X_in, X_ood=X_ood, seed=seed, n_bootstrap=n_bootstrap
            )
        )
    handler = _task_metrics(samples_in)
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
    Reconstruction: none (an empty dict).
    """
    if isinstance(_check_container(samples), ReconstructionSamples):
        return {}
    return _task_metrics(samples).curves(samples, y_true)
