"""``hmc``: the reference posterior of a small Bayesian MLP, sampled by NUTS (Pyro).

Slow by nature, so the adapter is *opt-in*: a suite runs it only when it is named
(``opt_in = True``). Pyro's NUTS costs about 2 ms of CPU per gradient on one core, almost
independent of the data size up to the small UCI sets (its Python overhead dominates), and at
the default tree depth 8 every iteration takes the full 255 leapfrog steps on ``toy-gap``,
``uci-yacht`` and ``uci-boston``: one fit at the defaults (4 chains x 600 iterations) is about
17-20 CPU minutes. The defaults converge in function space on ``toy-gap``; the UCI posteriors
need more draws (see ``diagnostics_``). Needs the extra ``uqbench[hmc]`` (Pyro); Pyro is
imported on the first ``fit`` (or by :meth:`HMCAdapter.warm_up`), never when listing adapters.

Model, in the standardized units the harness fits in
---------------------------------------------------
``f_θ`` is an MLP ``n_in -> hidden... -> D`` (one hidden layer of 50 ReLU units by default;
``hidden=()`` is Bayesian linear regression) with every weight and bias ``~ N(0, prior_std²)``
and ``prior_std = 1.0``: the prior of the variational adapters (``bbb``, ``flipout``,
``lrt``, and their defaults). The noise is homoscedastic Gaussian, ``y_d ~ N(f_θ(x)_d, σ_d²)``,
one σ per output, with ``σ_d ~ HalfNormal(noise_prior_scale)``, ``noise_prior_scale = 1.0``.
The targets are standardized, so this says "the noise is at most about the targets' spread"
and is otherwise nearly flat (its density at σ = 0.1 and σ = 1 differ by a factor 1.6). PBP's
Gamma(6, 6) on the noise precision (Hernández-Lobato & Adams, 2015) was not used: it puts 95%
of its mass on σ in [0.7, 1.7] and so pulls σ up on data such as ``toy-gap`` (σ ≈ 0.1-0.3
standardized). The variational adapters fit σ as a point estimate; ``noise_std`` fixes σ here.

Sampler
-------
Pyro's NUTS on the flat vector ``θ = (packed weights, log σ)`` of length P, with a hand-written
potential (the negative log joint; ``log σ`` carries the Jacobian) and a diagonal mass matrix
and step size adapted during the warm-up, which is discarded. Chains run one after the other in
this process, never as Pyro's multiprocessing chains (the harness gives each cell one core).
Chain ``c`` is seeded from the fit seed (``pyro.set_rng_seed``, inside a forked RNG so the
caller's torch, numpy and ``random`` states are untouched) and starts from its own random point
``θ ~ N(0, init_std²)``, ``σ = 0.5``.

Diagnostics
-----------
Rank-normalized split R-hat and bulk effective sample size (Vehtari et al., 2021): Pyro's
``split_gelman_rubin`` and ``effective_sample_size`` (on split chains) applied to the
normal scores of the pooled ranks. They are computed twice:

- in *function space*, on ``f_θ(x)`` at the first 50 training inputs: ``rhat_max``,
  ``ess_bulk_min``. ``converged`` uses these;
- in function space away from the data, at those inputs times 2 (standardized inputs, so
  twice as far from the data's centre): ``rhat_max_extrapolation``,
  ``ess_bulk_min_extrapolation``. The prior dominates there and mixes slowest, so these
  are the first to show that the chains have not explored the posterior's spread, which
  is what out-of-distribution uncertainty is measured from; recorded, not used in ``converged``;
- in *parameter space*, over every weight and log σ: ``rhat_max_params``,
  ``ess_bulk_min_params``, and for the noise alone ``rhat_noise``, ``ess_bulk_noise``.

A BNN posterior is invariant to permuting the hidden units, and chains settle in different
(equivalent or not) modes, so parameter R-hat is routinely far above 1 while the chains agree
on the predictions; the predictive is what the benchmark consumes, so convergence is judged in
function space, as in Izmailov et al. (2021), "What are Bayesian neural network posteriors
really like?". ``converged`` is ``rhat_max < 1.1`` and ``ess_bulk_min >= 100``; when it is
False ``fit`` warns (RuntimeWarning) but keeps the draws.

Caching
-------
With ``cache_dir`` (or, when that is None, the environment variable ``UQBENCH_CACHE_DIR``)
the draws and diagnostics are stored in ``<dir>/hmc-<key>.npz``, the key hashing the data,
the seed, every hyperparameter and the Pyro and torch versions; a later fit with the same key
loads them instead of sampling (``diagnostics_["from_cache"]`` is then True and
``sampling_seconds`` is that of the original run).
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import random
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from itertools import pairwise
from numbers import Integral
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import torch
from torch.nn import functional as F

from uqbench import store
from uqbench.interface import RegressionSamples
from uqbench_adapters._validation import (
    check_hidden,
    is_positive_int,
    is_real,
    validate_fit_data,
    validate_X,
)

_ACTIVATIONS: dict[str, Callable[[torch.Tensor], torch.Tensor]] = {
    "relu": torch.relu,
    "tanh": torch.tanh,
    "gelu": F.gelu,
    "silu": F.silu,
}
CACHE_ENV = "UQBENCH_CACHE_DIR"
_CACHE_FORMAT = 1
# Function-space diagnostics use the first this many training inputs.
N_REFERENCE_INPUTS = 50
EXTRAPOLATION_FACTOR = 2.0
RHAT_THRESHOLD = 1.1
ESS_FLOOR = 100.0
_NOISE_INIT = 0.5
# Bound on the floats of one [s, N, width] chunk when evaluating draws.
_CHUNK_FLOATS = 8_000_000


def _pyro() -> Any:
    """Import Pyro (the optional dependency) on first use."""
    import pyro
    import pyro.infer
    import pyro.ops.stats

    return pyro


@contextmanager
def _seeded(seed: int) -> Iterator[None]:
    """``pyro.set_rng_seed(seed)`` for a block, restoring the caller's torch/numpy/random state."""
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    try:
        with torch.random.fork_rng(devices=[]):
            _pyro().set_rng_seed(int(seed))
            yield
    finally:
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)


