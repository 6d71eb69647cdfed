"""The summary tables: mean ± std over seeds, "—" for undefined, failures listed."""

from __future__ import annotations

import io
import math
import statistics

import pandas as pd
from rich.console import Console

from uqbench import store
from uqbench.harness import execute, prepare, run_suite
from uqbench.harness.runner import RichProgress
from uqbench.results import summary


def test_format_mean_std_against_statistics():
    vals = [0.91, 0.95, 0.9]
    expected = f"{statistics.mean(vals):.3g} ± {statistics.stdev(vals):.3g}"
    assert summary.format_mean_std(vals) == expected
    assert summary.format_mean_std([0.5]) == "0.5"
    assert summary.format_mean_std([math.nan, 2.0]) == "2"  # seeds where it is defined
    assert summary.format_mean_std([math.nan, math.nan]) == "—"
    assert summary.format_mean_std([]) == "—"


def _cells(*records):
    return {store.cell_key(r["adapter"], r["dataset"], r["seed"]): r for r in records}


def _rec(adapter, seed, status="ok", task="classification", dataset="d"):
    return {"adapter": adapter, "dataset": dataset, "seed": seed, "status": status, "task": task,
            "stage": "fit" if status == "failed" else "", "reason": "boom" if status == "failed" else
            ("not applicable: no" if status == "skipped" else "")}


def test_dataset_table_values_and_columns():
    rows = []
    for seed, (acc, ratio) in enumerate([(0.8, math.nan), (0.9, math.nan)]):
        rows += [store.make_row("det", "d", seed, "test", "accuracy_score", acc),
                 store.make_row("det", "d", seed, "ood:far", "epistemic_ratio", ratio),
                 store.make_row("det", "d", seed, "fit", "fit_wall_seconds", 1.0 + seed)]
    rows.append(store.make_row("bad", "d", 0, "fit", "", math.nan, status="failed", error="boom"))
    df = pd.DataFrame(rows)
    cells = _cells(_rec("det", 0), _rec("det", 1), _rec("bad", 0, "failed"), _rec("vae", 0, "skipped"))
    header, table = summary.dataset_table(df, cells, "d", adapters=["bad", "det"])
    assert header == ["adapter", "seeds ok", "accuracy", "NLL", "ECE", "epi. ratio far", "fit s"]
    assert table[0] == ["bad", "0/1", "—", "—", "—", "—", "—"]
    assert table[1] == ["det", "2/2", summary.format_mean_std([0.8, 0.9]), "—", "—", "—",
                        summary.format_mean_std([1.0, 2.0])]
    text = summary.summary_text(df, cells)
    assert "bad / d / seed 0 in fit: boom" in text
    assert "vae on d: no" in text


def test_rich_progress_renders_on_a_terminal(tmp_path, catalog, tiny_suite):
    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=120)
    run = prepare(tiny_suite.replace(adapters=("noisy", "failing"), seeds=(0,)), out=tmp_path, catalog=catalog)
    result = execute(run, progress=RichProgress(console))
    out = buf.getvalue()
    assert "4/4" in out and "failed" in out and "RuntimeError: boom" in out
    assert result.exit_code == 1


def test_summary_of_a_real_run_has_a_table_per_dataset(tmp_path, catalog, tiny_suite):
    result = run_suite(tiny_suite, out=tmp_path, catalog=catalog)
    text = summary.summary_text(store.load_results(result.run_dir), result.cells,
                                datasets=["toy-reg", "toy-cls"])
    assert text.index("toy-reg (regression)") < text.index("toy-cls (classification)")
    assert "epi. ratio far" in text and "epi. ratio noise" in text and "epi. ratio shifted" in text
    assert "no failed cells" in text


def test_autoencoders_get_their_own_table_after_the_datasets_task():
    rows = [
        store.make_row("det", "d", 0, "test", "accuracy_score", 0.9),
        store.make_row("vae", "d", 0, "test", "elbo_score", -25.0),
        store.make_row("vae", "d", 0, "ood:x", "auroc_neg_elbo", 0.8),
    ]
    results = pd.DataFrame(rows)
    vae = {**_rec("vae", 0), "mode": "reconstruction"}
    cells = _cells(vae, {**_rec("det", 0), "mode": "classification"})
    header, body = summary.dataset_table(results, cells, "d", mode="reconstruction")
    assert [r[0] for r in body] == ["vae"]
    assert header[2:5] == ["ELBO", "log p(x) IWAE", "latent k-NN acc."]
    assert body[0][2] == "-25" and "AUROC -ELBO x" in header and body[0][header.index("AUROC -ELBO x")] == "0.8"
    header, body = summary.dataset_table(results, cells, "d")
    assert [r[0] for r in body] == ["det"] and header[2] == "accuracy"
    text = summary.summary_text(results, cells)
    assert text.index("d (classification)") < text.index("d (reconstruction)")


def test_parity_renderable_shows_intervals_flags_and_ratios():
    from uqbench.results.parity import parity_table

    rows = []
    for seed, (a, b) in enumerate([(0.90, 0.80), (0.91, 0.80), (0.92, 0.81)]):
        rows += [store.make_row("bbb", "d", seed, "test", "accuracy_score", a),
                 store.make_row("tfp-bbb", "d", seed, "test", "accuracy_score", b),
                 store.make_row("bbb", "d", seed, "fit", "fit_wall_seconds", 1.0),
                 store.make_row("tfp-bbb", "d", seed, "fit", "fit_wall_seconds", 4.0),
                 store.make_row("bbb", "d", seed, "test", "brier_loss", 0.1),  # not a key metric
                 store.make_row("tfp-bbb", "d", seed, "test", "brier_loss", 0.1)]
    table = parity_table(pd.DataFrame(rows))
    buf = io.StringIO()
    Console(file=buf, width=200).print(summary.parity_renderable(table))
    text = buf.getvalue()
    assert "accuracy_score" in text and "*" in text  # +0.107 with a tight interval excludes 0
    assert "ratio 0.25" in text
    assert "brier_loss" not in text
