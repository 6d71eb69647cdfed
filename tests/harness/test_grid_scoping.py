"""Suites that scope the grid: per-dataset seeds, per-adapter datasets and seeds, opt-in."""

from __future__ import annotations

from typing import ClassVar

import pytest
from _dummies import NoisyAdapter, make_catalog

from uqbench.harness.grid import plan_run
from uqbench.suites import STANDARD, Suite, SuiteError


class SlowReference(NoisyAdapter):
    opt_in: ClassVar[bool] = True


@pytest.fixture
def catalog():
    return make_catalog(reference=SlowReference)


def _grid(suite, catalog):
    return {(c.adapter, c.dataset, c.seed) for c in plan_run(suite, catalog=catalog).cells}


def test_dataset_seeds_first_matching_pattern_wins(catalog):
    suite = Suite(name="s", datasets=("toy-reg", "toy-cls"), seeds=(0, 1), n_samples=4, adapters=("noisy",),
                  dataset_seeds={"toy-r*": (5, 6, 7), "toy-*": (9,)})
    assert _grid(suite, catalog) == {("noisy", "toy-reg", 5), ("noisy", "toy-reg", 6), ("noisy", "toy-reg", 7),
                                     ("noisy", "toy-cls", 9)}


def test_opt_in_adapters_join_only_when_scoped(catalog):
    base = Suite(name="s", datasets=("toy-reg", "toy-cls"), seeds=(0, 1, 2), n_samples=4)
    assert not any(a == "reference" for a, _, _ in _grid(base, catalog))
    scoped = base.replace(adapter_datasets={"reference": ("toy-reg",)}, adapter_seeds={"reference": (0, 2)})
    grid = _grid(scoped, catalog)
    assert {(d, s) for a, d, s in grid if a == "reference"} == {("toy-reg", 0), ("toy-reg", 2)}
    assert {(d, s) for a, d, s in grid if a == "noisy"} == {(d, s) for d in ("toy-reg", "toy-cls") for s in (0, 1, 2)}
    # Named explicitly, an opt-in adapter runs everywhere it is not scoped away.
    named = base.replace(adapters=("reference",))
    assert len(_grid(named, catalog)) == 6


def test_scoping_round_trips_and_validates():
    assert Suite.from_dict(STANDARD.to_dict()) == STANDARD
    with pytest.raises(SuiteError, match="dataset_seeds"):
        Suite(name="s", datasets=("a",), seeds=(0,), n_samples=1, dataset_seeds={"a": (-1,)})
    with pytest.raises(SuiteError, match="adapter_seeds"):
        Suite(name="s", datasets=("a",), seeds=(0,), n_samples=1, adapter_seeds={"x": ()})


def test_standard_suite_follows_the_published_uci_protocol():
    assert STANDARD.seeds_for("uci-kin8nm") == tuple(range(20))
    assert STANDARD.seeds_for("uci-kin8nm-extrapolate") == (0, 1, 2, 3, 4)
    assert STANDARD.seeds_for("mnist-t10k") == (0, 1, 2, 3, 4)
    assert "uci-protein" not in STANDARD.datasets
    for name in ("boston", "concrete", "energy", "kin8nm", "naval", "power", "wine", "yacht"):
        # The published protocol, plus SWAG's own SGD phase (a key no other adapter takes).
        assert STANDARD.dataset_params[f"uci-{name}"] == {"hidden": (50,), "epochs": 40, "batch_size": 128,
                                                          "swag_epochs": 40}
    assert STANDARD.runs_on("hmc", "toy-gap", 1) and not STANDARD.runs_on("hmc", "toy-gap", 3)
    assert not STANDARD.runs_on("hmc", "uci-kin8nm", 0)
    assert set(STANDARD.steps) == {"probe", "fidelity"}
