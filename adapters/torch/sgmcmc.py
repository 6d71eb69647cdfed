"""``sgld`` and ``sghmc``: stochastic-gradient MCMC on the weights of a Bayesian MLP.

Model (the same as ``bbb``, ``flipout``, ``lrt`` and ``hmc``)
----------------------------------------------------------
``f_θ`` is an MLP ``n_in -> hidden... -> out`` (``hidden=()`` is a linear model) whose
weights and biases are packed per layer as ``[n_in + 1, n_out]`` (last row: the bias) and
flattened into one vector θ. Every weight and bias has the prior ``N(0, prior_std²)``,
``prior_std = 1.0`` (``bbb``'s default). Initial values: ``nn.Linear``'s
``U(-1/sqrt(fan_in), 1/sqrt(fan_in))`` for weights and biases, as the variational layers'
means.

- Classification: ``y ~ Categorical(softmax(f_θ(x)))``.
- Regression: ``y_d ~ N(f_θ(x)_d, σ_d²)``, one σ per output. With ``noise_std`` given σ is
  fixed; otherwise ``u_d = log σ_d`` is appended to θ and sampled *jointly* with the
  weights by the same dynamics, with the prior ``σ_d ~ HalfNormal(noise_prior_scale)``
  (default 1.0, in the standardized target units the harness fits in), the ``hmc``
  reference's prior, so that ``sgld``/``sghmc`` target exactly the posterior ``hmc``
  samples. The density of u carries the Jacobian: ``log p(u) = u - e^{2u} / (2 s²)``. A
  Gamma prior on the precision (PBP's Gamma(6, 6)) was not used for the reason given in
  ``hmc``: it pulls σ towards 1 on data whose standardized noise is 0.1-0.3. u starts at
  ``log 0.5`` (the initial noise scale of the other adapters).

The potential (negative log joint) of a minibatch ``B`` of size n out of N (constants
dropped; they have no gradient) is

    Ũ(θ) = -log p(θ) - (N / n) Σ_{i ∈ B} log p(y_i | x_i, θ),

whose gradient is the negated bracket of Welling & Teh (2011), Eq. (4). Minibatches are
drawn without replacement: a fresh permutation of the training set per pass, the ragged
last batch dropped (as the other torch adapters); ``batch_size >= N`` gives full-batch
gradients, i.e. Ũ = U exactly.

SGLD (Welling & Teh, 2011)
--------------------------
Eq. (4), with a temperature T:

    θ_{t+1} = θ_t - (ε_t / 2) ∇Ũ(θ_t) + η_t,        η_t ~ N(0, ε_t T I).

The injected noise variance is exactly ``ε_t · temperature`` (T = 1, the default, is the
paper's algorithm and targets the posterior; T < 1 targets ``p(θ | D)^{1/T}``, the "cold
posterior"). No other factor scales it. Step sizes, Welling & Teh Section 3:
``ε_t = a (b + t)^{-γ}`` with t = 0, 1, ... (:func:`polynomial_step_sizes`); γ = 0.55 is the
paper's value (γ ∈ (0.5, 1] satisfies Σ ε_t = ∞, Σ ε_t² < ∞; γ = 0 gives a constant step,
allowed here). There is no Metropolis-Hastings correction (the paper drops it as ε_t -> 0).

SGHMC (Chen, Fox & Guestrin, 2014)
----------------------------------
Eq. (15), the discretisation the paper recommends in practice (Section 3.3, the
"SGD with momentum" form), with M = I, temperature T:

    θ_t = θ_{t-1} + v_{t-1}
    v_t = v_{t-1} - η_t ∇Ũ(θ_t) - α v_{t-1} + N(0, 2 (α - β̂_t) η_t T I),

where ``η = ε² M⁻¹`` (``step_size_*``), ``α = ε M⁻¹ C`` (``friction``: C is the friction of
Eq. (13), α its per-step form, "one minus the momentum") and ``β̂ = ε M⁻¹ B̂`` the
correction for the gradient noise. In the momentum units of Algorithm 2 (``r = v / ε``) this
is ``dr = -∇Ũ ε - C r ε + N(0, 2 (C - B̂) ε T)``. The loop computes ∇Ũ at the current θ, then
v, then ``θ + v``, which is the same recursion. ``noise_estimate``:

- ``"zero"`` (default, as in the paper's experiments): β̂ = 0, B̂ = 0.
- ``"empirical"``: ``B̂ = (ε/2) V̂`` with V̂ the diagonal empirical Fisher estimate of the
  minibatch gradient's covariance, ``V̂ = N² / n · Var_{i ∈ B}[∇ log p(y_i | x_i, θ)]``
  (per-example gradients by ``torch.func``; Section 3.2 suggests the empirical Fisher), so
  ``β̂ = (η / 2) V̂``, clipped to ``[0, α]`` per coordinate (the paper requires C ⪰ B̂; the
  fraction clipped is in ``diagnostics_``). It costs n per-example gradients per step.

v starts from its stationary law ``N(0, η_0 T I)`` (``r ~ N(0, M T)``). Algorithm 2
optionally resamples the momentum; ``resample_momentum_every = m > 0`` redraws
``v ~ N(0, η_t T I)`` every m steps, 0 (default) never does.

Step sizes ``η_t``: the polynomial schedule above with γ = 0 by default (a constant η, as
in Chen et al.'s experiments), or, with ``cyclical=True``, the cosine schedule of Zhang et
al. (2020, cSG-MCMC), Eq. (1):

    η_k = (a / 2) [cos(π mod(k, L) / L) + 1],    L = ceil(K / M),  k = 0..K-1,

with K = ``n_steps``, M = ``n_cycles``, a = ``step_size_a`` (``step_size_b``/``gamma`` are
unused then). In each cycle the first fraction β = ``exploration_fraction`` of the steps is
the *exploration* stage, run without injected noise (SGD with momentum, Zhang et al.
Algorithm 1), and the rest the *sampling* stage (the SGHMC step above); states are kept only
in sampling stages, from every cycle. The friction α stays fixed while η cycles, as in the
authors' code. Default M = 4 (their CIFAR runs) and β = 0.8.

Kept states, burn-in and thinning
---------------------------------
Step t = 1..n_steps produces θ_t. A step is *eligible* if t > ``burn_in`` and (cyclical)
it is in a sampling stage; every ``thin``-th eligible state is kept (the thin-th, 2 thin-th,
...), so without cycles the kept states are ``θ_{burn_in + j thin}``, j = 1..(n_steps -
burn_in) // thin. They are stored (``kept_states_`` ``[K, P]``).

Predictive samples
------------------
Each draw is one kept state (a whole function) evaluated at X; regression draws carry
their own σ. The sample seed picks a permutation ``perm`` of the K kept states
(``numpy.random.default_rng(seed)``) and draw s is state ``perm[s mod K]``: S <= K gives S
distinct states, S > K cycles through all of them (every block of K consecutive draws holds
each state once), as ``ensemble`` does with its members.

Where this departs from the papers
----------------------------------
- Regression noise: the papers have no such model; σ is sampled jointly as above.
- Defaults of ``step_size_a``/``step_size_b`` (the papers tune them per problem): see the
  adapters' docstrings. A run whose θ becomes non-finite raises ``RuntimeError`` naming the
  step size rather than returning NaN draws.
- SGHMC's empirical B̂ is clipped to α (the paper only states the requirement).
"""

