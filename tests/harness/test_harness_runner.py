"""The run loop with injected dummies: failures, resume, determinism, stored arrays."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from _dummies import InterruptOnNthFit, load_toy_reg, make_catalog

from uqbench import store
from uqbench.harness import execute, prepare, prepare_resume, run_suite
from uqbench.harness.cell import derive_seed

TIMING = ("fit_wall_seconds", "fit_cpu_seconds", "fit_peak_rss_mb", "sample_seconds_per_draw",
          "samples_per_second", "sample_peak_rss_mb")


def _values(run_dir) -> pd.DataFrame:
    """results.csv without timing rows, in a canonical order."""
    df = store.load_results(run_dir)
    df = df[~df["metric"].isin(TIMING)]
    return df.sort_values(["adapter", "dataset", "seed", "split", "metric"]).reset_index(drop=True)


def test_failing_nan_and_wrong_shape_cells_fail_others_succeed(tmp_path, catalog, tiny_suite):
    suite = tiny_suite.replace(adapters=("noisy", "failing", "nan", "wrong-shape", "det"))
    result = run_suite(suite, out=tmp_path, catalog=catalog)
    assert result.status == "complete"
    assert result.exit_code == 1
    by_adapter: dict[str, set[str]] = {}
    for rec in result.cells.values():
        by_adapter.setdefault(rec["adapter"], set()).add(rec["status"])
    assert by_adapter == {"noisy": {"ok"}, "det": {"ok"}, "failing": {"failed"}, "nan": {"failed"},
                          "wrong-shape": {"failed"}}
    reasons = {r["adapter"]: r for r in result.failures}
    assert reasons["failing"]["reason"] == "RuntimeError: boom: the optimizer diverged"  # one line
    assert reasons["failing"]["stage"] == "fit"
    assert "non-finite" in reasons["nan"]["reason"] and reasons["nan"]["stage"] == "sample"
    assert "shape" in reasons["wrong-shape"]["reason"]
    assert "Traceback" in reasons["failing"]["traceback"]

    df = store.load_results(result.run_dir)
    failed = df[df["status"] == "failed"]
    assert set(failed["adapter"]) == {"failing", "nan", "wrong-shape"}
    assert (failed.groupby(["adapter", "dataset", "seed"]).size() == 1).all()  # one row per failed cell
    assert (failed["error"] != "").all() and (df.loc[df["status"] == "ok", "error"] == "").all()
    ok = df[df["status"] == "ok"]
    assert set(ok["adapter"]) == {"noisy", "det"}
    # Undefined metric (no epistemic variance in-distribution) is NaN, and not a failure.
    det_ratio = ok[(ok["adapter"] == "det") & (ok["metric"] == "epistemic_ratio")]["value"]
    assert len(det_ratio) > 0 and det_ratio.isna().all()


def test_result_rows_and_files(tmp_path, catalog, tiny_suite):
    result = run_suite(tiny_suite, out=tmp_path, catalog=catalog)
    assert result.exit_code == 0
    run_dir = result.run_dir
    assert run_dir.parent == tmp_path and run_dir.name.startswith("run-") and run_dir.name.endswith("-tiny")
    df = store.load_results(run_dir)
    assert tuple(df.columns) == store.COLUMNS
    assert (df["schema_version"] == store.SCHEMA_VERSION).all()
    cell = df[(df["adapter"] == "noisy") & (df["dataset"] == "toy-reg") & (df["seed"] == 0)]
    got = set(zip(cell["split"], cell["metric"], strict=True))
    assert {("fit", "fit_wall_seconds"), ("fit", "fit_cpu_seconds"), ("fit", "fit_peak_rss_mb"),
            ("fit", "n_parameters"), ("sample", "sample_seconds_per_draw"),
            ("sample", "samples_per_second"), ("test", "rmse_error"), ("test", "nll_loss"),
            ("ood:far", "epistemic_ratio")} <= got
    assert cell.loc[cell["metric"] == "n_parameters", "value"].item() == 3  # w [2, 1] + sigma [1]
    # The labelled OOD set of toy-cls is also scored against its labels.
    cls = df[(df["dataset"] == "toy-cls") & (df["split"] == "ood:shifted")]
    assert {"epistemic_ratio", "accuracy_score"} <= set(cls["metric"])

    run_json = json.loads((run_dir / store.RUN_JSON).read_text())
    assert run_json["schema_version"] == store.SCHEMA_VERSION
    assert run_json["status"] == "complete" and run_json["duration_seconds"] >= 0
    env = run_json["environment"]
    assert {"packages", "git", "cpu_model", "cpu_count", "torch_threads", "thread_env", "python",
            "platform", "command_line"} <= set(env)
    assert {"numpy", "torch", "scipy", "scikit-learn", "pandas", "uqbench"} <= set(env["packages"])
    assert run_json["suite"]["adapters"] == ["noisy", "det"]

    cells = store.read_cells(run_dir)
    assert len(cells) == 2 * 2 * 2
    assert all(c["schema_version"] == store.SCHEMA_VERSION and c["status"] == "ok" for c in cells.values())


def test_regression_metrics_in_original_units(tmp_path, catalog, tiny_suite):
    suite = tiny_suite.replace(datasets=("toy-reg",), adapters=("det",), seeds=(0,))
    result = run_suite(suite, out=tmp_path, catalog=catalog)
    df = store.load_results(result.run_dir)
    rmse = df[(df["metric"] == "rmse_error")]["value"].item()
    # Independent reference: refit the dummy by hand, predict, undo the standardization.
    ds = load_toy_reg(seed=0)
    from _dummies import DeterministicDummy

    model = DeterministicDummy().fit(ds.X_train, ds.y_train, seed=derive_seed(0, "fit"))
    pred = model.sample_predictive(ds.X_test, n_samples=1, seed=0).loc[0]
    expected = np.sqrt(np.mean(((pred - ds.y_test) * ds.target_std) ** 2))
    assert rmse == pytest.approx(expected, rel=1e-12)
    assert ds.target_std[0] > 1.5  # the units really differ


def test_arrays_for_the_report(tmp_path, catalog, tiny_suite):
    result = run_suite(tiny_suite.replace(seeds=(0,)), out=tmp_path, catalog=catalog)
    reg = store.load_arrays(result.run_dir, "noisy__toy-reg__0")
    ds = load_toy_reg(seed=0)
    assert reg["grid/X"].shape == (25, 1) and reg["grid/mean"].shape == (25, 1)
    assert reg["grid/draws_loc"].shape == (6, 25, 1)  # min(10, S) draws
    np.testing.assert_allclose(reg["grid/total_variance"],
                               reg["grid/epistemic_variance"] + reg["grid/aleatoric_variance"])
    np.testing.assert_allclose(reg["train/y"], ds.y_train * ds.target_std + ds.target_mean)
    assert list(reg["regions/names"]) == ["data", "far"]
    np.testing.assert_array_equal(reg["regions/bounds"], [[-2, 2], [4, 6]])
    assert reg["scores/test/epistemic"].shape == (20,) and reg["scores/ood:far/total"].shape == (10,)
    assert "curves/dummy_curve" in reg
    cls = store.load_arrays(result.run_dir, "noisy__toy-cls__0")
    assert not any(k.startswith("grid/") for k in cls)
    assert {"scores/ood:noise/epistemic", "scores/ood:shifted/aleatoric"} <= set(cls)


def test_same_seed_same_numbers(tmp_path, catalog, tiny_suite):
    a = run_suite(tiny_suite, out=tmp_path / "a", catalog=catalog)
    b = run_suite(tiny_suite, out=tmp_path / "b", catalog=make_catalog())
    pd.testing.assert_frame_equal(_values(a.run_dir), _values(b.run_dir))
    for key in ("noisy__toy-reg__1", "noisy__toy-cls__0"):
        xa, xb = store.load_arrays(a.run_dir, key), store.load_arrays(b.run_dir, key)
        assert xa.keys() == xb.keys()
        for k in xa:
            np.testing.assert_array_equal(xa[k], xb[k])
    c = run_suite(tiny_suite.replace(seeds=(5, 6)), out=tmp_path / "c", catalog=catalog)
    assert not np.array_equal(_values(a.run_dir)["value"], _values(c.run_dir)["value"])


def test_derived_seeds_are_stable_and_distinct():
    assert derive_seed(0, "fit") == derive_seed(0, "fit")
    seeds = {derive_seed(s, name) for s in range(3) for name in ("fit", "sample:test", "bootstrap:test")}
    assert len(seeds) == 9 and all(0 <= s < 2**31 for s in seeds)


def test_interrupt_then_resume_equals_uninterrupted(tmp_path, tiny_suite):
    suite = tiny_suite.replace(adapters=("noisy", "det", "failing"))
    reference = run_suite(suite, out=tmp_path / "ref", catalog=make_catalog())

    interrupting = InterruptOnNthFit(3)
    catalog = make_catalog(noisy=interrupting)
    run = prepare(suite, out=tmp_path / "crash", catalog=catalog)
    with pytest.raises(KeyboardInterrupt):
        execute(run)
    run_dir = run.run_dir
    assert json.loads((run_dir / store.RUN_JSON).read_text())["status"] == "interrupted"
    done = store.read_cells(run_dir)
    assert 0 < len(done) < len(run.plan.cells)
    # Simulate a crash between a cell's rows and its marker: orphan rows must be dropped.
    store.append_rows(run_dir, [store.make_row("noisy", "toy-cls", 1, "test", "accuracy_score", 0.5)])
    with open(run_dir / store.RESULTS_CSV, "a") as f:
        f.write("1,noisy,toy-cls,1,test,nll_lo")  # a line cut short by a kill

    interrupting.armed = False
    resumed = execute(prepare_resume(run_dir, catalog=catalog))
    assert resumed.status == "complete" and resumed.exit_code == 1  # 'failing' cells
    for key, rec in done.items():  # finished cells were not redone
        assert store.read_cells(run_dir)[key]["ended"] == rec["ended"]
    pd.testing.assert_frame_equal(_values(run_dir), _values(reference.run_dir))
    sessions = json.loads((run_dir / store.RUN_JSON).read_text())["sessions"]
    assert [s["status"] for s in sessions] == ["interrupted", "complete"]


def test_resume_of_a_finished_run_does_nothing(tmp_path, catalog, tiny_suite):
    result = run_suite(tiny_suite.replace(seeds=(0,)), out=tmp_path, catalog=catalog)
    before = (result.run_dir / store.RESULTS_CSV).read_text()
    again = execute(prepare_resume(result.run_dir, catalog=catalog))
    assert again.status == "complete"
    assert (result.run_dir / store.RESULTS_CSV).read_text() == before


def test_reconstruction_adapter_runs_on_images_only(tmp_path, catalog, tiny_suite):
    result = run_suite(tiny_suite.replace(adapters=("recon",), seeds=(0,)), out=tmp_path, catalog=catalog)
    cells = result.cells
    assert cells["recon__toy-reg__0"]["status"] == "skipped"
    assert "not applicable" in cells["recon__toy-reg__0"]["reason"]
    rec = cells["recon__toy-cls__0"]
    # The dummy adapter checks it got y=None and inputs in [0, 1]; the dummy metrics do not
    # take the inputs reconstruction metrics need (X=), and that is the cell's failure.
    assert rec["mode"] == "reconstruction" and rec["stage"] == "metrics"
    assert rec["reason"].startswith("TypeError") and "'X'" in rec["reason"]
    assert result.exit_code == 1


def test_not_applicable_cells_are_not_failures(tmp_path, catalog, tiny_suite):
    class RegressionOnly(type(catalog.make_adapter("noisy", {}))):
        tasks = frozenset({"regression"})

    result = run_suite(tiny_suite.replace(adapters=("reg-only",)), out=tmp_path,
                       catalog=make_catalog(**{"reg-only": RegressionOnly}))
    assert result.exit_code == 0
    statuses = {k: r["status"] for k, r in result.cells.items()}
    assert statuses == {"reg-only__toy-reg__0": "ok", "reg-only__toy-reg__1": "ok",
                        "reg-only__toy-cls__0": "skipped", "reg-only__toy-cls__1": "skipped"}


def test_dataset_cached_per_dataset_and_seed(tmp_path, tiny_suite):
    from _dummies import DATASETS

    calls = []
    src = DATASETS["toy-cls"]

    def counting(**kw):
        calls.append((kw["seed"], kw["input_scaling"]))
        return src.load(**kw)

    catalog = make_catalog()
    catalog._datasets = {**DATASETS, "toy-cls": type(src)(**{**src.__dict__, "load": counting})}
    run_suite(tiny_suite.replace(datasets=("toy-cls",), adapters=("noisy", "det", "recon")),
              out=tmp_path, catalog=catalog)
    assert sorted(calls) == [(0, "standardize"), (0, "unit"), (1, "standardize"), (1, "unit")]


def test_timing_rows_are_finite(tmp_path, catalog, tiny_suite):
    result = run_suite(tiny_suite.replace(seeds=(0,)), out=tmp_path, catalog=catalog)
    df = store.load_results(result.run_dir)
    timing = df[df["metric"].isin(TIMING)]
    assert len(timing) == 4 * len(TIMING)
    assert all(math.isfinite(v) and v >= 0 for v in timing["value"])
