"""``tfp-vae``: the TFP-layers variational autoencoder, aligned with the torch ``vae``.

The lecture's model: a ``tf_keras`` encoder MLP ``D -> hidden -> 2K`` feeding
``tfp.layers.IndependentNormal(K)`` with a ``KLDivergenceRegularizer`` towards
``p(z) = N(0, I)``, a decoder MLP ``K -> reversed(hidden) -> D`` feeding
``tfp.layers.IndependentBernoulli(D)``, and the loss ``-rv_x.log_prob(x)``.

Aligned with the torch twin:

- the KL is exact (``use_exact_kl=True``; the regulariser's default is a one-sample
  Monte-Carlo estimate) and counted once. The regulariser returns the batch's summed KL,
  Keras divides activity regularisers by the batch size and ``fit`` adds them to the
  compiled loss, so the loss is the mean over the minibatch of
  ``-log p(x|z) + KL(q(z|x) || p(z))``, the torch ``_loss`` (negative ELBO per example).
  But Keras applies an activity regulariser to each output of a layer and a
  ``DistributionLambda`` has two (the distribution and its tensor), so as written in the
  lecture the KL enters the loss **twice** (tensorflow/probability#599 and #1215, still so
  with these pins). The adapter counts the applications when it builds the layer and
  gives the regulariser the weight ``1 / count``;
- one reparameterised ``z`` per example and step (the layer's default concretisation);
- the Bernoulli log-likelihood of grey pixels in [0, 1] is the soft-target binary
  cross-entropy in both (``IndependentBernoulli`` keeps the float dtype of its logits, so
  ``log_prob`` does not round the targets);
- dense layers start at ``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` like ``torch.nn.Linear``;
  same widths, latent size, activation, optimiser, epochs and batch size (see ``_common``).
- the latent scale is ``softplus(raw)`` (the torch twin adds 1e-6: negligible).

Sampling: the encoder runs once ``[N, 2K]``; ``S`` latent draws ``z = mu + sigma * eps``
``[S, N, K]`` (stateless, seeded) go through the decoder in one ``tf.function`` call per
chunk of draws; ``recon`` is the decoder's pixel probabilities.
"""

from __future__ import annotations

import itertools
from typing import Any, ClassVar

import numpy as np

from uqbench.interface import ReconstructionSamples
from uqbench_adapters._validation import is_positive_int
from uqbench_adapters.tfp._common import (
    CHUNK_FLOATS,
    TFPAdapter,
    activation_fn,
    derived_seeds,
    quiet_tfp,
    seeded,
    tf_modules,
    torch_linear_init,
    validate_seed,
)


