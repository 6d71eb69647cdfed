"""digits: sklearn 8x8 digits, classes 0-7 in distribution, 8-9 held out, rotated test images."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from uqbench.datasets import load_dataset
from uqbench.datasets.digits import rotate_images


@pytest.fixture(scope="module")
def raw():
    bunch = load_digits()
    return bunch.data.astype(np.float64), bunch.target


@pytest.fixture(scope="module")
def unit():
    return load_dataset("digits", seed=2, input_scaling="unit")


def sorted_rows(X):
    return X[np.lexsort(X.T[::-1])]


def test_shapes_dtypes(unit, check_contract):
    ds = load_dataset("digits", seed=2)
    for d in (ds, unit):
        check_contract(d)
        assert d.task == "classification" and d.n_classes == 8 and d.image_shape == (8, 8)
        assert d.X_train.shape == (1082, 64) and d.X_test.shape == (361, 64)
        assert set(d.ood) == {"heldout-classes", "shifted"}
    np.testing.assert_array_equal(ds.y_train, unit.y_train)


def test_split_covers_classes_0_to_7_stratified(unit, raw):
    X, y = raw
    inside = y < 8
    both = np.concatenate([unit.X_train, unit.X_test]) * 16
    np.testing.assert_array_equal(sorted_rows(both), sorted_rows(X[inside]))
    assert set(np.unique(unit.y_train)) == set(np.unique(unit.y_test)) == set(range(8))
    counts = np.bincount(y[inside])
    np.testing.assert_allclose(np.bincount(unit.y_test), counts * 0.25, atol=0.51)


def test_heldout_classes_are_exactly_8_and_9(unit, raw):
    X, y = raw
    held = unit.ood["heldout-classes"]
    assert held.y is None
    np.testing.assert_array_equal(sorted_rows(held.X * 16), sorted_rows(X[y >= 8]))


def test_shifted_is_rotated_test_set_with_labels(unit):
    shifted = unit.ood["shifted"]
    np.testing.assert_array_equal(shifted.y, unit.y_test)
    assert shifted.X.shape == unit.X_test.shape
    assert shifted.X.min() >= 0 and shifted.X.max() <= 1
    moved = np.abs(shifted.X - unit.X_test).sum(axis=1)
    assert np.all(moved > 0)


def test_rotate_images_is_a_rotation():
    # A 90° turn of an 8x8 grid about its centre maps pixels onto pixels, so bilinear
    # interpolation is exact and must equal numpy's rot90.
    img = np.random.default_rng(0).uniform(0, 16, (2, 8, 8))
    np.testing.assert_allclose(
        rotate_images(img, np.array([90.0, -90.0]))[0], np.rot90(img[0]), atol=1e-12
    )
    np.testing.assert_allclose(
        rotate_images(img, np.array([90.0, -90.0]))[1], np.rot90(img[1], -1), atol=1e-12
    )


def test_scalings(unit):
    assert unit.X_train.min() == 0 and unit.X_train.max() == 1
    ds = load_dataset("digits", seed=2)
    np.testing.assert_allclose(ds.X_train.mean(), 0.0, atol=1e-12)
    np.testing.assert_allclose(ds.X_train.std(), 1.0)
    # every set is the same affine map of the unit-scaled pixels
    mean, std = ds.info["input_scaling"]["mean"], ds.info["input_scaling"]["std"]
    for a, b in ((ds.X_test, unit.X_test), (ds.ood["shifted"].X, unit.ood["shifted"].X)):
        np.testing.assert_allclose(a, (b * 16 - mean) / std)
    assert abs(ds.X_test.mean()) > 1e-6


def test_seed_determinism_and_sensitivity(same_dataset):
    same_dataset(load_dataset("digits", seed=5), load_dataset("digits", seed=5))
    a, b = load_dataset("digits", seed=5), load_dataset("digits", seed=6)
    assert not np.array_equal(a.y_train, b.y_train)
    assert not np.array_equal(a.ood["shifted"].X, b.ood["shifted"].X)