class _Network:
    """The MLP as a function of the flat parameter vector θ ``[..., P]``.

    θ holds each layer's packed weights ``[n_in + 1, n_out]`` (last row: the bias), flattened
    and concatenated, then ``log σ`` ``[D]`` unless the noise is fixed.
    """

    def __init__(self, n_in: int, hidden: tuple[int, ...], n_out: int, act: str, learn_noise: bool) -> None:
        self.widths = (n_in, *hidden, n_out)
        self.shapes = [(a + 1, b) for a, b in pairwise(self.widths)]
        self.n_weights = sum(a * b for a, b in self.shapes)
        self.n_out = n_out
        self.learn_noise = learn_noise
        self.n_params = self.n_weights + (n_out if learn_noise else 0)
        self.act = _ACTIVATIONS[act]

    def layers(self, theta: torch.Tensor) -> list[torch.Tensor]:
        """Packed weights per layer, ``[..., n_in + 1, n_out]``."""
        out, start = [], 0
        for a, b in self.shapes:
            out.append(theta[..., start : start + a * b].reshape(*theta.shape[:-1], a, b))
            start += a * b
        return out

    def log_noise(self, theta: torch.Tensor) -> torch.Tensor:
        """``log σ`` ``[..., D]`` (learned noise only)."""
        return theta[..., self.n_weights :]

    def __call__(self, theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """Outputs ``[N, D]`` for θ ``[P]``, or ``[S, N, D]`` for θ ``[S, P]``; ``X`` ``[N, F]``."""
        h = X
        for i, W in enumerate(self.layers(theta)):
            if i:
                h = self.act(h)
            h = h @ W[..., :-1, :] + W[..., -1:, :]
        return h


class HMCAdapter:
    """Reference posterior of a small Bayesian MLP by NUTS (Pyro); regression only, opt-in.

    Parameters
    ----------
    hidden : widths of the hidden layers; ``()`` gives Bayesian linear regression.
    activation : ``"relu"``, ``"tanh"``, ``"gelu"`` or ``"silu"``.
    prior_std : standard deviation of the N(0, prior_std²) prior on every weight and bias.
    noise_std : fixed noise standard deviation (standardized units), or None to sample σ.
    noise_prior_scale : scale of the HalfNormal prior on σ (when ``noise_std`` is None).
    num_chains : chains, run one after the other.
    warmup_steps : NUTS warm-up iterations per chain (adaptation; discarded).
    num_samples : kept draws per chain.
    max_tree_depth : NUTS tree-depth cap (at most ``2**max_tree_depth - 1`` leapfrog steps).
    target_accept_prob : step-size adaptation target.
    init_std : chains start from ``θ ~ N(0, init_std²)``.
    jit_compile : trace the potential with ``torch.jit.trace``.
    cache_dir : directory caching the draws; None -> ``$UQBENCH_CACHE_DIR`` or no cache.

    Attributes
    ----------
    draws_ : ``[C, T, P]`` post-warm-up draws of θ (float64).
    noise_std_draws_ : ``[C, T, D]`` σ of each draw.
    diagnostics_ : dict of convergence and cost figures (see the module docstring).
    n_parameters_ : P, the dimension sampled.
    """

    tasks: ClassVar[frozenset[str]] = frozenset({"regression"})
    stochastic: ClassVar[bool] = True
    requires: ClassVar[tuple[str, ...]] = ("pyro",)
    install_hint: ClassVar[str] = "pip install 'uqbench[hmc]'"
    # Slow: a suite whose ``adapters`` is None ("every available adapter") should skip it.
    opt_in: ClassVar[bool] = True

    @classmethod
    def warm_up(cls) -> None:
        """Import Pyro now, so no cell's fit time pays for it (the harness calls this)."""
        _pyro()

    def __init__(
        self,
        *,
        hidden: tuple[int, ...] = (50,),
        activation: str = "relu",
        prior_std: float = 1.0,
        noise_std: float | None = None,
        noise_prior_scale: float = 1.0,
        num_chains: int = 4,
        warmup_steps: int = 300,
        num_samples: int = 300,
        max_tree_depth: int = 8,
        target_accept_prob: float = 0.8,
        init_std: float = 0.1,
        jit_compile: bool = False,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.hidden = hidden
        self.activation = activation
        self.prior_std = prior_std
        self.noise_std = noise_std
        self.noise_prior_scale = noise_prior_scale
        self.num_chains = num_chains
        self.warmup_steps = warmup_steps
        self.num_samples = num_samples
        self.max_tree_depth = max_tree_depth
        self.target_accept_prob = target_accept_prob
        self.init_std = init_std
        self.jit_compile = jit_compile
        self.cache_dir = cache_dir

    # -- validation ----------------------------------------------------------------------
    def _validate_params(self) -> None:
        self.hidden = check_hidden(self.hidden)
        if self.activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {self.activation!r}")
        for name, optional in (("prior_std", False), ("noise_prior_scale", False), ("init_std", False), ("noise_std", True)):
            value = getattr(self, name)
            if optional and value is None:
                continue
            if not is_real(value) or not 0.0 < float(value) < math.inf:
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        for name in ("num_chains", "warmup_steps", "max_tree_depth"):
            if not is_positive_int(getattr(self, name)):
                raise ValueError(f"{name} must be a positive int, got {getattr(self, name)!r}")
        if not is_positive_int(self.num_samples) or self.num_samples < 4:
            raise ValueError(f"num_samples must be an int >= 4 (split R-hat halves each chain), got {self.num_samples!r}")
        if not is_real(self.target_accept_prob) or not 0.0 < float(self.target_accept_prob) < 1.0:
            raise ValueError(f"target_accept_prob must be in (0, 1), got {self.target_accept_prob!r}")
        if not isinstance(self.jit_compile, bool):
            raise ValueError(f"jit_compile must be a bool, got {self.jit_compile!r}")
        if self.cache_dir is not None and not isinstance(self.cache_dir, str | os.PathLike):
            raise ValueError(f"cache_dir must be a path or None, got {self.cache_dir!r}")

    def _check_fitted(self) -> None:
        if not hasattr(self, "draws_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")

    # -- fit -----------------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: np.ndarray, *, seed: int) -> HMCAdapter:
        """Sample the posterior given ``X`` ``[N, F]`` and ``y`` ``[N, D]`` (floats).

        Runs ``num_chains`` NUTS chains (or loads their draws from the cache) and sets
        ``draws_`` ``[C, T, P]``, ``noise_std_draws_`` ``[C, T, D]`` and ``diagnostics_``.
        """
        self._validate_params()
        X, y, _ = validate_fit_data(self, X, y)
        if isinstance(seed, bool) or not isinstance(seed, Integral):
            raise ValueError(f"seed must be an int, got {seed!r}")
        X, y = X.astype(np.float64), y.astype(np.float64)
        self.n_features_in_, self.n_outputs_ = X.shape[1], y.shape[1]
        self._net = _Network(X.shape[1], self.hidden, y.shape[1], self.activation, self.noise_std is None)
        cache = self._cache_path(X, y, int(seed))
        if cache is not None and cache.is_file():
            draws, diagnostics = _load_cache(cache)
            diagnostics["from_cache"] = True
        else:
            draws, diagnostics = self._sample_posterior(X, y, int(seed))
            diagnostics["from_cache"] = False
            if cache is not None:
                _save_cache(cache, draws, diagnostics)
        self.draws_ = draws
        self.noise_std_draws_ = self._noise_std(torch.as_tensor(draws)).numpy()
        self.diagnostics_ = diagnostics
        self.n_parameters_ = self._net.n_params
        if not diagnostics["converged"]:
            warnings.warn(
                f"{type(self).__name__}: NUTS did not converge in function space "
                f"(R-hat max {diagnostics['rhat_max']:.3g} vs < {RHAT_THRESHOLD}, bulk ESS min "
                f"{diagnostics['ess_bulk_min']:.3g} vs >= {ESS_FLOOR:g}); raise warmup_steps or num_samples",
                RuntimeWarning,
                stacklevel=2,
            )
        return self

    def _potential(self, X: torch.Tensor, y: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
        """The negative log joint of θ ``[P]`` (up to a constant), a scalar."""
        net, n = self._net, X.shape[0]
        inv_prior_var = 1.0 / float(self.prior_std) ** 2
        half_inv_noise_prior = 0.5 / float(self.noise_prior_scale) ** 2
        fixed_inv_var = None if self.noise_std is None else 1.0 / float(self.noise_std) ** 2

        def potential(theta: torch.Tensor) -> torch.Tensor:
            w = theta[: net.n_weights]
            rss = (net(theta, X) - y).square().sum(dim=0)  # [D]
            energy = 0.5 * inv_prior_var * w.dot(w)
            if fixed_inv_var is not None:
                return energy + 0.5 * fixed_inv_var * rss.sum()
            u = net.log_noise(theta)  # log σ; p(u) = HalfNormal(σ) σ, the Jacobian
            return (
                energy
                + (n - 1) * u.sum()
                + 0.5 * (rss * torch.exp(-2.0 * u)).sum()
                + half_inv_noise_prior * torch.exp(2.0 * u).sum()
            )

        return potential

    def _sample_posterior(self, X: np.ndarray, y: np.ndarray, seed: int) -> tuple[np.ndarray, dict[str, Any]]:
        """Run the chains: (draws ``[C, T, P]``, diagnostics)."""
        pyro = _pyro()
        Xt, yt = torch.as_tensor(X), torch.as_tensor(y)
        net = self._net
        potential = self._potential(Xt, yt)
        if self.jit_compile:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                potential = torch.jit.trace(potential, torch.zeros(net.n_params, dtype=torch.float64), check_trace=False)
        n_evals = [0]

        def potential_fn(z: dict[str, torch.Tensor]) -> torch.Tensor:
            n_evals[0] += 1
            return potential(z["theta"])

        chain_seeds = np.random.SeedSequence(seed).generate_state(int(self.num_chains))
        draws, stats = [], []
        t0, c0 = time.perf_counter(), time.process_time()
        for chain_seed in chain_seeds:
            with _seeded(int(chain_seed)):
                init = float(self.init_std) * torch.randn(net.n_params, dtype=torch.float64)
                if net.learn_noise:
                    init[net.n_weights :] = math.log(_NOISE_INIT)
                chain: dict[str, Any] = {"evals": [n_evals[0]]}

                def hook(kernel: Any, _params: Any, stage: str, i: int, chain: dict[str, Any] = chain) -> None:
                    chain["evals"].append(n_evals[0])
                    if stage == "Sample":
                        chain["step_size"] = float(kernel.step_size)
                        chain["accept_prob"] = float(getattr(kernel, "_mean_accept_prob", math.nan))

                kernel = pyro.infer.NUTS(
                    potential_fn=potential_fn,
                    max_tree_depth=int(self.max_tree_depth),
                    target_accept_prob=float(self.target_accept_prob),
                )
                mcmc = pyro.infer.MCMC(
                    kernel,
                    num_samples=int(self.num_samples),
                    warmup_steps=int(self.warmup_steps),
                    initial_params={"theta": init},
                    num_chains=1,
                    disable_progbar=True,
                    hook_fn=hook,
                )
                mcmc.run()
                draws.append(mcmc.get_samples()["theta"].detach().numpy().astype(np.float64))
                chain["divergences"] = len(mcmc.diagnostics()["divergences"]["chain 0"])
                stats.append(chain)
        seconds, cpu_seconds = time.perf_counter() - t0, time.process_time() - c0
        theta = np.stack(draws)  # [C, T, P]
        evals = [np.diff(np.asarray(c["evals"]))[int(self.warmup_steps) :] for c in stats]
        diagnostics = {
            **self._diagnose(theta, Xt),
            "divergences": int(sum(c["divergences"] for c in stats)),
            "n_chains": int(self.num_chains),
            "n_warmup": int(self.warmup_steps),
            "n_draws": int(self.num_samples),
            "sampling_seconds": float(seconds),
            "sampling_cpu_seconds": float(cpu_seconds),
            "accept_prob_mean": float(np.mean([c["accept_prob"] for c in stats])),
            "step_size": [c["step_size"] for c in stats],
            "grad_evals_per_draw": float(np.mean(np.concatenate(evals))) if evals else math.nan,
        }
        return theta, diagnostics

    def _diagnose(self, theta: np.ndarray, X: torch.Tensor) -> dict[str, Any]:
        """Function-space and parameter-space R-hat and bulk ESS of draws ``[C, T, P]``."""
        C, T, P = theta.shape
        t = torch.as_tensor(theta)
        reference = X[:N_REFERENCE_INPUTS]
        with torch.no_grad():
            f = self._functions(t.reshape(C * T, P), reference)  # [C T, n, D]
            # The inputs standardized, 2x is as far again from the data's centre.
            f_far = self._functions(t.reshape(C * T, P), EXTRAPOLATION_FACTOR * reference)
        rhat_f, ess_f = rank_diagnostics(f.reshape(C, T, -1).numpy())
        rhat_far, ess_far = rank_diagnostics(f_far.reshape(C, T, -1).numpy())
        rhat_p, ess_p = rank_diagnostics(theta)
        out = {
            "rhat_max": _nanmax(rhat_f),
            "ess_bulk_min": _nanmin(ess_f),
            "rhat_max_extrapolation": _nanmax(rhat_far),
            "ess_bulk_min_extrapolation": _nanmin(ess_far),
            "rhat_max_params": _nanmax(rhat_p),
            "ess_bulk_min_params": _nanmin(ess_p),
            "rhat_noise": math.nan,
            "ess_bulk_noise": math.nan,
        }
        if self._net.learn_noise:
            out["rhat_noise"] = _nanmax(rhat_p[self._net.n_weights :])
            out["ess_bulk_noise"] = _nanmin(ess_p[self._net.n_weights :])
        out["converged"] = bool(out["rhat_max"] < RHAT_THRESHOLD and out["ess_bulk_min"] >= ESS_FLOOR)
        return out

    # -- prediction ----------------------------------------------------------------------
    def _functions(self, theta: torch.Tensor, X: torch.Tensor) -> torch.Tensor:
        """``f_θ(X)`` ``[S, N, D]`` for θ ``[S, P]``, in chunks bounding memory."""
        widest = max(self._net.widths)
        chunk = max(1, _CHUNK_FLOATS // max(1, X.shape[0] * widest))
        return torch.cat([self._net(theta[s : s + chunk], X) for s in range(0, len(theta), chunk)])

    def _noise_std(self, theta: torch.Tensor) -> torch.Tensor:
        """σ ``[..., D]`` of each θ ``[..., P]``."""
        if self._net.learn_noise:
            return torch.exp(self._net.log_noise(theta))
        return torch.full((*theta.shape[:-1], self._net.n_out), float(self.noise_std), dtype=torch.float64)

    def sample_predictive(self, X: np.ndarray, *, n_samples: int, seed: int) -> RegressionSamples:
        """``n_samples`` posterior draws evaluated at ``X`` ``[N, F]``.

        The draws are a seeded choice from the pooled post-warm-up chains, without
        replacement when ``n_samples <= C T`` and with replacement beyond that. Returns loc
        ``[S, N, D]`` = the network's output and scale ``[S, N, D]`` = the draw's σ, in the
        standardized target units the adapter was fitted in.
        """
        self._check_fitted()
        if isinstance(n_samples, bool) or not isinstance(n_samples, Integral) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
        X = validate_X(X, self.n_features_in_).astype(np.float64)
        pooled = self.draws_.reshape(-1, self.draws_.shape[-1])
        rng = np.random.default_rng(seed)
        index = rng.choice(len(pooled), size=int(n_samples), replace=int(n_samples) > len(pooled))
        theta = torch.as_tensor(pooled[index])
        with torch.no_grad():
            loc = self._functions(theta, torch.as_tensor(X))
            sigma = self._noise_std(theta)  # [S, D]
        scale = sigma[:, None, :].expand_as(loc).contiguous()
        return RegressionSamples(loc.numpy(), scale.numpy())

    # -- cache ---------------------------------------------------------------------------
    def _cache_path(self, X: np.ndarray, y: np.ndarray, seed: int) -> Path | None:
        root = self.cache_dir if self.cache_dir is not None else os.environ.get(CACHE_ENV) or None
        if root is None:
            return None
        import pyro  # the key names the sampler's version

        params = {k: v for k, v in vars(self).items() if not k.startswith("_") and not k.endswith("_") and k != "cache_dir"}
        header = json.dumps(
            {"format": _CACHE_FORMAT, "seed": seed, "params": params, "pyro": pyro.__version__,
             "torch": torch.__version__, "X": X.shape, "y": y.shape},
            sort_keys=True,
            default=str,
        )
        h = hashlib.sha256(header.encode())
        h.update(np.ascontiguousarray(X).tobytes())
        h.update(np.ascontiguousarray(y).tobytes())
        return Path(root).expanduser() / f"hmc-{h.hexdigest()[:24]}.npz"


def rank_diagnostics(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rank-normalized split R-hat and bulk ESS ``[K]`` of draws ``x`` ``[C, T, K]``.

    Vehtari et al. (2021): replace each column's pooled draws by the normal scores of their
    ranks, then Pyro's ``split_gelman_rubin`` and ``effective_sample_size`` (on the chains
    split in halves). Constant columns give NaN.
    """
    from scipy import special  # not scipy.stats: it takes seconds to import

    pyro = _pyro()
    C, T, K = x.shape
    ranks = _average_ranks(x.reshape(C * T, K))
    z = special.ndtri((ranks - 0.375) / (C * T + 0.25)).reshape(C, T, K)
    half = T // 2
    split = np.concatenate([z[:, :half], z[:, T - half :]])  # [2C, T/2, K]
    rhat = np.empty(K)
    ess = np.empty(K)
    # effective_sample_size builds a [T/4, T/4, k] tensor: bound it to ~4M floats.
    step = max(1, 4_000_000 // max(1, (half // 2) ** 2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        for s in range(0, K, step):
            zt = torch.as_tensor(z[:, :, s : s + step])
            rhat[s : s + step] = pyro.ops.stats.split_gelman_rubin(zt).numpy()
            ess[s : s + step] = pyro.ops.stats.effective_sample_size(torch.as_tensor(split[:, :, s : s + step])).numpy()
    # Stan's bound: tau >= 1 / log10(C T). Pyro's estimate can come out negative (tau < 0)
    # on short, anticorrelated chains; both cases take the bound.
    cap = C * T * math.log10(C * T)
    ess = np.where((ess < 0) | (ess > cap), cap, ess)
    constant = np.ptp(x.reshape(C * T, K), axis=0) == 0
    rhat[constant] = math.nan
    ess[constant] = math.nan
    return rhat, ess


def _average_ranks(a: np.ndarray) -> np.ndarray:
    """Ranks 1..M of each column of ``a`` ``[M, K]``, ties sharing their average rank.

    NUTS repeats a draw when it stays put, so ties do occur.
    """
    ranks = np.empty(a.shape, dtype=np.float64)
    for k in range(a.shape[1]):
        col = np.sort(a[:, k])
        lo = np.searchsorted(col, a[:, k], side="left")
        hi = np.searchsorted(col, a[:, k], side="right")
        ranks[:, k] = 0.5 * (lo + hi + 1)
    return ranks


def _nanmax(a: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    return float(np.nanmax(a)) if a.size and not np.all(np.isnan(a)) else math.nan


def _nanmin(a: np.ndarray) -> float:
    a = np.asarray(a, dtype=np.float64)
    return float(np.nanmin(a)) if a.size and not np.all(np.isnan(a)) else math.nan


def _save_cache(path: Path, draws: np.ndarray, diagnostics: dict[str, Any]) -> None:
    """Write atomically (a temporary file renamed), so a killed run leaves no torn cache."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, draws=draws, diagnostics=np.array(json.dumps(diagnostics)))
    store.write_atomic(path, buf.getvalue())


def _load_cache(path: Path) -> tuple[np.ndarray, dict[str, Any]]:
    with np.load(path, allow_pickle=False) as data:
        return np.array(data["draws"], dtype=np.float64), json.loads(str(data["diagnostics"]))
