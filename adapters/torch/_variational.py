"""Private base of the variational weight-space adapters (``bbb``, ``flipout``, ``lrt``).

One mean-field Gaussian layer, one MLP of such layers and one adapter; the three methods
differ only in how a layer applies its random kernel to a minibatch during training
(:meth:`VariationalLinear._apply_variational_kernel`), as in TFP's ``dense_variational``.

Posterior and prior
-------------------
Each layer keeps its weights *and* bias in one packed matrix of shape ``[n_in + 1, n_out]``
(row ``n_in`` is the bias), so ``y = [x, 1] @ W``. The posterior is
``q(W) = N(loc, scale^2)`` elementwise with ``scale = softplus(rho)``. Both the kernel and
the bias are sampled and both pay a KL term; TFP's ``DenseReparameterization`` differs
by default (a point-estimate bias with no KL).

The prior is ``N(0, prior_std^2)`` on every weight and bias, whose KL to ``q`` has a
closed form, or the scale mixture of Blundell et al. (2015),
``pi N(0, std1^2) + (1 - pi) N(0, std2^2)``, whose KL has none: it is then estimated by
Monte Carlo from one posterior sample per step, ``log q(w) - log p(w)`` at ``w = loc +
scale * eps``. That estimate is unbiased (its expectation is the KL) but adds gradient
noise.

The training loss is ``mean NLL of the minibatch + beta_t * KL / N_train`` (the negative
ELBO per training example), with ``beta_t = kl_weight * min(1, epoch / kl_warmup_epochs)``
during an optional linear warm-up (epoch counted from 0, so the first epoch fits the data
alone) and ``beta_t = kl_weight`` without one.

Prediction
----------
Every method predicts the same way: each of the S draws samples whole weight matrices
(``[S, n_in + 1, n_out]`` per layer) once and applies them to all N inputs, so a draw is
one function.
Flipout's sign flips and LRT's per-example pre-activation noise are training-time variance
reducers; per input they have the same marginals as a weight sample, so the predictive
marginals are those of the trained posterior.
"""

from __future__ import annotations

import math
from itertools import pairwise
from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from uqbench_adapters._validation import check_variational_params
from uqbench_adapters.torch._base import (
    _CHUNK_FLOATS,
    HomoscedasticNoise,
    TorchAdapter,
    activation,
    gaussian_nll,
    heteroscedastic_split,
)

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
# Blundell et al. (2015) searched -log(std1) in {0, 1, 2} and -log(std2) in {6, 7, 8}.
_MIXTURE_DEFAULTS = (0.5, 1.0, math.exp(-6.0))
_INPLACE_ACTIVATIONS = {"relu": torch.relu_, "tanh": torch.tanh_}


class GaussianPrior:
    """``N(0, std^2)`` on every weight; its KL to the mean-field posterior is analytic."""

    def __init__(self, std: float) -> None:
        self.std = float(std)

    def kl(self, loc: torch.Tensor, scale: torch.Tensor, eps: torch.Tensor | None) -> torch.Tensor:
        """``KL(N(loc, scale^2) || N(0, std^2))`` summed over all entries (``eps`` unused).

        ``sum(log(std / scale) + (scale^2 + loc^2) / (2 std^2) - 1/2)``.
        """
        var_p = self.std * self.std
        sq = scale.square().sum() + loc.square().sum()
        return sq / (2.0 * var_p) - scale.log().sum() + loc.numel() * (math.log(self.std) - 0.5)


class ScaleMixturePrior:
    """``pi N(0, std1^2) + (1 - pi) N(0, std2^2)`` (Blundell et al., 2015); Monte-Carlo KL."""

    def __init__(self, pi: float, std1: float, std2: float) -> None:
        self.pi, self.std1, self.std2 = float(pi), float(std1), float(std2)

    def log_prob(self, w: torch.Tensor) -> torch.Tensor:
        """Elementwise log density, via logsumexp so a tiny ``std2`` cannot underflow."""
        parts = [
            math.log(p) - math.log(s) - _HALF_LOG_2PI - 0.5 * (w / s).square()
            for p, s in ((self.pi, self.std1), (1.0 - self.pi, self.std2))
        ]
        return torch.logaddexp(parts[0], parts[1])

    def kl(self, loc: torch.Tensor, scale: torch.Tensor, eps: torch.Tensor | None) -> torch.Tensor:
        """One-sample estimate ``log q(w) - log p(w)`` at ``w = loc + scale * eps``, summed.

        ``log q(w) = sum(-log scale - eps^2 / 2) - const`` is written in terms of ``eps``;
        as a function of (loc, scale, eps) it is the same function, so its gradient is the
        usual pathwise one.
        """
        if eps is None:
            eps = torch.randn_like(loc)
        w = torch.addcmul(loc, scale, eps)
        log_q = -scale.log().sum() - 0.5 * eps.square().sum() - loc.numel() * _HALF_LOG_2PI
        return log_q - self.log_prob(w).sum()


Prior = GaussianPrior | ScaleMixturePrior


