"""``tfp-bbb``, ``tfp-flipout``, ``tfp-lrt``: mean-field variational MLPs built from TFP layers.

The three adapters are ``tfp.layers.DenseReparameterization``, ``DenseFlipout`` and
``DenseLocalReparameterization`` MLPs in ``tf_keras``, configured to be the same model as
their PyTorch twins ``bbb``, ``flipout`` and ``lrt`` (``uqbench_adapters.torch``), so that the
parity suite compares libraries, not modelling choices.

What is aligned, and how
------------------------
- **Architecture**: ``n_in -> hidden... -> out``, the activation after every hidden layer;
  regression outputs ``D`` means plus one learned homoscedastic noise scale per output,
  ``softplus(rho) + 1e-6`` starting at 0.5 (or, with ``heteroscedastic=True``, a ``2 D``
  head); classification outputs ``C`` logits.
- **Posterior**: mean-field Gaussian on every kernel *and bias* entry. TFP's default bias is
  a point estimate with no KL; here ``bias_posterior_fn`` is
  ``tfp.layers.util.default_mean_field_normal_fn`` like the kernel's, with a bias prior and a
  bias KL, as the torch layers (which pack the bias as an extra weight row) have.
  ``scale = softplus(rho)`` (TFP adds float32 eps, ~1.2e-7, to it: negligible).
- **Initialisation**: TFP starts means at ``N(0, 0.1)`` and ``rho`` at ``N(-3, 0.1)``
  (scale ~0.049); the torch twins start means at ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for
  kernel and bias (``nn.Linear``'s default) and every scale at ``init_std`` (0.01). The TFP
  layers here get exactly those initialisers (explicitly seeded from the fit seed).
- **Prior**: ``N(0, prior_std^2)`` on every kernel and bias entry (TFP's default prior is
  ``N(0, 1)`` on the kernel only), analytic KL, summed over entries by ``tfd.Independent``
  as the torch layers sum theirs; or Blundell et al.'s scale mixture with a one-sample
  Monte-Carlo KL ``log q(w) - log p(w)`` (at the layer's own weight sample for
  ``DenseReparameterization``, an independent posterior sample for Flipout and LRT, whose
  layers expose none; the torch Flipout reuses its perturbation's noise, which changes only
  the gradient noise, not the expected loss).
- **Loss**: ``mean NLL of the minibatch + beta * KL / N_train``. TFP leaves the KL scaling to
  the user: every divergence fn multiplies the layer's KL by one non-trainable variable
  ``beta / N_train`` (updated per epoch during an optional linear warm-up, as the torch
  ``_beta``). Keras' ``fit`` adds ``model.losses`` (the KL terms) to the compiled loss,
  which is therefore the NLL alone, so the KL is counted once.
- **Optimiser and schedule**: Adam (same lr, betas, epsilon 1e-8), same epochs and batch
  size, reshuffled every epoch, ragged last batch dropped (see ``_common``).
- **Left as TFP has them**: ``DenseFlipout`` and ``DenseLocalReparameterization`` draw one
  bias sample per minibatch, shared by its examples, where the torch twins give each
  example its own bias noise (sign-flipped, or folded into the LRT pre-activation
  variance). The expected loss is the same; the gradient is noisier. In the parity runs
  this is the one systematic difference found: ``tfp-lrt`` ends toy-gap training (150
  epochs, noise scale still falling) with a ~3% larger noise scale than ``lrt``; a torch
  LRT given TFP's shared bias sample moves about 60% of the way to it.
- **One fix**: TFP's LRT takes ``sqrt(x^2 @ s^2)``, whose gradient is NaN wherever an input
  row is all zero (common after a ReLU); ``tfp-lrt`` uses a subclass adding 1e-12 under
  the root (see ``_safe_lrt_class``).
- **Prediction**: whole-function draws, as the torch twins. Calling the Keras model would
  re-sample per example for Flipout and LRT (and cost one eager call per draw), so the
  adapter reads each trained layer's ``kernel_posterior`` and ``bias_posterior`` (their
  ``loc`` and ``scale``) and runs its own batched forward in one ``tf.function`` per chunk
  of draws: ``W_s = loc + scale * eps_s`` ``[S, n_in, n_out]``, ``h = act(h @ W_s + b_s)``
  with stateless ``eps`` seeded from the sampling seed. Flipout's sign flips and LRT's
  per-example pre-activation noise are training-time gradient estimators for the same
  posterior, so all three predict from the trained posterior in the same way.
"""

