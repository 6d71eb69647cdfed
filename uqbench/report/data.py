"""The report's data: plain, JSON-safe dicts built from a run directory.

Inputs (see the run-directory layout in the README):

- ``run.json``: any JSON object; the fields shown are found by name wherever they sit
  (``suite``, ``adapters``, ``datasets``, ``seeds``, ``duration_seconds`` or
  ``started``/``finished``, ``packages``/``versions``, ``git_commit``/``commit``,
  ``cpu``, ``threads``…); everything else is listed under "all of run.json".
- ``results.csv`` through :func:`uqbench.store.load_results` (read directly when the store
  is not importable): the tidy table of the contract. Rows read:

  - split ``test``: leaderboard metrics (mean over seeds), calibration metric for the
    trade-off chart (``ece_error`` or ``calibration_error``);
  - split ``ood:<name>``: ``epistemic_ratio``, ``auroc_epistemic`` (and any other OOD metric);
  - split ``fit``/``sample``: ``fit_wall_seconds``, ``fit_cpu_seconds``, ``fit_peak_rss_mb``,
    ``n_parameters``, ``sample_seconds_per_draw``, ``samples_per_second``;
  - split ``probe``: ``grad_var_<layer>_b<batch size>`` (e.g. ``grad_var_first_b32``);
  - ``status == "failed"`` rows: their ``error`` (also ``cells/*.json`` with
    ``"status": "failed"`` and ``"error"``).

- ``arrays/<adapter>__<dataset>__<seed>.npz`` (names matched after replacing characters
  outside ``[A-Za-z0-9._-]`` with ``_``). Every key is optional; a figure is drawn when its
  keys are there. Keys read:

  ==================================  ============  ============================================
  key                                 shape         meaning
  ==================================  ============  ============================================
  ``curves/reliability_confidence``   ``[B]``       mean top-label confidence per bin (test; NaN if empty)
  ``curves/reliability_accuracy``     ``[B]``       accuracy per bin (NaN if empty)
  ``curves/reliability_counts``       ``[B]``       points per bin (weights when pooling seeds)
  ``curves/reliability_bin_edges``    ``[B+1]``     bin edges (bars drawn when present)
  ``curves/coverage_expected``        ``[L]``       nominal central-interval levels in (0, 1)
  ``curves/coverage_observed``        ``[L]``       fraction of test targets inside each interval
  ``scores/<split>/epistemic``        ``[N]``       per-point epistemic score, split ``test`` or
                                                    ``ood:<name>`` (the score the AUROCs rank)
  ``grid/X``                          ``[G, F]``    1-D plot grid inputs (column 0 plotted)
  ``grid/mean``                       ``[G, D]``    predictive mean on the grid (output 0 plotted)
  ``grid/aleatoric_variance``         ``[G, D]``    aleatoric variance on the grid
  ``grid/epistemic_variance``         ``[G, D]``    epistemic variance on the grid
  ``grid/total_variance``             ``[G, D]``    total variance (else aleatoric + epistemic)
  ``grid/draws_loc``                  ``[K, G, D]`` per-draw means (the first 5 are plotted)
  ``train/X``, ``train/y``            ``[N, F]``, ``[N, D]``  training data, same units as the grid
  ``regions/names``, ``regions/bounds``  ``[R]``, ``[R, 2]``  named input intervals (gap, outside_*)
  ``latent/mean``                     ``[N, K]``    encoder means of test inputs (first two dims)
  ``latent/labels``                   ``[N]``       their classes (point colour; optional)
  ``latent/manifold``                 ``[R, C, D]`` decoded pixel means on an R×C grid of latent points
  ``latent/inputs``                   ``[M, D]``    a few test images (pixels in [0, 1])
  ``latent/recon_mean``               ``[M, D]``    their reconstruction, mean over draws
  ``latent/recon_std``                ``[M, D]``    per-pixel standard deviation over draws
  ``latent/recon_labels``             ``[M]``       classes of those inputs (optional)
  ``latent/image_shape``              ``[2]``       ``(H, W)`` with ``H * W == D`` (else square)
  ==================================  ============  ============================================

- ``cells/*.json``: ``status`` (``failed`` cells listed with ``reason`` and ``stage``), ``task``.
- ``fidelity.csv`` (written by ``uqbench run`` / ``uqbench report`` when the run has an HMC
  reference): the posterior-fidelity section; the papers' tables come from ``results.csv``
  (:mod:`uqbench.report.tables`).
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from uqbench.report.figures import adapter_colors
from uqbench.report.tables import fidelity_section, papers_section
from uqbench.store import jsonable, load_arrays, require_run_dir

__all__ = [
    "KEY_METRICS",
    "SPEED_METRICS",
    "build_report_data",
    "direction",
    "load_table",
]


# Leaderboard columns per task, in display order (only those present are shown).
KEY_METRICS = {
    "classification": ("accuracy_score", "nll_loss", "brier_loss", "ece_error", "mce_error"),
    "regression": ("rmse_error", "nll_loss", "crps_loss", "calibration_error", "picp_95",
                   "interval_width_95"),
}
SPEED_METRICS = ("fit_wall_seconds", "fit_cpu_seconds", "fit_peak_rss_mb", "n_parameters",
                 "sample_seconds_per_draw", "samples_per_second", "sample_peak_rss_mb")
CALIBRATION_METRICS = ("ece_error", "calibration_error", "miscalibration_area")
OOD_TABLE_METRICS = ("epistemic_ratio", "auroc_epistemic")
# npz keys (see the module docstring).
REL_CONF, REL_ACC = "curves/reliability_confidence", "curves/reliability_accuracy"
REL_COUNT, REL_EDGES = "curves/reliability_counts", "curves/reliability_bin_edges"
COV_EXPECTED, COV_OBSERVED = "curves/coverage_expected", "curves/coverage_observed"
GRID_X, GRID_MEAN, GRID_DRAWS = "grid/X", "grid/mean", "grid/draws_loc"
GRID_ALE, GRID_EPI, GRID_TOT = "grid/aleatoric_variance", "grid/epistemic_variance", "grid/total_variance"
TRAIN_X, TRAIN_Y = "train/X", "train/y"
REGION_NAMES, REGION_BOUNDS = "regions/names", "regions/bounds"
LATENT = "latent/"


def score_key(split: str, kind: str = "epistemic") -> str:
    """npz key of a per-point score: ``scores/<split>/<kind>``."""
    return f"scores/{split}/{kind}"


GRAD_VAR = re.compile(r"^grad_var_(?P<layer>.+)_b(?P<batch>\d+)$")

# Definitions of quantities the harness or this report produce (used when the metrics
# registry has no entry). Directions: True higher is better, False lower, None neither.
LOCAL_DEFINITIONS: dict[str, tuple[str, bool | None]] = {
    "fit_wall_seconds": ("Wall-clock seconds of the adapter's fit call on the training split.", False),
    "fit_cpu_seconds": ("Process CPU seconds (all threads, user + system) during fit.", False),
    "fit_peak_rss_mb": ("Peak increase of the process resident set size over its value at the "
                        "start of fit, in MB (10^6 bytes), sampled every 5 ms from /proc/self/statm.", False),
    "n_parameters": ("Trainable parameter count the adapter reports (n_parameters_).", None),
    "sample_seconds_per_draw": ("Wall-clock seconds of one sample_predictive call on the test split "
                                "divided by the number of draws S.", False),
    "samples_per_second": ("Point-draws per second on the test split: S × N_test / wall seconds of "
                           "sample_predictive (= N_test / sample_seconds_per_draw).", True),
    "sample_peak_rss_mb": ("Peak increase of the process resident set size while sampling every split "
                           "(test and OOD sets), in MB (10^6 bytes), measured like fit_peak_rss_mb.", False),
    "grad_var_<layer>_b<B>": ("Variance of the minibatch gradient of the training loss w.r.t. the "
                              "<layer> layer's weights at batch size B, measured by the gradient "
                              "probe (split \"probe\").", False),
    "report:interval": ("Leaderboard intervals: with two or more seeds, mean ± the standard "
                        "deviation of the per-seed values (across-seed spread); with one seed, the "
                        "bootstrap interval [ci_low, ci_high] from the results table.", None),
    "report:roc": ("ROC curves computed in this report with sklearn.metrics.roc_curve on the saved "
                   "per-point epistemic scores (OOD points positive, test points negative), "
                   "linearly interpolated onto a common false-positive-rate grid and averaged "
                   "over seeds; the AUROC in the legend is the area under each seed's curve (sklearn.metrics.auc) averaged "
                   "over the same seeds.", True),
    "report:histogram": ("Histograms of the per-point epistemic score of the first successful "
                         "seed, test vs OOD, on shared bins (log10 of the score when it is "
                         "positive and spans more than two decades), normalized to unit area.", None),
    "report:reliability": ("Reliability diagrams: the test split's top-label confidence bins from "
                           "uqbench.metrics.curves (the ece_error bins); per bin, the mean confidence "
                           "(x) and accuracy (y), pooled over seeds as count-weighted means; empty bins "
                           "are left out. Bars: accuracy per bin; grey strip: share of points per bin.", None),
    "report:coverage": ("Coverage curves: for each nominal level of uqbench.metrics.curves, the fraction "
                        "of test targets inside the predictive mixture's central interval, averaged "
                        "over seeds.", None),
    "report:toy": ("Toy regression figure (first successful seed): predictive mean = mean of the "
                   "draws' means on the plot grid; bands = mean ± 2·sqrt(total variance) and "
                   "mean ± 2·sqrt(epistemic variance), total = aleatoric + epistemic (law of total "
                   "variance); thin lines: the first five draws' means; in the harness's target units.", None),
    "report:latent": ("Latent-variable figures (first successful seed): encoder means of test inputs "
                      "(first two latent dimensions) coloured by class; images decoded from a grid of "
                      "latent points; reconstructions as the mean over predictive draws and the "
                      "per-pixel standard deviation over draws.", None),
    "report:tradeoff": ("Trade-off chart: x = fit_wall_seconds (mean over seeds), y = the "
                        "calibration error named on the axis (mean over seeds), marker area grows "
                        "with the geometric mean of epistemic_ratio over OOD sets and seeds (hollow when undefined).", None),
}


# ---------------------------------------------------------------------------------------
# Small helpers


def _safe_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", s)


def _finite(x: Any) -> float | None:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return None
    return v if math.isfinite(v) else None


def _floats(a: Iterable[Any], digits: int = 5) -> list[float | None]:
    """A JSON-safe list: rounded to ``digits`` significant digits, NaN/inf as None."""
    out: list[float | None] = []
    for v in np.asarray(list(a) if not isinstance(a, np.ndarray) else a, dtype=np.float64).ravel():
        out.append(float(f"{v:.{digits}g}") if math.isfinite(v) else None)
    return out


def _slugger() -> Any:
    used: set[str] = set()

    def slug(*parts: str) -> str:
        base = "-".join(re.sub(r"[^a-z0-9]+", "-", p.lower()).strip("-") or "x" for p in parts)
        s, i = base, 2
        while s in used:
            s, i = f"{base}-{i}", i + 1
        used.add(s)
        return s

    return slug


# ---------------------------------------------------------------------------------------
# Metric registry


def _metric_specs() -> dict[str, Any]:
    from uqbench.metrics import METRICS

    return dict(METRICS)


def direction(metric: str, specs: Mapping[str, Any] | None = None) -> bool | None:
    """Whether higher is better for ``metric``: registry first, then local definitions,
    then the name suffix (``_score`` higher; ``_error``/``_loss`` lower); None if unknown."""
    spec = (specs or {}).get(metric)
    if spec is not None and getattr(spec, "higher_is_better", None) is not None:
        return bool(spec.higher_is_better)
    if metric in LOCAL_DEFINITIONS:
        return LOCAL_DEFINITIONS[metric][1]
    if GRAD_VAR.match(metric):
        return False
    if metric.endswith("_score"):
        return True
    if metric.endswith(("_error", "_loss")):
        return False
    return None


def _definition(metric: str, specs: Mapping[str, Any]) -> tuple[str, str]:
    spec = specs.get(metric)
    text = getattr(spec, "definition", None) if spec is not None else None
    if text:
        return str(text), "uqbench.metrics.METRICS"
    if metric in LOCAL_DEFINITIONS:
        return LOCAL_DEFINITIONS[metric][0], "this report" if metric.startswith("report:") else "uqbench.harness"
    return "No definition registered for this metric.", "—"


# ---------------------------------------------------------------------------------------
# Loading


def load_table(run_dir: Path) -> pd.DataFrame:
    """The results table via :func:`uqbench.store.load_results`, with string columns as str
    (never NaN), float value columns and ``status`` defaulting to ``"ok"``."""
    from uqbench.store import load_results

    df = load_results(run_dir).copy()
    for col in ("adapter", "dataset", "split", "metric", "status", "error"):
        df[col] = ["" if v is None or v != v else str(v) for v in df[col].tolist()]  # v != v: NaN
    df["status"] = df["status"].replace("", "ok")
    return df


def _read_json(path: Path) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            obj = json.load(f)
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def _index_arrays(run_dir: Path) -> dict[str, Path]:
    """Safe cell name (``adapter__dataset__seed``) -> npz path."""
    folder = run_dir / "arrays"
    if not folder.is_dir():
        return {}
    return {_safe_name(p.stem): p for p in sorted(folder.glob("*.npz"))}


class _Arrays:
    """Lazy, cached access to the per-cell npz files."""

    def __init__(self, run_dir: Path) -> None:
        self.index = _index_arrays(run_dir)
        self.cache: dict[str, dict[str, np.ndarray]] = {}

    def get(self, adapter: str, dataset: str, seed: int) -> dict[str, np.ndarray]:
        key = _safe_name(f"{adapter}__{dataset}__{seed}")
        if key not in self.cache:
            path = self.index.get(key)
            # A damaged file is refused (store.DamagedRunError), not drawn as a blank figure.
            self.cache[key] = {} if path is None else load_arrays(path.parent.parent, path.stem)
        return self.cache[key]


# ---------------------------------------------------------------------------------------
# Sections


def _as_text(v: Any) -> str:
    if isinstance(v, list | tuple):
        return ", ".join(_as_text(x) for x in v)
    if isinstance(v, Mapping):
        return ", ".join(f"{k}={_as_text(x)}" for k, x in v.items())
    if isinstance(v, float):
        return f"{v:g}"
    return str(v)


def _duration(run: Mapping[str, Any]) -> str | None:
    """run.json's ``duration_seconds`` (written when a session ends) as ``1h 02m 03s``."""
    secs = run.get("duration_seconds")
    if not isinstance(secs, int | float) or not math.isfinite(secs):
        return None
    s = float(secs)
    m, sec = divmod(round(s), 60)
    h, m = divmod(m, 60)
    return f"{h}h {m:02d}m {sec:02d}s" if h else (f"{m}m {sec:02d}s" if m else f"{s:.1f} s")


