"""``bbb``: Bayes by Backprop (Blundell et al., 2015), one weight sample per minibatch."""

from __future__ import annotations

import torch

from uqbench_adapters.torch._variational import VariationalAdapter, VariationalLinear


class BBBLinear(VariationalLinear):
    """Draws one weight matrix ``W = loc + scale * eps`` and applies it to every row."""

    def _apply_variational_kernel(
        self, x1: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        eps = torch.randn_like(loc)
        return x1 @ torch.addcmul(loc, scale, eps), eps


class BBBAdapter(VariationalAdapter):
    """Bayes by Backprop: mean-field Gaussian MLP, one weight sample shared per minibatch.

    Every example of a minibatch sees the same sampled weights, so the weight noise in
    the gradient does not average out over the batch (Flipout and LRT reduce it).
    Parameters: see ``VariationalAdapter`` in ``_variational``.
    """

    _layer_cls = BBBLinear
