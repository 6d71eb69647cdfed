"""`--workers N`: cells in worker processes give the same numbers as one process."""

from __future__ import annotations

import pytest

from uqbench import store
from uqbench.cli import main
from uqbench.harness.grid import Catalog
from uqbench.harness.runner import execute, prepare
from uqbench.suites import get_suite

TIMING = ("fit", "sample")


def _values(run_dir):
    df = store.load_results(run_dir)
    df = df[~df["split"].isin(TIMING)]
    return df.set_index(["adapter", "dataset", "seed", "split", "metric"])["value"].sort_index()


def test_two_workers_match_one_process(tmp_path, capsys):
    args = ["run", "--adapters", "deterministic,mc-dropout,bayes-linear", "--datasets", "toy-gap",
            "--seeds", "2", "--samples", "8"]
    assert main([*args, "--executor", "serial", "--out", str(tmp_path / "one")]) == 0
    assert main([*args, "--workers", "2", "--out", str(tmp_path / "two")]) == 0, capsys.readouterr().err
    (one,), (two,) = (tmp_path / "one").iterdir(), (tmp_path / "two").iterdir()
    a, b = _values(one), _values(two)
    assert len(a) > 100
    assert a.index.equals(b.index)
    assert ((a == b) | (a.isna() & b.isna())).all()
    assert len(store.read_cells(two)) == 6
    session = store.read_run_json(two)["sessions"][0]
    assert (session["executor"], session["workers"]) == ("process", 2)


def test_an_injected_catalog_runs_in_worker_processes(tmp_path, catalog, tiny_suite):
    one = execute(prepare(tiny_suite, out=tmp_path / "one", catalog=catalog), executor="serial")
    two = execute(prepare(tiny_suite, out=tmp_path / "two", catalog=catalog), executor="process", workers=2)
    assert one.exit_code == two.exit_code == 0
    a, b = _values(one.run_dir), _values(two.run_dir)
    assert a.index.equals(b.index) and ((a == b) | (a.isna() & b.isna())).all()


@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--workers", "0"], "--workers"),
        (["--cell-timeout", "-1"], "--cell-timeout"),
        (["--cell-memory", "lots"], "--cell-memory"),
        (["--executor", "spark"], "--executor"),
    ],
)
def test_bad_executor_options(tmp_path, capsys, args, flag):
    with pytest.raises(SystemExit) as exc:
        main(["run", *args, "--out", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0] and err[0].startswith("uqbench: error:")


def test_retry_failed_needs_resume(tmp_path, capsys):
    assert main(["run", "--retry-failed", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--retry-failed needs --resume" in err[0]


def test_quick_suite_is_the_default():
    assert get_suite("quick").datasets == ("toy-gap", "digits")
    assert Catalog().is_default()


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--executor", "serial", "--workers", "4"], "one cell at a time"),
        (["--executor", "serial", "--cell-timeout", "5"], "--cell-timeout"),
        (["--executor", "process", "--ray-address", "auto"], "--ray-address needs --executor ray"),
    ],
)
def test_executor_options_are_checked_before_a_run_directory_exists(tmp_path, capsys, args, words):
    out = tmp_path / "runs"
    assert main(["run", "--adapters", "bayes-linear", "--datasets", "toy-gap", *args, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and words in err[0]
    assert not out.exists() or not any(out.iterdir())
