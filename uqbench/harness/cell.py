"""Running one cell: fit, sample every split, evaluate, collect the report's arrays.

A cell is a sequence of **steps**, each a function ``step(ctx: CellContext) -> None``
that reads what earlier steps left in the context and adds rows (``ctx.add``) and arrays
(``ctx.arrays``). The core steps always run::

    fit -> sample -> metrics -> [optional steps] -> arrays

Optional steps are switched on per run (``Suite.steps``) and run after ``metrics``.
Adding one (e.g. the gradient-variance probe)::

    def probe_step(ctx: CellContext) -> None:
        value = ...  # use ctx.adapter, ctx.dataset, ctx.seed("probe")
        ctx.add("probe", "grad_variance", value)

    OPTIONAL_STEPS["probe"] = probe_step   # then `--probe` appends "probe" to Suite.steps

Any exception in a step marks the cell failed with a one-line reason (exception type and
message) and the step it happened in; rows of a failed cell are discarded and replaced by
one ``status="failed"`` row. ``KeyboardInterrupt`` is not caught: the run stops and the
cell is redone on resume.

Reconstruction cells (autoencoders on image data) differ in three ways: they draw at
least ``RECONSTRUCTION_MIN_DRAWS`` samples per split whatever the suite's ``n_samples``;
the metrics also get the inputs (``evaluate(..., X=)``, ``evaluate_ood(..., X_in=,
X_ood=)``; the targets are the class labels); and ``arrays`` also saves the ``latent/*``
arrays of the report's latent-variable figures and, when the adapter has ``generate``,
its decoded images under ``generate/<name>``.
"""

from __future__ import annotations

import hashlib
import math
import numbers
import time
import traceback
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from uqbench.harness.grid import Cell
from uqbench.harness.timing import RSSSampler, format_bytes, measure, sample_byte_limit
from uqbench.interface import (
    ClassificationSamples,
    ReconstructionSamples,
    RegressionSamples,
    fit_keywords,
    n_parameters,
    validation_split,
)
from uqbench.store import make_row

_CONTAINERS = {
    "regression": RegressionSamples,
    "classification": ClassificationSamples,
    "reconstruction": ReconstructionSamples,
}
N_GRID_DRAWS = 10  # draws of the toy-data grid kept for the report figure
# Autoencoders' importance-weighted log p(x) (log_px_iwae_score) uses the S draws as its
# k importance samples and is NaN below k = 100, where the bound is visibly looser; so
# reconstruction cells draw max(n_samples, 100) samples per split.
RECONSTRUCTION_MIN_DRAWS = 100
N_RECON_EXAMPLES = 8  # test images whose reconstructions the report shows
N_INTERPOLATION_PAIRS = 4  # pairs of those images handed to the adapter's generate()
# The containers' own tolerance, so draws the harness admits are draws the metrics accept.
_PROB_ATOL = ClassificationSamples.PROB_TOL


class InvalidSamplesError(ValueError):
    """An adapter returned samples of the wrong type, shape or with non-finite values."""


class SampleBudgetError(MemoryError):
    """A cell's predictive draws would not fit the sample-memory limit (:func:`sample_byte_limit`)."""




def draws_for(mode: str | None, n_samples: int) -> int:
    """Predictive draws S per split of a cell running as ``mode``: reconstruction at least 100."""
    return max(n_samples, RECONSTRUCTION_MIN_DRAWS) if mode == "reconstruction" else n_samples


def derive_seed(seed: int, name: str) -> int:
    """A seed for purpose ``name`` (e.g. ``"fit"``, ``"sample:test"``) of cell seed ``seed``.

    Stable across runs, processes and Python versions (crc32, not ``hash``); distinct
    purposes get independent streams. Fits in 31 bits so every backend accepts it.
    """
    ss = np.random.SeedSequence([int(seed), zlib.crc32(name.encode("utf-8"))])
    return int(ss.generate_state(1, dtype=np.uint32)[0]) & 0x7FFFFFFF


