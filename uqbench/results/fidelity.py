"""Posterior fidelity: each method's predictive against a reference (HMC) on the same data.

A run with the ``fidelity`` cell step (``Suite.steps``) keeps every regression cell's
predictive draws per split (``fidelity/<split>/loc|scale`` in the cell arrays, original
target units). This post-pass pairs each ok cell with the ok reference cell of the same
(dataset, seed) -- the same train/test split and, for an OOD set larger than the
harness's ``MAX_OOD_POINTS``, the same seeded subset (checked by index) -- and measures per
test / OOD input how far the method's predictive is from the reference's, averaged per
split:

- ``w1_mean``: mean over inputs of the 1-Wasserstein distance between the two predictive
  mixtures (:func:`uqbench.metrics.predictive_wasserstein`), in target units; 0 is perfect;
- ``w1_scaled_mean``: mean over inputs of that W1 divided by the reference's predictive
  sd at the input (unitless, comparable across datasets);
- ``epistemic_sd_ratio_median`` / ``_mean``: median / mean over inputs of the method's
  epistemic sd over the reference's (:func:`uqbench.metrics.epistemic_sd_ratio`): how
  much of the reference's epistemic uncertainty the method recovers (1 is perfect, below
  1 over-confident); inputs where the reference has no spread are left out;
- ``predictive_sd_ratio_median``: the same for the total predictive sd.

::

    write_fidelity(run_dir)                # fidelity.csv (tidy) + fidelity.md, or None
    fidelity_table(run_dir, reference="hmc")
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from uqbench import store
from uqbench.metrics import (
    N_ATOMS,
    epistemic_sd_ratio,
    predictive_sd,
    predictive_sd_ratio,
    predictive_wasserstein,
)
from uqbench.results.formatting import format_mean_se, format_number, markdown_table, split_order
from uqbench.results.paper import mark_best, mean_se, seeds_note, wide

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FIDELITY_METRICS", "fidelity_summary", "fidelity_table", "reference_diagnostics", "unconverged_references", "write_fidelity"]

REFERENCE = "hmc"
FIDELITY_CSV = "fidelity.csv"
FIDELITY_MD = "fidelity.md"
COLUMNS = ("adapter", "dataset", "seed", "split", "metric", "value")
DIAGNOSTICS_SPLIT = "diagnostics"

# metric -> (description, target): the best value is the one closest to target (on a log
# scale for ratios).
FIDELITY_METRICS: dict[str, tuple[str, float]] = {
    "w1_mean": ("W1 to the reference predictive, mean over inputs (target units)", 0.0),
    "w1_scaled_mean": ("W1 / reference predictive sd, mean over inputs", 0.0),
    "epistemic_sd_ratio_median": ("epistemic sd / reference epistemic sd, median over inputs", 1.0),
    "epistemic_sd_ratio_mean": ("epistemic sd / reference epistemic sd, mean over inputs", 1.0),
    "predictive_sd_ratio_median": ("total sd / reference total sd, median over inputs", 1.0),
}


def _key(metric: str) -> Callable[[float], float]:
    """Distance of a mean from the metric's ideal value (smaller is better)."""
    target = FIDELITY_METRICS[metric][1]
    if target == 0.0:
        return abs
    return lambda m: abs(np.log(m / target)) if m > 0 else np.inf


def _fidelity_arrays(run_dir: Path, key: str) -> dict[str, dict[str, np.ndarray]]:
    """split -> {"loc", "scale"[, "index"]} of a cell's ``fidelity/*`` arrays (others not read)."""
    out: dict[str, dict[str, np.ndarray]] = {}
    for name, array in store.load_arrays(run_dir, key, prefix="fidelity/").items():
        parts = name.split("/")
        if len(parts) == 3:
            out.setdefault(parts[1], {})[parts[2]] = array
    return {s: a for s, a in out.items() if "loc" in a and "scale" in a}


def _summaries(values: np.ndarray) -> tuple[float, float]:
    """(mean, median) of the finite values; NaN when there are none."""
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return float("nan"), float("nan")
    return float(finite.mean()), float(np.median(finite))


def split_fidelity(method: Mapping[str, np.ndarray], ref: Mapping[str, np.ndarray], *, n_atoms: int = N_ATOMS) -> dict[str, float]:
    """The :data:`FIDELITY_METRICS` of one split: ``method`` / ``ref`` hold ``loc``, ``scale`` ``[S, N, D]``."""
    loc, scale, rloc, rscale = method["loc"], method["scale"], ref["loc"], ref["scale"]
    w1 = predictive_wasserstein(loc, scale, rloc, rscale, n_atoms=n_atoms)
    ref_sd = predictive_sd(rloc, rscale)
    scaled = np.divide(w1, ref_sd, out=np.full_like(w1, np.nan), where=ref_sd > 0)
    epi_mean, epi_median = _summaries(epistemic_sd_ratio(loc, rloc))
    return {
        "w1_mean": float(w1.mean()),
        "w1_scaled_mean": _summaries(scaled)[0],
        "epistemic_sd_ratio_median": epi_median,
        "epistemic_sd_ratio_mean": epi_mean,
        "predictive_sd_ratio_median": _summaries(predictive_sd_ratio(loc, scale, rloc, rscale))[1],
    }


