"""A run directory's integrity (issue 16, cases 0, 1, 7 and 8): every reader checks each
finished cell's rows and arrays against its marker, one writer at a time holds the
directory, damaged inputs are exit 2 with one line, and a full disk loses nothing.

Every case here failed on the code before issue 16: readers trusted the markers (a
truncated ``results.csv`` was reported as complete), two drivers appended the same cells
twice, a non-UTF-8 ``results.csv`` made ``compare`` exit 1 (its regression code) with a
traceback, a truncated npz crashed ``report``, the atomic writer followed a planted
symlink, SIGTERM left ``run.json`` saying "running", and a full disk while writing the
report was a traceback.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pandas as pd
import pytest
from _dummies import DATASETS, DUMMY_ADAPTERS, DummyMetrics, load_toy_reg
from _dummies.disk import no_space_for

from uqbench import store
from uqbench.cli import main
from uqbench.harness import Catalog, DatasetSource

TESTS = Path(__file__).resolve().parent
TIMING = ("fit_wall_seconds", "fit_cpu_seconds", "fit_peak_rss_mb", "sample_seconds_per_draw",
          "samples_per_second", "sample_peak_rss_mb")
FILE_DATASET = DatasetSource("toy-file", "regression", False, load_toy_reg, needs_data_dir=True,
                             summary="dummy regression read from --data-dir")


def _catalog() -> Catalog:
    return Catalog(adapters=DUMMY_ADAPTERS, datasets={**DATASETS, "toy-file": FILE_DATASET},
                   metrics=DummyMetrics())


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str]]:
    code = main(list(argv), catalog=_catalog())
    return code, capsys.readouterr().err.splitlines()


def _one_error_line(code: int, err: list[str]) -> str:
    assert code == 2, err
    assert len(err) == 1, err
    assert err[0].startswith("uqbench: error: ")
    return err[0]


def _quality(run_dir: Path) -> pd.DataFrame:
    df = store.load_results(run_dir)
    df = df[~df["metric"].isin(TIMING)]
    return df.sort_values(["adapter", "dataset", "seed", "split", "metric"]).reset_index(drop=True)


def _files(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """noisy and det on toy-reg, 2 seeds: 4 cells, each with arrays."""
    out = tmp_path_factory.mktemp("finished")
    argv = ["run", "--adapters", "noisy,det", "--datasets", "toy-reg", "--seeds", "2", "--samples", "3",
            "--out", str(out)]
    assert main(argv, catalog=_catalog()) == 0
    (run_dir,) = out.iterdir()
    return run_dir


@pytest.fixture
def run_copy(tmp_path: Path, finished_run: Path) -> Path:
    return Path(shutil.copytree(finished_run, tmp_path / finished_run.name))


# -- case 0: lost rows are noticed, refused by readers and redone by --resume ------------------


def _truncate_results(run_dir: Path) -> None:
    path = run_dir / store.RESULTS_CSV
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[: len(lines) // 2]))


def test_truncated_results_are_refused_by_every_reader_and_redone_by_resume(run_copy, finished_run, capsys):
    expected = _quality(finished_run)
    _truncate_results(run_copy)
    for argv in (["report", str(run_copy)], ["compare", str(finished_run), str(run_copy)]):
        line = _one_error_line(*_run(capsys, *argv))
        assert f"{run_copy} is damaged:" in line and "rows missing from results.csv" in line, line
        assert f"uqbench run --resume {run_copy}" in line
        assert "det__toy-reg__1" in line  # the second half of the file: the last cells
    with pytest.raises(store.DamagedRunError):
        store.load_results(run_copy)

    code, err = _run(capsys, "run", "--resume", str(run_copy))
    assert code == 0, err
    assert any("det__toy-reg__1" in e and "redoing it" in e for e in err), err
    assert store.damaged_cells(run_copy) == {}
    pd.testing.assert_frame_equal(_quality(run_copy), expected)  # same seeds: the same numbers
    assert json.loads((run_copy / store.RUN_JSON).read_text())["status"] == "complete"


def test_rows_of_one_cell_written_twice_are_refused(run_copy, capsys):
    path = run_copy / store.RESULTS_CSV
    rows = [line for line in path.read_text().splitlines(keepends=True) if ",noisy,toy-reg,0," in line]
    with open(path, "a") as f:
        f.writelines(rows)
    damaged = store.damaged_cells(run_copy)
    assert list(damaged) == ["noisy__toy-reg__0"]
    assert f"{2 * len(rows)} rows in results.csv where it wrote {len(rows)} (written twice?)" in damaged[
        "noisy__toy-reg__0"]
    line = _one_error_line(*_run(capsys, "report", str(run_copy)))
    assert "written twice" in line
    assert _run(capsys, "run", "--resume", str(run_copy))[0] == 0
    assert store.damaged_cells(run_copy) == {}
    assert len(store.load_results(run_copy)) == sum(c["n_rows"] for c in store.read_cells(run_copy).values())


@pytest.mark.parametrize("damage", ["truncated", "empty", "missing"])
def test_damaged_arrays_are_refused_and_redone(run_copy, finished_run, capsys, damage):
    npz = run_copy / store.ARRAYS_DIR / "noisy__toy-reg__1.npz"
    if damage == "truncated":
        npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    elif damage == "empty":
        npz.write_bytes(b"")
    else:
        npz.unlink()
    line = _one_error_line(*_run(capsys, "report", str(run_copy)))
    assert "noisy__toy-reg__1: its arrays file arrays/noisy__toy-reg__1.npz is" in line, line
    assert _run(capsys, "run", "--resume", str(run_copy))[0] == 0
    original = store.load_arrays(finished_run, "noisy__toy-reg__1")
    redone = store.load_arrays(run_copy, "noisy__toy-reg__1")
    assert original.keys() == redone.keys()
    for k in original:
        assert (original[k] == redone[k]).all() or k.startswith("time"), k


def test_resume_with_another_data_dir_is_refused(tmp_path, capsys):
    first, other = tmp_path / "data-a", tmp_path / "data-b"
    first.mkdir()
    other.mkdir()
    out = tmp_path / "out"
    code, err = _run(capsys, "run", "--adapters", "noisy", "--datasets", "toy-file", "--seeds", "2",
                     "--samples", "3", "--data-dir", str(first), "--out", str(out))
    assert code == 0, err
    (run_dir,) = out.iterdir()
    store.forget_cell(run_dir, "noisy__toy-file__1")
    before = _files(run_dir)
    line = _one_error_line(*_run(capsys, "run", "--resume", str(run_dir), "--data-dir", str(other)))
    assert f"this run read its data from {first}; resuming it with --data-dir {other} would mix" in line
    assert _files(run_dir) == before
    # The same directory (spelled differently) is the same data.
    code, err = _run(capsys, "run", "--resume", str(run_dir), "--data-dir", str(first / ".." / "data-a"))
    assert code == 0, err


def test_a_failed_resume_does_not_mark_the_run_complete(run_copy, capsys, monkeypatch):
    store.forget_cell(run_copy, "det__toy-reg__1")
    no_space_for(monkeypatch, store.SUMMARY_TXT)
    code, err = _run(capsys, "run", "--resume", str(run_copy))
    line = _one_error_line(code, err)
    assert f"cannot write {run_copy}/summary.txt: No space left on device" in line
    assert f"fix it, then: uqbench report {run_copy}" in line
    record = json.loads((run_copy / store.RUN_JSON).read_text())
    assert record["status"] == "outputs_failed" and record["sessions"][-1]["status"] == "outputs_failed"
    assert not list(run_copy.glob(".*.tmp"))
    monkeypatch.undo()
    assert _run(capsys, "report", str(run_copy))[0] == 0  # the repair the line names
    assert json.loads((run_copy / store.RUN_JSON).read_text())["status"] == "complete"


# -- case 1: one writer per run directory ---------------------------------------------------------

_DRIVER = textwrap.dedent("""\
    import sys, time
    sys.path.insert(0, {tests!r})
    from _dummies import DATASETS, DUMMY_ADAPTERS, DummyMetrics, NoisyAdapter
    from uqbench.cli import main
    from uqbench.harness import Catalog

    class SlowNoisy(NoisyAdapter):
        def fit(self, X, y, *, seed):
            time.sleep({delay})  # long enough for the test to act while this driver runs
            return super().fit(X, y, seed=seed)

    catalog = Catalog(adapters={{**DUMMY_ADAPTERS, "slow": SlowNoisy}}, datasets=DATASETS, metrics=DummyMetrics())
    sys.exit(main(sys.argv[1:], catalog=catalog))
