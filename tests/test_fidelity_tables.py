"""The ``fidelity`` cell step, the fidelity post-pass and the paper-style tables, end to end.

Real adapters on toy-gap with ``bayes-linear`` playing the reference (the HMC adapter's
role); a dummy catalog for the parts torch is not needed for (diagnostics rows, OOD
subsets, runs without regression).
"""

from __future__ import annotations

import io
import math
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from _dummies import DeterministicDummy, NoisyAdapter, load_toy_cls

from uqbench import store
from uqbench.datasets import Dataset, OODSet
from uqbench.harness import Catalog, DatasetSource, run_suite
from uqbench.harness import cell as cell_module
from uqbench.metrics import predictive_wasserstein
from uqbench.results.fidelity import (
    COLUMNS,
    FIDELITY_METRICS,
    fidelity_markdown,
    fidelity_summary,
    fidelity_table,
    unconverged_references,
    write_fidelity,
)
from uqbench.results.paper import (
    Block,
    format_mean_se,
    paper_stats,
    paper_table,
    write_paper_tables,
)
from uqbench.suites import Suite

REFERENCE = "bayes-linear"
ADAPTERS = ("deterministic", "mc-dropout", REFERENCE)
SPLITS = ["test", "ood:gap", "ood:outside"]
N_SAMPLES = 20


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    pytest.importorskip("torch")
    suite = Suite(
        name="fidelity",
        datasets=("toy-gap",),
        seeds=(0, 1),
        n_samples=N_SAMPLES,
        adapters=ADAPTERS,
        dataset_params={"toy-gap": {"epochs": 20, "features": "rff", "lengthscale": 0.5}},
        n_bootstrap=10,
        steps=("fidelity",),
    )
    result = run_suite(suite, out=tmp_path_factory.mktemp("runs"), catalog=Catalog())
    assert [r["status"] for r in result.cells.values()] == ["ok"] * 6
    return result.run_dir


@pytest.fixture(scope="module")
def table(run_dir):
    return fidelity_table(run_dir, reference=REFERENCE, include_reference=True)


# ---- the cell step -------------------------------------------------------------------------


def test_step_stores_draws_in_original_units(run_dir):
    df = store.load_results(run_dir)
    for key in store.read_cells(run_dir):
        arrays = store.load_arrays(run_dir, key)
        adapter, _, seed = key.split("__")
        n = {"test": 200, "ood:gap": 100, "ood:outside": 100}
        for split in SPLITS:
            loc, scale = arrays[f"fidelity/{split}/loc"], arrays[f"fidelity/{split}/scale"]
            assert loc.dtype == scale.dtype == np.float32
            assert loc.shape == scale.shape == (N_SAMPLES, n[split], 1)
            assert f"fidelity/{split}/index" not in arrays  # toy-gap's OOD sets are small
            # The same draws the metrics saw: their epistemic variance (original units).
            row = df[(df["adapter"] == adapter) & (df["seed"] == int(seed)) & (df["split"] == split)
                     & (df["metric"] == "epistemic_variance")]
            expected = float(row["value"].iloc[0])
            got = float(np.var(loc.astype(np.float64), axis=0).mean())
            assert got == pytest.approx(expected, rel=1e-4, abs=1e-9)
    assert not (df["split"] == "diagnostics").any()  # no adapter here has diagnostics_


# ---- fidelity tables -------------------------------------------------------------------------


def test_fidelity_table_layout(table):
    assert list(table.columns) == ["adapter", "dataset", "seed", "split", "metric", "value"]
    assert list(dict.fromkeys(table["adapter"])) == list(ADAPTERS)  # run order
    counts = table.groupby(["adapter", "seed", "split"]).size()
    assert len(counts) == 3 * 2 * 3 and (counts == len(FIDELITY_METRICS)).all()
    assert set(table["metric"]) == set(FIDELITY_METRICS)
    assert set(table["split"]) == set(SPLITS)


