"""The page has each section and figure exactly when its data exists, and nothing from the network."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from uqbench.report import build_report_data, write_report
from uqbench.report.data import direction
from uqbench.report.render import embed_json

ALL_SECTIONS = ("meta", "leaderboard", "papers", "fidelity", "calibration", "toy", "ood", "speed", "gradvar", "latent",
                "failures", "definitions")


def _render(run_dir: Path, parse_page):
    path = write_report(run_dir)
    assert path == run_dir / "index.html"
    html = path.read_text(encoding="utf-8")
    return html, parse_page(html)


def _no_network_refs(html: str, page) -> None:
    for tag, attrs in page.elements:
        for key in ("src", "href", "xlink:href", "action", "poster", "data"):
            value = (attrs.get(key) or "").strip().lower()
            assert not value.startswith(("http:", "https:", "//")), f"<{tag} {key}={value!r}>"
    assert not re.search(r"url\(\s*['\"]?(https?:)?//", html), "CSS url() to the network"
    assert "@import" not in html
    assert not re.search(r"""\b(src|href)\s*=\s*["']?\s*https?://""", html, re.I)


def test_full_run_has_every_section_and_figure(full_page) -> None:
    path, html, page = full_page
    assert path.name == "index.html"
    assert set(page.sections) == set(ALL_SECTIONS)
    s = page.sections
    # 3 adapters on toy-gap; digits: 3 adapters (bayes-linear from its one good seed).
    assert s["calibration"]["svg"] == 6
    assert s["toy"]["svg"] == 3
    # per dataset: 2 OOD sets x (1 ROC + 3 histograms); one ratio table per dataset
    assert s["ood"]["svg"] == 16
    assert s["ood"]["table"] == 2
    assert s["speed"]["svg"] == 2  # trade-off charts for toy-gap and digits
    assert s["speed"]["table"] == 3
    assert s["gradvar"]["svg"] == 2  # first and last layer on digits
    assert s["latent"]["svg"] == 3  # scatter, manifold, reconstructions
    assert s["leaderboard"]["table"] == 3
    # the table of contents links every section
    hrefs = {a.get("href") for tag, a in page.elements if tag == "a"}
    assert {f"#{k}" for k in ALL_SECTIONS} <= hrefs
    _no_network_refs(html, page)
    assert len(page.ids) == len(set(page.ids)), "duplicate element ids"


def test_sections_absent_without_their_data(make_run_dir, parse_page) -> None:
    # digits only: no regression results, so no papers' table and no fidelity
    run = make_run_dir(datasets=("digits",), arrays=False, probe=False, latent=False, ood=False, speed=False)
    html, page = _render(run, parse_page)
    assert set(page.sections) == {"meta", "leaderboard", "definitions"}
    assert "<svg" not in html
    for key in set(ALL_SECTIONS) - set(page.sections):
        assert f'href="#{key}"' not in html


def test_arrays_without_probe_or_latent(make_run_dir, parse_page) -> None:
    run = make_run_dir(probe=False, latent=False, speed=False, fidelity=False)
    _, page = _render(run, parse_page)
    assert set(page.sections) == {"meta", "leaderboard", "papers", "calibration", "toy", "ood", "definitions"}


def test_empty_run_dir_renders_metadata_only(tmp_path: Path, parse_page) -> None:
    (tmp_path / "run.json").write_text(json.dumps({"schema_version": 1, "suite": {"name": "quick"}}))
    _, page = _render(tmp_path, parse_page)
    assert set(page.sections) == {"meta"}
    assert page.data_blob()["leaderboard"] == []