def sample_bytes(ctx: CellContext) -> tuple[int, int, int]:
    """(estimated bytes, points N over every split, outputs per point) of a cell's predictive draws.

    ``S x N x outputs x 8`` with N summed over the splits the cell keeps at once (test,
    each OOD set as subsampled, the toy plot grid) and outputs the float64 values of one
    draw at one point: ``2 D`` for regression (loc and scale), ``C`` for classification,
    the ``D`` input pixels for reconstruction. Computed from the dataset alone, so it is
    known before the adapter is fitted.
    """
    ds = ctx.dataset
    n_points = sum(len(X) for _, X, _ in ctx.splits())
    if ctx.mode == "regression":
        if ds.plot_grid is not None:
            n_points += len(ds.plot_grid)
        y = np.asarray(ds.y_train)
        outputs = 2 * (y.shape[1] if y.ndim == 2 else 1)
    elif ctx.mode == "classification":
        outputs = int(ds.n_classes or int(np.max(ds.y_train)) + 1)
    else:
        outputs = int(np.prod(np.shape(ds.X_train)[1:], dtype=np.int64))
    return ctx.n_samples * n_points * outputs * 8, n_points, outputs


def check_sample_budget(ctx: CellContext) -> None:
    """Raise :class:`SampleBudgetError` when :func:`sample_bytes` exceeds :func:`sample_byte_limit`."""
    estimate, n_points, outputs = sample_bytes(ctx)
    limit, source = sample_byte_limit()
    if estimate > limit:
        raise SampleBudgetError(
            f"predictive draws need about {format_bytes(estimate)} (S={ctx.n_samples:,} x N={n_points:,} "
            f"points x {outputs} outputs x 8 bytes), over the limit of {format_bytes(limit)} ({source})"
        )


def one_line(exc: BaseException) -> str:
    """``"Type: message"`` on one line, at most 300 characters."""
    message = " ".join(str(exc).split())
    text = f"{type(exc).__name__}: {message}" if message else type(exc).__name__
    return text if len(text) <= 300 else text[:297] + "..."


@dataclass
class CellContext:
    """What the steps of one cell share.

    Attributes
    ----------
    n_samples : the draws S per split (see :func:`draws_for`).
    validation_fraction : the share of the training split held out for an adapter whose
        ``fit`` takes ``X_val`` (see :func:`validation_split`).
    samples, targets, inputs : split -> samples (original target units), targets
        (original units; labels for classification and reconstruction; None when the
        split has none) and inputs, for ``"test"`` and each ``"ood:<name>"``.
    record : JSON-safe facts about the cell for its ``cells/<key>.json`` (e.g. the
        validation rows held out and the ``fit`` keywords passed).
    """

    cell: Cell
    mode: str  # the task the adapter runs as (cell.mode of an applicable cell)
    dataset: Any
    adapter: Any
    n_samples: int
    n_bootstrap: int
    metrics: Any
    validation_fraction: float = 0.0
    rows: list[dict[str, Any]] = field(default_factory=list)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)
    times: dict[str, Any] = field(default_factory=dict)
    samples: dict[str, Any] = field(default_factory=dict)
    targets: dict[str, np.ndarray | None] = field(default_factory=dict)
    inputs: dict[str, np.ndarray] = field(default_factory=dict)
    record: dict[str, Any] = field(default_factory=dict)

    def seed(self, name: str) -> int:
        return derive_seed(self.cell.seed, name)

    def add(self, split: str, metric: str, value: float, ci_low: float = math.nan, ci_high: float = math.nan) -> None:
        c = self.cell
        self.rows.append(make_row(c.adapter, c.dataset, c.seed, split, metric, value, ci_low, ci_high))

    def splits(self) -> list[tuple[str, np.ndarray, np.ndarray | None]]:
        """(split, X, targets in the dataset's units) for test and every OOD set.

        An OOD set larger than ``MAX_OOD_POINTS`` is evaluated on a seeded random subset of
        that many points (the test split never is): S draws of a 10,000-image set would
        otherwise take gigabytes, and the OOD metrics' intervals are already tight there.
        """
        ds = self.dataset
        out = [("test", ds.X_test, ds.y_test)]
        for name, o in ds.ood.items():
            split = f"ood:{name}"
            X, y = o.X, o.y
            keep = ood_subset(len(X), self.cell.seed, split)
            if keep is not None:
                X, y = X[keep], None if y is None else y[keep]
            out.append((split, X, y))
        return out