class VariationalLinear(nn.Module):
    """Mean-field Gaussian dense layer with packed weights ``[n_in + 1, n_out]`` (last row: bias).

    Subclasses override only :meth:`_apply_variational_kernel`.

    Parameters
    ----------
    n_in, n_out : layer widths.
    prior : the weight prior (``GaussianPrior`` or ``ScaleMixturePrior``).
    init_std : initial posterior standard deviation of every weight.
    """

    def __init__(self, n_in: int, n_out: int, *, prior: Prior, init_std: float) -> None:
        super().__init__()
        self.n_in, self.n_out = n_in, n_out
        self.prior = prior
        bound = 1.0 / math.sqrt(n_in)  # nn.Linear's default for both weight and bias
        self.loc = nn.Parameter(torch.empty(n_in + 1, n_out).uniform_(-bound, bound))
        self.rho = nn.Parameter(torch.full((n_in + 1, n_out), math.log(math.expm1(init_std))))

    def scale(self) -> torch.Tensor:
        """Posterior standard deviations ``softplus(rho)`` ``[n_in + 1, n_out]``."""
        return F.softplus(self.rho)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training-time pass: ``x`` ``[B, n_in]`` -> (outputs ``[B, n_out]``, KL term, scalar)."""
        scale = F.softplus(self.rho)
        y, eps = self._apply_variational_kernel(F.pad(x, (0, 1), value=1.0), self.loc, scale)
        # A fused analytic-KL backward (one autograd.Function) measured within 2% of this.
        return y, self.prior.kl(self.loc, scale, eps)

    def _apply_variational_kernel(
        self, x1: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Apply the random kernel to ``x1 = [x, 1]`` ``[B, n_in + 1]``.

        Returns the outputs ``[B, n_out]`` and the standard-normal ``eps`` of a weight
        sample ``loc + scale * eps`` drawn on the way (or None if the method draws none;
        a Monte-Carlo KL then draws its own).
        """
        raise NotImplementedError

    def sample_weights(self, n: int) -> torch.Tensor:
        """``n`` independent posterior draws of the packed weights ``[n, n_in + 1, n_out]``."""
        loc, scale = self.loc, self.scale()
        return torch.addcmul(loc, scale, torch.randn((n, *loc.shape), dtype=loc.dtype, device=loc.device))