def test_embedded_json_parses_and_matches_the_table(run_dir: Path, full_page) -> None:
    page = full_page[2]
    blob = page.data_blob()
    assert [a["name"] for a in blob["adapters"]] == ["deterministic", "mc-dropout", "bayes-linear"]
    lb = {t["dataset"]: t for t in blob["leaderboard"]}
    assert set(lb) == {"toy-gap", "digits", "vae-digits"}
    digits = lb["digits"]
    cols = [c["metric"] for c in digits["columns"]]
    assert cols[:4] == ["accuracy_score", "nll_loss", "brier_loss", "ece_error"]
    # independent reference: mean over seeds straight from results.csv
    import pandas as pd

    df = pd.read_csv(run_dir / "results.csv")
    ok = df[(df.status == "ok") & (df.dataset == "digits") & (df.split == "test")]
    for row in digits["rows"]:
        for col, cell in zip(cols, row["cells"], strict=True):
            vals = ok[(ok.adapter == row["adapter"]) & (ok.metric == col)]["value"].to_numpy()
            assert cell["mean"] == pytest.approx(vals.mean())
            assert cell["n"] == len(vals)
            if len(vals) >= 2:
                assert cell["sd"] == pytest.approx(vals.std(ddof=1))
    # the best accuracy is the max, the best nll the min
    acc = [r["cells"][0]["mean"] for r in digits["rows"]]
    assert [r["cells"][0]["best"] for r in digits["rows"]] == [a == max(acc) for a in acc]
    nll = [r["cells"][1]["mean"] for r in digits["rows"]]
    assert [r["cells"][1]["best"] for r in digits["rows"]] == [v == min(nll) for v in nll]
    assert {r["adapter"]: r["failed"] for r in digits["rows"]} == {
        "deterministic": "", "mc-dropout": "", "bayes-linear": "some"}
    # a failed cell shows up with its reason
    assert blob["failures"] == [{"adapter": "bayes-linear", "dataset": "digits", "seed": "1", "stage": "fit",
                                 "error": "RuntimeError: loss became NaN at epoch 12"}]
    # every metric in a table has a definition entry
    names = {d["name"] for d in blob["definitions"]}
    assert set(cols) <= names and "epistemic_ratio" in names and "fit_wall_seconds" in names


def test_adapter_failing_every_seed_is_listed_not_plotted(make_run_dir, parse_page) -> None:
    err = "ImportError: no module named 'tfp'"
    run = make_run_dir(datasets=("toy-gap",), latent=False,
                       failures={("mc-dropout", "toy-gap", 0): err, ("mc-dropout", "toy-gap", 1): err})
    html, page = _render(run, parse_page)
    blob = page.data_blob()
    (lb,) = blob["leaderboard"]
    row = next(r for r in lb["rows"] if r["adapter"] == "mc-dropout")
    assert row["failed"] == "all" and all(c["mean"] is None for c in row["cells"])
    assert page.sections["calibration"]["svg"] == 2 and page.sections["toy"]["svg"] == 2
    assert [(f["adapter"], f["seed"], f["error"]) for f in blob["failures"]] == [
        ("mc-dropout", "0", err), ("mc-dropout", "1", err)]
    assert html.count(">failed</a>") == 1


def test_single_seed_uses_bootstrap_interval(make_run_dir, parse_page) -> None:
    run = make_run_dir(seeds=(0,), latent=False)
    html, page = _render(run, parse_page)
    lb = page.data_blob()["leaderboard"]
    assert {t["interval"] for t in lb} == {"bootstrap"}
    assert "bootstrap interval" in html
    cell = lb[0]["rows"][0]["cells"][0]
    assert cell["lo"] <= cell["mean"] <= cell["hi"]


def test_leaderboard_is_sortable_with_numeric_keys(full_page) -> None:
    page = full_page[2]
    tables = [a for tag, a in page.elements if tag == "table" and "leaderboard" in (a.get("class") or "")]
    assert tables and all("sortable" in (a.get("class") or "") for a in tables)
    values = [a["data-v"] for tag, a in page.elements if tag == "td" and a.get("data-v") not in (None, "")]
    numeric = [v for v in values if re.fullmatch(r"-?[0-9.eE+-]+", v)]
    assert numeric, "cells carry their numeric value for sorting"
    inline = [text for attrs, text in page.scripts if attrs.get("type") is None]
    assert len(inline) == 1 and "sortable" in inline[0]
    assert all(attrs.get("src") is None for attrs, _ in page.scripts)


def test_roc_matches_sklearn(run_dir: Path) -> None:
    from sklearn.metrics import roc_auc_score

    data = build_report_data(run_dir)
    toy = next(o for o in data["ood"] if o["dataset"] == "toy-gap")
    gap = next(s for s in toy["sets"] if s["name"] == "gap")
    roc = {r["adapter"]: r for r in gap["roc"]}
    aucs = []
    for seed in (0, 1):
        with np.load(run_dir / "arrays" / f"mc-dropout__toy-gap__{seed}.npz") as z:
            s_in, s_ood = z["scores/test/epistemic"], z["scores/ood:gap/epistemic"]
        y = np.r_[np.zeros(len(s_in)), np.ones(len(s_ood))]
        aucs.append(roc_auc_score(y, np.r_[s_in, s_ood]))
    assert roc["mc-dropout"]["auroc"] == pytest.approx(np.mean(aucs))
    assert roc["mc-dropout"]["n_seeds"] == 2
    # the deterministic net's constant score ranks at chance and gets no histogram bins
    assert roc["deterministic"]["auroc"] == pytest.approx(0.5)
    hist = {h["adapter"]: h for h in gap["hist"]}
    assert hist["deterministic"]["constant"] is True
    assert sum(hist["mc-dropout"]["in_density"]) > 0


