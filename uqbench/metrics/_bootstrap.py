"""Seeded percentile bootstrap over test points, vectorised over resamples.

A resample of n points is represented by its *weights*: how many times each point was
drawn (a row of ``[B, n]`` that sums to n). A metric is computed by a :class:`Statistic`,
a function of the weights of each sample group that returns one value per resample; the
point estimate is the same function at weights of one, so the estimate and its interval
come from one code path. Every metric here is a function of weighted per-point sums, so
a resample costs a matrix product with a per-point array, never a recomputation from the
predictive draws.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import sparse

# Resamples x points of the weight matrix handed to a statistic at once.
_CHUNK_ELEMENTS = 1 << 20

CI_LEVEL = 0.95


@dataclass(frozen=True)
class MetricValue:
    """One scalar metric with its bootstrap 95% percentile interval (NaN when none)."""

    name: str
    value: float
    ci_low: float
    ci_high: float


@dataclass(frozen=True)
class Statistic:
    """Metrics computed together for a batch of resamples.

    Attributes
    ----------
    fn : ``fn(*weights) -> {name: values [B]}``; ``weights[k]`` is float64 ``[B, n_k]``,
        the number of times each point of sample group k occurs in each resample (one
        group for test-set metrics; in-distribution and OOD for the OOD metrics).
    """

    fn: Callable[..., dict[str, np.ndarray]]


def mean_statistic(per_point: dict[str, np.ndarray]) -> Statistic:
    """Metrics that are plain means of per-point values ``{name: [N]}``."""
    names = list(per_point)
    values = np.stack([np.asarray(per_point[k], dtype=np.float64) for k in names], axis=1)
    n = values.shape[0]

    def fn(weights: np.ndarray) -> dict[str, np.ndarray]:
        means = weights @ values / n  # [B, M]
        return {k: means[:, j] for j, k in enumerate(names)}

    return Statistic(fn)


def group_matrix(keys: np.ndarray, values: np.ndarray | None, n_keys: int) -> sparse.csr_array:
    """Sparse ``[N, n_keys]`` matrix putting ``values[i, ...]`` in columns ``keys[i, ...]``.

    ``weights @ matrix`` then gives the weighted per-key sums of each resample (counts
    when ``values`` is None), e.g. per calibration bin or per distinct score.
    """
    keys = np.asarray(keys).reshape(keys.shape[0], -1)
    rows = np.repeat(np.arange(keys.shape[0]), keys.shape[1])
    data = np.ones(keys.size) if values is None else np.asarray(values, np.float64).ravel()
    return sparse.csr_array((data, (rows, keys.ravel())), shape=(keys.shape[0], n_keys))


def weighted_sums(weights: np.ndarray, matrix: sparse.csr_array) -> np.ndarray:
    """``weights [B, N] @ matrix [N, K]`` as a dense ``[B, K]`` array."""
    return np.asarray((matrix.T @ weights.T).T)


def check_bootstrap_args(n_bootstrap: object, seed: object) -> None:
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    if (
        not isinstance(n_bootstrap, numbers.Integral)
        or isinstance(n_bootstrap, bool)
        or n_bootstrap < 0
    ):
        raise ValueError(f"n_bootstrap must be a non-negative integer, got {n_bootstrap!r}")


def resample_indices(sizes: Sequence[int], *, n_bootstrap: int, seed: int) -> list[np.ndarray]:
    """Bootstrap index arrays ``[n_bootstrap, n_k]``, one per group, drawn independently.

    One generator seeded with ``seed`` draws the groups in order, so a given seed gives
    the same resamples for every metric of one call (paired across metrics).
    """
    rng = np.random.default_rng(seed)
    return [rng.integers(0, n, size=(n_bootstrap, n)) for n in sizes]


def index_weights(indices: np.ndarray, n: int) -> np.ndarray:
    """Multiplicities ``[B, n]`` (float64) of the points in index resamples ``[B, n]``."""
    n_rep = indices.shape[0]
    keys = (indices + n * np.arange(n_rep)[:, None]).ravel()
    return np.bincount(keys, minlength=n_rep * n).reshape(n_rep, n).astype(np.float64)


def percentile_interval(replicates: np.ndarray) -> tuple[float, float]:
    """Central 95% percentile interval of the finite replicates; NaN if there are none.

    Only the OOD ``epistemic_ratio`` can be NaN in a replicate (resampled in-distribution
    points all with zero epistemic score); such replicates are left out.
    """
    finite = replicates[~np.isnan(replicates)]
    if finite.size == 0:
        return float("nan"), float("nan")
    tail = 100.0 * (1.0 - CI_LEVEL) / 2.0
    low, high = np.percentile(finite, [tail, 100.0 - tail])
    return float(low), float(high)


def run_bootstrap(
    statistics: Sequence[Statistic],
    sizes: Sequence[int],
    *,
    n_bootstrap: int,
    seed: int,
) -> list[MetricValue]:
    """Point estimates and percentile intervals of every metric the statistics produce.

    Parameters
    ----------
    statistics : the statistics; each is called with one weight matrix per entry of ``sizes``.
    sizes : number of points in each sample group.
    n_bootstrap : number of resamples; 0 gives NaN intervals.
    seed : seeds the resampling (see :func:`resample_indices`).
    """
    check_bootstrap_args(n_bootstrap, seed)
    for n in sizes:
        if n < 1:
            raise ValueError(f"cannot bootstrap an empty set of points (sizes {list(sizes)})")
    ones = [np.ones((1, n)) for n in sizes]
    estimates: dict[str, float] = {}
    for stat in statistics:
        for name, value in stat.fn(*ones).items():
            estimates[name] = float(value[0])
    if n_bootstrap == 0:
        return [MetricValue(k, v, float("nan"), float("nan")) for k, v in estimates.items()]

    indices = resample_indices(sizes, n_bootstrap=n_bootstrap, seed=seed)
    replicates: dict[str, list[np.ndarray]] = {name: [] for name in estimates}
    rows = max(1, _CHUNK_ELEMENTS // max(sizes))
    for start in range(0, n_bootstrap, rows):
        weights = [
            index_weights(idx[start : start + rows], n)
            for idx, n in zip(indices, sizes, strict=True)
        ]
        for stat in statistics:
            for name, values in stat.fn(*weights).items():
                replicates[name].append(np.asarray(values, dtype=np.float64))
    names = list(estimates)
    table = np.stack([np.concatenate(replicates[name]) for name in names])  # [K, B]
    tail = 100.0 * (1.0 - CI_LEVEL) / 2.0
    # One percentile call for all metrics without NaN replicates (the usual case).
    bounds = np.percentile(np.nan_to_num(table), [tail, 100.0 - tail], axis=1)
    out = []
    for k, name in enumerate(names):
        if np.isnan(table[k]).any():
            low, high = percentile_interval(table[k])
        else:
            low, high = float(bounds[0, k]), float(bounds[1, k])
        out.append(MetricValue(name, estimates[name], low, high))
    return out


def bootstrap_interval(
    name: str,
    metric: Callable[..., float],
    samples: object,
    y_true: np.ndarray | None,
    *,
    n_bootstrap: int = 200,
    seed: int,
) -> MetricValue:
    """Generic (slow) bootstrap of any metric ``metric(samples, y_true) -> float``.

    Each resample recomputes the metric on ``samples.subset(index)`` and ``y_true[index]``
    (``None`` stays ``None``). It draws the same resamples as :func:`run_bootstrap` for the
    same seed and point count, so a fast statistic can be checked against it; use it for
    metrics that have no vectorised statistic yet.
    """
    check_bootstrap_args(n_bootstrap, seed)
    subset = getattr(samples, "subset", None)
    if subset is None:
        raise ValueError(f"samples must be a sample container with .subset, got {samples!r}")
    n = _n_points(samples)
    if n < 1:
        raise ValueError(f"cannot bootstrap an empty set of points (n={n})")
    value = float(metric(samples, y_true))
    if n_bootstrap == 0:
        return MetricValue(name, value, float("nan"), float("nan"))
    (indices,) = resample_indices([n], n_bootstrap=n_bootstrap, seed=seed)
    replicates = np.array(
        [
            metric(subset(index), None if y_true is None else np.asarray(y_true)[index])
            for index in indices
        ],
        dtype=np.float64,
    )
    return MetricValue(name, value, *percentile_interval(replicates))


def _n_points(samples: object) -> int:
    for attr in ("probs", "loc", "recon"):
        array = getattr(samples, attr, None)
        if array is not None:
            return int(array.shape[1])
    raise ValueError(f"cannot tell the number of points of {samples!r}")
