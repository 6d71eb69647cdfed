"""The TFP adapters: the contract, the loss fit minimises (KL counted once), whole-function
sampling from the trained posterior, MC dropout's shared masks, and lazy TF import."""

from __future__ import annotations

import itertools
import math
import subprocess
import sys

import numpy as np
import pytest

pytest.importorskip("tensorflow_probability")

from scipy import special

from uqbench.testing import check_adapter, contract_data
from uqbench_adapters.tfp._common import quiet_tfp, tf_modules
from uqbench_adapters.tfp.mc_dropout import TFPMCDropoutAdapter
from uqbench_adapters.tfp.vae import TFPVAEAdapter
from uqbench_adapters.tfp.variational import (
    TFPBBBAdapter,
    TFPFlipoutAdapter,
    TFPLRTAdapter,
    _safe_lrt_class,
)

pytestmark = pytest.mark.tfp

VARIATIONAL = (TFPBBBAdapter, TFPFlipoutAdapter, TFPLRTAdapter)
SMALL = {"hidden": (6,), "epochs": 2}
CASES = [
    *((c.__name__, lambda c=c: c(**SMALL), t) for c in VARIATIONAL for t in ("regression", "classification")),
    ("mc-dropout", lambda: TFPMCDropoutAdapter(**SMALL), "regression"),
    ("mc-dropout", lambda: TFPMCDropoutAdapter(**SMALL), "classification"),
    ("vae", lambda: TFPVAEAdapter(hidden=(8,), epochs=2), "reconstruction"),
]


@pytest.mark.parametrize(("make", "task"), [c[1:] for c in CASES], ids=[f"{c[0]}-{c[2]}" for c in CASES])
def test_contract(make, task) -> None:
    check_adapter(make(), task)


def _numpy(t) -> np.ndarray:
    """A TF variable or (deferred) tensor as float64 numpy."""
    return tf_modules().tf.convert_to_tensor(t).numpy().astype(np.float64)


def _normal_kl(loc: np.ndarray, scale: np.ndarray, prior_std: float) -> float:
    """Closed-form KL(N(loc, scale^2) || N(0, prior_std^2)) summed over entries."""
    return float(np.sum(np.log(prior_std / scale) + (scale**2 + loc**2) / (2 * prior_std**2) - 0.5))


@pytest.fixture(scope="module", params=VARIATIONAL, ids=lambda c: c.__name__)
def single_layer(request):
    """One variational layer (y = x @ W + b), regression, fitted for one epoch."""
    X, y, _ = contract_data("regression")
    return request.param(hidden=(), epochs=1, prior_std=0.7, kl_weight=0.5).fit(X, y, seed=0), X, y


def test_training_loss_is_nll_plus_kl_over_n_train_once(single_layer) -> None:
    model, X, y = single_layer
    xb, yb = X[:16], y[:16]
    loss, out = model._loss_terms(xb, yb, seed=3)
    loc, raw = out[:, :1], out[:, 1:]
    scale = np.logaddexp(0.0, raw) + 1e-6
    nll = np.mean(np.log(scale) + 0.5 * ((yb - loc) / scale) ** 2) + 0.5 * math.log(2 * math.pi)
    kl = 0.0
    for layer in model._variational_layers():
        for q in (layer.kernel_posterior, layer.bias_posterior):
            kl += _normal_kl(_numpy(q.distribution.loc), _numpy(q.distribution.scale), 0.7)
    assert loss == pytest.approx(nll + 0.5 * kl / len(X), rel=1e-5)
    assert model._loss_terms(xb, yb, seed=3)[0] == loss  # same seed, same noise


def test_draws_are_whole_functions_from_the_trained_posterior(single_layer) -> None:
    # Draws at 0 and at the unit vectors are b and W_i + b, so their means, variances and
    # covariances are the posterior's; one b per draw for every input (whole functions).
    model = single_layer[0]
    layer = model._variational_layers()[0]
    kq, bq = layer.kernel_posterior.distribution, layer.bias_posterior.distribution
    rng = np.random.default_rng(0)
    # Distinct, wide posteriors (after one epoch every scale is still ~init_std).
    kq.loc.assign(rng.normal(size=(3, 1)))
    kq.scale.pretransformed_input.assign(rng.normal(-1.0, 0.5, size=(3, 1)))
    bq.loc.assign([0.3])
    bq.scale.pretransformed_input.assign([-0.5])
    w_loc, w_scale = _numpy(kq.loc)[:, 0], _numpy(kq.scale)[:, 0]
    b_loc, b_scale = float(_numpy(bq.loc)[0]), float(_numpy(bq.scale)[0])

    S = 20_000
    grid = np.vstack([np.zeros(3), np.eye(3)])
    f = model.sample_predictive(grid, n_samples=S, seed=5).loc[:, :, 0]  # [S, 4]
    mean = np.r_[b_loc, w_loc + b_loc]
    var = np.r_[b_scale**2, w_scale**2 + b_scale**2]
    assert np.all(np.abs(f.mean(0) - mean) < 5 * np.sqrt(var / S))
    assert np.allclose(f.var(0), var, rtol=0.06)
    cov = np.cov(f.T)[0, 1:]  # Cov(f(0), f(e_i)) = Var(b)
    assert np.allclose(cov, b_scale**2, atol=5 * b_scale * np.sqrt(var[1:] / S))


