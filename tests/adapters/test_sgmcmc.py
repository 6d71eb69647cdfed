"""SG-MCMC adapters (``sgld``, ``sghmc``) against closed forms.

- Conjugate Bayesian linear regression (``hidden=()``, fixed noise, full-batch gradients,
  a small constant step): the chains' mean and variance of every weight must match the
  exact Gaussian posterior within 4 batch-means standard errors. The discretisation bias
  of each chain's stationary variance is computed exactly (a discrete Lyapunov equation for
  the linear recursion on a Gaussian target) and is checked to be well under one standard
  error, so the tolerance is Monte-Carlo error alone.
- The injected noise: SGLD's increment with zero gradient has variance ε·T exactly; SGHMC's
  momentum noise 2(α − β̂)ηT.
- Schedules, kept-state bookkeeping, determinism and ``check_adapter``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy import linalg

from uqbench.testing import check_adapter
from uqbench_adapters.torch.sgmcmc import (
    SGHMCAdapter,
    SGLDAdapter,
    cyclical_sampling_stage,
    cyclical_step_sizes,
    polynomial_step_sizes,
    sghmc_step,
    sgld_step,
)

N, SIGMA, PRIOR_STD = 100, 0.5, 1.0
LAMBDA = N / SIGMA**2 + 1.0 / PRIOR_STD**2  # posterior precision of every coordinate
Z_TOL = 4.0


def _conjugate_data() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """X ``[N, 2]`` with [X, 1] orthogonal columns of squared norm N (so the posterior
    precision is LAMBDA I), y ``[N, 1]``, and the exact posterior mean ``[3]`` (w1, w2, b)."""
    rng = np.random.default_rng(3)
    q, _ = np.linalg.qr(np.column_stack([np.ones(N), rng.normal(size=(N, 2))]))
    X = q[:, 1:] * math.sqrt(N)
    y = X @ np.array([0.7, -0.4]) + 0.3 + SIGMA * rng.normal(size=N)
    phi = np.column_stack([X, np.ones(N)])
    mean = np.linalg.solve(phi.T @ phi / SIGMA**2 + np.eye(3) / PRIOR_STD**2, phi.T @ y / SIGMA**2)
    return X, y[:, None], mean


def _batch_means_z(chain: np.ndarray, exact_mean: np.ndarray, exact_var: float, n_batches: int = 25):
    """z-scores of the chain's mean and variance per coordinate, standard errors by batch means.

    ``chain`` ``[T, P]``. The variance is estimated as the mean of ``(θ − exact_mean)²``,
    whose expectation is exactly the variance, and its SE also by batch means.
    Returns (z_mean ``[P]``, z_var ``[P]``, ESS of the mean ``[P]``, SE of the variance ``[P]``).
    """
    T = (len(chain) // n_batches) * n_batches
    c = chain[:T]
    sq = (c - exact_mean) ** 2

    def z(series: np.ndarray, target: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bm = series.reshape(n_batches, -1, series.shape[1]).mean(axis=1)
        se = bm.std(axis=0, ddof=1) / math.sqrt(n_batches)
        return (series.mean(axis=0) - target) / se, se

    z_mean, se_mean = z(c, exact_mean)
    z_var, se_var = z(sq, np.full(c.shape[1], exact_var))
    ess = c.var(axis=0) / se_mean**2
    return z_mean, z_var, ess, se_var


def _sgld_stationary_var(eps: float) -> float:
    """Exact stationary variance of θ' = (1 − ελ/2) θ + N(0, ε) on the N(·, 1/λ) target."""
    rho = 1.0 - 0.5 * eps * LAMBDA
    return eps / (1.0 - rho**2)


def _sghmc_stationary_var(lr: float, alpha: float) -> float:
    """Exact stationary variance of θ of the SGHMC recursion (Eq. 15, full batch) on N(·, 1/λ)."""
    h = lr * LAMBDA
    A = np.array([[1.0 - h, 1.0 - alpha], [-h, 1.0 - alpha]])  # (θ, v) -> (θ', v')
    Q = 2.0 * alpha * lr * np.ones((2, 2))
    return float(linalg.solve_discrete_lyapunov(A, Q)[0, 0])


