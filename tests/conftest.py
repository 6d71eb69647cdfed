"""Shared fixtures: a catalog of dummy adapters/datasets/metrics and a tiny suite."""

from __future__ import annotations

import pytest
from _dummies import make_catalog

from uqbench.harness import Catalog
from uqbench.suites import Suite


@pytest.fixture
def catalog() -> Catalog:
    return make_catalog()


@pytest.fixture
def tiny_suite() -> Suite:
    return Suite(
        name="tiny",
        datasets=("toy-reg", "toy-cls"),
        seeds=(0, 1),
        n_samples=6,
        adapters=("noisy", "det"),
        n_bootstrap=20,
    )
