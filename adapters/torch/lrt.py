"""``lrt``: the local reparameterization trick (Kingma, Salimans & Welling, 2015)."""

from __future__ import annotations

import torch

from uqbench_adapters.torch._variational import VariationalAdapter, VariationalLinear


class LRTLinear(VariationalLinear):
    """Samples pre-activations ``b ~ N(x1 @ loc, x1^2 @ scale^2)``: one eps per example and unit.

    Exact for a factorised Gaussian posterior: with ``W ~ q`` drawn independently per
    example, each pre-activation is Gaussian with these moments. No weight sample exists,
    so a Monte-Carlo KL draws its own. (A hand-written backward for this kernel measured
    no faster than autograd's: the extra matmuls dominate.)
    """

    def _apply_variational_kernel(
        self, x1: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        mean = x1 @ loc
        std = ((x1 * x1) @ (scale * scale)).sqrt()  # >= the bias's scale > 0: no sqrt(0)
        return torch.addcmul(mean, std, torch.randn_like(mean)), None


class LRTAdapter(VariationalAdapter):
    """Local reparameterization: Gaussian pre-activations sampled per example.

    Same posterior and loss as ``bbb``; the gradient's weight noise is independent across
    the examples of a minibatch, so its variance falls as 1 / batch size, for two matmuls
    per layer instead of one. Prediction draws whole weight samples like ``bbb``.
    Parameters: see ``VariationalAdapter`` in ``_variational``.
    """

    _layer_cls = LRTLinear