def test_fidelity_values(table, run_dir):
    v = table.set_index(["adapter", "seed", "split", "metric"])["value"]
    assert np.isfinite(table["value"]).all()
    ref = v.loc[REFERENCE]
    assert (ref.xs("w1_mean", level="metric") == 0).all()
    assert (ref.xs("w1_scaled_mean", level="metric") == 0).all()
    for m in ("epistemic_sd_ratio_median", "epistemic_sd_ratio_mean", "predictive_sd_ratio_median"):
        np.testing.assert_allclose(ref.xs(m, level="metric"), 1.0, rtol=1e-12)
    # The deterministic net recovers none of the epistemic uncertainty; dropout some.
    assert (v.loc["deterministic"].xs("epistemic_sd_ratio_mean", level="metric") == 0).all()
    dropout = v.loc["mc-dropout"]
    assert (dropout.xs("epistemic_sd_ratio_median", level="metric") > 0).all()
    assert (dropout.xs("predictive_sd_ratio_median", level="metric") > 0).all()
    for adapter in ("deterministic", "mc-dropout"):
        assert (v.loc[adapter].xs("w1_mean", level="metric") > 0).all()
    # w1_mean is the mean over inputs of the metric function on the stored draws.
    a = store.load_arrays(run_dir, store.cell_key("mc-dropout", "toy-gap", 1))
    r = store.load_arrays(run_dir, store.cell_key(REFERENCE, "toy-gap", 1))
    w = predictive_wasserstein(a["fidelity/ood:gap/loc"], a["fidelity/ood:gap/scale"],
                               r["fidelity/ood:gap/loc"], r["fidelity/ood:gap/scale"])
    assert v.loc[("mc-dropout", 1, "ood:gap", "w1_mean")] == pytest.approx(w.mean(), rel=1e-12)


def test_fidelity_summary_is_mean_and_standard_error(table):
    summary = fidelity_summary(table)
    assert summary.index.names == ["metric", "dataset", "split"]
    assert list(summary.columns) == list(ADAPTERS)
    g = table.groupby(["metric", "dataset", "split", "adapter"])["value"]
    stats = pd.DataFrame({"mean": g.mean(), "sd": g.std(ddof=1), "n": g.count()})
    for (metric, dataset, split, adapter), row in stats.iterrows():
        expected = format_mean_se(row["mean"], row["sd"] / math.sqrt(row["n"]))
        assert summary.loc[(metric, dataset, split), adapter] == expected


def test_write_fidelity(run_dir, table):
    assert write_fidelity(run_dir) is None  # no "hmc" cells in this run
    assert not (run_dir / "fidelity.md").exists() and not (run_dir / "fidelity.csv").exists()
    md = write_fidelity(run_dir, reference=REFERENCE)
    assert md == run_dir / "fidelity.md"
    written = pd.read_csv(run_dir / "fidelity.csv")
    expected = table[table["adapter"] != REFERENCE].reset_index(drop=True)
    pd.testing.assert_frame_equal(written, expected, check_exact=False, rtol=1e-15)
    text = md.read_text(encoding="utf-8")
    assert f"against `{REFERENCE}`" in text
    for metric in FIDELITY_METRICS:
        assert f"## {metric}" in text
    assert "| toy-gap | ood:outside |" in text
    assert not list(run_dir.glob(".*.tmp"))


# ---- paper tables ---------------------------------------------------------------------------


def _groupby_text(df, metric, split="test", sign=1.0):
    rows = df[(df["status"] == "ok") & (df["metric"] == metric) & (df["split"] == split)]
    rows = rows[np.isfinite(rows["value"])]
    g = (sign * rows["value"]).groupby([rows["dataset"], rows["adapter"]])
    mean, sd, n = g.mean(), g.std(ddof=1), g.count()
    return {k: format_mean_se(mean[k], sd[k] / np.sqrt(n[k])) for k in mean.index}