def _check_recovers_posterior(adapter, chain_var: float) -> dict[str, float]:
    X, y, mean = _conjugate_data()
    adapter.fit(X, y, seed=0)
    chain = adapter.kept_states_.double().numpy()
    z_mean, z_var, ess, se_var = _batch_means_z(chain, mean, 1.0 / LAMBDA)
    # The sampler's own discretisation bias is well inside one standard error of the
    # variance estimate, so the test measures Monte-Carlo error only.
    bias = chain_var - 1.0 / LAMBDA
    assert abs(bias) < 0.5 * se_var.min(), (bias, se_var)
    assert np.all(np.abs(z_mean) < Z_TOL), z_mean
    assert np.all(np.abs(z_var) < Z_TOL), z_var
    return {
        "z_mean": float(np.abs(z_mean).max()),
        "z_var": float(np.abs(z_var).max()),
        "ess_min": float(ess.min()),
        "bias_over_se_var": float(abs(bias) / se_var.min()),
    }


def test_sgld_recovers_conjugate_posterior() -> None:
    # ε λ = 0.05: the chain's stationary variance is 1.3% above 1/λ (exact, below), its
    # autocorrelation time ~ 4 / (ε λ) = 80 steps; 30,000 kept steps give ESS ~ 400.
    eps = 0.05 / LAMBDA
    adapter = SGLDAdapter(
        hidden=(), noise_std=SIGMA, prior_std=PRIOR_STD, batch_size=N, n_steps=32_000, burn_in=2_000,
        thin=1, step_size_a=eps, step_size_gamma=0.0,
    )
    out = _check_recovers_posterior(adapter, _sgld_stationary_var(eps))
    print("sgld", out)


def test_sghmc_recovers_conjugate_posterior() -> None:
    # η λ = 0.01, α = 0.2 (about critical damping 2 sqrt(ηλ)): bias from the Lyapunov solve.
    lr, alpha = 0.01 / LAMBDA, 0.2
    adapter = SGHMCAdapter(
        hidden=(), noise_std=SIGMA, prior_std=PRIOR_STD, batch_size=N, n_steps=22_000, burn_in=2_000,
        thin=1, step_size_a=lr, friction=alpha,
    )
    out = _check_recovers_posterior(adapter, _sghmc_stationary_var(lr, alpha))
    print("sghmc", out)


def test_sgld_noise_variance_is_eps_times_temperature() -> None:
    eps, temperature, n = 0.01, 0.3, 200_000
    torch.manual_seed(0)
    theta = torch.zeros(n, dtype=torch.float64)
    new, noise = sgld_step(theta, torch.zeros_like(theta), eps, temperature)
    assert torch.equal(new - theta, noise)
    var = float(new.var())
    se = eps * temperature * math.sqrt(2.0 / (n - 1))
    assert abs(var - eps * temperature) < Z_TOL * se
    assert abs(float(new.mean())) < Z_TOL * math.sqrt(eps * temperature / n)


def test_sghmc_noise_variance() -> None:
    lr, alpha, beta, temperature, n = 1e-3, 0.1, 0.04, 0.5, 200_000
    torch.manual_seed(0)
    theta = torch.zeros(n, dtype=torch.float64)
    v = torch.zeros_like(theta)
    new, v_new, noise = sghmc_step(theta, v, torch.zeros_like(theta), lr, alpha, beta, temperature)
    target = 2.0 * (alpha - beta) * lr * temperature
    assert torch.equal(v_new, noise) and torch.equal(new, v_new)
    assert abs(float(v_new.var()) - target) < Z_TOL * target * math.sqrt(2.0 / (n - 1))
    # Exploration stage: no noise at all (SGD with momentum).
    _, v_quiet, quiet = sghmc_step(theta, v + 1.0, torch.ones_like(theta), lr, alpha, beta, temperature, inject_noise=False)
    assert torch.count_nonzero(quiet) == 0
    assert torch.allclose(v_quiet, torch.full_like(v_quiet, (1 - alpha) - lr))


