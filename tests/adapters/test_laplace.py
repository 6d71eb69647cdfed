"""The ``laplace`` adapter (laplace-torch): the conjugate linear-Gaussian closed form, the
sampled GLM predictive against laplace-torch's own moments, whole-function draws, prior
precision tuning, the contract, determinism, bad input and the lazy import.

Skips when laplace-torch is not installed (it is installed with ``--no-deps``; see the
adapter's module docstring).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("laplace")

from uqbench.testing import check_adapter, contract_data
from uqbench_adapters.torch.laplace import LaplaceAdapter

SMALL = {"hidden": (8,), "epochs": 10}


def _linear_data(n: int = 40, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    y = X @ np.array([[0.8], [-0.5]]) + 0.3 + 0.3 * rng.normal(size=(n, 1))
    return X, y, rng.normal(size=(5, 2))


def _conjugate(X: np.ndarray, y: np.ndarray, precision: float, sigma: float) -> tuple[np.ndarray, np.ndarray]:
    """Posterior (mean, covariance) of Bayesian linear regression on ``[X, 1]``, in
    laplace-torch's parameter order (weights, then bias)."""
    Xa = np.hstack([X, np.ones((len(X), 1))])
    cov = np.linalg.inv(Xa.T @ Xa / sigma**2 + precision * np.eye(Xa.shape[1]))
    return cov @ Xa.T @ y[:, 0] / sigma**2, cov


@pytest.fixture(scope="module")
def linear_fit() -> tuple[LaplaceAdapter, np.ndarray, np.ndarray, np.ndarray]:
    X, y, X_test = _linear_data()
    # Full-batch Adam to convergence: the MAP is the conjugate posterior mean.
    adapter = LaplaceAdapter(
        hidden=(), subset_of_weights="all", hessian_structure="full", prior_std=0.5,
        prior_precision=4.0, epochs=3000, batch_size=len(X), lr=1e-2,
    ).fit(X, y, seed=0)
    return adapter, X, y, X_test


def test_linear_gaussian_posterior_is_the_conjugate_one(linear_fit) -> None:
    adapter, X, y, _ = linear_fit
    sigma = adapter.diagnostics_["sigma_noise"]
    la = adapter.laplace_
    # Covariance: the GGN of a linear-Gaussian model is its exact Hessian.
    _, cov = _conjugate(X, y, 4.0, sigma)
    got = la.posterior_covariance.double().numpy()
    np.testing.assert_allclose(got, cov, rtol=1e-6, atol=0)
    # Mean: the MAP under N(0, 0.5²) with the MAP's learned noise (Adam's optimisation error).
    map_sigma = float(adapter.model_.noise().detach())
    mean, _ = _conjugate(X, y, 1.0 / 0.5**2, map_sigma)
    np.testing.assert_allclose(la.mean.double().numpy(), mean, rtol=0, atol=1e-6)
    # σ̂ is the RMS residual of the MAP, which the jointly learned noise converges to.
    assert abs(sigma - map_sigma) < 1e-6


def test_linear_gaussian_predictive_matches_the_closed_form(linear_fit) -> None:
    adapter, X, y, X_test = linear_fit
    sigma = adapter.diagnostics_["sigma_noise"]
    mean, cov = _conjugate(X, y, 4.0, sigma)
    Xa = np.hstack([X_test, np.ones((len(X_test), 1))])
    f_mean, f_var = Xa @ mean, np.einsum("ni,ij,nj->n", Xa, cov, Xa)
    S = 20_000
    draws = adapter.sample_predictive(X_test, n_samples=S, seed=3)
    loc = draws.loc[:, :, 0]
    z_mean = (loc.mean(0) - f_mean) / np.sqrt(f_var / S)
    z_var = (loc.var(0, ddof=1) - f_var) / (f_var * np.sqrt(2.0 / (S - 1)))
    assert np.max(np.abs(z_mean)) < 4.0, z_mean
    assert np.max(np.abs(z_var)) < 4.0, z_var
    np.testing.assert_allclose(draws.scale, sigma)


