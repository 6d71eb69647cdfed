"""``swag``: SWA-Gaussian (Maddox et al. 2019).

The moments are checked against a direct numpy computation on the recorded SGD iterates,
the draws' mean and covariance against the closed form ``scale · (Σ_diag + D Dᵀ/(K-1))``
within Monte-Carlo standard errors, SWAG-Diagonal against a diagonal covariance, and the
adapter against the contract, determinism and the device plumbing.
"""

from __future__ import annotations

import functools
from unittest import mock

import numpy as np
import pytest
import torch

from uqbench.testing import check_adapter
from uqbench_adapters.torch import _base
from uqbench_adapters.torch.swag import SWAGAdapter

QUICK = {"epochs": 5, "swag_epochs": 6, "hidden": (8,)}
# Monte-Carlo tolerance: |estimate - exact| / standard error, over ~10^2 entries of one
# covariance; a Gaussian exceeds 4.5 standard errors with probability 7e-6 per entry.
Z_MAX = 4.5
N_MC = 40_000


class _Recording(SWAGAdapter):
    """Stores every snapshot the SWAG phase collects (a test-only hook)."""

    def _record_snapshot(self, theta: torch.Tensor) -> None:
        self.iterates_.append(theta.cpu().numpy().copy())
        super()._record_snapshot(theta)

    def fit(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        self.iterates_: list[np.ndarray] = []
        return super().fit(*args, **kwargs)


def _regression(n: int = 48, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 2))
    return X, np.sin(X[:, :1]) + 0.1 * rng.normal(size=(n, 1))


