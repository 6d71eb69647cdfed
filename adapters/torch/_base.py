"""Shared machinery of the PyTorch adapters: validation, seeding, the training loop, and
drawing predictive samples in memory-bounded chunks.

A method subclasses :class:`TorchAdapter` and overrides three hooks:

- ``_build(n_in, n_out)`` -> the ``torch.nn.Module`` to train;
- ``_loss(xb, yb, n_train)`` -> the scalar training loss of one minibatch;
- ``_sample_chunk(X, n_draws)`` -> ``n_draws`` whole functions evaluated at ``X``:
  the network outputs ``[n, N, out]`` (regression: ``out = 2 D`` as (loc, raw scale) or
  ``D`` with the homoscedastic noise; classification: logits ``[n, N, C]``).

Everything random runs inside ``torch.random.fork_rng`` seeded from the explicit seed, so
an adapter never changes (or depends on) the global torch RNG state.

Device: ``device`` (``"cpu"`` default, ``"cuda"``, ``"cuda:N"``, ``"auto"``) is resolved in
``fit`` into ``device_``; training and sampling run inside ``seeded(seed, device_)``, which
also makes ``device_`` torch's default device for the block, so every tensor the hooks
create (parameters, noise, minibatch indices) lives there. Samples come back as numpy on
the CPU. On the CPU no device context is entered at all (it would add a dispatch to every
torch call), so CPU numbers are exactly those of an adapter without the keyword.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from uqbench.devices import resolve_device
from uqbench.interface import ClassificationSamples, RegressionSamples, Task
from uqbench_adapters._validation import (
    check_training_params,
    n_classes_for,
    validate_fit_data,
    validate_X,
)

# Bound on the floats of the widest [n, N, width] intermediate in one sampling chunk.
_CHUNK_FLOATS = 8_000_000
_MIN_SCALE = 1e-6

_ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh, "gelu": nn.GELU, "silu": nn.SiLU}


@contextmanager
def seeded(seed: int, device: torch.device | str | None = None) -> Iterator[None]:
    """Run a block with torch's RNG seeded (restoring the caller's state after) and, for a
    ``device`` other than the CPU, that device as the default for new tensors."""
    device = torch.device("cpu" if device is None else device)
    cuda = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):
        torch.manual_seed(int(seed))
        if device.type == "cpu":
            yield
        else:
            with device:
                yield


def torch_device(name: Any) -> torch.device:
    """The torch device for a ``device`` hyperparameter (``auto`` resolved; ValueError if bad)."""
    if not isinstance(name, str | torch.device):
        raise ValueError(f"device must be a string such as 'cpu', 'cuda' or 'auto', got {name!r}")
    try:
        return torch.device(resolve_device(name) if isinstance(name, str) else name)
    except RuntimeError as exc:
        raise ValueError(f"device: {exc}") from None


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """A float64 numpy copy of ``t`` on the CPU."""
    return t.detach().double().cpu().numpy()




def activation(name: str) -> nn.Module:
    if name not in _ACTIVATIONS:
        raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {name!r}")
    return _ACTIVATIONS[name]()


def mlp(n_in: int, hidden: tuple[int, ...], n_out: int, act: str, dropout: float = 0.0) -> nn.Sequential:
    """``n_in -> hidden... -> n_out`` with ``act`` (and optional dropout) after each hidden layer."""
    layers: list[nn.Module] = []
    width = n_in
    for h in hidden:
        layers += [nn.Linear(width, h), activation(act)]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    layers.append(nn.Linear(width, n_out))
    return nn.Sequential(*layers)


def count_parameters(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def gaussian_nll(y: torch.Tensor, loc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """Gaussian negative log-likelihood per example (summed over the D outputs), averaged
    over the batch, with the constant (comparable across methods).

    Summed over D so that, with a KL divided by N_train, the loss is the per-example ELBO
    for any number of outputs (a mean over D would weight the KL D-fold).
    """
    nll = torch.log(scale) + 0.5 * ((y - loc) / scale) ** 2 + 0.5 * math.log(2 * math.pi)
    return nll.sum(dim=-1).mean()


class TorchAdapter:
    """Base of the PyTorch adapters (not registered itself).

    Parameters
    ----------
    hidden : widths of the hidden layers.
    activation : ``"relu"``, ``"tanh"``, ``"gelu"`` or ``"silu"``.
    epochs : passes over the training data.
    batch_size : minibatch size (capped at the training-set size).
    lr : Adam learning rate.
    weight_decay : Adam L2 penalty.
    device : ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"`` (CUDA when torch sees one);
        fitting and sampling run there, samples are returned as numpy.
    """

    tasks: ClassVar[frozenset[str]] = frozenset({"regression", "classification"})
    stochastic: ClassVar[bool] = True

    def __init__(
        self,
        *,
        hidden: tuple[int, ...] = (50,),
        activation: str = "relu",
        epochs: int = 100,
        batch_size: int = 64,
        lr: float = 1e-2,
        weight_decay: float = 0.0,
        device: str = "cpu",
    ) -> None:
        self.hidden = hidden
        self.activation = activation
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.device = device

    # -- hooks ---------------------------------------------------------------------------
    def _build(self, n_in: int, n_out: int) -> nn.Module:
        raise NotImplementedError

    def _loss(self, xb: torch.Tensor, yb: torch.Tensor, n_train: int) -> torch.Tensor:
        raise NotImplementedError

    def _sample_chunk(self, X: torch.Tensor, n_draws: int) -> torch.Tensor:
        raise NotImplementedError

    def _widest(self) -> int:
        """Widest layer output, to size sampling chunks."""
        return max((*tuple(self.hidden), self.n_outputs_, 1))

    # -- validation ----------------------------------------------------------------------
    def _validate_params(self) -> None:
        self.hidden = check_training_params(self, _ACTIVATIONS)
        self.device_ = torch_device(self.device)

    @staticmethod
    def _validate_X(X: Any, n_features: int | None = None) -> np.ndarray:
        return validate_X(X, n_features)

    def _validate_fit_data(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray, Task]:
        return validate_fit_data(self, X, y)

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")

    # -- fit -----------------------------------------------------------------------------
    def _optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        return torch.optim.Adam(params, lr=self.lr, weight_decay=self.weight_decay)

    def _epoch_batches(self, n: int, batch: int) -> list[torch.Tensor]:
        """One epoch's minibatch indices: a fresh permutation, the ragged last batch dropped."""
        order = torch.randperm(n)
        return [order[start : start + batch] for start in range(0, n - batch + 1, batch)]

    def _training_tensors(self, X: Any, y: Any, n_classes: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Validated training data as tensors on ``device_``: X ``[N, D]`` float32, y ``[N, D_out]``
        float32 (regression) or ``[N]`` int64 (classification). Sets ``task_``,
        ``n_features_in_`` and ``n_outputs_`` (outputs ``D_out``, or the classes C)."""
        X, y, self.task_ = self._validate_fit_data(X, y)
        self.n_features_in_ = X.shape[1]
        if self.task_ == "classification":
            self.n_outputs_ = n_classes_for(y, n_classes)
            yt = torch.as_tensor(y, dtype=torch.long, device=self.device_)
        else:
            self.n_outputs_ = y.shape[1]
            yt = torch.as_tensor(y, dtype=torch.float32, device=self.device_)
        return torch.as_tensor(X, dtype=torch.float32, device=self.device_), yt

    def fit(self, X: np.ndarray, y: np.ndarray, *, seed: int, n_classes: int | None = None) -> TorchAdapter:
        """Train on ``X`` ``[N, F]`` and ``y`` (``[N, D]`` floats or ``[N]`` class indices).

        ``n_classes``: the dataset's number of classes (default: the labels' max + 1).
        """
        self._validate_params()
        Xt, yt = self._training_tensors(X, y, n_classes)
        device = self.device_
        n = len(Xt)
        batch = min(int(self.batch_size), n)
        with seeded(seed, device):
            self.model_ = self._build(self.n_features_in_, self.n_outputs_)
            optimizer = self._optimizer(list(self.model_.parameters()))
            self.model_.train()
            for _ in range(int(self.epochs)):
                for idx in self._epoch_batches(n, batch):
                    loss = self._loss(Xt[idx], yt[idx], n)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
            self.model_.eval()
        self.n_parameters_ = count_parameters(self.model_)
        return self

    # -- prediction ----------------------------------------------------------------------
    def sample_predictive(
        self, X: np.ndarray, *, n_samples: int, seed: int
    ) -> RegressionSamples | ClassificationSamples:
        """Draw ``n_samples`` functions and evaluate them at ``X`` ``[N, F]``.

        Returns ``RegressionSamples`` (loc, scale ``[S, N, D]``) or ``ClassificationSamples``
        (probs ``[S, N, C]``). Draws are computed in chunks over S whose widest
        intermediate holds at most a few million floats, so memory stays bounded.
        """
        self._check_fitted()
        if not isinstance(n_samples, int | np.integer) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
        X = self._validate_X(X, self.n_features_in_)
        Xt = torch.as_tensor(X, dtype=torch.float32, device=self.device_)
        chunk = max(1, _CHUNK_FLOATS // max(1, len(Xt) * self._widest()))
        outs = []
        with seeded(seed, self.device_), torch.no_grad():
            for start in range(0, n_samples, chunk):
                outs.append(self._sample_chunk(Xt, min(chunk, n_samples - start)))
            return self._to_samples(torch.cat(outs, dim=0))

    def _to_samples(self, out: torch.Tensor) -> RegressionSamples | ClassificationSamples:
        """Turn raw outputs ``[S, N, out]`` into a sample container (float64 numpy)."""
        if self.task_ == "classification":
            return ClassificationSamples(to_numpy(torch.softmax(out.double(), dim=-1)))
        loc, scale = self._regression_head(out)
        return RegressionSamples(to_numpy(loc), to_numpy(scale))

    def _regression_head(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Split raw regression outputs into (loc, scale); overridden by heteroscedastic heads."""
        raise NotImplementedError


class HomoscedasticNoise(nn.Module):
    """A learned observation-noise scale shared by every input: ``softplus(rho) + 1e-6``."""

    def __init__(self, n_out: int, init_scale: float = 0.5) -> None:
        super().__init__()
        self.rho = nn.Parameter(torch.full((n_out,), math.log(math.expm1(init_scale))))

    def forward(self) -> torch.Tensor:
        return F.softplus(self.rho) + _MIN_SCALE


class MLPWithNoise(nn.Module):
    """An MLP ``body`` and, for homoscedastic regression, its learned noise scale ``noise``
    (None otherwise); ``forward`` is the body's (the noise is read by the loss and sampler)."""

    def __init__(self, body: nn.Module, noise: HomoscedasticNoise | None) -> None:
        super().__init__()
        self.body = body
        self.noise = noise

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def heteroscedastic_split(out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``[..., 2D]`` network output -> (loc, scale = softplus + 1e-6), each ``[..., D]``."""
    loc, raw = out.chunk(2, dim=-1)
    return loc, F.softplus(raw) + _MIN_SCALE
