"""The variational weight-space adapters: bbb, flipout, lrt.

Each training kernel is checked against a slow reference (explicit weight sampling per
example, closed-form pre-activation moments), the KL against torch.distributions and a
Monte-Carlo estimate, batched predictive sampling against a per-draw loop, and the
predictive marginals against the posterior's closed form.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pytest
import torch
from scipy.stats import norm

from uqbench.testing import check_adapter
from uqbench_adapters.torch._base import seeded
from uqbench_adapters.torch._variational import (
    GaussianPrior,
    ScaleMixturePrior,
    VariationalAdapter,
    VariationalLinear,
)
from uqbench_adapters.torch.bbb import BBBAdapter, BBBLinear
from uqbench_adapters.torch.deterministic import DeterministicAdapter
from uqbench_adapters.torch.flipout import FlipoutAdapter, FlipoutLinear, random_signs
from uqbench_adapters.torch.lrt import LRTAdapter, LRTLinear

ADAPTERS = {"bbb": BBBAdapter, "flipout": FlipoutAdapter, "lrt": LRTAdapter}
LAYERS = {"bbb": BBBLinear, "flipout": FlipoutLinear, "lrt": LRTLinear}


def _layer(kind: str, n_in: int = 3, n_out: int = 2, *, seed: int = 0) -> VariationalLinear:
    """A layer with random posterior means and varied standard deviations (0.05-0.5)."""
    with seeded(seed):
        layer = LAYERS[kind](n_in, n_out, prior=GaussianPrior(1.0), init_std=0.1)
        with torch.no_grad():
            layer.loc.normal_()
            layer.rho.copy_(torch.log(torch.expm1(torch.empty_like(layer.rho).uniform_(0.05, 0.5))))
    return layer


def _x1(x: torch.Tensor) -> torch.Tensor:
    return torch.cat([x, torch.ones(len(x), 1)], dim=1)


@functools.cache
def _kernel_draws(kind: str) -> tuple[VariationalLinear, torch.Tensor]:
    """A ``kind`` layer and ``N_MC`` independent training passes of ``X_BATCH`` ``[n, B, n_out]``."""
    layer = _layer(kind)
    with seeded(1), torch.no_grad():
        return layer, torch.stack([layer(X_BATCH)[0] for _ in range(N_MC)])


def _closed_form(layer: VariationalLinear, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example output mean ``x1 @ loc`` and variance ``x1^2 @ scale^2`` for W ~ q."""
    with torch.no_grad():
        x1 = _x1(x)
        return x1 @ layer.loc, (x1 * x1) @ layer.scale() ** 2


def _regression(n: int, *, seed: int, d: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, 3))
    return X, np.sin(X[:, :d]) + 0.1 * rng.normal(size=(n, d))


