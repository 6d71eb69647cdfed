"""Reconstruction metrics against independent references: scipy densities and quadrature,
closed-form log p(x) of a linear-Gaussian model, scikit-learn's silhouette, k-NN and AUROC."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats
from sklearn.metrics import roc_auc_score, silhouette_score
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.neighbors import KNeighborsClassifier

from uqbench.interface import ReconstructionSamples
from uqbench.metrics._reconstruction import (
    DEFINITIONS,
    elbo,
    evaluate_reconstruction,
    evaluate_reconstruction_ood,
    gaussian_kl,
    latent_knn_accuracy_score,
    latent_silhouette_score,
    log_likelihood,
    log_px_iwae,
    reconstruction_bce,
    reconstruction_mse,
)


def _kl_by_quadrature(mu: float, sd: float) -> float:
    """KL(N(mu, sd^2) || N(0, 1)) as the integral of q log(q / p)."""

    def integrand(z: float) -> float:
        log_q = stats.norm.logpdf(z, mu, sd)
        return math.exp(log_q) * (log_q - stats.norm.logpdf(z))

    return integrate.quad(integrand, mu - 12 * sd, mu + 12 * sd, epsabs=1e-11)[0]


def _tiny(rng, *, s=3, n=4, d=5, k=2, binary=True):
    X = (rng.random((n, d)) < 0.4).astype(float) if binary else rng.random((n, d))
    recon = rng.uniform(0.05, 0.95, size=(s, n, d))
    mu = rng.normal(size=(s, n, k))
    sd = rng.uniform(0.2, 1.5, size=(s, n, k))
    z = mu + sd * rng.normal(size=(s, n, k))
    return X, recon, z, mu, sd


def test_elbo_matches_a_slow_scipy_loop():
    rng = np.random.default_rng(0)
    X, recon, _, mu, sd = _tiny(rng)
    s_, n_, _ = recon.shape
    expected = np.empty(n_)
    for n in range(n_):
        ll = [stats.bernoulli.logpmf(X[n].astype(int), recon[s, n]).sum() for s in range(s_)]
        kl = [
            sum(_kl_by_quadrature(mu[s, n, j], sd[s, n, j]) for j in range(mu.shape[2]))
            for s in range(s_)
        ]
        expected[n] = np.mean(ll) - np.mean(kl)
    np.testing.assert_allclose(elbo(recon, X, mu, sd), expected, rtol=1e-8, atol=1e-8)


def test_gaussian_decoder_likelihood_and_kl_match_scipy():
    rng = np.random.default_rng(1)
    X, recon, _, mu, sd = _tiny(rng, binary=False)
    scale = rng.uniform(0.1, 0.5, size=recon.shape)
    np.testing.assert_allclose(
        log_likelihood(recon, X, scale), stats.norm.logpdf(X, recon, scale).sum(-1), rtol=1e-12
    )
    kl_closed = gaussian_kl(mu, sd)
    assert kl_closed.shape == (3, 4)
    assert kl_closed[1, 2] == pytest.approx(
        sum(_kl_by_quadrature(mu[1, 2, j], sd[1, 2, j]) for j in range(2)), rel=1e-8
    )


def test_bce_and_mse_match_obvious_loops():
    rng = np.random.default_rng(2)
    X, recon, *_ = _tiny(rng, binary=False)
    bce = [
        np.mean(
            [
                -sum(x * math.log(r) + (1 - x) * math.log(1 - r) for x, r in zip(X[n], recon[s, n], strict=True))
                for s in range(3)
            ]
        )
        for n in range(4)
    ]
    np.testing.assert_allclose(reconstruction_bce(recon, X), bce, rtol=1e-10)
    mse = [np.mean([(recon[s, n] - X[n]) ** 2 for s in range(3)]) for n in range(4)]
    np.testing.assert_allclose(reconstruction_mse(recon, X), mse, rtol=1e-12)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reconstruction_bce(recon, X + 1.0)


def _linear_gaussian(rng, n=6, d=3):
    """z ~ N(0, 1), x | z ~ N(w z + b, s^2 I): p(x) and p(z|x) in closed form."""
    w, b, s = rng.normal(size=d), rng.normal(size=d), 0.7
    X = b + np.outer(rng.normal(size=n), w) + s * rng.normal(size=(n, d))
    log_px = stats.multivariate_normal(b, np.outer(w, w) + s**2 * np.eye(d)).logpdf(X)
    post_var = 1.0 / (1.0 + w @ w / s**2)
    post_mean = post_var * (X - b) @ w / s**2
    return w, b, s, X, log_px, post_mean, math.sqrt(post_var)


def _draws(rng, w, b, s, X, q_mean, q_sd, n_draws):
    n = len(X)
    mu = np.broadcast_to(q_mean[None, :, None], (n_draws, n, 1)).copy()
    sd = np.full((n_draws, n, 1), q_sd)
    z = mu + sd * rng.normal(size=mu.shape)
    recon = b + z * w  # [S, N, D]
    return recon, z, mu, sd, np.full(recon.shape, s)


def test_iwae_is_exact_with_the_true_posterior():
    rng = np.random.default_rng(3)
    w, b, s, X, log_px, m, v = _linear_gaussian(rng)
    recon, z, mu, sd, rs = _draws(rng, w, b, s, X, m, v, 3)
    # p(x, z) / p(z|x) = p(x) for every z: zero-variance importance weights.
    np.testing.assert_allclose(log_px_iwae(recon, X, z, mu, sd, rs), log_px, atol=1e-9)


def test_iwae_converges_to_log_px_and_bounds_the_elbo():
    rng = np.random.default_rng(4)
    w, b, s, X, log_px, m, v = _linear_gaussian(rng, n=8)
    q_mean, q_sd = m + 0.4, 1.6 * v  # a deliberately wrong q
    gaps = {}
    for k, reps in ((1, 200), (10, 40), (100, 10), (20000, 1)):
        vals = [log_px_iwae(*_iwae_args(rng, w, b, s, X, q_mean, q_sd, k)) for _ in range(reps)]
        gaps[k] = float(np.mean(log_px - np.mean(vals, axis=0)))
    assert gaps[1] > gaps[10] > gaps[100] > 0  # a lower bound that tightens with k
    assert abs(gaps[20000]) < 0.02
    recon, z, mu, sd, rs = _draws(rng, w, b, s, X, q_mean, q_sd, 200)
    lower = elbo(recon, X, mu, sd, rs)
    assert np.mean(log_px_iwae(recon, X, z, mu, sd, rs)) > np.mean(lower) + 0.05
    assert np.all(lower < log_px)  # the ELBO's gap is the KL to the true posterior


def _iwae_args(rng, w, b, s, X, q_mean, q_sd, k):
    recon, z, mu, sd, rs = _draws(rng, w, b, s, X, q_mean, q_sd, k)
    return recon, X, z, mu, sd, rs


def test_separability_matches_scikit_learn():
    rng = np.random.default_rng(5)
    labels = np.repeat([0, 1, 2, 3], 25)
    Z = rng.normal(size=(100, 2)) + 1.5 * np.stack([labels % 2, labels // 2], axis=1)
    assert latent_silhouette_score(Z, labels) == pytest.approx(silhouette_score(Z, labels), abs=1e-12)
    folds = StratifiedKFold(5, shuffle=True, random_state=7)
    # Equal folds of 20: the mean of fold accuracies is the pooled accuracy.
    ref = cross_val_score(KNeighborsClassifier(n_neighbors=5), Z, labels, cv=folds).mean()
    assert latent_knn_accuracy_score(Z, labels, seed=7) == pytest.approx(ref, abs=1e-12)


def _samples(rng, *, n=40, s=120, k=2, d=6, spread=0.0, shift=0.0):
    """Bernoulli-decoder samples; ``spread`` varies the latent means across draws."""
    X = (rng.random((n, d)) < 0.3).astype(float)
    base = rng.normal(size=(1, n, k)) + shift
    mu = base + spread * rng.normal(size=(s, n, k))
    sd = np.broadcast_to(rng.uniform(0.3, 0.8, size=(1, n, k)), (s, n, k)).copy()
    z = mu + sd * rng.normal(size=mu.shape)
    recon = 1.0 / (1.0 + np.exp(-(z @ rng.normal(size=(k, d)))))
    return ReconstructionSamples(recon, z, mu, sd), X


def test_evaluate_reconstruction_values_names_and_intervals():
    rng = np.random.default_rng(6)
    samples, X = _samples(rng, spread=0.2)
    labels = np.arange(40) % 2
    out = evaluate_reconstruction(samples, X, labels, seed=0, n_bootstrap=100)
    values = {m.name: m for m in out}
    assert [m.name for m in out] == [n for n in DEFINITIONS if n in values]
    assert set(values) == {
        "elbo_score", "log_px_iwae_score", "recon_bce_loss", "recon_mse_error",
        "latent_knn_accuracy_score", "latent_silhouette_score", "epistemic_variance",
    }
    mu, sd = samples.latent_mean, samples.latent_scale
    expected = {
        "elbo_score": elbo(samples.recon, X, mu, sd).mean(),
        "log_px_iwae_score": log_px_iwae(samples.recon, X, samples.latent, mu, sd).mean(),
        "recon_bce_loss": reconstruction_bce(samples.recon, X).mean(),
        "recon_mse_error": reconstruction_mse(samples.recon, X).mean(),
        "latent_silhouette_score": silhouette_score(mu.mean(0), labels),
        "epistemic_variance": np.var(mu, axis=0).sum(-1).mean(),
    }
    for name, value in expected.items():
        assert values[name].value == pytest.approx(value, rel=1e-10), name
    for m in out:
        assert m.ci_low <= m.value <= m.ci_high, m
    assert values["log_px_iwae_score"].value >= values["elbo_score"].value
    again = evaluate_reconstruction(samples, X, labels, seed=0, n_bootstrap=100)
    assert again == out


def test_undefined_reconstruction_metrics_are_nan():
    rng = np.random.default_rng(7)
    samples, X = _samples(rng, s=20)  # fewer than 100 draws, identical latent means
    values = {m.name: m.value for m in evaluate_reconstruction(samples, X, None, seed=0, n_bootstrap=10)}
    for name in ("log_px_iwae_score", "latent_knn_accuracy_score", "latent_silhouette_score"):
        assert math.isnan(values[name]), name
    assert values["epistemic_variance"] == 0.0
    assert np.isfinite(values["elbo_score"])
    gaussian = ReconstructionSamples(
        samples.recon * 3 - 1, samples.latent, samples.latent_mean, samples.latent_scale,
        np.full(samples.recon.shape, 0.5),
    )
    values = {m.name: m.value for m in evaluate_reconstruction(gaussian, X, None, seed=0, n_bootstrap=0)}
    assert math.isnan(values["recon_bce_loss"])
    assert values["elbo_score"] == pytest.approx(
        np.mean(
            stats.norm.logpdf(X, gaussian.recon, 0.5).sum(-1).mean(0)
            - gaussian_kl(samples.latent_mean, samples.latent_scale).mean(0)
        )
    )
    no_q = ReconstructionSamples(samples.recon, samples.latent)
    values = {m.name: m.value for m in evaluate_reconstruction(no_q, X, None, seed=0, n_bootstrap=0)}
    assert math.isnan(values["elbo_score"]) and np.isfinite(values["recon_mse_error"])


def test_evaluate_reconstruction_ood_against_scikit_learn():
    rng = np.random.default_rng(8)
    s_in, X_in = _samples(rng, n=50, s=30, spread=0.1)
    s_ood, X_ood = _samples(rng, n=30, s=30, spread=0.3, shift=2.0)
    out = evaluate_reconstruction_ood(s_in, s_ood, X_in=X_in, X_ood=X_ood, seed=1, n_bootstrap=100)
    values = {m.name: m for m in out}
    assert list(values) == ["auroc_neg_elbo", "auroc_latent_variance", "epistemic_ratio"]
    y = np.r_[np.zeros(50), np.ones(30)]

    def neg_elbo(s, X):
        return -elbo(s.recon, X, s.latent_mean, s.latent_scale)

    assert values["auroc_neg_elbo"].value == pytest.approx(
        roc_auc_score(y, np.r_[neg_elbo(s_in, X_in), neg_elbo(s_ood, X_ood)])
    )
    assert values["auroc_latent_variance"].value == pytest.approx(
        roc_auc_score(y, np.r_[s_in.latent_variance(), s_ood.latent_variance()])
    )
    assert values["epistemic_ratio"].value == pytest.approx(
        s_ood.epistemic_variance().mean() / s_in.epistemic_variance().mean()
    )
    assert values["epistemic_ratio"].value > 1
    for m in out:
        assert m.ci_low <= m.value <= m.ci_high

    # A deterministic encoder: the ratio is undefined; no inputs: no ELBO ranking.
    flat_in, X_in = _samples(rng, n=20, s=10)
    flat_ood, X_ood = _samples(rng, n=20, s=10)
    values = {m.name: m.value for m in evaluate_reconstruction_ood(flat_in, flat_ood, seed=0, n_bootstrap=20)}
    assert math.isnan(values["epistemic_ratio"]) and math.isnan(values["auroc_neg_elbo"])
    assert 0.0 <= values["auroc_latent_variance"] <= 1.0


def test_invalid_inputs_raise_value_errors():
    rng = np.random.default_rng(9)
    samples, X = _samples(rng, s=5)
    with pytest.raises(ValueError, match="X_true"):
        evaluate_reconstruction(samples, X[:, :3], None, seed=0)
    with pytest.raises(ValueError, match="labels"):
        evaluate_reconstruction(samples, X, np.zeros(3), seed=0)
    with pytest.raises(ValueError, match="ReconstructionSamples"):
        evaluate_reconstruction_ood(samples, object(), seed=0)
    with pytest.raises(ValueError, match="seed"):
        evaluate_reconstruction(samples, X, None, seed=1.5)