def test_paper_table_equals_independent_groupby(run_dir):
    df = store.load_results(run_dir)
    table = paper_table(df)
    assert list(table.columns) == list(ADAPTERS)
    assert list(table.index) == [("RMSE", "toy-gap", "test"), ("test LL", "toy-gap", "test")]
    for label, metric, sign in (("RMSE", "rmse_error", 1.0), ("test LL", "nll_loss", -1.0)):
        for (dataset, adapter), text in _groupby_text(df, metric, sign=sign).items():
            assert table.loc[(label, dataset, "test"), adapter] == text
    # Test LL is minus the NLL: negative of the RMSE-free check on one cell.
    nll = df[(df["adapter"] == "mc-dropout") & (df["metric"] == "nll_loss") & (df["split"] == "test")]["value"]
    assert table.loc[("test LL", "toy-gap", "test"), "mc-dropout"].startswith(
        format_mean_se(-nll.mean(), nll.std(ddof=1) / math.sqrt(2)).split(" ±")[0]
    )


def test_paper_table_ood_blocks(run_dir):
    df = store.load_results(run_dir)
    table = paper_table(df, ("epistemic_ratio", "auroc_epistemic"), split="ood:*")
    assert [i[2] for i in table.index] == ["ood:gap", "ood:outside", "ood:gap", "ood:outside"]
    # A deterministic net's epistemic ratio is undefined (NaN) for every seed.
    ratio = table.index.get_level_values("metric") == "epistemic ratio (OOD / test)"
    assert (table.loc[ratio, "deterministic"] == "—").all()
    for split in ("ood:gap", "ood:outside"):
        for (dataset, adapter), text in _groupby_text(df, "epistemic_ratio", split).items():
            assert table.loc[("epistemic ratio (OOD / test)", dataset, split), adapter] == text


def test_paper_stats_best_follows_direction(run_dir):
    df = store.load_results(run_dir)
    stats = paper_stats(df)
    for label, higher in (("RMSE", False), ("test LL", True), ("calibration error", False)):
        sub = stats[stats["metric"] == label]
        best = sub.loc[sub["mean"].idxmax() if higher else sub["mean"].idxmin(), "adapter"]
        assert sub.loc[sub["best"], "adapter"].tolist() == [best]
    with pytest.raises(ValueError, match="unknown metric"):
        paper_stats(df, ("rmsee",))
    assert paper_stats(df, (Block("x", "rmse_error", "ood:none"),)).empty


def test_write_paper_tables(run_dir):
    md, csv = write_paper_tables(run_dir)
    assert (md.name, csv.name) == ("paper_table.md", "paper_table.csv")
    text = md.read_text(encoding="utf-8")
    for header in ("## RMSE", "## test LL", "## calibration error", "## epistemic ratio", "## AUROC"):
        assert header in text
    rows = [line for line in text.splitlines() if line.startswith("| toy-gap")]
    assert len(rows) == 3 + 2 * 2
    assert all("**" in line for line in rows)  # one bold best per row
    wide = pd.read_csv(io.StringIO(csv.read_text(encoding="utf-8")))
    assert list(wide.columns) == ["metric", "split", "dataset", *ADAPTERS]
    assert wide.loc[wide["metric"] == "RMSE", "split"].tolist() == ["test"]
    assert set(wide["metric"]) == {
        "RMSE", "test LL", "calibration error", "epistemic ratio (OOD / test)",
        "AUROC, epistemic score (OOD vs test)",
    }


@pytest.mark.parametrize(
    ("mean", "se", "text"),
    [
        (3.01234, 0.18234, "3.01 ± 0.18"),
        (0.593, 0.0101, "0.593 ± 0.010"),
        (4042.0, 2852.0, "4042 ± 2852"),
        (-0.6515, 0.00201, "-0.6515 ± 0.0020"),
        (0.5, 0.0, "0.5 ± 0"),
        (0.4349, float("nan"), "0.435"),
        (float("nan"), 0.1, "—"),
        (2.5e-6, 1e-7, "2.5e-06 ± 1e-07"),
        (1.2e6, 3.4e4, "1.2e+06 ± 3.4e+04"),
    ],
)
def test_format_mean_se(mean, se, text):
    assert format_mean_se(mean, se) == text


