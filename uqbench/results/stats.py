"""Statistics over seeds, from :mod:`scipy.stats`, with the guards a benchmark needs.

Used by the compare gate (:mod:`uqbench.results.compare`), the torch-vs-TFP parity table
(:mod:`uqbench.results.parity`) and the paper tables (:mod:`uqbench.results.paper`).

The guard: with three to five seeds, a paired difference that is the same for every seed
(a deterministic adapter, a change that moves every split alike) has zero variance, where
scipy's t statistic is undefined (NaN, with a warning). Then the difference is certain:
the p-value is 0 when it is non-zero and 1 when it is zero, and the interval has width 0.
A spread of a few ulps (equal-but-rounded floats) is a spread: scipy then warns of
"precision loss" but returns the exact t-test of those numbers, which is what the gate
has always reported, so that one warning is silenced here (:func:`_quiet`).

``scipy.stats`` (0.7 s to import) is imported on first use: every CLI command builds the
``compare`` parser, which imports this module.
"""

from __future__ import annotations

import contextlib
import math
import warnings
from collections.abc import Iterator, Sequence

import numpy as np

__all__ = ["paired_interval", "paired_t_test", "welch_t_test"]


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Ignore scipy's precision-loss warning for nearly-constant data, and only that."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Precision loss occurred", category=RuntimeWarning)
        yield


def paired_t_test(base: Sequence[float], new: Sequence[float]) -> tuple[float, float]:
    """(mean of ``new - base``, two-sided p) of the paired t-test (:func:`scipy.stats.ttest_rel`).

    ``base``, ``new``: ``[n]`` values of the same seeds, n >= 2.
    """
    b, n = np.asarray(base, dtype=np.float64), np.asarray(new, dtype=np.float64)
    d = n - b
    mean = float(d.mean())
    sd = float(d.std(ddof=1))
    if sd == 0.0 or not math.isfinite(sd):
        return mean, (0.0 if mean != 0.0 else 1.0)
    from scipy import stats

    with _quiet():
        return mean, float(stats.ttest_rel(n, b).pvalue)


def welch_t_test(base: Sequence[float], new: Sequence[float]) -> tuple[float, float]:
    """(difference of the means new - base, two-sided p) of Welch's t-test
    (:func:`scipy.stats.ttest_ind` with ``equal_var=False``).

    ``base`` ``[n_b]``, ``new`` ``[n_n]``, each with at least 2 values.
    """
    b, n = np.asarray(base, dtype=np.float64), np.asarray(new, dtype=np.float64)
    diff = float(n.mean() - b.mean())
    if float(b.var(ddof=1)) / b.size + float(n.var(ddof=1)) / n.size == 0.0:
        return diff, (0.0 if diff != 0.0 else 1.0)
    from scipy import stats

    with _quiet():
        return diff, float(stats.ttest_ind(n, b, equal_var=False).pvalue)


def paired_interval(diffs: Sequence[float], *, level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high) of the Student-t interval for the mean of paired differences ``[n]``
    (:meth:`scipy.stats.ttest_1samp` ``.confidence_interval``).

    NaN bounds when fewer than 2 differences; width 0 when they are all equal.
    """
    d = np.asarray(diffs, dtype=np.float64)
    if d.ndim != 1:
        raise ValueError(f"diffs must be 1-D, got shape {d.shape}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level!r}")
    if d.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(d.mean())
    if d.size < 2:
        return mean, math.nan, math.nan
    if float(d.std(ddof=1)) == 0.0:
        return mean, mean, mean
    from scipy import stats

    with _quiet():
        ci = stats.ttest_1samp(d, 0.0).confidence_interval(confidence_level=level)
    return mean, float(ci.low), float(ci.high)
