"""``example-ridge``: conjugate Bayesian ridge regression whose prior precision is chosen on
the validation split uqbench hands to ``fit``.

Model (per output d): ``y = [x, 1] w + e``, ``w ~ N(0, alpha^-1 I)``, ``e ~ N(0, sigma^2)``.
For each ``alpha`` in ``alphas`` the posterior ``N(m, S)`` with
``S = (alpha I + A^T A / sigma^2)^-1`` and ``m = S A^T y / sigma^2`` is exact given
``sigma^2``, taken as the mean squared residual of the ridge fit; the ``alpha`` with the
best validation log-likelihood (posterior predictive ``N(a m, a S a^T + sigma^2)``) is kept.
Each predictive draw is one ``w ~ N(m, S)``: one linear function with noise ``sigma``.

It shows every hook uqbench reads: ``tasks``, ``stochastic``, the keyword-only constructor,
``fit(..., X_val, y_val, n_train)`` (opt-in keywords: uqbench passes only those ``fit``
names), ``n_parameters_`` and ``diagnostics_`` (rows of split ``diagnostics``).
"""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from uqbench.interface import RegressionSamples


class BayesianRidgeAdapter:
    """Bayesian ridge regression; prior precision chosen by validation log-likelihood."""

    tasks: ClassVar[frozenset[str]] = frozenset({"regression"})
    stochastic: ClassVar[bool] = True

    def __init__(self, *, alphas: tuple[float, ...] = (1e-2, 1e-1, 1.0, 10.0, 100.0)) -> None:
        self.alphas = alphas

    @staticmethod
    def _design(X: np.ndarray) -> np.ndarray:
        return np.column_stack([np.asarray(X, dtype=np.float64), np.ones(len(X))])

    def _posterior(self, A: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(mean ``[P, D]``, covariance ``[D, P, P]``, noise variance ``[D]``) for one alpha."""
        P = A.shape[1]
        ridge = np.linalg.solve(A.T @ A + alpha * np.eye(P), A.T @ y)
        noise_var = np.maximum(np.mean((y - A @ ridge) ** 2, axis=0), 1e-12)
        cov = np.stack([np.linalg.inv(alpha * np.eye(P) + A.T @ A / v) for v in noise_var])
        mean = np.stack([cov[d] @ A.T @ y[:, d] / noise_var[d] for d in range(y.shape[1])], axis=1)
        return mean, cov, noise_var

    @staticmethod
    def _log_likelihood(A: np.ndarray, y: np.ndarray, post: tuple[np.ndarray, np.ndarray, np.ndarray]) -> float:
        mean, cov, noise_var = post
        loc = A @ mean  # [N, D]
        var = np.einsum("np,dpq,nq->nd", A, cov, A) + noise_var
        return float(np.mean(np.sum(-0.5 * np.log(2 * np.pi * var) - 0.5 * (y - loc) ** 2 / var, axis=1)))

    def fit(
        self,
        X: np.ndarray,
        y: np.ndarray,
        *,
        seed: int,
        X_val: np.ndarray | None = None,
        y_val: np.ndarray | None = None,
        n_train: int | None = None,
    ) -> BayesianRidgeAdapter:
        """``X`` ``[N, F]``, ``y`` ``[N, D]`` (standardized); ``X_val``/``y_val`` choose alpha."""
        if not self.alphas or any(not a > 0 for a in self.alphas):
            raise ValueError(f"alphas must be positive numbers, got {self.alphas!r}")
        A, y = self._design(X), np.asarray(y, dtype=np.float64)
        scores = {}
        if X_val is not None and len(X_val):
            A_val = self._design(X_val)
            scores = {a: self._log_likelihood(A_val, y_val, self._posterior(A, y, a)) for a in self.alphas}
            alpha = max(scores, key=scores.get)
        else:  # no validation split: the middle of the grid
            alpha = sorted(self.alphas)[len(self.alphas) // 2]
        self.mean_, self.cov_, self.noise_var_ = self._posterior(A, y, alpha)
        self.n_parameters_ = self.mean_.size
        self.diagnostics_ = {
            "alpha": float(alpha),
            "validation_log_likelihood": scores.get(alpha, float("nan")),
            "n_fit": float(len(X)),
            "n_train": float(n_train if n_train is not None else len(X)),
        }
        return self

    def sample_predictive(self, X: np.ndarray, *, n_samples: int, seed: int) -> RegressionSamples:
        """``n_samples`` posterior weight draws evaluated at ``X``: loc, scale ``[S, N, D]``."""
        rng = np.random.default_rng(seed)
        A = self._design(X)
        D = self.mean_.shape[1]
        w = np.stack(
            [rng.multivariate_normal(self.mean_[:, d], self.cov_[d], size=n_samples) for d in range(D)],
            axis=-1,
        )  # [S, P, D]
        loc = np.einsum("np,spd->snd", A, w)
        scale = np.broadcast_to(np.sqrt(self.noise_var_), loc.shape).copy()
        return RegressionSamples(loc, scale)