def _flatten(obj: Any, prefix: str = "") -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    if isinstance(obj, Mapping):
        for k, v in obj.items():
            key = f"{prefix}.{k}" if prefix else str(k)
            if isinstance(v, Mapping) and v:
                out.extend(_flatten(v, key))
            else:
                out.append((key, _as_text(v)))
    return out


def _meta(run: Mapping[str, Any], df: pd.DataFrame, cells: list[dict[str, Any]], adapters: list[str],
          datasets: list[str], seeds: list[int], run_dir: Path) -> dict[str, Any]:
    suite = run.get("suite") if isinstance(run.get("suite"), Mapping) else {}
    env = run.get("environment") if isinstance(run.get("environment"), Mapping) else {}
    summary: list[tuple[str, str]] = [("run directory", run_dir.name)]

    def add(label: str, value: Any) -> None:
        if value not in (None, "", [], {}):
            summary.append((label, _as_text(value)))

    add("suite", suite.get("name"))
    add("description", suite.get("description"))
    add("adapters", ", ".join(adapters))
    add("datasets", ", ".join(datasets))
    add("seeds", ", ".join(str(s) for s in seeds))
    add("predictive draws S", suite.get("n_samples"))
    add("bootstrap resamples", suite.get("n_bootstrap"))
    add("optional steps", suite.get("steps"))
    add("status", run.get("status"))
    add("started", run.get("started"))
    add("ended", run.get("ended"))
    add("duration", _duration(run))
    add("uqbench", run.get("uqbench_version"))
    git = env.get("git") if isinstance(env.get("git"), Mapping) else {}
    commit = git.get("commit")
    add("git commit", f"{commit}{' (uncommitted changes)' if git.get('dirty') else ''}" if commit else None)
    add("python", env.get("python"))
    add("platform", env.get("platform"))
    add("CPU", env.get("cpu_model"))
    add("CPU count", env.get("cpu_count"))
    add("CPUs usable (affinity)", env.get("cpu_affinity"))
    threads = env.get("torch_threads")
    if isinstance(threads, Mapping):
        add("torch threads", ", ".join(f"{k.replace('_', '-')} {v}" for k, v in threads.items() if v is not None))
    add("thread variables", env.get("thread_env"))
    add("command line", " ".join(str(a) for a in env.get("command_line") or []))
    if cells or not df.empty:
        status = [str(c.get("status")) for c in cells]
        n_cells = len(cells) or df.groupby(["adapter", "dataset", "seed"], dropna=False).ngroups
        n_failed = status.count("failed") if cells else df[df["status"] == "failed"].groupby(
            ["adapter", "dataset", "seed"], dropna=False).ngroups
        note = f"{n_cells} finished ({n_failed} failed"
        note += f", {status.count('skipped')} not applicable)" if status.count("skipped") else ")"
        add("cells", note)
    packages = env.get("packages")
    pkgs = sorted((str(k), "not installed" if v is None else _as_text(v)) for k, v in packages.items()) \
        if isinstance(packages, Mapping) else []
    return {"summary": summary, "packages": pkgs, "all": _flatten(run)}


