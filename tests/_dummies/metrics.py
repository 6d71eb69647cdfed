"""Dummy metrics with the real signatures: a few closed-form means, a plain bootstrap."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from uqbench.interface import ClassificationSamples, RegressionSamples


@dataclass(frozen=True)
class MetricValue:
    name: str
    value: float
    ci_low: float
    ci_high: float


def _boot(per_point: np.ndarray, seed: int, n_bootstrap: int) -> tuple[float, float]:
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, len(per_point), size=(n_bootstrap, len(per_point)))
    means = per_point[idx].mean(axis=1)
    return float(np.quantile(means, 0.025)), float(np.quantile(means, 0.975))


class DummyMetrics:
    """``evaluate`` / ``evaluate_ood`` / ``curves`` as the harness calls them."""

    @staticmethod
    def evaluate(samples, y_true, *, seed: int, n_bootstrap: int = 200) -> list[MetricValue]:
        if isinstance(samples, ClassificationSamples):
            p = samples.mean()
            per = {
                "accuracy_score": (p.argmax(-1) == y_true).astype(float),
                "nll_loss": -np.log(np.clip(p[np.arange(len(y_true)), y_true], 1e-12, None)),
                "ece_error": np.abs(p.max(-1) - (p.argmax(-1) == y_true)),
            }
        elif isinstance(samples, RegressionSamples):
            mu, var = samples.mean(), samples.total_variance()
            per = {
                "rmse_error": ((mu - y_true) ** 2).sum(-1),
                "nll_loss": (0.5 * np.log(2 * np.pi * var) + 0.5 * (mu - y_true) ** 2 / var).sum(-1),
            }
        else:
            raise NotImplementedError("reconstruction metrics come later")
        out = []
        for name, v in per.items():
            lo, hi = _boot(v, seed, n_bootstrap)
            value = float(v.mean())
            if name == "rmse_error":
                value, lo, hi = math.sqrt(value), math.sqrt(lo), math.sqrt(hi)
            out.append(MetricValue(name, value, lo, hi))
        return out

    @staticmethod
    def evaluate_ood(samples_in, samples_ood, *, seed: int, n_bootstrap: int = 200) -> list[MetricValue]:
        def epi(s):
            e = s.epistemic_variance()
            return e.sum(-1) if e.ndim == 2 else e

        e_in, e_ood = epi(samples_in).mean(), epi(samples_ood).mean()
        ratio = float(e_ood / e_in) if e_in > 1e-12 else math.nan  # undefined, as in the real metrics
        return [MetricValue("epistemic_ratio", ratio, math.nan, math.nan)]

    @staticmethod
    def curves(samples, y_true) -> dict[str, np.ndarray]:
        return {"dummy_curve": np.linspace(0, 1, 5)}
