"""Run-directory I/O: rows round-trip exactly, versions are checked, nothing is pickled."""

from __future__ import annotations

import json
import math
from datetime import datetime

import numpy as np
import pytest

from uqbench import store
from uqbench.errors import UserError


@pytest.fixture
def run_dir(tmp_path):
    path = store.new_run_dir(tmp_path, "unit", now=datetime(2024, 5, 6, 7, 8, 9))
    store.write_run_json(path, {"suite": {"name": "unit"}})
    return path


def test_new_run_dir_name_and_layout(tmp_path):
    now = datetime(2024, 5, 6, 7, 8, 9)
    a = store.new_run_dir(tmp_path / "reports", "quick", now=now)
    b = store.new_run_dir(tmp_path / "reports", "quick", now=now)
    assert a.name == "run-20240506-070809-quick" and b.name == "run-20240506-070809-quick-2"
    assert (a / "cells").is_dir() and (a / "arrays").is_dir()


def test_rows_roundtrip_exactly(run_dir):
    values = [0.1, 1 / 3, 1e-300, -2.5e17, math.nan, math.inf, -math.inf]
    rows = [store.make_row("a", "d", 3, "test", f"m{i}", v, v / 2, v * 2) for i, v in enumerate(values)]
    rows.append(store.make_row("b", "d", 0, "fit", "", math.nan, status="failed",
                               error='ValueError: bad, "quoted" value'))
    store.append_rows(run_dir, rows[:3])
    store.append_rows(run_dir, rows[3:])
    for key in ("a__d__3", "b__d__0"):
        store.write_cell(run_dir, key, {"status": "ok"})
    df = store.load_results(run_dir)
    assert tuple(df.columns) == store.COLUMNS and len(df) == len(rows)
    assert df["seed"].dtype == np.int64 and df["schema_version"].dtype == np.int64
    np.testing.assert_array_equal(df["value"].to_numpy()[:-1], values)  # bit-exact, NaN == NaN
    np.testing.assert_array_equal(df["ci_high"].to_numpy()[:-1], [v * 2 for v in values])
    last = df.iloc[-1]
    assert last["metric"] == "" and last["status"] == "failed"
    assert last["error"] == 'ValueError: bad, "quoted" value'
    assert (df["error"].iloc[:-1] == "").all()


def test_empty_results_have_the_columns(run_dir):
    df = store.load_results(run_dir)
    assert tuple(df.columns) == store.COLUMNS and len(df) == 0


def test_load_results_refuses_unknown_row_version(run_dir):
    store.append_rows(run_dir, [store.make_row("a", "d", 0, "test", "m", 1.0)])
    store.write_cell(run_dir, "a__d__0", {"status": "ok"})
    with open(run_dir / store.RESULTS_CSV, "a") as f:
        f.write("7,a,d,0,test,m,1.0,nan,nan,ok,\n")
    with pytest.raises(store.SchemaVersionError, match=r"schema version '7'.*reads only version 1"):
        store.load_results(run_dir)


def test_load_results_refuses_unknown_run_version(run_dir):
    record = json.loads((run_dir / store.RUN_JSON).read_text())
    record["schema_version"] = 99
    (run_dir / store.RUN_JSON).write_text(json.dumps(record))
    with pytest.raises(store.SchemaVersionError, match="schema version 99"):
        store.load_results(run_dir)
    assert issubclass(store.SchemaVersionError, UserError)


def test_cell_records_are_versioned(run_dir):
    store.write_cell(run_dir, "a__d__0", {"status": "ok", "times": {"x": math.nan}})
    cells = store.read_cells(run_dir)
    assert cells["a__d__0"]["schema_version"] == store.SCHEMA_VERSION
    assert cells["a__d__0"]["times"]["x"] is None  # JSON has no NaN
    path = run_dir / "cells" / "a__d__0.json"
    path.write_text(json.dumps({"schema_version": 2, "status": "ok"}))
    with pytest.raises(store.SchemaVersionError):
        store.read_cells(run_dir)


def test_not_a_run_dir(tmp_path):
    with pytest.raises(store.NotARunDirError, match="not a uqbench run directory"):
        store.load_results(tmp_path)
    with pytest.raises(store.NotARunDirError, match="does not exist"):
        store.require_run_dir(tmp_path / "nope")


def test_keep_rows_of_drops_unfinished_and_torn_rows(run_dir):
    store.append_rows(run_dir, [store.make_row("a", "d", 0, "test", "m", 1.0),
                                store.make_row("a", "d", 1, "test", "m", 2.0),
                                store.make_row("b", "d", 0, "test", "m", 3.0)])
    with open(run_dir / store.RESULTS_CSV, "a") as f:
        f.write("1,a,d,0,test,m2,4.")  # torn last line
    for key in ("a__d__0", "b__d__0"):
        store.write_cell(run_dir, key, {"status": "ok"})
    # A reader before any resume already sees only finished cells' whole rows ...
    assert list(store.load_results(run_dir)["value"]) == [1.0, 3.0]
    # ... and a resume removes the others from the file.
    dropped = store.keep_rows_of(run_dir, {store.cell_key("a", "d", 0), store.cell_key("b", "d", 0)})
    assert dropped == 2
    df = store.load_results(run_dir)
    assert list(df["value"]) == [1.0, 3.0]
    assert store.keep_rows_of(run_dir, {"a__d__0", "b__d__0"}) == 0


def test_arrays_roundtrip_without_pickle(run_dir):
    arrays = {"scores/test/epistemic": np.arange(5.0), "regions/names": np.array(["gap", "left"])}
    store.write_arrays(run_dir, "a__d__0", arrays)
    back = store.load_arrays(run_dir, "a__d__0")
    assert back.keys() == arrays.keys()
    np.testing.assert_array_equal(back["scores/test/epistemic"], arrays["scores/test/epistemic"])
    assert list(back["regions/names"]) == ["gap", "left"]
    with pytest.raises(ValueError, match="dtype object"):
        store.write_arrays(run_dir, "x", {"bad": np.array([{}], dtype=object)})
    assert store.load_arrays(run_dir, "missing") == {}
