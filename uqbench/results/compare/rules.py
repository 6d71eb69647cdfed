"""How each metric is compared: its family, direction, floor and threshold.

See :mod:`uqbench.results.compare` for what the families, floors and thresholds mean.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_SPEED_THRESHOLD",
    "DEFAULT_THRESHOLD",
    "EPS",
    "INFO_METRICS",
    "LABELS",
    "SHOWN",
    "SPEED_FLOORS",
    "STATUSES",
    "MetricRule",
    "known_metric_names",
    "metric_rule",
    "resolve_threshold",
]

DEFAULT_THRESHOLD = 1.10
DEFAULT_SPEED_THRESHOLD = 1.5
DEFAULT_ALPHA = 0.05
EPS = 1e-12  # the floor of a pure ratio

# Speed (time and memory) metrics: name -> floor; all lower-is-better.
SPEED_FLOORS: dict[str, float] = {
    "fit_wall_seconds": 0.05,
    "fit_cpu_seconds": 0.05,
    "sample_seconds_per_draw": 1e-4,
    "fit_peak_rss_mb": 10.0,
    "sample_peak_rss_mb": 10.0,
}
# Measurements shown but never gating: name -> why.
INFO_METRICS: dict[str, str] = {
    "n_parameters": "descriptive",
    "samples_per_second": "derived from sample_seconds_per_draw, which is gated",
}
_PROBABILITY_SCALE = frozenset({
    "accuracy_score", "brier_loss", "ece_error", "classwise_ece_error", "mce_error",
    "calibration_error", "miscalibration_area", "latent_knn_accuracy_score",
    "latent_silhouette_score",
})
_QUALITY_FLOORS: dict[str, float] = {
    "nll_loss": 0.1,
    "gaussian_nll_loss": 0.1,
    "elbo_score": 1.0,
    "log_px_iwae_score": 1.0,
    "recon_bce_loss": 1.0,
    "epistemic_ratio": 1.0,
}

# Verdicts of a row, in display order; the first three are shown by default.
STATUSES = ("regression", "insignificant", "improved", "within", "unchanged", "info", "undefined")
SHOWN = ("regression", "insignificant", "improved")
LABELS = {
    "regression": "REGRESSION",
    "insignificant": "worse (not significant)",
    "improved": "improved",
    "within": "within threshold",
    "unchanged": "unchanged",
    "info": "info",
    "undefined": "undefined",
}


# -- metric rules -----------------------------------------------------------------------


@dataclass(frozen=True)
class MetricRule:
    """How a metric is compared.

    Attributes
    ----------
    family : ``"quality"`` (mean, relative change), ``"speed"`` (median, ratio) or
        ``"info"`` (shown, never gating).
    higher_is_better : the direction; None for info metrics.
    floor : absolute floor of the denominator (quality) or of both values (speed).
    """

    family: str
    higher_is_better: bool | None
    floor: float

    @property
    def gated(self) -> bool:
        return self.family in ("quality", "speed") and self.higher_is_better is not None


def _is_speed_name(metric: str) -> bool:
    return metric.endswith(("_seconds", "_seconds_per_draw", "_mb"))


def metric_rule(metric: str) -> MetricRule:
    """The :class:`MetricRule` of ``metric`` (see the module docstring)."""
    from uqbench.metrics import METRICS

    if metric in INFO_METRICS:
        return MetricRule("speed" if metric == "samples_per_second" else "info", None, 0.0)
    if metric in SPEED_FLOORS:
        return MetricRule("speed", False, SPEED_FLOORS[metric])
    spec = METRICS.get(metric)
    if spec is None:
        if _is_speed_name(metric):
            return MetricRule("speed", False, 10.0 if metric.endswith("_mb") else 0.0)
        return MetricRule("info", None, 0.0)
    if spec.higher_is_better is None:
        return MetricRule("info", None, 0.0)
    if metric in _QUALITY_FLOORS:
        floor = _QUALITY_FLOORS[metric]
    elif metric in _PROBABILITY_SCALE or metric.startswith(("auroc_", "aupr_", "fpr95_")):
        floor = 0.05
    else:
        floor = 0.0
    return MetricRule("quality", spec.higher_is_better, floor)


def known_metric_names() -> list[str]:
    from uqbench.metrics import METRICS

    return [*METRICS, *SPEED_FLOORS, *INFO_METRICS]


def resolve_threshold(
    metric: str,
    rule: MetricRule,
    overrides: Mapping[str, float],
    *,
    default_threshold: float = DEFAULT_THRESHOLD,
    speed_threshold: float = DEFAULT_SPEED_THRESHOLD,
) -> float:
    """The factor for ``metric``: exact override, else the last matching pattern, else the family default."""
    if metric in overrides:
        return overrides[metric]
    matched = [f for pattern, f in overrides.items() if fnmatch.fnmatchcase(metric, pattern)]
    if matched:
        return matched[-1]
    return speed_threshold if rule.family == "speed" else default_threshold


