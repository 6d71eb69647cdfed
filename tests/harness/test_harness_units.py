"""Suites, planning, sample checks, unit conversion and timing, each on its own."""

from __future__ import annotations

import math
import subprocess
import sys

import numpy as np
import pytest

from uqbench.errors import DataNotFoundError, UserError
from uqbench.harness import Catalog, DatasetSource, plan_run
from uqbench.harness.cell import (
    OPTIONAL_STEPS,
    InvalidSamplesError,
    cell_steps,
    check_samples,
    one_line,
    to_original_units,
)
from uqbench.harness.grid import cell_mode, expand_datasets
from uqbench.harness.timing import measure
from uqbench.interface import ClassificationSamples, RegressionSamples
from uqbench.suites import SUITES, Suite, SuiteError, get_suite

# -- suites ------------------------------------------------------------------------------


def test_builtin_suites():
    quick, standard = get_suite("quick"), get_suite("standard")
    assert quick.datasets == ("toy-gap", "digits") and quick.seeds == (0, 1, 2)
    assert quick.n_samples == 50 and quick.adapters is None
    assert standard.seeds == (0, 1, 2, 3, 4) and standard.n_samples == 100
    assert "uci-kin8nm" in standard.datasets and "uci-yacht-extrapolate" in standard.datasets
    assert "mnist-t10k" in standard.datasets and "uci-protein" not in standard.datasets
    assert "probe" in standard.steps
    with pytest.raises(UserError, match="unknown suite 'nope'; known suites: quick, standard"):
        get_suite("nope")


def test_suite_is_frozen_and_roundtrips():
    suite = SUITES["quick"]
    with pytest.raises(AttributeError):
        suite.n_samples = 3  # type: ignore[misc]
    custom = suite.replace(adapter_params={"mc-dropout": {"epochs": 5}}, adapters=("a", "b"))
    assert Suite.from_dict(custom.to_dict()) == custom


def test_suite_from_dict_rejects_unknown_keys():
    data = {**SUITES["quick"].to_dict(), "sedes": [0]}
    with pytest.raises(SuiteError, match=r"unknown suite key\(s\) 'sedes' \(did you mean 'seeds'\?\)"):
        Suite.from_dict(data)
    with pytest.raises(SuiteError, match="missing required key"):
        Suite.from_dict({"name": "x"})


@pytest.mark.parametrize(
    ("changes", "match"),
    [
        ({"seeds": ()}, "seeds must be"),
        ({"seeds": (0, 0)}, "distinct"),
        ({"seeds": (-1,)}, "seeds must be"),
        ({"n_samples": 0}, "n_samples must be an integer >= 1, got 0"),
        ({"n_samples": -1}, "got -1"),
        ({"datasets": ()}, "datasets must not be empty"),
        ({"steps": ("probz",)}, "unknown cell step"),
        ({"adapter_params": {"a": 3}}, "adapter_params"),
    ],
)
def test_suite_rejects_bad_values(changes, match):
    with pytest.raises(SuiteError, match=match):
        SUITES["quick"].replace(**changes)


# -- planning ----------------------------------------------------------------------------


def test_cell_mode():
    both = frozenset({"regression", "classification"})
    assert cell_mode(both, "regression", False) == ("regression", "")
    assert cell_mode(frozenset({"reconstruction"}), "classification", True) == ("reconstruction", "")
    mode, reason = cell_mode(frozenset({"reconstruction"}), "regression", False)
    assert mode is None and "lack 'regression'" in reason
    assert cell_mode(frozenset({"regression"}), "classification", True)[0] is None


def test_expand_datasets_patterns():
    known = ["toy-gap", "uci-boston", "uci-boston-extrapolate", "uci-wine", "digits"]
    assert expand_datasets(("digits", "uci-*"), known) == (
        "digits", "uci-boston", "uci-boston-extrapolate", "uci-wine")
    with pytest.raises(UserError, match="matches nothing"):
        expand_datasets(("mnist-*",), known)


def test_plan_orders_cells_dataset_seed_adapter(catalog, tiny_suite):
    plan = plan_run(tiny_suite.replace(adapters=("noisy", "recon")), catalog=catalog)
    assert [c.key for c in plan.cells[:4]] == [
        "noisy__toy-reg__0", "recon__toy-reg__0", "noisy__toy-reg__1", "recon__toy-reg__1"]
    assert [c.applicable for c in plan.cells] == [True, False] * 2 + [True, True] * 2
    assert plan.suite.adapters == ("noisy", "recon")


