"""`--jobs N`: cells in worker processes give the same numbers as one process."""

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
    assert main([*args, "--out", str(tmp_path / "one")]) == 0
    assert main([*args, "--jobs", "2", "--out", str(tmp_path / "two")]) == 0, capsys.readouterr().err
    (one,), (two,) = (tmp_path / "one").iterdir(), (tmp_path / "two").iterdir()
    a, b = _values(one), _values(two)
    assert len(a) > 100
    assert a.index.equals(b.index)
    assert ((a == b) | (a.isna() & b.isna())).all()
    assert len(store.read_cells(two)) == 6
    assert store.read_run_json(two)["sessions"][0]["jobs"] == 2


def test_jobs_needs_the_default_catalog(tmp_path, catalog, tiny_suite):
    run = prepare(tiny_suite, out=tmp_path, catalog=catalog)
    with pytest.raises(ValueError, match="default catalog"):
        execute(run, jobs=2)


def test_bad_jobs_value(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["run", "--jobs", "0", "--out", str(tmp_path)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--jobs" in err[0]


def test_quick_suite_is_the_default():
    assert get_suite("quick").datasets == ("toy-gap", "digits")
    assert Catalog().is_default()
