"""``deterministic``: a plain MLP, the zero-epistemic baseline."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from uqbench_adapters.torch._base import (
    HomoscedasticNoise,
    MLPWithNoise,
    TorchAdapter,
    gaussian_nll,
    mlp,
)


class DeterministicAdapter(TorchAdapter):
    """Deterministic MLP (homoscedastic noise for regression); every draw is identical.

    Regression learns one noise scale per output by maximum likelihood, so the predictive
    is calibrated in aggregate but has zero epistemic variance by construction.
    """

    stochastic: ClassVar[bool] = False

    def _build(self, n_in: int, n_out: int) -> nn.Module:
        noise = HomoscedasticNoise(n_out) if self.task_ == "regression" else None
        return MLPWithNoise(mlp(n_in, self.hidden, n_out, self.activation), noise)

    def _loss(self, xb: torch.Tensor, yb: torch.Tensor, n_train: int) -> torch.Tensor:
        out = self.model_(xb)
        if self.task_ == "classification":
            return F.cross_entropy(out, yb)
        return gaussian_nll(yb, out, self.model_.noise())

    def _sample_chunk(self, X: torch.Tensor, n_draws: int) -> torch.Tensor:
        # A real copy per draw, not a broadcast view: each draw is its own array.
        return self.model_(X).unsqueeze(0).repeat(n_draws, 1, 1)

    def _regression_head(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return out, self.model_.noise().expand_as(out)

    # -- gradient-variance probe (uqbench.harness.probe) --------------------------------
    def training_loss(self, xb: torch.Tensor, yb: torch.Tensor, n_train: int) -> torch.Tensor:
        """The loss ``fit`` minimises, on one minibatch (noise-free)."""
        return self._loss(xb, yb, n_train)

    def probe_parameters(self) -> dict[str, torch.Tensor]:
        """Weights ``[out, in]`` of the first and last linear layer."""
        linears = [m for m in self.model_.body if isinstance(m, nn.Linear)]
        return {"first": linears[0].weight, "last": linears[-1].weight}