from __future__ import annotations

import math
import time
from itertools import pairwise
from numbers import Integral
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from uqbench.interface import ClassificationSamples, RegressionSamples
from uqbench_adapters._validation import check_hidden, is_positive_int, is_real
from uqbench_adapters.torch._base import TorchAdapter, activation, seeded, torch_device

_NOISE_INIT = 0.5
NOISE_ESTIMATES = ("zero", "empirical")


# -- schedules and single updates (public: the tests check them directly) ------------------
def polynomial_step_sizes(n_steps: int, a: float, b: float, gamma: float) -> np.ndarray:
    """Welling & Teh's ``ε_t = a (b + t)^{-γ}`` for t = 0..n_steps-1, ``[n_steps]`` float64."""
    t = np.arange(int(n_steps), dtype=np.float64)
    return float(a) * (float(b) + t) ** (-float(gamma))


def cyclical_step_sizes(n_steps: int, a: float, n_cycles: int) -> np.ndarray:
    """Zhang et al. (2020) Eq. (1): ``(a/2)[cos(π mod(k, L) / L) + 1]``, L = ceil(K / M); ``[K]``."""
    length = math.ceil(int(n_steps) / int(n_cycles))
    k = np.arange(int(n_steps))
    return 0.5 * float(a) * (np.cos(np.pi * (k % length) / length) + 1.0)