def test_plan_uses_every_available_adapter_when_none_given(catalog, tiny_suite):
    plan = plan_run(tiny_suite.replace(adapters=None), catalog=catalog)
    assert set(plan.suite.adapters) == {"noisy", "det", "failing", "nan", "wrong-shape", "recon"}


def test_plan_rejects_unknown_names_and_bad_params(catalog, tiny_suite):
    with pytest.raises(UserError, match=r"unknown dataset 'toy-rge' \(did you mean 'toy-reg'\?\)"):
        plan_run(tiny_suite.replace(datasets=("toy-rge",)), catalog=catalog)
    with pytest.raises(UserError, match="unknown adapter 'nope'"):
        plan_run(tiny_suite.replace(adapters=("nope",)), catalog=catalog)
    with pytest.raises(UserError, match="bad hyperparameters"):
        plan_run(tiny_suite.replace(adapter_params={"noisy": {"epochs": 3}}), catalog=catalog)


def test_plan_needs_a_data_dir_for_file_datasets(tmp_path, tiny_suite, monkeypatch):
    from _dummies import DATASETS, make_catalog

    files = DatasetSource("files", "regression", False, DATASETS["toy-reg"].load, needs_data_dir=True)
    catalog = make_catalog()
    catalog._datasets = {**DATASETS, "files": files}
    suite = tiny_suite.replace(datasets=("files",))
    monkeypatch.delenv("UQBENCH_DATA", raising=False)
    with pytest.raises(DataNotFoundError, match="files need a data directory"):
        plan_run(suite, catalog=catalog)
    with pytest.raises(DataNotFoundError, match="does not exist"):
        plan_run(suite, catalog=catalog, data_dir=tmp_path / "missing")
    assert plan_run(suite, catalog=catalog, data_dir=tmp_path).data_dir == str(tmp_path)
    monkeypatch.setenv("UQBENCH_DATA", str(tmp_path))
    assert plan_run(suite, catalog=catalog).data_dir == str(tmp_path)


def test_default_catalog_sees_the_real_datasets():
    names = Catalog().dataset_names()
    assert {"toy-gap", "digits"} <= set(names)
    assert Catalog().dataset("digits").image


# -- cell pieces -------------------------------------------------------------------------


def _reg(S=4, N=3, D=1):
    rng = np.random.default_rng(0)
    return RegressionSamples(rng.normal(size=(S, N, D)), rng.random(size=(S, N, D)))


def test_check_samples_accepts_good_and_names_the_problem():
    X, y = np.zeros((3, 2)), np.zeros((3, 1))
    check_samples(_reg(), mode="regression", n_samples=4, X=X, y=y, split="test")
    with pytest.raises(InvalidSamplesError, match="test: loc has shape"):
        check_samples(_reg(N=2), mode="regression", n_samples=4, X=X, y=y, split="test")
    with pytest.raises(InvalidSamplesError, match="expected RegressionSamples, got ndarray"):
        check_samples(np.zeros((4, 3, 1)), mode="regression", n_samples=4, X=X, y=y, split="test")
    with pytest.raises(InvalidSamplesError, match="D=2"):
        check_samples(_reg(D=2), mode="regression", n_samples=4, X=X, y=y, split="test")
    bad = _reg()
    bad.scale[0, 0, 0] = np.inf
    with pytest.raises(InvalidSamplesError, match="scale has 1 non-finite"):
        check_samples(bad, mode="regression", n_samples=4, X=X, y=y, split="test")
    probs = np.full((2, 3, 2), 0.5)
    labels = np.array([0, 1, 1])
    check_samples(ClassificationSamples(probs), mode="classification", n_samples=2, X=X, y=labels, split="t")
    with pytest.raises(InvalidSamplesError, match="labels go up to 2"):
        check_samples(ClassificationSamples(probs), mode="classification", n_samples=2, X=X,
                      y=np.array([0, 2, 1]), split="t")
    with pytest.raises(InvalidSamplesError, match="do not sum to 1"):
        check_samples(ClassificationSamples(probs * 0.9), mode="classification", n_samples=2, X=X,
                      y=labels, split="t")


