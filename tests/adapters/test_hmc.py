"""The ``hmc`` reference adapter: the contract, NUTS against closed-form conjugate posteriors,
seeding, diagnostics, the draw cache, bad input, and registration (lazy Pyro import, opt-in,
the install hint when Pyro is missing).

The sampler tests need the ``hmc`` extra (Pyro) and skip cleanly without it; the
registration tests run either way. Chains here are tiny, so their non-convergence warning
is expected and ignored.
"""

from __future__ import annotations

import importlib.util
import math
import random
import subprocess
import sys

import numpy as np
import pytest
import torch

from uqbench import registry
from uqbench.testing import check_adapter, contract_data
from uqbench_adapters.torch import hmc
from uqbench_adapters.torch.bayes_linear import BayesLinearAdapter
from uqbench_adapters.torch.hmc import HMCAdapter, rank_diagnostics

needs_pyro = pytest.mark.skipif(importlib.util.find_spec("pyro") is None, reason="needs the hmc extra (pyro)")
not_converged = pytest.mark.filterwarnings("ignore:HMCAdapter. NUTS did not converge:RuntimeWarning")
TINY = {"hidden": (4,), "num_chains": 2, "warmup_steps": 20, "num_samples": 10, "max_tree_depth": 4}


def _linear_data(n: int = 30, *, seed: int = 0, noise: float = 0.3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    y = X @ np.array([[0.8], [-0.5]]) + 0.3 + noise * rng.normal(size=(n, 1))
    return X, y, rng.normal(size=(6, 2))


# -- registration (no Pyro needed) -------------------------------------------------------
def test_registered_opt_in_and_lazy() -> None:
    assert "hmc" in registry.adapter_names()
    assert HMCAdapter.opt_in is True and HMCAdapter.tasks == frozenset({"regression"})
    code = (
        "import sys; import uqbench_adapters.torch.hmc as m; from uqbench import registry; "
        "registry.adapter_info('hmc'); assert 'pyro' not in sys.modules, 'pyro imported'"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_unavailable_without_pyro_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(registry.importlib.util, "find_spec", lambda m, *a: None if m == "pyro" else real(m, *a))
    info = registry.adapter_info("hmc")
    assert not info.available
    assert "needs pyro" in info.reason and "pip install 'uqbench[hmc]'" in info.reason


# -- the contract and the sampler ------------------------------------------------------------
@needs_pyro
@not_converged
@pytest.mark.parametrize("params", [TINY, {**TINY, "hidden": (), "noise_std": 0.2}, {**TINY, "jit_compile": True}])
def test_check_adapter(params: dict) -> None:
    check_adapter(HMCAdapter(**params), "regression")


@needs_pyro
@pytest.mark.slow
def test_linear_known_noise_matches_the_closed_form() -> None:
    """hidden=() with fixed σ is conjugate: NUTS must match bayes-linear's exact posterior."""
    X, y, X_test = _linear_data()
    prior_std, sigma = 0.8, 0.3
    exact = BayesLinearAdapter(alpha=prior_std**-2, noise_std=sigma).fit(X, y, seed=0)
    model = HMCAdapter(hidden=(), prior_std=prior_std, noise_std=sigma, num_chains=2, warmup_steps=100, num_samples=200)
    model.fit(X, y, seed=3)
    d = model.diagnostics_
    assert d["converged"] and d["divergences"] == 0 and d["rhat_max_params"] < 1.05
    ess = d["ess_bulk_min_params"]
    w = model.draws_.reshape(-1, model.draws_.shape[-1])  # [C T, 3]: two weights, then the bias
    post_sd = np.sqrt(np.diag(exact.coef_cov_[0]))
    np.testing.assert_array_less(np.abs(w.mean(0) - exact.coef_[:, 0]), 4 * post_sd / math.sqrt(ess))
    np.testing.assert_allclose(w.std(0), post_sd, rtol=4 * math.sqrt(0.5 / ess))

    s = model.sample_predictive(X_test, n_samples=w.shape[0], seed=0)  # every pooled draw once
    assert np.all(s.scale == sigma)
    epistemic = exact.predictive_variance(X_test) - sigma**2
    np.testing.assert_allclose(s.epistemic_variance(), epistemic, rtol=4 * math.sqrt(2 / ess))
    np.testing.assert_array_less(np.abs(s.mean() - exact.predictive_mean(X_test)), 4 * np.sqrt(epistemic / ess))
    np.testing.assert_allclose(s.total_variance(), exact.predictive_variance(X_test), rtol=4 * math.sqrt(2 / ess))


@needs_pyro
@pytest.mark.slow
def test_linear_learned_noise_matches_quadrature() -> None:
    """σ ~ HalfNormal(1): p(σ | y) ∝ HalfNormal(σ) N(y; 0, s²ΦΦᵀ + σ²I), integrated on a grid."""
    X, y, _ = _linear_data(noise=0.5, seed=1)
    prior_std = 1.0
    phi = np.hstack([X, np.ones((len(X), 1))])
    lam, U = np.linalg.eigh(prior_std**2 * phi @ phi.T)  # cov(y | σ) = U diag(lam + σ²) Uᵀ
    z2 = (U.T @ y[:, 0]) ** 2
    grid = np.linspace(0.05, 2.0, 4000)[:, None]
    log_post = -0.5 * grid[:, 0] ** 2 - 0.5 * np.sum(np.log(lam + grid**2) + z2 / (lam + grid**2), axis=1)
    p = np.exp(log_post - log_post.max())
    p /= p.sum()
    grid = grid[:, 0]
    mean, sd = float(np.sum(p * grid)), float(np.sqrt(np.sum(p * grid**2) - np.sum(p * grid) ** 2))

    model = HMCAdapter(hidden=(), prior_std=prior_std, num_chains=2, warmup_steps=100, num_samples=200).fit(X, y, seed=0)
    d = model.diagnostics_
    assert d["converged"] and d["rhat_noise"] < 1.05
    sigma = model.noise_std_draws_.ravel()
    assert abs(sigma.mean() - mean) < 4 * sd / math.sqrt(d["ess_bulk_noise"])
    assert abs(sigma.std() / sd - 1) < 4 * math.sqrt(0.5 / d["ess_bulk_noise"])


@needs_pyro
@not_converged
def test_seeded_reproducible_and_leaves_global_rngs_alone() -> None:
    X, y, X_test = contract_data("regression")
    torch.manual_seed(123)
    np.random.seed(7)  # noqa: NPY002
    random.seed(5)
    before = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())  # noqa: NPY002
    a = HMCAdapter(**TINY).fit(X, y, seed=4)
    assert torch.equal(torch.get_rng_state(), before[0])
    assert np.array_equal(np.random.get_state()[1], before[1])  # noqa: NPY002
    assert random.getstate() == before[2]
    b = HMCAdapter(**TINY).fit(X, y, seed=4)
    c = HMCAdapter(**TINY).fit(X, y, seed=5)
    assert np.array_equal(a.draws_, b.draws_)
    assert not np.array_equal(a.draws_, c.draws_)
    # the chains start and run apart
    assert not np.array_equal(a.draws_[0], a.draws_[1])
    sa, sb = a.sample_predictive(X_test, n_samples=8, seed=1), b.sample_predictive(X_test, n_samples=8, seed=1)
    assert np.array_equal(sa.loc, sb.loc) and np.array_equal(sa.scale, sb.scale)


@needs_pyro
@not_converged
def test_diagnostics_and_shapes() -> None:
    X, y, X_test = contract_data("regression")
    y2 = np.hstack([y, -y])  # two outputs: one σ each
    with pytest.warns(RuntimeWarning, match="did not converge in function space"):
        model = HMCAdapter(**TINY).fit(X, y2, seed=0)
    d = model.diagnostics_
    expected = {
        "rhat_max", "ess_bulk_min", "rhat_max_extrapolation", "ess_bulk_min_extrapolation", "rhat_max_params", "ess_bulk_min_params", "rhat_noise",
        "ess_bulk_noise", "converged", "divergences", "n_chains", "n_warmup", "n_draws",
        "sampling_seconds", "sampling_cpu_seconds", "accept_prob_mean", "step_size", "grad_evals_per_draw", "from_cache",
    }
    assert expected <= set(d)
    assert (d["n_chains"], d["n_warmup"], d["n_draws"]) == (2, 20, 10)
    assert d["converged"] is False and d["from_cache"] is False
    assert isinstance(d["divergences"], int) and d["divergences"] >= 0
    assert d["sampling_seconds"] > 0 and 0 <= d["accept_prob_mean"] <= 1
    assert len(d["step_size"]) == 2 and all(s > 0 for s in d["step_size"])
    assert 1 <= d["grad_evals_per_draw"] <= 2**4 - 1
    for key in ("rhat_max", "rhat_max_extrapolation", "rhat_max_params", "rhat_noise"):
        assert d[key] > 0.9
    for key in ("ess_bulk_min", "ess_bulk_min_extrapolation", "ess_bulk_min_params", "ess_bulk_noise"):
        assert 0 < d[key] <= 20 * math.log10(20)
    P = (3 + 1) * 4 + (4 + 1) * 2 + 2
    assert model.draws_.shape == (2, 10, P) and model.n_parameters_ == P
    assert model.noise_std_draws_.shape == (2, 10, 2)
    # more draws than the chains hold: drawn with replacement
    s = model.sample_predictive(X_test, n_samples=25, seed=0)
    assert s.loc.shape == s.scale.shape == (25, len(X_test), 2)
    assert set(np.unique(s.scale[:, 0, 1])) <= set(model.noise_std_draws_[..., 1].ravel())


@needs_pyro
def test_rank_diagnostics() -> None:
    rng = np.random.default_rng(0)
    iid = rng.normal(size=(4, 200, 3))
    rhat, ess = rank_diagnostics(iid)
    assert np.all(np.abs(rhat - 1) < 0.02) and np.all(ess > 400)
    shifted = iid + 3.0 * np.arange(4)[:, None, None]  # chains in different places
    assert np.all(rank_diagnostics(shifted)[0] > 1.5)
    sticky = np.cumsum(rng.normal(size=(4, 200, 1)), axis=1)  # random walks: few effective draws
    assert rank_diagnostics(sticky)[1][0] < 50
    constant = np.ones((2, 10, 1))
    assert np.isnan(rank_diagnostics(constant)[0][0])


@needs_pyro
@not_converged
def test_function_space_ignores_hidden_unit_permutations() -> None:
    """Two chains in modes that differ only by a relabelling of the hidden units: far apart
    in parameter space, identical in function space."""
    X, y, _ = contract_data("regression")
    model = HMCAdapter(**TINY).fit(X, y, seed=0)  # for its network layout
    net = model._net
    rng = np.random.default_rng(0)
    theta = torch.as_tensor(rng.normal(size=net.n_params) + 0.05 * rng.normal(size=(1, 200, net.n_params)))
    W1, W2 = net.layers(theta)
    perm = torch.tensor([3, 2, 1, 0])
    W2p = torch.cat([W2[..., :-1, :][..., perm, :], W2[..., -1:, :]], dim=-2)
    permuted = torch.cat([W1[..., perm].flatten(-2), W2p.flatten(-2), net.log_noise(theta)], dim=-1)
    torch.testing.assert_close(net(permuted[0], torch.as_tensor(X)), net(theta[0], torch.as_tensor(X)))
    d = model._diagnose(torch.cat([theta, permuted]).numpy(), torch.as_tensor(X))
    assert abs(d["rhat_max"] - 1) < 0.05
    assert d["rhat_max_params"] > 1.5


# -- the cache --------------------------------------------------------------------------
@needs_pyro
@not_converged
def test_cache_round_trip(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    X, y, X_test = contract_data("regression")
    first = HMCAdapter(**TINY, cache_dir=tmp_path).fit(X, y, seed=0)
    (path,) = tmp_path.glob("hmc-*.npz")

    def no_sampling(*args, **kwargs):
        raise AssertionError("sampled although the draws were cached")

    monkeypatch.setattr(HMCAdapter, "_sample_posterior", no_sampling)
    monkeypatch.setenv(hmc.CACHE_ENV, str(tmp_path))  # the environment names the same directory
    again = HMCAdapter(**TINY).fit(X, y, seed=0)
    assert again.diagnostics_["from_cache"] and not first.diagnostics_["from_cache"]
    assert np.array_equal(first.draws_, again.draws_)
    assert again.diagnostics_["sampling_seconds"] == first.diagnostics_["sampling_seconds"]
    a, b = first.sample_predictive(X_test, n_samples=5, seed=2), again.sample_predictive(X_test, n_samples=5, seed=2)
    assert np.array_equal(a.loc, b.loc)
    # another seed, other data or other hyperparameters miss the cache
    for params, data, seed in (({}, (X, y), 1), ({}, (X, y + 1), 0), ({"init_std": 0.2}, (X, y), 0)):
        with pytest.raises(AssertionError, match="sampled although"):
            HMCAdapter(**{**TINY, **params}).fit(*data, seed=seed)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]


# -- bad input --------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"hidden": (0,)}, "hidden must be a sequence of positive ints"),
        ({"hidden": 5}, "hidden must be a sequence of positive ints"),
        ({"activation": "sigmoid"}, "activation must be one of"),
        ({"prior_std": 0.0}, "prior_std must be a finite number > 0"),
        ({"noise_std": -1.0}, "noise_std must be a finite number > 0"),
        ({"noise_prior_scale": math.inf}, "noise_prior_scale must be a finite number > 0"),
        ({"num_chains": 0}, "num_chains must be a positive int"),
        ({"warmup_steps": 1.5}, "warmup_steps must be a positive int"),
        ({"num_samples": 3}, "num_samples must be an int >= 4"),
        ({"max_tree_depth": True}, "max_tree_depth must be a positive int"),
        ({"target_accept_prob": 1.0}, r"target_accept_prob must be in \(0, 1\)"),
        ({"jit_compile": "yes"}, "jit_compile must be a bool"),
        ({"cache_dir": 3}, "cache_dir must be a path or None"),
    ],
)
def test_bad_hyperparameters(params: dict, message: str) -> None:
    X, y, _ = contract_data("regression")
    with pytest.raises(ValueError, match=message):
        HMCAdapter(**{**TINY, **params}).fit(X, y, seed=0)


@needs_pyro
@not_converged
def test_bad_data() -> None:
    X, y, X_test = contract_data("regression")
    model = HMCAdapter(**TINY)
    with pytest.raises(RuntimeError, match="not fitted"):
        model.sample_predictive(X_test, n_samples=2, seed=0)
    with pytest.raises(ValueError, match="does not support classification"):
        model.fit(X, (y[:, 0] > 0).astype(np.int64), seed=0)
    bad = X.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="X contains NaN"):
        model.fit(bad, y, seed=0)
    with pytest.raises(ValueError, match="X has 64 rows but y has 63"):
        model.fit(X, y[:-1], seed=0)
    model.fit(X, y, seed=0)
    with pytest.raises(ValueError, match="fitted on 3"):
        model.sample_predictive(X_test[:, :2], n_samples=2, seed=0)
    for n in (0, 2.0, True):
        with pytest.raises(ValueError, match="n_samples must be a positive int"):
            model.sample_predictive(X_test, n_samples=n, seed=0)