def cyclical_sampling_stage(n_steps: int, n_cycles: int, exploration_fraction: float) -> np.ndarray:
    """``[K]`` bool: True where ``mod(k, L) / L >= β`` (the sampling stage of each cycle)."""
    length = math.ceil(int(n_steps) / int(n_cycles))
    k = np.arange(int(n_steps))
    return (k % length) / length >= float(exploration_fraction)


def sgld_step(
    theta: torch.Tensor, grad_potential: torch.Tensor, step_size: float, temperature: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """One SGLD update (Welling & Teh Eq. 4) of θ ``[P]`` given ``∇Ũ(θ)`` ``[P]``.

    Returns ``(θ - (ε/2) ∇Ũ + η, η)`` with ``η ~ N(0, ε T I)`` drawn from torch's RNG.
    """
    noise = torch.randn_like(theta).mul_(math.sqrt(step_size * temperature))
    return theta - (0.5 * step_size) * grad_potential + noise, noise


def sghmc_step(
    theta: torch.Tensor,
    v: torch.Tensor,
    grad_potential: torch.Tensor,
    lr: float,
    friction: float,
    beta_hat: torch.Tensor | float,
    temperature: float,
    *,
    inject_noise: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One SGHMC update (Chen et al. Eq. 15, M = I) with ``∇Ũ`` ``[P]`` taken at θ ``[P]``.

    ``v' = (1 - α) v - η ∇Ũ + N(0, 2 (α - β̂) η T)`` (no noise if ``inject_noise`` is
    False: the exploration stage of cSG-MCMC), ``θ' = θ + v'``. Returns ``(θ', v', noise)``.
    """
    if inject_noise:
        var = 2.0 * (friction - beta_hat) * lr * temperature
        std = math.sqrt(var) if isinstance(var, float) else var.sqrt()
        noise = torch.randn_like(theta) * std
    else:
        noise = torch.zeros_like(theta)
    v = (1.0 - friction) * v - lr * grad_potential + noise
    return theta + v, v, noise


class FlatMLP(nn.Module):
    """The MLP as a function of one flat parameter vector θ ``[P]`` or ``[S, P]``.

    θ holds each layer's packed weights ``[n_in + 1, n_out]`` (last row: bias) flattened
    and concatenated, then ``log σ`` ``[D]`` when the regression noise is sampled.
    ``theta`` (a parameter) holds the initial state.
    """

    def __init__(self, n_in: int, hidden: tuple[int, ...], n_out: int, act: str, learn_noise: bool) -> None:
        super().__init__()
        self.widths = (n_in, *hidden, n_out)
        self.shapes = [(a + 1, b) for a, b in pairwise(self.widths)]
        self.n_weights = sum(a * b for a, b in self.shapes)
        self.n_out = n_out
        self.learn_noise = learn_noise
        self.act = activation(act)
        parts = []
        for a, b in self.shapes:
            bound = 1.0 / math.sqrt(a - 1)  # nn.Linear's default for weight and bias
            parts.append(torch.empty(a * b).uniform_(-bound, bound))
        if learn_noise:
            parts.append(torch.full((n_out,), math.log(_NOISE_INIT)))
        self.theta = nn.Parameter(torch.cat(parts))

    def forward(self, theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """Outputs ``[N, out]`` for θ ``[P]`` or ``[S, N, out]`` for θ ``[S, P]``; X ``[N, F]``."""
        h, start = X, 0
        lead = theta.shape[:-1]
        for i, (a, b) in enumerate(self.shapes):
            if i:
                h = self.act(h)
            W = theta[..., start : start + a * b].reshape(*lead, a, b)
            start += a * b
            h = torch.matmul(h, W[..., :-1, :]) + W[..., -1:, :]
        return h

    def log_noise(self, theta: torch.Tensor) -> torch.Tensor:
        """``log σ`` ``[..., D]`` (sampled noise only)."""
        return theta[..., self.n_weights :]


class SGMCMCAdapter(TorchAdapter):
    """Base of ``sgld`` and ``sghmc`` (not registered itself); see the module docstring.

    Parameters
    ----------
    hidden : hidden widths; ``()`` gives a linear model (Bayesian linear / softmax regression).
    activation : ``"relu"``, ``"tanh"``, ``"gelu"`` or ``"silu"``.
    batch_size : minibatch size n (capped at N; ``>= N`` gives full-batch gradients).
    prior_std : std of the N(0, prior_std²) prior on every weight and bias.
    noise_std : regression: a fixed noise std (standardized units), or None to sample σ.
    noise_prior_scale : scale of the HalfNormal prior on σ (when sampled).
    n_steps : total sampler steps (each one minibatch gradient).
    burn_in : steps before any state is kept.
    thin : keep every ``thin``-th eligible state.
    step_size_a, step_size_b, step_size_gamma : ``a (b + t)^{-γ}``.
    temperature : T; the injected noise variance is multiplied by exactly T (1: posterior).
    device : ``"cpu"``, ``"cuda"``, ``"cuda:N"`` or ``"auto"``.

    Attributes
    ----------
    kept_states_ : ``[K, P]`` float32 tensor on ``device_``, the kept θ.
    diagnostics_ : dict (step sizes, kept count, burn-in, thinning, noise/drift ratio, σ).
    n_parameters_ : P.
    """

    # Set by subclasses: the schedule default.
    _default_gamma: ClassVar[float]

    def __init__(
        self,
        *,
        hidden: tuple[int, ...] = (50,),
        activation: str = "relu",
        batch_size: int = 64,
        prior_std: float = 1.0,
        noise_std: float | None = None,
        noise_prior_scale: float = 1.0,
        n_steps: int = 4000,
        burn_in: int | None = None,
        thin: int = 20,
        step_size_a: float = 6e-3,
        step_size_b: float = 100.0,
        step_size_gamma: float = 0.55,
        temperature: float = 1.0,
        device: str = "cpu",
    ) -> None:
        self.hidden = hidden
        self.activation = activation
        self.batch_size = batch_size
        self.prior_std = prior_std
        self.noise_std = noise_std
        self.noise_prior_scale = noise_prior_scale
        self.n_steps = n_steps
        self.burn_in = burn_in
        self.thin = thin
        self.step_size_a = step_size_a
        self.step_size_b = step_size_b
        self.step_size_gamma = step_size_gamma
        self.temperature = temperature
        self.device = device

    # -- validation ----------------------------------------------------------------------
    def _validate_params(self) -> None:
        self.hidden = check_hidden(self.hidden)
        activation(self.activation)  # ValueError naming the choices
        for name in ("batch_size", "n_steps", "thin"):
            if not is_positive_int(getattr(self, name)):
                raise ValueError(f"{name} must be a positive int, got {getattr(self, name)!r}")
        b = self.burn_in
        if b is not None and (isinstance(b, bool) or not isinstance(b, Integral) or b < 0):
            raise ValueError(f"burn_in must be an int >= 0 or None, got {b!r}")
        if b is not None and b >= self.n_steps:
            raise ValueError(f"burn_in ({b}) must be < n_steps ({self.n_steps})")
        for name, optional in (
            ("prior_std", False),
            ("noise_prior_scale", False),
            ("noise_std", True),
            ("step_size_a", False),
            ("temperature", False),
        ):
            value = getattr(self, name)
            if optional and value is None:
                continue
            if not is_real(value) or not 0.0 < float(value) < math.inf:
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not is_real(self.step_size_b) or not 0.0 < float(self.step_size_b) < math.inf:
            raise ValueError(f"step_size_b must be a finite number > 0, got {self.step_size_b!r}")
        if not is_real(self.step_size_gamma) or not 0.0 <= float(self.step_size_gamma) <= 1.0:
            raise ValueError(f"step_size_gamma must be in [0, 1], got {self.step_size_gamma!r}")
        self.device_ = torch_device(self.device)

    def _burn_in(self) -> int:
        """``burn_in``, or for None half of ``n_steps`` (0 with cycles: see SGHMC)."""
        return int(self.n_steps) // 2 if self.burn_in is None else int(self.burn_in)

    def _check_fitted(self) -> None:
        if not hasattr(self, "kept_states_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")

    # -- hooks ---------------------------------------------------------------------------
    def _build(self, n_in: int, n_out: int) -> nn.Module:
        learn_noise = self.task_ == "regression" and self.noise_std is None
        return FlatMLP(n_in, tuple(self.hidden), n_out, self.activation, learn_noise)

    def _potential(self, theta: torch.Tensor, xb: torch.Tensor, yb: torch.Tensor, n_train: int) -> torch.Tensor:
        """Ũ(θ) of the module docstring for minibatch ``xb`` ``[n, F]``, ``yb``: a scalar."""
        net = self.model_
        w = theta[: net.n_weights]
        energy = (0.5 / float(self.prior_std) ** 2) * w.dot(w)
        out = net(theta, xb)
        scale = n_train / len(xb)
        if self.task_ == "classification":
            return energy + scale * F.cross_entropy(out, yb, reduction="sum")
        sq = (yb - out).square().sum(dim=0)  # [D]
        if not net.learn_noise:
            return energy + scale * (0.5 / float(self.noise_std) ** 2) * sq.sum()
        u = net.log_noise(theta)
        energy = energy - u.sum() + (0.5 / float(self.noise_prior_scale) ** 2) * torch.exp(2.0 * u).sum()
        return energy + scale * (len(xb) * u.sum() + 0.5 * (sq * torch.exp(-2.0 * u)).sum())

    def _loss(self, xb: torch.Tensor, yb: torch.Tensor, n_train: int) -> torch.Tensor:
        """Ũ at the model's current θ (the quantity whose gradient drives the dynamics)."""
        return self._potential(self.model_.theta, xb, yb, n_train)

    def _step_schedule(self) -> tuple[np.ndarray, np.ndarray]:
        """(step sizes ``[n_steps]``, sampling-stage mask ``[n_steps]``)."""
        eps = polynomial_step_sizes(self.n_steps, self.step_size_a, self.step_size_b, self.step_size_gamma)
        return eps, np.ones(int(self.n_steps), dtype=bool)

    def _init_sampler(self, theta: torch.Tensor, eps0: float) -> None:
        """Set up any auxiliary state (momentum) before the first step."""

    def _transition(
        self, theta: torch.Tensor, grad: torch.Tensor, eps: float, sampling: bool, t: int, batch: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """One step: (new θ, drift, injected noise)."""
        raise NotImplementedError

    # -- fit -----------------------------------------------------------------------------
    def fit(
        self, X: np.ndarray, y: np.ndarray, *, seed: int, n_classes: int | None = None
    ) -> SGMCMCAdapter:
        """Run the sampler on ``X`` ``[N, F]`` and ``y`` (``[N, D]`` floats or ``[N]`` classes).

        ``n_classes``: the dataset's number of classes (default: the labels' max + 1).
        Sets ``kept_states_`` ``[K, P]``, ``diagnostics_`` and ``n_parameters_``.
        """
        self._validate_params()
        Xt, yt = self._training_tensors(X, y, n_classes)
        device = self.device_
        n = len(Xt)
        self._n_train = n
        batch = min(int(self.batch_size), n)
        eps, sampling = self._step_schedule()
        eligible = sampling & (np.arange(1, int(self.n_steps) + 1) > self._burn_in())
        keep = np.zeros_like(eligible)
        keep[np.flatnonzero(eligible)[int(self.thin) - 1 :: int(self.thin)]] = True
        if not keep.any():
            raise ValueError(
                f"no state would be kept: n_steps={self.n_steps}, burn_in={self._burn_in()}, thin={self.thin}"
                + (" (the sampling stages are too short)" if not sampling.all() else "")
            )
        kept: list[torch.Tensor] = []
        ratios: list[torch.Tensor] = []
        t0 = time.perf_counter()
        with seeded(seed, device):
            self.model_ = self._build(self.n_features_in_, self.n_outputs_)
            theta = self.model_.theta.detach().clone()
            self._init_sampler(theta, float(eps[0]))
            batches: list[torch.Tensor] = []
            for t in range(int(self.n_steps)):
                if not batches:
                    batches = self._epoch_batches(n, batch)[::-1]
                idx = batches.pop()
                xb, yb = Xt[idx], yt[idx]
                theta.requires_grad_(True)
                (grad,) = torch.autograd.grad(self._potential(theta, xb, yb, n), theta)
                theta = theta.detach()
                theta, drift, noise = self._transition(theta, grad, float(eps[t]), bool(sampling[t]), t, (xb, yb))
                if eligible[t]:
                    ratios.append(noise.norm() / drift.norm().clamp_min(1e-30))
                if keep[t]:
                    kept.append(theta.clone())
        seconds = time.perf_counter() - t0
        states = torch.stack(kept)
        if not bool(torch.isfinite(states).all()):
            raise RuntimeError(
                f"{type(self).__name__} diverged (non-finite θ) with step sizes {eps[0]:.3g} -> {eps[-1]:.3g}; "
                "lower step_size_a"
            )
        self.kept_states_ = states
        self.n_parameters_ = int(states.shape[1])
        self.diagnostics_ = self._diagnostics(eps, sampling, torch.stack(ratios) if ratios else None, seconds)
        return self

    def _diagnostics(
        self, eps: np.ndarray, sampling: np.ndarray, ratios: torch.Tensor | None, seconds: float
    ) -> dict[str, Any]:
        r = ratios.double().cpu().numpy() if ratios is not None else np.array([math.nan])
        out: dict[str, Any] = {
            "step_size_first": float(eps[0]),
            "step_size_last": float(eps[-1]),
            "n_steps": int(self.n_steps),
            "n_kept": len(self.kept_states_),
            "burn_in": self._burn_in(),
            "thin": int(self.thin),
            "temperature": float(self.temperature),
            # ||injected noise|| / ||gradient drift|| per eligible step (median and mean).
            "noise_to_drift_median": float(np.median(r)),
            "noise_to_drift_mean": float(np.mean(r)),
            "sampling_seconds": float(seconds),
        }
        if self.task_ == "regression" and self.model_.learn_noise:
            sigma = torch.exp(self.model_.log_noise(self.kept_states_)).double().cpu().numpy()
            out.update(
                noise_std_mean=float(sigma.mean()),
                noise_std_sd=float(sigma.std()),
                noise_std_min=float(sigma.min()),
                noise_std_max=float(sigma.max()),
            )
        return out

    # -- prediction ----------------------------------------------------------------------
    def sample_predictive(
        self, X: np.ndarray, *, n_samples: int, seed: int
    ) -> RegressionSamples | ClassificationSamples:
        """``n_samples`` kept states evaluated at ``X`` ``[N, F]``: draw s is state ``perm[s mod K]``.

        Returns loc/scale ``[S, N, D]`` (regression, each draw with its own σ) or probs
        ``[S, N, C]``.
        """
        self._check_fitted()
        if isinstance(n_samples, bool) or not isinstance(n_samples, int | np.integer) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
        K = len(self.kept_states_)
        perm = np.random.default_rng(seed).permutation(K)
        order = perm[np.arange(int(n_samples)) % K]
        self._draw_order = torch.as_tensor(order, dtype=torch.long, device=self.device_)
        self._draw_cursor = 0
        return super().sample_predictive(X, n_samples=n_samples, seed=seed)

    def _widest(self) -> int:
        return max((*tuple(self.hidden), 2 * self.n_outputs_, 1))

    def _sample_chunk(self, X: torch.Tensor, n_draws: int) -> torch.Tensor:
        """The next ``n_draws`` states of the draw order at X: ``[n, N, out]`` (regression:
        ``out = 2 D``, the loc then log σ)."""
        idx = self._draw_order[self._draw_cursor : self._draw_cursor + n_draws]
        self._draw_cursor += n_draws
        theta = self.kept_states_[idx]
        out = self.model_(theta, X)
        if self.task_ == "classification":
            return out
        if self.model_.learn_noise:
            log_sigma = self.model_.log_noise(theta)
        else:
            log_sigma = torch.full((n_draws, out.shape[-1]), math.log(float(self.noise_std)), device=out.device)
        return torch.cat([out, log_sigma[:, None, :].expand_as(out)], dim=-1)

    def _regression_head(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        loc, log_sigma = out.chunk(2, dim=-1)
        return loc, torch.exp(log_sigma)


class SGLDAdapter(SGMCMCAdapter):
    """SGLD (Welling & Teh 2011): Langevin dynamics on minibatch gradients, noise variance ε_t·T.

    Parameters: see ``SGMCMCAdapter``. Defaults: γ = 0.55 (the paper); ``a = 6e-3``,
    ``b = 100`` give ε_0 = 4.8e-4 falling to 6.2e-5 after the default 4,000 steps
    (Welling & Teh tune a and b per problem and give no defaults): b = 100 keeps the first
    steps from being the largest by far (b = 1 would start 12.6x higher), and of the values
    tried on ``toy-gap`` (50 hidden units, sampled σ; a in {1e-3, 3e-3, 6e-3} with b = 100,
    1e-2 with b = 1000) this one gave the best test NLL while staying stable
    (the stability limit is ε < 4 / λ_max, λ_max the largest curvature of U, which grows
    like N / σ²). Larger or less noisy data sets need a smaller ``step_size_a``; see the
    suite budgets.
    """

    def _transition(
        self, theta: torch.Tensor, grad: torch.Tensor, eps: float, sampling: bool, t: int, batch: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        new, noise = sgld_step(theta, grad, eps, float(self.temperature))
        return new, (0.5 * eps) * grad, noise


class SGHMCAdapter(SGMCMCAdapter):
    """SGHMC (Chen, Fox & Guestrin 2014), Eq. (15); optional cyclical schedule (Zhang et al. 2020).

    Parameters
    ----------
    hidden, activation, batch_size, prior_std, noise_std, noise_prior_scale, n_steps,
    burn_in, thin, temperature, device : see ``SGMCMCAdapter``.
    step_size_a, step_size_b, step_size_gamma : the learning rate η_t = a (b + t)^{-γ};
        default γ = 0 (constant η = a, as in Chen et al.'s experiments), a = 5e-5: on
        ``toy-gap`` (50 hidden units, sampled σ) 2e-4 diverged at α = 0.1 and 1e-4 ran hot
        (the unmodelled minibatch-gradient noise η² V exceeds the injected 2αη when B̂ = 0,
        inflating σ); with ``cyclical`` a is the peak η of each cycle.
    friction : α = ε M⁻¹ C, in (0, 1]; default 0.1 (α is "1 - momentum"). Chen et al.'s
        MNIST run used α = 0.01 with η = 2e-6; on these small problems a larger α damps the
        excess gradient noise (see above) and mixes faster per step.
    noise_estimate : ``"zero"`` (β̂ = 0, default) or ``"empirical"`` (diagonal empirical
        Fisher, clipped to α).
    resample_momentum_every : redraw v ~ N(0, η T) every this many steps; 0 never.
    cyclical : use Zhang et al.'s cosine schedule with peak η = ``step_size_a``.
    n_cycles : M, the number of cycles.
    exploration_fraction : β, the noise-free exploration share of each cycle, in [0, 1).
    """

    def __init__(
        self,
        *,
        hidden: tuple[int, ...] = (50,),
        activation: str = "relu",
        batch_size: int = 64,
        prior_std: float = 1.0,
        noise_std: float | None = None,
        noise_prior_scale: float = 1.0,
        n_steps: int = 4000,
        burn_in: int | None = None,
        thin: int = 20,
        step_size_a: float = 5e-5,
        step_size_b: float = 1.0,
        step_size_gamma: float = 0.0,
        temperature: float = 1.0,
        friction: float = 0.1,
        noise_estimate: str = "zero",
        resample_momentum_every: int = 0,
        cyclical: bool = False,
        n_cycles: int = 4,
        exploration_fraction: float = 0.8,
        device: str = "cpu",
    ) -> None:
        super().__init__(
            hidden=hidden,
            activation=activation,
            batch_size=batch_size,
            prior_std=prior_std,
            noise_std=noise_std,
            noise_prior_scale=noise_prior_scale,
            n_steps=n_steps,
            burn_in=burn_in,
            thin=thin,
            step_size_a=step_size_a,
            step_size_b=step_size_b,
            step_size_gamma=step_size_gamma,
            temperature=temperature,
            device=device,
        )
        self.friction = friction
        self.noise_estimate = noise_estimate
        self.resample_momentum_every = resample_momentum_every
        self.cyclical = cyclical
        self.n_cycles = n_cycles
        self.exploration_fraction = exploration_fraction

    def _validate_params(self) -> None:
        super()._validate_params()
        if not is_real(self.friction) or not 0.0 < float(self.friction) <= 1.0:
            raise ValueError(f"friction must be in (0, 1], got {self.friction!r}")
        if self.noise_estimate not in NOISE_ESTIMATES:
            raise ValueError(f"noise_estimate must be one of {NOISE_ESTIMATES}, got {self.noise_estimate!r}")
        m = self.resample_momentum_every
        if isinstance(m, bool) or not isinstance(m, Integral) or m < 0:
            raise ValueError(f"resample_momentum_every must be an int >= 0, got {m!r}")
        if not isinstance(self.cyclical, bool):
            raise ValueError(f"cyclical must be a bool, got {self.cyclical!r}")
        if not is_positive_int(self.n_cycles) or self.n_cycles > self.n_steps:
            raise ValueError(f"n_cycles must be an int in [1, n_steps], got {self.n_cycles!r}")
        b = self.exploration_fraction
        if not is_real(b) or not 0.0 <= float(b) < 1.0:
            raise ValueError(f"exploration_fraction must be in [0, 1), got {b!r}")

    def _burn_in(self) -> int:
        if self.burn_in is None and self.cyclical:
            return 0
        return super()._burn_in()

    def _step_schedule(self) -> tuple[np.ndarray, np.ndarray]:
        if not self.cyclical:
            return super()._step_schedule()
        K, M = int(self.n_steps), int(self.n_cycles)
        return (
            cyclical_step_sizes(K, self.step_size_a, M),
            cyclical_sampling_stage(K, M, self.exploration_fraction),
        )

    def _init_sampler(self, theta: torch.Tensor, eps0: float) -> None:
        self._v = torch.randn_like(theta) * math.sqrt(eps0 * float(self.temperature))
        self._clipped: list[torch.Tensor] = []

    def _beta_hat(self, theta: torch.Tensor, eps: float, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor | float:
        """β̂ = (η/2) V̂, V̂ = N²/n · Var_i[∇ log p(y_i | x_i, θ)] per coordinate, clipped to [0, α]."""
        if self.noise_estimate == "zero":
            return 0.0
        xb, yb = batch
        net = self.model_

        def nll_one(th: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            # the potential of one example with N/n = 1 and the prior removed.
            out = net(th, x[None])
            if self.task_ == "classification":
                return F.cross_entropy(out, y[None], reduction="sum")
            sq = (y[None] - out).square().sum(dim=0)
            if not net.learn_noise:
                return (0.5 / float(self.noise_std) ** 2) * sq.sum()
            u = net.log_noise(th)
            return u.sum() + 0.5 * (sq * torch.exp(-2.0 * u)).sum()

        per_example = torch.func.vmap(torch.func.grad(nll_one), in_dims=(None, 0, 0))(theta, xb, yb)  # [n, P]
        n_batch = len(xb)
        var = per_example.var(dim=0, unbiased=True) if n_batch > 1 else torch.zeros_like(theta)
        n_train = self._n_train
        beta = 0.5 * eps * (n_train**2 / n_batch) * var
        alpha = float(self.friction)
        self._clipped.append((beta > alpha).float().mean())
        return beta.clamp(max=alpha)

    def fit(
        self, X: np.ndarray, y: np.ndarray, *, seed: int, n_classes: int | None = None
    ) -> SGHMCAdapter:
        """See ``SGMCMCAdapter.fit``."""
        super().fit(X, y, seed=seed, n_classes=n_classes)
        if self.cyclical:
            self.diagnostics_.update(
                n_cycles=int(self.n_cycles), exploration_fraction=float(self.exploration_fraction)
            )
        self.diagnostics_["friction"] = float(self.friction)
        if self._clipped:
            self.diagnostics_["beta_hat_clipped_fraction"] = float(torch.stack(self._clipped).mean())
        del self._v, self._clipped
        return self

    def _transition(
        self, theta: torch.Tensor, grad: torch.Tensor, eps: float, sampling: bool, t: int, batch: tuple[torch.Tensor, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        m = int(self.resample_momentum_every)
        temperature = float(self.temperature)
        if m and t and t % m == 0:
            self._v = torch.randn_like(theta) * math.sqrt(eps * temperature)
        beta = self._beta_hat(theta, eps, batch) if sampling else 0.0
        theta, self._v, noise = sghmc_step(
            theta, self._v, grad, eps, float(self.friction), beta, temperature, inject_noise=sampling
        )
        return theta, eps * grad, noise
