"""``laplace``: the post-hoc Laplace approximation of Daxberger et al. (2021), "Laplace
Redux - Effortless Bayesian Deep Learning", through their library **laplace-torch**, with
the linearised (GLM) predictive of Immer et al. (2021), "Improving predictions of Bayesian
neural nets via local linearization", drawn as whole functions.

Needs laplace-torch and its curvature back-ends, installed with ``--no-deps`` (their
metadata asks for torchvision, which would replace the pinned CPU torch; no module used
here imports it). ``laplace`` is imported on the first ``fit`` (or by
:meth:`LaplaceAdapter.warm_up`), never when the adapters are listed.

Model and MAP (Laplace Redux, Eq. 1)
------------------------------------
The network is the ``deterministic`` adapter's MLP ``f_θ`` (``n_in -> hidden... -> out``,
``nn.Linear`` initialisation), trained by the same loop (Adam, ``epochs``, ``batch_size``,
``lr``, reshuffled minibatches), with the prior of the variational adapters: every weight
and bias ``~ N(0, prior_std²)`` (``prior_std = 1``). The MAP minimises

    L(D; θ) = -Σ_n log p(y_n | f_θ(x_n)) - log p(θ),

divided by N (the N fitting rows): the mean NLL of the ``deterministic`` adapter plus
``||θ||² / (2 prior_std² N)``, which is Adam's (coupled, L2) ``weight_decay =
1 / (prior_std² N)`` on the network's weights and biases. Regression learns a homoscedastic
noise scale jointly, by maximum likelihood and without decay, exactly as ``deterministic``
does; classification is the categorical likelihood on softmax logits.

Posterior (Laplace Redux, Eqs. 2-3)
-----------------------------------
A second-order expansion of ``L`` at ``θ_MAP`` gives ``q(θ) = N(θ_MAP, Σ)``, with

    Σ⁻¹ = P = H / σ² + λ I        (regression; classification: H + λ I),

where ``H`` is laplace-torch's generalised Gauss-Newton ``Σ_n J_nᵀ Λ_n J_n`` of the
log-likelihood (``Λ_n`` the likelihood's Hessian in the outputs: 1 for the Gaussian, the
softmax's ``diag(p) - p pᵀ``), summed over the fitting rows (its default back-end,
curvlinops), in the structure ``hessian_structure``:

- ``"kron"`` (default, as the paper's recommended setting): K-FAC, one Kronecker product
  per layer. laplace-torch sums each minibatch's Kronecker factors separately, so K-FAC
  depends on the batching: the curvature is computed in batches of
  ``HESSIAN_BATCH = 4096`` rows, i.e. in one batch on every dataset here but MNIST;
- ``"diag"``: the GGN's diagonal; ``"full"``: the whole GGN (P² floats).

``subset_of_weights`` picks the parameters treated probabilistically: ``"last_layer"``
(default, as the paper's recommendation; the rest stay at the MAP) or ``"all"``.
With ``hidden=()`` the network is a single linear layer and ``"last_layer"`` is ``"all"``
(laplace-torch refuses a one-module feature extractor); ``diagnostics_["subset_of_weights"]``
says which was used. ``λ`` is one scalar prior precision on every parameter in the subset
(the scalar prior of the MAP, and laplace-torch's default structure).

For a linear-Gaussian model (``hidden=()``, ``"all"``, ``"full"``) the GGN is the exact
Hessian, ``P = XᵀX / σ² + λ I`` on the inputs with a column of ones, and the Laplace
posterior *is* the conjugate Bayesian linear-regression posterior; the tests check that.

Prior precision and noise (Laplace Redux, Eq. 4 and §3 "hyperparameter tuning")
--------------------------------------------------------------------------------
``λ`` is tuned after the MAP ("post-hoc"), the paper's default way:

- ``prior_precision="gridsearch"`` (default): ``λ`` on a log grid (``prior_precision_grid``:
  ``(low, high, count)``, laplace-torch's ``10^-4 .. 10^4``, 100 points) minimising the
  negative log-likelihood of *the predictive this adapter samples* on the validation split
  (the harness passes ``X_val``, ``y_val``). Regression: the GLM predictive is exactly
  ``N(f_MAP(x), J Σ Jᵀ + σ² I)``, whose NLL is computed in closed form (the limit of the
  S-draw mixture). Classification: ``-log (1/M) Σ_m softmax(f_lin(x; θ_m))_y`` over
  ``M = n_grid_samples`` posterior draws θ_m, with the same standard-normal noise for
  every λ (common random numbers, seeded from the fit seed). laplace-torch's own
  ``optimize_prior_precision(method="gridsearch")`` is not used: its default loss for
  regression is the MSE of the predictive mean, which does not depend on λ at all, and
  for classification it scores the probit approximation rather than these draws. The
  validation split is not used to fit anything else.
  Without a validation split (``X_val`` None) it falls back to ``"marglik"``;
  ``diagnostics_["fell_back_to_marglik"]`` is then 1.
- ``prior_precision="marglik"``: maximise the Laplace log marginal likelihood (Eq. 4)
  ``log p(D|θ_MAP) + log p(θ_MAP) + ½ log det Σ + const`` in ``log λ``, with
  laplace-torch's ``optimize_prior_precision(method="marglik")`` and its defaults (Adam,
  100 steps, lr 0.1), started at the MAP's prior precision ``1 / prior_std²``.
- a number: ``λ`` fixed.

``sigma_noise`` (regression; laplace-torch's regression likelihood has one σ for every
output):

- ``"residual"`` (default): ``σ̂² = (1 / (N D)) Σ_n ||y_n - f_MAP(x_n)||²``, the maximum-
  likelihood noise at the MAP weights on the fitting rows (the value the MAP's learned σ
  tends to; with D > 1 outputs it pools them: the targets are standardized per output);
- ``"marglik"``: ``log σ`` and ``log λ`` maximise the marginal likelihood jointly (Adam,
  same steps and lr, started at ``σ̂`` and ``1 / prior_std²``), as in laplace-torch's
  regression example; with ``prior_precision="gridsearch"`` the grid then re-tunes λ
  with that σ fixed; with a fixed λ only σ moves. Only with ``"diag"`` or ``"full"``:
  laplace-torch 0.3's K-FAC scales its eigenvalues by ``math.pow(1/σ², ·)``, which turns
  σ into a float and silently drops the σ-gradient of ``log det P`` (``fit`` refuses the
  combination rather than optimise the wrong objective);
- a number: σ fixed.

Predictive (Immer et al. 2021, the GLM predictive; Laplace Redux §3 "predictive")
----------------------------------------------------------------------------------
Draw ``s`` samples ``θ_s ~ N(θ_MAP, Σ)`` (laplace-torch's ``sample``: ``P^(-1/2) ε`` for K-FAC,
``Σ^(1/2) ε`` otherwise) and evaluates the network *linearised* at the MAP,

    f_lin(x; θ_s) = f(x; θ_MAP) + J(x) (θ_s - θ_MAP),

at every input, by one forward-mode Jacobian-vector product per draw (no Jacobian is
stored). So each draw is one function, a fixed parameter vector applied to all inputs,
and at each input its marginal is exactly the GLM predictive ``N(f_MAP(x), J Σ Jᵀ)``
(tested against laplace-torch's own ``la(x, pred_type="glm")`` moments). For
``"last_layer"`` the model is linear in those parameters, so ``f_lin`` is the network
with the sampled last layer. Regression returns ``loc = f_lin``, ``scale = σ``;
classification ``softmax(f_lin)``.

laplace-torch's ``functional_samples``/``predictive_samples(pred_type="glm")`` are **not**
used: they draw ``f = f_MAP(x) + chol(J Σ Jᵀ) ε`` from each input's marginal with one ``ε``
shared by all inputs of a batch, which is neither a function draw nor independent across
inputs (its joint across inputs depends on how the inputs are batched).

Diagnostics
-----------
``diagnostics_``: ``prior_precision`` (the λ used), ``sigma_noise`` (regression),
``map_prior_precision`` (``1 / prior_std²``), ``log_marglik`` (Eq. 4 at the final λ, σ),
``val_nll`` (at the chosen λ, when a grid ran), ``grid_edge`` (1 when that λ is an end
of the grid: widen it), ``used_validation``,
``fell_back_to_marglik``, ``n_laplace_params``, ``map_seconds``, ``laplace_seconds``;
non-numeric (kept, not turned into rows by the harness): ``subset_of_weights``,
``hessian_structure``, ``prior_precision_method``, ``sigma_noise_method``,
``prior_precision_grid`` and ``val_nll_grid`` (lists).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Sequence
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.func import functional_call, jvp, vmap
from torch.utils.data import DataLoader, TensorDataset

from uqbench_adapters._validation import (
    is_positive_int,
    is_real,
    validate_fit_data,
)
from uqbench_adapters.torch._base import seeded
from uqbench_adapters.torch.deterministic import DeterministicAdapter

SUBSETS = ("last_layer", "all")
STRUCTURES = ("kron", "diag", "full")
TUNING = ("gridsearch", "marglik")
NOISE = ("residual", "marglik")
# Rows per curvature batch (K-FAC sums the Kronecker factors of each batch separately).
HESSIAN_BATCH = 4096
# laplace-torch's gridsearch defaults: 10^-4 .. 10^4, 100 points.
DEFAULT_GRID = (1e-4, 1e4, 100)
# laplace-torch's marglik defaults (optimize_prior_precision): Adam, 100 steps, lr 0.1.
MARGLIK_STEPS = 100
MARGLIK_LR = 0.1


def _laplace() -> Any:
    """Import laplace-torch (the optional dependency) on first use."""
    with warnings.catch_warnings():
        # asdl (imported by laplace) decorates functions with the deprecated torch.jit.script.
        warnings.simplefilter("ignore", DeprecationWarning)
        import laplace

    return laplace


class LaplaceAdapter(DeterministicAdapter):
    """Laplace approximation (laplace-torch) around the MAP MLP, linearised GLM predictive.

    Parameters
    ----------
    hidden, activation, epochs, batch_size, lr, device : the MAP network and its training,
        as ``deterministic`` (see ``TorchAdapter``).
    prior_std : the N(0, prior_std²) prior on every weight and bias under which the MAP is
        trained (Adam weight decay ``1 / (prior_std² N)``); ``1 / prior_std²`` also starts
        the marginal-likelihood search.
    subset_of_weights : ``"last_layer"`` (default) or ``"all"``.
    hessian_structure : ``"kron"`` (default), ``"diag"`` or ``"full"``.
    prior_precision : ``"gridsearch"`` (validation NLL; default), ``"marglik"`` or a fixed
        number > 0.
    sigma_noise : regression noise σ: ``"residual"`` (default), ``"marglik"`` or a number > 0.
    prior_precision_grid : ``(low, high, count)`` of the log-spaced grid.
    n_grid_samples : posterior draws per grid point for the classification validation NLL.

    Attributes
    ----------
    laplace_ : the fitted laplace-torch object.
    prior_precision_ : λ used. ``sigma_noise_`` : σ used (regression, else None).
    diagnostics_ : see the module docstring.
    """

    stochastic: ClassVar[bool] = True
    requires: ClassVar[tuple[str, ...]] = ("laplace", "asdl", "curvlinops", "backpack", "torchmetrics")
    install_hint: ClassVar[str] = (
        "pip install --no-deps laplace-torch==0.3 backpack-for-pytorch==1.7.1 "
        "curvlinops-for-pytorch==3.0.1 asdfghjkl==0.1a4 (and the uqbench[laplace] extra)"
    )

    @classmethod
    def warm_up(cls) -> None:
        """Import laplace-torch now, so no cell's fit time pays for it."""
        _laplace()

    def __init__(
        self,
        *,
        hidden: tuple[int, ...] = (50,),
        activation: str = "relu",
        epochs: int = 100,
        batch_size: int = 64,
        lr: float = 1e-2,
        prior_std: float = 1.0,
        subset_of_weights: str = "last_layer",
        hessian_structure: str = "kron",
        prior_precision: str | float = "gridsearch",
        sigma_noise: str | float = "residual",
        prior_precision_grid: tuple[float, float, int] = DEFAULT_GRID,
        n_grid_samples: int = 100,
        device: str = "cpu",
    ) -> None:
        super().__init__(
            hidden=hidden,
            activation=activation,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=0.0,  # the MAP's decay comes from prior_std (see _optimizer)
            device=device,
        )
        self.prior_std = prior_std
        self.subset_of_weights = subset_of_weights
        self.hessian_structure = hessian_structure
        self.prior_precision = prior_precision
        self.sigma_noise = sigma_noise
        self.prior_precision_grid = prior_precision_grid
        self.n_grid_samples = n_grid_samples

    # -- validation ----------------------------------------------------------------------
    def _validate_params(self) -> None:
        super()._validate_params()
        if not is_real(self.prior_std) or not 0.0 < float(self.prior_std) < math.inf:
            raise ValueError(f"prior_std must be a finite number > 0, got {self.prior_std!r}")
        if self.subset_of_weights not in SUBSETS:
            raise ValueError(f"subset_of_weights must be one of {list(SUBSETS)}, got {self.subset_of_weights!r}")
        if self.hessian_structure not in STRUCTURES:
            raise ValueError(f"hessian_structure must be one of {list(STRUCTURES)}, got {self.hessian_structure!r}")
        for name, words in (("prior_precision", TUNING), ("sigma_noise", NOISE)):
            value = getattr(self, name)
            if isinstance(value, str):
                if value not in words:
                    raise ValueError(f"{name} must be one of {list(words)} or a number > 0, got {value!r}")
            elif not is_real(value) or not 0.0 < float(value) < math.inf:
                raise ValueError(f"{name} must be one of {list(words)} or a finite number > 0, got {value!r}")
        grid = self.prior_precision_grid
        ok = isinstance(grid, Sequence) and not isinstance(grid, str) and len(grid) == 3
        if ok:
            low, high, count = grid
            ok = (
                is_real(low) and is_real(high) and 0.0 < float(low) < float(high) < math.inf
                and is_positive_int(count) and count >= 2
            )
        if not ok:
            raise ValueError(
                f"prior_precision_grid must be (low, high, count) with 0 < low < high and count >= 2, got {grid!r}"
            )
        if not is_positive_int(self.n_grid_samples):
            raise ValueError(f"n_grid_samples must be a positive int, got {self.n_grid_samples!r}")
        if self.sigma_noise == "marglik" and self.hessian_structure == "kron":
            # KronDecomposed.__mul__ scales by math.pow(1/σ², ...), which turns the tensor into
            # a float: the σ-gradient of log det P is silently dropped (laplace-torch 0.3).
            raise ValueError(
                "sigma_noise='marglik' needs hessian_structure 'diag' or 'full': laplace-torch's "
                "K-FAC log-determinant is not differentiable in sigma_noise"
            )

    def _check_fitted(self) -> None:
        if not hasattr(self, "laplace_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")

    # -- MAP -----------------------------------------------------------------------------
    def _optimizer(self, params: list[nn.Parameter]) -> torch.optim.Optimizer:
        """Adam with the prior's L2 on the network (``1 / (prior_std² N)``), none on the noise."""
        decay = 1.0 / (float(self.prior_std) ** 2 * self._n_fit)
        groups: list[dict[str, Any]] = [{"params": list(self.model_.body.parameters()), "weight_decay": decay}]
        if self.model_.noise is not None:
            groups.append({"params": list(self.model_.noise.parameters()), "weight_decay": 0.0})
        return torch.optim.Adam(groups, lr=self.lr)

    # -- fit -----------------------------------------------------------------------------
    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        seed: int,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        n_classes: int | None = None,
    ) -> LaplaceAdapter:
        """Train the MAP on ``X`` ``[N, F]``, ``y`` (``[N, D]`` floats or ``[N]`` labels), then
        fit the Laplace approximation and tune λ (on ``X_val`` ``[M, F]``, ``y_val`` when given).

        ``n_classes``: the dataset's number of classes (default: the labels' max + 1).
        """
        self._validate_params()
        X, y, task = validate_fit_data(self, X, y)
        val = None
        if X_val is not None and y_val is not None:
            X_val, y_val, val_task = validate_fit_data(self, X_val, y_val)
            if val_task != task or X_val.shape[1] != X.shape[1] or (task == "regression" and y_val.shape[1] != y.shape[1]):
                raise ValueError("X_val/y_val must have the features and target shape of X/y")
            val = (X_val, y_val)
        laplace = _laplace()
        self._n_fit = len(X)
        t0 = time.perf_counter()
        super().fit(X, y, seed=seed, n_classes=n_classes)
        if val is not None and task == "classification" and int(val[1].max()) >= self.n_outputs_:
            raise ValueError(f"y_val has label {int(val[1].max())}, the model has {self.n_outputs_} classes")
        t1 = time.perf_counter()
        with seeded(seed, self.device_), warnings.catch_warnings():
            # laplace-torch warns that classification tuning defaults to probit; not used here.
            warnings.filterwarnings("ignore", message="By default `link_approx` is `probit`")
            self._fit_laplace(laplace, X, y, val, seed)
        self.diagnostics_["map_seconds"] = t1 - t0
        self.diagnostics_["laplace_seconds"] = time.perf_counter() - t1
        return self

    def _tensors(self, X: np.ndarray, y: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        dtype = torch.long if self.task_ == "classification" else torch.float32
        return (
            torch.as_tensor(X, dtype=torch.float32, device=self.device_),
            torch.as_tensor(y, dtype=dtype, device=self.device_),
        )

    def _fit_laplace(
        self,
        laplace: Any,
        X: np.ndarray,
        y: np.ndarray,
        val: tuple[np.ndarray, np.ndarray] | None,
        seed: int,
    ) -> None:
        regression = self.task_ == "regression"
        net = self.model_.body
        Xt, yt = self._tensors(X, y)
        subset = "all" if not self.hidden else str(self.subset_of_weights)
        map_precision = 1.0 / float(self.prior_std) ** 2
        sigma = 1.0
        if regression:
            with torch.no_grad():
                sigma = float((net(Xt) - yt).square().mean().sqrt())
            if is_real(self.sigma_noise):
                sigma = float(self.sigma_noise)
        precision = float(self.prior_precision) if is_real(self.prior_precision) else map_precision
        la = laplace.Laplace(
            net,
            "regression" if regression else "classification",
            subset_of_weights=subset,
            hessian_structure=str(self.hessian_structure),
            sigma_noise=sigma,
            prior_precision=precision,
        )
        loader = DataLoader(TensorDataset(Xt, yt), batch_size=min(len(Xt), HESSIAN_BATCH), shuffle=False)
        la.fit(loader)
        self.laplace_ = la
        self._subset = subset

        method = "fixed" if is_real(self.prior_precision) else str(self.prior_precision)
        fell_back = method == "gridsearch" and val is None
        if fell_back:
            method = "marglik"
        learn_sigma = regression and self.sigma_noise == "marglik"
        if learn_sigma:
            precision, sigma = self._marglik(precision, sigma, tune_precision=method == "marglik")
        elif method == "marglik":
            la.optimize_prior_precision(
                method="marglik", pred_type="glm", init_prior_prec=precision, prior_structure="scalar",
                n_steps=MARGLIK_STEPS, lr=MARGLIK_LR,
            )
            precision = float(la.prior_precision.reshape(-1)[0])
        grid: list[float] = []
        grid_nll: list[float] = []
        val_nll, at_edge = math.nan, False
        if method == "gridsearch":
            assert val is not None
            low, high, count = self.prior_precision_grid
            grid = np.logspace(math.log10(float(low)), math.log10(float(high)), int(count)).tolist()
            grid_nll = self._grid_nll(grid, sigma, *self._tensors(*val), seed)
            best = int(np.argmin(grid_nll))
            precision, val_nll = grid[best], grid_nll[best]
            at_edge = best in (0, len(grid) - 1)
        la.prior_precision = precision
        if regression:
            la.sigma_noise = sigma
        self.prior_precision_ = float(precision)
        self.sigma_noise_ = float(sigma) if regression else None
        with torch.no_grad():
            log_marglik = float(la.log_marginal_likelihood())
        self.diagnostics_ = {
            "prior_precision": float(precision),
            "map_prior_precision": map_precision,
            "log_marglik": log_marglik,
            "val_nll": float(val_nll),
            "used_validation": float(method == "gridsearch"),
            "grid_edge": float(at_edge),
            "fell_back_to_marglik": float(fell_back),
            "n_laplace_params": float(la.n_params),
            "subset_of_weights": subset,
            "hessian_structure": str(self.hessian_structure),
            "prior_precision_method": method,
            "prior_precision_grid": grid,
            "val_nll_grid": grid_nll,
        }
        if regression:
            self.diagnostics_["sigma_noise"] = float(sigma)
            self.diagnostics_["sigma_noise_method"] = (
                "fixed" if is_real(self.sigma_noise) else str(self.sigma_noise)
            )

    def _marglik(self, precision: float, sigma: float, *, tune_precision: bool) -> tuple[float, float]:
        """Maximise the log marginal likelihood in ``log σ`` (and ``log λ`` when tuned)."""
        la = self.laplace_
        dtype = la.mean.dtype
        log_prec = torch.tensor(math.log(precision), dtype=dtype, requires_grad=tune_precision)
        log_sigma = torch.tensor(math.log(sigma), dtype=dtype, requires_grad=True)
        optim = torch.optim.Adam([log_sigma, *([log_prec] if tune_precision else [])], lr=MARGLIK_LR)
        for _ in range(MARGLIK_STEPS):
            optim.zero_grad()
            loss = -la.log_marginal_likelihood(log_prec.exp().reshape(1), log_sigma.exp())
            loss.backward()
            optim.step()
        return float(log_prec.detach().exp()), float(log_sigma.detach().exp())

    def _grid_nll(
        self, grid: list[float], sigma: float, Xv: torch.Tensor, yv: torch.Tensor, seed: int
    ) -> list[float]:
        """Validation NLL (mean over rows) of the predictive at each λ of ``grid``."""
        la = self.laplace_
        out: list[float] = []
        generator = torch.Generator(device=self.device_)
        crn_seed = int(np.random.SeedSequence([int(seed), 1]).generate_state(1)[0])
        for precision in grid:
            la.prior_precision = float(precision)
            try:
                if self.task_ == "regression":
                    f_mu, f_var = la(Xv, pred_type="glm")  # [M, D], [M, D, D]
                    cov = f_var.double() + sigma**2 * torch.eye(f_var.shape[-1], dtype=torch.float64, device=f_var.device)
                    dist = torch.distributions.MultivariateNormal(f_mu.double(), covariance_matrix=cov)
                    nll = -dist.log_prob(yv.double()).mean()
                else:
                    generator.manual_seed(crn_seed)
                    with torch.no_grad():
                        theta = la.sample(int(self.n_grid_samples), generator=generator)
                        logp = torch.log_softmax(self._linearised(Xv, theta).double(), dim=-1)  # [S, M, C]
                        picked = logp.gather(-1, yv.view(1, -1, 1).expand(logp.shape[0], -1, 1)).squeeze(-1)
                        nll = -(torch.logsumexp(picked, dim=0) - math.log(logp.shape[0])).mean()
                value = float(nll)
            except (torch.linalg.LinAlgError, ValueError):
                value = math.inf
            out.append(value if math.isfinite(value) else math.inf)
        return out

    # -- prediction ----------------------------------------------------------------------
    def _linearised(self, X: torch.Tensor, theta: torch.Tensor) -> torch.Tensor:
        """``f(x; θ_MAP) + J(x) (θ_s - θ_MAP)`` for draws θ ``[S, P]`` at ``X`` ``[N, F]`` -> ``[S, N, out]``."""
        la = self.laplace_
        if self._subset == "last_layer":
            module = la.model.last_layer
            _, inputs = la.model.forward_with_features(X)
        else:
            module, inputs = la.model, X
        named = [(name, p) for name, p in module.named_parameters() if p.requires_grad]
        primals = {name: p.detach() for name, p in named}
        delta = theta - la.mean.reshape(1, -1)
        tangents, start = {}, 0
        for name, p in named:
            tangents[name] = delta[:, start : start + p.numel()].reshape(len(theta), *p.shape)
            start += p.numel()

        def forward(params: dict[str, torch.Tensor]) -> torch.Tensor:
            return functional_call(module, params, (inputs,))

        f_map = forward(primals)
        return f_map + vmap(lambda t: jvp(forward, (primals,), (t,))[1])(tangents)

    def _sample_chunk(self, X: torch.Tensor, n_draws: int) -> torch.Tensor:
        return self._linearised(X, self.laplace_.sample(n_draws))

    def _regression_head(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return out, torch.full_like(out, float(self.sigma_noise_))