""")


def _driver(tmp_path: Path, *argv: str, delay: float = 0.6) -> subprocess.Popen[str]:
    script = tmp_path / "driver.py"
    script.write_text(_DRIVER.format(tests=str(TESTS), delay=delay))
    return subprocess.Popen([sys.executable, str(script), *argv], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=tmp_path)


def _wait_for(predicate, timeout: float = 60.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < end, "timed out"
        time.sleep(0.05)


def test_a_second_driver_is_refused_and_no_row_is_written_twice(tmp_path, capsys):
    out = tmp_path / "out"
    code, err = _run(capsys, "run", "--adapters", "noisy", "--datasets", "toy-reg", "--seeds", "4",
                     "--samples", "3", "--out", str(out))
    assert code == 0, err
    (run_dir,) = out.iterdir()
    record = json.loads((run_dir / store.RUN_JSON).read_text())
    record["suite"]["adapters"] = ["slow"]  # resume it with the slow twin: 4 unfinished cells
    (run_dir / store.RUN_JSON).write_text(json.dumps(record))
    for key in list(store.read_cells(run_dir)):
        store.forget_cell(run_dir, key)

    first = _driver(tmp_path, "run", "--resume", str(run_dir))
    _wait_for(lambda: (run_dir / store.LOCK_OWNER).exists() or first.poll() is not None)
    second = _driver(tmp_path, "run", "--resume", str(run_dir))
    _, err2 = second.communicate(timeout=120)
    assert second.returncode == 2, err2
    assert err2.splitlines() == [err2.splitlines()[0]] and f"pid {first.pid} on " in err2, err2
    assert "is being written by another uqbench" in err2
    assert _run(capsys, "report", str(run_dir))[0] == 2  # a report is a writer too
    _, err1 = first.communicate(timeout=120)
    assert first.returncode == 0, err1
    cells = store.read_cells(run_dir)
    assert len(cells) == 4 and store.damaged_cells(run_dir) == {}
    assert len(store.load_results(run_dir)) == sum(c["n_rows"] for c in cells.values())
    assert not (run_dir / store.LOCK_OWNER).exists()


def test_the_lock_of_a_killed_driver_is_not_stale(run_copy, capsys):
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""\
        import time
        from uqbench import store
        with store.lock_run_dir({str(run_copy)!r}):
            print("held", flush=True)
            time.sleep(120)
    """)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        line = _one_error_line(*_run(capsys, "run", "--resume", str(run_copy)))
        assert f"pid {holder.pid} on " in line
    finally:
        holder.kill()
        holder.wait()
        holder.stdout.close()
    code, err = _run(capsys, "run", "--resume", str(run_copy))  # kill -9 released it
    assert code == 0, err


