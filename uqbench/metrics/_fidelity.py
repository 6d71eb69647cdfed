"""Posterior fidelity: how close one regression predictive is to a reference (e.g. HMC).

Inputs are two sets of predictive draws at the same N inputs, ``loc [S, N, D]`` and
``scale [S, N, D]`` (draw s is ``N(loc, scale^2)`` per output); the two may have different
numbers of draws S. Every function returns one value per input ``[N]``.

- :func:`predictive_wasserstein`: the 1-Wasserstein distance between the two predictive
  *mixtures* (not moment-matched Gaussians), in target units;
- :func:`epistemic_sd_ratio`: the standard deviation across draws of the predicted mean,
  method over reference (1: the method recovers the reference's epistemic uncertainty);
- :func:`predictive_sd_ratio`: the same for the total (mixture) standard deviation.
"""

from __future__ import annotations

import numbers

import numpy as np
from scipy.special import ndtri
from scipy.stats import norm

from uqbench.metrics._regression import check_regression

N_ATOMS = 32
SD_RTOL = 1e-6
# Elements per temporary atom array (blocks of inputs bound the memory used).
_BLOCK_ELEMENTS = 1 << 21


def _check_pair(
    loc_a: object, scale_a: object | None, loc_b: object, scale_b: object | None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray, np.ndarray | None]:
    mu_a, sd_a, _ = check_regression(loc_a, scale_a, None)
    mu_b, sd_b, _ = check_regression(loc_b, scale_b, None)
    if mu_a.shape[1:] != mu_b.shape[1:]:
        raise ValueError(
            f"the two predictives must be at the same [N, D]; got {mu_a.shape[1:]} and {mu_b.shape[1:]}"
        )
    return mu_a, sd_a, mu_b, sd_b


def _check_positive(name: str, value: object, *, integer: bool) -> None:
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind) or not value > 0:
        raise ValueError(f"{name} must be a positive {'integer' if integer else 'number'}, got {value!r}")


def normal_atoms(n_atoms: int) -> np.ndarray:
    """``[J]`` conditional means of N(0, 1) on its J equal-probability strata (ascending).

    ``z_j = E[Z | Phi^{-1}(j/J) < Z <= Phi^{-1}((j+1)/J)] = J (phi(e_j) - phi(e_{j+1}))``;
    symmetrised so that ``z_j = -z_{J-1-j}`` exactly.
    """
    _check_positive("n_atoms", n_atoms, integer=True)
    edges = ndtri(np.linspace(0.0, 1.0, n_atoms + 1))  # -inf ... inf
    dens = norm.pdf(edges)
    z = n_atoms * (dens[:-1] - dens[1:])
    return 0.5 * (z - z[::-1])


def _sorted_atoms(loc: np.ndarray, scale: np.ndarray, z: np.ndarray) -> np.ndarray:
    """``[M, S * J]`` sorted atoms of the mixtures of columns ``loc, scale [S, M]``."""
    atoms = loc.T[:, :, None] + scale.T[:, :, None] * z  # [M, S, J]
    atoms = atoms.reshape(loc.shape[1], -1)
    atoms.sort(axis=1)
    return atoms


