"""The summary tables: mean ± std over seeds, "—" for undefined, failures listed."""

from __future__ import annotations

import io
import math
import statistics

import pandas as pd
from rich.console import Console

from uqbench import store, summary
from uqbench.harness import execute, prepare, run_suite
from uqbench.harness.runner import RichProgress


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
