"""Regression metrics of the predictive mixture.

Inputs: ``loc [S, N, D]`` and ``scale [S, N, D]`` (draw s is ``N(loc, scale^2)`` per
output dimension) and targets ``y_true [N, D]``. The predictive of output d at point n is
the equal-weight mixture of the S Gaussians (its marginal in d); every metric is averaged
over N and D unless stated otherwise.

A draw with ``scale`` 0 is a point mass, which has no density. Wherever a density or a
continuous CDF is needed (mixture NLL, quantiles, coverage, CRPS) each draw's scale is
floored at ``min_scale`` (default 1e-6: targets are standardized, so a millionth of a target
standard deviation); the moment-matched Gaussian's variance is floored at ``min_scale**2``.
Every result is therefore finite.
"""

from __future__ import annotations

import math
import numbers

import numpy as np
from scipy.special import erf, ndtr, ndtri

from uqbench.metrics._bootstrap import Statistic, mean_statistic

MIN_SCALE = 1e-6
COVERAGE_LEVELS = np.round(np.arange(1, 20) * 0.05, 2)
INTERVAL_LEVEL = 0.95
# Elements per temporary array in the CRPS pair loop (cache-sized blocks of outputs).
_BLOCK_ELEMENTS = 1 << 16
_LOG_2PI = math.log(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_PI = 1.0 / math.sqrt(math.pi)
# Quantile solver: relative step at which an entry counts as converged, iteration cap.
_X_TOL = 1e-11
_MAX_ITER = 200


def coverage_name(level: float) -> str:
    return f"coverage_{level:.2f}"


# ---- validation -------------------------------------------------------------------------


def _as_float_array(name: str, a: object, ndim: int) -> np.ndarray:
    arr = np.asarray(a)
    if arr.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {arr.shape}")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = arr.astype(np.float64, copy=False)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} must be finite, got {arr[~np.isfinite(arr)][:5]}")
    return arr


def check_regression(
    loc: object, scale: object | None, y_true: object | None
) -> tuple[np.ndarray, np.ndarray | None, np.ndarray | None]:
    """Validated float64 ``loc [S, N, D]``, ``scale [S, N, D]``, ``y_true [N, D]``."""
    mu = _as_float_array("loc", loc, 3)
    if mu.shape[0] < 1 or mu.shape[1] < 1 or mu.shape[2] < 1:
        raise ValueError(f"loc must have S, N, D >= 1, got shape {mu.shape}")
    sigma = None
    if scale is not None:
        sigma = _as_float_array("scale", scale, 3)
        if sigma.shape != mu.shape:
            raise ValueError(f"scale {sigma.shape} and loc {mu.shape} differ in shape")
        if sigma.min() < 0.0:
            raise ValueError(f"scale must be >= 0, got minimum {sigma.min()!r}")
    y = None
    if y_true is not None:
        y = _as_float_array("y_true", y_true, 2)
        if y.shape != mu.shape[1:]:
            raise ValueError(f"y_true has shape {y.shape}, expected [N, D] = {mu.shape[1:]}")
    return mu, sigma, y


def check_min_scale(min_scale: object) -> float:
    if (
        not isinstance(min_scale, numbers.Real)
        or isinstance(min_scale, bool)
        or not math.isfinite(min_scale)
        or min_scale <= 0
    ):
        raise ValueError(f"min_scale must be a positive finite number, got {min_scale!r}")
    return float(min_scale)


def check_levels(levels: object) -> np.ndarray:
    lv = np.asarray(levels, dtype=np.float64)
    if (
        lv.ndim != 1
        or lv.size < 1
        or not np.all((lv > 0) & (lv < 1))
        or np.any(np.diff(lv) <= 0)
    ):
        raise ValueError(f"levels must be increasing values in (0, 1), got {levels!r}")
    return lv


def _check_level(level: object) -> float:
    if not isinstance(level, numbers.Real) or not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    return float(level)


# ---- the mixture --------------------------------------------------------------------------