def _same_points(a: Mapping[str, np.ndarray], b: Mapping[str, np.ndarray]) -> bool:
    if a["loc"].shape[1:] != b["loc"].shape[1:]:
        return False
    ia, ib = a.get("index"), b.get("index")
    if ia is None or ib is None:
        return ia is None and ib is None
    return bool(np.array_equal(ia, ib))


def _regression_ok(record: Mapping[str, Any]) -> bool:
    return record["status"] == "ok" and record.get("mode", record.get("task")) == "regression"


def fidelity_table(
    run_dir: str | os.PathLike[str],
    reference: str = REFERENCE,
    *,
    include_reference: bool = False,
    n_atoms: int = N_ATOMS,
) -> pd.DataFrame:
    """Fidelity of every ok regression cell to the reference cell of its (dataset, seed).

    Cells without fidelity arrays (the step was off) or without an ok reference cell with
    them are left out; a split whose inputs differ between the two cells (shape or OOD
    subset index) is left out with a ``RuntimeWarning``. ``include_reference`` adds the
    reference compared with itself (W1 0, ratios 1: a check of the pipeline).

    Returns
    -------
    Tidy DataFrame, columns :data:`COLUMNS` (``metric`` in :data:`FIDELITY_METRICS`);
    adapters in run order, then dataset, seed, test before OOD splits; empty when nothing
    pairs up.
    """
    import pandas as pd

    run_dir = store.require_run_dir(run_dir)
    cells = {k: r for k, r in store.read_cells(run_dir).items() if _regression_ok(r)}
    # Adapters and datasets in run order (results.csv), then seeds ascending.
    results = store.load_results(run_dir)
    adapters = {a: i for i, a in enumerate(dict.fromkeys(results["adapter"]))}
    datasets = {d: i for i, d in enumerate(dict.fromkeys(results["dataset"]))}

    def order(record: Mapping[str, Any]) -> tuple[int, int, int]:
        return adapters.get(record["adapter"], -1), datasets.get(record["dataset"], -1), int(record["seed"])

    cells = dict(sorted(cells.items(), key=lambda kv: order(kv[1])))
    rows: list[tuple[Any, ...]] = []
    refs = {(r["dataset"], int(r["seed"])): k for k, r in cells.items() if r["adapter"] == reference}
    ref_arrays: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for key, record in cells.items():
        group = (record["dataset"], int(record["seed"]))
        if group not in refs or (record["adapter"] == reference and not include_reference):
            continue
        ref_key = refs[group]
        if ref_key not in ref_arrays:
            ref_arrays[ref_key] = _fidelity_arrays(run_dir, ref_key)
        ref = ref_arrays[ref_key]
        mine = ref if key == ref_key else _fidelity_arrays(run_dir, key)
        for split in sorted(set(ref) & set(mine), key=split_order):
            if not _same_points(mine[split], ref[split]):
                warnings.warn(
                    f"fidelity: {key} and {ref_key} were evaluated on different {split} inputs; skipped",
                    RuntimeWarning,
                    stacklevel=2,
                )
                continue
            for metric, value in split_fidelity(mine[split], ref[split], n_atoms=n_atoms).items():
                rows.append((record["adapter"], record["dataset"], int(record["seed"]), split, metric, value))
    df = pd.DataFrame(rows, columns=list(COLUMNS))
    return df.astype({"seed": "int64", "value": "float64"})


def fidelity_stats(table: pd.DataFrame) -> pd.DataFrame:
    """Mean, s.e., n, ``text`` and ``best`` per (metric, dataset, split, adapter) over seeds."""
    stats = mean_se(table, ("metric", "dataset", "split", "adapter"))
    stats["text"] = [format_mean_se(m, s) for m, s in zip(stats["mean"], stats["se"], strict=True)]
    stats["best"] = False
    for metric in stats["metric"].unique():
        rows = stats["metric"] == metric
        stats.loc[rows, "best"] = mark_best(stats[rows], ("dataset", "split"), _key(metric))
    order = list(FIDELITY_METRICS)
    return stats.assign(
        _m=stats["metric"].map(lambda m: order.index(m) if m in order else len(order)),
        _s=stats["split"].map(split_order),
    ).sort_values(["_m", "_s"], kind="stable").drop(columns=["_m", "_s"]).reset_index(drop=True)


def fidelity_summary(table: pd.DataFrame) -> pd.DataFrame:
    """``mean ± s.e.`` over seeds: rows (metric, dataset, split), one column per adapter."""
    return wide(fidelity_stats(table), ("metric", "dataset", "split"))


