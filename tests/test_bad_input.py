"""The bad-input sweep (issue 8): every kind of bad input gets one clear line, the right
exit code, and loses nothing already written.

- Usage errors (unknown names, bad config files, an unwritable --out, a bad run
  directory) print exactly one line ``uqbench: error: ...`` on stderr, exit 2, and create
  or change nothing.
- A bad data file (NaN/inf, an empty split, labels out of range, mismatched columns, a
  checksum mismatch) is the user's to fix: found when the dataset is loaded mid-run, it
  stops the run with one line naming the file and how to resume (exit 2); the cells
  finished before it stay in results.csv and cells/.
- Bad arrays from a dataset loader and bad adapter outputs (NaN, wrong shape, negative
  scale, probabilities not summing to 1) fail their own cells with a one-line reason;
  every other cell completes and the run exits 1.

Everything runs in-process with the dummy adapters and metrics (about a second a run).
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import json
import os
import shutil
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from _dummies import (
    DATASETS,
    DUMMY_ADAPTERS,
    DummyMetrics,
    NegativeScaleAdapter,
    UnnormalizedProbsAdapter,
    load_toy_cls,
    load_toy_reg,
)
from _dummies.disk import no_space_for

from uqbench import datasets as real_datasets
from uqbench import store
from uqbench.cli import main
from uqbench.harness import Catalog, DatasetSource
from uqbench.harness.cell import run_cell
from uqbench.harness.grid import Cell, plan_run, select_metrics
from uqbench.suites import SUITES, Suite, SuiteError, load_suite_file

ADAPTERS = {**DUMMY_ADAPTERS, "neg-scale": NegativeScaleAdapter, "bad-probs": UnnormalizedProbsAdapter}
FILE_DATASETS = ("uci-concrete", "fashion-mnist-t10k", "notmnist-t10k")


def _real_source(name: str) -> DatasetSource:
    spec = real_datasets.DATASETS[name]
    load = functools.partial(real_datasets.load_dataset, name)
    return DatasetSource(name, spec.task, spec.image, load, needs_data_dir=spec.needs_data_dir)


def _catalog(**extra: DatasetSource) -> Catalog:
    """Dummy adapters and metrics; the dummy datasets, the real file loaders and ``extra``."""
    sources = {**DATASETS, **{n: _real_source(n) for n in FILE_DATASETS}, **extra}
    return Catalog(adapters=ADAPTERS, datasets=sources, metrics=DummyMetrics())


@pytest.fixture(autouse=True)
def _no_data_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UQBENCH_DATA", raising=False)


def _run(capsys: pytest.CaptureFixture[str], *argv: str, catalog: Catalog | None = None) -> tuple[int, str, list[str]]:
    """``uqbench *argv`` in-process: (exit code, stdout, stderr lines)."""
    try:
        code = main(list(argv), catalog=catalog or _catalog())
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err.splitlines()


def _one_error_line(code: int, err: list[str]) -> str:
    assert code == 2, err
    assert len(err) == 1, err
    assert err[0].startswith("uqbench: error: ")
    return err[0]


def _run_dir(out: Path) -> Path:
    (run_dir,) = out.iterdir()
    return run_dir


def _files(run_dir: Path) -> dict[str, bytes]:
    """Every file under ``run_dir`` -> its bytes."""
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def _cell_files(run_dir: Path) -> dict[str, bytes]:
    """What a finished cell leaves: cells/*.json and arrays/*.npz, with their bytes."""
    return {k: v for k, v in _files(run_dir).items() if k.startswith((store.CELLS_DIR, store.ARRAYS_DIR))}


def _assert_cells_kept(run_dir: Path, keys: set[str]) -> None:
    """``keys`` are finished, ok, with their rows in results.csv and their arrays."""
    cells = store.read_cells(run_dir)
    assert set(cells) == keys
    assert all(c["status"] == "ok" for c in cells.values())
    df = store.load_results(run_dir)
    kept = {store.cell_key(a, d, s) for a, d, s in zip(df["adapter"], df["dataset"], df["seed"], strict=True)}
    assert kept == keys and (df["status"] == "ok").all()
    for key in keys:
        assert (run_dir / store.ARRAYS_DIR / f"{key}.npz").is_file()


# -- data files in the real layout, written small -----------------------------------------


def write_uci(root: Path, *, n_rows: int = 40) -> Path:
    """A tiny ``uci/concrete/`` folder: 3 inputs + target, one split of 32/8 rows."""
    rng = np.random.default_rng(0)
    folder = root / "uci" / "concrete"
    folder.mkdir(parents=True, exist_ok=True)
    X = rng.normal(size=(n_rows, 3))
    data = np.column_stack([X, X @ [1.0, -2.0, 0.5] + 0.1 * rng.normal(size=n_rows)])
    (folder / "data.txt").write_text("\n".join(" ".join(f"{v:.6f}" for v in row) for row in data) + "\n")
    (folder / "index_features.txt").write_text("0\n1\n2\n")
    (folder / "index_target.txt").write_text("3\n")
    (folder / "n_splits.txt").write_text("1\n")
    (folder / "index_train_0.txt").write_text("\n".join(map(str, range(32))) + "\n")
    (folder / "index_test_0.txt").write_text("\n".join(map(str, range(32, n_rows))) + "\n")
    return folder


def write_idx(path: Path, array: np.ndarray, magic: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    path.write_bytes(gzip.compress(header + array.astype(np.uint8).tobytes(), mtime=0))


def write_t10k(root: Path, image_set: str, *, n: int = 20, shape: tuple[int, int] = (28, 28), labels: Any = None) -> Path:
    folder = root / "images" / image_set
    rng = np.random.default_rng(1)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", rng.integers(0, 256, (n, *shape)), 2051)
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", np.arange(n) % 10 if labels is None else labels, 2049)
    return folder


def _replace_line(path: Path, index: int, text: str) -> None:
    lines = path.read_text().splitlines()
    lines[index] = text
    path.write_text("\n".join(lines) + "\n")


# Each: (dataset, break the data directory, words the one line must contain).
BAD_FILES: dict[str, tuple[str, Callable[[Path], Any], tuple[str, ...]]] = {
    "nan-in-data": (
        "uci-concrete",
        lambda root: _replace_line(write_uci(root) / "data.txt", 4, "0.1 nan 0.3 1.0"),
        ("data.txt", "non-finite", "NaN/inf", "row 5", "column index 1"),
    ),
    "inf-in-target": (
        "uci-concrete",
        lambda root: _replace_line(write_uci(root) / "data.txt", 0, "0.1 0.2 0.3 inf"),
        ("data.txt", "non-finite", "row 1", "column index 3"),
    ),
    "empty-test-split": (
        "uci-concrete",
        lambda root: (write_uci(root) / "index_test_0.txt").write_text("\n"),
        ("index_test_0.txt", "is empty"),
    ),
    "features-past-the-columns": (
        "uci-concrete",
        lambda root: (write_uci(root) / "index_features.txt").write_text("0\n1\n7\n"),
        ("index_features.txt", "indices outside 0..3", "max 7"),
    ),
    "row-with-a-missing-column": (
        "uci-concrete",
        lambda root: _replace_line(write_uci(root) / "data.txt", 3, "0.1 0.2 0.3"),
        ("cannot parse", "data.txt"),
    ),
    "label-out-of-range": (
        "fashion-mnist-t10k",
        lambda root: write_t10k(root, "fashion-mnist", labels=np.full(20, 12)),
        ("label 12", "not in 0..9"),
    ),
    "no-images": (
        "fashion-mnist-t10k",
        lambda root: write_t10k(root, "fashion-mnist", n=0),
        ("t10k-images-idx3-ubyte.gz", "holds no images"),
    ),
    "too-few-images-to-split": (
        "fashion-mnist-t10k",
        lambda root: write_t10k(root, "fashion-mnist", n=2),
        ("holds 2 image(s), too few", "80%/20%"),
    ),
    "wrong-image-size": (
        "fashion-mnist-t10k",
        lambda root: write_t10k(root, "fashion-mnist", shape=(14, 14)),
        ("holds (14, 14) images, expected (28, 28)",),
    ),
    "checksum-mismatch": (
        "notmnist-t10k",  # its files have known sha256s; a different file under that name fails
        lambda root: write_t10k(root, "notmnist"),
        ("sha256 of", "notmnist/t10k-images-idx3-ubyte.gz is ", "expected 70ae9e06201f2827", "corrupt"),
    ),
}


# -- unknown names, bad flags: nothing is created -----------------------------------------


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["--adapters", "noisy,nope"], ["unknown adapter 'nope'", "known adapters:"]),
        (["--datasets", "toy-rge"], ["unknown dataset 'toy-rge'", "did you mean 'toy-reg'?"]),
        (["--datasets", "tyo-*"], ["dataset pattern 'tyo-*' matches nothing"]),
        (["--metrics", "nll_loss,nll_los"], ["unknown metric 'nll_los'", "did you mean 'nll_loss'?", "known metrics:"]),
        (["--metrics", "auc_*"], ["metric pattern 'auc_*' matches nothing", "auroc_epistemic"]),
        (["--suite", "huge"], ["unknown suite 'huge'", "known suites: quick, standard"]),
        (["--datasets", "uci-concrete"], ["uci-concrete need a data directory", "--data-dir"]),
        (["--seeds", "0"], ["--seeds: must be an integer >= 1"]),
        (["--device", "gpu"], ["--device: device must be 'cpu', 'auto', 'cuda' or 'cuda:N', got 'gpu'"]),
        (["--device", "cuda:7"], ["device 'cuda:7' requested, but torch sees", "use --device cpu or auto"]),
    ],
    ids=["adapter", "dataset", "dataset-pattern", "metric", "metric-pattern", "suite", "no-data-dir", "seeds",
         "device-name", "device-absent"],
)
def test_unknown_names_and_bad_flags(tmp_path, capsys, argv, words):
    base = ["run", "--adapters", "noisy", "--datasets", "toy-reg", "--seeds", "1", "--out", str(tmp_path / "out")]
    line = _one_error_line(*_run(capsys, *base, *argv)[::2])
    for word in words:
        assert word in line
    assert not (tmp_path / "out").exists()


# -- config files ---------------------------------------------------------------------------


BAD_CONFIGS = {
    "unknown-key": ("bad.toml", 'base = "quick"\nsedes = [0]\n', ["unknown suite key(s) 'sedes'", "did you mean 'seeds'?"]),
    "misspelt-base": ("bad.toml", 'bsae = "quick"\n', ["'bsae' (did you mean 'base'?)"]),
    "toml-syntax": ("bad.toml", 'base = "quick"\nseeds = [0, 1] 2\n', ["invalid TOML", "line 2, column"]),
    "json-syntax": ("bad.json", '{"base": "quick",\n  "seeds": [0,]\n}', ["invalid JSON", "Expecting value (at line 2, column 15)"]),
    "json-not-a-table": ("bad.json", "[1, 2]", ["expected a table of suite keys", "got list"]),
    "seeds-not-a-list": ("bad.toml", 'base = "quick"\nseeds = "0,1"\n', ["seeds must be a non-empty sequence of integers >= 0, got '0,1'"]),
    "n-samples-a-string": ("bad.toml", 'base = "quick"\nn_samples = "many"\n', ["n_samples must be an integer >= 1, got 'many'"]),
    "datasets-a-string": ("bad.json", '{"base": "quick", "datasets": "toy-reg"}', ["datasets must be a sequence of non-empty names"]),
    "params-not-a-table": ("bad.toml", 'base = "quick"\nadapter_params = {noisy = 3}\n', ["adapter_params must map adapter names"]),
    "misspelt-dataset-in-params": ("bad.toml", 'base = "quick"\n[dataset_params.digts]\nepochs = 5\n', ["dataset_params: unknown dataset(s) 'digts'", "did you mean 'digits'?"]),
    "unknown-base": ("bad.toml", 'base = "quik"\n', ["unknown suite 'quik'"]),
    "incomplete-without-base": ("bad.toml", 'adapters = ["noisy"]\n', ["missing required key(s) name, datasets, seeds, n_samples", 'base = "quick"']),
    "unknown-format": ("bad.yaml", "base: quick\n", ["unknown format '.yaml'"]),
    "bad-device": ("bad.toml", 'base = "quick"\ndevice = "tpu"\n', ["device must be 'cpu', 'auto', 'cuda' or 'cuda:N', got 'tpu'"]),
    "bad-validation-fraction": ("bad.toml", 'base = "quick"\nvalidation_fraction = 0.9\n', ["validation_fraction must be a number in [0, 0.5], got 0.9"]),
    "not-utf8": ("bad.toml", b"base = '\xff'\n", ["not UTF-8"]),
}


@pytest.mark.parametrize("case", list(BAD_CONFIGS))
def test_bad_config_file_is_one_line_naming_the_file(tmp_path, capsys, case):
    name, text, words = BAD_CONFIGS[case]
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text)
    line = _one_error_line(*_run(capsys, "run", "--config", str(path), "--out", str(tmp_path / "out"))[::2])
    assert str(path) in line
    for word in words:
        assert word in line, line
    assert not (tmp_path / "out").exists()


def test_missing_config_file_and_base_conflicting_with_suite(tmp_path, capsys):
    line = _one_error_line(*_run(capsys, "run", "--config", str(tmp_path / "nope.toml"))[::2])
    assert f"cannot read config file {tmp_path / 'nope.toml'}: No such file or directory" in line
    path = tmp_path / "suite.toml"
    path.write_text('base = "quick"\n')
    line = _one_error_line(*_run(capsys, "run", "--config", str(path), "--suite", "standard")[::2])
    assert "base = 'quick' conflicts with the requested base suite 'standard' (--suite)" in line


def test_config_file_runs_and_flags_override_it(tmp_path, capsys):
    path = tmp_path / "mine.toml"
    path.write_text(
        'name = "mine"\ndatasets = ["toy-reg"]\nseeds = [0]\nn_samples = 3\nadapters = ["noisy"]\n'
        "n_bootstrap = 10\n"
    )
    code, _, err = _run(capsys, "run", "--config", str(path), "--seeds", "2", "--out", str(tmp_path / "out"))
    assert code == 0, err
    run_dir = _run_dir(tmp_path / "out")
    assert run_dir.name.endswith("-mine")
    suite = json.loads((run_dir / store.RUN_JSON).read_text())["suite"]
    assert suite["seeds"] == [0, 1] and suite["n_samples"] == 3 and suite["n_bootstrap"] == 10


def test_suite_file_base_merge_and_round_trip(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text('seeds = [0]\nmetrics = ["nll_loss"]\n[dataset_params.digits]\nepochs = 5\n')
    suite = load_suite_file(path, base="quick")
    quick = SUITES["quick"]
    assert suite.name == "quick" and suite.datasets == quick.datasets and suite.seeds == (0,)
    assert suite.dataset_params["digits"] == {**quick.dataset_params["digits"], "epochs": 5}  # the file's key wins
    assert suite.dataset_params["toy-gap"] == quick.dataset_params["toy-gap"]  # merged, not replaced
    assert suite.metrics == ("nll_loss",)
    json_path = tmp_path / "s.json"
    json_path.write_text(json.dumps(suite.to_dict()))
    assert load_suite_file(json_path) == suite
    with pytest.raises(SuiteError, match=r"^config file .*s\.toml: "):
        load_suite_file(path, base="nope")


def test_suite_metrics_round_trip_and_old_records_load():
    suite = SUITES["quick"].replace(metrics=("nll_loss", "coverage_*"))
    assert Suite.from_dict(suite.to_dict()) == suite
    old = SUITES["quick"].to_dict()
    del old["metrics"]  # a run.json written before the key existed
    assert Suite.from_dict(old).metrics is None
    for bad in ("nll_loss", (), ("",), 3):
        with pytest.raises(SuiteError, match="metrics must"):
            SUITES["quick"].replace(metrics=bad)


# -- metric selection ------------------------------------------------------------------------


def test_plan_expands_and_validates_metrics():
    catalog = _catalog()
    suite = Suite(name="t", datasets=("toy-reg",), seeds=(0,), n_samples=2, adapters=("noisy",),
                  metrics=("nll_loss", "coverage_*", "nll_loss"))
    plan = plan_run(suite, catalog=catalog)
    assert plan.suite.metrics[0] == "nll_loss" and len(plan.suite.metrics) == 1 + 19
    assert plan_run(suite.replace(metrics=None), catalog=catalog).suite.metrics is None


def test_selected_metrics_are_the_only_ones_recorded():
    cell = Cell("noisy", "toy-reg", 0, "regression")
    common = dict(dataset=load_toy_reg(seed=0), make_adapter=ADAPTERS["noisy"], n_samples=4, n_bootstrap=10)
    full = run_cell(cell, metrics=DummyMetrics(), **common)
    some = run_cell(cell, metrics=select_metrics(DummyMetrics(), ("nll_loss", "epistemic_ratio")), **common)
    assert full.status == some.status == "ok"
    measured = {(r["split"], r["metric"]) for r in some.rows if r["split"] in ("test", "ood:far")}
    assert measured == {("test", "nll_loss"), ("ood:far", "epistemic_ratio")}
    assert {r["metric"] for r in some.rows if r["split"] == "fit"} >= {"fit_wall_seconds", "n_parameters"}
    # The same values as without a selection, and the report's arrays unchanged.
    pick = {(r["split"], r["metric"]): r["value"] for r in full.rows}
    assert all(pick[r["split"], r["metric"]] == r["value"] for r in some.rows if r["split"] == "test")
    assert some.arrays.keys() == full.arrays.keys()


def test_run_with_metrics_flag_records_only_those(tmp_path, capsys):
    code, _, err = _run(capsys, "run", "--adapters", "noisy", "--datasets", "toy-reg,toy-cls", "--seeds", "1",
                        "--samples", "4", "--metrics", "nll_loss,epistemic_ratio", "--out", str(tmp_path))
    assert code == 0, err
    run_dir = _run_dir(tmp_path)
    df = store.load_results(run_dir)
    assert set(df.loc[df["split"].isin(["test"]) | df["split"].str.startswith("ood:"), "metric"]) == {
        "nll_loss", "epistemic_ratio"}
    assert json.loads((run_dir / store.RUN_JSON).read_text())["suite"]["metrics"] == ["nll_loss", "epistemic_ratio"]


# -- bad data files: the run stops with one line, finished cells stay ---------------------


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_data_file_stops_the_run_keeping_finished_cells(tmp_path, capsys, case):
    dataset, damage, words = BAD_FILES[case]
    data = tmp_path / "data"
    damage(data)
    code, _, err = _run(capsys, "run", "--adapters", "noisy", "--datasets", f"toy-reg,{dataset}", "--seeds", "1",
                        "--samples", "3", "--data-dir", str(data), "--out", str(tmp_path / "out"))
    line = _one_error_line(code, err)
    run_dir = _run_dir(tmp_path / "out")
    assert line.startswith(f"uqbench: error: {dataset}: ") or line.startswith(f"uqbench: error: {dataset} ")
    for word in words:
        assert word in line, line
    assert line.endswith(f"(fix it, then: uqbench run --resume {run_dir})")
    _assert_cells_kept(run_dir, {"noisy__toy-reg__0"})
    assert json.loads((run_dir / store.RUN_JSON).read_text())["status"] == "aborted"


def test_after_fixing_the_data_resume_finishes_without_redoing_cells(tmp_path, capsys):
    data = tmp_path / "data"
    BAD_FILES["nan-in-data"][1](data)
    argv = ["run", "--adapters", "noisy,det", "--datasets", "toy-reg,uci-concrete", "--seeds", "1",
            "--samples", "3", "--data-dir", str(data), "--out", str(tmp_path / "out")]
    assert _run(capsys, *argv)[0] == 2
    run_dir = _run_dir(tmp_path / "out")
    before = _cell_files(run_dir)
    assert len(before) == 4  # two cells, each a record and arrays

    shutil.rmtree(data)
    write_uci(data)
    code, out, err = _run(capsys, "run", "--resume", str(run_dir))
    assert code == 0, err
    assert "2/4 cells already finished" in out
    after = _cell_files(run_dir)
    assert {k: after[k] for k in before} == before  # byte for byte: not redone, not touched
    assert len(store.read_cells(run_dir)) == 4


def test_data_that_becomes_unreadable_mid_run_keeps_earlier_cells(tmp_path, capsys):
    from uqbench.datasets import DataFormatError

    def flaky(*, seed: int, data_dir: Any = None, input_scaling: str = "standardize") -> Any:
        if seed == 1:
            raise DataFormatError("flaky: /data/flaky.csv: cannot parse line 3")
        return load_toy_reg(seed=seed)

    catalog = _catalog(flaky=DatasetSource("flaky", "regression", False, flaky))
    code, _, err = _run(capsys, "run", "--adapters", "noisy,det", "--datasets", "flaky", "--seeds", "2",
                        "--samples", "3", "--out", str(tmp_path), catalog=catalog)
    line = _one_error_line(code, err)
    assert "flaky: /data/flaky.csv: cannot parse line 3 (fix it, then: uqbench run --resume" in line
    _assert_cells_kept(_run_dir(tmp_path), {"noisy__flaky__0", "det__flaky__0"})


# -- bad arrays from a dataset loader: those cells fail, the others finish -------------------


def _broken(loader: Callable[..., Any], change: Callable[[Any], dict[str, Any]], task: str) -> DatasetSource:
    def load(*, seed: int, data_dir: Any = None, input_scaling: str = "standardize") -> Any:
        ds = loader(seed=seed, input_scaling=input_scaling)
        return dataclasses.replace(ds, name="broken", **change(ds))

    return DatasetSource("broken", task, task == "classification", load)


def _with(a: np.ndarray, index: tuple[int, ...], value: Any, dtype: Any = None) -> np.ndarray:
    a = a.astype(dtype or a.dtype)
    a[index] = value
    return a


BAD_ARRAYS = {
    "nan-inputs": (load_toy_reg, lambda d: {"X_train": _with(d.X_train, (3, 0), np.nan)},
                   "X_train has 1 non-finite values (NaN/inf), the first in row 3"),
    "inf-targets": (load_toy_reg, lambda d: {"y_test": _with(d.y_test, (0, 0), np.inf)},
                    "y_test has 1 non-finite values (NaN/inf), the first in row 0"),
    "empty-test-split": (load_toy_reg, lambda d: {"X_test": d.X_test[:0], "y_test": d.y_test[:0]},
                         "the test split is empty (0 rows)"),
    "negative-label": (load_toy_cls, lambda d: {"y_train": _with(d.y_train, (0,), -1)},
                       "y_train has labels -1..2, outside 0..2"),
    "label-not-below-n-classes": (load_toy_cls, lambda d: {"y_test": _with(d.y_test, (0,), 3)},
                                  "y_test has labels 0..3, outside 0..2"),
    "non-integer-labels": (load_toy_cls, lambda d: {"y_train": d.y_train + 0.5},
                           "y_train must be an int64 [N] array, got float64 array of shape (60,)"),
    "feature-mismatch": (load_toy_cls, lambda d: {"X_test": d.X_test[:, :-1]},
                         "X_test has 15 features, expected 16 (as X_train)"),
}


@pytest.mark.parametrize("case", list(BAD_ARRAYS))
def test_bad_dataset_arrays_fail_that_datasets_cells(tmp_path, capsys, case):
    loader, change, reason = BAD_ARRAYS[case]
    task = "regression" if loader is load_toy_reg else "classification"
    catalog = _catalog(broken=_broken(loader, change, task))
    code, _, err = _run(capsys, "run", "--adapters", "noisy", "--datasets", "toy-reg,broken", "--seeds", "1",
                        "--samples", "3", "--out", str(tmp_path), catalog=catalog)
    assert code == 1
    assert err == ["uqbench: 1 cell(s) failed (listed above)"]
    cells = store.read_cells(_run_dir(tmp_path))
    assert cells["noisy__toy-reg__0"]["status"] == "ok"
    failed = cells["noisy__broken__0"]
    assert failed["status"] == "failed" and failed["stage"] == "load"
    assert failed["reason"] == f"ValueError: broken: {reason}"


# -- bad adapter outputs: each fails its own cell, the others finish --------------------------


def test_bad_adapter_outputs_fail_only_their_cells(tmp_path, capsys):
    code, out, err = _run(capsys, "run", "--adapters", "noisy,nan,wrong-shape,neg-scale,bad-probs",
                          "--datasets", "toy-reg,toy-cls", "--seeds", "1", "--samples", "4", "--out", str(tmp_path))
    assert code == 1
    assert err == ["uqbench: 6 cell(s) failed (listed above)"]
    run_dir = _run_dir(tmp_path)
    cells = store.read_cells(run_dir)
    reasons = {key: (c["status"], c["stage"], c["reason"]) for key, c in cells.items()}
    assert reasons["noisy__toy-reg__0"][0] == reasons["noisy__toy-cls__0"][0] == "ok"
    assert reasons["neg-scale__toy-cls__0"][0] == reasons["bad-probs__toy-reg__0"][0] == "skipped"
    expected = {
        "nan__toy-reg__0": "test: loc has 1 non-finite values (NaN/inf)",
        "nan__toy-cls__0": "test: probs has 1 non-finite values (NaN/inf)",
        "wrong-shape__toy-reg__0": "test: loc has shape (4, 19, 1), expected (4, 20, ...)",
        "wrong-shape__toy-cls__0": "test: probs has shape (4, 29, 3), expected (4, 30, ...)",
        "neg-scale__toy-reg__0": "test: scale has negative values",
        "bad-probs__toy-cls__0": "test: probs do not sum to 1 (off by up to 0.5)",
    }
    for key, reason in expected.items():
        assert reasons[key] == ("failed", "sample", f"InvalidSamplesError: {reason}")
        assert f"FAILED in sample: InvalidSamplesError: {reason}" in out
    df = store.load_results(run_dir)
    failed = df[df["status"] == "failed"]
    assert len(failed) == 6 and set(failed["error"]) == {f"InvalidSamplesError: {r}" for r in expected.values()}
    ok = df[df["status"] == "ok"]
    assert set(ok["adapter"]) == {"noisy"} and {"rmse_error", "accuracy_score"} <= set(ok["metric"])


# -- run directories: unwritable, newer schema, another suite ---------------------------------


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A finished run (noisy and det on toy-reg, 2 seeds) to copy and damage."""
    out = tmp_path_factory.mktemp("finished")
    argv = ["run", "--adapters", "noisy,det", "--datasets", "toy-reg", "--seeds", "2", "--samples", "3",
            "--out", str(out)]
    assert main(argv, catalog=_catalog()) == 0
    return _run_dir(out)


@pytest.fixture
def run_copy(tmp_path: Path, finished_run: Path) -> Path:
    return Path(shutil.copytree(finished_run, tmp_path / finished_run.name))


def _newer_run_json(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record = json.loads((run_dir / store.RUN_JSON).read_text())
    (run_dir / store.RUN_JSON).write_text(json.dumps({**record, "schema_version": 99}))


def _newer_cell(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = run_dir / store.CELLS_DIR / "det__toy-reg__1.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "schema_version": 99}))


def _foreign_cell(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = run_dir / store.CELLS_DIR / "det__toy-reg__1.json"
    record = {**json.loads(source.read_text()), "dataset": "digits"}
    (run_dir / store.CELLS_DIR / "det__digits__1.json").write_text(json.dumps(record))


def _unwritable_run_json(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    no_space_for(monkeypatch, store.RUN_JSON)


def _unwritable_report(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (run_dir / "index.html").unlink()
    (run_dir / "index.html").mkdir()  # a directory (not empty) cannot be replaced by a file
    (run_dir / "index.html" / "keep").write_text("x")


def _no_run_json(run_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (run_dir / store.RUN_JSON).unlink()


RUN_DIR_CASES = {
    "report-newer-run-json": (_newer_run_json, ["report", "{run}"], ["run.json has schema version 99", "reads only version 1"]),
    "resume-newer-run-json": (_newer_run_json, ["run", "--resume", "{run}"], ["run.json has schema version 99"]),
    "resume-newer-cell": (_newer_cell, ["run", "--resume", "{run}"], ["det__toy-reg__1.json has schema version 99"]),
    "resume-with-other-suite": (None, ["run", "--resume", "{run}", "--suite", "standard"],
                                ["--resume continues {run}, a run of suite 'quick', with its own configuration; drop --suite"]),
    "resume-with-config": (None, ["run", "--resume", "{run}", "--config", "x.toml", "--metrics", "nll_loss"],
                           ["a run of suite 'quick'", "drop --config, --metrics"]),
    "resume-with-foreign-cells": (_foreign_cell, ["run", "--resume", "{run}"],
                                  ["holds 1 record(s) that are not cells of this run's suite 'quick'", "det__digits__1.json"]),
    "resume-unwritable": (_unwritable_run_json, ["run", "--resume", "{run}"],
                          ["cannot write {run}/run.json: No space left on device",
                           "(fix it, then: uqbench run --resume {run})"]),
    "report-unwritable": (_unwritable_report, ["report", "{run}"], ["cannot write {run}/index.html: Is a directory"]),
    "resume-not-a-run-dir": (_no_run_json, ["run", "--resume", "{run}"],
                             ["{run} is not a uqbench run directory (has no run.json)"]),
}


@pytest.mark.parametrize("case", list(RUN_DIR_CASES))
def test_bad_run_directory_is_one_line_and_changes_nothing(run_copy, capsys, monkeypatch, case):
    damage, argv, words = RUN_DIR_CASES[case]
    if damage is not None:
        damage(run_copy, monkeypatch)
    before = _files(run_copy)
    line = _one_error_line(*_run(capsys, *(a.format(run=run_copy) for a in argv))[::2])
    for word in words:
        assert word.format(run=run_copy) in line, line
    assert _files(run_copy) == before


def test_output_directory_that_is_a_file(tmp_path, capsys):
    (tmp_path / "taken").write_text("not a directory\n")
    for out in (tmp_path / "taken", tmp_path / "taken" / "sub"):
        line = _one_error_line(*_run(capsys, "run", "--adapters", "noisy", "--datasets", "toy-reg",
                                     "--out", str(out))[::2])
        assert f"cannot create output directory {out}: " in line
    assert (tmp_path / "taken").read_text() == "not a directory\n"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root writes through permissions")
def test_read_only_output_directory(tmp_path, capsys):
    out = tmp_path / "ro"
    out.mkdir()
    out.chmod(0o555)
    try:
        line = _one_error_line(*_run(capsys, "run", "--adapters", "noisy", "--datasets", "toy-reg",
                                     "--out", str(out))[::2])
    finally:
        out.chmod(0o755)
    assert f"cannot create run directory {out}/run-" in line and "Permission denied" in line
    assert list(out.iterdir()) == []


def test_unknown_name_in_a_run_record_on_resume(run_copy, capsys):
    record = json.loads((run_copy / store.RUN_JSON).read_text())
    record["suite"]["adapters"] = ["noisy", "det", "gone"]
    (run_copy / store.RUN_JSON).write_text(json.dumps(record))
    before = _files(run_copy)
    line = _one_error_line(*_run(capsys, "run", "--resume", str(run_copy))[::2])
    assert "unknown adapter 'gone'" in line
    assert _files(run_copy) == before
