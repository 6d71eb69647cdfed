"""Classification metrics of the predictive (mixture) class probabilities.

Every public function takes ``probs [N, C]`` -- the mean over draws of the sampled class
probabilities, i.e. ``ClassificationSamples.mean()`` -- and integer labels ``y_true [N]``.
The predicted class is the first arg-max of ``probs``.

Binning (ECE, MCE, classwise ECE, reliability curve): ``n_bins`` equal-width bins on
[0, 1] with edges ``linspace(0, 1, n_bins + 1)``; bin k is ``[edge_k, edge_{k+1})``,
left-closed, except the last bin ``[edge_{n-1}, 1]``, which is closed so that a
probability of exactly 1.0 falls in it.
"""

from __future__ import annotations

import numbers

import numpy as np

from uqbench.metrics._bootstrap import Statistic, group_matrix, mean_statistic, weighted_sums

N_BINS = 15
# Probabilities are clipped here before the log so a zero on the true class gives a large
# finite loss (-log(tiny) ~ 708) rather than inf.
_TINY = np.finfo(np.float64).tiny
_ROW_SUM_ATOL = 1e-4


def check_probs_labels(probs: object, y_true: object) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 ``probs [N, C]`` and int64 ``y_true [N]``."""
    p = np.asarray(probs)
    if p.ndim != 2 or p.shape[0] < 1 or p.shape[1] < 1:
        raise ValueError(f"probs must have shape [N, C] with N, C >= 1, got shape {p.shape}")
    if not np.issubdtype(p.dtype, np.floating):
        raise ValueError(f"probs must be floating point, got dtype {p.dtype}")
    p = p.astype(np.float64, copy=False)
    if not np.all(np.isfinite(p)):
        raise ValueError(f"probs must be finite, got {p[~np.isfinite(p)][:5]}")
    if p.min() < 0.0:
        raise ValueError(f"probs must be >= 0, got minimum {p.min()!r}")
    row_sums = p.sum(axis=1)
    worst = int(np.argmax(np.abs(row_sums - 1.0)))
    if abs(row_sums[worst] - 1.0) > _ROW_SUM_ATOL:
        raise ValueError(f"probs rows must sum to 1, row {worst} sums to {row_sums[worst]!r}")
    y = np.asarray(y_true)
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise ValueError(
            f"y_true must be 1-D integer class indices, got dtype {y.dtype} shape {y.shape}"
        )
    if y.shape[0] != p.shape[0]:
        raise ValueError(f"y_true has {y.shape[0]} labels but probs has {p.shape[0]} rows")
    bad = (y < 0) | (y >= p.shape[1])
    if np.any(bad):
        raise ValueError(f"y_true must lie in [0, {p.shape[1]}), got {y[bad][:5]}")
    return p, y.astype(np.int64, copy=False)


def check_n_bins(n_bins: object) -> int:
    if not isinstance(n_bins, numbers.Integral) or isinstance(n_bins, bool) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    return int(n_bins)


def bin_edges(n_bins: int) -> np.ndarray:
    """Edges ``[n_bins + 1]`` of the equal-width bins on [0, 1]."""
    return np.linspace(0.0, 1.0, n_bins + 1)


def bin_index(values: np.ndarray, n_bins: int) -> np.ndarray:
    """Bin of each value in [0, 1]: ``[edge_k, edge_{k+1})``, the last bin closed at 1."""
    k = np.searchsorted(bin_edges(n_bins), values, side="right") - 1
    return np.clip(k, 0, n_bins - 1)


def _onehot(y: np.ndarray, n_classes: int) -> np.ndarray:
    out = np.zeros((y.shape[0], n_classes))
    out[np.arange(y.shape[0]), y] = 1.0
    return out


# ---- per-point values (shared by the public functions and the bootstrap) ----------------


def point_values(p: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
    """Per-point accuracy, NLL and Brier ``{name: [N]}`` of validated inputs."""
    rows = np.arange(y.shape[0])
    correct = (np.argmax(p, axis=1) == y).astype(np.float64)
    nll = -np.log(np.clip(p[rows, y], _TINY, None))
    brier = np.sum((p - _onehot(y, p.shape[1])) ** 2, axis=1)
    return {"accuracy_score": correct, "nll_loss": nll, "brier_loss": brier}


def calibration_statistic(p: np.ndarray, y: np.ndarray, n_bins: int) -> Statistic:
    """ECE, MCE and classwise ECE of validated inputs, for any batch of resample weights."""
    n_points, n_classes = p.shape
    conf = p.max(axis=1)
    top_bins = bin_index(conf, n_bins)
    # ECE = sum_b (n_b / N) |acc_b - conf_b| = (1 / N) sum_b |sum_{i in b} (correct_i - conf_i)|
    top_gaps = group_matrix(top_bins, (np.argmax(p, axis=1) == y) - conf, n_bins)
    top_counts = group_matrix(top_bins, None, n_bins)
    # Classwise: one binning per class, bins of class c in columns c * n_bins ...
    class_keys = bin_index(p, n_bins) + n_bins * np.arange(n_classes)
    class_gaps = group_matrix(class_keys, _onehot(y, n_classes) - p, n_classes * n_bins)

    def fn(weights: np.ndarray) -> dict[str, np.ndarray]:
        sums = np.abs(weighted_sums(weights, top_gaps))  # [B, n_bins]
        counts = weighted_sums(weights, top_counts)
        ece = sums.sum(axis=1) / n_points
        per_bin = np.divide(sums, counts, out=np.zeros_like(sums), where=counts > 0)
        classwise = np.abs(weighted_sums(weights, class_gaps)).sum(axis=1)
        return {
            "ece_error": ece,
            "classwise_ece_error": classwise / (n_points * n_classes),
            "mce_error": per_bin.max(axis=1),
        }

    return Statistic(fn)


def classification_statistics(
    probs: np.ndarray, y_true: np.ndarray, *, n_bins: int = N_BINS
) -> list[Statistic]:
    """Statistics for every classification point metric of ``probs [N, C]``."""
    p, y = check_probs_labels(probs, y_true)
    return [mean_statistic(point_values(p, y)), calibration_statistic(p, y, check_n_bins(n_bins))]


def _at_identity(stat: Statistic, n: int, name: str) -> float:
    return float(stat.fn(np.ones((1, n)))[name][0])


# ---- public metrics ---------------------------------------------------------------------


def accuracy_score(probs: np.ndarray, y_true: np.ndarray) -> float:
    """Fraction of points whose first arg-max of ``probs [N, C]`` equals ``y_true [N]``."""
    p, y = check_probs_labels(probs, y_true)
    return float(point_values(p, y)["accuracy_score"].mean())


def categorical_nll_loss(probs: np.ndarray, y_true: np.ndarray) -> float:
    """Negative log-likelihood of the mean predictive: ``-mean_n log probs[n, y_n]``.

    Natural log (nats), averaged over points. The probability of the true class is clipped
    below at the smallest positive float64 so a zero gives about 708, not inf.
    """
    p, y = check_probs_labels(probs, y_true)
    return float(point_values(p, y)["nll_loss"].mean())


def brier_loss(probs: np.ndarray, y_true: np.ndarray) -> float:
    """Multiclass Brier score: ``mean_n sum_c (probs[n, c] - 1{y_n = c})^2``, in [0, 2].

    Summed over classes, averaged over points (Brier 1950; not halved for two classes).
    """
    p, y = check_probs_labels(probs, y_true)
    return float(point_values(p, y)["brier_loss"].mean())


def ece_error(probs: np.ndarray, y_true: np.ndarray, *, n_bins: int = N_BINS) -> float:
    """Top-label expected calibration error (Guo et al. 2017).

    ``sum_b (n_b / N) |acc_b - conf_b|`` over ``n_bins`` equal-width bins of the top-label
    confidence ``max_c probs[n, c]`` (bins ``[lo, hi)``, the last closed at 1.0); ``acc_b``
    is the fraction of correct arg-max predictions in bin b and ``conf_b`` its mean
    confidence. Empty bins contribute nothing. In [0, 1].
    """
    p, y = check_probs_labels(probs, y_true)
    return _at_identity(calibration_statistic(p, y, check_n_bins(n_bins)), p.shape[0], "ece_error")


def mce_error(probs: np.ndarray, y_true: np.ndarray, *, n_bins: int = N_BINS) -> float:
    """Top-label maximum calibration error: ``max_b |acc_b - conf_b|`` over non-empty bins.

    Same bins and quantities as :func:`ece_error` (Guo et al. 2017). In [0, 1].
    """
    p, y = check_probs_labels(probs, y_true)
    return _at_identity(calibration_statistic(p, y, check_n_bins(n_bins)), p.shape[0], "mce_error")


def classwise_ece_error(probs: np.ndarray, y_true: np.ndarray, *, n_bins: int = N_BINS) -> float:
    """Classwise ECE as defined by Kull et al. (2019), "Beyond temperature scaling".

    ``(1 / C) sum_c sum_b (n_{b,c} / N) |y_c(b) - p_c(b)|``: for each class c the points
    are binned by ``probs[:, c]`` (``n_bins`` equal-width bins ``[lo, hi)``, the last
    closed at 1.0); ``y_c(b)`` is the fraction of points in the bin whose label is c and
    ``p_c(b)`` their mean ``probs[:, c]``. In [0, 1].
    """
    p, y = check_probs_labels(probs, y_true)
    return _at_identity(
        calibration_statistic(p, y, check_n_bins(n_bins)), p.shape[0], "classwise_ece_error"
    )


def reliability_curve(
    probs: np.ndarray, y_true: np.ndarray, *, n_bins: int = N_BINS
) -> dict[str, np.ndarray]:
    """Reliability-diagram arrays of the top-label confidence (the ECE bins).

    Returns
    -------
    dict with ``bin_edges [n_bins + 1]``, ``bin_centers [n_bins]``, ``accuracy [n_bins]``
    (fraction correct), ``confidence [n_bins]`` (mean confidence) -- both NaN in empty
    bins -- and ``counts [n_bins]`` (int64).
    """
    p, y = check_probs_labels(probs, y_true)
    n_bins = check_n_bins(n_bins)
    conf = p.max(axis=1)
    bins = bin_index(conf, n_bins)
    correct = (np.argmax(p, axis=1) == y).astype(np.float64)
    counts = np.bincount(bins, minlength=n_bins)
    sum_correct = np.bincount(bins, weights=correct, minlength=n_bins)
    sum_conf = np.bincount(bins, weights=conf, minlength=n_bins)
    nonempty = counts > 0
    accuracy = np.full(n_bins, np.nan)
    confidence = np.full(n_bins, np.nan)
    accuracy[nonempty] = sum_correct[nonempty] / counts[nonempty]
    confidence[nonempty] = sum_conf[nonempty] / counts[nonempty]
    edges = bin_edges(n_bins)
    return {
        "bin_edges": edges,
        "bin_centers": (edges[:-1] + edges[1:]) / 2.0,
        "accuracy": accuracy,
        "confidence": confidence,
        "counts": counts.astype(np.int64),
    }