def _blobs(n: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, size=n)
    centres = np.array([[-3.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    return centres[y] + 0.7 * rng.standard_normal((n, 2)), y.astype(np.int64)


@pytest.fixture(autouse=True)
def _one_thread():
    # These nets are tiny: one thread is faster, and on a busy machine two OpenMP threads
    # spin-wait on each other (fits measured ~10x slower in wall time).
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


X_BATCH = torch.tensor([[1.0, -0.5, 2.0], [0.3, 1.2, -1.0], [-2.0, 0.0, 0.5], [1.0, -0.5, 2.0]])
N_MC = 4000


# -- training kernels --------------------------------------------------------------------
def test_flipout_matches_explicit_per_example_weight_sampling() -> None:
    layer, draws = _kernel_draws("flipout")
    # Slow reference: an independent weight matrix for every example and every pass.
    with seeded(2), torch.no_grad():
        w = layer.loc + layer.scale() * torch.randn(N_MC, len(X_BATCH), *layer.loc.shape)
        ref = torch.einsum("bi,nbio->nbo", _x1(X_BATCH), w)
    mean, var = _closed_form(layer, X_BATCH)
    se = (var / N_MC).sqrt()
    for got in (draws, ref):
        assert torch.all((got.mean(0) - mean).abs() < 4.5 * se)
        assert torch.allclose(got.var(0), var, rtol=0.12)
    assert torch.allclose(draws.var(0), ref.var(0), rtol=0.15)


@pytest.mark.parametrize("kind", ["flipout", "lrt"])
def test_per_example_noise_is_uncorrelated_across_examples(kind: str) -> None:
    _, draws = _kernel_draws(kind)
    # Rows 0 and 3 are the same input: BBB would give them identical outputs.
    corr = np.corrcoef(draws[:, 0, 0].numpy(), draws[:, 3, 0].numpy())[0, 1]
    assert abs(corr) < 0.08


def test_lrt_preactivation_moments_match_closed_form() -> None:
    layer, draws = _kernel_draws("lrt")
    mean, var = _closed_form(layer, X_BATCH)
    assert torch.all((draws.mean(0) - mean).abs() < 4.5 * (var / N_MC).sqrt())
    assert torch.allclose(draws.var(0), var, rtol=0.12)
    # Gaussian pre-activations: standardized draws have the normal's kurtosis (3).
    z = (draws - mean) / var.sqrt()
    assert torch.allclose((z**4).mean(0), torch.full_like(var, 3.0), rtol=0.2)


def test_bbb_uses_one_weight_sample_for_the_whole_batch() -> None:
    layer = _layer("bbb", n_in=3, n_out=2)
    probe = torch.cat([torch.zeros(1, 3), torch.eye(3), X_BATCH])
    with seeded(5), torch.no_grad():
        for _ in range(20):
            y = layer(probe)[0]
            bias, rows = y[0], y[1:4] - y[0]  # one sampled b and W, read off the probe rows
            assert torch.allclose(y[4:], X_BATCH @ rows + bias, atol=1e-5)
            assert torch.equal(y[4], y[7])  # identical inputs, identical outputs


@pytest.mark.parametrize("kind", ["flipout", "lrt"])
def test_per_example_methods_do_not_share_one_sample(kind: str) -> None:
    layer = _layer(kind)
    with seeded(6), torch.no_grad():
        y = layer(X_BATCH)[0]
    assert not torch.allclose(y[0], y[3])


def test_bbb_outputs_have_the_shared_sample_covariance() -> None:
    layer, draws = _kernel_draws("bbb")
    x1 = _x1(X_BATCH)
    # Cov(y_0, y_1) per unit = sum_k x1_0k x1_1k scale_k^2 under one shared W.
    expected = ((x1[0] * x1[1]) @ layer.scale().detach() ** 2)[0]
    got = np.cov(draws[:, 0, 0].numpy(), draws[:, 1, 0].numpy())[0, 1]
    assert got == pytest.approx(float(expected), rel=0.15)


def test_random_signs_are_fair_plus_minus_one() -> None:
    with seeded(0):
        s = random_signs(300, 70)
    assert s.shape == (300, 70) and s.dtype == torch.float32
    assert set(s.unique().tolist()) == {-1.0, 1.0}
    assert abs(float(s.mean())) < 4 / math.sqrt(s.numel())
    assert abs(float((s[:, :-1] * s[:, 1:]).mean())) < 4 / math.sqrt(s.numel())  # no pairing
    with seeded(1):
        words = random_signs(4000, 56)  # one row per 56-bit random word: columns are bits
    assert torch.all(words.mean(0).abs() < 4 / math.sqrt(4000))  # no stuck or biased bit


# -- KL ----------------------------------------------------------------------------------
def _posterior(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(4, 3, generator=g), torch.rand(4, 3, generator=g) * 0.8 + 0.1


def test_gaussian_kl_matches_torch_distributions_and_monte_carlo() -> None:
    loc, scale = _posterior()
    prior = GaussianPrior(0.7)
    kl = prior.kl(loc, scale, None)
    q, p = torch.distributions.Normal(loc, scale), torch.distributions.Normal(0.0, 0.7)
    assert float(kl) == pytest.approx(float(torch.distributions.kl_divergence(q, p).sum()), rel=1e-5)
    w = q.sample((20000,))
    mc = (q.log_prob(w) - p.log_prob(w)).sum((1, 2))
    assert abs(float(mc.mean() - kl)) < 4 * float(mc.std()) / math.sqrt(len(mc))


def test_mixture_log_prob_matches_scipy() -> None:
    prior = ScaleMixturePrior(0.3, 1.5, math.exp(-6))
    w = torch.tensor([-3.0, -0.01, 0.0, 1e-3, 0.5, 4.0], dtype=torch.float64)
    expected = np.log(0.3 * norm.pdf(w, scale=1.5) + 0.7 * norm.pdf(w, scale=math.exp(-6)))
    np.testing.assert_allclose(prior.log_prob(w).numpy(), expected, rtol=1e-10)
    assert torch.isfinite(prior.log_prob(torch.tensor([1e3]))).all()  # no underflow to -inf


def test_mixture_kl_estimate_is_unbiased_with_its_gradient() -> None:
    # Two identical components make the mixture a Gaussian: the analytic KL is the target.
    loc, scale = _posterior(1)
    loc.requires_grad_(True)
    analytic = GaussianPrior(0.8).kl(loc, scale, None)
    (grad_analytic,) = torch.autograd.grad(analytic, loc)
    mixture = ScaleMixturePrior(0.4, 0.8, 0.8)
    g = torch.Generator().manual_seed(0)
    estimates, grads = [], []
    for _ in range(3000):
        est = mixture.kl(loc, scale, torch.randn(loc.shape, generator=g))
        estimates.append(float(est.detach()))
        grads.append(torch.autograd.grad(est, loc)[0])
    estimates = np.array(estimates)
    assert abs(estimates.mean() - analytic.item()) < 4 * estimates.std() / math.sqrt(len(estimates))
    g_mean, g_se = torch.stack(grads).mean(0), torch.stack(grads).std(0) / math.sqrt(len(grads))
    assert torch.all((g_mean - grad_analytic).abs() < 4.5 * g_se + 1e-6)


def test_loss_is_mean_nll_plus_beta_kl_over_n() -> None:
    X, y = _regression(64, seed=0)
    adapter = BBBAdapter(hidden=(6,), epochs=1, kl_weight=0.3).fit(X, y, seed=0)
    xb, yb = torch.as_tensor(X[:16], dtype=torch.float32), torch.as_tensor(y[:16], dtype=torch.float32)
    with seeded(9):
        loss = adapter.training_loss(xb, yb, 64)
    with seeded(9), torch.no_grad():
        out, kl = adapter.model_(xb)
        noise = adapter.model_.noise()
        nll = -torch.distributions.Normal(out, noise).log_prob(yb).mean()
    assert float(loss.detach()) == pytest.approx(float(nll + 0.3 * kl / 64), rel=1e-5)
    with torch.no_grad():
        layers = adapter.model_.layers
        expected_kl = sum(GaussianPrior(1.0).kl(la.loc, la.scale(), None) for la in layers)
    assert float(kl) == pytest.approx(float(expected_kl), rel=1e-5)


def test_kl_warmup_is_linear_then_flat() -> None:
    adapter = BBBAdapter(kl_weight=2.0, kl_warmup_epochs=4, epochs=10)
    assert [adapter._beta(e) for e in range(6)] == [0.0, 0.5, 1.0, 1.5, 2.0, 2.0]
    assert BBBAdapter(kl_weight=2.0)._beta(0) == 2.0


# -- prediction --------------------------------------------------------------------------
@pytest.mark.parametrize("kind", list(ADAPTERS))
def test_batched_draws_equal_a_slow_per_draw_loop(kind: str) -> None:
    X, y = _regression(40, seed=1)
    adapter = ADAPTERS[kind](hidden=(5, 4), activation="tanh", epochs=2).fit(X, y, seed=0)
    Xt = torch.as_tensor(X[:9], dtype=torch.float32)
    with seeded(3), torch.no_grad():
        weights = adapter.model_.sample_weights(6)
        batched = adapter.model_.evaluate(Xt, weights)
    for s in range(6):
        h = Xt.double()
        for i, w in enumerate(weights):
            h = torch.tanh(h) if i else h
            h = h @ w[s, :-1].double() + w[s, -1].double()
        np.testing.assert_allclose(batched[s].numpy(), h.numpy(), rtol=1e-5, atol=1e-6)
    # sample_predictive draws its functions exactly this way (one chunk, same seed).
    samples = adapter.sample_predictive(X[:9], n_samples=6, seed=3)
    np.testing.assert_allclose(samples.loc, batched.double().numpy(), rtol=1e-6, atol=1e-7)


def test_sampling_chunks_bound_the_weight_draws(monkeypatch: pytest.MonkeyPatch) -> None:
    import uqbench_adapters.torch._variational as variational

    X, y = _regression(40, seed=1)
    adapter = BBBAdapter(hidden=(30,), epochs=1).fit(X, y, seed=0)
    calls = []
    evaluate = adapter.model_.evaluate
    # 200 floats hold one draw of the first layer's 4 x 30 weights but not two.
    monkeypatch.setattr(variational, "_CHUNK_FLOATS", 200)
    monkeypatch.setattr(adapter.model_, "evaluate", lambda X, w: calls.append(len(w[0])) or evaluate(X, w))
    samples = adapter.sample_predictive(X[:2], n_samples=5, seed=0)
    assert samples.loc.shape == (5, 2, 1)
    assert calls == [1] * 5


@pytest.mark.parametrize("kind", list(ADAPTERS))
def test_predictive_marginals_match_the_posterior(kind: str) -> None:
    X, y = _regression(50, seed=2)
    adapter = ADAPTERS[kind](hidden=(), epochs=3).fit(X, y, seed=0)  # one linear layer
    layer = adapter.model_.layers[0]
    Xq = np.array([[0.5, -1.0, 2.0], [0.0, 0.0, 0.0], [3.0, 1.0, -1.0]])
    mean, var = _closed_form(layer, torch.as_tensor(Xq, dtype=torch.float32))
    loc = adapter.sample_predictive(Xq, n_samples=20000, seed=1).loc
    se = np.sqrt(var.numpy() / len(loc))
    assert np.all(np.abs(loc.mean(0) - mean.numpy()) < 4.5 * se)
    np.testing.assert_allclose(loc.var(0), var.numpy(), rtol=0.06)


def test_n_parameters_double_a_deterministic_net() -> None:
    X, y = _regression(40, seed=0, d=2)
    kw = {"hidden": (7, 5), "epochs": 1}
    det = DeterministicAdapter(**kw).fit(X, y, seed=0).n_parameters_
    noise = 2  # one homoscedastic scale per output, a point estimate
    for cls in ADAPTERS.values():
        assert cls(**kw).fit(X, y, seed=0).n_parameters_ == 2 * (det - noise) + noise
    hetero = BBBAdapter(**kw, heteroscedastic=True).fit(X, y, seed=0).n_parameters_
    assert hetero == 2 * (det - noise + 5 * 2 + 2)  # 2 D outputs, no separate noise
    Xc, yc = _blobs(60, seed=0)
    det_c = DeterministicAdapter(**kw).fit(Xc, yc, seed=0).n_parameters_
    assert LRTAdapter(**kw).fit(Xc, yc, seed=0).n_parameters_ == 2 * det_c


# -- contract and training ---------------------------------------------------------------
@pytest.mark.parametrize("kind", list(ADAPTERS))
@pytest.mark.parametrize("task", ["regression", "classification"])
def test_contract(kind: str, task: str) -> None:
    check_adapter(ADAPTERS[kind](epochs=3, hidden=(16,)), task)


@pytest.mark.parametrize("kind", list(ADAPTERS))
def test_contract_heteroscedastic_mixture_warmup(kind: str) -> None:
    adapter = ADAPTERS[kind](
        epochs=3, hidden=(8,), heteroscedastic=True, prior="mixture", kl_warmup_epochs=2
    )
    check_adapter(adapter, "regression")


@pytest.mark.parametrize("kind", list(ADAPTERS))
def test_learns_an_easy_classification_problem(kind: str) -> None:
    X, y = _blobs(300, seed=0)
    Xt, yt = _blobs(300, seed=1)
    adapter = ADAPTERS[kind](hidden=(16,), epochs=30, batch_size=32).fit(X, y, seed=0)
    probs = adapter.sample_predictive(Xt, n_samples=20, seed=0).mean()
    assert (probs.argmax(1) == yt).mean() > 0.95
    # The KL keeps a non-degenerate posterior: weights stay uncertain after training.
    assert float(adapter.model_.layers[0].scale().detach().mean()) > 0.02


def test_heteroscedastic_head_learns_input_dependent_noise() -> None:
    rng = np.random.default_rng(0)
    X = rng.uniform(-2, 2, size=(512, 1))
    y = 0.1 * np.abs(X) * 3 * rng.standard_normal((512, 1)) + 0.05 * rng.standard_normal((512, 1))
    adapter = LRTAdapter(hidden=(16,), epochs=40, heteroscedastic=True).fit(X, y, seed=0)
    scale = adapter.sample_predictive(np.array([[0.0], [1.8]]), n_samples=50, seed=0).scale.mean(0)
    assert scale[1, 0] > 2 * scale[0, 0]


@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("prior", "laplace"),
        ("prior_std", 0.0),
        ("prior_std2", -1.0),
        ("init_std", float("nan")),
        ("prior_pi", 1.0),
        ("kl_weight", -0.5),
        ("kl_warmup_epochs", 1.5),
        ("heteroscedastic", "yes"),
    ],
)
def test_invalid_hyperparameters_raise_value_error(param: str, value: object) -> None:
    X, y = _regression(20, seed=0)
    with pytest.raises(ValueError, match=param):
        BBBAdapter(**{param: value}).fit(X, y, seed=0)


def test_probe_hooks_expose_the_posterior_means() -> None:
    X, y = _regression(32, seed=0)
    adapter = FlipoutAdapter(hidden=(4, 3), epochs=1).fit(X, y, seed=0)
    params = adapter.probe_parameters()
    assert params["first"] is adapter.model_.layers[0].loc and params["first"].shape == (4, 4)
    assert params["last"] is adapter.model_.layers[-1].loc and params["last"].shape == (4, 1)
    assert issubclass(FlipoutAdapter, VariationalAdapter)
