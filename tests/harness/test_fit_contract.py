"""What ``fit`` is given (validation split, n_classes, n_train) and what a cell records."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from _dummies import DATASETS, PlainRecorder, RecordingAdapter, make_catalog

from uqbench import store
from uqbench.harness import run_suite
from uqbench.harness.cell import derive_seed
from uqbench.interface import fit_keywords, validation_split
from uqbench.suites import Suite, SuiteError


def _rows(a: np.ndarray) -> set[bytes]:
    return {r.tobytes() for r in np.ascontiguousarray(a, dtype=np.float64)}


def _dumps(directory) -> list[dict[str, np.ndarray]]:
    out = []
    for path in sorted(directory.iterdir(), key=lambda p: int(p.stem)):
        with np.load(path) as f:
            out.append({k: f[k] for k in f.files})
    return out


@pytest.fixture
def suite() -> Suite:
    return Suite(name="contract", datasets=("toy-reg", "toy-cls"), seeds=(0, 1), n_samples=4,
                 adapters=("recorder",), n_bootstrap=5)


def test_fit_keywords_are_only_the_named_ones() -> None:
    assert fit_keywords(RecordingAdapter()) == {"X_val", "y_val", "n_classes", "n_train"}
    assert fit_keywords(PlainRecorder()) == frozenset()

    class Kwargs:
        def fit(self, X, y, *, seed, **kwargs): ...

    assert fit_keywords(Kwargs()) == frozenset()  # **kwargs opts in to nothing


def test_validation_rows_are_disjoint_from_training_test_and_ood(tmp_path, suite) -> None:
    dump = tmp_path / "dump"
    dump.mkdir()
    catalog = make_catalog(recorder=RecordingAdapter)
    result = run_suite(suite.replace(adapter_params={"recorder": {"dump_dir": str(dump)}}),
                       out=tmp_path / "runs", catalog=catalog)
    assert result.exit_code == 0
    dumps = _dumps(dump)
    cells = sorted(result.cells.values(), key=lambda c: (c["started"], c["dataset"], c["seed"]))
    assert len(dumps) == 4
    # The harness runs dataset by dataset, seed by seed: toy-reg 0, 1, then toy-cls 0, 1.
    for got, (name, seed) in zip(dumps, [("toy-reg", 0), ("toy-reg", 1), ("toy-cls", 0), ("toy-cls", 1)], strict=True):
        ds = DATASETS[name].load(seed=seed, input_scaling="standardize")
        fit_rows, val_rows = _rows(got["X"]), _rows(got["X_val"])
        assert fit_rows.isdisjoint(val_rows)
        assert fit_rows | val_rows == _rows(ds.X_train)  # nothing lost: train = fit + validation
        assert len(got["X_val"]) == round(0.2 * len(ds.X_train))
        assert val_rows.isdisjoint(_rows(ds.X_test))
        for ood in ds.ood.values():
            assert val_rows.isdisjoint(_rows(ood.X))
        # y_val belongs to X_val, row by row.
        index = {r.tobytes(): i for i, r in enumerate(ds.X_train)}
        expected_y = ds.y_train[[index[r.tobytes()] for r in got["X_val"]]]
        np.testing.assert_array_equal(got["y_val"], expected_y)
        assert int(got["n_train"]) == len(ds.X_train)
        assert int(got["n_classes"]) == (ds.n_classes if ds.task == "classification" else -1)
    records = {(c["dataset"], c["seed"]): c for c in cells}
    for (name, seed), record in records.items():
        n = len(DATASETS[name].load(seed=seed, input_scaling="standardize").X_train)
        v = record["validation"]
        assert v["seed"] == derive_seed(seed, "validation")
        assert v["n_validation"] + v["n_fit"] == n and v["fraction"] == 0.2
        _, val = validation_split(n, 0.2, v["seed"])
        assert v["rows_sha256"] == hashlib.sha256(val.astype("<i8").tobytes()).hexdigest()
        assert record["fit_keywords"] == ["X_val", "n_classes", "n_train", "y_val"]
        assert record["params"] == {"dump_dir": str(dump)}
    # The adapter's diagnostics_ became rows (numbers only), without any optional step.
    df = store.load_results(result.run_dir)
    diag = df[df["split"] == "diagnostics"]
    assert set(diag["metric"]) == {"n_fit", "n_val", "n_classes", "n_train"}


def test_same_rows_for_every_adapter_of_a_dataset_seed_and_plain_fits_get_everything(tmp_path, suite) -> None:
    dumps = {name: tmp_path / name for name in ("a", "b", "plain")}
    for d in dumps.values():
        d.mkdir()
    catalog = make_catalog(a=RecordingAdapter, b=RecordingAdapter, plain=PlainRecorder)
    s = suite.replace(datasets=("toy-reg",), adapters=("a", "b", "plain"),
                      adapter_params={k: {"dump_dir": str(v)} for k, v in dumps.items()})
    result = run_suite(s, out=tmp_path / "runs", catalog=catalog)
    assert result.exit_code == 0
    a, b, plain = (_dumps(dumps[k]) for k in ("a", "b", "plain"))
    for seed in (0, 1):
        np.testing.assert_array_equal(a[seed]["X_val"], b[seed]["X_val"])
        full = DATASETS["toy-reg"].load(seed=seed, input_scaling="standardize").X_train
        np.testing.assert_array_equal(plain[seed]["X"], full)  # no carve-out without X_val
        assert "X_val" not in plain[seed] and int(plain[seed]["n_train"]) == -1
    assert not _rows(a[0]["X_val"]) == _rows(a[1]["X_val"])  # another seed, other rows
    plain_cell = next(c for c in result.cells.values() if c["adapter"] == "plain")
    assert plain_cell["validation"] is None and plain_cell["fit_keywords"] == []


def test_validation_fraction_zero_passes_none(tmp_path, suite) -> None:
    dump = tmp_path / "dump"
    dump.mkdir()
    s = suite.replace(datasets=("toy-cls",), seeds=(0,), validation_fraction=0.0,
                      adapter_params={"recorder": {"dump_dir": str(dump)}})
    run_suite(s, out=tmp_path / "runs", catalog=make_catalog(recorder=RecordingAdapter))
    (got,) = _dumps(dump)
    assert "X_val" not in got and len(got["X"]) == 60


@pytest.mark.parametrize("bad", [-0.1, 0.6, "0.2", True])
def test_validation_fraction_is_checked(bad) -> None:
    with pytest.raises(SuiteError, match="validation_fraction"):
        Suite(name="s", datasets=("a",), seeds=(0,), n_samples=1, validation_fraction=bad)


def test_validation_split_sizes() -> None:
    for n, fraction, expected in ((10, 0.2, 2), (3, 0.2, 1), (2, 0.5, 1), (1, 0.2, 0), (50, 0.0, 0), (7, 0.5, 4)):
        fit, val = validation_split(n, fraction, seed=3)
        assert len(val) == expected and len(fit) == n - expected
        assert sorted([*fit, *val]) == list(range(n))
    a, b = validation_split(100, 0.2, seed=1), validation_split(100, 0.2, seed=1)
    np.testing.assert_array_equal(a[1], b[1])


def test_run_json_records_each_adapters_parameters_per_dataset(tmp_path, suite) -> None:
    s = suite.replace(datasets=("toy-reg", "toy-cls"), adapters=("recorder", "noisy"),
                      dataset_params={"toy-reg": {"lr": 0.5, "epochs": 3}},
                      adapter_params={"noisy": {"noise": 0.2}})
    result = run_suite(s, out=tmp_path / "runs", catalog=make_catalog(recorder=RecordingAdapter))
    record = store.read_run_json(result.run_dir)
    # Budgets reach only constructors that take them (noisy has no lr); nothing else is invented.
    assert record["adapters"]["recorder"]["params"] == {"toy-reg": {"lr": 0.5}, "toy-cls": {}}
    assert record["adapters"]["noisy"]["params"] == {"toy-reg": {"noise": 0.2}, "toy-cls": {"noise": 0.2}}
    assert record["adapters"]["recorder"]["available"] is True
    cells = {(c["adapter"], c["dataset"]): c for c in result.cells.values()}
    assert cells["recorder", "toy-reg"]["params"] == {"lr": 0.5}
    assert record["suite"]["validation_fraction"] == 0.2 and record["suite"]["device"] == "cpu"