# ---- dummy catalog: diagnostics, OOD subsets, no regression ---------------------------------


class DiagnosedAdapter(NoisyAdapter):
    """A reference stand-in reporting sampler diagnostics like the HMC adapter will."""

    tasks: ClassVar[frozenset[str]] = frozenset({"regression"})

    def fit(self, X, y, *, seed):
        super().fit(X, y, seed=seed)
        self.diagnostics_ = {
            "rhat_max": 1.0 + (seed % 100) / 1000, "ess_bulk_min": np.float32(420.0), "divergences": 3,
            "converged": True, "sampler": "nuts", "chains": [1, 2],
        }
        return self


def _load_big_ood(*, seed: int, data_dir=None, input_scaling: str = "standardize") -> Dataset:
    rng = np.random.default_rng(seed)
    x = rng.uniform(-2, 2, size=(60, 1))
    y = 2.0 * x + 0.3 * rng.normal(size=(60, 1))
    return Dataset(
        name="big-ood", task="regression", X_train=x[:40], y_train=y[:40], X_test=x[40:],
        y_test=y[40:], ood={"far": OODSet(rng.uniform(3, 5, size=(50, 1))), "near": OODSet(x[:8] + 0.1)},
        target_mean=np.array([5.0]), target_std=np.array([2.0]),
    )


@pytest.fixture
def dummy_run(tmp_path, monkeypatch):
    monkeypatch.setattr(cell_module, "MAX_OOD_POINTS", 20)
    catalog = Catalog(
        adapters={"ref": DiagnosedAdapter, "noisy": NoisyAdapter, "det": DeterministicDummy},
        datasets={"big-ood": DatasetSource("big-ood", "regression", False, _load_big_ood)},
    )
    suite = Suite(name="d", datasets=("big-ood",), seeds=(0, 3), n_samples=7,
                  adapters=("noisy", "det", "ref"), n_bootstrap=5, steps=("fidelity",))
    result = run_suite(suite, out=tmp_path, catalog=catalog)
    assert all(r["status"] == "ok" for r in result.cells.values())
    return result.run_dir


def test_subsampled_ood_sets_are_the_same_points_for_every_adapter(dummy_run):
    for seed in (0, 3):
        expected = cell_module.ood_subset(50, seed, "ood:far")
        assert expected.shape == (20,) and np.all(np.diff(expected) > 0)
        for adapter in ("noisy", "det", "ref"):
            arrays = store.load_arrays(dummy_run, store.cell_key(adapter, "big-ood", seed))
            np.testing.assert_array_equal(arrays["fidelity/ood:far/index"], expected)
            assert arrays["fidelity/ood:far/loc"].shape == (7, 20, 1)
            assert "fidelity/ood:near/index" not in arrays  # 8 points: not subsampled
    assert not np.array_equal(cell_module.ood_subset(50, 0, "ood:far"), cell_module.ood_subset(50, 3, "ood:far"))