def _blobs(n: int = 60, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    centres = np.array([[-2.0, 0.0], [2.0, 0.0], [0.0, 2.0]])
    return centres[y] + rng.standard_normal((n, 2)), y.astype(np.int64)


@functools.cache
def _fitted(rank: int, schedule: str = "constant", task: str = "regression") -> _Recording:
    """A tiny SWAG fit (P = 2·4 + 4 + 4 + 1 + 1 = 18 parameters for regression) whose
    iterates move visibly: a high SGD rate, 12 snapshots."""
    X, y = _regression() if task == "regression" else _blobs()
    model = _Recording(
        hidden=(4,), epochs=20, swag_epochs=12, swag_lr=0.05, batch_size=16, rank=rank,
        swag_schedule=schedule,
    )
    return model.fit(X, y, seed=3)


def _numpy_moments(iterates: np.ndarray, rank: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """θ̄, θ²‾ and D (last ``rank`` columns of θ_i − θ̄_i, θ̄_i the mean of θ_1..θ_i)."""
    n = len(iterates)
    running = np.cumsum(iterates, axis=0) / np.arange(1, n + 1)[:, None]
    dev = (iterates - running)[max(0, n - rank) :].T if rank else np.zeros((iterates.shape[1], 0))
    return iterates.mean(axis=0), (iterates**2).mean(axis=0), dev


# -- (1) the moments -----------------------------------------------------------------
@pytest.mark.parametrize(("rank", "schedule"), [(20, "constant"), (5, "constant"), (0, "constant"), (5, "cyclic")])
def test_moments_equal_a_numpy_computation_on_the_iterates(rank: int, schedule: str) -> None:
    model = _fitted(rank, schedule)
    thetas = np.stack(model.iterates_)  # [n, P]
    assert thetas.shape == (12, 18)
    mean, sq, dev = _numpy_moments(thetas, rank)
    np.testing.assert_allclose(model.swag_mean_.numpy(), mean, rtol=0, atol=1e-10)
    np.testing.assert_allclose(model.swag_sq_mean_.numpy(), sq, rtol=0, atol=1e-10)
    np.testing.assert_allclose(model.swag_diag_var_.numpy(), np.maximum(sq - mean**2, 1e-30), rtol=0, atol=1e-10)
    # The moment's variance equals the (biased) sample variance of the iterates.
    np.testing.assert_allclose(model.swag_diag_var_.numpy(), thetas.var(axis=0), rtol=1e-6, atol=1e-12)
    assert model.swag_deviations_.shape == (18, min(rank, 12))
    np.testing.assert_allclose(model.swag_deviations_.numpy(), dev, rtol=0, atol=1e-10)
    assert model.diagnostics_["n_snapshots"] == 12
    assert model.diagnostics_["rank_used"] == min(rank, 12)
    # The iterates moved: the variances are far above the floor.
    assert model.diagnostics_["diag_var_floored_frac"] == 0.0
    assert np.all(thetas.var(axis=0) > 1e-9)
    # The model is left at the SWA mean.
    flat = torch.nn.utils.parameters_to_vector(model.model_.parameters()).detach().double().numpy()
    np.testing.assert_allclose(flat, mean, atol=1e-6)


def test_collect_every_takes_one_snapshot_per_that_many_epochs() -> None:
    X, y = _regression()
    model = _Recording(hidden=(4,), epochs=2, swag_epochs=7, collect_every=3, rank=2).fit(X, y, seed=0)
    assert len(model.iterates_) == 2 == model.diagnostics_["n_snapshots"]
    assert model.diagnostics_["swag_steps"] == 7 * (48 // 48)  # batch 64 capped at N = 48


# -- (2) the sampling covariance --------------------------------------------------------
def _mc_check(draws: np.ndarray, mean: np.ndarray, cov: np.ndarray) -> tuple[float, float]:
    """Largest |error| / standard error of the draws' mean and covariance entries.

    For Gaussian draws the sample covariance entry has variance
    ``(Σ_ij² + Σ_ii Σ_jj) / n``; the sample mean's entry ``Σ_ii / n``.
    """
    n = len(draws)
    z_mean = np.abs(draws.mean(0) - mean) / np.sqrt(np.diag(cov) / n)
    emp = np.cov(draws, rowvar=False, bias=True)
    se = np.sqrt((cov**2 + np.outer(np.diag(cov), np.diag(cov))) / n)
    return float(z_mean.max()), float((np.abs(emp - cov) / se).max())


@pytest.mark.parametrize("scale", [0.5, 1.0])
def test_draws_have_covariance_scale_times_diag_plus_low_rank(scale: float) -> None:
    model = _fitted(5)
    model.scale = scale
    mean = model.swag_mean_.numpy()
    dev = model.swag_deviations_.numpy()
    k = dev.shape[1]
    cov = scale * (np.diag(model.swag_diag_var_.numpy()) + dev @ dev.T / (k - 1))
    draws = model.sample_parameters(N_MC, seed=11)
    z_mean, z_cov = _mc_check(draws, mean, cov)
    assert z_mean < Z_MAX and z_cov < Z_MAX, (z_mean, z_cov)
    # The low-rank part matters here: leaving it out (or halving the covariance again)
    # is far outside the Monte-Carlo error.
    _, z_diag_only = _mc_check(draws, mean, scale * np.diag(model.swag_diag_var_.numpy()))
    _, z_half = _mc_check(draws, mean, 0.5 * cov)
    assert z_diag_only > 20 and z_half > 20, (z_diag_only, z_half)


# -- (3) SWAG-Diagonal ------------------------------------------------------------------
def test_rank_zero_is_swag_diagonal() -> None:
    model = _fitted(0)
    assert model.swag_deviations_.shape == (18, 0)
    var = model.swag_diag_var_.numpy()
    draws = model.sample_parameters(N_MC, seed=12)
    z_mean, z_cov = _mc_check(draws, model.swag_mean_.numpy(), 0.5 * np.diag(var))
    assert z_mean < Z_MAX and z_cov < Z_MAX, (z_mean, z_cov)
    assert model.diagnostics_["low_rank_var_mean"] == 0.0


# -- draws are whole functions ------------------------------------------------------------
def test_predictive_draws_are_the_network_at_the_parameter_draws() -> None:
    model = _fitted(5)
    X = np.random.default_rng(5).normal(size=(9, 2))
    s = model.sample_predictive(X, n_samples=4, seed=21)
    thetas = model.sample_parameters(4, seed=21)  # the same random numbers
    net = model.model_
    params = list(net.parameters())
    for k, theta in enumerate(thetas):
        reference = type(net)(
            _base.mlp(2, (4,), 1, "relu"), _base.HomoscedasticNoise(1)
        ).double()
        torch.nn.utils.vector_to_parameters(torch.as_tensor(theta), list(reference.parameters()))
        assert len(params) == len(list(reference.parameters()))
        with torch.no_grad():
            loc = reference(torch.as_tensor(X)).numpy()
            noise = reference.noise().numpy()
        np.testing.assert_allclose(s.loc[k], loc, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(s.scale[k], np.broadcast_to(noise, loc.shape), rtol=1e-4, atol=1e-6)


# -- determinism, contract, validation ----------------------------------------------------
def test_same_seed_same_fit_and_draws_on_cpu() -> None:
    X, y = _regression()
    a = SWAGAdapter(**QUICK).fit(X, y, seed=4)
    b = SWAGAdapter(**QUICK).fit(X, y, seed=4)
    c = SWAGAdapter(**QUICK).fit(X, y, seed=5)
    for name in ("swag_mean_", "swag_sq_mean_", "swag_deviations_"):
        assert torch.equal(getattr(a, name), getattr(b, name))
    assert not torch.equal(a.swag_mean_, c.swag_mean_)
    sa = a.sample_predictive(X[:5], n_samples=6, seed=1)
    sb = b.sample_predictive(X[:5], n_samples=6, seed=1)
    np.testing.assert_array_equal(sa.loc, sb.loc)
    np.testing.assert_array_equal(sa.scale, sb.scale)
    assert a.diagnostics_ == b.diagnostics_


@pytest.mark.parametrize(
    ("params", "task"),
    [
        (QUICK, "regression"),
        (QUICK, "classification"),
        ({**QUICK, "heteroscedastic": True, "rank": 0}, "regression"),
        ({**QUICK, "swag_schedule": "cyclic", "collect_every": 2, "rank": 2}, "classification"),
    ],
)
def test_check_adapter(params: dict, task: str) -> None:
    check_adapter(SWAGAdapter(**params), task)


def test_classification_draws_differ_and_diagnostics_are_numbers() -> None:
    model = _fitted(5, task="classification")
    X, _ = _blobs(10, seed=1)
    p = model.sample_predictive(X, n_samples=8, seed=0).probs
    assert p.shape == (8, 10, 3)
    assert model.swag_mean_.numel() == 2 * 4 + 4 + 4 * 3 + 3
    assert np.var(p, axis=0).max() > 1e-8
    assert all(isinstance(v, int | float) for v in model.diagnostics_.values())


@pytest.mark.parametrize(
    ("bad", "match"),
    [
        ({"rank": 1}, "rank"),
        ({"rank": -1}, "rank"),
        ({"swag_epochs": 3, "collect_every": 2}, ">= 2 snapshots"),
        ({"scale": -0.1}, "scale"),
        ({"swag_lr": 0.0}, "swag_lr"),
        ({"swag_momentum": 1.0}, "swag_momentum"),
        ({"swag_schedule": "cosine"}, "swag_schedule"),
        ({"swag_lr_min": 1.0}, "swag_lr_min"),
        ({"prior_std": 0}, "prior_std"),
        ({"heteroscedastic": 1}, "heteroscedastic"),
    ],
)
def test_bad_hyperparameters_name_the_value(bad: dict, match: str) -> None:
    X, y = _regression(16)
    with pytest.raises(ValueError, match=match):
        SWAGAdapter(**{**QUICK, **bad}).fit(X, y, seed=0)


def test_fit_and_sample_stay_on_the_adapters_device() -> None:
    # As tests/adapters/test_devices.py: on torch's meta device any tensor created on the
    # CPU by mistake fails an elementwise op.
    X, y = _regression(40)

    def on_meta_only(t: torch.Tensor) -> np.ndarray:
        assert t.is_meta, f"an output was computed on {t.device}"
        return np.zeros(t.shape)

    from uqbench_adapters.torch import swag

    model = SWAGAdapter(epochs=2, swag_epochs=2, hidden=(8,), device="meta")
    with mock.patch.object(_base, "to_numpy", on_meta_only), mock.patch.object(swag, "to_numpy", on_meta_only):
        model.fit(X, y, seed=0)
        assert {p.device.type for p in model.model_.parameters()} == {"meta"}
        assert model.swag_mean_.is_meta and model.swag_deviations_.is_meta
        model.sample_predictive(X[:5], n_samples=3, seed=1)
        model.sample_parameters(3, seed=1)