class VariationalMLP(nn.Module):
    """``n_in -> hidden... -> n_out`` of ``layer_cls`` layers, activation between them.

    ``noise`` is the learned homoscedastic noise of a regression model (None otherwise).
    """

    def __init__(
        self,
        layer_cls: type[VariationalLinear],
        n_in: int,
        hidden: tuple[int, ...],
        n_out: int,
        *,
        act: str,
        prior: Prior,
        init_std: float,
        noise: HomoscedasticNoise | None,
    ) -> None:
        super().__init__()
        widths = (n_in, *hidden, n_out)
        self.layers = nn.ModuleList(
            layer_cls(a, b, prior=prior, init_std=init_std) for a, b in pairwise(widths)
        )
        self.act = activation(act)
        self.act_name = act
        self.noise = noise

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Training pass: ``x`` ``[B, n_in]`` -> (outputs ``[B, n_out]``, summed KL, scalar)."""
        kl = x.new_zeros(())
        for i, layer in enumerate(self.layers):
            if i:
                x = self.act(x)
            x, layer_kl = layer(x)
            kl = kl + layer_kl
        return x, kl

    def sample_weights(self, n: int) -> list[torch.Tensor]:
        """``n`` whole-network weight draws: per layer ``[n, n_in + 1, n_out]``."""
        return [layer.sample_weights(n) for layer in self.layers]

    def evaluate(self, X: torch.Tensor, weights: list[torch.Tensor]) -> torch.Tensor:
        """The ``n`` functions given by ``weights`` at ``X`` ``[N, F]`` -> ``[n, N, n_out]``.

        One ``baddbmm`` per layer over all draws (``einsum`` measured 1.3x slower, a
        broadcast ``matmul`` 1.1x, for 8-50-1 at S = 100, N = 1000); the first layer
        reads ``X`` through a stride-0 expansion rather than a copy.
        """
        act_ = _INPLACE_ACTIVATIONS.get(self.act_name)
        h = X.expand(weights[0].shape[0], *X.shape)
        for i, w in enumerate(weights):
            if i:
                h = act_(h) if act_ is not None else self.act(h)
            h = torch.baddbmm(w[:, -1:, :], h, w[:, :-1, :])
        return h


class VariationalAdapter(TorchAdapter):
    """Base of the mean-field variational adapters (not registered itself).

    Subclasses set ``_layer_cls``. See the module docstring for the model and the loss.

    Parameters
    ----------
    hidden, activation, epochs, batch_size, lr, weight_decay, device : see ``TorchAdapter``.
    prior : ``"gaussian"`` (analytic KL) or ``"mixture"`` (Blundell et al.'s scale
        mixture; Monte-Carlo KL).
    prior_std : standard deviation of the Gaussian prior.
    prior_pi, prior_std1, prior_std2 : the mixture prior's weight and component scales
        (defaults 0.5, 1 and e^-6, inside Blundell et al.'s grid).
    kl_weight : beta, the KL's weight in the loss.
    kl_warmup_epochs : epochs over which beta rises linearly from 0 (0: no warm-up).
    init_std : initial posterior standard deviation of every weight and bias. The default
        0.01 is a tenth or less of the initial mean weights' spread (``1/sqrt(fan_in)``),
        so training starts near a deterministic net with little weight noise in the
        gradient, and the KL then widens the posterior where the data allow. TFP's
        ``default_mean_field_normal_fn`` and bayesian-torch start wider, at
        ``softplus(-3) = 0.049``.
    heteroscedastic : regression only: predict a per-input noise scale from a ``2 D``-wide
        head instead of learning one homoscedastic scale (the noise scale is a point
        estimate either way, with no prior).
    """

    _layer_cls: ClassVar[type[VariationalLinear]]

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
        self.prior = prior
        self.prior_std = prior_std
        self.prior_pi = prior_pi
        self.prior_std1 = prior_std1
        self.prior_std2 = prior_std2
        self.kl_weight = kl_weight
        self.kl_warmup_epochs = kl_warmup_epochs
        self.init_std = init_std
        self.heteroscedastic = heteroscedastic

    # -- validation ----------------------------------------------------------------------
    def _validate_params(self) -> None:
        super()._validate_params()
        check_variational_params(self)

    def _hetero(self) -> bool:
        return self.heteroscedastic and self.task_ == "regression"

    def _make_prior(self) -> Prior:
        if self.prior == "mixture":
            return ScaleMixturePrior(self.prior_pi, self.prior_std1, self.prior_std2)
        return GaussianPrior(self.prior_std)

    def _beta(self, epoch: int) -> float:
        """KL weight in (0-based) ``epoch``: linear warm-up from 0, then ``kl_weight``."""
        beta = float(self.kl_weight)
        if self.kl_warmup_epochs > 0:
            beta *= min(1.0, epoch / int(self.kl_warmup_epochs))
        return beta

    # -- hooks ---------------------------------------------------------------------------
    def _build(self, n_in: int, n_out: int) -> nn.Module:
        self._steps_taken = 0
        width = 2 * n_out if self._hetero() else n_out
        regression = self.task_ == "regression"
        noise = HomoscedasticNoise(n_out) if regression and not self._hetero() else None
        return VariationalMLP(
            self._layer_cls,
            n_in,
            tuple(self.hidden),
            width,
            act=self.activation,
            prior=self._make_prior(),
            init_std=float(self.init_std),
            noise=noise,
        )

    def _widest(self) -> int:
        return max(super()._widest(), 2 * self.n_outputs_ if self._hetero() else 1)

    def _loss(self, xb: torch.Tensor, yb: torch.Tensor, n_train: int) -> torch.Tensor:
        # The base loop takes n_train // batch steps per epoch; count them for the warm-up.
        epoch = self._steps_taken // max(1, n_train // len(xb))
        self._steps_taken += 1
        return self._negative_elbo(xb, yb, n_train, self._beta(epoch))

    def _negative_elbo(
        self, xb: torch.Tensor, yb: torch.Tensor, n_train: int, beta: float
    ) -> torch.Tensor:
        out, kl = self.model_(xb)
        if self.task_ == "classification":
            nll = F.cross_entropy(out, yb)
        else:
            loc, scale = self._regression_head(out)
            nll = gaussian_nll(yb, loc, scale)
        return nll + (beta / n_train) * kl

    def _sample_chunk(self, X: torch.Tensor, n_draws: int) -> torch.Tensor:
        # The base bounds activations [n, N, width]; with few inputs the weight draws
        # [n, n_in + 1, n_out] can be the larger part, so bound those here too.
        per_draw = max(
            len(X) * self._widest(), *(layer.loc.numel() for layer in self.model_.layers)
        )
        step = max(1, _CHUNK_FLOATS // per_draw)
        outs = [
            self.model_.evaluate(X, self.model_.sample_weights(min(step, n_draws - start)))
            for start in range(0, n_draws, step)
        ]
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=0)

    def _regression_head(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._hetero():
            return heteroscedastic_split(out)
        return out, self.model_.noise().expand_as(out)

    # -- gradient-variance probe ---------------------------------------------------------
    def training_loss(self, xb: torch.Tensor, yb: torch.Tensor, n_train: int) -> torch.Tensor:
        """The loss ``fit`` minimises, on minibatch ``xb`` ``[B, F]``, ``yb``, with fresh noise.

        Uses the KL weight of the final training epoch (``kl_weight`` once any warm-up
        is over). Draws from the global torch RNG: seed it (the probe does).
        """
        self._check_fitted()
        return self._negative_elbo(xb, yb, int(n_train), self._beta(int(self.epochs) - 1))

    def probe_parameters(self) -> dict[str, torch.Tensor]:
        """Posterior means of the first and last layer, packed ``[n_in + 1, n_out]`` (last row: bias)."""
        self._check_fitted()
        return {"first": self.model_.layers[0].loc, "last": self.model_.layers[-1].loc}

