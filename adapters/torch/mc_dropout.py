"""``mc-dropout``: Monte Carlo dropout (Gal & Ghahramani, 2016) with one mask per function."""

from __future__ import annotations

from numbers import Real

import torch
from torch import nn
from torch.nn import functional as F

from uqbench_adapters.torch._base import (
    HomoscedasticNoise,
    MLPWithNoise,
    TorchAdapter,
    activation,
    gaussian_nll,
    heteroscedastic_split,
    mlp,
)


class MCDropoutAdapter(TorchAdapter):
    """MC dropout MLP: dropout after each hidden layer, kept on at prediction time.

    Training is ordinary dropout training (a fresh mask per example and step). At
    prediction, draw ``s`` is one function: a single dropout mask per hidden layer,
    ``[S, 1, H]``, shared by all N inputs. This differs from calling ``model.train()`` and
    predicting, which samples a mask per example and so mixes functions across inputs;
    with shared masks, function-space plots and correlations between inputs are meaningful.

    The S draws are computed together: the first layer's pre-activation does not depend
    on any mask, so it is computed once ``[N, H]``; every later layer is one batched
    matmul over ``[S, N, H]``. Masks use inverted-dropout scaling ``1 / (1 - p)``, as in
    training.

    Regression learns a homoscedastic noise scale per output, or with
    ``heteroscedastic=True`` a per-input scale from a ``2 D``-wide head.

    Parameters
    ----------
    hidden, activation, epochs, batch_size, lr, weight_decay, device : see ``TorchAdapter``.
    dropout : drop probability p of each hidden unit, in (0, 1).
    heteroscedastic : regression only: predict the noise scale per input.
    """

    def __init__(
        self,
        *,
        hidden: tuple[int, ...] = (50,),
        activation: str = "relu",
        epochs: int = 100,
        batch_size: int = 64,
        lr: float = 1e-2,
        weight_decay: float = 0.0,
        dropout: float = 0.1,
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
        self.dropout = dropout
        self.heteroscedastic = heteroscedastic

    def _validate_params(self) -> None:
        super()._validate_params()
        p = self.dropout
        if isinstance(p, bool) or not isinstance(p, Real) or not 0.0 < float(p) < 1.0:
            raise ValueError(f"dropout must be a probability in (0, 1), got {p!r}")
        if not isinstance(self.heteroscedastic, bool):
            raise ValueError(f"heteroscedastic must be a bool, got {self.heteroscedastic!r}")

    def _hetero(self) -> bool:
        return self.heteroscedastic and self.task_ == "regression"

    # -- hooks ---------------------------------------------------------------------------
    def _build(self, n_in: int, n_out: int) -> nn.Module:
        width = 2 * n_out if self._hetero() else n_out
        noise = HomoscedasticNoise(n_out) if self.task_ == "regression" and not self._hetero() else None
        body = mlp(n_in, self.hidden, width, self.activation, dropout=float(self.dropout))
        return MLPWithNoise(body, noise)

    def _widest(self) -> int:
        return max(super()._widest(), 2 * self.n_outputs_)

    def _loss(self, xb: torch.Tensor, yb: torch.Tensor, n_train: int) -> torch.Tensor:
        out = self.model_(xb)  # train mode: nn.Dropout draws a mask per example
        if self.task_ == "classification":
            return F.cross_entropy(out, yb)
        loc, scale = self._regression_head(out)
        return gaussian_nll(yb, loc, scale)

    def _sample_chunk(self, X: torch.Tensor, n_draws: int) -> torch.Tensor:
        return self._forward_masked(X, self._draw_masks(n_draws))

    def _regression_head(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self._hetero():
            return heteroscedastic_split(out)
        return out, self.model_.noise().expand_as(out)

    # -- batched sampling ----------------------------------------------------------------
    def _draw_masks(
        self, n_draws: int, generator: torch.Generator | None = None
    ) -> list[torch.Tensor]:
        """One scaled keep-mask per hidden layer, each ``[n_draws, 1, H]`` (0 or 1/(1-p))."""
        keep = 1.0 - float(self.dropout)
        # Draw-major: draw s consumes the same random numbers however the draws are chunked,
        # so a seed fixes the S functions whatever the inputs.
        device = None if generator is None else generator.device  # else the default (the model's)
        u = torch.rand((n_draws, 1, sum(self.hidden)), generator=generator, device=device)
        masks = (u < keep).to(u.dtype) / keep
        return list(masks.split(self.hidden, dim=-1))

    def _forward_masked(self, X: torch.Tensor, masks: list[torch.Tensor]) -> torch.Tensor:
        """Network outputs ``[S, N, out]`` for inputs ``X`` ``[N, F]`` under ``masks[k]`` ``[S, 1, H_k]``."""
        linears = [m for m in self.model_.body if isinstance(m, nn.Linear)]
        act = activation(self.activation)
        h = act(linears[0](X))  # [N, H_1]: mask-free, shared by every draw
        last = len(linears) - 1
        for k, (layer, mask) in enumerate(zip(linears[1:], masks, strict=True), start=1):
            # [S, N, H] @ [H, H'] runs as one matmul over all S draws.
            h = torch.matmul(h * mask, layer.weight.T) + layer.bias
            if k < last:
                h = act(h)
        return h
