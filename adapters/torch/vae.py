"""``vae``: variational autoencoder (Kingma & Welling, 2014) with a diagonal Gaussian
encoder, a standard-normal prior and a Bernoulli (or Gaussian) decoder."""

from __future__ import annotations

import math
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np
import torch
from scipy import stats
from torch import nn
from torch.nn import functional as F

from uqbench.interface import ReconstructionSamples
from uqbench_adapters.torch._base import (
    _CHUNK_FLOATS,
    _MIN_SCALE,
    TorchAdapter,
    count_parameters,
    mlp,
    seeded,
    to_numpy,
)

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
# A learned Gaussian decoder scale is floored here: digit images have pixels that are 0 in
# every training image, and an unfloored scale there would shrink towards 0 and dominate.
_MIN_DECODER_SCALE = 1e-3
_DECODERS = ("bernoulli", "gaussian")


def gaussian_kl_standard(loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """``KL(N(loc, scale^2) || N(0, I))`` summed over the last axis (nats).

    ``0.5 * sum(loc^2 + scale^2 - 1 - 2 log scale)``.
    """
    return 0.5 * (loc.square() + scale.square() - 1.0 - 2.0 * scale.log()).sum(dim=-1)


class _Autoencoder(nn.Module):
    """An encoder (``x -> [..., 2K]``: latent mean and raw scale), an MLP decoder
    (``z -> [..., D]``: Bernoulli logits or Gaussian means) and, for a Gaussian decoder
    with a learned scale, its raw scale ``rho`` (one scalar shared by all pixels)."""

    def __init__(self, encoder: nn.Module, decoder: nn.Sequential, rho: nn.Parameter | None) -> None:
        super().__init__()
        self.encoder = encoder
        self.decoder = decoder
        self.rho = rho


class VAEAdapter(TorchAdapter):
    """Variational autoencoder: q(z|x) = N(mu(x), diag sigma(x)^2), p(z) = N(0, I).

    The encoder is an MLP ``D -> hidden -> 2K`` (mean and ``softplus`` scale of q), the
    decoder an MLP ``K -> reversed(hidden) -> D``. With ``decoder="bernoulli"`` (inputs in
    [0, 1]) the decoder outputs pixel probabilities and log p(x|z) is the negative binary
    cross-entropy summed over pixels (grey levels are used as soft targets, as is common;
    it is then not a normalised density of grey images). With ``decoder="gaussian"``,
    p(x|z) = N(decoder(z), s^2 I) with s = ``decoder_scale`` or, if None, one learned
    scalar (floored at 1e-3).

    Training minimises the negative ELBO per example, in nats:
    ``-log p(x|z) + KL(q(z|x) || p(z))`` with one reparameterised draw ``z = mu + sigma *
    eps`` per example and step and the KL in closed form, averaged over the minibatch
    (Adam; a fresh data permutation per epoch, the ragged last batch dropped).

    Each predictive draw s samples z_s ~ q(z|x) and decodes it; all S draws are computed
    as one batched pass (memory-bounded chunks over S), with no Python loop over draws.

    Parameters
    ----------
    latent_dim : K, the latent size (2 allows the manifold plot of :meth:`generate`).
    hidden : encoder hidden widths (the decoder uses them reversed).
    activation, epochs, batch_size, lr, weight_decay, device : see ``TorchAdapter``.
    decoder : ``"bernoulli"`` or ``"gaussian"``.
    decoder_scale : the Gaussian decoder's fixed standard deviation, or None to learn it.
    """

    tasks: ClassVar[frozenset[str]] = frozenset({"reconstruction"})
    stochastic: ClassVar[bool] = True

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
        device: str = "cpu",
    ) -> None:
        super().__init__(
            hidden=hidden,
            activation=activation,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            device=device,
        )
        self.latent_dim = latent_dim
        self.decoder = decoder
        self.decoder_scale = decoder_scale

    # -- validation ----------------------------------------------------------------------
    def _validate_params(self) -> None:
        super()._validate_params()
        k = self.latent_dim
        if isinstance(k, bool) or not isinstance(k, Integral) or k < 1:
            raise ValueError(f"latent_dim must be a positive int, got {k!r}")
        if self.decoder not in _DECODERS:
            raise ValueError(f"decoder must be one of {list(_DECODERS)}, got {self.decoder!r}")
        s = self.decoder_scale
        if s is not None:
            if self.decoder != "gaussian":
                raise ValueError(
                    f"decoder_scale is only used by the gaussian decoder, got {s!r} "
                    f"with decoder={self.decoder!r}"
                )
            if isinstance(s, bool) or not isinstance(s, Real) or not 0.0 < float(s) < math.inf:
                raise ValueError(f"decoder_scale must be a finite number > 0 or None, got {s!r}")

    def _validate_inputs(self, X: Any, n_features: int | None = None) -> np.ndarray:
        X = self._validate_X(X, n_features)
        if self.decoder == "bernoulli" and X.size and (X.min() < 0.0 or X.max() > 1.0):
            raise ValueError(
                "X must lie in [0, 1] for the Bernoulli decoder (e.g. input_scaling='unit'); "
                f"got values in [{X.min():.4g}, {X.max():.4g}]"
            )
        return X

    # -- hooks (the Bayesian autoencoder overrides the encoder ones) ----------------------
    def _build_encoder(self, n_in: int) -> nn.Module:
        return mlp(n_in, self.hidden, 2 * int(self.latent_dim), self.activation)

    def _build(self, n_in: int, n_out: int) -> _Autoencoder:
        decoder = mlp(int(self.latent_dim), tuple(reversed(self.hidden)), n_out, self.activation)
        rho = None
        if self.decoder == "gaussian" and self.decoder_scale is None:
            rho = nn.Parameter(torch.tensor(math.log(math.expm1(0.1))))
        return _Autoencoder(self._build_encoder(n_in), decoder, rho)

    @staticmethod
    def _split(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Encoder output ``[..., 2K]`` -> (mean, scale = softplus + 1e-6), each ``[..., K]``."""
        loc, raw = out.chunk(2, dim=-1)
        return loc, F.softplus(raw) + _MIN_SCALE

    def _encode_train(self, xb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Training pass: (q mean ``[B, K]``, q scale ``[B, K]``, weight KL, a scalar)."""
        loc, scale = self._split(self.model_.encoder(xb))
        return loc, scale, xb.new_zeros(())

    def _encode_draws(self, X: torch.Tensor, n_draws: int) -> tuple[torch.Tensor, torch.Tensor]:
        """q's parameters in each of ``n_draws`` draws, each ``[n, N, K]`` (real copies)."""
        loc, scale = self._split(self.model_.encoder(X))
        return loc.expand(n_draws, *loc.shape).clone(), scale.expand(n_draws, *scale.shape).clone()

    def _encode_mean(self, X: torch.Tensor) -> torch.Tensor:
        """The latent mean used for interpolation ``[N, K]``."""
        return self._split(self.model_.encoder(X))[0]

    def _weight_kl_weight(self) -> float:
        return 0.0

    # -- the model -----------------------------------------------------------------------
    def _decoder_scale(self) -> torch.Tensor | None:
        if self.decoder != "gaussian":
            return None
        if self.model_.rho is None:
            return torch.tensor(float(self.decoder_scale))
        return F.softplus(self.model_.rho) + _MIN_DECODER_SCALE

    def _log_likelihood(self, x: torch.Tensor, out: torch.Tensor) -> torch.Tensor:
        """log p(x|z) summed over pixels ``[...]`` from decoder outputs ``out`` ``[..., D]``."""
        if self.decoder == "bernoulli":
            return -F.binary_cross_entropy_with_logits(out, x.expand_as(out), reduction="none").sum(-1)
        scale = self._decoder_scale()
        z = (x - out) / scale
        return (-0.5 * z.square() - torch.log(scale) - _HALF_LOG_2PI).sum(-1)

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        """Decoder mean ``[..., D]`` (pixel probabilities, or the Gaussian mean) at ``z``."""
        out = self.model_.decoder(z)
        return torch.sigmoid(out) if self.decoder == "bernoulli" else out

    def _loss(self, xb: torch.Tensor, yb: torch.Tensor | None, n_train: int) -> torch.Tensor:
        """Negative ELBO per example (nats), plus the weight KL per training example if any."""
        loc, scale, weight_kl = self._encode_train(xb)
        z = torch.addcmul(loc, scale, torch.randn_like(loc))
        nll = -self._log_likelihood(xb, self.model_.decoder(z))
        loss = (nll + gaussian_kl_standard(loc, scale)).mean()
        return loss + (self._weight_kl_weight() / n_train) * weight_kl

    def _widest(self) -> int:
        return max((*tuple(self.hidden), self.n_features_in_, 2 * int(self.latent_dim)))

    def _floats_per_draw(self, n_points: int) -> int:
        """Floats one predictive draw holds at once, to size the chunks over S."""
        return n_points * self._widest()

    # -- fit -----------------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: None = None, *, seed: int) -> VAEAdapter:
        """Train on images ``X`` ``[N, D]`` (in [0, 1] for the Bernoulli decoder); ``y`` must be None."""
        self._validate_params()
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
        Xt = torch.as_tensor(X, dtype=torch.float32, device=self.device_)
        n = len(Xt)
        batch = min(int(self.batch_size), n)
        with seeded(seed, self.device_):
            self.model_ = self._build(self.n_features_in_, self.n_features_in_)
            optimizer = torch.optim.Adam(
                self.model_.parameters(), lr=self.lr, weight_decay=self.weight_decay
            )
            self.model_.train()
            for _ in range(int(self.epochs)):
                order = torch.randperm(n)
                for start in range(0, n - batch + 1, batch):
                    loss = self._loss(Xt[order[start : start + batch]], None, n)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
            self.model_.eval()
        self.n_parameters_ = count_parameters(self.model_)
        return self

    # -- prediction ----------------------------------------------------------------------
    def sample_predictive(self, X: np.ndarray, *, n_samples: int, seed: int) -> ReconstructionSamples:
        """``n_samples`` reconstructions of ``X`` ``[N, D]``, each from one z ~ q(z|x).

        Returns
        -------
        ReconstructionSamples with ``recon`` ``[S, N, D]`` (decoder means: pixel
        probabilities for the Bernoulli decoder), ``latent`` ``[S, N, K]`` (the z draws),
        ``latent_mean`` and ``latent_scale`` ``[S, N, K]`` (q's parameters in each draw)
        and, for the Gaussian decoder, ``recon_scale`` ``[S, N, D]``.
        """
        self._check_fitted()
        if isinstance(n_samples, bool) or not isinstance(n_samples, Integral) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
        X = self._validate_inputs(X, self.n_features_in_)
        Xt = torch.as_tensor(X, dtype=torch.float32, device=self.device_)
        chunk = max(1, _CHUNK_FLOATS // max(1, self._floats_per_draw(len(Xt))))
        parts: list[tuple[torch.Tensor, ...]] = []
        with seeded(seed, self.device_), torch.no_grad():
            for start in range(0, n_samples, chunk):
                loc, scale = self._encode_draws(Xt, min(chunk, n_samples - start))
                z = torch.addcmul(loc, scale, torch.randn_like(loc))
                parts.append((self._decode(z), z, loc, scale))
            decoder_scale = self._decoder_scale()
        recon, z, loc, scale = (to_numpy(torch.cat(p, dim=0)) for p in zip(*parts, strict=True))
        recon_scale = None if decoder_scale is None else np.full(recon.shape, float(decoder_scale))
        return ReconstructionSamples(recon, z, loc, scale, recon_scale)

    # -- generation ----------------------------------------------------------------------
    def generate(
        self,
        *,
        seed: int,
        n_prior: int = 64,
        grid_size: int = 15,
        n_interpolations: int = 8,
        X_interp: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """Decoded images for the report: prior draws, the latent manifold, interpolations.

        Parameters
        ----------
        seed : seeds the prior draws (everything else is deterministic).
        n_prior : number of z ~ N(0, I) to decode.
        grid_size : g, points per axis of the manifold grid (K = 2 only).
        n_interpolations : T, images per interpolation, endpoints included.
        X_interp : ``[2P, D]`` inputs; rows ``2p`` and ``2p + 1`` form pair p. Their latent
            means are interpolated linearly and decoded.

        Returns
        -------
        dict of float64 arrays (decoder means):

        - ``prior_latent`` ``[n_prior, K]`` and ``prior_samples`` ``[n_prior, D]``;
        - for K = 2 only: ``manifold_latent`` ``[g, g, 2]`` with entry ``[i, j] = (q_i,
          q_j)``, ``q_i`` the prior's ``(i + 1/2) / g`` quantile, and ``manifold`` ``[g, g, D]``;
        - with ``X_interp``: ``interpolation_inputs`` ``[P, 2, D]``, ``interpolation_latent``
          ``[P, T, K]`` and ``interpolations`` ``[P, T, D]``.
        """
        self._check_fitted()
        for name, value, low in (
            ("n_prior", n_prior, 1), ("grid_size", grid_size, 2), ("n_interpolations", n_interpolations, 2)
        ):
            if isinstance(value, bool) or not isinstance(value, Integral) or value < low:
                raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
        k = int(self.latent_dim)
        out: dict[str, torch.Tensor] = {}
        with seeded(seed, self.device_), torch.no_grad():
            z = torch.randn(int(n_prior), k)
            out["prior_latent"], out["prior_samples"] = z, self._decode(z)
            if k == 2:
                q = stats.norm.ppf((np.arange(grid_size) + 0.5) / grid_size)
                grid = torch.as_tensor(np.stack(np.meshgrid(q, q, indexing="ij"), axis=-1), dtype=torch.float32)
                out["manifold_latent"], out["manifold"] = grid, self._decode(grid)
            if X_interp is not None:
                X = self._validate_inputs(X_interp, self.n_features_in_)
                if len(X) == 0 or len(X) % 2:
                    raise ValueError(f"X_interp must have an even, non-zero number of rows, got {len(X)}")
                mu = self._encode_mean(torch.as_tensor(X, dtype=torch.float32))
                start, end = mu[0::2, None, :], mu[1::2, None, :]
                t = torch.linspace(0.0, 1.0, int(n_interpolations))[None, :, None]
                path = start + t * (end - start)  # [P, T, K]
                out["interpolation_inputs"] = torch.as_tensor(X.reshape(-1, 2, X.shape[1]))
                out["interpolation_latent"], out["interpolations"] = path, self._decode(path)
        return {name: to_numpy(value) for name, value in out.items()}