def test_lrt_gradient_is_finite_for_an_all_zero_input_row() -> None:
    # A ReLU layer often outputs an all-zero row; TFP's sqrt(x^2 @ s^2) has an infinite
    # derivative there (NaN gradients). The adapter's LRT layer keeps them finite.
    tfm = tf_modules()
    tf, keras = tfm.tf, tfm.keras

    def posterior(seed: int):
        return tfm.tfp.layers.util.default_mean_field_normal_fn(
            loc_initializer=keras.initializers.RandomNormal(seed=seed),
            untransformed_scale_initializer=keras.initializers.Constant(-3.0),
        )

    layer = _safe_lrt_class()(3, kernel_posterior_fn=posterior(0), bias_posterior_fn=posterior(1))
    x = tf.constant([[0.0, 0.0, 0.0, 0.0], [1.0, -2.0, 0.5, 0.0]])
    with tf.GradientTape() as tape, quiet_tfp():
        loss = tf.reduce_sum(tf.square(layer(x)))
    grads = tape.gradient(loss, layer.trainable_variables)
    assert len(grads) == 4 and all(bool(np.all(np.isfinite(g.numpy()))) for g in grads)


def test_mc_dropout_draw_uses_one_mask_for_all_inputs() -> None:
    # hidden (3,), p = 0.5: every draw must equal the network under one of the 8 masks at
    # *all* inputs at once (a mask per example would match none), masks ~ Bernoulli(1/2).
    # Heteroscedastic, so the scale head goes through the same masks.
    X, y, X_test = contract_data("regression")
    model = TFPMCDropoutAdapter(hidden=(3,), dropout=0.5, epochs=3, heteroscedastic=True).fit(X, y, seed=0)
    d0, d1 = model.model_.get_layer("dense_0"), model.model_.get_layer("dense_1")
    W0, b0, W1, b1 = (_numpy(v) for v in (d0.kernel, d0.bias, d1.kernel, d1.bias))
    h = np.maximum(X_test @ W0 + b0, 0.0)  # [N, 3]
    masks = np.array(list(itertools.product([0.0, 2.0], repeat=3)))  # kept units scaled by 1/(1-p)
    outs = np.einsum("nh,mh,ho->mno", h, masks, W1) + b1  # [8, N, 2]: loc, raw scale
    s = model.sample_predictive(X_test, n_samples=400, seed=1)
    err = np.abs(s.loc[:, None] - outs[None, :, :, :1]).max(axis=(2, 3))  # [S, 8]
    assert np.all(err.min(axis=1) < 1e-4)
    best = err.argmin(axis=1)
    assert np.allclose(s.scale, np.logaddexp(0.0, outs[best, :, 1:]) + 1e-6, atol=1e-5)
    assert abs((masks[best] > 0).mean() - 0.5) < 0.05


@pytest.fixture(scope="module")
def vae():
    X, _, X_test = contract_data("reconstruction")
    X = np.where(X > 0, 0.75, 0.0)  # grey pixels: log_prob must not round the targets
    return TFPVAEAdapter(hidden=(8,), epochs=1).fit(X, seed=0), X, X_test


def test_vae_loss_is_negative_elbo_per_example_with_kl_once(vae) -> None:
    model, X, _ = vae
    loss, logits = model._loss_terms(X, None, seed=0)
    bce = np.sum(np.logaddexp(0.0, logits) - X * logits, axis=1)  # soft-target cross-entropy
    enc = _numpy(model.model_.get_layer("encoder")(X.astype(np.float32)))
    mu, sd = enc[:, :2], np.logaddexp(0.0, enc[:, 2:])
    kl = 0.5 * np.sum(mu**2 + sd**2 - 1.0 - 2.0 * np.log(sd), axis=1)  # exact KL to N(0, I)
    assert loss == pytest.approx(np.mean(bce + kl), rel=1e-5)


def test_vae_samples_decode_latent_draws(vae) -> None:
    model, _, X_test = vae
    s = model.sample_predictive(X_test, n_samples=6, seed=2)
    assert np.allclose(s.latent_mean, s.latent_mean[:1]) and np.allclose(s.latent_scale, s.latent_scale[:1])
    eps = (s.latent - s.latent_mean) / s.latent_scale
    assert abs(eps.mean()) < 0.5 and 0.5 < eps.std() < 1.5
    logits = _numpy(model.model_.get_layer("decoder")(s.latent.reshape(-1, 2).astype(np.float32)))
    assert np.allclose(s.recon, special.expit(logits).reshape(s.recon.shape), atol=1e-5)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        model.sample_predictive(X_test * 3.0, n_samples=2, seed=0)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: TFPBBBAdapter(prior="laplace"), "prior"),
        (lambda: TFPFlipoutAdapter(init_std=0.0), "init_std"),
        (lambda: TFPLRTAdapter(hidden=(4, 0)), "hidden"),
        (lambda: TFPMCDropoutAdapter(dropout=1.0), "dropout"),
        (lambda: TFPMCDropoutAdapter(activation="sigmoid"), "activation"),
        (lambda: TFPVAEAdapter(decoder="gaussian"), "decoder"),
    ],
)
def test_bad_hyperparameters_raise_value_error(make, match) -> None:
    X, y, _ = contract_data("regression")
    adapter = make()
    with pytest.raises(ValueError, match=match):
        adapter.fit(X, None if isinstance(adapter, TFPVAEAdapter) else y, seed=0)


def test_import_does_not_import_tensorflow() -> None:
    code = (
        "import sys\n"
        "import uqbench_adapters.tfp.variational, uqbench_adapters.tfp.mc_dropout, uqbench_adapters.tfp.vae\n"
        "from uqbench.registry import _missing_requirements\n"
        "from uqbench_adapters.tfp.variational import TFPBBBAdapter\n"
        "assert _missing_requirements(TFPBBBAdapter) == []\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'tf_keras', 'tensorflow_probability')))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
