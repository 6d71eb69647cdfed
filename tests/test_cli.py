"""The `uqbench` command: one-line user errors (exit 2), run/resume/interrupt exit codes,
`list`, and one end-to-end run with the real adapters, datasets and metrics."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from _dummies import InterruptOnNthFit, make_catalog

from uqbench import store
from uqbench.cli import main

UQBENCH = str(Path(sys.executable).with_name("uqbench"))


def _uqbench(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([UQBENCH, *args], cwd=cwd, capture_output=True, text=True, timeout=300)


def _one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 2, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("uqbench: error: ")
    return lines[0]


def test_unknown_dataset_is_one_line_exit_2(tmp_path):
    line = _one_error_line(_uqbench("run", "--datasets", "nope", "--out", "out", cwd=tmp_path))
    assert "unknown dataset 'nope'" in line
    assert not (tmp_path / "out").exists()  # nothing created before validation passed


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "--seeds", "0"], "--seeds: must be an integer >= 1, got '0'"),
        (["run", "--samples", "-1"], "--samples: must be an integer >= 1, got '-1'"),
        (["run", "--suite", "huge"], "unknown suite 'huge'"),
        (["run", "--resume", "."], "is not a uqbench run directory"),
        (["frobnicate"], "invalid choice: 'frobnicate'"),
    ],
)
def test_bad_values_are_one_line_exit_2(tmp_path, args, expected):
    assert expected in _one_error_line(_uqbench(*args, cwd=tmp_path))


def test_version_and_help(tmp_path):
    done = _uqbench("--version", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout.strip().startswith("uqbench ")
    done = _uqbench("run", "--help", cwd=tmp_path)
    assert done.returncode == 0 and "--resume" in done.stdout


def test_list_shows_in_tree_adapters_datasets_metrics_suites(tmp_path):
    from uqbench import registry

    done = _uqbench("list", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    entries = {line.split()[0] for line in lines if line.startswith("  ")}
    assert set(registry.adapter_names()) <= entries
    assert {"deterministic", "toy-gap", "digits", "accuracy_score", "quick", "standard"} <= entries
    for section in ("adapters:", "datasets:", "metrics:", "suites:"):
        assert section in lines


# -- in-process, with the dummy catalog -------------------------------------------------


def _run_dir(out: Path) -> Path:
    (run_dir,) = out.iterdir()
    return run_dir


def test_run_with_failures_exits_1_and_writes_summary(tmp_path, capsys):
    argv = ["run", "--adapters", "noisy,failing", "--datasets", "toy-reg,toy-cls", "--seeds", "2",
            "--samples", "4", "--out", str(tmp_path)]
    assert main(argv, catalog=make_catalog()) == 1
    out, err = capsys.readouterr()
    run_dir = _run_dir(tmp_path)
    assert f"run directory: {run_dir}" in out
    assert "[8/8]" in out  # one progress line per cell when not a terminal
    assert "toy-reg (regression)" in out and "toy-cls (classification)" in out
    assert "4 failed cell(s)" in out and "RuntimeError: boom" in out
    assert err.strip() == "uqbench: 4 cell(s) failed (listed above)"
    summary = (run_dir / store.SUMMARY_TXT).read_text()
    assert "RMSE" in summary and "accuracy" in summary and "failing / toy-reg / seed 0 in fit" in summary
    run_json = json.loads((run_dir / store.RUN_JSON).read_text())
    assert run_json["suite"]["seeds"] == [0, 1] and run_json["suite"]["n_samples"] == 4
    assert run_json["environment"]["command_line"][1:] == argv


def test_interrupt_exits_130_and_resume_finishes(tmp_path, capsys):
    interrupting = InterruptOnNthFit(3)
    catalog = make_catalog(noisy=interrupting)
    argv = ["run", "--adapters", "noisy", "--datasets", "toy-reg,toy-cls", "--seeds", "2",
            "--samples", "4", "--out", str(tmp_path)]
    assert main(argv, catalog=catalog) == 130
    err = capsys.readouterr().err
    run_dir = _run_dir(tmp_path)
    assert f"uqbench run --resume {run_dir}" in err
    assert len(store.read_cells(run_dir)) == 2

    assert main(["run", "--resume", str(run_dir), "--seeds", "3"], catalog=catalog) == 2
    assert "drop --seeds" in capsys.readouterr().err

    interrupting.armed = False
    assert main(["run", "--resume", str(run_dir)], catalog=catalog) == 0
    out = capsys.readouterr().out
    assert f"resuming {run_dir}" in out and "2/4 cells already finished" in out
    assert len(store.read_cells(run_dir)) == 4
    assert (run_dir / store.SUMMARY_TXT).exists()


def test_unknown_adapter_in_process(tmp_path, capsys):
    assert main(["run", "--adapters", "nope", "--datasets", "toy-reg", "--out", str(tmp_path)],
                catalog=make_catalog()) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith("uqbench: error: unknown adapter 'nope'")


# -- end to end with the real modules ----------------------------------------------------


@pytest.mark.slow
def test_end_to_end_deterministic_on_toy_gap(tmp_path):
    done = _uqbench("run", "--adapters", "deterministic", "--datasets", "toy-gap", "--seeds", "1",
                    "--samples", "8", "--out", "out", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run_dir = _run_dir(tmp_path / "out")
    assert run_dir.name.endswith("-quick")
    df = store.load_results(run_dir)
    assert set(df["adapter"]) == {"deterministic"} and set(df["seed"]) == {0}
    assert (df["status"] == "ok").all()
    assert set(df["split"]) == {"fit", "sample", "test", "ood:gap", "ood:outside"}
    test = df[df["split"] == "test"].set_index("metric")
    for metric in ("rmse_error", "nll_loss", "crps_loss", "calibration_error", "picp_95"):
        assert metric in test.index
    assert 0.05 < test.loc["rmse_error", "value"] < 2.0  # original units of a target of range ~5
    assert test.loc["rmse_error", "ci_low"] <= test.loc["rmse_error", "value"] <= test.loc["rmse_error", "ci_high"]
    assert test.loc["epistemic_variance", "value"] < 1e-20  # zero up to rounding
    ratio = df[(df["split"] == "ood:gap") & (df["metric"] == "epistemic_ratio")]["value"]
    assert ratio.isna().all()  # undefined for a deterministic net: shown as "—", not a failure
    assert df[(df["split"] == "fit") & (df["metric"] == "n_parameters")]["value"].item() > 0
    arrays = store.load_arrays(run_dir, "deterministic__toy-gap__0")
    assert arrays["grid/draws_loc"].shape[0] == 8 and "curves/coverage_observed" in arrays
    assert "—" in (run_dir / store.SUMMARY_TXT).read_text()


def test_unreadable_data_mid_run_is_one_line_exit_2_with_resume_hint(tmp_path, capsys):
    from _dummies import DATASETS

    from uqbench.errors import DataNotFoundError
    from uqbench.harness import DatasetSource

    def missing(**kwargs):
        raise DataNotFoundError("broken needs data/broken.csv")

    catalog = make_catalog()
    catalog._datasets = {**DATASETS, "broken": DatasetSource("broken", "regression", False, missing)}
    argv = ["run", "--adapters", "noisy", "--datasets", "toy-reg,broken", "--seeds", "1", "--out", str(tmp_path)]
    assert main(argv, catalog=catalog) == 2
    err = capsys.readouterr().err.splitlines()
    run_dir = _run_dir(tmp_path)
    assert err == [f"uqbench: error: broken needs data/broken.csv (fix it, then: uqbench run --resume {run_dir})"]
    assert list(store.read_cells(run_dir)) == ["noisy__toy-reg__0"]


def test_importing_the_cli_is_light():
    code = (
        "import sys, uqbench.cli; "
        "print([m for m in ('torch', 'pandas', 'rich', 'scipy', 'sklearn', 'uqbench.metrics', "
        "'uqbench.datasets', 'uqbench.harness') if m in sys.modules])"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