def test_direction_from_registry_then_suffix() -> None:
    assert direction("accuracy_score") is True
    assert direction("ece_error") is False
    assert direction("nll_loss") is False
    assert direction("fit_wall_seconds") is False
    assert direction("grad_var_first_b32") is False
    assert direction("something_else") is None

    class Spec:
        higher_is_better = True

    assert direction("rmse_error", {"rmse_error": Spec()}) is True


def test_embed_json_cannot_close_the_script() -> None:
    nasty = {"a": "</script><script>alert(1)</script>", "b": "<!-- x", "c": "&amp;\u2028", "n": None}
    text = str(embed_json(nasty))
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    assert json.loads(text) == nasty


def test_embedded_images_hold_the_pixels() -> None:
    """The manifold's tiled image is inlined as a PNG at its own resolution, ink dark on white."""
    pil = pytest.importorskip("PIL.Image", reason="Pillow is the independent PNG decoder here")
    import base64
    import io

    from uqbench.report.figures import manifold_figure

    rows, cols, h, w = 2, 3, 4, 5
    pixels = (np.random.default_rng(0).random((rows, cols, h, w)) > 0.5).astype(np.float64)
    svg = str(manifold_figure({"rows": rows, "cols": cols, "shape": [h, w], "pixels": pixels.ravel().tolist()}))
    uris = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", svg)
    assert len(uris) == 1
    decoded = np.asarray(pil.open(io.BytesIO(base64.b64decode(uris[0]))).convert("L"))
    tiled = pixels.transpose(0, 2, 1, 3).reshape(rows * h, cols * w)
    np.testing.assert_array_equal(decoded, np.where(tiled > 0.5, 0, 255))


def test_not_a_run_dir_is_a_user_error(tmp_path: Path) -> None:
    from uqbench.errors import UserError

    with pytest.raises(UserError, match="does not exist"):
        write_report(tmp_path / "nope")
    with pytest.raises(UserError, match=r"has no run\.json"):
        write_report(tmp_path)
    assert not (tmp_path / "index.html").exists()


# ---------------------------------------------------------------------------------------
# A real tiny run through the CLI


def _cli() -> str | None:
    exe = Path(sys.executable).with_name("uqbench")
    if not exe.exists():
        return None
    try:
        done = subprocess.run([str(exe), "run", "--help"], capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.SubprocessError):
        return None
    return str(exe) if done.returncode == 0 and "--adapters" in done.stdout else None


@pytest.mark.slow
def test_real_tiny_run(tmp_path: Path, parse_page) -> None:
    exe = _cli()
    if exe is None:
        pytest.skip("the `uqbench run` CLI is not available (harness not installed yet)")
    out = tmp_path / "out"
    done = subprocess.run(
        [exe, "run", "--adapters", "deterministic,mc-dropout", "--datasets", "toy-gap", "--seeds", "1",
         "--samples", "10", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode in (0, 1), done.stderr  # 1: some cell failed; the report still renders
    (run,) = [p for p in out.iterdir() if (p / "run.json").is_file()]
    html, page = _render(run, parse_page)
    assert {"meta", "leaderboard", "calibration", "toy", "ood", "speed", "definitions"} <= set(page.sections)
    assert page.sections["toy"]["svg"] == 2
    assert page.sections["calibration"]["svg"] == 2
    assert page.sections["ood"]["svg"] == 2 * 3  # gap, outside: ROC + one histogram per adapter
    blob = page.data_blob()
    assert [a["name"] for a in blob["adapters"]] == ["deterministic", "mc-dropout"]
    # every definition on the page comes from the registry or the harness/report
    assert all(d["source"] != "—" for d in blob["definitions"])
    _no_network_refs(html, page)
    shutil.rmtree(out, ignore_errors=True)
