"""A synthetic but realistic run directory, laid out as the contract says.

Values are drawn from plausible ranges with a fixed seed; the arrays have the shapes the
harness saves (see the key table in ``uqbench.report.data``).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

CLS_METRICS = {"accuracy_score": (0.85, 0.97), "nll_loss": (0.1, 0.5), "brier_loss": (0.05, 0.2),
               "ece_error": (0.01, 0.08), "mce_error": (0.05, 0.3), "mutual_information": (0.0, 0.1)}
REG_METRICS = {"rmse_error": (0.2, 0.4), "nll_loss": (0.3, 1.0), "crps_loss": (0.1, 0.3),
               "calibration_error": (0.01, 0.1), "picp_95": (0.85, 0.97), "interval_width_95": (0.8, 1.6),
               "coverage_0.5": (0.4, 0.6)}
OOD_METRICS = {"epistemic_ratio": (1.0, 30.0), "auroc_epistemic": (0.5, 0.99)}
FIDELITY_METRICS = {"w1_mean": (0.01, 0.3), "w1_scaled_mean": (0.05, 1.0), "epistemic_sd_ratio_median": (0.1, 2.0),
                    "epistemic_sd_ratio_mean": (0.1, 2.0), "predictive_sd_ratio_median": (0.5, 1.5)}
SPEED = {"fit_wall_seconds": (0.2, 3.0), "fit_cpu_seconds": (0.3, 5.0), "fit_peak_rss_mb": (5, 80),
         "n_parameters": (1000, 20000), "sample_seconds_per_draw": (1e-4, 1e-2), "samples_per_second": (1e4, 1e6)}


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name)


def make_run(
    root: Path,
    *,
    adapters: Sequence[str] = ("deterministic", "mc-dropout", "bayes-linear"),
    datasets: Sequence[str] = ("toy-gap", "digits"),
    seeds: Sequence[int] = (0, 1),
    arrays: bool = True,
    probe: bool = True,
    latent: bool = True,
    ood: bool = True,
    speed: bool = True,
    failures: dict[tuple[str, str, int], str] | None = None,
    fidelity: bool = True,
    run_extra: dict[str, Any] | None = None,
) -> Path:
    """Write a run directory under ``root`` and return it.

    ``failures`` maps (adapter, dataset, seed) -> error message: that cell gets one failed
    row and no measurements. ``latent`` adds a ``vae-digits`` reconstruction dataset for
    the last adapter; ``ood``/``speed``/``probe``/``arrays`` switch those rows/files off;
    ``fidelity`` writes a ``fidelity.csv`` (every ok regression cell against an ``hmc``
    reference that is not in the run).
    """
    rng = np.random.default_rng(123)
    failures = failures or {}
    run_dir = root / "run-20250101-000000-quick"
    (run_dir / "cells").mkdir(parents=True)
    (run_dir / "arrays").mkdir()
    rows: list[dict[str, Any]] = []

    def add(a: str, d: str, s: int, split: str, metric: str, value: float, ci: bool = True) -> None:
        lo, hi = (value * 0.95, value * 1.05) if ci and math.isfinite(value) else (math.nan, math.nan)
        rows.append(dict(schema_version=1, adapter=a, dataset=d, seed=s, split=split, metric=metric,
                         value=value, ci_low=lo, ci_high=hi, status="ok", error=""))

    all_datasets = [*datasets, *(["vae-digits"] if latent else [])]
    for d in all_datasets:
        task = "regression" if d.startswith("toy") else ("reconstruction" if d.startswith("vae") else "classification")
        ood_names = {"regression": ["gap", "outside"], "classification": ["heldout-classes", "shifted"],
                     "reconstruction": []}[task] if ood else []
        cell_adapters = adapters if task != "reconstruction" else adapters[-1:]
        for a in cell_adapters:
            deterministic = a == "deterministic"
            for s in seeds:
                cell = {"schema_version": 1, "adapter": a, "dataset": d, "seed": s}
                if (a, d, s) in failures:
                    rows.append(dict(schema_version=1, adapter=a, dataset=d, seed=s, split="fit", metric="",
                                     value=math.nan, ci_low=math.nan, ci_high=math.nan, status="failed",
                                     error=failures[(a, d, s)]))
                    (run_dir / "cells" / f"{_safe(a)}__{_safe(d)}__{s}.json").write_text(json.dumps(
                        {**cell, "task": task, "status": "failed", "stage": "fit", "reason": failures[(a, d, s)]}))
                    continue
                metrics = {"regression": REG_METRICS, "classification": CLS_METRICS,
                           "reconstruction": {"elbo_score": (-120, -90), "recon_error": (0.05, 0.1)}}[task]
                for m, (lo, hi) in metrics.items():
                    add(a, d, s, "test", m, float(rng.uniform(lo, hi)))
                for name in ood_names:
                    for m, (lo, hi) in OOD_METRICS.items():
                        v = math.nan if (deterministic and m == "epistemic_ratio") else float(rng.uniform(lo, hi))
                        add(a, d, s, f"ood:{name}", m, v)
                for m, (lo, hi) in SPEED.items() if speed else ():
                    v = float(rng.uniform(lo, hi))
                    add(a, d, s, "fit" if m.startswith("fit") or m == "n_parameters" else "sample",
                        m, round(v) if m == "n_parameters" else v, ci=False)
                if probe and task == "classification":
                    for layer in ("first", "last"):
                        for b in (16, 32, 64, 128):
                            add(a, d, s, "probe", f"grad_var_{layer}_b{b}",
                                float(rng.uniform(0.5, 2) / b + (0 if deterministic else 0.01)), ci=False)
                if arrays:
                    np.savez_compressed(run_dir / "arrays" / f"{_safe(a)}__{_safe(d)}__{s}.npz",
                                        **_cell_arrays(rng, task, ood_names, deterministic))
                (run_dir / "cells" / f"{_safe(a)}__{_safe(d)}__{s}.json").write_text(json.dumps({**cell, "task": task, "status": "ok"}))

    pd.DataFrame(rows).to_csv(run_dir / "results.csv", index=False)
    fid_rows = [
        dict(adapter=a, dataset=d, seed=s, split=split, metric=m, value=float(rng.uniform(lo, hi)))
        for d in datasets if d.startswith("toy")
        for a in adapters
        for s in seeds if (a, d, s) not in failures
        for split in ("test", *(["ood:gap", "ood:outside"] if ood else []))
        for m, (lo, hi) in FIDELITY_METRICS.items()
    ]
    if fidelity and fid_rows:
        pd.DataFrame(fid_rows).to_csv(run_dir / "fidelity.csv", index=False)
    run = {
        "schema_version": 1,
        "uqbench_version": "0.1.0",
        "suite": {"name": "quick", "datasets": list(datasets), "seeds": list(seeds), "n_samples": 50,
                  "adapters": list(adapters), "adapter_params": {}, "n_bootstrap": 100, "steps": [],
                  "description": "offline smoke benchmark"},
        "data_dir": None,
        "n_cells": len(rows),
        "steps": {"enabled": [], "not_implemented": []},
        "environment": {"packages": {"numpy": "2.1.0", "torch": "2.13.0", "uqbench": "0.1.0", "pandas": None},
                        "git": {"commit": "53cd9ca0b1", "dirty": True}, "python": "3.11.9",
                        "platform": "Linux-6.1-x86_64", "cpu_model": "Intel Xeon", "cpu_count": 2,
                        "cpu_affinity": 2, "torch_threads": {"intra_op": 2, "inter_op": 2},
                        "thread_env": {}, "command_line": ["uqbench", "run"]},
        "status": "complete",
        "started": "2025-01-01T00:00:00+00:00",
        "ended": "2025-01-01T00:02:13+00:00",
        "duration_seconds": 133.0,
        "sessions": [{"id": 1, "started": "2025-01-01T00:00:00+00:00", "status": "complete"}],
        **(run_extra or {}),
    }
    (run_dir / "run.json").write_text(json.dumps(run, indent=2))
    return run_dir


def _cell_arrays(rng: np.random.Generator, task: str, ood_names: list[str], deterministic: bool) -> dict[str, np.ndarray]:
    """Arrays with the keys and shapes the harness saves (``uqbench.harness.cell.arrays_step``)."""
    out: dict[str, np.ndarray] = {}
    n = 200
    epi_scale = 0.0 if deterministic else 1.0
    if task == "classification":
        edges = np.linspace(0, 1, 16)
        conf = (edges[:-1] + edges[1:]) / 2
        acc = np.clip(conf - rng.uniform(0, 0.1, 15), 0, 1)
        counts = rng.integers(1, 60, 15).astype(np.float64)
        acc[:4], conf = np.nan, np.where(np.arange(15) < 4, np.nan, conf)  # empty low-confidence bins
        counts[:4] = 0
        out.update({"curves/reliability_bin_edges": edges, "curves/reliability_bin_centers": (edges[:-1] + edges[1:]) / 2,
                    "curves/reliability_confidence": conf, "curves/reliability_accuracy": acc,
                    "curves/reliability_counts": counts})
    elif task == "regression":
        levels = np.linspace(0.05, 0.95, 19)
        out["curves/coverage_expected"] = levels
        out["curves/coverage_observed"] = np.clip(levels + rng.normal(0, 0.04, levels.size), 0, 1)
        x = np.linspace(-3.2, 3.2, 300)
        mean = np.sin(2 * x) + x / 2
        epi = epi_scale * 0.05 * (1 + np.minimum(x**2, 9))
        epi[np.abs(x) > 0.6] *= 0.3
        ale = (0.1 + 0.05 * np.abs(x)) ** 2
        out["grid/X"] = x[:, None]
        out["grid/mean"] = mean[:, None]
        out["grid/aleatoric_variance"] = ale[:, None]
        out["grid/epistemic_variance"] = epi[:, None]
        out["grid/total_variance"] = (ale + epi)[:, None]
        out["grid/draws_loc"] = (mean + rng.normal(0, 1, (10, 1)) * np.sqrt(epi))[:, :, None]
        tx = np.concatenate([rng.uniform(-2.2, -0.7, 60), rng.uniform(0.7, 2.2, 60)])
        out["train/X"] = tx[:, None]
        out["train/y"] = (np.sin(2 * tx) + tx / 2 + rng.normal(0, 0.15, tx.size))[:, None]
        out["regions/names"] = np.array(["cluster_left", "gap", "cluster_right", "outside_left", "outside_right"])
        out["regions/bounds"] = np.array([[-2.2, -0.7], [-0.7, 0.7], [0.7, 2.2], [-3.2, -2.5], [2.5, 3.2]])
    if task != "reconstruction":
        out["scores/test/epistemic"] = epi_scale * rng.lognormal(-4, 0.5, n)
        out["scores/test/total"] = rng.lognormal(-1, 0.5, n)
        for name in ood_names:
            out[f"scores/ood:{name}/epistemic"] = epi_scale * rng.lognormal(-2.5, 0.7, 100)
            out[f"scores/ood:{name}/total"] = rng.lognormal(-0.5, 0.5, 100)
    else:
        labels = rng.integers(0, 8, 300)
        centres = rng.normal(0, 2, (8, 2))
        out["scores/test/epistemic"] = rng.lognormal(-3, 0.5, 300)
        out["latent/mean"] = centres[labels] + rng.normal(0, 0.5, (300, 2))
        out["latent/labels"] = labels
        yy, xx = np.mgrid[0:8, 0:8]
        out["latent/manifold"] = np.stack([np.exp(-((xx - 1 - c) ** 2 + (yy - 1 - r) ** 2) / 4.0).ravel()
                                           for r in range(6) for c in range(6)]).reshape(6, 6, 64)
        inputs = (rng.uniform(0, 1, (6, 64)) > 0.6).astype(np.float64)
        out["latent/inputs"] = inputs
        out["latent/recon_mean"] = np.clip(0.8 * inputs + 0.1, 0, 1)
        out["latent/recon_std"] = rng.uniform(0, 0.3, (6, 64))
        out["latent/recon_labels"] = labels[:6]
        out["latent/image_shape"] = np.array([8, 8])
    return out


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The full synthetic run (every section has data), built once per session; treat as read-only."""
    return make_run(
        tmp_path_factory.mktemp("full-run"),
        failures={("bayes-linear", "digits", 1): "RuntimeError: loss became NaN at epoch 12"},
    )