# -- case 7: damaged inputs, planted files, SIGTERM ------------------------------------------------


def test_non_utf8_results_are_exit_2_never_the_regression_code(run_copy, finished_run, capsys):
    path = run_copy / store.RESULTS_CSV
    path.write_bytes(path.read_bytes() + b"\xff\xfe,not,utf8\n")
    for argv in (["compare", str(finished_run), str(run_copy)], ["compare", str(run_copy), str(finished_run)],
                 ["report", str(run_copy)]):
        line = _one_error_line(*_run(capsys, *argv))
        assert f"cannot read {path}: not UTF-8 text" in line, line


def test_results_csv_that_is_a_directory(run_copy, capsys):
    (run_copy / store.RESULTS_CSV).unlink()
    (run_copy / store.RESULTS_CSV).mkdir()
    line = _one_error_line(*_run(capsys, "report", str(run_copy)))
    assert f"cannot read {run_copy / store.RESULTS_CSV}: Is a directory" in line


def test_the_atomic_writer_never_writes_through_a_planted_symlink(run_copy, tmp_path, capsys):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious\n")
    for name in ("index.html.tmp", ".index.html.tmp", f".index.html.{os.getpid()}.tmp"):
        (run_copy / name).symlink_to(victim)
    assert _run(capsys, "report", str(run_copy))[0] == 0
    assert victim.read_text() == "precious\n"
    index = run_copy / "index.html"
    assert index.is_file() and not index.is_symlink() and index.read_text().startswith("<!DOCTYPE html>")
    assert oct(index.stat().st_mode & 0o777) == "0o644"


