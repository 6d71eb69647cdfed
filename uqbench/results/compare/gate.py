"""The gate: one row's verdict (:func:`assess`) and two runs joined (:func:`compare_runs`).

See :mod:`uqbench.results.compare` for the rules.
"""

from __future__ import annotations

import dataclasses
import difflib
import fnmatch
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from uqbench import store
from uqbench.errors import UserError
from uqbench.registry import provenance_changes
from uqbench.results.compare.rules import (
    DEFAULT_ALPHA,
    DEFAULT_SPEED_THRESHOLD,
    DEFAULT_THRESHOLD,
    EPS,
    MetricRule,
    known_metric_names,
    metric_rule,
    resolve_threshold,
)
from uqbench.results.formatting import format_number, format_p
from uqbench.results.stats import paired_t_test, welch_t_test
from uqbench.suites import Suite

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["EXIT_OK", "EXIT_REGRESSION", "Assessment", "Comparison", "Measurement", "Regression", "assess", "compare_runs"]

EXIT_OK, EXIT_REGRESSION = 0, 1
_SUITE_DEFAULTS = {
    f.name: f.default for f in dataclasses.fields(Suite) if f.default is not dataclasses.MISSING
}

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
    floor = max(rule.floor, EPS)
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
        diff, p = paired_t_test(xb, xn)
    elif test == "welch-t":
        diff, p = welch_t_test(xb, xn)
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

    same = abs(cn - cb) <= 1e-12 * max(abs(cb), abs(cn), EPS) and np.array_equal(vb, vn)
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
        p = f" p{format_p(self.p_value, sep='=')}" if math.isfinite(self.p_value) else ""
        return (
            f"{self.adapter} / {self.dataset} / {self.split} / {self.metric}: "
            f"{format_number(self.base, 4)} -> {format_number(self.new, 4)} (x{self.worse_factor:.3g} worse > "
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
    run_dir = store.require_run_dir(path)
    record = store.read_run_json(run_dir)
    suite = record.get("suite")
    if not isinstance(suite, Mapping) or not suite.get("name"):
        raise UserError(f"{what} {run_dir / store.RUN_JSON} has no suite; it was not written by `uqbench run`")
    if not (run_dir / store.RESULTS_CSV).is_file():
        raise UserError(f"{what} {run_dir} has no {store.RESULTS_CSV} (no cell has finished)")
    return run_dir, record, store.load_results(run_dir, arrays=False)  # rows only: a baseline keeps no arrays


def _ordered_unique(values: Iterable[Any]) -> list[Any]:
    return list(dict.fromkeys(values))


def _brief(value: Any, limit: int = 100) -> str:
    text = json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _check_thresholds(thresholds: Mapping[str, float], names: Iterable[str]) -> None:
    known = _ordered_unique([*known_metric_names(), *names])
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