def test_schedules() -> None:
    eps = polynomial_step_sizes(5, 2.0, 10.0, 0.55)
    np.testing.assert_allclose(eps, 2.0 * (10.0 + np.arange(5)) ** -0.55)
    cyc = cyclical_step_sizes(100, 1e-3, 4)  # L = 25
    np.testing.assert_allclose(cyc[[0, 25, 50, 75]], 1e-3)
    np.testing.assert_allclose(cyc[12], 0.5e-3 * (math.cos(math.pi * 12 / 25) + 1))
    stage = cyclical_sampling_stage(100, 4, 0.8)
    assert stage.reshape(4, 25).sum(axis=1).tolist() == [5, 5, 5, 5]
    assert not stage[:20].any() and stage[20:25].all()


def _regression(n: int = 60, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    return X, np.sin(X[:, :1]) + 0.1 * rng.normal(size=(n, 1))


def test_cyclical_keeps_only_sampling_stage_states() -> None:
    X, y = _regression()
    m = SGHMCAdapter(hidden=(8,), n_steps=400, thin=5, cyclical=True, n_cycles=4, exploration_fraction=0.6).fit(X, y, seed=0)
    # L = 100 steps per cycle, 40 in the sampling stage of each, every 5th kept: 8 per cycle.
    assert m.diagnostics_["n_kept"] == 32
    assert m.diagnostics_["burn_in"] == 0
    assert m.diagnostics_["step_size_first"] == pytest.approx(5e-5)  # the peak, step_size_a


def test_kept_states_and_determinism() -> None:
    X, y = _regression()
    kw = {"hidden": (8,), "n_steps": 300, "burn_in": 100, "thin": 20}
    a = SGLDAdapter(**kw).fit(X, y, seed=5)
    b = SGLDAdapter(**kw).fit(X, y, seed=5)
    c = SGLDAdapter(**kw).fit(X, y, seed=6)
    assert a.kept_states_.shape == (10, a.n_parameters_)
    assert torch.equal(a.kept_states_, b.kept_states_)
    assert not torch.equal(a.kept_states_, c.kept_states_)
    d = a.diagnostics_
    assert (d["n_kept"], d["burn_in"], d["thin"]) == (10, 100, 20)
    assert {"step_size_first", "step_size_last", "noise_std_mean", "noise_to_drift_median"} <= set(d)
    # Draws are kept states: S = 25 > K = 10 cycles through all of them.
    s = a.sample_predictive(X[:4], n_samples=25, seed=1)
    sigma = np.exp(a.kept_states_[:, -1].double().numpy())
    drawn = s.scale[:, 0, 0]
    for block in (drawn[:10], drawn[10:20]):
        np.testing.assert_allclose(np.sort(block), np.sort(sigma), rtol=1e-6)


@pytest.mark.parametrize("task", ["regression", "classification"])
@pytest.mark.parametrize(
    "make",
    [
        lambda: SGLDAdapter(hidden=(8,), n_steps=120, thin=10),
        lambda: SGHMCAdapter(hidden=(8,), n_steps=120, thin=10),
        lambda: SGHMCAdapter(hidden=(8,), n_steps=120, thin=5, cyclical=True, n_cycles=2, noise_estimate="empirical"),
    ],
    ids=["sgld", "sghmc", "csghmc-empirical"],
)
def test_check_adapter(make, task: str) -> None:
    check_adapter(make(), task)


def test_fixed_noise_predictive_scale() -> None:
    X, y = _regression()
    m = SGLDAdapter(hidden=(4,), noise_std=0.3, n_steps=60, thin=10).fit(X, y, seed=0)
    s = m.sample_predictive(X[:3], n_samples=4, seed=0)
    np.testing.assert_allclose(s.scale, 0.3, rtol=1e-6)
    assert "noise_std_mean" not in m.diagnostics_


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"temperature": 0.0}, "temperature"),
        ({"step_size_gamma": 1.5}, "step_size_gamma"),
        ({"burn_in": 500, "n_steps": 100}, "burn_in"),
        ({"thin": 0}, "thin"),
        ({"hidden": (0,)}, "hidden"),
    ],
)
def test_bad_params(kw: dict, match: str) -> None:
    X, y = _regression()
    with pytest.raises(ValueError, match=match):
        SGLDAdapter(**kw).fit(X, y, seed=0)


def test_divergence_raises() -> None:
    X, y = _regression()
    with pytest.raises(RuntimeError, match="step_size_a"):
        SGLDAdapter(hidden=(4,), step_size_a=10.0, n_steps=50, thin=5).fit(X, y, seed=0)