from __future__ import annotations

import itertools
import math
from typing import Any, ClassVar

from uqbench_adapters._validation import check_variational_params
from uqbench_adapters.tfp._common import (
    TFPAdapter,
    activation_fn,
    noise_head_layer,
    softplus_inverse,
    tf_modules,
    torch_linear_init,
)

# Blundell et al. (2015) searched -log(std1) in {0, 1, 2} and -log(std2) in {6, 7, 8};
# the torch twins' defaults.
_MIXTURE_DEFAULTS = (0.5, 1.0, math.exp(-6.0))
_LAYERS = {
    "reparameterization": "DenseReparameterization",
    "flipout": "DenseFlipout",
    "local_reparameterization": "DenseLocalReparameterization",
}


class TFPVariationalAdapter(TFPAdapter):
    """Base of the TFP mean-field variational adapters (not registered itself).

    Subclasses set ``_layer``. See the module docstring for the model and the loss.

    Parameters
    ----------
    hidden, activation, epochs, batch_size, lr, weight_decay, heteroscedastic : see
        ``TFPAdapter`` in ``_common``.
    prior : ``"gaussian"`` (analytic KL) or ``"mixture"`` (scale mixture; Monte-Carlo KL).
    prior_std : standard deviation of the Gaussian prior.
    prior_pi, prior_std1, prior_std2 : the mixture prior's weight and component scales.
    kl_weight : beta, the KL's weight in the loss.
    kl_warmup_epochs : epochs over which beta rises linearly from 0 (0: no warm-up).
    init_std : initial posterior standard deviation of every weight and bias.
    """

    _layer: ClassVar[str]

    def __init__(
        self,
        *,
        hidden: tuple[int, ...] = (50,),
        activation: str = "relu",
        epochs: int = 100,
        batch_size: int = 64,
        lr: float = 1e-2,
        weight_decay: float = 0.0,
        prior: str = "gaussian",
        prior_std: float = 1.0,
        prior_pi: float = _MIXTURE_DEFAULTS[0],
        prior_std1: float = _MIXTURE_DEFAULTS[1],
        prior_std2: float = _MIXTURE_DEFAULTS[2],
        kl_weight: float = 1.0,
        kl_warmup_epochs: int = 0,
        init_std: float = 0.01,
        heteroscedastic: bool = False,
    ) -> None:
        super().__init__(
            hidden=hidden,
            activation=activation,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            heteroscedastic=heteroscedastic,
        )
        self.prior = prior
        self.prior_std = prior_std
        self.prior_pi = prior_pi
        self.prior_std1 = prior_std1
        self.prior_std2 = prior_std2
        self.kl_weight = kl_weight
        self.kl_warmup_epochs = kl_warmup_epochs
        self.init_std = init_std

    # -- validation ----------------------------------------------------------------------
    def _validate_params(self) -> None:
        super()._validate_params()
        check_variational_params(self)

    def _beta(self, epoch: int) -> float:
        """KL weight in (0-based) ``epoch``: linear warm-up from 0, then ``kl_weight``."""
        beta = float(self.kl_weight)
        if self.kl_warmup_epochs > 0:
            beta *= min(1.0, epoch / int(self.kl_warmup_epochs))
        return beta

    # -- model ---------------------------------------------------------------------------
    def _prior_fn(self) -> Any:
        """A TFP ``*_prior_fn``: the elementwise prior over a parameter of any shape."""
        tfm = tf_modules()
        tf, tfd = tfm.tf, tfm.tfd
        kind, std = self.prior, float(self.prior_std)
        mix = (float(self.prior_pi), float(self.prior_std1), float(self.prior_std2))

        def prior_fn(dtype: Any, shape: Any, name: str, trainable: bool, add_variable_fn: Any) -> Any:
            del name, trainable, add_variable_fn  # the prior has no parameters
            ndims = len(shape)
            if kind == "gaussian":
                return tfd.Independent(tfd.Normal(tf.zeros(shape, dtype), tf.constant(std, dtype)), ndims)
            pi, s1, s2 = mix
            components = tfd.Normal(tf.zeros([*shape, 2], dtype), tf.constant([s1, s2], dtype))
            weights = tfd.Categorical(probs=tf.broadcast_to(tf.constant([pi, 1.0 - pi], dtype), [*shape, 2]))
            return tfd.Independent(tfd.MixtureSameFamily(weights, components), ndims)

        return prior_fn

    def _divergence_fn(self) -> Any:
        """``beta / N_train`` times the KL (analytic) or its one-sample estimate (mixture)."""
        tfd = tf_modules().tfd
        kl_scale = self._kl_scale
        if self.prior == "gaussian":
            return lambda q, p, _: tfd.kl_divergence(q, p) * kl_scale

        def mc_divergence(q: Any, p: Any, w: Any) -> Any:
            if w is None:  # Flipout and LRT never draw a full weight sample
                w = q.sample()
            return (q.log_prob(w) - p.log_prob(w)) * kl_scale

        return mc_divergence

    def _build(self, n_in: int, width: int, seeds: list[int]) -> Any:
        tfm = tf_modules()
        tf, keras, tfpl = tfm.tf, tfm.keras, tfm.tfp.layers
        self._kl_scale = tf.Variable(self._beta(0) / self.n_train_, trainable=False, dtype=tf.float32)
        layer_cls = _safe_lrt_class() if self._layer == "local_reparameterization" else getattr(tfpl, _LAYERS[self._layer])
        prior_fn, divergence_fn = self._prior_fn(), self._divergence_fn()
        rho0 = keras.initializers.Constant(softplus_inverse(float(self.init_std)))
        widths = (n_in, *self.hidden, width)
        layers: list[Any] = [keras.Input(shape=(n_in,))]
        for k, (a, b) in enumerate(itertools.pairwise(widths)):
            last = k == len(widths) - 2

            def posterior(seed: int, a: int = a) -> Any:
                return tfpl.util.default_mean_field_normal_fn(
                    loc_initializer=torch_linear_init(a, seed), untransformed_scale_initializer=rho0
                )

            layers.append(
                layer_cls(
                    b,
                    activation=None if last else activation_fn(self.activation),
                    kernel_posterior_fn=posterior(seeds[2 * k]),
                    kernel_prior_fn=prior_fn,
                    kernel_divergence_fn=divergence_fn,
                    bias_posterior_fn=posterior(seeds[2 * k + 1]),
                    bias_prior_fn=prior_fn,
                    bias_divergence_fn=divergence_fn,
                    name=f"variational_{k}",
                )
            )
        if self.task_ == "regression" and not self._hetero():
            layers.append(noise_head_layer(width))
        return keras.Sequential(layers)

    def _callbacks(self) -> list[Any]:
        if self.kl_warmup_epochs <= 0:
            return []
        keras = tf_modules().keras
        adapter = self

        class KLWarmup(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch: int, logs: Any = None) -> None:
                adapter._kl_scale.assign(adapter._beta(epoch) / adapter.n_train_)

        return [KLWarmup()]

    def _floats_per_draw(self, n_points: int) -> int:
        # With few inputs the weight draws [n, n_in, n_out] can be the larger tensor.
        widths = (self.n_features_in_, *self.hidden, 2 * self.n_outputs_)
        return max(super()._floats_per_draw(n_points), *(a * b for a, b in itertools.pairwise(widths)))

    def _variational_layers(self) -> list[Any]:
        return [layer for layer in self.model_.layers if layer.name.startswith("variational_")]

    # -- whole-function sampling ---------------------------------------------------------
    def _make_sampler(self) -> Any:
        """The compiled ``(X [N, F], n, seed [2]) -> [n, N, width]`` of whole-function draws."""
        tf = tf_modules().tf
        layers = self._variational_layers()
        act = activation_fn(self.activation)
        noise = self.model_.get_layer("noise") if "noise" in [m.name for m in self.model_.layers] else None
        posteriors = [(layer.kernel_posterior.distribution, layer.bias_posterior.distribution) for layer in layers]
        n_features = self.n_features_in_

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, n_features], tf.float32),
                tf.TensorSpec([], tf.int32),
                tf.TensorSpec([2], tf.int64),
            ],
            reduce_retracing=True,
            autograph=False,
        )
        def sample(X: Any, n: Any, seed: Any) -> Any:
            seeds = tf.random.experimental.stateless_split(seed, num=2 * len(posteriors))
            h = X[None]  # [1, N, F], broadcast against the [n, F, H] kernels
            for k, (kq, bq) in enumerate(posteriors):
                w = _draw(tf, kq, n, seeds[2 * k])  # [n, in, out]
                b = _draw(tf, bq, n, seeds[2 * k + 1])  # [n, out]
                if k:
                    h = act(h)
                h = tf.matmul(h, w) + b[:, None, :]
            if noise is not None:
                h = tf.concat([h, tf.broadcast_to(noise.rho, tf.shape(h))], axis=-1)
            return h

        return sample

    def _prepare_loss(self) -> None:
        # The last epoch's KL weight, as in the torch twins' training_loss.
        self._kl_scale.assign(self._beta(int(self.epochs) - 1) / self.n_train_)