@pytest.fixture(scope="session")
def full_page(run_dir: Path) -> tuple[Path, str, Page]:
    """``run_dir`` rendered once: (index.html path, its text, the parsed page)."""
    from uqbench.report import write_report

    path = write_report(run_dir)
    html = path.read_text(encoding="utf-8")
    return path, html, Page(html)


class Page(HTMLParser):
    """What the tests look at in a rendered page: elements, scripts, sections, text."""

    def __init__(self, html: str) -> None:
        super().__init__(convert_charrefs=True)
        self.elements: list[tuple[str, dict[str, str | None]]] = []
        self.scripts: list[tuple[dict[str, str | None], str]] = []
        self.sections: dict[str, dict[str, int]] = {}
        self.ids: list[str] = []
        self.text: list[str] = []
        self._section: str | None = None
        self._script: dict[str, str | None] | None = None
        self._script_text: list[str] = []
        self.feed(html)
        self.close()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = dict(attrs)
        self.elements.append((tag, a))
        if a.get("id"):
            self.ids.append(str(a["id"]))
        if tag == "section":
            self._section = a.get("id")
            self.sections[str(self._section)] = {"svg": 0, "table": 0}
        elif tag == "svg" and self._section and "fig" in (a.get("class") or ""):
            self.sections[self._section]["svg"] += 1
        elif tag == "table" and self._section:
            self.sections[self._section]["table"] += 1
        elif tag == "script":
            self._script, self._script_text = a, []

    def handle_endtag(self, tag: str) -> None:
        if tag == "section":
            self._section = None
        elif tag == "script" and self._script is not None:
            self.scripts.append((self._script, "".join(self._script_text)))
            self._script = None

    def handle_data(self, data: str) -> None:
        if self._script is not None:
            self._script_text.append(data)
        else:
            self.text.append(data)

    def data_blob(self) -> dict[str, Any]:
        blobs = [text for attrs, text in self.scripts if attrs.get("type") == "application/json"]
        assert len(blobs) == 1, f"expected one JSON data block, found {len(blobs)}"
        return json.loads(blobs[0])


@pytest.fixture
def make_run_dir(tmp_path: Path) -> Any:
    """``make_run`` bound to a fresh temporary directory (call with its keyword options)."""
    counter = iter(range(1000))

    def make(**kwargs: Any) -> Path:
        root = tmp_path / f"runs{next(counter)}"
        root.mkdir()
        return make_run(root, **kwargs)

    return make


@pytest.fixture
def parse_page() -> type[Page]:
    return Page
