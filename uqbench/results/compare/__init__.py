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
   :mod:`uqbench.results.parity`), centres computed over the same seeds;
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

The package: :mod:`~uqbench.results.compare.rules` (families, directions, floors,
thresholds), :mod:`~uqbench.results.compare.gate` (one row's verdict, two runs joined) and
:mod:`~uqbench.results.compare.render` (text, markdown, JSON); the t-tests are
:mod:`uqbench.results.stats`. The command line is in :mod:`uqbench.cli`.
"""

from __future__ import annotations

from uqbench.results.compare.gate import (
    EXIT_OK,
    EXIT_REGRESSION,
    Assessment,
    Comparison,
    Measurement,
    Regression,
    assess,
    compare_runs,
)
from uqbench.results.compare.render import (
    FORMATS,
    render,
    render_json,
    render_markdown,
    render_text,
)
from uqbench.results.compare.rules import (
    DEFAULT_ALPHA,
    DEFAULT_SPEED_THRESHOLD,
    DEFAULT_THRESHOLD,
    INFO_METRICS,
    SPEED_FLOORS,
    STATUSES,
    MetricRule,
    metric_rule,
    resolve_threshold,
)

__all__ = [
    "DEFAULT_ALPHA",
    "DEFAULT_SPEED_THRESHOLD",
    "DEFAULT_THRESHOLD",
    "EXIT_OK",
    "EXIT_REGRESSION",
    "FORMATS",
    "INFO_METRICS",
    "SPEED_FLOORS",
    "STATUSES",
    "Assessment",
    "Comparison",
    "Measurement",
    "MetricRule",
    "Regression",
    "assess",
    "compare_runs",
    "metric_rule",
    "render",
    "render_json",
    "render_markdown",
    "render_text",
    "resolve_threshold",
]
