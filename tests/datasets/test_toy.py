"""toy-gap: generated 1-D heteroscedastic regression with a gap."""

from __future__ import annotations

import numpy as np
import pytest

from uqbench.datasets import load_dataset
from uqbench.datasets.toy import noise_std, true_function


@pytest.fixture(scope="module")
def toy():
    return load_dataset("toy-gap", seed=3)


def raw_x(ds, X):
    s = ds.info["input_standardization"]
    return X[:, 0] * s["std"][0] + s["mean"][0]


def raw_y(ds, y):
    return y[:, 0] * ds.target_std[0] + ds.target_mean[0]


def test_shapes_dtypes(toy, check_contract):
    check_contract(toy)
    assert toy.task == "regression"
    assert toy.X_train.shape == (240, 1) and toy.y_train.shape == (240, 1)
    assert toy.X_test.shape == (200, 1)
    assert set(toy.ood) == {"gap", "outside"}
    assert toy.plot_grid.shape == (300, 1)
    assert toy.image_shape is None


def test_standardized_with_train_statistics_only(toy):
    np.testing.assert_allclose(toy.X_train.mean(), 0.0, atol=1e-12)
    np.testing.assert_allclose(toy.X_train.std(), 1.0)
    np.testing.assert_allclose(toy.y_train.mean(), 0.0, atol=1e-12)
    np.testing.assert_allclose(toy.y_train.std(), 1.0)
    # the test split reuses the training statistics, so its mean is not forced to 0
    assert abs(toy.X_test.mean()) > 1e-6 and abs(toy.y_test.mean()) > 1e-6
    # undoing the stored statistics lands the raw inputs in the documented clusters
    x = raw_x(toy, toy.X_test)
    assert np.all(((x > -4) & (x < -1.5)) | ((x > 1.5) & (x < 4)))
    assert (x < 0).sum() == (x > 0).sum() == 100


def test_ood_sets_placement(toy):
    left = toy.X_train[toy.X_train[:, 0] < 0, 0]
    right = toy.X_train[toy.X_train[:, 0] > 0, 0]
    gap = toy.ood["gap"].X[:, 0]
    assert np.all((gap > left.max()) & (gap < right.min()))
    out = toy.ood["outside"].X[:, 0]
    assert np.all((out < toy.X_train.min()) | (out > toy.X_train.max()))
    assert (out < 0).sum() == (out > 0).sum() == 50
    x_out = np.abs(raw_x(toy, toy.ood["outside"].X))
    assert np.all((x_out > 5) & (x_out < 7))
    assert toy.ood["gap"].y.shape == (100, 1)


def test_regions_and_grid(toy):
    r = toy.regions
    lo, hi = r["gap"]
    gap = toy.ood["gap"].X[:, 0]
    assert np.all((gap > lo) & (gap < hi))
    assert r["outside_left"][1] < r["cluster_left"][0] < r["cluster_left"][1] == lo
    assert hi == r["cluster_right"][0] < r["cluster_right"][1] < r["outside_right"][0]
    np.testing.assert_allclose(raw_x(toy, toy.plot_grid)[[0, -1]], [-7.0, 7.0])
    assert np.all(np.diff(toy.plot_grid[:, 0]) > 0)
    np.testing.assert_allclose(
        toy.plot_grid[[0, -1], 0], [r["outside_left"][0], r["outside_right"][1]]
    )


def test_targets_follow_function_with_growing_noise():
    ds = load_dataset("toy-gap", seed=0)
    x = np.concatenate([raw_x(ds, ds.X_train), raw_x(ds, ds.X_test)])
    y = np.concatenate([raw_y(ds, ds.y_train), raw_y(ds, ds.y_test)])
    z = (y - true_function(x)) / noise_std(x)  # should be standard normal
    assert abs(z.mean()) < 0.2 and 0.85 < z.std() < 1.15
    resid = y - np.sin(2 * x) - x / 2
    inner, outer = np.abs(x) < 2.5, np.abs(x) > 3
    assert resid[outer].std() > 1.2 * resid[inner].std()


def test_seed_determinism_and_sensitivity(same_dataset):
    same_dataset(load_dataset("toy-gap", seed=7), load_dataset("toy-gap", seed=7))
    a, b = load_dataset("toy-gap", seed=7), load_dataset("toy-gap", seed=8)
    assert not np.array_equal(a.X_train, b.X_train)
    assert not np.array_equal(a.ood["gap"].X, b.ood["gap"].X)