def test_sigterm_is_handled_like_ctrl_c(tmp_path):
    out = tmp_path / "out"
    driver = _driver(tmp_path, "run", "--adapters", "slow", "--datasets", "toy-reg", "--seeds", "6",
                     "--samples", "3", "--out", str(out), delay=0.8)
    _wait_for(lambda: (out.exists() and any(out.glob("*/cells/*.json"))) or driver.poll() is not None)
    driver.send_signal(signal.SIGTERM)
    _, err = driver.communicate(timeout=60)
    assert driver.returncode == 143, err
    (run_dir,) = out.iterdir()
    assert "terminated: finished cells are kept" in err and f"resume with: uqbench run --resume {run_dir}" in err
    record = json.loads((run_dir / store.RUN_JSON).read_text())
    assert record["status"] == "interrupted" and record["sessions"][-1]["status"] == "interrupted"
    assert 1 <= len(store.read_cells(run_dir)) < 6 and store.damaged_cells(run_dir) == {}
    resumed = _driver(tmp_path, "run", "--resume", str(run_dir), delay=0.0)
    _, err = resumed.communicate(timeout=120)
    assert resumed.returncode == 0, err
    assert len(store.read_cells(run_dir)) == 6


# -- case 8: a full disk at every writer -----------------------------------------------------------


@pytest.mark.parametrize("name", ["index.html", "paper_table.md", "paper_table.csv"])
def test_a_full_disk_while_writing_outputs_is_one_line_and_leaves_nothing(run_copy, capsys, monkeypatch, name):
    before = _files(run_copy)
    no_space_for(monkeypatch, name)
    line = _one_error_line(*_run(capsys, "report", str(run_copy)))
    assert line == f"uqbench: error: cannot write {run_copy / name}: No space left on device"
    assert not list(run_copy.glob(".*.tmp"))
    after = _files(run_copy)
    assert after[name] == before[name]  # the old file is untouched
    assert after.keys() == before.keys()


def test_a_full_disk_at_the_summary_of_a_new_run(tmp_path, capsys, monkeypatch):
    out = tmp_path / "out"
    no_space_for(monkeypatch, store.SUMMARY_TXT)
    code, err = _run(capsys, "run", "--adapters", "noisy", "--datasets", "toy-reg", "--seeds", "1",
                     "--samples", "3", "--out", str(out))
    (run_dir,) = out.iterdir()
    assert _one_error_line(code, err).endswith(f"(the cells are kept; fix it, then: uqbench report {run_dir})")
    assert not list(run_dir.glob(".*.tmp")) and len(store.read_cells(run_dir)) == 1
    assert json.loads((run_dir / store.RUN_JSON).read_text())["status"] == "outputs_failed"


# -- case 4: printed commands are shell-quoted ------------------------------------------------------


def test_the_printed_resume_hint_is_safe_to_paste(tmp_path, capsys, monkeypatch):
    from _dummies import InterruptOnNthFit

    config = tmp_path / "hostile.toml"
    config.write_text('name = "x $(touch PWNED); echo"\nadapters = ["noisy"]\ndatasets = ["toy-reg"]\n'
                      "seeds = [0, 1]\nn_samples = 3\nn_bootstrap = 10\n")
    monkeypatch.chdir(tmp_path)
    catalog = Catalog(adapters={**DUMMY_ADAPTERS, "noisy": InterruptOnNthFit(1)}, datasets=DATASETS,
                      metrics=DummyMetrics())
    assert main(["run", "--config", str(config), "--out", str(tmp_path / "out")], catalog=catalog) == 130
    err = capsys.readouterr().err
    (run_dir,) = (tmp_path / "out").iterdir()
    (hint,) = [line.split("resume with: ", 1)[1] for line in err.splitlines() if "resume with: " in line]
    # Pasted into a shell, the hint is `uqbench run --resume RUN_DIR` and runs nothing else.
    shown = subprocess.run(["bash", "-c", f"printf '%s\\n' {hint}"], capture_output=True, text=True, cwd=tmp_path)
    assert shown.stdout.splitlines() == ["uqbench", "run", "--resume", str(run_dir)]
    assert not (tmp_path / "PWNED").exists()


