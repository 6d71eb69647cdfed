"""The gradient-variance probe: closed form for pure minibatch noise, and the papers' ordering."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from uqbench.harness.probe import gradient_variance
from uqbench_adapters.torch.bbb import BBBAdapter
from uqbench_adapters.torch.deterministic import DeterministicAdapter
from uqbench_adapters.torch.flipout import FlipoutAdapter
from uqbench_adapters.torch.lrt import LRTAdapter


@pytest.fixture(autouse=True)
def _one_thread():
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


class LinearGaussian:
    """A fixed, noise-free linear-Gaussian model: its gradient noise is minibatch sampling only.

    Per-example loss ``(y - x_a . a - x_b . b)^2 / 2`` with inputs split into two blocks;
    ``first`` is ``a`` and ``last`` is ``b``.
    """

    def __init__(self, n_features: int = 6, seed: int = 0) -> None:
        g = torch.Generator().manual_seed(seed)
        self.k = n_features // 2
        self.a = torch.randn(self.k, generator=g, requires_grad=True)
        self.b = torch.randn(n_features - self.k, generator=g, requires_grad=True)

    def training_loss(self, xb: torch.Tensor, yb: torch.Tensor, n_train: int) -> torch.Tensor:
        pred = xb[:, : self.k] @ self.a + xb[:, self.k :] @ self.b
        return 0.5 * ((yb[:, 0] - pred) ** 2).mean()

    def probe_parameters(self) -> dict[str, torch.Tensor]:
        return {"first": self.a, "last": self.b}

    def per_example_gradients(self, X: np.ndarray, y: np.ndarray) -> dict[str, np.ndarray]:
        a, b = self.a.detach().double().numpy(), self.b.detach().double().numpy()
        X = X.astype(np.float32).astype(np.float64)
        resid = y[:, 0] - X[:, : self.k] @ a - X[:, self.k :] @ b
        return {"first": -resid[:, None] * X[:, : self.k], "last": -resid[:, None] * X[:, self.k :]}


def _linear_data(n: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 6))
    y = X @ rng.normal(size=(6, 1)) + rng.normal(size=(n, 1))
    return X, y.astype(np.float32)


def test_minibatch_variance_without_replacement_matches_closed_form() -> None:
    X, y = _linear_data()
    model = LinearGaussian()
    n = len(X)
    got = dict(gradient_variance(model, X, y, batch_sizes=(32, 128, 512), n_repeats=1000, seed=0))
    got |= dict(gradient_variance(model, X, y, batch_sizes=(1000, 4000), n_repeats=3, seed=0))
    per_example = model.per_example_gradients(X, y)
    for key, g in per_example.items():
        sigma2 = g.var(axis=0, ddof=0)  # population variance of per-example gradients
        for b in (32, 128, 512):
            expected = float(np.mean(sigma2 / b * (n - b) / (n - 1)))
            assert got[f"grad_var_{key}_b{b}"] == pytest.approx(expected, rel=0.15)
        assert got[f"grad_var_{key}_b1000"] == pytest.approx(0.0, abs=1e-10)  # B = N: no noise
    assert not any(name.endswith("_b4000") for name in got)  # B > N is skipped, not faked
    assert list(got)[:2] == ["grad_var_first_b32", "grad_var_last_b32"]


def test_probe_is_seeded_leaves_the_model_and_the_global_rng_alone() -> None:
    X, y = _linear_data(200)
    model = LinearGaussian()
    before = [p.detach().clone() for p in model.probe_parameters().values()]
    torch.manual_seed(123)
    state = torch.get_rng_state()
    first = gradient_variance(model, X, y, batch_sizes=(16,), n_repeats=20, seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    assert first == gradient_variance(model, X, y, batch_sizes=(16,), n_repeats=20, seed=4)
    assert first != gradient_variance(model, X, y, batch_sizes=(16,), n_repeats=20, seed=5)
    for p, b in zip(model.probe_parameters().values(), before, strict=True):
        assert torch.equal(p, b) and p.grad is None


def test_probe_rejects_what_it_cannot_measure() -> None:
    X, y = _linear_data(50)
    with pytest.raises(ValueError, match="training_loss"):
        gradient_variance(object(), X, y, seed=0)
    with pytest.raises(ValueError, match="n_repeats"):
        gradient_variance(LinearGaussian(), X, y, n_repeats=1, seed=0)
    with pytest.raises(ValueError, match="batch_sizes"):
        gradient_variance(LinearGaussian(), X, y, batch_sizes=(0,), seed=0)


def test_deterministic_adapter_has_only_minibatch_noise() -> None:
    X, y = _linear_data(300)
    adapter = DeterministicAdapter(hidden=(8,), epochs=2).fit(X, y, seed=0)
    got = dict(gradient_variance(adapter, X, y, batch_sizes=(64, 300), n_repeats=10, seed=0))
    assert got["grad_var_first_b64"] > 0
    assert got["grad_var_first_b300"] == pytest.approx(0.0, abs=1e-12)


def test_flipout_and_lrt_reduce_first_layer_gradient_variance_below_bbb() -> None:
    # Wen et al. (2018), Kingma et al. (2015): per-example weight noise averages out over
    # the minibatch, BBB's shared sample does not. The same posterior (trained by BBB) is
    # loaded into all three, so only the gradient estimator differs.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(1024, 8))
    y = np.sin(X @ rng.normal(size=(8, 1)) / 2) + 0.1 * rng.normal(size=(1024, 1))
    kw = {"hidden": (50,), "batch_size": 128}
    state = BBBAdapter(**kw, epochs=20).fit(X, y, seed=0).model_.state_dict()
    first = {}
    for name, cls in {"bbb": BBBAdapter, "flipout": FlipoutAdapter, "lrt": LRTAdapter}.items():
        adapter = cls(**kw, epochs=1).fit(X, y, seed=0)
        adapter.model_.load_state_dict(state)
        got = dict(gradient_variance(adapter, X, y, batch_sizes=(128,), n_repeats=100, seed=1))
        first[name] = got["grad_var_first_b128"]
    assert first["flipout"] < first["bbb"]
    assert first["lrt"] < first["bbb"]