CellStep = Callable[[CellContext], None]

MAX_OOD_POINTS = 2000


def ood_subset(n_points: int, cell_seed: int, split: str) -> np.ndarray | None:
    """Sorted indices ``[MAX_OOD_POINTS]`` of the OOD points a cell evaluates, None for all.

    Seeded by the cell seed and the split name only, so every adapter's cell of one
    (dataset, seed) sees the same points.
    """
    if n_points <= MAX_OOD_POINTS:
        return None
    rng = np.random.default_rng(derive_seed(cell_seed, f"subset:{split}"))
    return np.sort(rng.choice(n_points, MAX_OOD_POINTS, replace=False))


# -- unit conversion and validation ------------------------------------------------------


def target_scaler(dataset: Any) -> tuple[np.ndarray, np.ndarray] | None:
    """(mean, std) to map standardized regression targets back to original units."""
    if dataset.task != "regression":
        return None
    mean, std = getattr(dataset, "target_mean", None), getattr(dataset, "target_std", None)
    if mean is None or std is None:
        return None
    return np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64)


def to_original_units(samples: Any, y: np.ndarray | None, scaler: tuple[np.ndarray, np.ndarray] | None) -> tuple[Any, np.ndarray | None]:
    """Regression samples and targets in original units (``loc*std+mean``, ``scale*std``)."""
    if scaler is None or not isinstance(samples, RegressionSamples):
        return samples, y
    mean, std = scaler
    converted = RegressionSamples(samples.loc * std + mean, samples.scale * std)
    return converted, None if y is None else np.asarray(y) * std + mean


def check_samples(
    samples: Any,
    *,
    mode: str,
    n_samples: int,
    X: np.ndarray,
    y: np.ndarray | None,
    split: str,
) -> None:
    """Raise :class:`InvalidSamplesError` unless ``samples`` fit the contract for ``X``."""
    expected = _CONTAINERS[mode]
    if not isinstance(samples, expected):
        raise InvalidSamplesError(f"{split}: expected {expected.__name__}, got {type(samples).__name__}")
    if isinstance(samples, RegressionSamples):
        arrays = {"loc": samples.loc, "scale": samples.scale}
    elif isinstance(samples, ClassificationSamples):
        arrays = {"probs": samples.probs}
    else:
        arrays = {"recon": samples.recon, "latent": samples.latent}
        for name in ("latent_mean", "latent_scale", "recon_scale"):
            if getattr(samples, name) is not None:
                arrays[name] = getattr(samples, name)
    n = X.shape[0]
    for name, a in arrays.items():
        if a.shape[:2] != (n_samples, n):
            raise InvalidSamplesError(f"{split}: {name} has shape {a.shape}, expected ({n_samples}, {n}, ...)")
        if not np.issubdtype(a.dtype, np.floating):
            raise InvalidSamplesError(f"{split}: {name} has dtype {a.dtype}, expected floating point")
        bad = int(a.size - np.count_nonzero(np.isfinite(a)))
        if bad:
            raise InvalidSamplesError(f"{split}: {name} has {bad} non-finite values (NaN/inf)")
    if isinstance(samples, RegressionSamples):
        if y is not None and samples.loc.shape[2] != y.shape[1]:
            raise InvalidSamplesError(f"{split}: loc has D={samples.loc.shape[2]}, targets have D={y.shape[1]}")
        if np.any(samples.scale < 0):
            raise InvalidSamplesError(f"{split}: scale has negative values")
    elif isinstance(samples, ClassificationSamples):
        p = samples.probs
        if y is not None and y.size and p.shape[2] <= int(np.max(y)):
            raise InvalidSamplesError(f"{split}: probs has C={p.shape[2]} classes, labels go up to {int(np.max(y))}")
        if np.any(p < -_PROB_ATOL) or np.any(p > 1 + _PROB_ATOL):
            raise InvalidSamplesError(f"{split}: probs outside [0, 1]")
        worst = float(np.max(np.abs(p.sum(axis=-1) - 1.0))) if p.size else 0.0
        if worst > _PROB_ATOL:
            raise InvalidSamplesError(f"{split}: probs do not sum to 1 (off by up to {worst:.3g})")
    else:
        if samples.recon.shape[2] != X.shape[1]:
            raise InvalidSamplesError(f"{split}: recon has D={samples.recon.shape[2]}, inputs have {X.shape[1]}")
        # The container checks that latent_* match latent and recon_scale matches recon.
        for name in ("latent_scale", "recon_scale"):
            scale = getattr(samples, name)
            if scale is not None and np.any(scale < 0):
                raise InvalidSamplesError(f"{split}: {name} has negative values")