_SAFE_LRT: Any = None
# Floor on the LRT pre-activation variance (std 1e-6, far below any weight's contribution).
_LRT_MIN_VARIANCE = 1e-12


def _safe_lrt_class() -> Any:
    """``DenseLocalReparameterization`` whose pre-activation scale is ``sqrt(x^2 @ s^2 + 1e-12)``.

    TFP's layer takes ``sqrt(x^2 @ s^2)``, whose derivative is infinite where an input row is
    all zeros, as a ReLU layer's output often is (every unit inactive for that example): the
    gradient becomes ``inf * 0 = NaN`` and training diverges (seen with these pins within
    one epoch of a 5-unit ReLU net). The floor keeps that gradient 0; everything else is
    TFP's layer (its posterior, prior, KL and per-minibatch bias sample).
    """
    global _SAFE_LRT
    if _SAFE_LRT is not None:
        return _SAFE_LRT
    tfm = tf_modules()
    tf, tfd = tfm.tf, tfm.tfd

    class SafeDenseLocalReparameterization(tfm.tfp.layers.DenseLocalReparameterization):
        def _apply_variational_kernel(self, inputs: Any) -> Any:
            q = self.kernel_posterior.distribution
            variance = tf.matmul(tf.square(inputs), tf.square(q.scale))
            self.kernel_posterior_affine = tfd.Normal(
                loc=tf.matmul(inputs, q.loc), scale=tf.sqrt(variance + _LRT_MIN_VARIANCE)
            )
            self.kernel_posterior_affine_tensor = self.kernel_posterior_tensor_fn(self.kernel_posterior_affine)
            self.kernel_posterior_tensor = None
            return self.kernel_posterior_affine_tensor

    _SAFE_LRT = SafeDenseLocalReparameterization
    return _SAFE_LRT


def _draw(tf: Any, dist: Any, n: Any, seed: Any) -> Any:
    """``n`` reparameterised draws ``loc + scale * eps`` of a ``Normal`` ``[n, *shape]``."""
    loc = tf.convert_to_tensor(dist.loc)
    scale = tf.convert_to_tensor(dist.scale)
    eps = tf.random.stateless_normal(tf.concat([[n], tf.shape(loc)], 0), seed=seed, dtype=loc.dtype)
    return loc + scale * eps


class TFPBBBAdapter(TFPVariationalAdapter):
    """TFP Bayes by Backprop (``DenseReparameterization``), aligned with the torch ``bbb``."""

    _layer = "reparameterization"


class TFPFlipoutAdapter(TFPVariationalAdapter):
    """TFP Flipout (``DenseFlipout``), aligned with the torch ``flipout``."""

    _layer = "flipout"


class TFPLRTAdapter(TFPVariationalAdapter):
    """TFP local reparameterization (``DenseLocalReparameterization``), aligned with the torch ``lrt``."""

    _layer = "local_reparameterization"
