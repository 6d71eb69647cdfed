"""The report's papers' and posterior-fidelity sections hold the numbers of the run's files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from uqbench.report import write_report
from uqbench.results.formatting import format_mean_se


def _mean_se(values: np.ndarray) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    se = values.std(ddof=1) / math.sqrt(values.size) if values.size > 1 else math.nan
    return float(values.mean()), float(se)


def test_papers_section_matches_results(run_dir: Path, full_page) -> None:
    blob = full_page[2].data_blob()
    papers = blob["papers"]
    df = pd.read_csv(run_dir / "results.csv")
    ok = df[(df.status == "ok") & (df.dataset == "toy-gap")]
    labels = [b["label"] for b in papers["blocks"]]
    assert labels == ["RMSE", "test LL", "calibration error", "epistemic ratio (OOD / test)",
                      "AUROC, epistemic score (OOD vs test)"]
    blocks = {b["label"]: b for b in papers["blocks"]}
    for label, metric, sign, split in (("RMSE", "rmse_error", 1, "test"), ("test LL", "nll_loss", -1, "test"),
                                       ("epistemic ratio (OOD / test)", "epistemic_ratio", 1, "ood:outside")):
        block = blocks[label]
        (row,) = [r for r in block["rows"] if r["dataset"] == "toy-gap" and r["split"] == split]
        means = {}
        for adapter, cell in zip(block["columns"], row["cells"], strict=True):
            v = sign * ok[(ok.adapter == adapter) & (ok.metric == metric) & (ok.split == split)]["value"].to_numpy()
            if not np.isfinite(v).any():  # the deterministic net has no epistemic ratio
                assert cell is None or cell["mean"] is None
                continue
            mean, se = _mean_se(v)
            assert cell["mean"] == pytest.approx(mean)
            assert cell["text"] == format_mean_se(mean, se)
            means[adapter] = mean
        # higher is better for the test LL and the epistemic ratio, lower for RMSE
        best = (min if label == "RMSE" else max)(means.values())
        marked = {a for a, c in zip(block["columns"], row["cells"], strict=True) if c and c["best"]}
        assert marked == {a for a, m in means.items() if m == best}
    assert blocks["test LL"]["higher_is_better"] is True and blocks["RMSE"]["higher_is_better"] is False
    # classification datasets are not in the papers' regression tables
    assert {r["dataset"] for b in papers["blocks"] for r in b["rows"]} == {"toy-gap"}


def test_fidelity_section_matches_csv_and_lists_diagnostics(make_run_dir, parse_page) -> None:
    run = make_run_dir(datasets=("toy-gap",), latent=False, speed=False, probe=False)
    results = pd.read_csv(run / "results.csv")
    diag = [dict(schema_version=1, adapter="hmc", dataset="toy-gap", seed=s, split="diagnostics",
                 metric=m, value=v, ci_low=math.nan, ci_high=math.nan, status="ok", error="")
            for s, (rhat, ess, ok) in enumerate([(1.01, 300.0, 1.0), (1.03, 97.5, 0.0)])
            for m, v in (("rhat_max", rhat), ("ess_bulk_min", ess), ("converged", ok))]
    pd.concat([results, pd.DataFrame(diag)]).to_csv(run / "results.csv", index=False)
    for s in (0, 1):  # rows count only with their cell's record
        (run / "cells" / f"hmc__toy-gap__{s}.json").write_text(json.dumps(
            {"schema_version": 1, "adapter": "hmc", "dataset": "toy-gap", "seed": s, "task": "regression",
             "status": "ok"}))
    html = write_report(run).read_text(encoding="utf-8")
    page = parse_page(html)
    assert "fidelity" in page.sections
    fid = page.data_blob()["fidelity"]
    assert fid["reference"] == "hmc"
    table = pd.read_csv(run / "fidelity.csv")
    for block in fid["blocks"]:
        metric = block["metric"]
        target = 0.0 if metric.startswith("w1") else 1.0
        for row in block["rows"]:
            dist = {}
            for adapter, cell in zip(block["columns"], row["cells"], strict=True):
                v = table[(table.adapter == adapter) & (table.metric == metric) & (table.split == row["split"])]
                mean, se = _mean_se(v["value"].to_numpy())
                assert cell["mean"] == pytest.approx(mean) and cell["n"] == len(v)
                assert cell["text"] == format_mean_se(mean, se)
                dist[adapter] = abs(mean - target) if target == 0 else abs(math.log(mean / target))
            marked = [a for a, c in zip(block["columns"], row["cells"], strict=True) if c["best"]]
            assert marked == [min(dist, key=dist.get)]
    assert [b["metric"] for b in fid["blocks"]][:2] == ["w1_mean", "w1_scaled_mean"]
    assert {r["split"] for r in fid["blocks"][0]["rows"]} == {"test", "ood:gap", "ood:outside"}
    assert fid["diagnostics"] == [
        {"dataset": "toy-gap", "diagnostic": "rhat_max", "min": 1.01, "max": 1.03, "seeds": 2},
        {"dataset": "toy-gap", "diagnostic": "ess_bulk_min", "min": 97.5, "max": 300.0, "seeds": 2},
        {"dataset": "toy-gap", "diagnostic": "converged", "min": 0.0, "max": 1.0, "seeds": 2},
    ]
    assert fid["unconverged"] == ["toy-gap seed 1 (rhat_max 1.03, ess_bulk_min 97.5)"]
    assert "(its draws are still used): toy-gap seed 1 (rhat_max 1.03, ess_bulk_min 97.5)." in html
    assert "Reference diagnostics (hmc)" in html


@pytest.mark.parametrize("content", ["", "not,a,fidelity\n1,2,3\n", "\x00\x01garbage"])
def test_unreadable_fidelity_csv_leaves_the_section_out(make_run_dir, parse_page, content) -> None:
    run = make_run_dir(datasets=("toy-gap",), latent=False)
    (run / "fidelity.csv").write_text(content)
    page = parse_page(write_report(run).read_text(encoding="utf-8"))
    assert "fidelity" not in page.sections and "papers" in page.sections
