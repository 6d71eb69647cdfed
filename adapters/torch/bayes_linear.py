"""``bayes-linear``: exact conjugate Bayesian linear regression on fixed features.

The reference point of the suite: its posterior and predictive are known in closed form,
so the sampling pipeline can be checked against them. It is numpy/float64 throughout and
lives under ``torch/`` only for layout reasons.
"""

from __future__ import annotations

import math
import warnings
from numbers import Integral, Real
from typing import Any, ClassVar

import numpy as np

from uqbench.interface import RegressionSamples, infer_task

_FEATURES = ("linear", "rff")
# Bound on the floats of one [s, N, D] chunk of draws.
_CHUNK_FLOATS = 8_000_000
# Evidence maximisation keeps alpha and the noise variance inside this relative window,
# so an interpolating fit (noise -> 0) or an all-noise fit (alpha -> inf) stays finite.
_CLAMP = 1e-10


class BayesLinearAdapter:
    """Exact Bayesian linear regression on fixed (linear or random Fourier) features.

    Model, per output d: ``y = Φ(x) w + ε``, ``w ~ N(0, α⁻¹ I)``, ``ε ~ N(0, σ²)``. The
    posterior is exact: ``Σ = (α I + ΦᵀΦ / σ²)⁻¹``, ``μ = Σ Φᵀ y / σ²``; each draw is one
    weight vector ``w_s ~ N(μ, Σ)``, giving ``loc_s = Φ w_s`` and ``scale = σ``.

    α and σ are either given or, when ``None``, estimated by evidence maximisation (the
    MacKay fixed-point updates, Bishop PRML §3.5.2). Several outputs ``[N, D]`` are
    independent regressions sharing Φ, each with its own α, σ and posterior.

    Parameters
    ----------
    features : ``"linear"`` (the inputs plus a bias column, ``M = F + 1``) or ``"rff"``
        (``n_features`` random Fourier features of an RBF kernel, drawn from the fit seed).
    n_features : number of random Fourier features M (``"rff"`` only).
    lengthscale : RBF kernel lengthscale, in input units (``"rff"`` only).
    alpha : prior precision of the weights; ``None`` -> estimated.
    noise_std : observation-noise standard deviation σ; ``None`` -> estimated.
    max_iter : cap on the evidence-maximisation iterations.
    tol : stop when α and σ² change by less than this relative amount.

    Attributes
    ----------
    alpha_ : ``[D]`` prior precisions used.
    noise_std_ : ``[D]`` noise standard deviations used.
    coef_ : ``[M, D]`` posterior means μ.
    coef_cov_ : ``[D, M, M]`` posterior covariances Σ.
    log_evidence_ : ``[D]`` log marginal likelihood ``ln p(y | α, σ)``.
    n_iter_ : evidence-maximisation iterations run (0 when α and σ are both given).
    n_parameters_ : number of weights, ``M D``.
    """

    tasks: ClassVar[frozenset[str]] = frozenset({"regression"})
    stochastic: ClassVar[bool] = True

    def __init__(
        self,
        *,
        features: str = "linear",
        n_features: int = 100,
        lengthscale: float = 1.0,
        alpha: float | None = None,
        noise_std: float | None = None,
        max_iter: int = 1000,
        tol: float = 1e-8,
    ) -> None:
        self.features = features
        self.n_features = n_features
        self.lengthscale = lengthscale
        self.alpha = alpha
        self.noise_std = noise_std
        self.max_iter = max_iter
        self.tol = tol

    # -- validation ----------------------------------------------------------------------
    def _validate_params(self) -> None:
        if self.features not in _FEATURES:
            raise ValueError(f"features must be one of {_FEATURES}, got {self.features!r}")
        for name in ("n_features", "max_iter"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        for name, optional in (("lengthscale", False), ("tol", False), ("alpha", True), ("noise_std", True)):
            value = getattr(self, name)
            if optional and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, Real) or not 0 < value < math.inf:
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")

    @staticmethod
    def _validate_X(X: Any, n_features: int | None = None) -> np.ndarray:
        X = np.asarray(X)
        if X.ndim != 2 or not np.issubdtype(X.dtype, np.number):
            raise ValueError(f"X must be a numeric [N, F] array, got shape {X.shape} dtype {X.dtype}")
        if n_features is not None and X.shape[1] != n_features:
            raise ValueError(f"X has {X.shape[1]} features, the adapter was fitted on {n_features}")
        if not np.all(np.isfinite(X)):
            raise ValueError("X contains NaN or inf")
        return X.astype(np.float64)

    def _check_fitted(self) -> None:
        if not hasattr(self, "coef_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")

    # -- features ------------------------------------------------------------------------
    def design_matrix(self, X: np.ndarray) -> np.ndarray:
        """The features Φ ``[N, M]`` of inputs ``X`` ``[N, F]``."""
        self._check_fitted()
        return self._phi(self._validate_X(X, self.n_features_in_))

    def _phi(self, X: np.ndarray) -> np.ndarray:
        if self._omega is None:
            return np.hstack([X, np.ones((len(X), 1))])
        # cos(ωᵀx + b) with ω ~ N(0, ℓ⁻² I), b ~ U(0, 2π): E[φ(x)ᵀφ(x')] = exp(-|x-x'|² / 2ℓ²).
        return math.sqrt(2.0 / self._omega.shape[1]) * np.cos(X @ self._omega + self._phase)

    # -- fit -----------------------------------------------------------------------------
    def fit(self, X: np.ndarray, y: np.ndarray, *, seed: int) -> BayesLinearAdapter:
        """Compute the exact posterior for ``X`` ``[N, F]``, ``y`` ``[N, D]`` (floats)."""
        self._validate_params()
        X = self._validate_X(X)
        task = infer_task(y)
        if task != "regression":
            raise ValueError(f"{type(self).__name__} supports regression only, got {task} targets")
        y = np.asarray(y, dtype=np.float64)
        if len(y) != len(X):
            raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
        if not np.all(np.isfinite(y)):
            raise ValueError("y contains NaN or inf")
        self.n_features_in_ = X.shape[1]
        self._omega: np.ndarray | None = None
        if self.features == "rff":
            rng = np.random.default_rng(seed)
            m = int(self.n_features)
            self._omega = rng.standard_normal((X.shape[1], m)) / float(self.lengthscale)
            self._phase = rng.uniform(0.0, 2.0 * math.pi, size=m)
        phi = self._phi(X)
        n, m = phi.shape
        # Every quantity below is diagonal in the eigenbasis of ΦᵀΦ = V diag(e) Vᵀ.
        e, V = np.linalg.eigh(phi.T @ phi)
        e = np.clip(e, 0.0, None)
        z = V.T @ (phi.T @ y)  # [M, D]
        phi_v = phi @ V  # [N, M]

        D = y.shape[1]
        alpha = np.empty(D)
        noise_var = np.empty(D)
        n_iter = 0
        for d in range(D):
            alpha[d], noise_var[d], it = self._evidence(e, z[:, d], phi_v, y[:, d])
            n_iter = max(n_iter, it)
        post_var = 1.0 / (alpha[None, :] + e[:, None] / noise_var[None, :])  # [M, D] eigenbasis
        coef_eig = post_var * z / noise_var[None, :]

        self.alpha_ = alpha
        self.noise_std_ = np.sqrt(noise_var)
        self.coef_ = V @ coef_eig
        self.coef_cov_ = np.stack([(V * post_var[:, d]) @ V.T for d in range(D)])
        self.n_iter_ = n_iter
        self._V = V
        self._post_var = post_var
        resid = y - phi @ self.coef_
        self.log_evidence_ = (
            0.5 * m * np.log(alpha)
            - 0.5 * n * np.log(noise_var)
            - 0.5 * np.sum(resid**2, axis=0) / noise_var
            - 0.5 * alpha * np.sum(self.coef_**2, axis=0)
            + 0.5 * np.sum(np.log(post_var), axis=0)
            - 0.5 * n * math.log(2.0 * math.pi)
        )
        self.n_parameters_ = m * D
        return self

    def _evidence(
        self, e: np.ndarray, z: np.ndarray, phi_v: np.ndarray, y: np.ndarray
    ) -> tuple[float, float, int]:
        """(α, σ², iterations) for one output: given values, or MacKay's fixed point."""
        n = phi_v.shape[0]
        scale = max(float(np.mean(y**2)), 1e-300)
        alpha = 1.0 if self.alpha is None else float(self.alpha)
        noise_var = (0.1 * scale if self.noise_std is None else float(self.noise_std) ** 2)
        if self.alpha is not None and self.noise_std is not None:
            return alpha, noise_var, 0
        for it in range(1, int(self.max_iter) + 1):
            beta_e = e / noise_var
            mean_eig = z / noise_var / (alpha + beta_e)
            gamma = float(np.sum(beta_e / (alpha + beta_e)))  # effective number of parameters
            new_alpha, new_var = alpha, noise_var
            if self.alpha is None:
                new_alpha = gamma / max(float(np.sum(mean_eig**2)), 1e-300)
                new_alpha = min(max(new_alpha, _CLAMP / scale), scale / _CLAMP)
            if self.noise_std is None:
                rss = float(np.sum((y - phi_v @ mean_eig) ** 2))
                new_var = rss / max(n - gamma, 1e-12)
                new_var = min(max(new_var, _CLAMP * scale), scale / _CLAMP)
            done = abs(new_alpha - alpha) <= self.tol * alpha and abs(new_var - noise_var) <= self.tol * noise_var
            alpha, noise_var = new_alpha, new_var
            if done:
                return alpha, noise_var, it
        warnings.warn(
            f"{type(self).__name__}: evidence maximisation did not converge in "
            f"{self.max_iter} iterations (alpha={alpha:.3g}, noise_std={math.sqrt(noise_var):.3g})",
            RuntimeWarning,
            stacklevel=3,
        )
        return alpha, noise_var, int(self.max_iter)

    # -- prediction ----------------------------------------------------------------------
    def predictive_mean(self, X: np.ndarray) -> np.ndarray:
        """Closed-form predictive mean Φμ ``[N, D]``."""
        return self.design_matrix(X) @ self.coef_

    def predictive_variance(self, X: np.ndarray) -> np.ndarray:
        """Closed-form predictive variance σ² + φᵀΣφ ``[N, D]`` (noise plus epistemic)."""
        phi_v = self.design_matrix(X) @ self._V
        return self.noise_std_[None, :] ** 2 + phi_v**2 @ self._post_var

    def sample_predictive(self, X: np.ndarray, *, n_samples: int, seed: int) -> RegressionSamples:
        """Draw ``n_samples`` weight vectors from the exact posterior and evaluate at ``X``.

        ``w_s = μ + L ε_s`` with ``L = V diag(√post_var)`` (``L Lᵀ = Σ``; the eigenbasis
        factor is exact like a Cholesky factor and stays well-defined when Σ is badly
        conditioned). Returns loc ``[S, N, D]`` = ``Φ w_s`` and scale ``[S, N, D]`` = σ.
        """
        self._check_fitted()
        if isinstance(n_samples, bool) or not isinstance(n_samples, Integral) or n_samples < 1:
            raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
        phi = self.design_matrix(X)
        n, m = phi.shape
        D = self.coef_.shape[1]
        mean = phi @ self.coef_  # [N, D]
        # Φ L_d = (Φ V) diag(√post_var_d), for all d at once: [D, N, M].
        phi_l = (phi @ self._V)[None, :, :] * np.sqrt(self._post_var.T)[:, None, :]
        rng = np.random.default_rng(seed)
        chunk = max(1, _CHUNK_FLOATS // max(1, D * max(n, m)))
        locs = []
        for start in range(0, int(n_samples), chunk):
            eps = rng.standard_normal((min(chunk, int(n_samples) - start), D, m))
            loc = np.empty((len(eps), n, D))
            for d in range(D):  # outputs are independent; each is one [s, M] @ [M, N] matmul
                loc[:, :, d] = eps[:, d, :] @ phi_l[d].T + mean[:, d]
            locs.append(loc)
        loc = np.concatenate(locs, axis=0)
        scale = np.broadcast_to(self.noise_std_, loc.shape).copy()
        return RegressionSamples(loc, scale)