@pytest.mark.parametrize("subset", ["last_layer", "all"])
def test_sampled_predictive_matches_laplace_glm_moments(subset: str) -> None:
    X, y, X_test = contract_data("regression")
    adapter = LaplaceAdapter(**SMALL, subset_of_weights=subset, prior_precision=1.0).fit(X, y, seed=0)
    f_mu, f_var = adapter.laplace_(torch.as_tensor(X_test, dtype=torch.float32), pred_type="glm")
    f_mu, f_var = f_mu[:, 0].double().numpy(), f_var[:, 0, 0].double().numpy()
    S = 8000
    loc = adapter.sample_predictive(X_test, n_samples=S, seed=5).loc[:, :, 0]
    z_mean = (loc.mean(0) - f_mu) / np.sqrt(f_var / S)
    z_var = (loc.var(0, ddof=1) - f_var) / (f_var * np.sqrt(2.0 / (S - 1)))
    assert np.max(np.abs(z_mean)) < 4.0, z_mean
    assert np.max(np.abs(z_var)) < 4.0, z_var


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_draws_are_whole_functions(task: str) -> None:
    """A draw's values at an input do not depend on which other inputs are evaluated."""
    X, y, X_test = contract_data(task)
    adapter = LaplaceAdapter(**SMALL, subset_of_weights="all").fit(X, y, seed=0)
    both = adapter.sample_predictive(np.vstack([X_test, X[:20]]), n_samples=6, seed=4)
    alone = adapter.sample_predictive(X_test, n_samples=6, seed=4)
    field = "loc" if task == "regression" else "probs"
    np.testing.assert_allclose(getattr(both, field)[:, : len(X_test)], getattr(alone, field), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("task", ["regression", "classification"])
@pytest.mark.parametrize(("subset", "structure"), [("last_layer", "kron"), ("all", "diag"), ("all", "full")])
def test_contract(task: str, subset: str, structure: str) -> None:
    check_adapter(LaplaceAdapter(**SMALL, subset_of_weights=subset, hessian_structure=structure), task)


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_same_seed_same_numbers(task: str) -> None:
    X, y, X_test = contract_data(task)
    kw = {"X_val": X[:15], "y_val": y[:15]}
    a = LaplaceAdapter(**SMALL).fit(X[15:], y[15:], seed=7, **kw)
    b = LaplaceAdapter(**SMALL).fit(X[15:], y[15:], seed=7, **kw)
    assert a.diagnostics_["prior_precision"] == b.diagnostics_["prior_precision"]
    assert a.diagnostics_["val_nll_grid"] == b.diagnostics_["val_nll_grid"]
    sa, sb = a.sample_predictive(X_test, n_samples=4, seed=1), b.sample_predictive(X_test, n_samples=4, seed=1)
    field = "loc" if task == "regression" else "probs"
    assert np.array_equal(getattr(sa, field), getattr(sb, field))


def test_gridsearch_minimises_the_validation_nll_of_the_sampled_predictive() -> None:
    X, y, _ = contract_data("regression")
    Xf, yf, Xv, yv = X[16:], y[16:], X[:16], y[:16]
    adapter = LaplaceAdapter(**SMALL, prior_precision_grid=(1e-2, 1e2, 9)).fit(Xf, yf, seed=0, X_val=Xv, y_val=yv)
    d = adapter.diagnostics_
    assert d["prior_precision_method"] == "gridsearch" and d["used_validation"] == 1.0
    assert len(d["val_nll_grid"]) == 9
    assert d["prior_precision"] == d["prior_precision_grid"][int(np.argmin(d["val_nll_grid"]))]
    # The closed-form GLM NLL equals the NLL of the S-draw Gaussian mixture in the limit.
    s = adapter.sample_predictive(Xv, n_samples=20_000, seed=2)
    dens = np.exp(-0.5 * ((yv[None] - s.loc) / s.scale) ** 2) / (np.sqrt(2 * np.pi) * s.scale)
    mixture_nll = -np.log(dens[..., 0].mean(0)).mean()
    assert abs(mixture_nll - d["val_nll"]) < 5e-3


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_without_validation_it_falls_back_to_marglik(task: str) -> None:
    X, y, _ = contract_data(task)
    d = LaplaceAdapter(**SMALL).fit(X, y, seed=0).diagnostics_
    assert d["prior_precision_method"] == "marglik" and d["fell_back_to_marglik"] == 1.0
    assert d["used_validation"] == 0.0 and np.isnan(d["val_nll"])
    assert d["prior_precision"] > 0 and np.isfinite(d["log_marglik"])


def test_marglik_maximises_the_marginal_likelihood() -> None:
    X, y, _ = contract_data("regression")
    adapter = LaplaceAdapter(**SMALL, prior_precision="marglik", hessian_structure="full", sigma_noise="marglik")
    adapter.fit(X, y, seed=0)
    la, best = adapter.laplace_, adapter.diagnostics_["log_marglik"]
    lam, sigma = adapter.prior_precision_, adapter.sigma_noise_
    with torch.no_grad():
        for f_lam, f_sigma in [(1.5, 1.0), (1 / 1.5, 1.0), (1.0, 1.1), (1.0, 1 / 1.1)]:
            other = float(la.log_marginal_likelihood(torch.tensor([lam * f_lam]), torch.tensor(sigma * f_sigma)))
            assert other < best
    assert adapter.diagnostics_["sigma_noise_method"] == "marglik"


def test_last_layer_without_hidden_layers_is_all() -> None:
    X, y, _ = _linear_data()
    d = LaplaceAdapter(hidden=(), epochs=5).fit(X, y, seed=0).diagnostics_
    assert d["subset_of_weights"] == "all" and d["n_laplace_params"] == 3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"subset_of_weights": "subnetwork"}, "subset_of_weights"),
        ({"hessian_structure": "lowrank"}, "hessian_structure"),
        ({"prior_precision": "cv"}, "prior_precision"),
        ({"prior_precision": -1.0}, "prior_precision"),
        ({"sigma_noise": 0.0}, "sigma_noise"),
        ({"sigma_noise": "marglik"}, "diag"),  # with the default kron
        ({"prior_std": 0.0}, "prior_std"),
        ({"prior_precision_grid": (1.0, 0.1, 5)}, "prior_precision_grid"),
        ({"n_grid_samples": 0}, "n_grid_samples"),
        ({"epochs": 0}, "epochs"),
    ],
)
def test_bad_parameters(kwargs: dict, match: str) -> None:
    X, y, _ = contract_data("regression")
    with pytest.raises(ValueError, match=match):
        LaplaceAdapter(**kwargs).fit(X, y, seed=0)


def test_bad_validation_split() -> None:
    X, y, _ = contract_data("regression")
    with pytest.raises(ValueError, match="X_val"):
        LaplaceAdapter(**SMALL).fit(X, y, seed=0, X_val=X[:5, :2], y_val=y[:5])


def test_unfitted_raises() -> None:
    with pytest.raises(RuntimeError, match="not fitted"):
        LaplaceAdapter().sample_predictive(np.zeros((2, 3)), n_samples=2, seed=0)


def test_module_import_does_not_import_laplace() -> None:
    code = "import sys, uqbench_adapters.torch.laplace; assert 'laplace' not in sys.modules"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
