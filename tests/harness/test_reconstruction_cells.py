"""Reconstruction cells end to end: the real ``vae`` and ``bayesian-ae`` adapters on digits
through the harness, the real metrics and the report; plus the harness's reconstruction
checks and the metrics' dispatch for ``ReconstructionSamples``."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from uqbench import store
from uqbench.harness import Catalog, run_suite
from uqbench.harness.cell import (
    RECONSTRUCTION_MIN_DRAWS,
    InvalidSamplesError,
    check_samples,
    draws_for,
)
from uqbench.interface import ReconstructionSamples
from uqbench.metrics import (
    METRICS,
    evaluate,
    evaluate_ood,
    evaluate_reconstruction,
    evaluate_reconstruction_ood,
    ood_scores,
)
from uqbench.metrics._reconstruction import DEFINITIONS
from uqbench.suites import Suite

pytest.importorskip("torch")

N_TEST, N_HELDOUT, D, K = 361, 354, 64, 2  # digits, seed 0 (see uqbench.datasets.digits)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    suite = Suite(
        name="recon",
        datasets=("digits",),
        seeds=(0,),
        n_samples=10,  # raised to RECONSTRUCTION_MIN_DRAWS for the autoencoders
        adapters=("vae", "bayesian-ae"),
        adapter_params={"vae": {"epochs": 3}, "bayesian-ae": {"epochs": 3}},
        n_bootstrap=20,
    )
    result = run_suite(suite, out=tmp_path_factory.mktemp("runs"), catalog=Catalog())
    return result, store.load_results(result.run_dir)


def _value(df, adapter, split, metric):
    rows = df[(df["adapter"] == adapter) & (df["split"] == split) & (df["metric"] == metric)]
    assert len(rows) == 1, (adapter, split, metric)
    return float(rows["value"].iloc[0])


def test_cells_ok_and_metrics_reported(run):
    result, df = run
    assert result.exit_code == 0, result.failures
    for adapter in ("vae", "bayesian-ae"):
        record = result.cells[f"{adapter}__digits__0"]
        assert record["status"] == "ok" and record["mode"] == "reconstruction"
        assert _value(df, adapter, "test", "elbo_score") < 0
        # Finite only with >= 100 draws: the harness raised the suite's S = 10.
        assert math.isfinite(_value(df, adapter, "test", "log_px_iwae_score"))
        assert 1 / 8 < _value(df, adapter, "test", "latent_knn_accuracy_score") <= 1
        assert 0 <= _value(df, adapter, "ood:heldout-classes", "auroc_neg_elbo") <= 1
        # The labelled OOD set (rotated test images) is also scored as reconstructions.
        assert _value(df, adapter, "ood:shifted", "elbo_score") < 0
    # A deterministic encoder has no epistemic variance: the ratio is NaN by definition.
    assert _value(df, "vae", "test", "epistemic_variance") == 0
    assert math.isnan(_value(df, "vae", "ood:heldout-classes", "epistemic_ratio"))
    assert _value(df, "bayesian-ae", "test", "epistemic_variance") > 0
    assert _value(df, "bayesian-ae", "ood:heldout-classes", "epistemic_ratio") > 0
    assert set(df.loc[df["adapter"] == "vae", "metric"]) >= set(DEFINITIONS)


def test_arrays_hold_scores_and_latent_variables(run):
    result, df = run
    a = store.load_arrays(result.run_dir, "vae__digits__0")
    assert a["latent/mean"].shape == (N_TEST, K)
    np.testing.assert_array_equal(np.unique(a["latent/labels"]), np.arange(8))
    assert a["latent/labels"].shape == (N_TEST,)
    assert a["latent/manifold"].shape == (15, 15, D)
    for key in ("latent/inputs", "latent/recon_mean", "latent/recon_std"):
        assert a[key].shape == (8, D), key
    # One input per in-distribution class.
    np.testing.assert_array_equal(np.sort(a["latent/recon_labels"]), np.arange(8))
    assert np.all((a["latent/recon_mean"] >= 0) & (a["latent/recon_mean"] <= 1))
    assert np.all(a["latent/recon_std"] >= 0) and np.any(a["latent/recon_std"] > 0)
    np.testing.assert_array_equal(a["latent/image_shape"], [8, 8])
    assert a["generate/prior_samples"].shape == (64, D)
    assert a["generate/interpolations"].shape[::2] == (4, D)
    # Per-point scores, in and OOD; the saved -ELBO ranks exactly like the reported AUROC.
    for split, n in (("test", N_TEST), ("ood:heldout-classes", N_HELDOUT)):
        for kind in ("epistemic", "neg_elbo", "latent_variance"):
            assert a[f"scores/{split}/{kind}"].shape == (n,)
    assert np.all(a["scores/test/epistemic"] == 0)
    s_in, s_ood = a["scores/test/neg_elbo"], a["scores/ood:heldout-classes/neg_elbo"]
    auroc = roc_auc_score(np.r_[np.zeros(len(s_in)), np.ones(len(s_ood))], np.r_[s_in, s_ood])
    assert _value(df, "vae", "ood:heldout-classes", "auroc_neg_elbo") == pytest.approx(auroc, abs=1e-12)


def test_report_renders_the_latent_section(run):
    from uqbench.report import write_report

    result, _ = run
    html = write_report(result.run_dir).read_text(encoding="utf-8")
    assert '<section id="latent">' in html
    assert "elbo_score" in html


# -- harness pieces ---------------------------------------------------------------------------


def _samples(rng, s=3, n=5, d=4, k=2, **changes):
    parts = {
        "recon": rng.uniform(0.1, 0.9, (s, n, d)),
        "latent": rng.normal(size=(s, n, k)),
        "latent_mean": rng.normal(size=(s, n, k)),
        "latent_scale": rng.uniform(0.1, 1.0, (s, n, k)),
        "recon_scale": rng.uniform(0.1, 1.0, (s, n, d)),
    }
    return ReconstructionSamples(**{**parts, **changes})


def test_draws_for():
    assert draws_for("reconstruction", 10) == RECONSTRUCTION_MIN_DRAWS == 100
    assert draws_for("reconstruction", 250) == 250
    assert draws_for("regression", 10) == draws_for("classification", 10) == 10


def test_check_samples_validates_the_reconstruction_extras():
    rng = np.random.default_rng(0)
    X = rng.random((5, 4))
    check_samples(_samples(rng), mode="reconstruction", n_samples=3, X=X, y=None, split="test")
    bad_scale = _samples(rng, latent_scale=-np.ones((3, 5, 2)))
    with pytest.raises(InvalidSamplesError, match="test: latent_scale has negative"):
        check_samples(bad_scale, mode="reconstruction", n_samples=3, X=X, y=None, split="test")
    bad_recon_scale = _samples(rng, recon_scale=np.full((3, 5, 4), -0.1))
    with pytest.raises(InvalidSamplesError, match="recon_scale has negative"):
        check_samples(bad_recon_scale, mode="reconstruction", n_samples=3, X=X, y=None, split="o")
    nan_mean = _samples(rng)
    nan_mean.latent_mean[1, 2, 0] = np.nan
    with pytest.raises(InvalidSamplesError, match="latent_mean has 1 non-finite"):
        check_samples(nan_mean, mode="reconstruction", n_samples=3, X=X, y=None, split="test")
    with pytest.raises(InvalidSamplesError, match=r"expected \(4, 5, \.\.\.\)"):
        check_samples(_samples(rng), mode="reconstruction", n_samples=4, X=X, y=None, split="test")
    with pytest.raises(InvalidSamplesError, match="recon has D=4, inputs have 3"):
        check_samples(_samples(rng), mode="reconstruction", n_samples=3, X=X[:, :3], y=None, split="t")


# -- metrics dispatch ---------------------------------------------------------------------------


def _assert_same(got, ref):
    table = {v.name: (v.value, v.ci_low, v.ci_high) for v in got}
    np.testing.assert_equal(table, {v.name: (v.value, v.ci_low, v.ci_high) for v in ref})


def test_evaluate_dispatches_reconstruction_with_the_inputs():
    rng = np.random.default_rng(1)
    s_in, s_ood = _samples(rng, n=12), _samples(rng, n=7)
    X_in, X_ood = rng.random((12, 4)), rng.random((7, 4))
    labels = np.arange(12) % 3
    got = evaluate(s_in, labels, X=X_in, seed=3, n_bootstrap=15)
    _assert_same(got, evaluate_reconstruction(s_in, X_in, labels, seed=3, n_bootstrap=15))
    assert [v.name for v in got] == [n for n in METRICS if n in {v.name for v in got}]
    got = evaluate_ood(s_in, s_ood, X_in=X_in, X_ood=X_ood, seed=4, n_bootstrap=15)
    _assert_same(
        got, evaluate_reconstruction_ood(s_in, s_ood, X_in=X_in, X_ood=X_ood, seed=4, n_bootstrap=15)
    )
    assert all(METRICS[v.name].kind == "ood" and "reconstruction" in METRICS[v.name].tasks for v in got)
    scores = ood_scores(s_in, X=X_in)
    assert set(scores) == {"epistemic", "latent_variance", "neg_elbo"}
    assert "neg_elbo" not in ood_scores(s_in)
    with pytest.raises(ValueError, match="pass X="):
        evaluate(s_in, labels, seed=0)


def test_reconstruction_metrics_are_registered_as_defined():
    for name, (higher_is_better, kind, _) in DEFINITIONS.items():
        spec = METRICS[name]
        assert "reconstruction" in spec.tasks
        assert (spec.higher_is_better, spec.kind) == (higher_is_better, kind)
    # Every name registered for reconstruction is emitted, finite with >= 100 draws.
    rng = np.random.default_rng(2)
    s_in = _samples(rng, s=100, n=12, recon_scale=None)  # Bernoulli: the BCE is defined
    s_ood = _samples(rng, s=100, n=9, recon_scale=None)
    X_in, X_ood = rng.random((12, 4)), rng.random((9, 4))
    values = evaluate(s_in, np.arange(12) % 3, X=X_in, seed=0, n_bootstrap=10)
    values += evaluate_ood(s_in, s_ood, X_in=X_in, X_ood=X_ood, seed=0, n_bootstrap=10)
    assert {v.name for v in values} == {n for n, spec in METRICS.items() if "reconstruction" in spec.tasks}
    for v in values:
        assert np.isfinite([v.value, v.ci_low, v.ci_high]).all(), v