def _quantile_pairs(k_a: int, k_b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Atom indices ``ia, ib`` and interval lengths ``w`` of the two step quantile functions.

    The quantile function of ``k`` equal-weight sorted atoms is constant on ``(i/k, (i+1)/k]``;
    the union of both sets of breakpoints splits (0, 1) into intervals on which both are.
    """
    if k_a == k_b:
        idx = np.arange(k_a)
        return idx, idx, np.full(k_a, 1.0 / k_a)
    # Breakpoints in units of 1 / (k_a k_b), exact integers.
    breaks = np.union1d(np.arange(k_a + 1) * k_b, np.arange(k_b + 1) * k_a)
    mid2 = breaks[:-1] + breaks[1:]  # twice the midpoints
    ia = mid2 // (2 * k_b)
    ib = mid2 // (2 * k_a)
    return ia, ib, np.diff(breaks) / (k_a * k_b)


def predictive_wasserstein(
    loc_a: np.ndarray,
    scale_a: np.ndarray,
    loc_b: np.ndarray,
    scale_b: np.ndarray,
    *,
    n_atoms: int = N_ATOMS,
) -> np.ndarray:
    """1-Wasserstein distance ``[N]`` between two predictive mixtures, per input.

    Each predictive is the equal-weight mixture of its S Gaussian draws, so
    ``W1 = int |F_a(t) - F_b(t)| dt = int_0^1 |Q_a(u) - Q_b(u)| du`` (F the mixture CDF,
    Q its quantile function), in the units of ``loc``. It is computed deterministically (no
    sampling): every draw ``N(m, s^2)`` is replaced by ``n_atoms`` equal-weight atoms
    ``m + s z_j`` at the conditional means of N(0, 1) on its equal-probability strata
    (:func:`normal_atoms`; a point mass, ``s = 0``, stays one); the W1 between the two
    resulting discrete distributions is exact from their sorted atoms.

    Accuracy: the triangle inequality bounds the error by ``c_J (mean s_a + mean s_b)``
    with ``c_J = W1(N(0,1), its J atoms)`` (0.046 for J = 32, about ``1.5 / J``); the
    atoms' errors largely cancel, and observed errors are about 1e-3 of W1. It is exact for
    point masses and for two single Gaussians differing only in location, or (J even)
    only in scale; it is itself a metric between the discretised predictives (zero for
    identical inputs, symmetric, triangle inequality).

    Parameters
    ----------
    loc_a, scale_a : ``[S_a, N, D]`` the first predictive's draws (scale >= 0).
    loc_b, scale_b : ``[S_b, N, D]`` the second's (S_b may differ from S_a).
    n_atoms : atoms J per draw; cost and memory grow as ``N (S_a + S_b) J log``.

    Returns
    -------
    ``[N]``: for D > 1 the mean over outputs of the W1 between the per-output marginals
    (not the W1 of the joint predictives).
    """
    mu_a, sd_a, mu_b, sd_b = _check_pair(loc_a, scale_a, loc_b, scale_b)
    z = normal_atoms(n_atoms)
    (s_a, n, d), s_b = mu_a.shape, mu_b.shape[0]
    ia, ib, w = _quantile_pairs(s_a * n_atoms, s_b * n_atoms)
    cols_a, cols_b = mu_a.reshape(s_a, -1), mu_b.reshape(s_b, -1)
    scl_a, scl_b = sd_a.reshape(s_a, -1), sd_b.reshape(s_b, -1)
    out = np.empty(n * d)
    block = max(1, _BLOCK_ELEMENTS // ((s_a + s_b) * n_atoms + ia.shape[0]))
    for start in range(0, n * d, block):
        cols = slice(start, start + block)
        qa = _sorted_atoms(cols_a[:, cols], scl_a[:, cols], z)
        qb = _sorted_atoms(cols_b[:, cols], scl_b[:, cols], z)
        out[cols] = np.abs(qa[:, ia] - qb[:, ib]) @ w
    return out.reshape(n, d).mean(axis=1)


def _var_over_draws(loc: np.ndarray) -> np.ndarray:
    """``[N, D]`` population variance over draws, exactly 0 when every draw is the same.

    Taken about the first draw (shift-invariant, and no mean rounding residue).
    """
    return np.var(loc - loc[:1], axis=0)


def _epistemic_sd(loc: np.ndarray) -> np.ndarray:
    """``[N]`` sqrt of the population variance over draws of loc, summed over outputs."""
    return np.sqrt(_var_over_draws(loc).sum(axis=1))


def _ratio(num: np.ndarray, den: np.ndarray, magnitude: np.ndarray, rtol: float) -> np.ndarray:
    defined = (den > 0) & (den > rtol * magnitude)
    return np.divide(num, den, out=np.full(num.shape, np.nan), where=defined)


def _magnitude(loc: np.ndarray) -> np.ndarray:
    """``[N]`` root mean square of loc over draws and outputs (the guard's yardstick)."""
    return np.sqrt(np.mean(loc**2, axis=(0, 2)))


def epistemic_sd_ratio(loc_a: np.ndarray, loc_ref: np.ndarray, *, rtol: float = SD_RTOL) -> np.ndarray:
    """Epistemic standard deviation of a method over the reference's, per input ``[N]``.

    The epistemic sd at input n is the square root of the population variance across
    draws of the predicted mean, summed over outputs (``RegressionSamples.
    epistemic_variance().sum(-1)``). The ratio is NaN (undefined) where the reference's sd
    is 0 or at most ``rtol`` times the root mean square of ``loc_ref`` at that input: a
    spread at that level is rounding (the step stores float32, about 6e-8 relative), not
    uncertainty, and dividing by it would swamp any average. A method with no epistemic
    spread (deterministic net) gets 0.

    Parameters
    ----------
    loc_a : ``[S_a, N, D]`` the method's draws of the mean; ``loc_ref`` ``[S_ref, N, D]``.
    """
    mu_a, _, mu_r, _ = _check_pair(loc_a, None, loc_ref, None)
    _check_positive("rtol", rtol, integer=False)
    return _ratio(_epistemic_sd(mu_a), _epistemic_sd(mu_r), _magnitude(mu_r), rtol)


def predictive_sd_ratio(
    loc_a: np.ndarray,
    scale_a: np.ndarray,
    loc_ref: np.ndarray,
    scale_ref: np.ndarray,
    *,
    rtol: float = SD_RTOL,
) -> np.ndarray:
    """Total (mixture) standard deviation of a method over the reference's, per input ``[N]``.

    Total sd: square root of the law-of-total-variance variance ``mean_s scale^2 +
    var_s loc``, summed over outputs. NaN where the reference's is 0 or at most ``rtol``
    times the root mean square of ``loc_ref`` (as :func:`epistemic_sd_ratio`).
    """
    mu_a, sd_a, mu_r, sd_r = _check_pair(loc_a, scale_a, loc_ref, scale_ref)
    _check_positive("rtol", rtol, integer=False)
    return _ratio(predictive_sd(mu_a, sd_a), predictive_sd(mu_r, sd_r), _magnitude(mu_r), rtol)


def predictive_sd(loc: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """``[N]`` total predictive sd: sqrt of ``mean_s scale^2 + var_s loc`` summed over outputs."""
    mu, sd, _ = check_regression(loc, scale, None)
    return np.sqrt((np.mean(sd**2, axis=0) + _var_over_draws(mu)).sum(axis=1))