class _Table:
    """The ok rows of the results table indexed once (pandas filtering per cell is slow).

    ``values[(dataset, split, metric, adapter)]`` -> list of ``(seed, value, ci_low, ci_high)``.
    """

    def __init__(self, df: pd.DataFrame) -> None:
        ok = df[df["status"] == "ok"]
        self.values: dict[tuple[str, str, str, str], list[tuple[int, float, float, float]]] = {}
        self.metrics: dict[tuple[str, str], dict[str, None]] = {}  # ordered sets
        self.splits: dict[str, dict[str, None]] = {}
        self.seeds: dict[tuple[str, str], set[int]] = {}  # (dataset, split) -> seeds
        self.adapter_seeds: dict[tuple[str, str], set[int]] = {}  # (dataset, adapter) -> seeds
        self.adapters: dict[tuple[str, str], set[str]] = {}  # (dataset, split) -> adapters
        cols = [ok[c].tolist() for c in ("dataset", "split", "metric", "adapter", "seed", "value", "ci_low", "ci_high")]
        for d, sp, m, a, seed, v, lo, hi in zip(*cols, strict=True):
            seed = -1 if seed is None or seed != seed else int(seed)
            self.values.setdefault((d, sp, m, a), []).append((seed, float(v), float(lo), float(hi)))
            self.metrics.setdefault((d, sp), {})[m] = None
            self.splits.setdefault(d, {})[sp] = None
            self.seeds.setdefault((d, sp), set()).add(seed)
            self.adapter_seeds.setdefault((d, a), set()).add(seed)
            self.adapters.setdefault((d, sp), set()).add(a)

    def get(self, dataset: str, split: str, metric: str, adapter: str) -> np.ndarray:
        """``[n, 3]`` array of (value, ci_low, ci_high) over seeds (n may be 0)."""
        rows = self.values.get((dataset, split, metric, adapter), [])
        return np.array([r[1:] for r in rows], dtype=np.float64).reshape(-1, 3)

    def mean(self, dataset: str, split: str, metric: str, adapter: str) -> float | None:
        v = self.get(dataset, split, metric, adapter)[:, 0]
        v = v[np.isfinite(v)]
        return float(v.mean()) if v.size else None


