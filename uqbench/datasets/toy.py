"""``toy-gap``: 1-D heteroscedastic regression with a gap between two input clusters.

Generated from the seed, no files. In raw units:

- inputs ``x ~ U(-4, -1.5) ∪ U(1.5, 4)`` (equal counts per cluster) for train and test;
- targets ``y = sin(2x) + x / 2 + eps``, ``eps ~ N(0, (0.1 + 0.1 |x|)^2)``: the noise grows
  with ``|x|`` (heteroscedastic);
- OOD ``gap``: ``x ~ U(-1.5, 1.5)``, the region between the clusters;
- OOD ``outside``: ``|x| ~ U(5, 7)``, half on each side, beyond the data range.

A good model is confident (low epistemic variance) inside the clusters and uncertain in
the gap and outside; aleatoric variance should follow the noise, growing with ``|x|``.
Inputs and targets are standardized with training statistics; ``plot_grid`` spans raw
``[-7, 7]`` and ``regions`` gives the intervals above in standardized units.
"""

from __future__ import annotations

import numpy as np

from ._base import Dataset, OODSet, Standardizer, rng_streams

NAME = "toy-gap"
CLUSTERS = ((-4.0, -1.5), (1.5, 4.0))
GAP = (-1.5, 1.5)
OUTSIDE = (5.0, 7.0)  # |x| range
GRID = (-7.0, 7.0)

N_TRAIN_PER_CLUSTER = 120
N_TEST_PER_CLUSTER = 100
N_GAP = 100
N_OUTSIDE_PER_SIDE = 50
N_GRID = 300

FUNCTION = "y = sin(2x) + x/2 + eps"
NOISE = "eps ~ N(0, (0.1 + 0.1|x|)^2)"


def true_function(x: np.ndarray) -> np.ndarray:
    """Noise-free target in raw units."""
    return np.sin(2.0 * x) + 0.5 * x


def noise_std(x: np.ndarray) -> np.ndarray:
    """Raw-unit standard deviation of the observation noise at ``x``."""
    return 0.1 + 0.1 * np.abs(x)


def _clusters(rng: np.random.Generator, n_per_cluster: int) -> np.ndarray:
    return np.concatenate([rng.uniform(lo, hi, n_per_cluster) for lo, hi in CLUSTERS])


def _targets(rng: np.random.Generator, x: np.ndarray) -> np.ndarray:
    return true_function(x) + noise_std(x) * rng.standard_normal(x.shape)


def load_toy_gap(*, seed: int) -> Dataset:
    """The seeded ``toy-gap`` dataset (see the module docstring).

    Returns
    -------
    Dataset with ``X_*`` ``[N, 1]``, ``y_*`` ``[N, 1]`` (240 train, 200 test), OOD sets
    ``gap`` (100) and ``outside`` (100, with their noisy targets), ``plot_grid`` ``[300, 1]``
    and ``regions``.
    """
    rng_train, rng_test, rng_gap, rng_out = rng_streams(seed, 4)
    x_train = _clusters(rng_train, N_TRAIN_PER_CLUSTER)
    y_train = _targets(rng_train, x_train)
    x_test = _clusters(rng_test, N_TEST_PER_CLUSTER)
    y_test = _targets(rng_test, x_test)
    x_gap = rng_gap.uniform(*GAP, N_GAP)
    y_gap = _targets(rng_gap, x_gap)
    x_out = np.concatenate(
        [
            -rng_out.uniform(*OUTSIDE, N_OUTSIDE_PER_SIDE),
            rng_out.uniform(*OUTSIDE, N_OUTSIDE_PER_SIDE),
        ]
    )
    y_out = _targets(rng_out, x_out)

    x_scaler = Standardizer.fit(x_train[:, None])
    y_scaler = Standardizer.fit(y_train[:, None])

    def sx(x: np.ndarray) -> np.ndarray:
        return x_scaler.transform(x[:, None])

    def sy(y: np.ndarray) -> np.ndarray:
        return y_scaler.transform(y[:, None])

    def interval(lo: float, hi: float) -> tuple[float, float]:
        a, b = sx(np.array([lo, hi]))[:, 0]
        return float(a), float(b)

    regions = {
        "cluster_left": interval(*CLUSTERS[0]),
        "gap": interval(*GAP),
        "cluster_right": interval(*CLUSTERS[1]),
        "outside_left": interval(-OUTSIDE[1], -OUTSIDE[0]),
        "outside_right": interval(*OUTSIDE),
    }
    return Dataset(
        name=NAME,
        task="regression",
        X_train=sx(x_train),
        y_train=sy(y_train),
        X_test=sx(x_test),
        y_test=sy(y_test),
        ood={"gap": OODSet(sx(x_gap), sy(y_gap)), "outside": OODSet(sx(x_out), sy(y_out))},
        target_mean=y_scaler.mean,
        target_std=y_scaler.std,
        plot_grid=sx(np.linspace(*GRID, N_GRID)),
        regions=regions,
        info={
            "source": "generated",
            "seed": seed,
            "description": "1-D heteroscedastic regression with a gap between two input clusters",
            "function": FUNCTION,
            "noise": NOISE,
            "raw_intervals": {
                "train_test": [list(c) for c in CLUSTERS],
                "gap": list(GAP),
                "outside": [[-OUTSIDE[1], -OUTSIDE[0]], list(OUTSIDE)],
                "plot_grid": list(GRID),
            },
            "input_standardization": x_scaler.to_info(),
            "n_train": len(x_train),
            "n_test": len(x_test),
            "n_ood": {"gap": N_GAP, "outside": 2 * N_OUTSIDE_PER_SIDE},
        },
    )