class TFPVAEAdapter(TFPAdapter):
    """TFP-layers VAE (IndependentNormal latent, IndependentBernoulli decoder); aligned with the torch ``vae``.

    Parameters
    ----------
    latent_dim : K, the latent size.
    hidden : encoder hidden widths (the decoder uses them reversed).
    activation, epochs, batch_size, lr, weight_decay : see ``TFPAdapter`` in ``_common``.
    decoder : ``"bernoulli"`` only (the parameter exists so that a suite can pass the torch
        twin's hyperparameters unchanged).
    """

    tasks: ClassVar[frozenset[str]] = frozenset({"reconstruction"})

    def __init__(
        self,
        *,
        latent_dim: int = 2,
        hidden: tuple[int, ...] = (128,),
        activation: str = "relu",
        epochs: int = 60,
        batch_size: int = 64,
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        decoder: str = "bernoulli",
    ) -> None:
        super().__init__(
            hidden=hidden,
            activation=activation,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
        )
        self.latent_dim = latent_dim
        self.decoder = decoder

    def _validate_params(self) -> None:
        super()._validate_params()
        if not is_positive_int(self.latent_dim):
            raise ValueError(f"latent_dim must be a positive int, got {self.latent_dim!r}")
        if self.decoder != "bernoulli":
            raise ValueError(f"decoder must be 'bernoulli' (the only decoder of tfp-vae), got {self.decoder!r}")

    def _validate_inputs(self, X: Any, n_features: int | None = None) -> np.ndarray:
        X = self._validate_X(X, n_features)
        if X.size and (X.min() < 0.0 or X.max() > 1.0):
            raise ValueError(
                "X must lie in [0, 1] for the Bernoulli decoder (e.g. input_scaling='unit'); "
                f"got values in [{X.min():.4g}, {X.max():.4g}]"
            )
        return X

    # -- model ---------------------------------------------------------------------------
    def _mlp(self, widths: tuple[int, ...], seeds: list[int], name: str) -> Any:
        keras = tf_modules().keras
        layers: list[Any] = [keras.Input(shape=(widths[0],))]
        for k, (a, b) in enumerate(itertools.pairwise(widths)):
            last = k == len(widths) - 2
            layers.append(
                keras.layers.Dense(
                    b,
                    activation=None if last else activation_fn(self.activation),
                    kernel_initializer=torch_linear_init(a, seeds[2 * k]),
                    bias_initializer=torch_linear_init(a, seeds[2 * k + 1]),
                )
            )
        return keras.Sequential(layers, name=name)

    def _build(self, n_in: int, width: int, seeds: list[int]) -> Any:
        tfm = tf_modules()
        tf, tfd, tfpl, keras = tfm.tf, tfm.tfd, tfm.tfp.layers, tfm.keras
        k = int(self.latent_dim)
        depth = len(self.hidden) + 1
        encoder = self._mlp((n_in, *self.hidden, tfpl.IndependentNormal.params_size(k)), seeds[: 2 * depth], "encoder")
        decoder = self._mlp((k, *reversed(self.hidden), n_in), seeds[2 * depth :], "decoder")
        prior = tfd.Independent(tfd.Normal(loc=tf.zeros(k), scale=1.0), reinterpreted_batch_ndims=1)
        kl_weight = tf.Variable(1.0, trainable=False, dtype=tf.float32)
        latent = tfpl.IndependentNormal(
            k,
            activity_regularizer=tfpl.KLDivergenceRegularizer(prior, use_exact_kl=True, weight=kl_weight),
            name="latent",
        )
        # Keras applies an activity regulariser to every output of a layer, and a
        # DistributionLambda outputs (distribution, tensor): the KL lands in the loss twice
        # (tensorflow/probability#599, #1215; seen with these pins). Count the applications
        # once and weight each by their inverse, so the KL is counted once.
        latent(tf.zeros([1, 2 * k]))
        kl_weight.assign(1.0 / max(1, len(latent.losses)))
        self.kl_applications_ = len(latent.losses)
        return keras.Sequential(
            [
                keras.Input(shape=(n_in,)),
                encoder,
                latent,
                decoder,
                tfpl.IndependentBernoulli(n_in, convert_to_tensor_fn=tfd.Bernoulli.logits, name="pixels"),
            ]
        )

    @staticmethod
    def _negative_log_likelihood(x: Any, rv_x: Any) -> Any:
        return -rv_x.log_prob(x)

    # -- fit -----------------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: None = None, *, seed: int) -> TFPVAEAdapter:
        """Train on images ``X`` ``[N, D]`` with pixels in [0, 1]; ``y`` must be None."""
        self._validate_params()
        validate_seed(seed)
        if y is not None:
            raise ValueError(
                f"{type(self).__name__} is unsupervised (task 'reconstruction'): y must be None, "
                f"got {type(y).__name__}"
            )
        X = self._validate_inputs(X)
        if len(X) < 1:
            raise ValueError("X has no rows")
        self.task_ = "reconstruction"
        self.n_features_in_ = self.n_outputs_ = X.shape[1]
        self.n_train_ = len(X)
        depth = len(self.hidden) + 1
        seeds = derived_seeds(seed, 4 * depth + 1)
        with seeded(seed), quiet_tfp():
            self.model_ = self._build(self.n_features_in_, self.n_features_in_, seeds[1:])
            if self.weight_decay > 0:
                self._add_weight_decay(self.model_)
            self._train(self.model_, self._negative_log_likelihood, self._dataset(X, X, seeds[0]))
        self._finish_fit()
        return self

    # -- prediction ----------------------------------------------------------------------
    def _widest(self) -> int:
        return max((*self.hidden, self.n_features_in_, 2 * int(self.latent_dim)))

    def _make_sampler(self) -> Any:
        """Compiled ``(X [N, D], n, seed [2]) -> (recon [n, N, D], z, mu, sigma [n, N, K])``."""
        tf = tf_modules().tf
        encoder, decoder = self.model_.get_layer("encoder"), self.model_.get_layer("decoder")
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
            loc, raw = tf.split(encoder(X, training=False), 2, axis=-1)  # [N, K] each
            scale = tf.nn.softplus(raw)  # as IndependentNormal
            shape = tf.concat([[n], tf.shape(loc)], 0)
            z = loc + scale * tf.random.stateless_normal(shape, seed=seed)  # [n, N, K]
            recon = tf.sigmoid(decoder(z, training=False))  # [n, N, D]
            return recon, z, tf.broadcast_to(loc, shape), tf.broadcast_to(scale, shape)

        return sample

    def sample_predictive(self, X: np.ndarray, *, n_samples: int, seed: int) -> ReconstructionSamples:
        """``n_samples`` reconstructions of ``X`` ``[N, D]``, each from one z ~ q(z|x).

        Returns
        -------
        ReconstructionSamples with ``recon`` ``[S, N, D]`` (pixel probabilities),
        ``latent`` ``[S, N, K]`` (the z draws), ``latent_mean`` and ``latent_scale``
        ``[S, N, K]`` (q's parameters, the same in every draw), float64.
        """
        self._check_fitted()
        n_samples = self._validate_n_samples(n_samples)
        validate_seed(seed)
        X = self._validate_inputs(X, self.n_features_in_)
        tf = tf_modules().tf
        Xt = tf.constant(X, dtype=tf.float32)
        chunk = max(1, CHUNK_FLOATS // max(1, self._floats_per_draw(len(X))))
        parts = []
        for i, start in enumerate(range(0, n_samples, chunk)):
            n = tf.constant(min(chunk, n_samples - start), dtype=tf.int32)
            out = self._sampler(Xt, n, tf.constant([int(seed), i], dtype=tf.int64))
            parts.append([t.numpy().astype(np.float64) for t in out])
        recon, z, loc, scale = (np.concatenate(p, axis=0) for p in zip(*parts, strict=True))
        return ReconstructionSamples(recon, z, latent_mean=loc, latent_scale=scale)