def _aggregate(rows: np.ndarray) -> dict[str, Any]:
    """Mean over seeds plus the interval the tables show (see report:interval).

    ``rows`` is ``[n, 3]``: value, ci_low, ci_high per seed.
    """
    rows = rows[np.isfinite(rows[:, 0])]
    n = len(rows)
    if n == 0:
        return {"mean": None, "lo": None, "hi": None, "sd": None, "n": 0, "best": False}
    mean = float(rows[:, 0].mean())
    if n >= 2:
        sd = float(rows[:, 0].std(ddof=1))
        return {"mean": mean, "lo": mean - sd, "hi": mean + sd, "sd": sd, "n": n, "best": False}
    return {"mean": mean, "lo": _finite(rows[0, 1]), "hi": _finite(rows[0, 2]), "sd": None, "n": n, "best": False}


def _mark_best(rows: list[dict[str, Any]], columns: list[dict[str, Any]]) -> None:
    for j, col in enumerate(columns):
        hib = col.get("higher_is_better")
        if hib is None:
            continue
        vals = [r["cells"][j]["mean"] for r in rows if r["cells"][j]["mean"] is not None]
        if len(vals) < 2:
            continue
        best = max(vals) if hib else min(vals)
        tol = 1e-12 * max(1.0, abs(best))
        for r in rows:
            m = r["cells"][j]["mean"]
            r["cells"][j]["best"] = m is not None and abs(m - best) <= tol


def _metric_table(table: _Table, dataset: str, columns: list[dict[str, Any]], adapters: list[str],
                  colors: dict[str, str], *, failed: set[str] | None = None) -> dict[str, Any]:
    """Adapters × columns (each ``{"split", "metric", "higher_is_better", ...}``) of seed means.

    Adapters without any value are left out unless they are in ``failed`` (adapters with a
    failed cell on this dataset); a row's ``failed`` is "all" (no values), "some" or "".
    """
    failed = failed or set()
    rows = []
    for a in adapters:
        cells = [_aggregate(table.get(dataset, c["split"], c["metric"], a)) for c in columns]
        has_values = any(c["n"] for c in cells)
        if has_values or a in failed:
            status = ("some" if has_values else "all") if a in failed else ""
            rows.append({"adapter": a, "color": colors[a], "failed": status, "cells": cells})
    _mark_best(rows, columns)
    seeds = set().union(*(table.seeds.get((dataset, c["split"]), set()) for c in columns)) if columns else set()
    n_seeds = len(seeds)
    return {"columns": columns, "rows": rows, "n_seeds": n_seeds,
            "interval": "seed-sd" if n_seeds >= 2 else "bootstrap"}


def _task(metrics: Iterable[str], arrays_keys: set[str], cell_tasks: set[str]) -> str:
    if len(cell_tasks) == 1:
        return next(iter(cell_tasks))
    metrics = set(metrics)
    if "accuracy_score" in metrics or REL_ACC in arrays_keys:
        return "classification"
    if "rmse_error" in metrics or COV_OBSERVED in arrays_keys or GRID_MEAN in arrays_keys:
        return "regression"
    if any(k.startswith(LATENT) for k in arrays_keys):
        return "reconstruction"
    return "unknown"


