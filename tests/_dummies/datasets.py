"""Dummy datasets built with the real containers: a 1-D regression toy with a plot grid,
and a 4x4-'image' classification set with a labelled and an unlabelled OOD set."""

from __future__ import annotations

import numpy as np

from uqbench.datasets import Dataset, OODSet
from uqbench.harness import DatasetSource


def load_toy_reg(*, seed: int, data_dir=None, input_scaling: str = "standardize") -> Dataset:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=(60, 1))
    y_raw = 3.0 * x + 10.0 + 0.5 * rng.normal(size=(60, 1))
    mean, std = y_raw[:40].mean(0), y_raw[:40].std(0)
    y = (y_raw - mean) / std
    far = rng.uniform(4, 6, size=(10, 1))
    return Dataset(
        name="toy-reg",
        task="regression",
        X_train=x[:40],
        y_train=y[:40],
        X_test=x[40:],
        y_test=y[40:],
        ood={"far": OODSet(far)},
        target_mean=mean,
        target_std=std,
        plot_grid=np.linspace(-6, 6, 25)[:, None],
        regions={"data": (-2.0, 2.0), "far": (4.0, 6.0)},
    )


def load_toy_cls(*, seed: int, data_dir=None, input_scaling: str = "standardize") -> Dataset:
    rng = np.random.default_rng(seed)
    n = 90
    y = np.arange(n, dtype=np.int64) % 3
    centres = rng.random(size=(3, 16))
    X = np.clip(centres[y] + 0.1 * rng.normal(size=(n, 16)), 0, 1)
    shifted = np.clip(X[60:] + 0.3, 0, 1)
    noise = rng.random(size=(12, 16))
    if input_scaling == "standardize":
        mu, sd = X[:60].mean(0), X[:60].std(0) + 1e-9
        X, shifted, noise = (X - mu) / sd, (shifted - mu) / sd, (noise - mu) / sd
    return Dataset(
        name="toy-cls",
        task="classification",
        X_train=X[:60],
        y_train=y[:60],
        X_test=X[60:],
        y_test=y[60:],
        ood={"noise": OODSet(noise), "shifted": OODSet(shifted, y[60:])},
        n_classes=3,
        image_shape=(4, 4),
    )


DATASETS = {
    "toy-reg": DatasetSource("toy-reg", "regression", False, load_toy_reg, summary="dummy regression"),
    "toy-cls": DatasetSource("toy-cls", "classification", True, load_toy_cls, summary="dummy images"),
}