def _reference_rows(results: pd.DataFrame, reference: str) -> pd.DataFrame:
    """The reference's ok rows of split ``diagnostics``."""
    return results[(results["adapter"] == reference) & (results["split"] == DIAGNOSTICS_SPLIT) & (results["status"] == "ok")]


def reference_diagnostics(results: pd.DataFrame, reference: str = REFERENCE) -> list[dict[str, Any]]:
    """Range over seeds of the reference's ok ``diagnostics`` rows, one dict per (dataset, diagnostic).

    Keys ``dataset``, ``diagnostic``, ``min`` / ``max`` of the finite values (None if none)
    and ``seeds`` (rows counted).
    """
    out = []
    for (dataset, metric), g in _reference_rows(results, reference).groupby(["dataset", "metric"], sort=False):
        v = g["value"].to_numpy(dtype=float)
        finite = v[np.isfinite(v)]
        out.append({
            "dataset": dataset,
            "diagnostic": metric,
            "min": float(finite.min()) if finite.size else None,
            "max": float(finite.max()) if finite.size else None,
            "seeds": len(v),
        })
    return out


def unconverged_references(results: pd.DataFrame, reference: str = REFERENCE) -> list[str]:
    """``"<dataset> seed <k> (<diagnostic> <value>, ...)"`` for each reference cell whose own
    ``converged`` diagnostic is 0: its draws are kept and compared against, so say so."""
    out = []
    for (dataset, seed), g in _reference_rows(results, reference).groupby(["dataset", "seed"], sort=False):
        values = dict(zip(g["metric"], g["value"].astype(float), strict=False))
        if values.get("converged", 1.0) != 0.0:
            continue
        shown = ", ".join(f"{k} {values[k]:.4g}" for k in ("rhat_max", "ess_bulk_min") if k in values)
        out.append(f"{dataset} seed {int(seed)}" + (f" ({shown})" if shown else ""))
    return out


def _diagnostics_md(results: pd.DataFrame, reference: str) -> list[str]:
    diagnostics = reference_diagnostics(results, reference)
    if not diagnostics:
        return []
    rows = [
        [g["dataset"], g["diagnostic"], *(format_number(g[k], 4) for k in ("min", "max")), str(g["seeds"])]
        for g in diagnostics
    ]
    return [
        "",
        f"## Reference diagnostics ({reference})",
        "",
        "Range over seeds of the reference sampler's diagnostics (split `diagnostics` in results.csv).",
        "",
        markdown_table(["dataset", "diagnostic", "min", "max", "seeds"], rows, n_labels=2),
    ]


def fidelity_markdown(table: pd.DataFrame, reference: str, results: pd.DataFrame | None = None) -> str:
    """The markdown of ``fidelity.md``: one datasets×splits × adapters block per metric."""
    stats = fidelity_stats(table)
    adapters = list(dict.fromkeys(table["adapter"]))
    seeds = seeds_note(stats)
    out = [
        f"# Posterior fidelity against `{reference}`",
        "",
        f"Each method's predictive vs the `{reference}` predictive of the same (dataset, seed), per "
        f"test / OOD input, averaged per split; mean ± standard error over seeds (n = {seeds}). "
        "Best per row in **bold** (W1: smallest; ratios: closest to 1).",
    ]
    flagged = [] if results is None else unconverged_references(results, reference)
    if flagged:
        out += [
            "",
            f"**Not converged by the reference's own criterion** (its draws are still used): {'; '.join(flagged)}.",
        ]
    for metric, sub in stats.groupby("metric", sort=False):
        table_md = wide(sub, ("dataset", "split"), bold=True, columns=adapters)
        rows = [[ds, sp, *vals] for (ds, sp), vals in zip(table_md.index, table_md.to_numpy().tolist(), strict=True)]
        out += ["", f"## {metric}", "", FIDELITY_METRICS.get(metric, ("", 0))[0], ""]
        out.append(markdown_table(["dataset", "split", *adapters], rows, n_labels=2))
    if results is not None:
        out += _diagnostics_md(results, reference)
    return "\n".join(out) + "\n"


def write_fidelity(
    run_dir: str | os.PathLike[str], reference: str = REFERENCE, *, n_atoms: int = N_ATOMS
) -> Path | None:
    """Write ``fidelity.csv`` (the tidy :func:`fidelity_table`) and ``fidelity.md`` atomically.

    Returns the path of ``fidelity.md``, or None -- writing nothing -- when the run has no
    ok reference cell with fidelity arrays or no other cell to compare with it.
    """
    run_dir = store.require_run_dir(run_dir)
    if not any(r["adapter"] == reference and _regression_ok(r) for r in store.read_cells(run_dir).values()):
        return None
    table = fidelity_table(run_dir, reference, n_atoms=n_atoms)
    if table.empty:
        return None
    buf = io.StringIO()
    table.to_csv(buf, index=False, lineterminator="\n")
    store.write_atomic(run_dir / FIDELITY_CSV, buf.getvalue())
    return store.write_atomic(run_dir / FIDELITY_MD, fidelity_markdown(table, reference, store.load_results(run_dir)))
