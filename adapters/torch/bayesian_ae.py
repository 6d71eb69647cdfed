"""``bayesian-ae``: a VAE whose encoder has a distribution over its weights (Flipout layers)."""

from __future__ import annotations

import math
from numbers import Real

import torch
from torch import nn

from uqbench_adapters.torch._variational import GaussianPrior, VariationalMLP
from uqbench_adapters.torch.flipout import FlipoutLinear
from uqbench_adapters.torch.vae import VAEAdapter


class BayesianAEAdapter(VAEAdapter):
    """Variational autoencoder with a Bayesian encoder: mean-field Gaussian weights.

    The encoder is an MLP of ``FlipoutLinear`` layers (``_variational``: packed weights
    and biases, posterior ``N(loc, softplus(rho)^2)``, prior ``N(0, prior_std^2)``) whose
    output is the mean and ``softplus`` scale of q(z|x) = N(mu_w(x), diag sigma_w(x)^2);
    the decoder is deterministic, exactly as in ``vae``. Training minimises, per example,
    ``-log p(x|z) + KL(q_w(z|x) || N(0, I)) + kl_weight * KL(q(w) || p(w)) / N_train``:
    the VAE's negative ELBO with one weight draw (Flipout: one shared perturbation per
    minibatch, decorrelated across examples by random signs) plus the weights' KL spread
    over the training examples, as the variational adapters do.

    Each predictive draw s samples the encoder's weights w_s (one whole encoder, shared by
    all N inputs) and then z_s ~ q_{w_s}(z|x), and decodes z_s. ``latent_mean`` and
    ``latent_scale`` are draw s's own q parameters, so their spread across draws (the
    container's ``epistemic_variance``) is the encoder's weight uncertainty.
    :meth:`generate` interpolates between the latent means of the posterior-mean encoder.

    Parameters
    ----------
    latent_dim, hidden, activation, epochs, batch_size, lr, weight_decay, decoder,
    decoder_scale : see ``VAEAdapter``.
    prior_std : standard deviation of the Gaussian prior on every encoder weight and bias.
    init_std : initial posterior standard deviation of every encoder weight. The default
        0.05 (about TFP's ``softplus(-3)``) is wider than the variational adapters' 0.01:
        the weights that the data barely constrain (e.g. those of always-blank pixels)
        widen towards the prior only as fast as Adam moves ``rho``, and from 0.01 a short
        schedule leaves them far too narrow (on digits, 60 epochs from 0.01 gave the
        rotated test images 2.8 times the in-distribution epistemic variance, from 0.05
        6 times, at a 0.2-nat lower test ELBO; 0.1 and wider cost 1.3 nats or more).
    kl_weight : weight of the encoder-weight KL in the loss (1 is the ELBO).
    """

    def __init__(
        self,
        *,
        latent_dim: int = 2,
        hidden: tuple[int, ...] = (128,),
        activation: str = "relu",
        epochs: int = 60,
        batch_size: int = 128,
        lr: float = 1e-2,
        weight_decay: float = 0.0,
        decoder: str = "bernoulli",
        decoder_scale: float | None = None,
        prior_std: float = 1.0,
        init_std: float = 0.05,
        kl_weight: float = 1.0,
        device: str = "cpu",
    ) -> None:
        super().__init__(
            latent_dim=latent_dim,
            hidden=hidden,
            activation=activation,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            device=device,
            decoder=decoder,
            decoder_scale=decoder_scale,
        )
        self.prior_std = prior_std
        self.init_std = init_std
        self.kl_weight = kl_weight

    def _validate_params(self) -> None:
        super()._validate_params()
        for name, low_open in (("prior_std", True), ("init_std", True), ("kl_weight", False)):
            value = getattr(self, name)
            ok = isinstance(value, Real) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or (value <= 0 if low_open else value < 0):
                bound = "> 0" if low_open else ">= 0"
                raise ValueError(f"{name} must be a finite number {bound}, got {value!r}")

    # -- encoder hooks -------------------------------------------------------------------
    def _build_encoder(self, n_in: int) -> nn.Module:
        return VariationalMLP(
            FlipoutLinear,
            n_in,
            tuple(self.hidden),
            2 * int(self.latent_dim),
            act=self.activation,
            prior=GaussianPrior(float(self.prior_std)),
            init_std=float(self.init_std),
            noise=None,
        )

    def _encode_train(self, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out, weight_kl = self.model_.encoder(xb)
        loc, scale = self._split(out)
        return loc, scale, weight_kl

    def _weight_kl_weight(self) -> float:
        return float(self.kl_weight)

    def _encode_draws(self, X: torch.Tensor, n_draws: int) -> tuple[torch.Tensor, torch.Tensor]:
        encoder = self.model_.encoder
        return self._split(encoder.evaluate(X, encoder.sample_weights(n_draws)))

    def _encode_mean(self, X: torch.Tensor) -> torch.Tensor:
        encoder = self.model_.encoder
        weights = [layer.loc[None] for layer in encoder.layers]
        return self._split(encoder.evaluate(X, weights)[0])[0]

    def _floats_per_draw(self, n_points: int) -> int:
        # With few inputs the weight draws [n_in + 1, n_out] per layer can dominate.
        layers = self.model_.encoder.layers
        return max(super()._floats_per_draw(n_points), *(layer.loc.numel() for layer in layers))