def point_scores(samples: Any, *, X: np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Per-point uncertainty scores ``[N]``: epistemic, total, aleatoric.

    The fallback for metrics objects without ``ood_scores``. Classification uses the
    entropy decomposition (mutual information, predictive entropy, expected entropy, in
    nats); regression the variance decomposition summed over outputs; reconstruction the
    encoder's epistemic variance and the latent draws' variance (``X`` is accepted for
    the signature of ``uqbench.metrics.ood_scores``; the negative ELBO needs the metrics).
    """
    if isinstance(samples, ClassificationSamples):
        return {
            "epistemic": samples.mutual_information(),
            "total": samples.predictive_entropy(),
            "aleatoric": samples.expected_entropy(),
        }
    if isinstance(samples, RegressionSamples):
        return {
            "epistemic": samples.epistemic_variance().sum(axis=-1),
            "total": samples.total_variance().sum(axis=-1),
            "aleatoric": samples.aleatoric_variance().sum(axis=-1),
        }
    return {"epistemic": samples.epistemic_variance(), "latent_variance": samples.latent_variance()}


# -- core steps --------------------------------------------------------------------------


def fit_inputs(ctx: CellContext) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """(X, y, keywords) for ``ctx.adapter.fit``, per the opt-in keywords its ``fit`` names.

    An adapter naming ``X_val`` gets the validation split (:func:`validation_split`, seeded
    by the cell seed's ``"validation"`` stream: the same rows for every adapter of a
    (dataset, seed)) as ``X_val``/``y_val`` and trains on the remaining rows; the others
    get the whole training split. ``n_classes`` is the dataset's (None unless
    classification); ``n_train`` the training split's size before the carve-out. Records
    what was passed in ``ctx.record``.
    """
    ds = ctx.dataset
    X, y = ds.X_train, (None if ctx.mode == "reconstruction" else ds.y_train)
    wanted = fit_keywords(ctx.adapter)
    kwargs: dict[str, Any] = {}
    validation = None
    if "X_val" in wanted:
        seed = ctx.seed("validation")
        fit_rows, val_rows = validation_split(len(X), ctx.validation_fraction, seed)
        if len(val_rows):
            kwargs["X_val"] = X[val_rows]
            if "y_val" in wanted:
                kwargs["y_val"] = None if y is None else y[val_rows]
            X, y = X[fit_rows], None if y is None else y[fit_rows]
        else:
            kwargs["X_val"] = None
            if "y_val" in wanted:
                kwargs["y_val"] = None
        validation = {
            "fraction": ctx.validation_fraction,
            "seed": seed,
            "n_validation": len(val_rows),
            "n_fit": len(fit_rows),
            "rows_sha256": hashlib.sha256(np.asarray(val_rows, dtype="<i8").tobytes()).hexdigest(),
        }
    if "n_classes" in wanted:
        kwargs["n_classes"] = ds.n_classes if ctx.mode == "classification" else None
    if "n_train" in wanted:
        kwargs["n_train"] = len(ds.X_train)
    ctx.record["validation"] = validation
    ctx.record["fit_keywords"] = sorted(kwargs)
    return X, y, kwargs


def fit_step(ctx: CellContext) -> None:
    """Fit (timed) on :func:`fit_inputs`; rows for time, memory, size and ``diagnostics_``.

    An adapter's ``diagnostics_`` (a flat dict set by ``fit``: a tuned prior precision, a
    step size, an acceptance rate, R-hat...) gives one row per numeric scalar entry, split
    ``"diagnostics"``, metric = key; other entries are ignored.
    """
    X, y, kwargs = fit_inputs(ctx)
    with measure() as m:
        ctx.adapter.fit(X, y, seed=ctx.seed("fit"), **kwargs)
    n_params = n_parameters(ctx.adapter)
    ctx.add("fit", "fit_wall_seconds", m.wall_seconds)
    ctx.add("fit", "fit_cpu_seconds", m.cpu_seconds)
    ctx.add("fit", "fit_peak_rss_mb", m.peak_rss_mb)
    ctx.add("fit", "n_parameters", math.nan if n_params is None else float(n_params))
    ctx.times["fit_wall_seconds"] = m.wall_seconds
    ctx.times["fit_cpu_seconds"] = m.cpu_seconds
    diagnostics = getattr(ctx.adapter, "diagnostics_", None)
    if isinstance(diagnostics, Mapping):
        for key, value in diagnostics.items():
            if _is_number(value):
                ctx.add("diagnostics", str(key), float(value))


def sample_step(ctx: CellContext) -> None:
    scaler = target_scaler(ctx.dataset)
    per_draw: dict[str, float] = {}
    sampler = RSSSampler().start()
    try:
        for split, X, y in ctx.splits():
            t0 = time.perf_counter()
            s = ctx.adapter.sample_predictive(X, n_samples=ctx.n_samples, seed=ctx.seed(f"sample:{split}"))
            wall = time.perf_counter() - t0
            check_samples(s, mode=ctx.mode, n_samples=ctx.n_samples, X=X, y=y, split=split)
            ctx.samples[split], ctx.targets[split] = to_original_units(s, y, scaler)
            ctx.inputs[split] = X
            per_draw[split] = wall / ctx.n_samples
    finally:
        peak = sampler.stop()
    n_test = ctx.dataset.X_test.shape[0]
    ctx.add("sample", "sample_seconds_per_draw", per_draw["test"])
    # Point-draws per second on the test split: S * N / wall.
    ctx.add("sample", "samples_per_second", n_test / per_draw["test"] if per_draw["test"] > 0 else math.inf)
    ctx.add("sample", "sample_peak_rss_mb", peak)
    ctx.times["sample_seconds_per_draw"] = per_draw


def _inputs(ctx: CellContext, split: str, name: str = "X") -> dict[str, np.ndarray]:
    """``{name: inputs of split}`` for reconstruction (its metrics score against the inputs), else {}."""
    return {name: ctx.inputs[split]} if ctx.mode == "reconstruction" else {}


def metrics_step(ctx: CellContext) -> None:
    m, nb = ctx.metrics, ctx.n_bootstrap
    test = ctx.samples["test"]
    values = m.evaluate(test, ctx.targets["test"], seed=ctx.seed("bootstrap:test"), n_bootstrap=nb, **_inputs(ctx, "test"))
    for v in values:
        ctx.add("test", v.name, v.value, v.ci_low, v.ci_high)
    for split in ctx.samples:
        if split == "test":
            continue
        inputs = {**_inputs(ctx, "test", "X_in"), **_inputs(ctx, split, "X_ood")}
        values = list(
            m.evaluate_ood(test, ctx.samples[split], seed=ctx.seed(f"bootstrap:{split}"), n_bootstrap=nb, **inputs)
        )
        if ctx.targets[split] is not None:
            # Labelled OOD sets (e.g. shifted images): also how well the model does there.
            seen = {v.name for v in values}
            values += [
                v
                for v in m.evaluate(
                    ctx.samples[split],
                    ctx.targets[split],
                    seed=ctx.seed(f"bootstrap:{split}:labels"),
                    n_bootstrap=nb,
                    **_inputs(ctx, split),
                )
                if v.name not in seen
            ]
        for v in values:
            ctx.add(split, v.name, v.value, v.ci_low, v.ci_high)


def arrays_step(ctx: CellContext) -> None:
    """Curves, per-point scores per split and, for toy data, the grid predictions;
    for reconstruction the latent-variable arrays (:func:`latent_arrays`)."""
    a = ctx.arrays
    for name, value in ctx.metrics.curves(ctx.samples["test"], ctx.targets["test"]).items():
        a[f"curves/{name}"] = np.asarray(value)
    # The metrics' own per-point scores when it has them, so the report ranks exactly
    # what the AUROCs ranked.
    scores_fn = getattr(ctx.metrics, "ood_scores", None) or point_scores
    for split, samples in ctx.samples.items():
        for kind, score in scores_fn(samples, **_inputs(ctx, split)).items():
            a[f"scores/{split}/{kind}"] = np.asarray(score, dtype=np.float64)
    if ctx.mode == "reconstruction":
        latent_arrays(ctx)
    ds = ctx.dataset
    if ds.plot_grid is None or ctx.mode != "regression":
        return
    grid = ds.plot_grid
    s = ctx.adapter.sample_predictive(grid, n_samples=ctx.n_samples, seed=ctx.seed("sample:grid"))
    check_samples(s, mode="regression", n_samples=ctx.n_samples, X=grid, y=ds.y_train, split="grid")
    scaler = target_scaler(ds)
    s, y_train = to_original_units(s, ds.y_train, scaler)
    a["grid/X"] = np.asarray(grid, dtype=np.float64)
    a["grid/mean"] = s.mean()
    a["grid/total_variance"] = s.total_variance()
    a["grid/epistemic_variance"] = s.epistemic_variance()
    a["grid/aleatoric_variance"] = s.aleatoric_variance()
    a["grid/draws_loc"] = np.asarray(s.loc[:N_GRID_DRAWS], dtype=np.float64)
    a["train/X"] = np.asarray(ds.X_train, dtype=np.float64)
    a["train/y"] = np.asarray(y_train, dtype=np.float64)
    names = list(ds.regions)
    a["regions/names"] = np.array(names, dtype=str)
    a["regions/bounds"] = np.array([ds.regions[n] for n in names], dtype=np.float64).reshape(-1, 2)


def _example_index(labels: np.ndarray | None, n: int, m: int) -> np.ndarray:
    """Up to ``m`` test points to show: the first of each class, then the next in order."""
    if labels is None:
        return np.arange(min(m, n))
    _, first = np.unique(labels, return_index=True)
    first = np.sort(first)[:m]
    rest = np.setdiff1d(np.arange(n), first)[: m - len(first)]
    return np.sort(np.concatenate([first, rest]))


def latent_arrays(ctx: CellContext) -> None:
    """The latent-variable arrays of a reconstruction cell (keys read by the report).

    - ``latent/mean`` ``[N, K]``: each test input's latent code, the encoder mean (the
      latent draws when the adapter gives no means) averaged over draws; ``latent/labels``
      ``[N]`` their classes;
    - ``latent/inputs``, ``latent/recon_mean``, ``latent/recon_std`` ``[M, D]``: up to
      ``N_RECON_EXAMPLES`` test images (one per class first), their reconstruction's mean
      and per-pixel population standard deviation over draws; ``latent/recon_labels`` ``[M]``;
    - ``latent/image_shape`` ``[2]``: the dataset's ``(H, W)``;
    - with an adapter ``generate(*, seed, X_interp)``: each returned array as
      ``generate/<name>``, called with seed ``"generate"`` and the first
      ``2 * N_INTERPOLATION_PAIRS`` of those images as interpolation endpoints; its
      ``manifold`` ``[R, C, D]`` also as ``latent/manifold``.
    """
    s, X, labels = ctx.samples["test"], ctx.inputs["test"], ctx.targets["test"]
    a = ctx.arrays
    z = s.latent if s.latent_mean is None else s.latent_mean
    a["latent/mean"] = np.asarray(z, dtype=np.float64).mean(axis=0)
    idx = _example_index(labels, X.shape[0], N_RECON_EXAMPLES)
    recon = np.asarray(s.recon[:, idx], dtype=np.float64)
    a["latent/inputs"] = np.asarray(X[idx], dtype=np.float64)
    a["latent/recon_mean"] = recon.mean(axis=0)
    a["latent/recon_std"] = recon.std(axis=0)
    if labels is not None:
        a["latent/labels"] = np.asarray(labels)
        a["latent/recon_labels"] = np.asarray(labels)[idx]
    image_shape = getattr(ctx.dataset, "image_shape", None)
    if image_shape is not None:
        a["latent/image_shape"] = np.asarray(image_shape, dtype=np.int64)
    generate = getattr(ctx.adapter, "generate", None)
    if not callable(generate):
        return
    pairs = idx[: 2 * min(N_INTERPOLATION_PAIRS, len(idx) // 2)]
    out = generate(seed=ctx.seed("generate"), X_interp=X[pairs] if len(pairs) else None)
    for name, value in out.items():
        value = np.asarray(value)
        if not (np.issubdtype(value.dtype, np.number) or np.issubdtype(value.dtype, np.bool_)):
            raise InvalidSamplesError(f"generate: {name!r} has dtype {value.dtype}, expected numbers")
        a[f"generate/{name}"] = value
    manifold = out.get("manifold")
    if manifold is not None and np.ndim(manifold) == 3 and np.shape(manifold)[2] == X.shape[1]:
        a["latent/manifold"] = np.asarray(manifold, dtype=np.float64)


CORE_STEPS: tuple[tuple[str, CellStep], ...] = (
    ("fit", fit_step),
    ("sample", sample_step),
    ("metrics", metrics_step),
)
FINAL_STEPS: tuple[tuple[str, CellStep], ...] = (("arrays", arrays_step),)

def probe_step(ctx: CellContext) -> None:
    """Gradient-variance probe (:mod:`uqbench.harness.probe`) on the training set.

    Runs for adapters exposing ``training_loss`` and ``probe_parameters``; others get no
    probe rows (not a failure: the probe needs a training loss to differentiate).
    """
    if not all(callable(getattr(ctx.adapter, m, None)) for m in ("training_loss", "probe_parameters")):
        return
    from uqbench.harness.probe import gradient_variance

    ds = ctx.dataset
    for name, value in gradient_variance(ctx.adapter, ds.X_train, ds.y_train, seed=ctx.seed("probe")):
        ctx.add("probe", name, value)


def _is_number(value: Any) -> bool:
    return np.ndim(value) == 0 and isinstance(value, numbers.Real | np.number | np.bool_)


def fidelity_step(ctx: CellContext) -> None:
    """Keep the predictive draws for the posterior-fidelity post-pass (:mod:`uqbench.results.fidelity`).

    Regression cells store, per split (``test`` and each ``ood:<name>``), the draws in
    original target units as float32 ``fidelity/<split>/loc`` and ``fidelity/<split>/scale``
    ``[S, N, D]``, and ``fidelity/<split>/index`` ``[N]`` when an OOD set was subsampled
    (:func:`ood_subset`: the same points for every adapter of a (dataset, seed)). Other
    tasks store nothing. (An adapter's ``diagnostics_`` rows come from :func:`fit_step`.)
    """
    if ctx.mode != "regression":
        return
    for split, samples in ctx.samples.items():
        ctx.arrays[f"fidelity/{split}/loc"] = np.asarray(samples.loc, dtype=np.float32)
        ctx.arrays[f"fidelity/{split}/scale"] = np.asarray(samples.scale, dtype=np.float32)
        if split.startswith("ood:"):
            keep = ood_subset(len(ctx.dataset.ood[split[4:]].X), ctx.cell.seed, split)
            if keep is not None:
                ctx.arrays[f"fidelity/{split}/index"] = keep


# Name -> step for steps a run switches on (Suite.steps). None reserves the name for a
# step not written yet: suites may list it; it is skipped until it exists.
OPTIONAL_STEPS: dict[str, CellStep | None] = {"probe": probe_step, "fidelity": fidelity_step}


def cell_steps(optional: tuple[str, ...] = ()) -> list[tuple[str, CellStep]]:
    """The steps of a cell with the given optional steps switched on (unknown -> ValueError)."""
    extra = []
    for name in optional:
        if name not in OPTIONAL_STEPS:
            raise ValueError(f"unknown cell step {name!r}; known: {sorted(OPTIONAL_STEPS)}")
        step = OPTIONAL_STEPS[name]
        if step is not None:
            extra.append((name, step))
    return [*CORE_STEPS, *extra, *FINAL_STEPS]


# -- running a cell ----------------------------------------------------------------------


@dataclass
class CellOutcome:
    """Result of one cell: rows for results.csv, arrays, and the cell record."""

    status: str  # "ok" | "failed" | "skipped"
    rows: list[dict[str, Any]]
    arrays: dict[str, np.ndarray]
    reason: str = ""
    stage: str = ""
    times: dict[str, Any] = field(default_factory=dict)
    traceback: str = ""
    record: dict[str, Any] = field(default_factory=dict)  # CellContext.record, plus "params"


def run_cell(
    cell: Cell,
    *,
    dataset: Any,
    make_adapter: Callable[[], Any],
    metrics: Any,
    n_samples: int,
    n_bootstrap: int,
    steps: list[tuple[str, CellStep]] | None = None,
    validation_fraction: float = 0.0,
) -> CellOutcome:
    """Run the steps of ``cell`` on a loaded ``dataset``; never raises for adapter bugs.

    Parameters
    ----------
    dataset : the dataset for this cell's seed, loaded with ``cell.input_scaling``.
    make_adapter : builds a fresh, unfitted adapter.
    metrics : object with ``evaluate``, ``evaluate_ood`` and ``curves`` (for reconstruction
        cells they take the inputs as keywords, as :mod:`uqbench.metrics` does).
    n_samples : the suite's draws per split (reconstruction cells: see :func:`draws_for`).
    validation_fraction : see :class:`CellContext`.
    """
    if not cell.applicable:
        return CellOutcome("skipped", [], {}, reason=f"not applicable: {cell.reason}")
    t0 = time.perf_counter()
    stage = "make"
    ctx: CellContext | None = None
    try:
        adapter = make_adapter()
        ctx = CellContext(
            cell, cell.mode, dataset, adapter, draws_for(cell.mode, n_samples), n_bootstrap, metrics,
            validation_fraction=validation_fraction,
        )
        steps = steps if steps is not None else cell_steps()
        if any(name == "sample" for name, _ in steps):
            stage = "sample"  # checked before fitting: a fit whose draws cannot be held is wasted
            check_sample_budget(ctx)
        for stage, step in steps:  # noqa: B007
            step(ctx)
    except Exception as exc:
        row = make_row(cell.adapter, cell.dataset, cell.seed, stage, "", math.nan, status="failed", error=one_line(exc))
        times = {} if ctx is None else ctx.times
        times["cell_wall_seconds"] = time.perf_counter() - t0
        record = {} if ctx is None else ctx.record
        return CellOutcome("failed", [row], {}, one_line(exc), stage, times, traceback.format_exc(), record)
    ctx.times["cell_wall_seconds"] = time.perf_counter() - t0
    return CellOutcome("ok", ctx.rows, ctx.arrays, times=ctx.times, record=ctx.record)
