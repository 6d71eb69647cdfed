"""Metrics of autoencoder reconstructions (``ReconstructionSamples``): pure functions on arrays.

Notation: S draws, N points, D pixels, K latent dimensions. Draw s of an autoencoder gives
z_s ~ q_s(z|x) = N(latent_mean[s], diag latent_scale[s]^2) and the decoder's mean
``recon[s]`` at z_s. The prior is p(z) = N(0, I). The decoder likelihood p(x|z_s) is
Bernoulli with pixel probabilities ``recon[s]`` (``log p = sum_d x log r + (1 - x) log(1 - r)``,
the negative binary cross-entropy; for grey levels x in [0, 1] this is the usual soft-target
form, not a normalised density) or, when the container carries ``recon_scale``, Gaussian
N(recon[s], recon_scale[s]^2). All log-densities are in nats, summed over pixels or latents.

For a deterministic encoder every draw has the same q; for a Bayesian encoder draw s also
samples the encoder's weights, so q_s differs by draw and every formula below uses draw s's
own q_s (see :func:`log_px_iwae`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.special import logsumexp

from uqbench.interface import ReconstructionSamples
from uqbench.metrics._bootstrap import MetricValue, Statistic, mean_statistic, run_bootstrap
from uqbench.metrics._ood import ranking_statistic, ratio_statistic
from uqbench.metrics._uncertainty import ZERO_ATOL

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
# Bernoulli probabilities are clipped to [P_CLIP, 1 - P_CLIP] before logs: float32 decoders
# saturate to exactly 0 or 1, which would make one pixel's log-likelihood -inf.
P_CLIP = 1e-7
# Fewer importance samples give a visibly looser bound; below this log_px_iwae_score is NaN.
MIN_IWAE_DRAWS = 100
KNN_NEIGHBORS = 5
KNN_FOLDS = 5

NAN = float("nan")

# name -> (higher_is_better, kind, definition); for METRICS in _registry.py.
DEFINITIONS: dict[str, tuple[bool | None, str, str]] = {
    "elbo_score": (
        True, "point",
        "Test ELBO in nats per example: mean over draws of log p(x|z_s) minus the mean over "
        "draws of the analytic KL(q_s(z|x) || N(0, I)) (q_s from latent_mean/latent_scale).",
    ),
    "log_px_iwae_score": (
        True, "point",
        f"Importance-weighted (IWAE) lower bound on log p(x) in nats per example with k = S "
        f"draws: logmeanexp_s [log p(x|z_s) + log p(z_s) - log q_s(z_s|x)], each draw with its "
        f"own q_s; NaN when S < {MIN_IWAE_DRAWS}.",
    ),
    "recon_bce_loss": (
        False, "point",
        "Binary cross-entropy of the reconstructions, summed over pixels and averaged over "
        "draws (nats per example); NaN unless inputs and reconstructions lie in [0, 1].",
    ),
    "recon_mse_error": (
        False, "point",
        "Squared error of the reconstructions, averaged over pixels and draws.",
    ),
    "latent_knn_accuracy_score": (
        True, "point",
        f"Accuracy of a {KNN_NEIGHBORS}-nearest-neighbour classifier of the class labels from "
        f"the latent means (averaged over draws), {KNN_FOLDS}-fold stratified cross-validated "
        "predictions; NaN without labels.",
    ),
    "latent_silhouette_score": (
        True, "point",
        "Mean silhouette coefficient (Euclidean) of the latent means (averaged over draws), "
        "clustered by class label; NaN without labels.",
    ),
    "epistemic_variance": (
        None, "uncertainty",
        "Variance across draws of the encoder's latent mean, summed over latent dimensions "
        "(0 for a deterministic encoder).",
    ),
    "auroc_neg_elbo": (
        True, "ood",
        "AUROC of the per-example negative ELBO as OOD score (OOD positive); NaN without the "
        "inputs.",
    ),
    "auroc_latent_variance": (
        True, "ood",
        "AUROC of the variance of the latent draws across draws, summed over latent "
        "dimensions, as OOD score (OOD positive).",
    ),
    "epistemic_ratio": (
        True, "ood",
        "Mean epistemic variance (of the latent means) on the OOD set over that on the test "
        "set; NaN when the test-set mean is exactly 0, as for a deterministic encoder.",
    ),
}


# -- per-point quantities -------------------------------------------------------------------
def _as_float(name: str, a: object, ndim: int) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {a.shape}")
    return a


def log_likelihood(
    recon: np.ndarray, X: np.ndarray, recon_scale: np.ndarray | None = None
) -> np.ndarray:
    """Decoder log-likelihood log p(x_n | z_s) summed over pixels ``[S, N]``.

    Parameters
    ----------
    recon : ``[S, N, D]`` Bernoulli probabilities (clipped to ``[1e-7, 1 - 1e-7]``) or
        Gaussian means.
    X : ``[N, D]`` inputs.
    recon_scale : ``[S, N, D]`` Gaussian standard deviations, or None for Bernoulli.
    """
    recon = _as_float("recon", recon, 3)
    X = _as_float("X", X, 2)
    if recon.shape[1:] != X.shape:
        raise ValueError(f"recon {recon.shape} does not match X {X.shape} in [N, D]")
    if recon_scale is None:
        p = np.clip(recon, P_CLIP, 1.0 - P_CLIP)
        return np.sum(X * np.log(p) + (1.0 - X) * np.log1p(-p), axis=-1)
    scale = _as_float("recon_scale", recon_scale, 3)
    z = (X - recon) / scale
    return np.sum(-0.5 * z * z - np.log(scale) - _HALF_LOG_2PI, axis=-1)


def gaussian_kl(latent_mean: np.ndarray, latent_scale: np.ndarray) -> np.ndarray:
    """``KL(N(mean, diag scale^2) || N(0, I))`` per draw and point ``[S, N]`` (nats).

    ``0.5 * sum_k (mean^2 + scale^2 - 1 - 2 log scale)``.
    """
    mu = _as_float("latent_mean", latent_mean, 3)
    sd = _as_float("latent_scale", latent_scale, 3)
    return 0.5 * np.sum(mu * mu + sd * sd - 1.0 - 2.0 * np.log(sd), axis=-1)


def elbo(
    recon: np.ndarray,
    X: np.ndarray,
    latent_mean: np.ndarray,
    latent_scale: np.ndarray,
    recon_scale: np.ndarray | None = None,
) -> np.ndarray:
    """Evidence lower bound per point ``[N]`` (nats): ``mean_s log p(x|z_s) - mean_s KL(q_s || p)``.

    The first term is the Monte-Carlo estimate of E_q[log p(x|z)] from the S draws, the
    second the closed-form KL, averaged over draws (it differs by draw only for a Bayesian
    encoder, where the result is the average over weight draws of each draw's ELBO).
    """
    ll = log_likelihood(recon, X, recon_scale)
    return ll.mean(axis=0) - gaussian_kl(latent_mean, latent_scale).mean(axis=0)


def log_px_iwae(
    recon: np.ndarray,
    X: np.ndarray,
    latent: np.ndarray,
    latent_mean: np.ndarray,
    latent_scale: np.ndarray,
    recon_scale: np.ndarray | None = None,
) -> np.ndarray:
    """Importance-weighted estimate of log p(x) with k = S draws, per point ``[N]`` (nats).

    ``log (1/S) sum_s exp(log p(x|z_s) + log N(z_s; 0, I) - log q_s(z_s|x))`` (Burda et al.,
    2016): a lower bound in expectation that tightens as S grows and equals the ELBO's
    expectation at S = 1. With a Bayesian encoder, z_s was drawn from draw s's own q_s,
    so each weight ``p(x, z_s) / q_s(z_s|x)`` is still an unbiased estimate of p(x) and the
    average of them is too: the bound holds with q_s in place of a single q.
    """
    z = _as_float("latent", latent, 3)
    mu = _as_float("latent_mean", latent_mean, 3)
    sd = _as_float("latent_scale", latent_scale, 3)
    log_prior = np.sum(-0.5 * z * z - _HALF_LOG_2PI, axis=-1)
    u = (z - mu) / sd
    log_q = np.sum(-0.5 * u * u - np.log(sd) - _HALF_LOG_2PI, axis=-1)
    log_w = log_likelihood(recon, X, recon_scale) + log_prior - log_q  # [S, N]
    return logsumexp(log_w, axis=0) - math.log(log_w.shape[0])


def reconstruction_bce(recon: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Binary cross-entropy summed over pixels, averaged over draws ``[N]`` (nats).

    ``-mean_s sum_d [x log r_s + (1 - x) log(1 - r_s)]`` with r clipped to ``[1e-7, 1 - 1e-7]``;
    inputs and reconstructions must lie in [0, 1].
    """
    recon = _as_float("recon", recon, 3)
    X = _as_float("X", X, 2)
    for name, a in (("recon", recon), ("X", X)):
        if a.size and (a.min() < 0.0 or a.max() > 1.0):
            raise ValueError(f"{name} must lie in [0, 1] for the BCE, got [{a.min():.4g}, {a.max():.4g}]")
    return -log_likelihood(recon, X).mean(axis=0)


def reconstruction_mse(recon: np.ndarray, X: np.ndarray) -> np.ndarray:
    """Squared error averaged over pixels and draws ``[N]``: ``mean_s mean_d (r_sd - x_d)^2``."""
    recon = _as_float("recon", recon, 3)
    X = _as_float("X", X, 2)
    if recon.shape[1:] != X.shape:
        raise ValueError(f"recon {recon.shape} does not match X {X.shape} in [N, D]")
    return np.mean((recon - X) ** 2, axis=(0, 2))


def latent_codes(samples: ReconstructionSamples) -> np.ndarray:
    """Each point's latent code ``[N, K]``: the latent mean (or, if absent, the draws) averaged over draws."""
    z = samples.latent if samples.latent_mean is None else samples.latent_mean
    return np.asarray(z, dtype=np.float64).mean(axis=0)


def _check_labels(Z: np.ndarray, labels: object) -> np.ndarray:
    y = np.asarray(labels)
    if y.shape != (Z.shape[0],):
        raise ValueError(f"labels must have shape ({Z.shape[0]},), got {y.shape}")
    return y


def knn_correct(
    Z: np.ndarray,
    labels: np.ndarray,
    *,
    seed: int,
    n_neighbors: int = KNN_NEIGHBORS,
    n_folds: int = KNN_FOLDS,
) -> np.ndarray:
    """Per point, 1.0 if its cross-validated k-NN prediction is its label ``[N]``.

    Stratified ``n_folds``-fold cross-validation (shuffled with ``seed``; the folds drop to
    the smallest class count if that is lower, at least 2), each point predicted by a
    ``KNeighborsClassifier(n_neighbors)`` fitted on the other folds. The mean is
    :func:`latent_knn_accuracy_score`. Raises ValueError with fewer than 2 classes or a
    class of one point.
    """
    Z = _as_float("Z", Z, 2)
    y = _check_labels(Z, labels)
    _, counts = np.unique(y, return_counts=True)
    if len(counts) < 2 or counts.min() < 2:
        raise ValueError(f"k-NN accuracy needs >= 2 classes of >= 2 points, got counts {counts}")
    # sklearn is imported on use: it costs seconds, and `uqbench list` imports this module.
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.neighbors import KNeighborsClassifier

    folds = StratifiedKFold(min(n_folds, int(counts.min())), shuffle=True, random_state=seed)
    k = min(n_neighbors, len(y) - math.ceil(len(y) / folds.n_splits))
    pred = cross_val_predict(KNeighborsClassifier(n_neighbors=max(1, k)), Z, y, cv=folds)
    return (pred == y).astype(np.float64)


def latent_knn_accuracy_score(Z: np.ndarray, labels: np.ndarray, *, seed: int) -> float:
    """Cross-validated k-NN accuracy of ``labels`` from latent codes ``Z`` ``[N, K]`` (see :func:`knn_correct`)."""
    return float(knn_correct(Z, labels, seed=seed).mean())


def silhouette_values(Z: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Silhouette coefficient of each point ``[N]`` (scikit-learn, Euclidean), clusters = labels.

    ``(b - a) / max(a, b)`` with a the mean distance to the point's own class and b the
    smallest mean distance to another class. Needs 2 <= classes <= N - 1.
    """
    Z = _as_float("Z", Z, 2)
    y = _check_labels(Z, labels)
    n_classes = len(np.unique(y))
    if not 2 <= n_classes <= len(y) - 1:
        raise ValueError(f"the silhouette needs 2 <= classes <= N - 1, got {n_classes} classes, N={len(y)}")
    from sklearn.metrics import silhouette_samples

    return silhouette_samples(Z, y)


def latent_silhouette_score(Z: np.ndarray, labels: np.ndarray) -> float:
    """Mean silhouette coefficient of ``Z`` ``[N, K]`` by ``labels`` (scikit-learn's ``silhouette_score``)."""
    return float(silhouette_values(Z, labels).mean())


# -- per-container helpers ------------------------------------------------------------------
def check_reconstruction_inputs(samples: ReconstructionSamples, X: object, name: str) -> np.ndarray:
    if not isinstance(samples, ReconstructionSamples):
        raise ValueError(f"expected ReconstructionSamples, got {type(samples).__name__}")
    X = np.asarray(X, dtype=np.float64)
    if X.shape != samples.recon.shape[1:]:
        raise ValueError(f"{name} has shape {X.shape}, the reconstructions {samples.recon.shape[1:]}")
    return X


def _has_q(samples: ReconstructionSamples) -> bool:
    return (
        samples.latent_mean is not None
        and samples.latent_scale is not None
        and bool(np.all(samples.latent_scale > 0))
    )


def elbo_per_point(samples: ReconstructionSamples, X: np.ndarray) -> np.ndarray | None:
    """:func:`elbo` of a container at its inputs ``X`` ``[N]``; None without q's parameters."""
    if not _has_q(samples):
        return None
    return elbo(samples.recon, X, samples.latent_mean, samples.latent_scale, samples.recon_scale)


def reconstruction_epistemic(samples: ReconstructionSamples) -> np.ndarray:
    e = samples.epistemic_variance()
    return np.where(e <= ZERO_ATOL, 0.0, e)


def _only(stat: Statistic, keep: Sequence[str]) -> Statistic:
    def fn(*weights: np.ndarray) -> dict[str, np.ndarray]:
        return {k: v for k, v in stat.fn(*weights).items() if k in keep}

    return Statistic(fn)


def _nan(name: str) -> MetricValue:
    return MetricValue(name, NAN, NAN, NAN)


def _ordered(values: list[MetricValue]) -> list[MetricValue]:
    rank = {name: i for i, name in enumerate(DEFINITIONS)}
    return sorted(values, key=lambda v: rank[v.name])


# -- evaluation -----------------------------------------------------------------------------
def evaluate_reconstruction(
    samples: ReconstructionSamples,
    X_true: np.ndarray,
    labels: np.ndarray | None = None,
    *,
    seed: int,
    n_bootstrap: int = 200,
) -> list[MetricValue]:
    """All test-set reconstruction metrics, each with a bootstrap 95% interval over points.

    Parameters
    ----------
    samples : the autoencoder's draws at the N test inputs.
    X_true : ``[N, D]`` the inputs that were reconstructed.
    labels : ``[N]`` class labels for the latent-separability metrics, or None (then NaN).
    seed : seeds the bootstrap (and the k-NN folds).
    n_bootstrap : number of resamples; 0 gives NaN intervals.

    Returns
    -------
    ``elbo_score``, ``log_px_iwae_score``, ``recon_bce_loss``, ``recon_mse_error``,
    ``latent_knn_accuracy_score``, ``latent_silhouette_score``, ``epistemic_variance``
    (definitions in ``DEFINITIONS``). Undefined ones are NaN: the ELBO and IWAE without
    positive latent scales, the IWAE with fewer than 100 draws, the BCE outside [0, 1],
    separability without labels (or with fewer than 2 classes). The intervals resample
    test points; for k-NN and silhouette they resample the per-point values (CV
    correctness, silhouette coefficient) computed once on all points.
    """
    X = check_reconstruction_inputs(samples, X_true, "X_true")
    per_point: dict[str, np.ndarray] = {}
    missing: list[str] = []
    lower = elbo_per_point(samples, X)
    if lower is None:
        missing += ["elbo_score", "log_px_iwae_score"]
    else:
        per_point["elbo_score"] = lower
        if samples.n_samples >= MIN_IWAE_DRAWS:
            per_point["log_px_iwae_score"] = log_px_iwae(
                samples.recon, X, samples.latent, samples.latent_mean, samples.latent_scale,
                samples.recon_scale,
            )
        else:
            missing.append("log_px_iwae_score")
    in_unit = X.min() >= 0.0 and X.max() <= 1.0 and samples.recon.min() >= 0.0 and samples.recon.max() <= 1.0
    if in_unit:
        per_point["recon_bce_loss"] = reconstruction_bce(samples.recon, X)
    else:
        missing.append("recon_bce_loss")
    per_point["recon_mse_error"] = reconstruction_mse(samples.recon, X)
    separability = {"latent_knn_accuracy_score": None, "latent_silhouette_score": None}
    if labels is not None:
        Z = latent_codes(samples)
        y = _check_labels(Z, labels)
        _, counts = np.unique(y, return_counts=True)
        if len(counts) >= 2 and counts.min() >= 2:
            separability["latent_knn_accuracy_score"] = knn_correct(Z, y, seed=seed)
        if 2 <= len(counts) <= len(y) - 1:
            separability["latent_silhouette_score"] = silhouette_values(Z, y)
    for name, values in separability.items():
        if values is None:
            missing.append(name)
        else:
            per_point[name] = values
    per_point["epistemic_variance"] = reconstruction_epistemic(samples)
    values = run_bootstrap(
        [mean_statistic(per_point)], [X.shape[0]], n_bootstrap=n_bootstrap, seed=seed
    )
    return _ordered(values + [_nan(name) for name in missing])


def evaluate_reconstruction_ood(
    samples_in: ReconstructionSamples,
    samples_ood: ReconstructionSamples,
    *,
    X_in: np.ndarray | None = None,
    X_ood: np.ndarray | None = None,
    seed: int,
    n_bootstrap: int = 200,
) -> list[MetricValue]:
    """How well an autoencoder's scores separate one OOD set from the test set.

    Emits ``auroc_neg_elbo`` (needs ``X_in`` and ``X_ood``, the reconstructed inputs;
    NaN without them or without q's parameters), ``auroc_latent_variance`` and
    ``epistemic_ratio`` (OOD is the positive class; see ``DEFINITIONS``). The bootstrap
    resamples the in-distribution and the OOD points independently.

    Parameters
    ----------
    samples_in, samples_ood : the same model's draws at the test and the OOD inputs.
    X_in, X_ood : ``[N, D]`` and ``[M, D]`` those inputs.
    seed, n_bootstrap : as in :func:`evaluate_reconstruction`.
    """
    for name, s in (("samples_in", samples_in), ("samples_ood", samples_ood)):
        if not isinstance(s, ReconstructionSamples):
            raise ValueError(f"{name} must be ReconstructionSamples, got {type(s).__name__}")
    if samples_in.recon.shape[2] != samples_ood.recon.shape[2]:
        raise ValueError(
            f"samples_in has D={samples_in.recon.shape[2]}, samples_ood D={samples_ood.recon.shape[2]}"
        )
    statistics = [
        ratio_statistic(reconstruction_epistemic(samples_in), reconstruction_epistemic(samples_ood)),
        _only(
            ranking_statistic(
                "latent_variance", samples_in.latent_variance(), samples_ood.latent_variance()
            ),
            ["auroc_latent_variance"],
        ),
    ]
    missing = []
    if X_in is None or X_ood is None:
        missing.append("auroc_neg_elbo")
    else:
        e_in = elbo_per_point(samples_in, check_reconstruction_inputs(samples_in, X_in, "X_in"))
        e_ood = elbo_per_point(samples_ood, check_reconstruction_inputs(samples_ood, X_ood, "X_ood"))
        if e_in is None or e_ood is None:
            missing.append("auroc_neg_elbo")
        else:
            statistics.append(_only(ranking_statistic("neg_elbo", -e_in, -e_ood), ["auroc_neg_elbo"]))
    sizes = [samples_in.recon.shape[1], samples_ood.recon.shape[1]]
    values = run_bootstrap(statistics, sizes, n_bootstrap=n_bootstrap, seed=seed)
    return _ordered(values + [_nan(name) for name in missing])
