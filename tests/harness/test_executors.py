"""Executors: identical numbers, fault isolation, retries, and crash-safe resume.

The kill tests run the real ``uqbench`` command in a subprocess and SIGKILL it at chosen
moments of writing a cell (``UQBENCH_FAULT``) and at an arbitrary moment mid-run.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from _dummies import make_catalog
from _dummies.faulty import FAULTY_ADAPTERS

from uqbench import store
from uqbench.errors import UserError
from uqbench.harness import execute, prepare, prepare_resume, run_suite
from uqbench.suites import Suite

TIMING = ("fit", "sample", "probe")


def _values(run_dir: Path) -> pd.Series:
    """Every non-timing value of a run, indexed by (adapter, dataset, seed, split, metric)."""
    df = store.load_results(run_dir)
    df = df[~df["split"].isin(TIMING)]
    return df.set_index(["adapter", "dataset", "seed", "split", "metric"])["value"].sort_index()


def _same(a: pd.Series, b: pd.Series) -> bool:
    return a.index.equals(b.index) and bool(((a == b) | (a.isna() & b.isna())).all())


@pytest.fixture(scope="module")
def real_suite() -> Suite:
    return Suite(
        name="exec",
        datasets=("toy-gap",),
        seeds=(0, 1),
        n_samples=8,
        adapters=("bayes-linear", "deterministic", "mc-dropout"),
        dataset_params={"toy-gap": {"epochs": 20, "features": "rff", "lengthscale": 0.5}},
        n_bootstrap=20,
    )


@pytest.fixture(scope="module")
def serial_run(tmp_path_factory, real_suite) -> Path:
    result = run_suite(real_suite, out=tmp_path_factory.mktemp("serial"), executor="serial")
    assert result.exit_code == 0
    return result.run_dir


@pytest.mark.parametrize("executor", ["process", "ray"])
def test_executors_give_the_serial_numbers(tmp_path, real_suite, serial_run, executor):
    if executor == "ray":
        pytest.importorskip("ray")
    result = run_suite(real_suite, out=tmp_path, executor=executor, workers=2)
    assert result.exit_code == 0
    a, b = _values(serial_run), _values(result.run_dir)
    assert len(a) > 100
    assert _same(a, b)
    session = store.read_run_json(result.run_dir)["sessions"][0]
    assert (session["executor"], session["workers"]) == (executor, 2)


FAULT_SUITE = Suite(
    name="faults",
    datasets=("toy-reg",),
    seeds=(0,),
    n_samples=6,
    adapters=("noisy", "hang", "segfault", "exit", "memory-hog", "det"),
    n_bootstrap=10,
)


@pytest.mark.parametrize("executor", ["process", "ray"])
def test_a_broken_cell_fails_alone_and_its_worker_is_replaced(tmp_path, executor):
    if executor == "ray":
        pytest.importorskip("ray")
    catalog = make_catalog(**FAULTY_ADAPTERS)
    run = prepare(FAULT_SUITE, out=tmp_path, catalog=catalog)
    t0 = time.monotonic()
    result = execute(run, executor=executor, workers=2, cell_timeout=4.0, cell_memory=600 * 2**20)
    assert time.monotonic() - t0 < 120
    status = {r["adapter"]: r["status"] for r in result.cells.values()}
    assert status == {"noisy": "ok", "det": "ok", "hang": "failed", "segfault": "failed", "exit": "failed",
                      "memory-hog": "failed"}
    reason = {r["adapter"]: r["reason"] for r in result.failures}
    assert "timed out after 4 s" in reason["hang"]
    if executor == "process":
        assert "SIGSEGV" in reason["segfault"]
        assert "exit code 3" in reason["exit"]
        assert "memory limit of 600 MiB" in reason["memory-hog"]
    else:
        assert all("Ray worker" in reason[a] for a in ("segfault", "exit", "memory-hog"))
    assert all("\n" not in r for r in reason.values())
    df = store.load_results(result.run_dir)
    assert set(df.loc[df["status"] == "ok", "adapter"]) == {"noisy", "det"}
    assert (df[df["status"] == "failed"].groupby("adapter").size() == 1).all()


def test_limits_need_a_worker_process(tmp_path, catalog, tiny_suite):
    run = prepare(tiny_suite, out=tmp_path, catalog=catalog)
    with pytest.raises(UserError, match="--cell-timeout"):
        execute(run, executor="serial", cell_timeout=5.0)


def test_an_unpicklable_catalog_is_a_clear_error(tmp_path, tiny_suite):
    from _dummies import NoisyAdapter

    class Local(NoisyAdapter):  # defined in a function: pickle cannot name it
        pass

    catalog = make_catalog(noisy=Local)
    run = prepare(tiny_suite, out=tmp_path, catalog=catalog)
    with pytest.raises(UserError, match="cannot be sent to worker processes"):
        execute(run, executor="process", workers=2)


def test_retry_failed_redoes_only_the_failed_cells(tmp_path, tiny_suite, monkeypatch):
    flag = tmp_path / "flaky-flag"
    flag.touch()
    monkeypatch.setenv("UQBENCH_TEST_FLAKY", str(flag))
    catalog = make_catalog(**FAULTY_ADAPTERS)
    suite = tiny_suite.replace(adapters=("noisy", "flaky"))
    first = run_suite(suite, out=tmp_path / "runs", catalog=catalog)
    assert {r["adapter"] for r in first.failures} == {"flaky"} and first.exit_code == 1
    ok_before = {k: v for k, v in first.cells.items() if v["status"] == "ok"}

    flag.unlink()
    run = prepare_resume(first.run_dir, catalog=catalog)  # a plain resume keeps the failures
    assert execute(run).exit_code == 1
    run = prepare_resume(first.run_dir, catalog=catalog, retry_failed=True)
    result = execute(run)
    assert result.exit_code == 0 and len(result.cells) == len(first.cells)
    for key, record in ok_before.items():  # finished cells were not redone
        assert result.cells[key]["ended"] == record["ended"]
    df = store.load_results(first.run_dir)
    assert (df["status"] == "ok").all()
    assert not df.duplicated(["adapter", "dataset", "seed", "split", "metric"]).any()
    fresh = run_suite(suite, out=tmp_path / "fresh", catalog=catalog)
    assert _same(_values(first.run_dir), _values(fresh.run_dir))


# -- SIGKILL of the driver, then resume -------------------------------------------------------

ARGS = ["--adapters", "bayes-linear,deterministic", "--datasets", "toy-gap", "--seeds", "3", "--samples", "8"]


def _uqbench(args: list[str], *, fault: str | None = None, **kwargs) -> subprocess.Popen:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"}
    env.pop("UQBENCH_FAULT", None)
    if fault:
        env["UQBENCH_FAULT"] = fault
    return subprocess.Popen([sys.executable, "-m", "uqbench.cli", "run", *args], env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def _finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=300)
    return proc.returncode, out, err


def _check_consistent(run_dir: Path) -> set[str]:
    """What a reader sees after a crash: only rows of finished cells, each cell once."""
    cells = store.read_cells(run_dir)
    df = store.load_results(run_dir)
    keys = {store.cell_key(a, d, s) for a, d, s in zip(df["adapter"], df["dataset"], df["seed"], strict=True)}
    assert keys <= set(cells)
    assert not df.duplicated(["adapter", "dataset", "seed", "split", "metric"]).any()
    assert "torn-adapter" not in set(df["adapter"])
    return set(cells)


def test_sigkill_at_six_moments_then_resume_equals_an_uninterrupted_run(tmp_path):
    rc, _, err = _finish(_uqbench([*ARGS, "--executor", "serial", "--out", str(tmp_path / "clean")]))
    assert rc == 0, err
    (clean,) = (tmp_path / "clean").iterdir()

    # Session 1 starts the run; each later one resumes it. UQBENCH_FAULT counts the cells
    # written in that session from 0; the last kill comes from outside, mid-cell.
    rc, _, err = _finish(_uqbench([*ARGS, "--executor", "serial", "--out", str(tmp_path / "killed")],
                                    fault="after_cell:1"))
    assert rc == -signal.SIGKILL, err
    (run_dir,) = (tmp_path / "killed").iterdir()
    done = _check_consistent(run_dir)
    assert len(done) == 2
    kept = {k: store.read_cells(run_dir)[k] for k in done}
    expected_growth = {"torn_rows:1": 1, "after_rows:0": 0, "after_arrays:1": 1, "before_rows:0": 0}
    for fault, growth in expected_growth.items():
        rc, _out, err = _finish(_uqbench(["--resume", str(run_dir), "--executor", "serial"], fault=fault))
        assert rc == -signal.SIGKILL, (fault, err)
        now_done = _check_consistent(run_dir)
        assert done <= now_done and len(now_done) == len(done) + growth, fault
        done = now_done

    # An outside SIGKILL while the process executor's workers are busy.
    proc = _uqbench(["--resume", str(run_dir), "--executor", "process", "--workers", "2"])
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("resuming"):
            time.sleep(4.0)  # workers started and computing
            break
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    done = _check_consistent(run_dir)

    rc, _, err = _finish(_uqbench(["--resume", str(run_dir), "--executor", "process", "--workers", "2"]))
    assert rc == 0, err
    cells = store.read_cells(run_dir)
    assert len(cells) == 6 and all(c["status"] == "ok" for c in cells.values())
    for key, record in kept.items():  # finished before the first kill: kept exactly
        assert cells[key] == record
    assert _same(_values(run_dir), _values(clean))
    assert len(store.load_results(run_dir)) == len(store.load_results(clean))  # no duplicates
    # The resumes also cleaned the file itself: no torn line, no orphan rows left on disk.
    raw = (run_dir / store.RESULTS_CSV).read_text().splitlines()
    assert len(raw) - 1 == len(store.load_results(run_dir)) and "torn-adapter" not in "".join(raw)
    sessions = store.read_run_json(run_dir)["sessions"]
    assert len(sessions) == 7 and sessions[-1]["status"] == "complete"


def test_ctrl_c_stops_cleanly_says_how_to_resume_and_exits_130(tmp_path):
    args = ["--adapters", "bayes-linear,deterministic", "--datasets", "toy-gap", "--seeds", "6", "--samples", "8"]
    proc = _uqbench([*args, "--executor", "process", "--workers", "2", "--out", str(tmp_path)])
    assert proc.stdout is not None
    for line in proc.stdout:
        if line.startswith("["):  # the first cell is written: workers are up, 11 cells to go
            break
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    (run_dir,) = tmp_path.iterdir()
    assert f"uqbench run --resume {run_dir}" in err
    assert store.read_run_json(run_dir)["status"] == "interrupted"
    _check_consistent(run_dir)
    rc, _, err = _finish(_uqbench(["--resume", str(run_dir)]))
    assert rc == 0, err
    assert len(store.read_cells(run_dir)) == 12