def test_a_header_cut_short_before_any_row_is_repaired_by_resume(run_copy, finished_run, capsys):
    """A run directory whose first append was cut inside the header (older runs wrote it
    with the first rows): readers see an empty table, --resume redoes every cell."""
    (run_copy / store.RESULTS_CSV).write_text("schema_version,adapter,da")
    line = _one_error_line(*_run(capsys, "report", str(run_copy)))
    assert "is damaged: 4 finished cell(s)" in line  # their rows are gone, not a schema error
    code, err = _run(capsys, "run", "--resume", str(run_copy))
    assert code == 0, err
    pd.testing.assert_frame_equal(_quality(run_copy), _quality(finished_run))


def test_a_new_run_directory_starts_with_the_whole_header(tmp_path):
    run_dir = store.new_run_dir(tmp_path, "x")
    assert (run_dir / store.RESULTS_CSV).read_text() == ",".join(store.COLUMNS) + "\n"
    store.write_run_json(run_dir, {"status": "created"})
    assert len(store.load_results(run_dir)) == 0


def test_bytes_damaged_inside_an_intact_archive(run_copy, finished_run, capsys):
    """The zip directory is whole, a member's data is not: readers refuse with one line when
    they read it, and --resume (which checks every member's CRC) redoes the cell."""
    npz = run_copy / store.ARRAYS_DIR / "noisy__toy-reg__0.npz"
    data = bytearray(npz.read_bytes())
    middle = len(data) // 3
    data[middle:middle + 64] = bytes(64)
    npz.write_bytes(bytes(data))
    assert store.damaged_cells(run_copy) == {}  # the cheap check every reader makes passes
    assert "noisy__toy-reg__0" in store.damaged_cells(run_copy, deep=True)
    line = _one_error_line(*_run(capsys, "report", str(run_copy)))
    assert f"cannot read {npz}" in line and "uqbench run --resume" in line
    code, err = _run(capsys, "run", "--resume", str(run_copy))
    assert code == 0, err
    assert any("noisy__toy-reg__0" in e and "redoing it" in e for e in err), err
    assert _run(capsys, "report", str(run_copy))[0] == 0


def test_any_failure_while_writing_outputs_leaves_the_run_not_complete(tmp_path, monkeypatch):
    import uqbench.results

    def broken(*args, **kwargs):
        raise RuntimeError("a bug in a table writer")

    monkeypatch.setattr(uqbench.results, "write_outputs", broken)
    out = tmp_path / "out"
    with pytest.raises(RuntimeError, match="a bug in a table writer"):
        main(["run", "--adapters", "noisy", "--datasets", "toy-reg", "--seeds", "1", "--samples", "3",
              "--out", str(out)], catalog=_catalog())
    (run_dir,) = out.iterdir()
    record = json.loads((run_dir / store.RUN_JSON).read_text())
    assert record["status"] == "outputs_failed"
    assert record["sessions"][-1]["error"] == "RuntimeError: a bug in a table writer"


def test_compare_reads_a_baseline_kept_without_arrays(run_copy, finished_run, capsys):
    """`make regress-baseline` keeps run.json, results.csv and cells/ only: compare reads rows
    alone, so the missing arrays are not damage to it (the report still needs them)."""
    shutil.rmtree(run_copy / store.ARRAYS_DIR)
    code, err = _run(capsys, "compare", str(run_copy), str(finished_run))
    assert code == 0, err
    assert _run(capsys, "compare", str(finished_run), str(run_copy))[0] == 0
    line = _one_error_line(*_run(capsys, "report", str(run_copy)))
    assert "its arrays file arrays/" in line and "is missing" in line
