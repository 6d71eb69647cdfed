"""VAE and Bayesian autoencoder: the contract, the sampling structure, the training
objective against the metrics' independent ELBO, generation, and behaviour on digits."""

from __future__ import annotations

from contextlib import contextmanager

import numpy as np
import pytest
import torch
from scipy import stats

from uqbench.datasets import load_dataset
from uqbench.metrics._reconstruction import elbo, evaluate_reconstruction
from uqbench.testing import check_adapter
from uqbench_adapters.torch._base import seeded
from uqbench_adapters.torch.bayesian_ae import BayesianAEAdapter
from uqbench_adapters.torch.vae import VAEAdapter


@contextmanager
def _single_thread():
    # Tiny networks gain nothing from intra-op threads and lose a lot to contention.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(autouse=True)
def _one_thread():
    with _single_thread():
        yield


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits", seed=0, input_scaling="unit")


@pytest.fixture(scope="module")
def vae(digits):
    with _single_thread():
        return VAEAdapter().fit(digits.X_train, seed=0)


@pytest.fixture(scope="module")
def bae(digits):
    with _single_thread():
        return BayesianAEAdapter().fit(digits.X_train, seed=0)


@pytest.mark.parametrize(
    "adapter",
    [
        VAEAdapter(epochs=3),
        VAEAdapter(epochs=3, decoder="gaussian", latent_dim=3),
        VAEAdapter(epochs=3, decoder="gaussian", decoder_scale=0.3),
        BayesianAEAdapter(epochs=3, hidden=(16, 8)),
    ],
    ids=["vae", "vae-gaussian-learned", "vae-gaussian-fixed", "bayesian-ae"],
)
def test_contract(adapter):
    check_adapter(adapter, "reconstruction")


@pytest.mark.parametrize("cls", [VAEAdapter, BayesianAEAdapter])
def test_invalid_inputs(cls):
    X = np.random.default_rng(0).random((20, 6))
    with pytest.raises(ValueError, match=r"\[0, 1\].*got values in \[-0\.49"):
        cls(epochs=1).fit(X - 0.5, seed=0)
    with pytest.raises(ValueError, match="y must be None"):
        cls(epochs=1).fit(X, np.zeros(20, dtype=np.int64), seed=0)
    for kw, name in [
        ({"latent_dim": 0}, "latent_dim"),
        ({"decoder": "poisson"}, "decoder"),
        ({"decoder_scale": 0.1}, "decoder_scale"),
        ({"decoder": "gaussian", "decoder_scale": -1.0}, "decoder_scale"),
    ]:
        with pytest.raises(ValueError, match=name):
            cls(epochs=1, **kw).fit(X, seed=0)
    fitted = cls(epochs=1).fit(X, seed=0)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fitted.sample_predictive(X * 2, n_samples=2, seed=0)
    with pytest.raises(ValueError, match="n_samples"):
        fitted.sample_predictive(X, n_samples=0, seed=0)
    # The Gaussian decoder accepts any real inputs.
    cls(epochs=1, decoder="gaussian").fit(X - 0.5, seed=0)


def test_bayesian_ae_rejects_bad_weight_hyperparameters():
    X = np.random.default_rng(0).random((20, 6))
    for kw in ({"prior_std": 0.0}, {"init_std": -1.0}, {"kl_weight": -0.1}):
        with pytest.raises(ValueError, match=next(iter(kw))):
            BayesianAEAdapter(epochs=1, **kw).fit(X, seed=0)


