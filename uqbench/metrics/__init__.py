"""Metrics of predictive samples: pure functions on numpy arrays.

``evaluate`` / ``evaluate_ood`` compute every metric of one cell with a seeded bootstrap
95% interval (for reconstruction also pass the inputs, ``X`` / ``X_in`` and ``X_ood``);
``curves`` gives the report's calibration arrays; ``METRICS`` names and defines everything
they emit. ``predictive_wasserstein``, ``epistemic_sd_ratio`` and ``predictive_sd_ratio``
compare a regression predictive with a reference one (e.g. HMC), per input. Naming:
``*_score`` higher is better, ``*_error`` and ``*_loss`` lower is better.
"""

from uqbench.metrics._bootstrap import MetricValue, bootstrap_interval
from uqbench.metrics._classification import (
    accuracy_score,
    brier_loss,
    categorical_nll_loss,
    classwise_ece_error,
    ece_error,
    mce_error,
    reliability_curve,
)
from uqbench.metrics._evaluate import curves, evaluate, evaluate_ood, ood_scores
from uqbench.metrics._fidelity import (
    N_ATOMS,
    epistemic_sd_ratio,
    normal_atoms,
    predictive_sd,
    predictive_sd_ratio,
    predictive_wasserstein,
)
from uqbench.metrics._ood import aupr_score, auroc_score, epistemic_ratio, fpr_at_tpr_error
from uqbench.metrics._reconstruction import (
    elbo,
    elbo_per_point,
    evaluate_reconstruction,
    evaluate_reconstruction_ood,
    gaussian_kl,
    knn_correct,
    latent_codes,
    latent_knn_accuracy_score,
    latent_silhouette_score,
    log_likelihood,
    log_px_iwae,
    reconstruction_bce,
    reconstruction_mse,
    silhouette_values,
)
from uqbench.metrics._registry import METRICS, MetricSpec
from uqbench.metrics._regression import (
    COVERAGE_LEVELS,
    MIN_SCALE,
    calibration_error,
    coverage_curve,
    crps_loss,
    gaussian_nll_loss,
    interval_coverage,
    interval_width,
    miscalibration_area,
    mixture_cdf,
    mixture_nll_loss,
    mixture_quantile,
    picp,
    rmse_error,
    sharpness,
)
from uqbench.metrics._uncertainty import (
    classification_ood_scores,
    classification_uncertainty,
    regression_ood_scores,
    regression_uncertainty,
)

__all__ = [
    "COVERAGE_LEVELS",
    "METRICS",
    "MIN_SCALE",
    "N_ATOMS",
    "MetricSpec",
    "MetricValue",
    "accuracy_score",
    "aupr_score",
    "auroc_score",
    "bootstrap_interval",
    "brier_loss",
    "calibration_error",
    "categorical_nll_loss",
    "classification_ood_scores",
    "classification_uncertainty",
    "classwise_ece_error",
    "coverage_curve",
    "crps_loss",
    "curves",
    "ece_error",
    "elbo",
    "elbo_per_point",
    "epistemic_ratio",
    "epistemic_sd_ratio",
    "evaluate",
    "evaluate_ood",
    "evaluate_reconstruction",
    "evaluate_reconstruction_ood",
    "fpr_at_tpr_error",
    "gaussian_kl",
    "gaussian_nll_loss",
    "interval_coverage",
    "interval_width",
    "knn_correct",
    "latent_codes",
    "latent_knn_accuracy_score",
    "latent_silhouette_score",
    "log_likelihood",
    "log_px_iwae",
    "mce_error",
    "miscalibration_area",
    "mixture_cdf",
    "mixture_nll_loss",
    "mixture_quantile",
    "normal_atoms",
    "ood_scores",
    "picp",
    "predictive_sd",
    "predictive_sd_ratio",
    "predictive_wasserstein",
    "reconstruction_bce",
    "reconstruction_mse",
    "regression_ood_scores",
    "regression_uncertainty",
    "reliability_curve",
    "rmse_error",
    "sharpness",
    "silhouette_values",
]
