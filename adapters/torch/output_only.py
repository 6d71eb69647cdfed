"""``output-only``: an MLP that predicts its own noise, the aleatoric-only baseline."""

from __future__ import annotations

from typing import ClassVar

import torch
from torch import nn
from torch.nn import functional as F

from uqbench_adapters.torch._base import TorchAdapter, gaussian_nll, heteroscedastic_split, mlp


class OutputOnlyAdapter(TorchAdapter):
    """Heteroscedastic MLP predicting (mean, std) per input; aleatoric only, draws identical.

    The "variational output" network: regression outputs ``2 D`` numbers per input, split
    into a mean and a scale ``softplus(raw) + 1e-6`` and trained by Gaussian negative
    log-likelihood, so the noise may vary with the input. Classification is a plain softmax
    network. The weights are point estimates, so every draw is the same function and the
    epistemic variance is zero by construction.

    Parameters
    ----------
    hidden, activation, epochs, batch_size, lr, weight_decay, device : see ``TorchAdapter``.
    """

    stochastic: ClassVar[bool] = False

    def _build(self, n_in: int, n_out: int) -> nn.Module:
        width = 2 * n_out if self.task_ == "regression" else n_out
        return mlp(n_in, self.hidden, width, self.activation)

    def _widest(self) -> int:
        return max(super()._widest(), 2 * self.n_outputs_)

    def _loss(self, xb: torch.Tensor, yb: torch.Tensor, n_train: int) -> torch.Tensor:
        out = self.model_(xb)
        if self.task_ == "classification":
            return F.cross_entropy(out, yb)
        loc, scale = heteroscedastic_split(out)
        return gaussian_nll(yb, loc, scale)

    def _sample_chunk(self, X: torch.Tensor, n_draws: int) -> torch.Tensor:
        # A real copy per draw, not a broadcast view: each draw is its own array.
        return self.model_(X).unsqueeze(0).repeat(n_draws, 1, 1)

    def _regression_head(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return heteroscedastic_split(out)