def test_vae_draws_are_reparameterised_posterior_samples(vae, digits):
    X = digits.X_test[:5]
    s = vae.sample_predictive(X, n_samples=4000, seed=3)
    assert s.recon.shape == (4000, 5, 64) and s.latent.shape == (4000, 5, 2)
    # A deterministic encoder: the same q in every draw.
    np.testing.assert_array_equal(s.latent_mean, np.broadcast_to(s.latent_mean[:1], s.latent_mean.shape))
    np.testing.assert_array_equal(s.latent_scale, np.broadcast_to(s.latent_scale[:1], s.latent_scale.shape))
    assert s.epistemic_variance().max() == 0.0
    # z ~ N(latent_mean, latent_scale^2): standardized draws are standard normal.
    u = ((s.latent - s.latent_mean) / s.latent_scale).reshape(-1)
    assert stats.kstest(u, "norm").pvalue > 1e-3
    # recon is the decoder's mean at z.
    with torch.no_grad():
        decoded = vae._decode(torch.as_tensor(s.latent[:3], dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(s.recon[:3], decoded, atol=1e-6)


def test_training_loss_is_the_metrics_negative_elbo(vae, digits):
    X = digits.X_test[:50]
    s = vae.sample_predictive(X, n_samples=2000, seed=0)
    metric = elbo(s.recon, X, s.latent_mean, s.latent_scale).mean()
    Xt = torch.as_tensor(X, dtype=torch.float32)
    with seeded(1), torch.no_grad():
        loss = np.mean([float(vae._loss(Xt, None, len(digits.X_train))) for _ in range(400)])
    assert loss == pytest.approx(-metric, abs=0.1)


def test_vae_on_digits_beats_independent_pixels_and_separates_classes(vae, digits):
    s = vae.sample_predictive(digits.X_test, n_samples=100, seed=0)
    values = {m.name: m.value for m in evaluate_reconstruction(s, digits.X_test, digits.y_test, seed=0, n_bootstrap=0)}
    # Reference: each pixel an independent Bernoulli with its training mean. Grey-level
    # targets put an entropy floor (~13 nats) under both, so the margin is modest.
    p = np.clip(digits.X_train.mean(axis=0), 1e-3, 1 - 1e-3)
    X = digits.X_test
    independent = np.mean(np.sum(X * np.log(p) + (1 - X) * np.log1p(-p), axis=1))
    assert values["elbo_score"] > independent + 1.5, (values["elbo_score"], independent)
    assert values["recon_mse_error"] < 0.7 * np.mean((X - p) ** 2)
    assert values["log_px_iwae_score"] >= values["elbo_score"]
    assert values["latent_knn_accuracy_score"] > 0.7  # chance is 1/8
    assert values["latent_silhouette_score"] > 0.1


def test_bayesian_encoder_draws_whole_functions(bae, digits):
    x = digits.X_test[:3]
    X = np.concatenate([x, x])  # every input twice
    s = bae.sample_predictive(X, n_samples=50, seed=0)
    # One encoder per draw, shared by all inputs: repeated inputs get identical q...
    np.testing.assert_array_equal(s.latent_mean[:, :3], s.latent_mean[:, 3:])
    np.testing.assert_array_equal(s.latent_scale[:, :3], s.latent_scale[:, 3:])
    # ...while q itself differs between draws: epistemic variance of the latent means.
    assert np.all(s.epistemic_variance() > 0)
    u = ((s.latent - s.latent_mean) / s.latent_scale).reshape(-1)
    assert stats.kstest(u, "norm").pvalue > 1e-3


def test_bayesian_encoder_is_more_uncertain_off_distribution(bae, digits):
    s_in = bae.sample_predictive(digits.X_test, n_samples=50, seed=0)
    noise = np.random.default_rng(0).random((200, 64))  # uniform-noise "images"
    s_ood = bae.sample_predictive(noise, n_samples=50, seed=0)
    assert s_ood.epistemic_variance().mean() > 5 * s_in.epistemic_variance().mean()


@pytest.mark.parametrize("which", ["vae", "bae"])
def test_generate(which, request, digits):
    model = request.getfixturevalue(which)
    X = digits.X_test[:4]
    out = model.generate(seed=0, n_prior=10, grid_size=5, n_interpolations=6, X_interp=X)
    assert out["prior_samples"].shape == (10, 64) and out["prior_latent"].shape == (10, 2)
    assert out["manifold"].shape == (5, 5, 64) and out["manifold_latent"].shape == (5, 5, 2)
    q = stats.norm.ppf((np.arange(5) + 0.5) / 5)
    np.testing.assert_allclose(out["manifold_latent"][1, 3], [q[1], q[3]], rtol=1e-6)
    assert out["interpolations"].shape == (2, 6, 64)
    np.testing.assert_array_equal(out["interpolation_inputs"], X.reshape(2, 2, 64))
    for key in ("prior_samples", "manifold", "interpolations"):
        assert out[key].min() >= 0 and out[key].max() <= 1
    # Endpoints decode the inputs' latent means (for the Bayesian encoder: its posterior mean).
    with torch.no_grad():
        mu = model._encode_mean(torch.as_tensor(X, dtype=torch.float32)).double().numpy()
    np.testing.assert_allclose(out["interpolation_latent"][:, 0], mu[0::2], atol=1e-6)
    np.testing.assert_allclose(out["interpolation_latent"][:, -1], mu[1::2], atol=1e-6)
    again = model.generate(seed=0, n_prior=10, grid_size=5)
    np.testing.assert_array_equal(again["prior_samples"], out["prior_samples"])
    assert "interpolations" not in again
    with pytest.raises(ValueError, match="even"):
        model.generate(seed=0, X_interp=X[:3])
    with pytest.raises(ValueError, match="grid_size"):
        model.generate(seed=0, grid_size=1)


def test_no_manifold_unless_two_latent_dimensions():
    X = np.random.default_rng(0).random((30, 6))
    out = VAEAdapter(epochs=1, latent_dim=3).fit(X, seed=0).generate(seed=0, n_prior=4)
    assert set(out) == {"prior_samples", "prior_latent"}
    assert out["prior_latent"].shape == (4, 3)
