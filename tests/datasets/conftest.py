"""Fixtures for the dataset tests: the shared real-data directory and a contract check."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from uqbench.datasets import Dataset

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The shared real-data directory (env ``UQBENCH_SHARED_DATA``, else ``<repo>/../shared/data``)."""
    path = Path(os.environ.get("UQBENCH_SHARED_DATA") or REPO.parent / "shared" / "data")
    if not path.is_dir():
        pytest.skip(f"shared data directory {path} is absent (set UQBENCH_SHARED_DATA)")
    return path


@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The loaders fall back to UQBENCH_DATA; a developer's setting must not leak into tests.
    monkeypatch.delenv("UQBENCH_DATA", raising=False)


def _check_contract(ds: Dataset) -> None:
    """Shapes and dtypes every Dataset promises."""
    assert ds.X_train.dtype == np.float64 and ds.X_train.ndim == 2
    assert ds.X_test.dtype == np.float64 and ds.X_test.shape[1] == ds.X_train.shape[1]
    assert len(ds.X_train) == len(ds.y_train) and len(ds.X_test) == len(ds.y_test)
    if ds.task == "regression":
        for y in (ds.y_train, ds.y_test):
            assert y.dtype == np.float64 and y.ndim == 2
        assert ds.target_mean.shape == ds.target_std.shape == (ds.y_train.shape[1],)
        assert ds.n_classes is None
    else:
        for y in (ds.y_train, ds.y_test):
            assert y.dtype == np.int64 and y.ndim == 1
            assert 0 <= y.min() and y.max() < ds.n_classes
    for ood in ds.ood.values():
        assert ood.X.dtype == np.float64 and ood.X.shape[1] == ds.X_train.shape[1]
    for X in (ds.X_train, ds.X_test, *(o.X for o in ds.ood.values())):
        assert np.all(np.isfinite(X))
    if ds.image_shape is not None:
        assert np.prod(ds.image_shape) == ds.X_train.shape[1]


@pytest.fixture
def check_contract() -> Callable[[Dataset], None]:
    return _check_contract


def assert_same_dataset(a: Dataset, b: Dataset) -> None:
    for field in ("X_train", "y_train", "X_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
    assert a.ood.keys() == b.ood.keys()
    for key in a.ood:
        np.testing.assert_array_equal(a.ood[key].X, b.ood[key].X)


@pytest.fixture
def same_dataset() -> Callable[[Dataset, Dataset], None]:
    return assert_same_dataset
