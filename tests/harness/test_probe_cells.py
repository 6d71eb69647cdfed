"""The probe as a cell step: `uqbench run --probe` stores gradient variances per batch size."""

from __future__ import annotations

import pytest

from uqbench import store
from uqbench.cli import main


def test_run_with_probe_stores_gradient_variance(tmp_path, capsys):
    code = main(
        ["run", "--adapters", "bbb,lrt,deterministic,bayes-linear", "--datasets", "toy-gap",
         "--seeds", "1", "--samples", "10", "--probe", "--out", str(tmp_path)]
    )
    assert code == 0, capsys.readouterr().err
    (run_dir,) = tmp_path.iterdir()
    df = store.load_results(run_dir)
    probe = df[df["split"] == "probe"].pivot_table(index="metric", columns="adapter", values="value")
    # toy-gap has 240 training rows: batch 512 is skipped, not faked.
    assert sorted(probe.index) == [
        "grad_var_first_b128", "grad_var_first_b32", "grad_var_last_b128", "grad_var_last_b32"
    ]
    assert set(probe.columns) == {"bbb", "lrt", "deterministic"}  # bayes-linear has no loss
    assert (probe > 0).all().all()
    # More examples per batch, less gradient noise -- except that BBB's weight noise is
    # shared by the whole batch and does not average out (the lecture's point), so its
    # variance falls far less than LRT's per-example noise lets it.
    for layer in ("first", "last"):
        drop = probe.loc[f"grad_var_{layer}_b32"] / probe.loc[f"grad_var_{layer}_b128"]
        assert drop["lrt"] > 1.5 and drop["deterministic"] > 1.5
        assert drop["bbb"] < drop["lrt"]


def test_probe_conflicts_with_resume(tmp_path, capsys):
    args = ["--adapters", "bayes-linear", "--datasets", "toy-gap", "--seeds", "1", "--samples", "4"]
    assert main(["run", *args, "--executor", "serial", "--out", str(tmp_path)]) == 0
    (run_dir,) = tmp_path.iterdir()
    capsys.readouterr()
    assert main(["run", "--resume", str(run_dir), "--probe"]) == 2
    assert "drop --probe" in capsys.readouterr().err


@pytest.mark.parametrize("flag", [[], ["--probe"]])
def test_probe_flag_parses(flag):
    from uqbench.cli import _suite_from_args, build_parser

    args = build_parser().parse_args(["run", *flag])
    assert ("probe" in _suite_from_args(args).steps) == bool(flag)
