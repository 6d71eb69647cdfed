"""``swag``: SWA-Gaussian (Maddox, Izmailov, Garipov, Vetrov & Wilson, NeurIPS 2019,
"A Simple Baseline for Bayesian Uncertainty in Deep Learning").

The model
---------
The MLP of the other torch adapters (``_base.mlp``: ``Linear``/activation layers, no batch
norm) with the Gaussian prior convention of ``bbb``: ``N(0, prior_std^2)`` on every weight
and bias. Regression: a Gaussian likelihood with one learned homoscedastic noise scale per
output (``softplus(rho) + 1e-6``, as ``deterministic``), or with ``heteroscedastic=True`` a
per-input scale from a ``2 D``-wide head (as ``mc-dropout``); classification: softmax.
The noise parameter ``rho`` has no prior (flat), as in ``bbb``.

The training loss, in both phases, is the negative log posterior per training example,

    L(θ) = mean_{i in batch} NLL(y_i | x_i, θ) + ||w||^2 / (2 prior_std^2 N_train),

``w`` the weights and biases (not ``rho``). Its gradient is the mean-NLL gradient plus
``λ w`` with ``λ = 1 / (prior_std^2 N_train)``: weight decay λ is the Gaussian prior
(SGD/Adam's coupled L2 with that λ gives the same updates). There is no separate
``weight_decay`` parameter; the prior is it.

Algorithm (§3 of the paper, Algorithm 1)
----------------------------------------
1. **Pre-training** to the MAP: ``epochs`` epochs of Adam at ``lr`` on L (the optimizer,
   minibatches and ``epochs``/``lr`` budgets of ``deterministic``; the paper pre-trains with
   SGD and a decaying schedule, "θ_0: pretrained weights" of Algorithm 1).
2. **SWAG phase**: ``swag_epochs`` epochs of SGD with momentum ``swag_momentum`` (0.9, as
   the paper's experiments) on L, at a constant learning rate ``swag_lr`` (the paper's
   choice), or with ``swag_schedule="cyclic"`` the cyclical schedule of SWA (Izmailov et
   al. 2018): within each cycle of ``c`` steps the rate falls linearly,
   ``α(i) = (1 - t(i)) α_1 + t(i) α_2``, ``t(i) = ((i mod c) + 1) / c``, from
   ``α_1 = swag_lr`` to ``α_2 = swag_lr_min`` (default ``swag_lr / 100``), and a cycle is
   ``collect_every`` epochs, so every snapshot is taken at the cycle's lowest rate.
3. **Moments** (§3.3, §3.4): after every ``collect_every``-th epoch of the SWAG phase (the
   paper's Algorithm 1 collects every ``c`` steps; its experiments once per epoch, the
   default here) the flat parameter vector ``θ_i`` ``[P]`` updates, with ``n`` the
   snapshots so far,

       θ̄ ← (n θ̄ + θ_i) / (n + 1),      θ²‾ ← (n θ²‾ + θ_i²) / (n + 1),

   and, unless ``rank == 0``, appends the column ``θ_i - θ̄`` (θ̄ *after* the update, as in
   Algorithm 1 and the reference code) to the deviation matrix ``D``, keeping the last
   ``K = rank`` columns (default 20, the paper's). The moments are accumulated in float64
   (``θ²‾ - θ̄²`` cancels badly in float32). ``P`` counts every trained parameter, ``rho``
   included.
4. **Posterior** (§3.4): ``Σ_diag = diag(max(θ²‾ - θ̄², var_floor))`` (``var_floor`` is
   the reference code's ``var_clamp``, 1e-30), ``Σ_low-rank = D Dᵀ / (K - 1)``, and

       q(θ) = N(θ̄, scale · (Σ_diag + Σ_low-rank)).

   A draw (the sampling equation of §3.4, Eq. (1)) is

       θ = θ̄ + sqrt(scale) · (Σ_diag^{1/2} z_1 + D z_2 / sqrt(K - 1)),
       z_1 ~ N(0, I_P),  z_2 ~ N(0, I_K).

   **How ``scale`` enters.** The paper writes the posterior as
   ``N(θ_SWA, ½ (Σ_diag + Σ_low-rank))`` and the draw with ``1/√2`` and
   ``1/√(2(K-1))``; the reference implementation (wjmaddox/swa_gaussian,
   ``SWAG.sample_fullrank``) draws ``θ̄ + sqrt(scale) · (Σ_diag^{1/2} z_1 + D z_2 /
   sqrt(K - 1))`` and its experiments pass ``scale = 0.5``. So ``scale`` multiplies the
   *covariance* (its square root the deviation), and the default 0.5 *is* the paper's ½:
   the covariance of the draws is ``scale · (Σ_diag + D Dᵀ/(K-1))``, not
   ``½ scale · (...)``. ``scale = 1`` gives the unhalved SGD-iterate covariance,
   ``scale = 0`` the SWA point estimate.
   ``rank = 0`` is SWAG-Diagonal (§3.3): ``q(θ) = N(θ̄, scale · Σ_diag)``.
5. **Prediction** (§3.5, Bayesian model averaging): each of the S draws is one θ, i.e. one
   whole function, evaluated at all N inputs (one batched matmul per layer over the
   draws); the harness averages the S predictive distributions.

Differences from the paper and its code
---------------------------------------
- Pre-training uses Adam (the suite's ``epochs``/``lr`` budget shared with
  ``deterministic``) rather than SGD with a step-decay schedule; the SWAG phase is SGD as
  in the paper.
- ``swag_lr`` defaults to 3e-3 (on the mean per-example loss, momentum 0.9). The paper's
  SWAG rates are per architecture (0.01-0.05 for its CIFAR nets); at 1e-2 the SGD phase
  diverged on one of three ``uci-yacht`` splits here (the low-noise MAP makes the loss
  sharp), at 3e-3 it was stable on toy-gap, digits, boston and yacht with the same
  toy-gap/digits quality.
- ``swag_epochs`` defaults to 50 (at least ``rank`` snapshots at one per epoch); the
  paper's CIFAR runs collected for about 140 of 300 epochs.
- ``K`` in ``1/(K-1)`` is the number of deviation columns actually stored,
  ``min(rank, snapshots)``; the reference code divides by ``rank - 1`` even when fewer
  snapshots were collected (which shrinks the low-rank part). Identical once at least
  ``rank`` snapshots exist. ``rank = 1`` (``K - 1 = 0``) is rejected, as is a SWAG phase
  with fewer than two snapshots.
- No batch-norm statistics update (the paper recomputes BN statistics for each draw):
  the MLP has no batch norm.
- The moments include the homoscedastic noise parameter ``rho`` (SGD trains it with the
  weights), so each draw carries its own noise scale.
- The model's parameters are left at the SWA mean θ̄ after ``fit`` (for the
  gradient-variance probe); draws never use them.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F
from torch.nn.utils import parameters_to_vector, vector_to_parameters

from uqbench_adapters._validation import is_positive_int, is_real
from uqbench_adapters.torch._base import (
    _CHUNK_FLOATS,
    HomoscedasticNoise,
    MLPWithNoise,
    TorchAdapter,
    activation,
    gaussian_nll,
    heteroscedastic_split,
    mlp,
    seeded,
    to_numpy,
)

SCHEDULES = ("constant", "cyclic")
# The reference implementation's var_clamp.
_VAR_FLOOR = 1e-30



def _number(t: torch.Tensor) -> float:
    """``float(t)``, or NaN for a tensor without data (torch's ``meta`` device)."""
    return math.nan if t.is_meta else float(t)


class SWAGAdapter(TorchAdapter):
    """SWAG (Maddox et al. 2019): Gaussian over SGD iterates, low-rank plus diagonal covariance.

    Pre-trains to the MAP (Adam), runs SGD at a constant (or cyclic) rate collecting the
    running moments and the last ``rank`` deviations, and draws whole functions from
    ``N(θ̄, scale · (Σ_diag + D Dᵀ/(K-1)))``. See the module docstring for the equations.

    Parameters
    ----------
    hidden, activation, batch_size, device : see ``TorchAdapter``.
    epochs : pre-training epochs (Adam), the budget ``deterministic`` takes.
    lr : pre-training Adam learning rate.
    prior_std : standard deviation of the ``N(0, prior_std^2)`` prior on every weight and
        bias (as ``bbb``); the weight decay is ``1 / (prior_std^2 N_train)``.
    swag_epochs : epochs of the SWAG (SGD) phase.
    swag_lr : SGD learning rate of the SWAG phase (the cycle's highest under ``cyclic``).
    swag_momentum : SGD momentum of the SWAG phase, in [0, 1).
    swag_schedule : ``"constant"`` (the paper) or ``"cyclic"`` (SWA's linear cycles).
    swag_lr_min : lowest rate of a cycle (``cyclic`` only); None: ``swag_lr / 100``.
    collect_every : epochs between snapshots (the paper: 1).
    rank : K, deviation columns kept (the paper: 20); 0 gives SWAG-Diagonal; not 1.
    scale : multiplies the covariance; 0.5 is the paper's ½ (module docstring).
    var_floor : lower bound of the diagonal variances (the reference code's 1e-30).
    heteroscedastic : regression only: predict a per-input noise scale from a ``2 D`` head.

    Attributes
    ----------
    swag_mean_ : ``[P]`` float64 tensor, θ̄ (P: every trained parameter, ``rho`` last).
    swag_sq_mean_ : ``[P]`` float64 tensor, θ²‾.
    swag_diag_var_ : ``[P]`` float64 tensor, ``max(θ²‾ - θ̄², var_floor)``.
    swag_deviations_ : ``[P, K]`` float64 tensor, D (oldest column first; ``K = 0`` for
        SWAG-Diagonal).
    diagnostics_ : dict of numbers (snapshots, rank used, rates, variance summaries).
    """

    stochastic: ClassVar[bool] = True

    def __init__(
        self,
        *,
        hidden: tuple[int, ...] = (50,),
        activation: str = "relu",
        epochs: int = 100,
        batch_size: int = 64,
        lr: float = 1e-2,
        prior_std: float = 1.0,
        swag_epochs: int = 50,
        swag_lr: float = 3e-3,
        swag_momentum: float = 0.9,
        swag_schedule: str = "constant",
        swag_lr_min: float | None = None,
        collect_every: int = 1,
        rank: int = 20,
        scale: float = 0.5,
        var_floor: float = _VAR_FLOOR,
        heteroscedastic: bool = False,
        device: str = "cpu",
    ) -> None:
        super().__init__(
            hidden=hidden,
            activation=activation,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=0.0,
            device=device,
        )
        self.prior_std = prior_std
        self.swag_epochs = swag_epochs
        self.swag_lr = swag_lr
        self.swag_momentum = swag_momentum
        self.swag_schedule = swag_schedule
        self.swag_lr_min = swag_lr_min
        self.collect_every = collect_every
        self.rank = rank
        self.scale = scale
        self.var_floor = var_floor
        self.heteroscedastic = heteroscedastic

    # -- validation ----------------------------------------------------------------------
    def _validate_params(self) -> None:
        super()._validate_params()
        for name in ("prior_std", "swag_lr", "var_floor"):
            value = getattr(self, name)
            if not is_real(value) or not 0.0 < float(value) < math.inf:
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not is_real(self.scale) or not 0.0 <= float(self.scale) < math.inf:
            raise ValueError(f"scale must be a finite number >= 0, got {self.scale!r}")
        m = self.swag_momentum
        if not is_real(m) or not 0.0 <= float(m) < 1.0:
            raise ValueError(f"swag_momentum must be in [0, 1), got {m!r}")
        if self.swag_schedule not in SCHEDULES:
            raise ValueError(f"swag_schedule must be one of {list(SCHEDULES)}, got {self.swag_schedule!r}")
        lo = self.swag_lr_min
        if lo is not None and (not is_real(lo) or not 0.0 < float(lo) <= float(self.swag_lr)):
            raise ValueError(f"swag_lr_min must be None or in (0, swag_lr={self.swag_lr!r}], got {lo!r}")
        for name in ("swag_epochs", "collect_every"):
            if not is_positive_int(getattr(self, name)):
                raise ValueError(f"{name} must be a positive int, got {getattr(self, name)!r}")
        r = self.rank
        if isinstance(r, bool) or not isinstance(r, int | np.integer) or r < 0 or r == 1:
            raise ValueError(f"rank must be 0 (SWAG-Diagonal) or an int >= 2, got {r!r}")
        if int(self.swag_epochs) // int(self.collect_every) < 2:
            raise ValueError(
                f"swag_epochs // collect_every must be >= 2 snapshots, got "
                f"{self.swag_epochs!r} // {self.collect_every!r}"
            )
        if not isinstance(self.heteroscedastic, bool):
            raise ValueError(f"heteroscedastic must be a bool, got {self.heteroscedastic!r}")

    def _hetero(self) -> bool:
        return self.heteroscedastic and self.task_ == "regression"

    def _check_fitted(self) -> None:
        if not hasattr(self, "swag_mean_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")

    # -- hooks ---------------------------------------------------------------------------
    def _build(self, n_in: int, n_out: int) -> nn.Module:
        width = 2 * n_out if self._hetero() else n_out
        noise = HomoscedasticNoise(n_out) if self.task_ == "regression" and not self._hetero() else None
        return MLPWithNoise(mlp(n_in, self.hidden, width, self.activation), noise)

    def _widest(self) -> int:
        return max(super()._widest(), 2 * self.n_outputs_)

    def _loss(self, xb: torch.Tensor, yb: torch.Tensor, n_train: int) -> torch.Tensor:
        """Mean minibatch NLL + ``||w||^2 / (2 prior_std^2 N_train)`` (the module's L)."""
        out = self.model_(xb)
        if self.task_ == "classification":
            nll = F.cross_entropy(out, yb)
        else:
            loc, scale = self._regression_head(out)
            nll = gaussian_nll(yb, loc, scale)
        sq = sum(p.square().sum() for p in self.model_.body.parameters())
        return nll + sq / (2.0 * float(self.prior_std) ** 2 * n_train)

    def _regression_head(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        # Training outputs [B, D] (homoscedastic) use the model's rho; sampled outputs are
        # always [S, N, 2D] (loc, per-draw raw scale), split like a heteroscedastic head.
        if self._hetero() or out.shape[-1] == 2 * self.n_outputs_:
            return heteroscedastic_split(out)
        return out, self.model_.noise().expand_as(out)

    # -- fit -----------------------------------------------------------------------------
    def fit(
        self, X: np.ndarray, y: np.ndarray, *, seed: int, n_classes: int | None = None
    ) -> SWAGAdapter:
        """Pre-train, run the SWAG phase and set the posterior moments.

        ``X`` ``[N, F]``; ``y`` ``[N, D]`` floats (regression) or ``[N]`` class indices.
        ``n_classes``: the dataset's number of classes (default: the labels' max + 1).
        The SWAG phase runs on a torch stream seeded from ``SeedSequence((seed mod 2^64, 1))``,
        independent of the pre-training stream seeded with ``seed``.
        """
        super().fit(X, y, seed=seed, n_classes=n_classes)  # validates; pre-trains to the MAP
        X, y, _ = self._validate_fit_data(X, y)
        device = self.device_
        dtype = torch.long if self.task_ == "classification" else torch.float32
        yt = torch.as_tensor(y, dtype=dtype, device=device)
        Xt = torch.as_tensor(X, dtype=torch.float32, device=device)
        n = len(Xt)
        batch = min(int(self.batch_size), n)
        params = list(self.model_.parameters())
        swag_seed = int(np.random.SeedSequence([int(seed) & 0xFFFFFFFFFFFFFFFF, 1]).generate_state(1)[0])
        hi = float(self.swag_lr)
        lo = hi / 100.0 if self.swag_lr_min is None else float(self.swag_lr_min)
        n_batches = max(1, (n - batch) // batch + 1)
        cycle = n_batches * int(self.collect_every)  # steps per cycle (cyclic schedule)
        self._n_snapshots = 0
        self._deviations: list[torch.Tensor] = []
        self._first = torch.zeros(sum(p.numel() for p in params), dtype=torch.float64, device=device)
        self._second = torch.zeros_like(self._first)
        losses = []
        with seeded(swag_seed, device):
            optimizer = torch.optim.SGD(params, lr=hi, momentum=float(self.swag_momentum))
            self.model_.train()
            step = 0
            for epoch in range(int(self.swag_epochs)):
                for idx in self._epoch_batches(n, batch):
                    if self.swag_schedule == "cyclic":
                        t = ((step % cycle) + 1) / cycle
                        for group in optimizer.param_groups:
                            group["lr"] = (1.0 - t) * hi + t * lo
                    loss = self._loss(Xt[idx], yt[idx], n)
                    optimizer.zero_grad(set_to_none=True)
                    loss.backward()
                    optimizer.step()
                    losses.append(loss.detach())
                    step += 1
                if (epoch + 1) % int(self.collect_every) == 0:
                    self._record_snapshot(parameters_to_vector(params).detach().double())
            self.model_.eval()
        self._finish_moments()
        with torch.no_grad():
            vector_to_parameters(self.swag_mean_.to(params[0].dtype), params)
        self._set_diagnostics(torch.stack(losses).mean(), step, lo)
        return self

    def _record_snapshot(self, theta: torch.Tensor) -> None:
        """Update θ̄, θ²‾ and D with the snapshot ``theta`` ``[P]`` (float64)."""
        k = self._n_snapshots
        self._first.mul_(k / (k + 1.0)).add_(theta, alpha=1.0 / (k + 1.0))
        self._second.mul_(k / (k + 1.0)).add_(theta * theta, alpha=1.0 / (k + 1.0))
        self._n_snapshots = k + 1
        if int(self.rank) > 0:
            self._deviations.append(theta - self._first)  # deviation from the updated mean
            del self._deviations[: -int(self.rank)]

    def _finish_moments(self) -> None:
        self.swag_mean_ = self._first
        self.swag_sq_mean_ = self._second
        self.swag_diag_var_ = torch.clamp(self._second - self._first.square(), min=float(self.var_floor))
        if self._deviations:
            self.swag_deviations_ = torch.stack(self._deviations, dim=1)
        else:
            self.swag_deviations_ = self._first.new_zeros((self._first.numel(), 0))
        del self._first, self._second, self._deviations

    def _set_diagnostics(self, swag_loss: torch.Tensor, steps: int, lr_min: float) -> None:
        var, dev = self.swag_diag_var_, self.swag_deviations_
        k = dev.shape[1]
        floored = (self.swag_sq_mean_ - self.swag_mean_.square()) <= float(self.var_floor)
        self.diagnostics_: dict[str, Any] = {
            "n_snapshots": int(self._n_snapshots),
            "rank_used": int(k),
            "swag_steps": int(steps),
            "swag_lr": float(self.swag_lr),
            "swag_lr_min": float(lr_min) if self.swag_schedule == "cyclic" else float(self.swag_lr),
            "scale": float(self.scale),
            "swag_loss_mean": _number(swag_loss),
            "diag_var_mean": _number(var.mean()),
            "diag_var_max": _number(var.max()),
            "diag_var_floored_frac": _number(floored.double().mean()),
            # Mean per-parameter variance of the low-rank part, trace(D Dᵀ/(K-1)) / P.
            "low_rank_var_mean": _number(dev.square().sum() / ((k - 1) * dev.shape[0])) if k else 0.0,
        }

    # -- prediction ----------------------------------------------------------------------
    def _draw_parameters(self, n_draws: int) -> torch.Tensor:
        """``n_draws`` θ ``[n, P]`` (float64) from ``N(θ̄, scale (Σ_diag + D Dᵀ/(K-1)))``."""
        mean, dev = self.swag_mean_, self.swag_deviations_
        z1 = torch.randn((n_draws, mean.numel()), dtype=mean.dtype, device=mean.device)
        noise = z1 * self.swag_diag_var_.sqrt()
        k = dev.shape[1]
        if k:
            z2 = torch.randn((n_draws, k), dtype=mean.dtype, device=mean.device)
            noise = noise + (z2 @ dev.T) / math.sqrt(k - 1)
        return mean + math.sqrt(float(self.scale)) * noise

    def sample_parameters(self, n_samples: int, *, seed: int) -> np.ndarray:
        """``n_samples`` posterior draws of the flat parameter vector, ``[S, P]`` float64
        (the layout of ``torch.nn.utils.parameters_to_vector(model_.parameters())``)."""
        self._check_fitted()
        if not is_positive_int(n_samples):
            raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
        with seeded(seed, self.device_):
            return to_numpy(self._draw_parameters(int(n_samples)))

    def _evaluate(self, X: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """The functions θ ``[n, P]`` at ``X`` ``[N, F]`` -> ``[n, N, out]``; regression
        outputs ``[n, N, 2D]`` (loc, raw scale: the draw's ``rho`` when homoscedastic)."""
        n = theta.shape[0]
        theta = theta.to(X.dtype)
        linears = [m for m in self.model_.body if isinstance(m, nn.Linear)]
        act = activation(self.activation)
        h, start = X.expand(n, *X.shape), 0
        for i, lin in enumerate(linears):
            n_out, n_in = lin.weight.shape
            w = theta[:, start : start + n_out * n_in].view(n, n_out, n_in)
            start += n_out * n_in
            b = theta[:, start : start + n_out].view(n, 1, n_out)
            start += n_out
            if i:
                h = act(h)
            h = torch.baddbmm(b, h, w.transpose(1, 2))
        if self.task_ == "regression" and not self._hetero():
            rho = theta[:, start : start + self.n_outputs_].view(n, 1, -1)
            h = torch.cat([h, rho.expand(n, h.shape[1], -1)], dim=-1)
        return h

    def _sample_chunk(self, X: torch.Tensor, n_draws: int) -> torch.Tensor:
        # The base bounds the activations [n, N, width]; with few inputs the draws [n, P]
        # can be the larger part, so bound those here too.
        per_draw = max(len(X) * self._widest(), self.swag_mean_.numel())
        step = max(1, _CHUNK_FLOATS // per_draw)
        outs = [
            self._evaluate(X, self._draw_parameters(min(step, n_draws - start)))
            for start in range(0, n_draws, step)
        ]
        return outs[0] if len(outs) == 1 else torch.cat(outs, dim=0)

    # -- gradient-variance probe (uqbench.harness.probe) --------------------------------
    def training_loss(self, xb: torch.Tensor, yb: torch.Tensor, n_train: int) -> torch.Tensor:
        """The loss both phases minimise, on one minibatch, at the model's parameters (θ̄)."""
        self._check_fitted()
        return self._loss(xb, yb, int(n_train))

    def probe_parameters(self) -> dict[str, torch.Tensor]:
        """Weights ``[out, in]`` of the first and last linear layer (at θ̄)."""
        self._check_fitted()
        linears = [m for m in self.model_.body if isinstance(m, nn.Linear)]
        return {"first": linears[0].weight, "last": linears[-1].weight}
