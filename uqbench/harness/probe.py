"""The gradient-variance probe: how noisy is a method's stochastic gradient?

For a fitted adapter at a fixed parameter state and a fixed training set, the probe
repeatedly draws a minibatch (``B`` distinct rows, without replacement, a fresh draw each
repeat) and evaluates the gradient of the adapter's training loss with fresh noise
(weight samples, sign flips, dropout masks...) with respect to two parameter tensors,
usually the posterior means of the first and last layer. Parameters are never updated.

The summary per tensor and batch size is the mean over coordinates of the per-coordinate
variance across repeats (unbiased, ``ddof = 1``): ``trace(Cov[g]) / dim(g)``. It mixes the
two sources of gradient noise, minibatch sampling and the method's own noise; for a
noise-free model it is the minibatch term alone, ``(sigma_g^2 / B) (N - B) / (N - 1)``
per coordinate, where ``sigma_g^2`` is the population variance of the per-example
gradients.

An adapter takes part by exposing

- ``training_loss(xb, yb, n_train) -> scalar tensor``: the loss ``fit`` minimises on the
  minibatch (``xb`` float32 ``[B, F]``; ``yb`` int64 ``[B]`` or float32 ``[B, D]``), with
  fresh noise from the global torch RNG on every call;
- ``probe_parameters() -> dict[str, torch.Tensor]``: the tensors to differentiate with
  respect to, under the keys ``"first"`` and ``"last"`` (any keys are reported).
"""

from __future__ import annotations

from collections.abc import Iterable
from numbers import Integral
from typing import Any

import numpy as np
import torch

DEFAULT_BATCH_SIZES = (32, 128, 512)


def gradient_variance(
    adapter: Any,
    X: np.ndarray,
    y: np.ndarray,
    *,
    batch_sizes: Iterable[int] = DEFAULT_BATCH_SIZES,
    n_repeats: int = 64,
    seed: int,
) -> list[tuple[str, float]]:
    """Gradient variance of a fitted adapter's training loss, per parameter tensor and batch size.

    Parameters
    ----------
    adapter : a fitted adapter exposing ``training_loss`` and ``probe_parameters``.
    X : ``[N, F]`` training inputs.
    y : ``[N]`` class indices or ``[N, D]`` regression targets.
    batch_sizes : minibatch sizes; those larger than N are skipped (no metric).
    n_repeats : minibatch-and-noise draws per batch size (>= 2).
    seed : seeds the minibatch draws and the adapter's noise. The caller's global torch
        RNG state is restored afterwards.

    Returns
    -------
    list of ``(name, value)``, names ``grad_var_<key>_b<B>`` (e.g. ``grad_var_first_b32``),
    values the mean per-coordinate variance ``trace(Cov[g]) / dim(g)``, in order of
    ``batch_sizes`` then parameter key.
    """
    for method in ("training_loss", "probe_parameters"):
        if not callable(getattr(adapter, method, None)):
            raise ValueError(f"{type(adapter).__name__} has no {method}(); it cannot be probed")
    if isinstance(n_repeats, bool) or not isinstance(n_repeats, Integral) or n_repeats < 2:
        raise ValueError(f"n_repeats must be an int >= 2, got {n_repeats!r}")
    sizes = list(batch_sizes)
    if not all(isinstance(b, Integral) and not isinstance(b, bool) and b >= 1 for b in sizes):
        raise ValueError(f"batch_sizes must be positive ints, got {sizes!r}")
    Xt, yt = _as_tensors(X, y)
    n = len(Xt)
    params = adapter.probe_parameters()
    if not params:
        raise ValueError(f"{type(adapter).__name__}.probe_parameters() returned no tensors")
    keys, tensors = list(params), list(params.values())
    # The model's device (its parameters'): data and accumulators go there; the minibatch
    # draws stay on a CPU generator so a seed picks the same rows on every device.
    device = tensors[0].device
    Xt, yt = Xt.to(device), yt.to(device)
    cuda = [device.index or 0] if device.type == "cuda" else []

    out: list[tuple[str, float]] = []
    generator = torch.Generator(device="cpu").manual_seed(int(seed))
    with torch.random.fork_rng(devices=cuda), torch.enable_grad():
        torch.manual_seed(int(seed))
        for b in sizes:
            if b > n:
                continue
            # Welford's running mean and sum of squared deviations, per coordinate, in float64.
            mean = [torch.zeros(t.numel(), dtype=torch.float64, device=device) for t in tensors]
            m2 = [torch.zeros(t.numel(), dtype=torch.float64, device=device) for t in tensors]
            for k in range(1, int(n_repeats) + 1):
                idx = torch.randperm(n, generator=generator, device="cpu")[: int(b)].to(device)
                loss = adapter.training_loss(Xt[idx], yt[idx], n)
                for i, g in enumerate(torch.autograd.grad(loss, tensors)):
                    g = g.detach().reshape(-1).double()
                    delta = g - mean[i]
                    mean[i] += delta / k
                    m2[i] += delta * (g - mean[i])
            for key, m in zip(keys, m2, strict=True):
                out.append((f"grad_var_{key}_b{b}", float(m.mean()) / (int(n_repeats) - 1)))
    return out


def _as_tensors(X: Any, y: Any) -> tuple[torch.Tensor, torch.Tensor]:
    X = np.asarray(X)
    y = np.asarray(y)
    if X.ndim != 2 or not np.issubdtype(X.dtype, np.number):
        raise ValueError(f"X must be a numeric [N, F] array, got shape {X.shape} dtype {X.dtype}")
    if len(y) != len(X):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
    if np.issubdtype(y.dtype, np.integer):
        yt = torch.as_tensor(y, dtype=torch.long)
    elif np.issubdtype(y.dtype, np.floating):
        yt = torch.as_tensor(y, dtype=torch.float32)
    else:
        raise ValueError(f"y must be class indices or float targets, got dtype {y.dtype}")
    return torch.as_tensor(X, dtype=torch.float32), yt