def test_diagnostics_rows_and_reference_section(dummy_run):
    df = store.load_results(dummy_run)
    diag = df[df["split"] == "diagnostics"]
    assert set(diag["adapter"]) == {"ref"}
    got = diag[diag["seed"] == 3].set_index("metric")["value"].to_dict()
    fit_seed = cell_module.derive_seed(3, "fit")  # the adapter sees the derived fit seed
    assert got == {"rhat_max": 1.0 + (fit_seed % 100) / 1000, "ess_bulk_min": 420.0, "divergences": 3.0,
                   "converged": 1.0}
    rhat = sorted(1.0 + (cell_module.derive_seed(s, "fit") % 100) / 1000 for s in (0, 3))
    md = write_fidelity(dummy_run, reference="ref")
    text = md.read_text(encoding="utf-8")
    assert "## Reference diagnostics (ref)" in text
    assert f"| big-ood | rhat_max | {rhat[0]:.4g} | {rhat[1]:.4g} | 2 |" in text
    assert "| big-ood | divergences | 3 | 3 | 2 |" in text
    assert "Not converged" not in text  # both seeds report converged
    table = fidelity_table(dummy_run, reference="ref")
    assert set(table["adapter"]) == {"noisy", "det"}
    assert set(table["split"]) == {"test", "ood:far", "ood:near"}
    # The dummy's draws are exactly linear in x: the deterministic one has no spread.
    det = table[(table["adapter"] == "det") & (table["metric"] == "epistemic_sd_ratio_median")]
    assert (det["value"] == 0).all()


def test_mismatched_points_are_skipped_with_a_warning(dummy_run):
    key = store.cell_key("noisy", "big-ood", 0)
    arrays = store.load_arrays(dummy_run, key)
    arrays["fidelity/ood:far/index"] = arrays["fidelity/ood:far/index"][::-1].copy()
    store.write_arrays(dummy_run, key, arrays)
    with pytest.warns(RuntimeWarning, match="different ood:far inputs"):
        table = fidelity_table(dummy_run, reference="ref")
    bad = table[(table["adapter"] == "noisy") & (table["seed"] == 0)]
    assert set(bad["split"]) == {"test", "ood:near"}


def test_runs_without_regression_or_fidelity_write_nothing(tmp_path):
    catalog = Catalog(
        adapters={"noisy": NoisyAdapter},
        datasets={"toy-cls": DatasetSource("toy-cls", "classification", True, load_toy_cls)},
    )
    suite = Suite(name="c", datasets=("toy-cls",), seeds=(0,), n_samples=4, adapters=("noisy",),
                  n_bootstrap=5, steps=("fidelity",))
    run_dir = run_suite(suite, out=tmp_path, catalog=catalog).run_dir
    assert write_paper_tables(run_dir) == []
    assert paper_table(store.load_results(run_dir)).empty
    assert write_fidelity(run_dir, reference="noisy") is None
    assert fidelity_table(run_dir, reference="noisy").empty
    assert not any(p.name.startswith(("paper_table", "fidelity")) for p in run_dir.iterdir())
    key = store.cell_key("noisy", "toy-cls", 0)
    assert not any(k.startswith("fidelity/") for k in store.load_arrays(run_dir, key))


def test_unconverged_references_are_named():
    rows = []
    for seed, (rhat, ess, ok) in enumerate([(1.01, 300.0, 1.0), (1.034, 97.64, 0.0), (1.2, 50.0, 0.0)]):
        for metric, value in (("rhat_max", rhat), ("ess_bulk_min", ess), ("converged", ok)):
            rows.append(dict(adapter="hmc", dataset="toy-gap", seed=seed, split="diagnostics", metric=metric,
                             value=value, status="ok"))
    rows.append(dict(adapter="bbb", dataset="toy-gap", seed=0, split="diagnostics", metric="converged",
                     value=0.0, status="ok"))  # not the reference
    results = pd.DataFrame(rows)
    assert unconverged_references(results, "hmc") == [
        "toy-gap seed 1 (rhat_max 1.034, ess_bulk_min 97.64)",
        "toy-gap seed 2 (rhat_max 1.2, ess_bulk_min 50)",
    ]
    assert unconverged_references(results[results["seed"] == 0], "hmc") == []
    table = pd.DataFrame([("bbb", "toy-gap", s, "test", "w1_mean", 0.1) for s in range(3)], columns=list(COLUMNS))
    text = fidelity_markdown(table, "hmc", results)
    assert "**Not converged by the reference's own criterion** (its draws are still used): toy-gap seed 1" in text
