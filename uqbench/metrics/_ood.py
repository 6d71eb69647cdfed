"""Separating off-distribution (OOD) from in-distribution test points by a score.

OOD points are the positive class and a higher score means "more likely OOD". The
definitions are scikit-learn's: ``roc_auc_score`` (ties count one half),
``average_precision_score`` (``sum_k (R_k - R_{k-1}) P_k`` over distinct score thresholds,
no interpolation) and the ROC curve of ``roc_curve`` (all thresholds) for the FPR at 95%
TPR. They are implemented here on weighted counts per distinct score so that all
bootstrap resamples are evaluated at once; the tests check them against scikit-learn.
"""

from __future__ import annotations

import numbers

import numpy as np

from uqbench.metrics._bootstrap import Statistic, group_matrix, weighted_sums

TPR_LEVEL = 0.95


def _check_scores(name: str, scores: object) -> np.ndarray:
    s = np.asarray(scores)
    if s.ndim != 1 or s.shape[0] < 1:
        raise ValueError(f"{name} must be a non-empty 1-D array, got shape {s.shape}")
    if not (np.issubdtype(s.dtype, np.floating) or np.issubdtype(s.dtype, np.integer)):
        raise ValueError(f"{name} must be numeric, got dtype {s.dtype}")
    s = s.astype(np.float64, copy=False)
    if not np.all(np.isfinite(s)):
        raise ValueError(f"{name} must be finite, got {s[~np.isfinite(s)][:5]}")
    return s


def _check_tpr(tpr: object) -> float:
    if not isinstance(tpr, numbers.Real) or not 0.0 < float(tpr) <= 1.0:
        raise ValueError(f"tpr must be in (0, 1], got {tpr!r}")
    return float(tpr)


class _Ranking:
    """Distinct pooled scores (descending) and each point's position among them."""

    def __init__(self, scores_in: np.ndarray, scores_ood: np.ndarray) -> None:
        pooled = np.concatenate([scores_in, scores_ood])
        # Distinct values in descending order; code 0 is the highest score.
        values, inverse = np.unique(-pooled, return_inverse=True)
        n_values = values.shape[0]
        n_in = scores_in.shape[0]
        self.in_counts = group_matrix(inverse[:n_in], None, n_values)
        self.ood_counts = group_matrix(inverse[n_in:], None, n_values)

    def metrics(self, w_in: np.ndarray, w_ood: np.ndarray, tpr: float):
        """AUROC, average precision and FPR at ``tpr`` for each resample ``[B]``."""
        neg = weighted_sums(w_in, self.in_counts)  # [B, n_values]
        pos = weighted_sums(w_ood, self.ood_counts)
        n_neg, n_pos = w_in.shape[1], w_ood.shape[1]
        tp = np.cumsum(pos, axis=1)  # positives scoring >= each threshold
        fp = np.cumsum(neg, axis=1)
        # P(score_ood > score_in) + 0.5 P(equal): negatives below value k are n_neg - fp_k.
        auroc = np.sum(pos * (n_neg - fp + 0.5 * neg), axis=1) / (n_neg * n_pos)
        precision = np.divide(tp, tp + fp, out=np.zeros_like(tp), where=pos > 0)
        ap = np.sum(pos * precision, axis=1) / n_pos
        reached = tp / n_pos >= tpr
        first = np.argmax(reached, axis=1)  # the last threshold always reaches TPR 1
        fpr = fp[np.arange(fp.shape[0]), first] / n_neg
        return auroc, ap, fpr


def ranking_statistic(suffix: str, scores_in: np.ndarray, scores_ood: np.ndarray) -> Statistic:
    """``auroc_<suffix>``, ``aupr_<suffix>`` and ``fpr95_<suffix>`` for (in, OOD) resamples."""
    ranking = _Ranking(
        _check_scores("scores_in", scores_in), _check_scores("scores_ood", scores_ood)
    )

    def fn(w_in: np.ndarray, w_ood: np.ndarray) -> dict[str, np.ndarray]:
        auroc, ap, fpr = ranking.metrics(w_in, w_ood, TPR_LEVEL)
        return {f"auroc_{suffix}": auroc, f"aupr_{suffix}": ap, f"fpr95_{suffix}": fpr}

    return Statistic(fn)


def ratio_statistic(epistemic_in: np.ndarray, epistemic_ood: np.ndarray) -> Statistic:
    """``epistemic_ratio`` for (in, OOD) resamples; NaN where the in-distribution mean is 0."""
    e_in = _check_scores("epistemic_in", epistemic_in)
    e_ood = _check_scores("epistemic_ood", epistemic_ood)

    def fn(w_in: np.ndarray, w_ood: np.ndarray) -> dict[str, np.ndarray]:
        mean_in = w_in @ e_in / e_in.shape[0]
        mean_ood = w_ood @ e_ood / e_ood.shape[0]
        ratio = np.divide(mean_ood, mean_in, out=np.full_like(mean_in, np.nan), where=mean_in > 0)
        return {"epistemic_ratio": ratio}

    return Statistic(fn)


def _identity(scores_in: np.ndarray, scores_ood: np.ndarray):
    return np.ones((1, len(scores_in))), np.ones((1, len(scores_ood)))


def auroc_score(scores_in: np.ndarray, scores_ood: np.ndarray) -> float:
    """Area under the ROC curve for OOD (positive) vs in-distribution by score ``[N]``, ``[M]``.

    ``P(s_ood > s_in) + 0.5 P(s_ood = s_in)`` over all (in, OOD) pairs; 0.5 is chance.
    """
    s_in, s_ood = _check_scores("scores_in", scores_in), _check_scores("scores_ood", scores_ood)
    return float(_Ranking(s_in, s_ood).metrics(*_identity(s_in, s_ood), TPR_LEVEL)[0][0])


def aupr_score(scores_in: np.ndarray, scores_ood: np.ndarray) -> float:
    """Average precision with OOD as the positive class (scikit-learn's definition).

    ``sum_k (R_k - R_{k-1}) P_k`` over distinct score thresholds k, descending, with R and
    P the recall and precision of "score >= threshold"; chance is ``M / (N + M)``.
    """
    s_in, s_ood = _check_scores("scores_in", scores_in), _check_scores("scores_ood", scores_ood)
    return float(_Ranking(s_in, s_ood).metrics(*_identity(s_in, s_ood), TPR_LEVEL)[1][0])


def fpr_at_tpr_error(
    scores_in: np.ndarray, scores_ood: np.ndarray, *, tpr: float = TPR_LEVEL
) -> float:
    """False-positive rate at the first ROC threshold whose true-positive rate >= ``tpr``.

    Flagging points with score >= t as OOD, the smallest fraction of in-distribution points
    flagged at any threshold t that flags at least ``tpr`` of the OOD points.
    """
    s_in, s_ood = _check_scores("scores_in", scores_in), _check_scores("scores_ood", scores_ood)
    return float(
        _Ranking(s_in, s_ood).metrics(*_identity(s_in, s_ood), _check_tpr(tpr))[2][0]
    )


def epistemic_ratio(epistemic_in: np.ndarray, epistemic_ood: np.ndarray) -> float:
    """``mean(epistemic_ood) / mean(epistemic_in)``; NaN when the in-distribution mean is 0.

    A zero in-distribution mean (a deterministic net, whose epistemic scores are zero)
    leaves the ratio undefined, so it is NaN by definition.
    """
    stat = ratio_statistic(epistemic_in, epistemic_ood)
    return float(stat.fn(*_identity(epistemic_in, epistemic_ood))["epistemic_ratio"][0])