def _cdf_pdf(loc: np.ndarray, sig: np.ndarray, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mixture CDF and density at ``x [M]`` of components ``loc, sig [S, M]``."""
    z = (x - loc) / sig
    cdf = ndtr(z).mean(axis=0)
    pdf = (np.exp(-0.5 * z * z) / sig).mean(axis=0) / math.sqrt(2.0 * math.pi)
    return cdf, pdf


def _pit(loc: np.ndarray, sig: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Mixture CDF at the targets ``[N, D]`` (the probability integral transform)."""
    return ndtr((y - loc) / sig).mean(axis=0)


def _quantiles(loc: np.ndarray, sig: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Mixture quantiles ``[K, N, D]`` at ``probs [K]``, in blocks of outputs."""
    n_draws = loc.shape[0]
    mu = loc.reshape(n_draws, -1)
    sd = sig.reshape(n_draws, -1)
    block = max(1, 4 * _BLOCK_ELEMENTS // (n_draws * probs.shape[0]))
    out = np.empty((probs.shape[0], mu.shape[1]))
    for start in range(0, mu.shape[1], block):
        cols = slice(start, start + block)
        out[:, cols] = _quantiles_block(mu[:, cols], sd[:, cols], probs)
    return out.reshape(probs.shape[0], *loc.shape[1:])


def _quantiles_block(loc: np.ndarray, sig: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """Mixture quantiles ``[K, M]`` of ``loc, sig [S, M]`` by safeguarded Newton iteration.

    The root of ``F(x) = p`` is bracketed by the smallest and largest per-draw quantile
    (every component CDF is <= p at the first, >= p at the second). Each step takes the
    Newton step when it stays inside the current bracket and bisects otherwise, vectorised
    over all entries; converged entries drop out of the active set.
    """
    m = loc.shape[1]
    k = probs.shape[0]
    p = np.repeat(probs, m)
    mu = np.tile(loc, (1, k))  # [S, K * M]
    sd = np.tile(sig, (1, k))
    z = np.repeat(ndtri(probs), m)
    per_draw = mu + sd * z
    lo = per_draw.min(axis=0)
    hi = per_draw.max(axis=0)
    std = np.sqrt((sd**2).mean(axis=0) + mu.var(axis=0))
    x = np.clip(mu.mean(axis=0) + std * z, lo, hi)
    active = np.flatnonzero(hi > lo)
    for _ in range(_MAX_ITER):
        if active.size == 0:
            break
        every = active.size == x.size
        xa, la, ha, pa = x[active], lo[active], hi[active], p[active]
        cdf, pdf = _cdf_pdf(mu if every else mu[:, active], sd if every else sd[:, active], xa)
        g = cdf - pa
        la = np.where(g < 0, xa, la)
        ha = np.where(g > 0, xa, ha)
        with np.errstate(over="ignore"):  # a vanishing density gives an inf step: bisect
            step = np.divide(g, pdf, out=np.full_like(g, np.inf), where=pdf > 0)
        newton = xa - step
        inside = (newton >= la) & (newton <= ha)
        converged = (g == 0) | (np.abs(step) <= _X_TOL * (1.0 + np.abs(xa)))
        x[active] = np.where(inside, newton, np.where(converged, xa, 0.5 * (la + ha)))
        lo[active], hi[active] = la, ha
        active = active[~(converged | (ha - la <= _X_TOL * (1.0 + np.abs(xa))))]
    return x.reshape(k, m)


def _abs_moment(m: np.ndarray, s: np.ndarray) -> np.ndarray:
    """``E|Z|`` for ``Z ~ N(m, s^2)``, ``s > 0``: ``m erf(m / (s sqrt 2)) + s sqrt(2/pi) e^{-m^2 / 2s^2}``."""
    z = m / s
    out = erf(z * _INV_SQRT2)
    out *= m
    z *= z
    z *= -0.5
    np.exp(z, out=z)
    z *= s
    z *= _SQRT_2_OVER_PI
    out += z
    return out


def _unique_draws(loc: np.ndarray, sig: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct draws and their weights ``[U]``.

    Repeated draws (a deterministic net; an ensemble asked for more draws than members)
    merge, so the pair sum runs over distinct draws only.
    """
    n_draws = loc.shape[0]
    flat = np.ascontiguousarray(
        np.concatenate([loc.reshape(n_draws, -1), sig.reshape(n_draws, -1)], axis=1)
    )
    first: dict[bytes, int] = {}
    group = np.array([first.setdefault(row.tobytes(), s) for s, row in enumerate(flat)])
    keep = np.array(sorted(set(first.values())))
    counts = np.bincount(np.searchsorted(keep, group), minlength=keep.shape[0])
    return loc[keep], sig[keep], counts / n_draws


def _g(t: np.ndarray) -> np.ndarray:
    """``G(t) = t erf(t) + exp(-t^2) / sqrt(pi)``, overwriting ``t``.

    ``A(m, sqrt(2) s) = 2 s G(m / 2s)``: the mean absolute value of the difference of two
    draws from Gaussians of equal scale s whose means differ by m.
    """
    out = erf(t)
    out *= t
    t *= t
    t *= -1.0
    np.exp(t, out=t)
    t *= _INV_SQRT_PI
    out += t
    return out


def _pairs_equal_scale(v: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``sum_{s<t} w_s w_t G(v_s - v_t)`` per column of ``v [S, M]``."""
    total = np.zeros(v.shape[1])
    for s in range(v.shape[0] - 1):
        total += w[s] * (w[s + 1 :] @ _g(v[s] - v[s + 1 :]))
    return total


def _pairs_any_scale(mu: np.ndarray, var: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``sum_{s<t} w_s w_t A(mu_s - mu_t, sqrt(var_s + var_t))`` per column ``[M]``."""
    total = np.zeros(mu.shape[1])
    for s in range(mu.shape[0] - 1):
        a = _abs_moment(mu[s] - mu[s + 1 :], np.sqrt(var[s] + var[s + 1 :]))
        total += w[s] * (w[s + 1 :] @ a)
    return total


def _crps_points(loc: np.ndarray, sig: np.ndarray, y: np.ndarray) -> np.ndarray:
    """CRPS ``[N, D]`` of the mixture: ``E|X - y| - 0.5 E|X - X'|`` in closed form.

    For Gaussian components ``E|X - y| = sum_s w_s A(y - mu_s, s_s)`` and
    ``E|X - X'| = sum_{s,t} w_s w_t A(mu_s - mu_t, sqrt(s_s^2 + s_t^2))`` with
    ``A(m, s) = E|N(m, s^2)|`` (Grimit et al. 2006). The pair sum is the diagonal plus
    twice the s < t pairs, taken in blocks of outputs to bound memory; outputs whose draws
    all share one scale (homoscedastic draws) use the cheaper equal-scale form.
    """
    shape = y.shape
    loc, sig, w = _unique_draws(loc, sig)
    n_draws = loc.shape[0]
    mu = loc.reshape(n_draws, -1)
    sd = sig.reshape(n_draws, -1)
    target = y.reshape(-1)
    n_cols = target.shape[0]
    block = max(1, _BLOCK_ELEMENTS // n_draws)
    equal = np.all(sd == sd[:1], axis=0)

    crps = np.empty(n_cols)
    for start in range(0, n_cols, block):
        cols = slice(start, start + block)
        m, s, eq = mu[:, cols], sd[:, cols], equal[cols]
        to_target = w @ _abs_moment(target[cols] - m, s)
        # Diagonal pairs: A(0, sqrt(2) s) = 2 s / sqrt(pi).
        between = (w**2) @ s * (2.0 * _INV_SQRT_PI)
        pairs = np.empty(m.shape[1])
        if np.any(eq):
            scale0 = s[0, eq]
            pairs[eq] = 2.0 * scale0 * _pairs_equal_scale(m[:, eq] / (2.0 * scale0), w)
        if not np.all(eq):
            pairs[~eq] = _pairs_any_scale(m[:, ~eq], s[:, ~eq] ** 2, w)
        crps[cols] = to_target - 0.5 * (between + 2.0 * pairs)
    return crps.reshape(shape)


def _mixture_nll_points(loc: np.ndarray, sig: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per-point mixture NLL ``[N, D]``; +inf where every component's density underflows.

    When ``|y - loc| / scale`` (or its square) overflows in every draw, every
    log-component is -inf and log-sum-exp's shift ``top`` is -inf too: ``-inf - -inf`` is
    NaN. The exact value is then a finite number far beyond float64, so +inf: shift by 0
    there instead, which gives log(0) = -inf and NLL = +inf.
    """
    with np.errstate(over="ignore"):
        z = (y - loc) / sig
        log_comp = -0.5 * z * z - np.log(sig)
    top = log_comp.max(axis=0)
    shift = np.where(np.isfinite(top), top, 0.0)
    with np.errstate(divide="ignore"):
        log_mean = shift + np.log(np.exp(log_comp - shift).mean(axis=0))
    return 0.5 * _LOG_2PI - log_mean


def _gaussian_nll_points(
    loc: np.ndarray, scale: np.ndarray, y: np.ndarray, min_scale: float
) -> np.ndarray:
    mean = loc.mean(axis=0)
    var = np.maximum(np.mean(scale**2, axis=0) + np.var(loc, axis=0), min_scale**2)
    return 0.5 * (_LOG_2PI + np.log(var) + (y - mean) ** 2 / var)


def _covered(u: np.ndarray, levels: np.ndarray) -> np.ndarray:
    """Per-point fraction of the D outputs inside each central interval ``[N, L]``.

    With a continuous, strictly increasing mixture CDF F, ``q_{(1-a)/2} <= y <= q_{(1+a)/2}``
    exactly when ``(1-a)/2 <= F(y) <= (1+a)/2``: comparing the PIT with the two
    probabilities is the same test as comparing y with the two quantiles, without
    inverting F once per level.
    """
    low = (1.0 - levels) / 2.0
    high = (1.0 + levels) / 2.0
    inside = (u[..., None] >= low) & (u[..., None] <= high)  # [N, D, L]
    return inside.mean(axis=1)


def calibration_from_coverage(
    coverage: np.ndarray, levels: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Mean absolute calibration error and miscalibration area of coverage ``[B, L]``.

    The area is the exact area between the piecewise-linear calibration curve through
    (0, 0), (levels, coverage), (1, 1) and the diagonal; on a segment where the gap
    d = coverage - level changes sign it is split at the crossing.
    """
    gap = coverage - levels
    mace = np.abs(gap).mean(axis=-1)
    zero = np.zeros((*gap.shape[:-1], 1))
    d = np.concatenate([zero, gap, zero], axis=-1)
    x = np.concatenate([[0.0], levels, [1.0]])
    h = np.diff(x)
    a, b = d[..., :-1], d[..., 1:]
    abs_sum = np.abs(a) + np.abs(b)
    same_sign = a * b >= 0
    crossing = np.divide(a * a + b * b, abs_sum, out=np.zeros_like(a), where=abs_sum > 0)
    area = h * np.where(same_sign, abs_sum, crossing) / 2.0
    return mace, area.sum(axis=-1)


# ---- per-point values and bootstrap statistics -------------------------------------------


def regression_statistics(
    loc: np.ndarray,
    scale: np.ndarray,
    y_true: np.ndarray,
    *,
    min_scale: float = MIN_SCALE,
    levels: np.ndarray = COVERAGE_LEVELS,
) -> list[Statistic]:
    """Statistics for every regression point metric (see :data:`METRICS`)."""
    mu, scale, y = check_regression(loc, scale, y_true)
    min_scale = check_min_scale(min_scale)
    levels = check_levels(levels)
    sig = np.maximum(scale, min_scale)
    sq_err = ((y - mu.mean(axis=0)) ** 2).mean(axis=1)
    total_var = (np.mean(scale**2, axis=0) + np.var(mu, axis=0)).mean(axis=1)
    quant = _quantiles(mu, sig, np.array([(1 - INTERVAL_LEVEL) / 2, (1 + INTERVAL_LEVEL) / 2]))
    covered = _covered(_pit(mu, sig, y), levels)
    means = mean_statistic(
        {
            "nll_loss": _mixture_nll_points(mu, sig, y).mean(axis=1),
            "gaussian_nll_loss": _gaussian_nll_points(mu, scale, y, min_scale).mean(axis=1),
            "crps_loss": _crps_points(mu, sig, y).mean(axis=1),
            "interval_width_95": (quant[1] - quant[0]).mean(axis=1),
        }
    )
    roots = np.stack([sq_err, total_var], axis=1)

    n_points = y.shape[0]

    def root_fn(weights: np.ndarray) -> dict[str, np.ndarray]:
        r = np.sqrt(weights @ roots / n_points)
        return {"rmse_error": r[:, 0], "sharpness": r[:, 1]}

    picp_column = int(np.argmin(np.abs(levels - INTERVAL_LEVEL)))
    has_picp = bool(np.isclose(levels[picp_column], INTERVAL_LEVEL))

    def coverage_fn(weights: np.ndarray) -> dict[str, np.ndarray]:
        cov = weights @ covered / n_points  # [B, L]
        out = {coverage_name(lv): cov[:, j] for j, lv in enumerate(levels)}
        out["calibration_error"], out["miscalibration_area"] = calibration_from_coverage(
            cov, levels
        )
        if has_picp:
            out["picp_95"] = cov[:, picp_column]
        return out

    return [Statistic(root_fn), means, Statistic(coverage_fn)]


# ---- public metrics -----------------------------------------------------------------------


def _floored(loc, scale, y, min_scale):
    mu, sigma, y = check_regression(loc, scale, y)
    return mu, np.maximum(sigma, check_min_scale(min_scale)), y


def rmse_error(loc: np.ndarray, y_true: np.ndarray) -> float:
    """Root mean squared error of the predictive mean ``mean_s loc``, over N and D."""
    mu, _, y = check_regression(loc, None, y_true)
    return float(np.sqrt(np.mean((y - mu.mean(axis=0)) ** 2)))


def mixture_nll_loss(
    loc: np.ndarray, scale: np.ndarray, y_true: np.ndarray, *, min_scale: float = MIN_SCALE
) -> float:
    """NLL of the predictive mixture, exact from the draws (nats, mean over N and D).

    ``-log( (1/S) sum_s N(y; loc_s, max(scale_s, min_scale)^2) )`` per point and output,
    computed with log-sum-exp over the S components.
    """
    mu, sig, y = _floored(loc, scale, y_true, min_scale)
    return float(_mixture_nll_points(mu, sig, y).mean())


def gaussian_nll_loss(
    loc: np.ndarray, scale: np.ndarray, y_true: np.ndarray, *, min_scale: float = MIN_SCALE
) -> float:
    """NLL of the moment-matched Gaussian (nats, mean over N and D).

    The Gaussian with the mixture's mean ``mean_s loc`` and variance
    ``mean_s scale^2 + var_s loc`` (floored at ``min_scale**2``). Differs from the mixture
    NLL whenever the draws disagree.
    """
    mu, sigma, y = check_regression(loc, scale, y_true)
    return float(_gaussian_nll_points(mu, sigma, y, check_min_scale(min_scale)).mean())


def crps_loss(
    loc: np.ndarray, scale: np.ndarray, y_true: np.ndarray, *, min_scale: float = MIN_SCALE
) -> float:
    """Continuous ranked probability score of the mixture, closed form (mean over N and D).

    ``CRPS(F, y) = int (F(x) - 1{x >= y})^2 dx = E|X - y| - 0.5 E|X - X'|`` with X, X'
    independent draws of the mixture; both expectations are exact Gaussian sums over the
    components and over all S^2 component pairs (Grimit et al. 2006), in the units of y.
    """
    mu, sig, y = _floored(loc, scale, y_true, min_scale)
    return float(_crps_points(mu, sig, y).mean())


def mixture_cdf(
    loc: np.ndarray, scale: np.ndarray, x: np.ndarray, *, min_scale: float = MIN_SCALE
) -> np.ndarray:
    """Mixture CDF ``(1/S) sum_s Phi((x - loc_s) / scale_s)`` at ``x [N, D]``, ``[N, D]``."""
    mu, sig, xv = _floored(loc, scale, x, min_scale)
    return _pit(mu, sig, xv)


def mixture_quantile(
    loc: np.ndarray,
    scale: np.ndarray,
    q: float | np.ndarray,
    *,
    min_scale: float = MIN_SCALE,
) -> np.ndarray:
    """Quantiles of the mixture: ``F^{-1}(q)`` found numerically (not a Gaussian fit).

    Parameters
    ----------
    q : probability in (0, 1), or a 1-D array ``[K]`` of them.

    Returns
    -------
    ``[N, D]`` for a scalar q, else ``[K, N, D]``; accurate to about 1e-12 relative.
    """
    mu, sig, _ = _floored(loc, scale, None, min_scale)
    probs = np.atleast_1d(np.asarray(q, dtype=np.float64))
    if probs.ndim != 1 or not np.all((probs > 0) & (probs < 1)):
        raise ValueError(f"q must be in (0, 1), got {q!r}")
    out = _quantiles(mu, sig, probs)
    return out[0] if np.ndim(q) == 0 else out


def interval_coverage(
    loc: np.ndarray,
    scale: np.ndarray,
    y_true: np.ndarray,
    *,
    levels: np.ndarray = COVERAGE_LEVELS,
    min_scale: float = MIN_SCALE,
) -> np.ndarray:
    """Observed coverage ``[L]`` of the mixture's central intervals at ``levels``.

    The fraction of (point, output) pairs with ``q_{(1-a)/2} <= y <= q_{(1+a)/2}``, q the
    mixture quantiles (tested as ``(1-a)/2 <= F(y) <= (1+a)/2``, the same event for a
    continuous mixture CDF F).
    """
    mu, sig, y = _floored(loc, scale, y_true, min_scale)
    return _covered(_pit(mu, sig, y), check_levels(levels)).mean(axis=0)


def calibration_error(
    loc: np.ndarray,
    scale: np.ndarray,
    y_true: np.ndarray,
    *,
    levels: np.ndarray = COVERAGE_LEVELS,
    min_scale: float = MIN_SCALE,
) -> float:
    """Mean absolute calibration error: ``mean_a |coverage(a) - a|`` over ``levels``.

    uncertainty-toolbox's ``mean_absolute_calibration_error`` with central intervals
    (``prop_type="interval"``) of the mixture, on levels 0.05, 0.10, ..., 0.95.
    """
    lv = check_levels(levels)
    cov = interval_coverage(loc, scale, y_true, levels=lv, min_scale=min_scale)
    return float(calibration_from_coverage(cov, lv)[0])


def miscalibration_area(
    loc: np.ndarray,
    scale: np.ndarray,
    y_true: np.ndarray,
    *,
    levels: np.ndarray = COVERAGE_LEVELS,
    min_scale: float = MIN_SCALE,
) -> float:
    """Area between the central-interval calibration curve and the diagonal.

    As uncertainty-toolbox's ``miscalibration_area``: the curve joins (0, 0), the
    (level, observed coverage) points and (1, 1); the area between it and y = x counts
    both sides positively (exact for the piecewise-linear curve).
    """
    lv = check_levels(levels)
    cov = interval_coverage(loc, scale, y_true, levels=lv, min_scale=min_scale)
    return float(calibration_from_coverage(cov, lv)[1])


def picp(
    loc: np.ndarray,
    scale: np.ndarray,
    y_true: np.ndarray,
    *,
    level: float = INTERVAL_LEVEL,
    min_scale: float = MIN_SCALE,
) -> float:
    """Prediction-interval coverage probability of the central ``level`` interval."""
    lv = _check_level(level)
    return float(interval_coverage(loc, scale, y_true, levels=[lv], min_scale=min_scale)[0])


def interval_width(
    loc: np.ndarray,
    scale: np.ndarray,
    *,
    level: float = INTERVAL_LEVEL,
    min_scale: float = MIN_SCALE,
) -> float:
    """Mean width ``q_{(1+a)/2} - q_{(1-a)/2}`` of the mixture's central interval."""
    lv = _check_level(level)
    q = mixture_quantile(loc, scale, np.array([(1 - lv) / 2, (1 + lv) / 2]), min_scale=min_scale)
    return float((q[1] - q[0]).mean())


def sharpness(loc: np.ndarray, scale: np.ndarray) -> float:
    """``sqrt(mean predictive variance)`` over N and D, uncertainty-toolbox's ``sharpness``.

    The predictive variance is the mixture's: ``mean_s scale^2 + var_s loc``.
    """
    mu, sigma, _ = check_regression(loc, scale, None)
    return float(np.sqrt(np.mean(np.mean(sigma**2, axis=0) + np.var(mu, axis=0))))


def coverage_curve(
    loc: np.ndarray,
    scale: np.ndarray,
    y_true: np.ndarray,
    *,
    levels: np.ndarray = COVERAGE_LEVELS,
    min_scale: float = MIN_SCALE,
) -> dict[str, np.ndarray]:
    """Calibration-curve arrays: ``{"expected": levels [L], "observed": coverage [L]}``."""
    lv = check_levels(levels)
    return {
        "expected": lv.copy(),
        "observed": interval_coverage(loc, scale, y_true, levels=lv, min_scale=min_scale),
    }