def test_to_original_units():
    s = _reg(D=2)
    mean, std = np.array([10.0, -1.0]), np.array([2.0, 0.5])
    y = np.ones((3, 2))
    out, y_out = to_original_units(s, y, (mean, std))
    np.testing.assert_allclose(out.loc, s.loc * std + mean)
    np.testing.assert_allclose(out.scale, s.scale * std)
    np.testing.assert_allclose(y_out, y * std + mean)
    np.testing.assert_allclose(out.epistemic_variance(), s.epistemic_variance() * std**2)
    assert to_original_units(s, y, None) == (s, y)


def test_one_line_reason():
    assert one_line(ValueError("a\n  b")) == "ValueError: a b"
    assert one_line(KeyError()) == "KeyError"
    assert len(one_line(RuntimeError("x" * 1000))) == 300


def test_optional_steps_extension_point():
    names = [name for name, _ in cell_steps()]
    assert names == ["fit", "sample", "metrics", "arrays"]
    assert [name for name, _ in cell_steps(("probe",))] == ["fit", "sample", "metrics", "probe", "arrays"]
    with pytest.raises(ValueError, match="unknown cell step 'x'"):
        cell_steps(("x",))


def test_optional_step_adds_rows(tmp_path, catalog, tiny_suite, monkeypatch):
    from uqbench import store
    from uqbench.harness import run_suite

    def probe(ctx):
        ctx.add("probe", "dummy_probe", float(ctx.cell.seed))

    monkeypatch.setitem(OPTIONAL_STEPS, "probe", probe)
    result = run_suite(tiny_suite.replace(steps=("probe",), seeds=(3,)), out=tmp_path, catalog=catalog)
    df = store.load_results(result.run_dir)
    probe_rows = df[df["split"] == "probe"]
    assert len(probe_rows) == 4 and (probe_rows["value"] == 3.0).all()


# -- timing ------------------------------------------------------------------------------


def test_measure_sees_a_large_allocation():
    # In a fresh process: in a long-lived one, memory freed by earlier tests can stay
    # resident and be reused without raising RSS, which is what RSS measures.
    code = """
import time, numpy as np
from uqbench.harness.timing import measure
with measure() as m:
    a = np.ones(40_000_000 // 8)  # 40 MB, touched
    a += 1
    del a  # freed before the block ends: only the peak can see it
print(m.peak_rss_mb, m.wall_seconds, m.cpu_seconds)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    peak, wall, cpu = map(float, out.stdout.split())
    assert 30 < peak < 200
    assert wall > 0 and cpu >= 0


def test_measure_cpu_vs_wall():
    import time

    with measure() as m:
        time.sleep(0.05)
    assert m.wall_seconds >= 0.05 and m.cpu_seconds < 0.04
    assert math.isfinite(m.peak_rss_mb)


def test_large_ood_sets_are_subsampled_with_a_seed():
    from types import SimpleNamespace

    from uqbench.datasets import OODSet
    from uqbench.harness.cell import MAX_OOD_POINTS, CellContext
    from uqbench.harness.grid import Cell

    rng = np.random.default_rng(0)
    big = OODSet(X=rng.normal(size=(MAX_OOD_POINTS + 500, 2)), y=np.arange(MAX_OOD_POINTS + 500))
    small = OODSet(X=rng.normal(size=(30, 2)), y=None)
    ds = SimpleNamespace(X_test=rng.normal(size=(4000, 2)), y_test=None, ood={"big": big, "small": small})

    def ctx(seed):
        return CellContext(Cell("a", "d", seed, "regression", ""), "regression", ds, None, 5, 10, None)

    splits = {name: (X, y) for name, X, y in ctx(0).splits()}
    assert len(splits["test"][0]) == 4000  # never the test split
    X, y = splits["ood:big"]
    assert len(X) == MAX_OOD_POINTS and len(set(y.tolist())) == MAX_OOD_POINTS
    np.testing.assert_array_equal(X, big.X[y])  # rows and labels stay paired
    assert splits["ood:small"][0] is small.X
    again = {name: y for name, _, y in ctx(0).splits()}
    other = {name: y for name, _, y in ctx(1).splits()}
    np.testing.assert_array_equal(again["ood:big"], y)
    assert not np.array_equal(other["ood:big"], y)
