"""``uqbench compare BASE NEW``: a regression gate between two run directories (for CI).

The two runs' ``results.csv`` are joined on (adapter, dataset, split, metric), over the
(adapter, dataset) pairs both runs have. Each joined row gets a verdict; the command exits
1 when at least one row is a **regression** (or a cell that was ok in BASE failed in NEW),
0 otherwise, and 2 on unusable input (missing or non-run directories, no ``results.csv``,
schema versions this uqbench cannot read, runs of different suites, nothing in common).

Metric families
---------------
- **quality**: every metric of :data:`uqbench.metrics.METRICS` with a direction
  (``higher_is_better`` True/False). Centre of a side: the mean over seeds.
- **speed** (time and memory): ``fit_wall_seconds``, ``fit_cpu_seconds``,
  ``sample_seconds_per_draw``, ``fit_peak_rss_mb``, ``sample_peak_rss_mb`` and any unknown
  metric named ``*_seconds``, ``*_seconds_per_draw`` or ``*_mb``; lower is better.
  Centre: the median over seeds (robust to one slow cell), compared as a ratio.
- **info** (shown, never gating): metrics without a direction (coverages, interval widths,
  uncertainty levels; ``higher_is_better=None``), ``n_parameters``, ``samples_per_second``
  (derived from ``sample_seconds_per_draw``, which is gated) and unknown metrics such as the
  probe's ``grad_var_*``.

How much worse ("worse factor")
-------------------------------
A plain ratio NEW/BASE is meaningless for metrics that can be 0 or negative (NLL, ELBO,
log-likelihoods) and explodes for metrics near 0 (ECE, FPR95), so each gated metric has an
absolute **floor** (:func:`metric_rule`) and:

- quality: ``worse = (NEW - BASE) / max(|BASE|, floor)``, sign flipped for
  higher-is-better metrics so that ``worse > 0`` always means worse; the worse factor is
  ``1 + worse``. For a positive lower-is-better metric above its floor this is exactly
  NEW/BASE (RMSE 0.40 -> 0.45 is x1.125); accuracy 0.90 -> 0.80 is x1.111; NLL -1.00 ->
  -0.85 is x1.15; ECE 0.001 -> 0.0012 is x1.004 (floor 0.05), not x1.2.
- speed: ``median(max(NEW, floor)) / median(max(BASE, floor))`` over seeds, so
  sub-floor timings (timer and scheduler noise) and memory increases below 10 MB never
  count, and one slow seed does not move it.

Floors: 0.05 for metrics on a probability scale (accuracy, Brier, ECE, classwise ECE, MCE,
calibration error, miscalibration area, AUROC/AUPR/FPR95, latent k-NN accuracy and
silhouette); 0.1 nats for NLLs; 1 nat for ELBO, IWAE log p(x) and reconstruction BCE; 1 for
``epistemic_ratio`` (1 = no separation); 1e-12 (a pure ratio) for metrics in data units
(RMSE, CRPS, reconstruction MSE); 0.05 s for fit times, 1e-4 s for per-draw times, 10 MB
for peak-RSS increases.

Significance
------------
A worse factor above the threshold fails the gate only when the change is also
statistically significant, decided per row from the per-seed values (quality: the values;
speed: the logs of the floored values, because timing noise is multiplicative):

1. at least 2 seeds measured in both runs (the usual case: same suite, same seeds, so the
   same train/test splits): a **paired t-test** over those common seeds (pairing removes
   the split-to-split variation both runs share; the same reasoning as
   :mod:`uqbench.parity`), centres computed over the same seeds;
2. else, at least 2 seeds on each side (different seed sets): **Welch's t-test**;
3. else (one seed somewhere): the **bootstrap intervals** must not overlap (the hull
   ``[min ci_low, max ci_high]`` over each side's seeds); rows without intervals (speed)
   cannot be significant with one seed.

A t-test counts when its two-sided p-value is below ``alpha`` (default 0.05) and its mean
difference points the worse way. When every paired difference is equal (or both sides are
constant in Welch's test) the p-value is 0 if they differ and 1 if not. With 2 seeds the
paired test has 1 degree of freedom and catches only large, consistent changes; 3 or more
seeds make a useful gate.

Thresholds: 1.10 for quality metrics, 1.5 for speed metrics (a shared CI machine easily
makes one run 20-30% slower), per metric with ``--threshold NAME=FACTOR`` (NAME may be a
shell pattern such as ``'*_seconds'``; an exact name wins over patterns, later patterns
over earlier ones; ``inf`` switches a metric's gate off). A row is a **regression** when
``worse factor > threshold`` and the change is significant; **improved** when better by
more than the same factor and significant (shown, never failing).

Reruns of the same code with the same seeds give identical quality numbers (worse factor
exactly 1, verdict "unchanged"); only their timings differ, and those fail only when the
median slows down by more than x1.5 consistently across the seeds. Failed cells in NEW whose cell was ok in BASE are regressions; cells, metrics or seeds
present in only one run are listed as notes.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import fnmatch
import io
import json
import math
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from uqbench.errors import UserError
from uqbench.registry import provenance_changes
from uqbench.suites import Suite

_SUITE_DEFAULTS = {
    f.name: f.default for f in dataclasses.fields(Suite) if f.default is not dataclasses.MISSING
}

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_SPEED_THRESHOLD",
    "DEFAULT_THRESHOLD",
    "Assessment",
    "Comparison",
    "MetricRule",
    "Regression",
    "add_parser",
    "assess",
    "cmd_compare",
    "compare_runs",
    "metric_rule",
    "render",
    "render_json",
    "render_markdown",
    "render_text",
]

EXIT_OK, EXIT_REGRESSION, EXIT_USAGE = 0, 1, 2
DEFAULT_THRESHOLD = 1.10
DEFAULT_SPEED_THRESHOLD = 1.5
DEFAULT_ALPHA = 0.05
FORMATS = ("text", "markdown", "json")
_EPS = 1e-12

# Speed (time and memory) metrics: name -> floor; all lower-is-better.
SPEED_FLOORS: dict[str, float] = {
    "fit_wall_seconds": 0.05,
    "fit_cpu_seconds": 0.05,
    "sample_seconds_per_draw": 1e-4,
    "fit_peak_rss_mb": 10.0,
    "sample_peak_rss_mb": 10.0,
}
# Measurements shown but never gating: name -> why.
INFO_METRICS: dict[str, str] = {
    "n_parameters": "descriptive",
    "samples_per_second": "derived from sample_seconds_per_draw, which is gated",
}
_PROBABILITY_SCALE = frozenset({
    "accuracy_score", "brier_loss", "ece_error", "classwise_ece_error", "mce_error",
    "calibration_error", "miscalibration_area", "latent_knn_accuracy_score",
    "latent_silhouette_score",
})
_QUALITY_FLOORS: dict[str, float] = {
    "nll_loss": 0.1,
    "gaussian_nll_loss": 0.1,
    "elbo_score": 1.0,
    "log_px_iwae_score": 1.0,
    "recon_bce_loss": 1.0,
    "epistemic_ratio": 1.0,
}

# Verdicts of a row, in display order; the first three are shown by default.
STATUSES = ("regression", "insignificant", "improved", "within", "unchanged", "info", "undefined")
_SHOWN = ("regression", "insignificant", "improved")
_LABELS = {
    "regression": "REGRESSION",
    "insignificant": "worse (not significant)",
    "improved": "improved",
    "within": "within threshold",
    "unchanged": "unchanged",
    "info": "info",
    "undefined": "undefined",
}


# -- metric rules -----------------------------------------------------------------------


@dataclass(frozen=True)
class MetricRule:
    """How a metric is compared.

    Attributes
    ----------
    family : ``"quality"`` (mean, relative change), ``"speed"`` (median, ratio) or
        ``"info"`` (shown, never gating).
    higher_is_better : the direction; None for info metrics.
    floor : absolute floor of the denominator (quality) or of both values (speed).
    """

    family: str
    higher_is_better: bool | None
    floor: float

    @property
    def gated(self) -> bool:
        return self.family in ("quality", "speed") and self.higher_is_better is not None


def _is_speed_name(metric: str) -> bool:
    return metric.endswith(("_seconds", "_seconds_per_draw", "_mb"))


def metric_rule(metric: str) -> MetricRule:
    """The :class:`MetricRule` of ``metric`` (see the module docstring)."""
    from uqbench.metrics import METRICS

    if metric in INFO_METRICS:
        return MetricRule("speed" if metric == "samples_per_second" else "info", None, 0.0)
    if metric in SPEED_FLOORS:
        return MetricRule("speed", False, SPEED_FLOORS[metric])
    spec = METRICS.get(metric)
    if spec is None:
        if _is_speed_name(metric):
            return MetricRule("speed", False, 10.0 if metric.endswith("_mb") else 0.0)
        return MetricRule("info", None, 0.0)
    if spec.higher_is_better is None:
        return MetricRule("info", None, 0.0)
    if metric in _QUALITY_FLOORS:
        floor = _QUALITY_FLOORS[metric]
    elif metric in _PROBABILITY_SCALE or metric.startswith(("auroc_", "aupr_", "fpr95_")):
        floor = 0.05
    else:
        floor = 0.0
    return MetricRule("quality", spec.higher_is_better, floor)


def _known_metric_names() -> list[str]:
    from uqbench.metrics import METRICS

    return [*METRICS, *SPEED_FLOORS, *INFO_METRICS]


def resolve_threshold(
    metric: str,
    rule: MetricRule,
    overrides: Mapping[str, float],
    *,
    default_threshold: float = DEFAULT_THRESHOLD,
    speed_threshold: float = DEFAULT_SPEED_THRESHOLD,
) -> float:
    """The factor for ``metric``: exact override, else the last matching pattern, else the family default."""
    if metric in overrides:
        return overrides[metric]
    matched = [f for pattern, f in overrides.items() if fnmatch.fnmatchcase(metric, pattern)]
    if matched:
        return matched[-1]
    return speed_threshold if rule.family == "speed" else default_threshold


# -- the decision for one row -----------------------------------------------------------

Measurement = float | tuple[float, float, float]  # value, or (value, ci_low, ci_high)


@dataclass(frozen=True)
class Assessment:
    """The comparison of one (adapter, dataset, split, metric) row; see :func:`assess`."""

    status: str
    base: float  # centre: mean (quality, info) or median (speed, unfloored) of the seeds used
    new: float
    rel_change: float  # (new - base) / max(|base|, floor); NaN for speed
    ratio: float  # speed: max(new, floor) / max(base, floor); NaN otherwise
    worse_factor: float  # > 1: worse (see the module docstring); NaN without direction
    threshold: float
    test: str  # "paired-t" | "welch-t" | "intervals" | "none"
    p_value: float  # NaN for "intervals" and "none"
    significant: bool  # the change is significant in the direction of the worse factor
    n_base: int
    n_new: int
    n_paired: int


def _split(m: Mapping[int, Measurement]) -> dict[int, tuple[float, float, float]]:
    out = {}
    for seed, x in m.items():
        v, lo, hi = x if isinstance(x, tuple) else (x, math.nan, math.nan)
        v, lo, hi = float(v), float(lo), float(hi)
        if math.isfinite(v):
            out[int(seed)] = (v, lo, hi)
    return out


def _t_p_value(t: float, df: float) -> float:
    from scipy import stats

    return float(2.0 * stats.t.sf(abs(t), df))


def _paired_t(xb: Sequence[float], xn: Sequence[float]) -> tuple[float, float]:
    """(mean difference new - base, two-sided p) of the paired t-test (scipy's ttest_rel)."""
    import numpy as np

    d = np.asarray(xn, dtype=np.float64) - np.asarray(xb, dtype=np.float64)
    mean = float(d.mean())
    sd = float(d.std(ddof=1))
    if sd == 0.0 or not math.isfinite(sd):
        return mean, (0.0 if mean != 0.0 else 1.0)
    return mean, _t_p_value(mean / (sd / math.sqrt(d.size)), d.size - 1)


def _welch_t(xb: Sequence[float], xn: Sequence[float]) -> tuple[float, float]:
    """(difference of means new - base, two-sided p) of Welch's t-test (ttest_ind, equal_var=False)."""
    import numpy as np

    b, n = np.asarray(xb, dtype=np.float64), np.asarray(xn, dtype=np.float64)
    diff = float(n.mean() - b.mean())
    vb, vn = float(b.var(ddof=1)) / b.size, float(n.var(ddof=1)) / n.size
    se2 = vb + vn
    if se2 == 0.0:
        return diff, (0.0 if diff != 0.0 else 1.0)
    df = se2**2 / (vb**2 / (b.size - 1) + vn**2 / (n.size - 1))
    return diff, _t_p_value(diff / math.sqrt(se2), df)


def _hull(side: Mapping[int, tuple[float, float, float]]) -> tuple[float, float]:
    lows = [lo for _, lo, _ in side.values()]
    highs = [hi for _, _, hi in side.values()]
    if not all(math.isfinite(x) for x in (*lows, *highs)):
        return math.nan, math.nan
    return min(lows), max(highs)


def assess(
    metric: str,
    base: Mapping[int, Measurement],
    new: Mapping[int, Measurement],
    *,
    threshold: float | None = None,
    alpha: float = DEFAULT_ALPHA,
    rule: MetricRule | None = None,
) -> Assessment:
    """Compare the per-seed measurements of one row (seed -> value or (value, ci_low, ci_high)).

    ``threshold`` defaults to the family default; ``rule`` to :func:`metric_rule`. Non-finite
    values are dropped; a side without values gives status ``"undefined"``.
    """
    import numpy as np

    rule = rule or metric_rule(metric)
    if threshold is None:
        threshold = DEFAULT_SPEED_THRESHOLD if rule.family == "speed" else DEFAULT_THRESHOLD
    b, n = _split(base), _split(new)
    nan = math.nan
    if not b or not n:
        return Assessment("undefined", nan, nan, nan, nan, nan, threshold, "none", nan, False, len(b), len(n), 0)
    common = sorted(b.keys() & n.keys())
    if len(common) >= 2:
        test, sb, sn = "paired-t", common, common
    else:
        test, sb, sn = ("welch-t" if len(b) >= 2 and len(n) >= 2 else "intervals"), sorted(b), sorted(n)
    vb = np.array([b[s][0] for s in sb])
    vn = np.array([n[s][0] for s in sn])

    speed = rule.family == "speed"
    floor = max(rule.floor, _EPS)
    if speed:
        cb, cn = float(np.median(vb)), float(np.median(vn))
        fb, fn = np.maximum(vb, floor), np.maximum(vn, floor)
        ratio, rel = float(np.median(fn) / np.median(fb)), nan
        worse = (ratio if rule.higher_is_better is False else 1.0 / ratio) if rule.gated else nan
        xb, xn = np.log(fb), np.log(fn)
    else:
        cb, cn = float(vb.mean()), float(vn.mean())
        ratio, rel = nan, (cn - cb) / max(abs(cb), floor)
        worse = (1.0 - rel if rule.higher_is_better else 1.0 + rel) if rule.gated else nan
        xb, xn = vb, vn

    p = nan
    if test == "paired-t":
        diff, p = _paired_t(xb, xn)
    elif test == "welch-t":
        diff, p = _welch_t(xb, xn)
    else:
        (bl, bh), (nl, nh) = _hull({s: b[s] for s in sb}), _hull({s: n[s] for s in sn})
        if math.isnan(bl) or math.isnan(nl):
            test, diff = "none", nan
        else:
            diff = (nl - bh) if nl > bh else (nh - bl) if nh < bl else 0.0
    # The direction in which the test found a difference, as a worse factor's side.
    if rule.higher_is_better is None or not math.isfinite(diff) or diff == 0.0:
        test_worse = test_better = False
    else:
        test_worse = (diff > 0) != rule.higher_is_better
        test_better = not test_worse
    sig = (p < alpha) if test in ("paired-t", "welch-t") else test == "intervals"
    significant_worse, significant_better = sig and test_worse, sig and test_better

    same = abs(cn - cb) <= 1e-12 * max(abs(cb), abs(cn), _EPS) and np.array_equal(vb, vn)
    if same:
        status = "unchanged"
    elif not rule.gated:
        status = "info"
    elif worse > threshold:
        status = "regression" if significant_worse else "insignificant"
    elif significant_better and (
        (1.0 / worse if worse > 0 else math.inf) > threshold if speed else 1.0 - worse > threshold - 1.0
    ):
        status = "improved"
    else:
        status = "within"
    return Assessment(
        status, cb, cn, rel, ratio, worse, threshold, test, p, significant_worse,
        len(b), len(n), len(common) if test == "paired-t" else 0,
    )


# -- comparing two runs -----------------------------------------------------------------


@dataclass(frozen=True)
class Regression:
    """One reason the gate fails: a metric row, or a cell ok in BASE that failed in NEW."""

    kind: str  # "metric" | "failed_cell"
    adapter: str
    dataset: str
    split: str
    metric: str
    base: float = math.nan
    new: float = math.nan
    worse_factor: float = math.nan
    threshold: float = math.nan
    test: str = ""
    p_value: float = math.nan
    seed: int | None = None
    reason: str = ""

    def describe(self) -> str:
        """One line, e.g. ``mc-dropout / toy-gap / test / rmse_error: 0.44 -> 0.97 (x2.2 worse > x1.10, paired-t p=0.003)``."""
        if self.kind == "failed_cell":
            return f"{self.adapter} / {self.dataset} / seed {self.seed}: ok in BASE, failed in NEW in {self.split}: {self.reason}"
        p = f" p{_fmt_p(self.p_value, sep='=')}" if math.isfinite(self.p_value) else ""
        return (
            f"{self.adapter} / {self.dataset} / {self.split} / {self.metric}: "
            f"{_fmt(self.base)} -> {_fmt(self.new)} (x{self.worse_factor:.3g} worse > "
            f"x{self.threshold:.3g}, {self.test}{p})"
        )


@dataclass
class Comparison:
    """The result of :func:`compare_runs`.

    ``rows`` has one row per joined (adapter, dataset, split, metric) with the fields of
    :class:`Assessment` plus ``family`` and ``higher_is_better``; ``regressions`` lists
    what fails the gate; ``notes`` what was not compared or differs between the runs.
    """

    base_dir: Path
    new_dir: Path
    suite: str
    rows: pd.DataFrame
    regressions: list[Regression]
    notes: list[str]
    alpha: float
    default_threshold: float
    speed_threshold: float
    thresholds: dict[str, float] = field(default_factory=dict)
    seeds: tuple[list[int], list[int]] = ([], [])

    @property
    def exit_code(self) -> int:
        return EXIT_REGRESSION if self.regressions else EXIT_OK


def _load(path: str | Path, what: str) -> tuple[Path, dict[str, Any], pd.DataFrame]:
    from uqbench import store

    run_dir = store.require_run_dir(path)
    record = store.read_run_json(run_dir)
    suite = record.get("suite")
    if not isinstance(suite, Mapping) or not suite.get("name"):
        raise UserError(f"{what} {run_dir / store.RUN_JSON} has no suite; it was not written by `uqbench run`")
    if not (run_dir / store.RESULTS_CSV).is_file():
        raise UserError(f"{what} {run_dir} has no {store.RESULTS_CSV} (no cell has finished)")
    return run_dir, record, store.load_results(run_dir)


def _ordered_unique(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def _brief(value: Any, limit: int = 100) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_thresholds(thresholds: Mapping[str, float], names: Iterable[str]) -> None:
    known = _ordered_unique([*_known_metric_names(), *names])
    for pattern, factor in thresholds.items():
        if not (isinstance(factor, int | float) and factor >= 1.0):
            raise UserError(f"threshold of {pattern!r} must be a number >= 1 (or inf), got {factor!r}")
        if pattern in known or any(fnmatch.fnmatchcase(m, pattern) for m in known):
            continue
        close = difflib.get_close_matches(pattern, known, n=1)
        if not close:
            close = [m for m in known if pattern in m][:1]
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UserError(
            f"--threshold {pattern}: no metric of that name in either run or in `uqbench list`{hint}"
        )


def compare_runs(
    base_dir: str | Path,
    new_dir: str | Path,
    *,
    thresholds: Mapping[str, float] | None = None,
    default_threshold: float = DEFAULT_THRESHOLD,
    speed_threshold: float = DEFAULT_SPEED_THRESHOLD,
    alpha: float = DEFAULT_ALPHA,
) -> Comparison:
    """Compare run ``new_dir`` against run ``base_dir`` (see the module docstring).

    Parameters
    ----------
    thresholds : metric name or shell pattern -> factor (>= 1, ``inf`` = never fail).
    default_threshold, speed_threshold : factors of quality and speed metrics.
    alpha : significance level of the t-tests.

    Raises
    ------
    UserError
        Unusable input: not run directories, no results, unreadable schema versions,
        different suites, no (adapter, dataset) pair in common, unknown threshold names.
    """
    import pandas as pd

    thresholds = dict(thresholds or {})
    for name, f in (("default threshold", default_threshold), ("speed threshold", speed_threshold)):
        if not f >= 1.0:
            raise UserError(f"{name} must be >= 1, got {f!r}")
    if not 0.0 < alpha < 1.0:
        raise UserError(f"alpha must be in (0, 1), got {alpha!r}")
    base_dir, base_rec, base = _load(base_dir, "BASE")
    new_dir, new_rec, new = _load(new_dir, "NEW")
    bs, ns = base_rec["suite"], new_rec["suite"]
    if bs["name"] != ns["name"]:
        raise UserError(
            f"BASE is a run of suite {bs['name']!r} but NEW of suite {ns['name']!r}; "
            "compare runs of the same suite"
        )
    _check_thresholds(thresholds, _ordered_unique([*base["metric"], *new["metric"]]))

    notes: list[str] = []
    for what, rec in (("BASE", base_rec), ("NEW", new_rec)):
        if rec.get("status") not in (None, "complete"):
            notes.append(f"{what} run status is {rec.get('status')!r}: it may be incomplete")
    for key in (
        "datasets", "seeds", "n_samples", "adapters", "adapter_params", "dataset_params", "n_bootstrap", "steps",
        "metrics", "validation_fraction", "device",
    ):
        # Keys added after a run was written read as their default (older run.json files).
        in_base, in_new = bs.get(key, _SUITE_DEFAULTS.get(key)), ns.get(key, _SUITE_DEFAULTS.get(key))
        if in_base != in_new:
            notes.append(f"suite {key} differ: BASE {_brief(in_base)}, NEW {_brief(in_new)}")
    notes += [f"{line} (BASE -> NEW)" for line in provenance_changes(base_rec.get("adapters") or {}, new_rec.get("adapters") or {})]

    def pairs(df: pd.DataFrame) -> list[tuple[str, str]]:
        return _ordered_unique(zip(df["adapter"], df["dataset"], strict=True))

    base_pairs, new_pairs = pairs(base), pairs(new)
    common = [p for p in base_pairs if p in set(new_pairs)]
    if not common:
        raise UserError(
            f"BASE and NEW have no (adapter, dataset) results in common: BASE has "
            f"{_pair_list(base_pairs)}, NEW has {_pair_list(new_pairs)}"
        )
    for what, mine, other in (("BASE", base_pairs, new_pairs), ("NEW", new_pairs, base_pairs)):
        only = [p for p in mine if p not in set(other)]
        if only:
            notes.append(f"only in {what} (not compared): {_pair_list(only)}")
    common_set = set(common)

    def keep(df: pd.DataFrame) -> pd.DataFrame:
        mask = [(a, d) in common_set for a, d in zip(df["adapter"], df["dataset"], strict=True)]
        return df[mask]

    base, new = keep(base), keep(new)
    regressions = _failed_cells(base, new, notes)

    ok_b, ok_n = base[base["status"] == "ok"], new[new["status"] == "ok"]
    gb, gn = _measurements(ok_b), _measurements(ok_n)
    only_b = [k for k in gb if k not in gn]
    only_n = [k for k in gn if k not in gb]
    for what, only in (("BASE", only_b), ("NEW", only_n)):
        if only:
            names = _ordered_unique(f"{s}/{m}" for _, _, s, m in only)
            shown = ", ".join(names[:6]) + (f", ... ({len(names)} in all)" if len(names) > 6 else "")
            notes.append(f"{len(only)} metric row(s) only in {what} (not compared): {shown}")

    order_a = _ordered_unique([a for a, _ in common])
    order_d = _ordered_unique([d for _, d in common])
    records = []
    became_undefined = []
    for k in sorted(
        (k for k in gb if k in gn),
        key=lambda k: (order_a.index(k[0]), order_d.index(k[1])),
    ):
        adapter, dataset, split, metric = k
        rule = metric_rule(metric)
        t = resolve_threshold(
            metric, rule, thresholds, default_threshold=default_threshold, speed_threshold=speed_threshold
        )
        a = assess(metric, gb[k], gn[k], threshold=t, alpha=alpha, rule=rule)
        if a.status == "undefined" and a.n_base and not a.n_new:
            became_undefined.append(f"{adapter}/{dataset}/{split}/{metric}")
        records.append({
            "adapter": adapter, "dataset": dataset, "split": split, "metric": metric,
            "family": rule.family, "higher_is_better": rule.higher_is_better, "floor": rule.floor,
            **asdict(a),
        })
        if a.status == "regression":
            regressions.append(Regression(
                "metric", adapter, dataset, split, metric, a.base, a.new, a.worse_factor,
                a.threshold, a.test, a.p_value,
            ))
    if not records and not regressions:
        raise UserError(
            f"BASE and NEW have no successful results in common on {_pair_list(common)}: nothing to compare"
        )
    if became_undefined:
        shown = ", ".join(became_undefined[:4]) + (", ..." if len(became_undefined) > 4 else "")
        notes.append(f"{len(became_undefined)} row(s) defined in BASE are NaN in every NEW seed: {shown}")
    columns = [
        "adapter", "dataset", "split", "metric", "family", "higher_is_better", "floor",
        *Assessment.__dataclass_fields__,
    ]
    rows = pd.DataFrame.from_records(records, columns=columns)
    return Comparison(
        base_dir, new_dir, str(bs["name"]), rows, regressions, notes, alpha,
        default_threshold, speed_threshold, thresholds,
        (sorted(set(base["seed"].tolist())), sorted(set(new["seed"].tolist()))),
    )


def _pair_list(pairs: Sequence[tuple[str, str]], limit: int = 8) -> str:
    text = ", ".join(f"{a} on {d}" for a, d in pairs[:limit])
    return text + (f", ... ({len(pairs)} in all)" if len(pairs) > limit else "") if pairs else "nothing"


def _measurements(df: pd.DataFrame) -> dict[tuple[str, str, str, str], dict[int, tuple[float, float, float]]]:
    """(adapter, dataset, split, metric) -> seed -> (value, ci_low, ci_high), in row order."""
    out: dict[tuple[str, str, str, str], dict[int, tuple[float, float, float]]] = {}
    columns = ("adapter", "dataset", "split", "metric", "seed", "value", "ci_low", "ci_high")
    for a, d, sp, m, s, v, lo, hi in zip(*(df[c].tolist() for c in columns), strict=True):
        out.setdefault((a, d, sp, m), {})[int(s)] = (float(v), float(lo), float(hi))
    return out


def _failed_cells(base: pd.DataFrame, new: pd.DataFrame, notes: list[str]) -> list[Regression]:
    """Regressions for cells ok in BASE and failed in NEW; notes for the other failures."""
    def status(df: pd.DataFrame) -> dict[tuple[str, str, int], tuple[str, str, str]]:
        out: dict[tuple[str, str, int], tuple[str, str, str]] = {}
        for a, d, s, st, split, err in zip(
            df["adapter"], df["dataset"], df["seed"], df["status"], df["split"], df["error"], strict=True
        ):
            k = (a, d, int(s))
            if st == "failed" or k not in out:
                out[k] = (st, split, err)
        return out

    sb, sn = status(base), status(new)
    regressions = []
    for k, (st, stage, err) in sn.items():
        before = sb.get(k, ("missing", "", ""))[0]
        if st != "failed":
            if before == "failed":
                notes.append(f"fixed: {k[0]} / {k[1]} / seed {k[2]} failed in BASE, ok in NEW")
            continue
        if before == "ok":
            regressions.append(Regression("failed_cell", k[0], k[1], stage, "", seed=k[2], reason=err))
        else:
            why = "failed in BASE too" if before == "failed" else "no BASE cell"
            notes.append(f"{k[0]} / {k[1]} / seed {k[2]} failed in NEW in {stage} ({why}): {err}")
    return regressions


# -- rendering --------------------------------------------------------------------------


def _fmt(x: Any) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—" if x is None or math.isnan(x) else str(x)
    return f"{x:.4g}"


def _fmt_p(p: float, sep: str = "") -> str:
    if not math.isfinite(p):
        return "—"
    return "<0.001" if p < 0.001 else f"{sep}{p:.3f}"


def _change(r: Mapping[str, Any]) -> str:
    """Speed: the floored ratio; quality: the relative change, or the absolute one below the floor."""
    if r["family"] == "speed":
        if not math.isfinite(r["ratio"]):
            return "—"
        below = r["floor"] > 0 and min(r["base"], r["new"]) < r["floor"]
        return f"x{r['ratio']:.3g}" + (" (floor)" if below else "")
    rel, diff = r["rel_change"], r["new"] - r["base"]
    if not math.isfinite(rel):
        return "—"
    if abs(r["base"]) < r["floor"]:
        return f"{diff:+.3g} abs"
    return f"{rel:+.1%}"


def _display_rows(c: Comparison, show_all: bool) -> list[dict[str, Any]]:
    rows = c.rows.to_dict("records")
    if not show_all:
        rows = [r for r in rows if r["status"] in _SHOWN]
    rank = {s: i for i, s in enumerate(STATUSES)}
    return sorted(rows, key=lambda r: rank[r["status"]])  # stable: run order within a status


_HEADER = ["adapter", "dataset", "split", "metric", "base", "new", "change", "limit", "test", "p", "verdict"]


def _cells(r: Mapping[str, Any]) -> list[str]:
    limit = f"x{r['threshold']:.3g}" if r["family"] != "info" and r["higher_is_better"] is not None else ""
    return [
        r["adapter"], r["dataset"], r["split"], r["metric"], _fmt(r["base"]), _fmt(r["new"]),
        _change(r), limit, r["test"], _fmt_p(r["p_value"]), _LABELS[r["status"]],
    ]


def _heading(c: Comparison) -> str:
    over = ", ".join(f"{k} x{v:g}" for k, v in c.thresholds.items())
    return (
        f"suite {c.suite}; seeds BASE {_seeds(c.seeds[0])}, NEW {_seeds(c.seeds[1])}; "
        f"alpha {c.alpha:g}; limits: quality x{c.default_threshold:g}, speed x{c.speed_threshold:g}"
        + (f", {over}" if over else "")
    )


def _seeds(seeds: Sequence[int]) -> str:
    return ",".join(str(s) for s in seeds) or "none"


def _counts(c: Comparison) -> str:
    counts = c.rows["status"].value_counts() if len(c.rows) else {}
    parts = [f"{counts.get(s, 0)} {_LABELS[s].lower()}" for s in STATUSES if counts.get(s, 0)]
    return f"{len(c.rows)} rows compared: " + (", ".join(parts) if parts else "none")


def _verdict(c: Comparison) -> str:
    n = len(c.regressions)
    if not n:
        return "uqbench compare: no regressions (exit 0)"
    return f"uqbench compare: {n} regression(s) (exit 1)"


def render_text(c: Comparison, *, show_all: bool = False, width: int = 200) -> str:
    """Plain-text report: heading, a table of the notable rows, failed cells, notes, verdict."""
    from rich.console import Console
    from rich.table import Table

    buf = io.StringIO()
    console = Console(file=buf, width=width, color_system=None, force_terminal=False, force_jupyter=False, highlight=False)
    console.print(f"BASE {c.base_dir}\nNEW  {c.new_dir}\n{_heading(c)}", soft_wrap=True)
    rows = _display_rows(c, show_all)
    if rows:
        table = Table(title=None if show_all else "changes beyond the limits", title_justify="left")
        for i, h in enumerate(_HEADER):
            table.add_column(h, justify="right" if 4 <= i <= 9 else "left", no_wrap=i < 4)
        for r in rows:
            table.add_row(*_cells(r))
        console.print(table)
    else:
        console.print("no metric changed beyond its limit")
    console.print(_counts(c), soft_wrap=True)
    failed = [r for r in c.regressions if r.kind == "failed_cell"]
    if failed:
        console.print(f"{len(failed)} cell(s) ok in BASE failed in NEW:", soft_wrap=True)
        for r in failed:
            console.print(f"  {r.describe()}", soft_wrap=True)
    if c.notes:
        console.print("notes:")
        for note in c.notes:
            console.print(f"  {note}", soft_wrap=True)
    metric_regs = [r for r in c.regressions if r.kind == "metric"]
    if metric_regs:
        console.print("regressions:")
        for r in metric_regs:
            console.print(f"  {r.describe()}", soft_wrap=True)
    console.print(_verdict(c), soft_wrap=True)
    return "".join(line.rstrip() + "\n" for line in buf.getvalue().splitlines())


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _md_table(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    right = {"base", "new", "change", "limit", "p"}
    lines = [
        "| " + " | ".join(_HEADER) + " |",
        "|" + "|".join("---:" if h in right else "---" for h in _HEADER) + "|",
    ]
    for r in rows:
        cells = _cells(r)
        if r["status"] == "regression":
            cells[-1] = f"**{cells[-1]}**"
        lines.append("| " + " | ".join(_md(x) for x in cells) + " |")
    return lines


def render_markdown(c: Comparison, *, show_all: bool = False) -> str:
    """GitHub-flavoured markdown for a CI comment: verdict, pipe table, failed cells, notes."""
    n = len(c.regressions)
    title = f"**{n} regression(s)**" if n else "no regressions"
    lines = [
        f"### uqbench compare: {title}",
        "",
        f"BASE `{c.base_dir}` vs NEW `{c.new_dir}`; {_heading(c)}",
        "",
    ]
    rows = _display_rows(c, show_all)
    regressed = [r for r in rows if r["status"] == "regression"]
    others = [r for r in rows if r["status"] != "regression"]
    if regressed:
        lines += _md_table(regressed)
    if others:
        what = "compared rows" if show_all else "changes beyond the limits (not significant, or improvements)"
        lines += ["", f"<details><summary>{len(others)} other {what}</summary>", ""]
        lines += [*_md_table(others), "", "</details>"]
    if not rows:
        lines.append("No metric changed beyond its limit.")
    lines += ["", _counts(c) + "."]
    failed = [r for r in c.regressions if r.kind == "failed_cell"]
    if failed:
        lines += ["", "**Cells ok in BASE that failed in NEW:**", ""]
        lines += [f"- {_md(r.describe())}" for r in failed]
    if c.notes:
        lines += ["", "Notes:", ""]
        lines += [f"- {_md(note)}" for note in c.notes]
    return "\n".join(lines) + "\n"


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str):  # numpy scalar
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return str(value)
    return value


def render_json(c: Comparison) -> str:
    """JSON: ``exit_code``, ``regressions`` (list of objects), ``notes``, settings and every ``rows`` entry; NaN -> null."""
    data = {
        "exit_code": c.exit_code,
        "regressions": [{**asdict(r), "message": r.describe()} for r in c.regressions],
        "notes": c.notes,
        "base": c.base_dir,
        "new": c.new_dir,
        "suite": c.suite,
        "seeds": {"base": c.seeds[0], "new": c.seeds[1]},
        "alpha": c.alpha,
        "default_threshold": c.default_threshold,
        "speed_threshold": c.speed_threshold,
        "thresholds": c.thresholds,
        "counts": {s: int((c.rows["status"] == s).sum()) for s in STATUSES},
        "rows": c.rows.to_dict("records"),
    }
    return json.dumps(_jsonable(data), indent=2, allow_nan=False) + "\n"


def render(c: Comparison, fmt: str = "text", *, show_all: bool = False) -> str:
    if fmt == "json":
        return render_json(c)
    if fmt == "markdown":
        return render_markdown(c, show_all=show_all)
    if fmt == "text":
        return render_text(c, show_all=show_all)
    raise ValueError(f"unknown format {fmt!r}; expected one of {FORMATS}")


# -- command line -----------------------------------------------------------------------


def _factor(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value >= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number >= 1 (or inf), got {text!r}")
    return value


def _threshold_item(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected METRIC=FACTOR, e.g. nll_loss=1.05, got {text!r}")
    try:
        return name.strip(), _factor(value.strip())
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{name.strip()}: {exc}") from None


def _alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1), got {text!r}")
    return value


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``compare`` to the ``uqbench`` sub-commands."""
    p = subparsers.add_parser(
        "compare",
        help="compare two run directories; exit 1 on a significant regression (CI gate)",
        description=(
            "Join two run directories on (adapter, dataset, split, metric) and report what "
            "changed. Exit 1 when a metric got worse by more than its factor AND the change "
            "is significant over the seeds (paired t-test on common seeds, else Welch's, "
            "else non-overlapping bootstrap intervals), or when a cell ok in BASE failed in "
            "NEW; exit 0 otherwise; exit 2 on unusable input. Quality metrics: relative "
            "change of the mean, |BASE| floored per metric; speed metrics (times, memory): "
            "ratio of the medians over seeds."
        ),
    )
    p.add_argument("base", metavar="BASE", help="the reference run directory")
    p.add_argument("new", metavar="NEW", help="the run directory to check")
    p.add_argument(
        "--threshold", type=_threshold_item, action="append", metavar="METRIC=FACTOR",
        help="per-metric factor (repeatable; METRIC may be a pattern like '*_seconds'; inf: never fail)",
    )
    p.add_argument(
        "--default-threshold", type=_factor, default=DEFAULT_THRESHOLD, metavar="F",
        help=f"factor for quality metrics (default {DEFAULT_THRESHOLD})",
    )
    p.add_argument(
        "--speed-threshold", type=_factor, default=DEFAULT_SPEED_THRESHOLD, metavar="F",
        help=f"factor for time and memory metrics, a ratio of medians (default {DEFAULT_SPEED_THRESHOLD})",
    )
    p.add_argument(
        "--alpha", type=_alpha, default=DEFAULT_ALPHA, metavar="A",
        help=f"significance level of the t-tests (default {DEFAULT_ALPHA})",
    )
    p.add_argument("--format", choices=FORMATS, default="text", help="output format (default text)")
    p.add_argument("--all", action="store_true", help="show every compared row, not only changes beyond the limits")
    p.set_defaults(func=cmd_compare)
    return p


def cmd_compare(args: argparse.Namespace, catalog: Any = None) -> int:
    """Run ``uqbench compare``: print the report on stdout, return 0 / 1 (UserError -> 2)."""
    comparison = compare_runs(
        args.base,
        args.new,
        thresholds=dict(args.threshold or []),
        default_threshold=args.default_threshold,
        speed_threshold=args.speed_threshold,
        alpha=args.alpha,
    )
    sys.stdout.write(render(comparison, args.format, show_all=args.all))
    sys.stdout.flush()
    return comparison.exit_code
