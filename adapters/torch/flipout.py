"""``flipout``: Flipout (Wen et al., 2018), sign-decorrelated weight perturbations."""

from __future__ import annotations

import torch

from uqbench_adapters.torch._variational import VariationalAdapter, VariationalLinear

# Row b holds the signs (-1 where the bit is set) of the 8 bits of byte b, low bit first.
_BYTE_SIGNS = (1 - 2 * ((torch.arange(256, device="cpu").unsqueeze(1) >> torch.arange(8, device="cpu")) & 1)).float()
_BYTE_SHIFTS = torch.arange(0, 56, 8, device="cpu")
_TABLES: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {torch.device("cpu"): (_BYTE_SIGNS, _BYTE_SHIFTS)}


def random_signs(rows: int, cols: int, device: torch.device | None = None) -> torch.Tensor:
    """Independent fair ±1 entries ``[rows, cols]`` (float32) on ``device`` (default CPU).

    torch's CPU generator costs one call per element whatever the dtype, so signs are
    unpacked from random bits: each int64 draw carries 63 uniform bits, of which the low
    7 bytes become 56 signs through a 256-row lookup table (about a third of the time of
    ``rand().sign()`` in measurement).
    """
    device = torch.device("cpu") if device is None else device
    if device not in _TABLES:  # the lookup tables, copied once per device
        _TABLES[device] = (_BYTE_SIGNS.to(device), _BYTE_SHIFTS.to(device))
    signs, shifts = _TABLES[device]
    count = rows * cols
    words = torch.empty(-(-count // 56), dtype=torch.int64, device=device).random_()  # [0, 2^63)
    octets = ((words.unsqueeze(1) >> shifts) & 255).reshape(-1)
    return signs.index_select(0, octets).reshape(-1)[:count].view(rows, cols)


class FlipoutLinear(VariationalLinear):
    """``y = x1 @ loc + ((x1 * s) @ dW) * r`` with one shared ``dW = scale * eps`` per minibatch.

    ``s`` ``[B, n_in + 1]`` and ``r`` ``[B, n_out]`` are random signs per example. Example
    i effectively uses ``loc + dW * (s_i r_i^T)``: the same N(loc, scale^2) marginal as
    a fresh weight sample, with perturbations uncorrelated across examples.
    """

    def _apply_variational_kernel(
        self, x1: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        eps = torch.randn_like(loc)
        signs = random_signs(x1.shape[0], self.n_in + 1 + self.n_out, x1.device)
        s, r = signs[:, : self.n_in + 1], signs[:, self.n_in + 1 :]
        perturbation = ((x1 * s) @ (scale * eps)) * r
        return torch.addmm(perturbation, x1, loc), eps


class FlipoutAdapter(VariationalAdapter):
    """Flipout: one shared weight perturbation per minibatch, decorrelated by random signs.

    Same posterior and loss as ``bbb``; per-example sign flips make the weight noise of
    different examples uncorrelated, so its gradient variance falls with the batch size,
    for two matmuls per layer instead of one. Prediction draws whole weight samples like
    ``bbb`` (the sign trick is a training-time variance reducer). Parameters: see
    ``VariationalAdapter`` in ``_variational``.
    """

    _layer_cls = FlipoutLinear
