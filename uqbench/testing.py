"""``check_adapter``: the contract every adapter must pass, in-tree or third-party.

Use it in your own package's tests::

    from uqbench.testing import check_adapter
    check_adapter(MyAdapter(epochs=5), "regression")
"""

from __future__ import annotations

import copy
from typing import Any

import numpy as np

from uqbench.interface import (
    ClassificationSamples,
    ReconstructionSamples,
    RegressionSamples,
    Task,
    fit_keywords,
    validation_split,
)

_CONTAINERS = {
    "regression": RegressionSamples,
    "classification": ClassificationSamples,
    "reconstruction": ReconstructionSamples,
}


def contract_data(task: Task, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Small seeded (X_train, y_train, X_test) for ``task``, in the dtypes datasets use."""
    rng = np.random.default_rng(seed)
    if task == "regression":
        X = rng.normal(size=(64, 3))
        y = (np.sin(X[:, :1]) + 0.1 * rng.normal(size=(64, 1))).astype(np.float64)
        return X, y, rng.normal(size=(7, 3))
    if task == "classification":
        X = rng.normal(size=(90, 4))
        y = (X[:, 0] > 0).astype(np.int64) + (X[:, 1] > 0.5).astype(np.int64)
        return X, y, rng.normal(size=(7, 4))
    if task == "reconstruction":
        X = (rng.random(size=(80, 16)) < 0.3).astype(np.float64)
        return X, None, (rng.random(size=(7, 16)) < 0.3).astype(np.float64)
    raise ValueError(f"unknown task {task!r}")


def check_adapter(
    adapter: Any, task: Task, *, n_samples: int = 5, stochastic: bool | None = None
) -> None:
    """Assert the predictive-sampling contract for ``adapter`` on ``task``.

    Checks: ``fit`` returns self; container type; shapes ``[S, N, ...]``; float dtype;
    finite values; non-negative scales; class probabilities of *every draw* in [0, 1]
    and summing to 1 per input (not only their mean); same seed -> identical samples;
    different seeds -> different samples; for a stochastic method, draws not all
    identical (and not views of one array).

    ``fit`` gets the opt-in keywords it names (:data:`uqbench.interface.FIT_KEYWORDS`), as
    the harness passes them: a validation split carved from the training data
    (``X_val``/``y_val``, the adapter training on the rest), ``n_train`` (the size before
    the carve-out) and ``n_classes`` set one above the largest training label, so an
    adapter that names ``n_classes`` must predict that many classes.

    Parameters
    ----------
    adapter : an unfitted adapter instance (it is deep-copied, so it can be reused).
    task : the task to check.
    stochastic : whether draws should differ; defaults to ``adapter.stochastic`` (True if
        the adapter does not say).

    Raises
    ------
    AssertionError
        Naming the adapter and the broken clause.
    """
    name = type(adapter).__name__
    if task not in getattr(adapter, "tasks", ()):
        raise AssertionError(f"{name}.tasks {getattr(adapter, 'tasks', None)!r} lacks {task!r}")
    if stochastic is None:
        stochastic = bool(getattr(adapter, "stochastic", True))
    X, y, X_test = contract_data(task)
    X, y, kwargs = _contract_fit_inputs(adapter, task, X, y)
    model = copy.deepcopy(adapter)
    fitted = model.fit(X, y, seed=0, **kwargs)
    _require(fitted is model, name, "fit() must return self")

    s1 = model.sample_predictive(X_test, n_samples=n_samples, seed=1)
    container = _CONTAINERS[task]
    _require(isinstance(s1, container), name, f"expected {container.__name__}, got {type(s1).__name__}")
    arrays = _arrays(s1)
    n = X_test.shape[0]
    for field, a in arrays.items():
        _require(isinstance(a, np.ndarray), name, f"{field} is {type(a).__name__}, not numpy")
        _require(a.shape[:2] == (n_samples, n), name, f"{field} shape {a.shape}, expected ({n_samples}, {n}, ...)")
        _require(np.issubdtype(a.dtype, np.floating), name, f"{field} dtype {a.dtype} is not floating")
        _require(bool(np.all(np.isfinite(a))), name, f"{field} has non-finite values")
    if task == "regression":
        _require(s1.loc.shape[2] == y.shape[1], name, f"D={s1.loc.shape[2]}, targets have D={y.shape[1]}")
        _require(bool(np.all(s1.scale >= 0)), name, "scale has negative entries")
    elif task == "classification":
        p = s1.probs
        if "n_classes" in kwargs:
            _require(p.shape[2] == kwargs["n_classes"], name, f"C={p.shape[2]}, but fit was given n_classes={kwargs['n_classes']}")
        _require(p.shape[2] >= int(y.max()) + 1, name, f"C={p.shape[2]} < {int(y.max()) + 1} classes")
        bad = np.argwhere(~np.all((p >= 0) & (p <= 1), axis=-1))
        if len(bad):
            _require(False, name, f"probs outside [0, 1] in draw {bad[0][0]} at input {bad[0][1]}")
        off = np.abs(p.sum(-1) - 1.0)  # [S, N]: each draw's rows, not the mean's
        if np.any(off > 1e-5):
            s_bad, n_bad = np.unravel_index(np.argmax(off), off.shape)
            _require(False, name, f"probs of draw {s_bad} at input {n_bad} sum to {p[s_bad, n_bad].sum():.6g}, not 1")
    else:
        _require(s1.recon.shape[2] == X.shape[1], name, f"recon D={s1.recon.shape[2]}, inputs D={X.shape[1]}")

    s1_again = model.sample_predictive(X_test, n_samples=n_samples, seed=1)
    s2 = model.sample_predictive(X_test, n_samples=n_samples, seed=2)
    for field, a in arrays.items():
        _require(np.array_equal(a, _arrays(s1_again)[field]), name, f"same seed gave different {field}")
    if stochastic:
        key = next(iter(arrays))
        a = arrays[key]
        _require(not np.array_equal(a, _arrays(s2)[key]), name, f"different seeds gave identical {key}")
        _require(not np.allclose(a, a[:1]), name, f"all {n_samples} draws of {key} are identical")
        _require(not np.shares_memory(a[0], a[1]), name, f"draws of {key} share memory")

    refit = copy.deepcopy(adapter).fit(X, y, seed=0, **kwargs)
    s1_refit = refit.sample_predictive(X_test, n_samples=n_samples, seed=1)
    for field, a in arrays.items():
        _require(np.allclose(a, _arrays(s1_refit)[field], atol=1e-6), name, f"refit with the same seed changed {field}")


def _contract_fit_inputs(
    adapter: Any, task: Task, X: np.ndarray, y: np.ndarray | None
) -> tuple[np.ndarray, np.ndarray | None, dict[str, Any]]:
    """(X, y, keywords) for ``fit``: the opt-in keywords ``adapter.fit`` names, as the harness."""
    wanted = fit_keywords(adapter)
    kwargs: dict[str, Any] = {}
    if "n_train" in wanted:
        kwargs["n_train"] = len(X)
    if "n_classes" in wanted:
        kwargs["n_classes"] = int(y.max()) + 2 if task == "classification" else None
    if "X_val" in wanted:
        fit_rows, val_rows = validation_split(len(X), 0.2, seed=0)
        kwargs["X_val"] = X[val_rows]
        if "y_val" in wanted:
            kwargs["y_val"] = None if y is None else y[val_rows]
        X, y = X[fit_rows], None if y is None else y[fit_rows]
    return X, y, kwargs


def _arrays(samples: Any) -> dict[str, np.ndarray]:
    if isinstance(samples, RegressionSamples):
        return {"loc": samples.loc, "scale": samples.scale}
    if isinstance(samples, ClassificationSamples):
        return {"probs": samples.probs}
    out = {"recon": samples.recon, "latent": samples.latent}
    for name in ("latent_mean", "latent_scale", "recon_scale"):
        if getattr(samples, name) is not None:
            out[name] = getattr(samples, name)
    return out


def _require(ok: bool, name: str, what: str) -> None:
    if not ok:
        raise AssertionError(f"{name}: {what}")