def _pooled_reliability(arrs: list[dict[str, np.ndarray]]) -> dict[str, Any] | None:
    """Reliability bins pooled over seeds: count-weighted mean confidence and accuracy."""
    parts = [a for a in arrs if REL_CONF in a and REL_ACC in a]
    if not parts:
        return None
    shape = parts[0][REL_ACC].shape
    parts = [a for a in parts if a[REL_ACC].shape == shape and a[REL_CONF].shape == shape]
    conf = np.stack([np.asarray(a[REL_CONF], dtype=np.float64) for a in parts])
    acc = np.stack([np.asarray(a[REL_ACC], dtype=np.float64) for a in parts])
    if all(REL_COUNT in a and a[REL_COUNT].shape == shape for a in parts):
        cnt = np.stack([np.asarray(a[REL_COUNT], dtype=np.float64) for a in parts])
    else:
        cnt = np.ones_like(acc)
    cnt = np.where(np.isfinite(acc) & np.isfinite(conf), cnt, 0.0)
    tot = cnt.sum(axis=0)
    safe = np.where(tot > 0, tot, 1.0)
    x = np.where(tot > 0, np.nansum(np.nan_to_num(conf) * cnt, axis=0) / safe, np.nan)
    y = np.where(tot > 0, np.nansum(np.nan_to_num(acc) * cnt, axis=0) / safe, np.nan)
    out = {"x": _floats(x), "y": _floats(y), "count": _floats(tot), "n_seeds": len(parts)}
    edges = parts[0].get(REL_EDGES)
    if edges is not None and len(edges) == len(x) + 1:
        out["edges"] = _floats(edges)
    return out


def _pooled_coverage(arrs: list[dict[str, np.ndarray]]) -> dict[str, Any] | None:
    """Observed coverage averaged over seeds at each nominal level."""
    parts = [a for a in arrs if COV_EXPECTED in a and COV_OBSERVED in a]
    if not parts:
        return None
    nominal = np.asarray(parts[0][COV_EXPECTED], dtype=np.float64).ravel()
    obs_all = [np.asarray(a[COV_OBSERVED], dtype=np.float64).reshape(len(nominal), -1).mean(axis=1)
               for a in parts if np.array_equal(np.ravel(a[COV_EXPECTED]), nominal)
               and np.size(a[COV_OBSERVED]) % max(len(nominal), 1) == 0]
    if not obs_all or not len(nominal):
        return None
    stacked = np.stack(obs_all)
    ok = np.isfinite(stacked)
    obs = np.where(ok.any(axis=0), np.where(ok, stacked, 0).sum(axis=0) / np.maximum(ok.sum(axis=0), 1), np.nan)
    order = np.argsort(nominal)
    return {"x": _floats(nominal[order]), "y": _floats(obs[order]), "n_seeds": len(obs_all)}


def _roc(scores_in: np.ndarray, scores_ood: np.ndarray) -> tuple[np.ndarray, float] | None:
    from sklearn.metrics import auc, roc_curve

    s_in = scores_in[np.isfinite(scores_in)]
    s_ood = scores_ood[np.isfinite(scores_ood)]
    if s_in.size == 0 or s_ood.size == 0:
        return None
    y = np.concatenate([np.zeros(s_in.size), np.ones(s_ood.size)])
    s = np.concatenate([s_in, s_ood])
    fpr, tpr, _ = roc_curve(y, s)
    # Keep the highest TPR at repeated FPRs so the curve is a function of FPR.
    fpr_r, tpr_r = fpr[::-1], tpr[::-1]
    fpr_u, idx = np.unique(fpr_r, return_index=True)
    return np.interp(ROC_GRID, fpr_u, tpr_r[idx]), float(auc(fpr, tpr))


ROC_GRID = np.linspace(0.0, 1.0, 101)


def _histogram(s_in: np.ndarray, s_ood: np.ndarray, bins: int = 30) -> dict[str, Any] | None:
    s_in, s_ood = s_in[np.isfinite(s_in)], s_ood[np.isfinite(s_ood)]
    if s_in.size == 0 or s_ood.size == 0:
        return None
    both = np.concatenate([s_in, s_ood])
    lo, hi = float(both.min()), float(both.max())
    log = bool(lo > 0 and hi / lo > 100)
    if log:
        s_in, s_ood = np.log10(s_in), np.log10(s_ood)
        lo, hi = math.log10(lo), math.log10(hi)
    constant = hi - lo <= 1e-12 * max(1.0, abs(hi))
    if constant:
        return {"constant": True, "value": float(both[0]), "n_in": int(s_in.size), "n_ood": int(s_ood.size),
                "log": False}
    edges = np.linspace(lo, hi, bins + 1)
    d_in, _ = np.histogram(s_in, bins=edges, density=True)
    d_ood, _ = np.histogram(s_ood, bins=edges, density=True)
    return {"edges": _floats(edges), "in_density": _floats(d_in), "ood_density": _floats(d_ood),
            "log": log, "constant": bool(constant), "n_in": int(s_in.size), "n_ood": int(s_ood.size)}


def _col0(a: Any, n: int) -> np.ndarray:
    """Column 0 of ``[n]`` or ``[n, D]`` data as float64 ``[n]`` (None/mismatch -> NaN)."""
    if a is None:
        return np.full(n, np.nan)
    a = np.asarray(a, dtype=np.float64)
    a = a.reshape(a.shape[0], -1)[:, 0] if a.ndim >= 2 else a.ravel()
    return a if a.size == n else np.full(n, np.nan)


