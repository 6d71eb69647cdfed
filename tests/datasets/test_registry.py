"""Registry, argument validation and the data-directory lookup."""

from __future__ import annotations

import pytest

from uqbench.datasets import (
    DATASETS,
    DatasetSpec,
    dataset_names,
    load_dataset,
    resolve_data_dir,
)
from uqbench.errors import DataNotFoundError, UserError

UCI = ["boston", "concrete", "energy", "kin8nm", "naval", "power", "protein", "wine", "yacht"]


def test_registry_names_and_specs():
    names = dataset_names()
    assert names == list(DATASETS)
    expected = {
        "toy-gap",
        "digits",
        "mnist",
        "fashion-mnist",
        "notmnist",
        "mnist-t10k",
        "notmnist-t10k",
    }
    expected |= {f"uci-{s}" for s in UCI} | {f"uci-{s}-extrapolate" for s in UCI}
    assert expected <= set(names)
    for name, spec in DATASETS.items():
        assert isinstance(spec, DatasetSpec) and spec.name == name and spec.summary
    assert DATASETS["toy-gap"] == DatasetSpec(
        "toy-gap", "regression", DATASETS["toy-gap"].summary, False, False
    )
    assert DATASETS["digits"].image and not DATASETS["digits"].needs_data_dir
    assert DATASETS["uci-wine"].needs_data_dir and DATASETS["uci-wine"].task == "regression"
    assert DATASETS["mnist-t10k"].image and DATASETS["mnist-t10k"].task == "classification"
    assert "unmodified" in DATASETS["uci-wine"].summary
    assert "departs from the published protocol" in DATASETS["uci-wine-extrapolate"].summary


def test_unknown_name_lists_known_names():
    with pytest.raises(
        UserError,
        match=r"unknown dataset 'mnsit'; known datasets: toy-gap, digits, .*uci-yacht-extrapolate",
    ):
        load_dataset("mnsit", seed=0)


@pytest.mark.parametrize("seed", [-1, 1.5, "0", True, None])
def test_bad_seed(seed):
    with pytest.raises(ValueError, match=f"seed must be an integer >= 0, got {seed!r}"):
        load_dataset("toy-gap", seed=seed)


def test_bad_input_scaling():
    with pytest.raises(
        UserError, match="input_scaling must be one of standardize, unit, got 'minmax'"
    ):
        load_dataset("digits", seed=0, input_scaling="minmax")
    with pytest.raises(UserError, match="only for image datasets; toy-gap"):
        load_dataset("toy-gap", seed=0, input_scaling="unit")
    with pytest.raises(UserError, match="only for image datasets; uci-boston"):
        load_dataset("uci-boston", seed=0, input_scaling="unit")


@pytest.mark.parametrize("name", [n for n, s in DATASETS.items() if s.needs_data_dir])
def test_missing_data_directory_is_one_clear_line(name):
    with pytest.raises(DataNotFoundError) as info:
        load_dataset(name, seed=0)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{name} needs <data_dir>/")
    assert message.endswith("pass --data-dir or set UQBENCH_DATA (layout: see README)")


def test_concrete_message_matches_the_documented_form():
    with pytest.raises(
        DataNotFoundError,
        match=r"^uci-concrete needs <data_dir>/uci/concrete/data\.txt; pass --data-dir",
    ):
        load_dataset("uci-concrete", seed=0)


def test_resolve_data_dir(tmp_path, monkeypatch):
    assert resolve_data_dir(tmp_path) == tmp_path
    monkeypatch.setenv("UQBENCH_DATA", str(tmp_path))
    assert resolve_data_dir() == tmp_path
    with pytest.raises(
        DataNotFoundError, match=r"x: data directory .*absent \(from data_dir\) does not exist"
    ):
        resolve_data_dir(tmp_path / "absent", dataset="x")
    monkeypatch.setenv("UQBENCH_DATA", str(tmp_path / "gone"))
    with pytest.raises(DataNotFoundError, match="from UQBENCH_DATA"):
        resolve_data_dir()


def test_generated_datasets_ignore_the_data_dir(tmp_path):
    assert load_dataset("toy-gap", seed=0, data_dir=tmp_path / "absent").name == "toy-gap"
    assert load_dataset("digits", seed=0, data_dir=None).name == "digits"
