"""The first in-tree adapters: deterministic, output-only, mc-dropout, bayes-linear.

Each is checked against the adapter contract and against an independent reference:
closed forms and scikit-learn for the conjugate model, a slow per-draw loop for the
batched MC-dropout sampler, and known noise levels for the point-estimate networks.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
import torch
from sklearn.linear_model import BayesianRidge

from uqbench.registry import make_adapter
from uqbench.testing import check_adapter
from uqbench_adapters.torch import _base, bayes_linear
from uqbench_adapters.torch._base import seeded
from uqbench_adapters.torch.bayes_linear import BayesLinearAdapter
from uqbench_adapters.torch.mc_dropout import MCDropoutAdapter

QUICK = {"epochs": 5, "hidden": (16,)}
TORCH_ADAPTERS = ("deterministic", "output-only", "mc-dropout")


def _regression_1d(n: int, *, seed: int, noise=0.2) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-3.0, 3.0, size=(n, 1))
    sd = noise(x) if callable(noise) else noise
    return x, np.sin(x) + sd * rng.standard_normal((n, 1))


def _blobs(n: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    centres = np.array([[-3.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    return centres[y] + 0.7 * rng.standard_normal((n, 2)), y.astype(np.int64)


# -- the contract ------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("name", "params", "task"),
    [
        ("deterministic", QUICK, "regression"),
        ("deterministic", QUICK, "classification"),
        ("output-only", QUICK, "regression"),
        ("output-only", QUICK, "classification"),
        ("mc-dropout", QUICK, "regression"),
        ("mc-dropout", QUICK, "classification"),
        ("mc-dropout", {**QUICK, "hidden": (8, 8), "heteroscedastic": True}, "regression"),
        ("bayes-linear", {}, "regression"),
        ("bayes-linear", {"features": "rff", "n_features": 30}, "regression"),
        ("bayes-linear", {"alpha": 2.0, "noise_std": 0.3}, "regression"),
    ],
)
def test_check_adapter(name: str, params: dict, task: str) -> None:
    check_adapter(make_adapter(name, **params), task)


@pytest.mark.parametrize("name", [*TORCH_ADAPTERS, "bayes-linear"])
def test_same_seed_identical_and_global_rng_untouched(name: str) -> None:
    X, y = _regression_1d(80, seed=0)
    params = {"features": "rff", "n_features": 20} if name == "bayes-linear" else QUICK
    # The legacy global numpy state is what an adapter must not touch.
    np_state = np.random.get_state()  # noqa: NPY002
    torch_state = torch.random.get_rng_state()
    runs = []
    for _ in range(2):
        model = make_adapter(name, **params).fit(X, y, seed=3)
        runs.append(model.sample_predictive(X[:10], n_samples=4, seed=5))
    assert torch.equal(torch.random.get_rng_state(), torch_state)
    np_after = np.random.get_state()  # noqa: NPY002
    assert all(np.array_equal(a, b) for a, b in zip(np_after, np_state, strict=True))
    np.testing.assert_array_equal(runs[0].loc, runs[1].loc)
    np.testing.assert_array_equal(runs[0].scale, runs[1].scale)


@pytest.mark.parametrize("name", ["mc-dropout", "bayes-linear"])
def test_a_seed_fixes_the_functions_whatever_the_inputs_or_chunking(
    name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    X, y = _regression_1d(64, seed=0)
    if name == "mc-dropout":
        model, module = MCDropoutAdapter(hidden=(8, 8), dropout=0.3, epochs=2), _base
    else:
        model, module = BayesLinearAdapter(features="rff", n_features=20), bayes_linear
    model.fit(X, y, seed=0)
    whole = model.sample_predictive(X, n_samples=12, seed=3).loc
    part = model.sample_predictive(X[5:9], n_samples=12, seed=3).loc
    monkeypatch.setattr(module, "_CHUNK_FLOATS", 1)  # one draw per chunk
    chunked = model.sample_predictive(X, n_samples=12, seed=3).loc
    np.testing.assert_allclose(part, whole[:, 5:9], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize(
    ("name", "params", "shown"),
    [
        ("deterministic", {"hidden": (0,)}, "(0,)"),
        ("deterministic", {"epochs": 0}, "got 0"),
        ("output-only", {"hidden": (0,)}, "(0,)"),
        ("mc-dropout", {"dropout": 1.5}, "1.5"),
        ("mc-dropout", {"dropout": 0.0}, "0.0"),
        ("mc-dropout", {"epochs": 0}, "got 0"),
        ("bayes-linear", {"features": "poly"}, "'poly'"),
        ("bayes-linear", {"n_features": 0}, "got 0"),
        ("bayes-linear", {"lengthscale": -1.0}, "-1.0"),
        ("bayes-linear", {"alpha": 0.0}, "0.0"),
    ],
)
def test_bad_hyperparameters_raise_value_error(name: str, params: dict, shown: str) -> None:
    X, y = _regression_1d(20, seed=0)
    with pytest.raises(ValueError, match=re.escape(next(iter(params))) + ".*" + re.escape(shown)):
        make_adapter(name, **params).fit(X, y, seed=0)


@pytest.mark.parametrize("name", [*TORCH_ADAPTERS, "bayes-linear"])
def test_sample_before_fit_is_a_clear_error(name: str) -> None:
    with pytest.raises(RuntimeError, match="not fitted; call fit"):
        make_adapter(name).sample_predictive(np.zeros((3, 1)), n_samples=2, seed=0)


# -- deterministic -----------------------------------------------------------------------
def test_deterministic_regression_learns_the_noise_level() -> None:
    X, y = _regression_1d(400, seed=1, noise=0.2)
    s = make_adapter("deterministic", epochs=60).fit(X, y, seed=0).sample_predictive(X, n_samples=3, seed=0)
    assert np.all(s.epistemic_variance() == 0.0)
    assert np.sqrt(s.aleatoric_variance()).mean() == pytest.approx(0.2, rel=0.15)
    assert np.sqrt(np.mean((s.mean() - np.sin(X)) ** 2)) < 0.1


def test_deterministic_classification_beats_chance() -> None:
    X, y = _blobs(300, seed=0)
    X_test, y_test = _blobs(300, seed=1)
    model = make_adapter("deterministic", epochs=20).fit(X, y, seed=0)
    s = model.sample_predictive(X_test, n_samples=3, seed=0)
    assert np.mean(s.mean().argmax(axis=1) == y_test) > 0.9  # chance is 1/3
    np.testing.assert_array_equal(s.probs, np.broadcast_to(s.probs[:1], s.probs.shape))
    # Not exactly 0: np.var of identical float64 draws can round to ~1e-32 (see report).
    assert np.all(s.epistemic_variance() < 1e-30)


# -- output-only -------------------------------------------------------------------------
def test_output_only_learns_heteroscedastic_noise() -> None:
    X, y = _regression_1d(400, seed=2, noise=lambda x: 0.05 + 0.3 * np.abs(x))
    model = make_adapter("output-only", epochs=60).fit(X, y, seed=0)
    grid = np.array([[-2.5], [0.0], [2.5]])
    s = model.sample_predictive(grid, n_samples=4, seed=0)
    sd = np.sqrt(s.aleatoric_variance())[:, 0]
    assert sd[0] > 2 * sd[1] and sd[2] > 2 * sd[1], sd  # true: 0.8 at |x| = 2.5, 0.05 at 0
    assert np.all(s.epistemic_variance() == 0.0)
    np.testing.assert_array_equal(s.loc, np.broadcast_to(s.loc[:1], s.loc.shape))


# -- mc-dropout --------------------------------------------------------------------------
def _slow_reference(model: MCDropoutAdapter, X: torch.Tensor, masks: list[torch.Tensor]) -> torch.Tensor:
    """Draw by draw, the network's own layers with each Dropout replaced by mask s."""
    out = []
    for s in range(masks[0].shape[0]):
        h, k = X, 0
        for layer in model.model_.body:
            if isinstance(layer, torch.nn.Dropout):
                h, k = h * masks[k][s, 0], k + 1
            else:
                h = layer(h)
        out.append(h)
    return torch.stack(out)


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_mc_dropout_batched_sampler_equals_per_draw_loop(task: str) -> None:
    X, y = _regression_1d(64, seed=0) if task == "regression" else _blobs(64, seed=0)
    model = MCDropoutAdapter(hidden=(16, 12, 8), dropout=0.3, epochs=3).fit(X, y, seed=0)
    Xt = torch.as_tensor(X[:20], dtype=torch.float32)
    with torch.no_grad():
        masks = model._draw_masks(25, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(model._forward_masked(Xt, masks), _slow_reference(model, Xt, masks))
        # The public sampler draws its masks the same way from its seed.
        with seeded(4):
            masks = model._draw_masks(25)
        expected = _slow_reference(model, Xt, masks)
    s = model.sample_predictive(X[:20], n_samples=25, seed=4)
    if task == "regression":
        torch.testing.assert_close(torch.as_tensor(s.loc, dtype=torch.float32), expected)
    else:
        np.testing.assert_allclose(s.probs, torch.softmax(expected.double(), -1).numpy(), atol=1e-6)
    assert len(np.unique(s.mean(), axis=0)) == 20  # sanity: inputs differ


def test_mc_dropout_draws_differ_and_share_one_mask_across_inputs() -> None:
    X, y = _regression_1d(32, seed=0)
    p, width = 0.5, 8
    model = MCDropoutAdapter(hidden=(width,), dropout=p, epochs=1).fit(X, y, seed=0)
    # Make hidden unit k identifiable: constant activation 1, output weight 2^k, so the
    # output of a draw spells out its dropout mask in binary.
    first, last = model.model_.body[0], model.model_.body[-1]
    with torch.no_grad():
        first.weight.zero_()
        first.bias.fill_(1.0)
        last.weight.copy_(2.0 ** torch.arange(width, dtype=torch.float32)[None, :])
        last.bias.zero_()
    s = model.sample_predictive(np.linspace(-3, 3, 50)[:, None], n_samples=400, seed=0)
    code = s.loc[:, :, 0] * (1 - p)  # [S, N]
    np.testing.assert_array_equal(code, np.broadcast_to(code[:, :1], code.shape))  # one mask per draw
    bits = (np.round(code[:, 0]).astype(np.int64)[:, None] >> np.arange(width)) & 1
    np.testing.assert_allclose(code[:, 0], bits @ 2.0 ** np.arange(width), atol=1e-4)
    assert abs(bits.mean() - (1 - p)) < 0.05  # 3200 Bernoulli(0.5) keep decisions
    assert len(np.unique(code[:, 0])) > 100  # draws differ


# -- bayes-linear ------------------------------------------------------------------------
def test_bayes_linear_matches_sklearn_bayesian_ridge() -> None:
    X, y = _regression_1d(150, seed=3)
    model = BayesLinearAdapter(features="rff", n_features=40).fit(X, y, seed=0)
    phi = model.design_matrix(X)
    # With flat hyperpriors, BayesianRidge runs the same MacKay updates; its alpha_ is the
    # noise precision and lambda_ the weight precision.
    ref = BayesianRidge(
        fit_intercept=False, max_iter=10_000, tol=1e-12, compute_score=True,
        alpha_1=0.0, alpha_2=0.0, lambda_1=0.0, lambda_2=0.0,
    ).fit(phi, y[:, 0])
    assert model.alpha_[0] == pytest.approx(ref.lambda_, rel=1e-6)
    assert model.noise_std_[0] == pytest.approx(ref.alpha_**-0.5, rel=1e-6)
    np.testing.assert_allclose(model.coef_[:, 0], ref.coef_, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(model.coef_cov_[0], ref.sigma_, rtol=1e-5, atol=1e-10)
    assert model.log_evidence_[0] == pytest.approx(ref.scores_[-1], rel=1e-8)
    assert model.n_parameters_ == 40


def test_bayes_linear_sampled_moments_match_the_closed_form() -> None:
    X, y = _regression_1d(100, seed=4)
    model = BayesLinearAdapter(features="rff", n_features=50, lengthscale=0.8).fit(X, y, seed=0)
    X_test = np.linspace(-5, 5, 30)[:, None]  # beyond the data on both sides
    phi = model.design_matrix(X_test)
    mean = phi @ model.coef_[:, 0]
    epistemic = np.einsum("ni,ij,nj->n", phi, model.coef_cov_[0], phi)
    total = model.noise_std_[0] ** 2 + epistemic
    np.testing.assert_allclose(model.predictive_mean(X_test)[:, 0], mean, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(model.predictive_variance(X_test)[:, 0], total, rtol=1e-10)

    n = 20_000
    s = model.sample_predictive(X_test, n_samples=n, seed=1)
    assert np.all(np.abs(s.mean()[:, 0] - mean) < 4.5 * np.sqrt(epistemic / n))
    var_tol = 4.5 * np.sqrt(2 / (n - 1)) * epistemic  # standard error of a sample variance
    assert np.all(np.abs(s.epistemic_variance()[:, 0] - epistemic) < var_tol)
    assert np.all(np.abs(s.total_variance()[:, 0] - total) < var_tol)
    np.testing.assert_allclose(s.aleatoric_variance()[:, 0], model.noise_std_[0] ** 2, rtol=1e-12)
    assert epistemic[0] > 5 * epistemic[15]  # more uncertain outside the data than inside


def test_bayes_linear_closed_form_equals_direct_inverse() -> None:
    rng = np.random.default_rng(5)
    X = rng.normal(size=(40, 3))
    y = X @ np.array([[1.0], [-2.0], [0.5]]) + 0.3 * rng.standard_normal((40, 1))
    alpha, noise = 0.7, 0.4
    model = BayesLinearAdapter(alpha=alpha, noise_std=noise).fit(X, y, seed=0)
    phi = np.hstack([X, np.ones((40, 1))])
    cov = np.linalg.inv(alpha * np.eye(4) + phi.T @ phi / noise**2)
    mu = cov @ phi.T @ y / noise**2
    X_test = rng.normal(size=(9, 3))
    phi_t = np.hstack([X_test, np.ones((9, 1))])
    np.testing.assert_allclose(model.coef_, mu, rtol=1e-9)
    np.testing.assert_allclose(model.predictive_mean(X_test), phi_t @ mu, rtol=1e-9)
    expected = noise**2 + np.sum(phi_t @ cov * phi_t, axis=1, keepdims=True)
    np.testing.assert_allclose(model.predictive_variance(X_test), expected, rtol=1e-9)
    assert model.n_iter_ == 0


def test_bayes_linear_evidence_recovers_the_noise_of_each_output() -> None:
    rng = np.random.default_rng(6)
    X = rng.normal(size=(1000, 2))
    true_sd = np.array([0.3, 0.05])
    y = X @ np.array([[1.5, -0.5], [-1.0, 2.0]]) + 0.2 + true_sd * rng.standard_normal((1000, 2))
    model = BayesLinearAdapter().fit(X, y, seed=0)
    np.testing.assert_allclose(model.noise_std_, true_sd, rtol=0.1)
    assert model.n_parameters_ == 3 * 2
    # Outputs are independent regressions sharing the features.
    alone = BayesLinearAdapter().fit(X, y[:, 1:], seed=0)
    np.testing.assert_allclose(alone.coef_[:, 0], model.coef_[:, 1], rtol=1e-8)
    np.testing.assert_allclose(alone.noise_std_[0], model.noise_std_[1], rtol=1e-8)


def test_bayes_linear_posterior_contracts_with_more_data() -> None:
    X, y = _regression_1d(2000, seed=7)
    X_test = np.linspace(-3, 3, 25)[:, None]
    epistemic = []
    for n in (20, 200, 2000):
        model = BayesLinearAdapter(features="rff", n_features=30, alpha=1.0, noise_std=0.2)
        model.fit(X[:n], y[:n], seed=0)
        epistemic.append(model.predictive_variance(X_test)[:, 0] - 0.2**2)
    assert np.all(epistemic[1] < epistemic[0]) and np.all(epistemic[2] < epistemic[1])
    assert np.mean(epistemic[2]) < np.mean(epistemic[0]) / 20


def test_bayes_linear_rff_approximate_the_rbf_kernel() -> None:
    X = np.linspace(-2, 2, 9)[:, None]
    kernel = np.exp(-((X - X.T) ** 2) / (2 * 1.5**2))

    def features(seed: int) -> np.ndarray:
        model = BayesLinearAdapter(features="rff", n_features=200, lengthscale=1.5, alpha=1.0, noise_std=1.0)
        return model.fit(X, np.zeros((9, 1)), seed=seed).design_matrix(X)

    # Ten fit seeds of 200 features: 2,000 independent features, so each entry of the
    # estimate has standard error <= 0.016.
    gram = np.mean([phi @ phi.T for phi in map(features, range(10))], axis=0)
    np.testing.assert_allclose(gram, kernel, atol=0.07)
    assert np.sqrt(np.mean((gram - kernel) ** 2)) < 0.03
    assert not np.allclose(features(0), features(1))


def test_bayes_linear_rejects_classification() -> None:
    X, y = _blobs(30, seed=0)
    with pytest.raises(ValueError, match="regression only"):
        BayesLinearAdapter().fit(X, y, seed=0)