def _toy_panel(arr: dict[str, np.ndarray], dataset: str, seed: int, max_draws: int = 5) -> dict[str, Any] | None:
    """The toy-figure data of one cell (input and output 0 of the grid arrays)."""
    if GRID_X not in arr or GRID_MEAN not in arr:
        return None
    gx = np.asarray(arr[GRID_X], dtype=np.float64)
    x = gx.reshape(gx.shape[0], -1)[:, 0] if gx.ndim >= 2 else gx.ravel()
    g = x.size
    order = np.argsort(x)
    mean = _col0(arr[GRID_MEAN], g)
    ale = _col0(arr.get(GRID_ALE), g)
    epi = _col0(arr.get(GRID_EPI), g)
    tot = _col0(arr.get(GRID_TOT), g) if GRID_TOT in arr else ale + epi
    epi = np.where(np.isfinite(epi), epi, 0.0)
    draws = np.zeros((0, g))
    if GRID_DRAWS in arr:
        d = np.asarray(arr[GRID_DRAWS], dtype=np.float64)
        if d.ndim >= 2 and d.shape[1] == g:
            draws = d.reshape(d.shape[0], g, -1)[:max_draws, :, 0]
    panel: dict[str, Any] = {
        "seed": seed, "x": _floats(x[order], 4), "mean": _floats(mean[order], 4),
        "total_sd": _floats(np.sqrt(np.maximum(tot[order], 0)), 4),
        "epistemic_sd": _floats(np.sqrt(np.maximum(epi[order], 0)), 4),
        "draws": [_floats(d[order], 4) for d in draws],
    }
    regions: dict[str, list[float]] = {}
    if REGION_NAMES in arr and REGION_BOUNDS in arr:
        bounds = np.asarray(arr[REGION_BOUNDS], dtype=np.float64).reshape(-1, 2)
        for name, (lo, hi) in zip(np.asarray(arr[REGION_NAMES]).ravel(), bounds, strict=False):
            regions[str(name)] = [float(lo), float(hi)]
    tx = arr.get(TRAIN_X)
    ty = arr.get(TRAIN_Y)
    if tx is None or ty is None or not regions:
        ds = _reload_dataset(dataset, seed)
        if ds is not None:
            if not regions:
                regions = {k: [float(v[0]), float(v[1])] for k, v in ds.regions.items()}
            if tx is None or ty is None:  # reloaded targets are standardized: only if the grid is too
                tx, ty = ds.X_train, ds.y_train
    if tx is not None and ty is not None:
        n = np.asarray(tx).shape[0]
        panel["train_x"] = _floats(_col0(tx, n), 4)
        panel["train_y"] = _floats(_col0(ty, n), 4)
    panel["regions"] = [{"name": k, "lo": min(v), "hi": max(v)} for k, v in regions.items()]
    return panel


def _reload_dataset(name: str, seed: int) -> Any:
    """A generated (no-file) dataset reloaded for its training data and regions, else None."""
    from uqbench.datasets import DATASETS, load_dataset

    spec = DATASETS.get(name)
    if spec is None or spec.needs_data_dir:
        return None
    try:
        return load_dataset(name, seed=int(seed))
    except (ValueError, OSError):
        return None


def _image_shape(arr: dict[str, np.ndarray], d: int) -> tuple[int, int] | None:
    key = LATENT + "image_shape"
    if key in arr:
        h, w = (int(v) for v in np.asarray(arr[key]).ravel()[:2])
        if h * w == d:
            return h, w
    side = math.isqrt(d)
    return (side, side) if side * side == d else None


def _unit(a: np.ndarray) -> np.ndarray:
    """Pixels into [0, 1] for display (min-max when they fall outside)."""
    a = np.asarray(a, dtype=np.float64)
    finite = a[np.isfinite(a)]
    if finite.size == 0:
        return np.zeros_like(a)
    lo, hi = finite.min(), finite.max()
    if lo >= 0 and hi <= 1:
        return a
    return (a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)


def _latent_panel(arr: dict[str, np.ndarray], rng: np.random.Generator, max_points: int = 600,
                  max_recon: int = 6) -> dict[str, Any] | None:
    """Latent scatter, manifold and reconstructions of one cell (``latent/*`` keys)."""
    panel: dict[str, Any] = {}
    if LATENT + "mean" in arr:
        z = np.asarray(arr[LATENT + "mean"], dtype=np.float64)
        z = z.reshape(len(z), -1)
        if z.shape[0] and z.shape[1] >= 1:
            labels = np.asarray(arr[LATENT + "labels"]).ravel() if LATENT + "labels" in arr else None
            if labels is not None and len(labels) != len(z):
                labels = None
            idx = np.arange(len(z))
            if len(z) > max_points:
                idx = np.sort(rng.choice(len(z), max_points, replace=False))
            z2 = z[idx, 1] if z.shape[1] >= 2 else np.zeros(len(idx))
            panel["scatter"] = {
                "z1": _floats(z[idx, 0], 4), "z2": _floats(z2, 4),
                "labels": [int(v) for v in labels[idx]] if labels is not None else [],
                "k": int(z.shape[1]),
            }
    if LATENT + "manifold" in arr:
        m = np.asarray(arr[LATENT + "manifold"], dtype=np.float64)
        if m.ndim == 3 and m.size:
            shape = _image_shape(arr, m.shape[2])
            if shape is not None:
                panel["manifold"] = {"rows": int(m.shape[0]), "cols": int(m.shape[1]), "shape": list(shape),
                                     "pixels": _floats(_unit(m).ravel(), 3)}
    if LATENT + "inputs" in arr and LATENT + "recon_mean" in arr:
        x = np.asarray(arr[LATENT + "inputs"], dtype=np.float64)
        mu = np.asarray(arr[LATENT + "recon_mean"], dtype=np.float64)
        n = min(len(x), len(mu), max_recon)
        x, mu = x[:n].reshape(n, -1), mu[:n].reshape(n, -1)
        shape = _image_shape(arr, x.shape[1]) if n else None
        if shape is not None and x.shape == mu.shape:
            rec: dict[str, Any] = {"shape": list(shape), "inputs": _floats(_unit(x).ravel(), 3),
                                   "recon_mean": _floats(_unit(mu).ravel(), 3)}
            if LATENT + "recon_std" in arr:
                sd = np.asarray(arr[LATENT + "recon_std"], dtype=np.float64)[:n].reshape(n, -1)
                if sd.shape == x.shape:
                    rec["recon_std"] = _floats(sd.ravel(), 3)
            if LATENT + "recon_labels" in arr:
                rec["labels"] = [int(v) for v in np.asarray(arr[LATENT + "recon_labels"]).ravel()[:n]]
            panel["recon"] = rec
    return panel or None


def _read_cells(run_dir: Path) -> list[dict[str, Any]]:
    folder = run_dir / "cells"
    if not folder.is_dir():
        return []
    return [c for c in (_read_json(p) for p in sorted(folder.glob("*.json"))) if c]


def _failures(df: pd.DataFrame, cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One entry per failed cell: from the table's failed rows, then cell files not seen there."""
    out: dict[tuple[str, str, str], dict[str, Any]] = {}
    for r in df[df["status"] == "failed"].itertuples(index=False):
        seed = "" if pd.isna(r.seed) else str(int(r.seed))
        item = out.setdefault((r.adapter, r.dataset, seed), {
            "adapter": r.adapter, "dataset": r.dataset, "seed": seed, "stage": [], "error": []})
        if r.split and r.split not in item["stage"]:
            item["stage"].append(r.split)
        if r.error and r.error not in item["error"]:
            item["error"].append(r.error)
    for cell in cells:
        if cell.get("status") != "failed":
            continue
        seed = "" if cell.get("seed") is None else str(cell.get("seed"))
        key = (str(cell.get("adapter", "")), str(cell.get("dataset", "")), seed)
        item = out.setdefault(key, {"adapter": key[0], "dataset": key[1], "seed": seed, "stage": [], "error": []})
        stage, reason = str(cell.get("stage") or ""), str(cell.get("reason") or cell.get("error") or "")
        if stage and stage not in item["stage"]:
            item["stage"].append(stage)
        if reason and reason not in item["error"]:
            item["error"].append(reason)
    return [{**v, "stage": ", ".join(v["stage"]), "error": "\n".join(v["error"]) or "(no reason recorded)"}
            for v in out.values()]


# ---------------------------------------------------------------------------------------
# Entry point


def build_report_data(run_dir: str | Path) -> dict[str, Any]:
    """Everything the page shows, as JSON-safe dicts and lists (NaN -> None).

    Sections with nothing to show are empty lists / dicts; the template leaves them out.

    Raises
    ------
    uqbench.store.NotARunDirError
        ``run_dir`` does not exist or has no ``run.json`` (a :class:`~uqbench.errors.UserError`).
    uqbench.store.SchemaVersionError
        The run was written with a schema version this uqbench cannot read.
    """
    run_dir = require_run_dir(run_dir)
    run = _read_json(run_dir / "run.json")
    cell_records = _read_cells(run_dir)
    df = load_table(run_dir)
    table = _Table(df)
    specs = _metric_specs()
    arrays = _Arrays(run_dir)
    slug = _slugger()

    suite = run.get("suite") if isinstance(run.get("suite"), Mapping) else {}
    in_table_adapters = list(dict.fromkeys(a for a in df["adapter"] if a))
    in_table_datasets = list(dict.fromkeys(d for d in df["dataset"] if d))
    # Suite order first (names that never produced a row, e.g. unexpanded patterns, dropped).
    adapters = [a for a in dict.fromkeys([*(suite.get("adapters") or []), *in_table_adapters])
                if a in in_table_adapters]
    datasets = [d for d in dict.fromkeys([*(suite.get("datasets") or []), *in_table_datasets])
                if d in in_table_datasets]
    seeds = sorted({int(s) for s in df["seed"].dropna()})
    colors = adapter_colors(adapters)
    failed_by_dataset: dict[str, set[str]] = {}
    for r in df[df["status"] == "failed"][["dataset", "adapter"]].itertuples(index=False):
        failed_by_dataset.setdefault(r.dataset, set()).add(r.adapter)

    def cells_of(dataset: str, adapter: str) -> list[tuple[int, dict[str, np.ndarray]]]:
        return [(seed, arrays.get(adapter, dataset, seed))
                for seed in sorted(table.adapter_seeds.get((dataset, adapter), set()))]

    def column(split: str, metric: str, **extra: Any) -> dict[str, Any]:
        return {"split": split, "metric": metric, "higher_is_better": direction(metric, specs), **extra}

    dataset_info = []
    leaderboard, calibration, toy, ood, gradvar, latent = [], [], [], [], [], []
    speed_tables, tradeoff = [], []
    used_metrics: list[str] = []
    report_defs: list[str] = []
    rng = np.random.default_rng(0)  # only subsamples latent points for display

    for d in datasets:
        per_adapter = {a: cells_of(d, a) for a in adapters}
        keys: set[str] = set()
        for cl in per_adapter.values():
            for _, arr in cl:
                keys |= set(arr)
        test_metrics = list(table.metrics.get((d, "test"), {}))
        tasks = {str(c["task"]) for c in cell_records if c.get("dataset") == d and c.get("task")}
        task = _task(test_metrics, keys, tasks)
        ds_slug = slug(d)
        dataset_info.append({"name": d, "task": task, "slug": ds_slug})

        # Leaderboard
        metrics = [m for m in KEY_METRICS.get(task, ()) if m in test_metrics]
        if not metrics:  # unknown task (e.g. reconstruction): the first few test metrics
            metrics = [m for m in test_metrics if not m.startswith("coverage_")][:6]
        if metrics:
            failed = failed_by_dataset.get(d, set())
            lb = _metric_table(table, d, [column("test", m) for m in metrics], adapters, colors, failed=failed)
            if lb["rows"]:
                lb.update(dataset=d, slug=ds_slug, task=task)
                leaderboard.append(lb)
                used_metrics += metrics
                report_defs.append("report:interval")

        # Calibration curves
        panels, kind = [], None
        for a in adapters:
            arrs = [arr for _, arr in per_adapter[a]]
            rel, cov = _pooled_reliability(arrs), _pooled_coverage(arrs)
            if rel is not None:
                panels.append({"adapter": a, "color": colors[a], **rel})
                kind = "reliability"
            elif cov is not None:
                panels.append({"adapter": a, "color": colors[a], **cov})
                kind = kind or "coverage"
        if panels:
            calibration.append({"dataset": d, "slug": ds_slug, "kind": kind, "panels": panels})
            report_defs.append(f"report:{kind}")

        # Toy figure (first successful seed with grid arrays)
        toy_panels = []
        for a in adapters:
            for seed, arr in per_adapter[a]:
                p = _toy_panel(arr, d, seed)
                if p is not None:
                    toy_panels.append({"adapter": a, "color": colors[a], **p})
                    break
        if toy_panels:
            toy.append({"dataset": d, "slug": ds_slug, "panels": toy_panels})
            report_defs.append("report:toy")

        # Off-distribution
        ood_names = [s[4:] for s in table.splits.get(d, {}) if s.startswith("ood:")]
        for k in sorted(keys):
            m = re.fullmatch(r"scores/ood:(.+)/epistemic", k)
            if m and m[1] not in ood_names:
                ood_names.append(m[1])
        sets = []
        for name in ood_names:
            hists, rocs = [], []
            for a in adapters:
                curves, aucs, first = [], [], None
                for seed, arr in per_adapter[a]:
                    s_in, s_ood = arr.get(score_key("test")), arr.get(score_key(f"ood:{name}"))
                    if s_in is None or s_ood is None:
                        continue
                    s_in = np.asarray(s_in, dtype=np.float64).ravel()
                    s_ood = np.asarray(s_ood, dtype=np.float64).ravel()
                    if first is None:
                        h = _histogram(s_in, s_ood)
                        if h is not None:
                            first = {"adapter": a, "color": colors[a], "seed": seed, **h}
                    r = _roc(s_in, s_ood)
                    if r is not None:
                        curves.append(r[0])
                        aucs.append(r[1])
                if first is not None:
                    hists.append(first)
                if curves:
                    rocs.append({"adapter": a, "color": colors[a], "fpr": _floats(ROC_GRID, 4),
                                 "tpr": _floats(np.mean(curves, axis=0), 4), "auroc": float(np.mean(aucs)),
                                 "n_seeds": len(curves)})
            if hists or rocs:
                sets.append({"name": name, "slug": slug(d, "ood", name), "hist": hists, "roc": rocs})
        ood_columns = [column(f"ood:{name}", m, ood=name) for name in ood_names for m in OOD_TABLE_METRICS
                       if m in table.metrics.get((d, f"ood:{name}"), {})]
        ood_table = _metric_table(table, d, ood_columns, adapters, colors) if ood_columns else None
        if ood_table is not None and not ood_table["rows"]:
            ood_table = None
        if sets or ood_table:
            ood.append({"dataset": d, "slug": ds_slug, "sets": sets, "table": ood_table})
            if sets:
                report_defs += ["report:histogram", "report:roc"]
            if ood_table:
                used_metrics += [c["metric"] for c in ood_columns]
                report_defs.append("report:interval")

        # Speed: timing and size per adapter, then the trade-off chart
        speed_columns = [column(sp, m) for sp in ("fit", "sample") for m in
                         sorted(table.metrics.get((d, sp), {}),
                                key=lambda m: SPEED_METRICS.index(m) if m in SPEED_METRICS else len(SPEED_METRICS))]
        if speed_columns:
            t = _metric_table(table, d, speed_columns, adapters, colors)
            if t["rows"]:
                t.update(dataset=d, slug=ds_slug)
                speed_tables.append(t)
                used_metrics += [c["metric"] for c in speed_columns]
        y_metric = next((m for m in CALIBRATION_METRICS if m in test_metrics), None)
        points = []
        for a in adapters if y_metric else ():
            xv = table.mean(d, "fit", "fit_wall_seconds", a)
            yv = table.mean(d, "test", y_metric, a)
            ratios = np.concatenate([table.get(d, f"ood:{n}", "epistemic_ratio", a)[:, 0] for n in ood_names] or [[]])
            ratios = ratios[np.isfinite(ratios) & (ratios > 0)]
            if xv is not None and xv > 0 and yv is not None:
                points.append({"adapter": a, "color": colors[a], "x": xv, "y": yv,
                               "ratio": float(np.exp(np.log(ratios).mean())) if ratios.size else None})
        if points:
            tradeoff.append({"dataset": d, "slug": slug(d, "tradeoff"), "y_metric": y_metric,
                             "y_label": y_metric, "points": points})
            used_metrics += ["fit_wall_seconds", y_metric, "epistemic_ratio"]
            report_defs.append("report:tradeoff")

        # Gradient variance probe
        layers: dict[str, dict[str, dict[int, float]]] = {}
        for m in table.metrics.get((d, "probe"), {}):
            match = GRAD_VAR.match(m)
            if not match:
                continue
            for a in adapters:
                v = table.mean(d, "probe", m, a)
                if v is not None:
                    layers.setdefault(match["layer"], {}).setdefault(a, {})[int(match["batch"])] = v
        if layers:
            layer_panels = []
            for layer, by_adapter in layers.items():
                series = [{"adapter": a, "color": colors[a], "b": sorted(by_adapter[a]),
                           "v": [by_adapter[a][b] for b in sorted(by_adapter[a])]}
                          for a in adapters if a in by_adapter]
                layer_panels.append({"layer": layer, "series": series})
            gradvar.append({"dataset": d, "slug": slug(d, "gradvar"), "layers": layer_panels})
            used_metrics.append("grad_var_<layer>_b<B>")

        # Latent-variable models (first seed with latent arrays)
        for a in adapters:
            for seed, arr in per_adapter[a]:
                p = _latent_panel(arr, rng)
                if p is not None:
                    latent.append({"dataset": d, "adapter": a, "color": colors[a], "seed": seed,
                                   "slug": slug(d, a, "latent"), **p})
                    report_defs.append("report:latent")
                    break

    definitions = []
    for m in dict.fromkeys([*used_metrics, *report_defs]):
        text, source = _definition(m, specs)
        definitions.append({"name": m.removeprefix("report:"), "definition": text, "source": source,
                            "higher_is_better": None if m.startswith("report:") else direction(m, specs)})

    data = {
        "schema_version": 1,
        "title": f"uqbench report — {suite['name']}" if suite.get("name") else "uqbench report",
        "run_dir": run_dir.name,
        "generated_at": _dt.datetime.now(_dt.UTC).replace(microsecond=0).isoformat(),
        "adapters": [{"name": a, "color": colors[a]} for a in adapters],
        "datasets": dataset_info,
        "seeds": seeds,
        "meta": _meta(run, df, cell_records, adapters, datasets, seeds, run_dir),
        "leaderboard": leaderboard,
        "calibration": calibration,
        "toy": toy,
        "ood": ood,
        "speed": {"tables": speed_tables, "tradeoff": tradeoff} if speed_tables or tradeoff else {},
        "gradvar": gradvar,
        "latent": latent,
        "papers": papers_section(df, adapters),
        "fidelity": fidelity_section(run_dir, df, adapters),
        "failures": _failures(df, cell_records),
        "definitions": definitions,
    }
    return jsonable(data)
