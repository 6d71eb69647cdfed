"""Hyperparameter and data validation shared by the adapters of every framework.

Pure Python and numpy (no torch, no TensorFlow), so the torch and TFP twins validate
exactly alike and name the bad value the same way.
"""

from __future__ import annotations

import math
from collections.abc import Collection
from numbers import Integral, Real
from typing import Any

import numpy as np

from uqbench.interface import Task, infer_task

PRIORS = ("gaussian", "mixture")


def is_real(value: object) -> bool:
    return isinstance(value, Real) and not isinstance(value, bool)


def is_positive_int(value: object) -> bool:
    return isinstance(value, Integral) and not isinstance(value, bool) and value >= 1


def check_hidden(value: Any) -> tuple[int, ...]:
    """``hidden`` (a sequence of positive ints; empty: no hidden layer) as a tuple of ints."""
    try:
        hidden = tuple(value)
    except TypeError:
        raise ValueError(f"hidden must be a sequence of positive ints, got {value!r}") from None
    if not all(is_positive_int(h) for h in hidden):
        raise ValueError(f"hidden must be a sequence of positive ints, got {value!r}")
    return tuple(int(h) for h in hidden)


def check_training_params(adapter: Any, activations: Collection[str]) -> tuple[int, ...]:
    """Validate ``hidden``, ``activation``, ``epochs``, ``batch_size``, ``lr``, ``weight_decay``.

    Returns ``hidden`` as a tuple of ints. Raises ValueError naming the bad value.
    """
    hidden = check_hidden(adapter.hidden)
    if adapter.activation not in activations:
        raise ValueError(f"activation must be one of {sorted(activations)}, got {adapter.activation!r}")
    for name in ("epochs", "batch_size"):
        if not is_positive_int(getattr(adapter, name)):
            raise ValueError(f"{name} must be a positive int, got {getattr(adapter, name)!r}")
    if not is_real(adapter.lr) or not 0.0 < float(adapter.lr) < math.inf:
        raise ValueError(f"lr must be a finite number > 0, got {adapter.lr!r}")
    if not is_real(adapter.weight_decay) or not 0.0 <= float(adapter.weight_decay) < math.inf:
        raise ValueError(f"weight_decay must be a finite number >= 0, got {adapter.weight_decay!r}")
    return hidden


def check_variational_params(adapter: Any) -> None:
    """Validate the mean-field posterior's ``prior*``, ``kl_*``, ``init_std``, ``heteroscedastic``."""
    if adapter.prior not in PRIORS:
        raise ValueError(f"prior must be 'gaussian' or 'mixture', got {adapter.prior!r}")
    for name in ("prior_std", "prior_std1", "prior_std2", "init_std"):
        value = getattr(adapter, name)
        if not is_real(value) or not 0.0 < float(value) < math.inf:
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if not is_real(adapter.prior_pi) or not 0.0 < float(adapter.prior_pi) < 1.0:
        raise ValueError(f"prior_pi must be in (0, 1), got {adapter.prior_pi!r}")
    if not is_real(adapter.kl_weight) or not 0.0 <= float(adapter.kl_weight) < math.inf:
        raise ValueError(f"kl_weight must be a finite number >= 0, got {adapter.kl_weight!r}")
    w = adapter.kl_warmup_epochs
    if isinstance(w, bool) or not isinstance(w, Integral) or w < 0:
        raise ValueError(f"kl_warmup_epochs must be an int >= 0, got {w!r}")
    if not isinstance(adapter.heteroscedastic, bool):
        raise ValueError(f"heteroscedastic must be a bool, got {adapter.heteroscedastic!r}")


def validate_X(X: Any, n_features: int | None = None) -> np.ndarray:
    """``X`` as a finite numeric ``[N, F]`` array (``F == n_features`` when given)."""
    X = np.asarray(X)
    if X.ndim != 2 or not np.issubdtype(X.dtype, np.number):
        raise ValueError(f"X must be a numeric [N, F] array, got shape {X.shape} dtype {X.dtype}")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"X has {X.shape[1]} features, the adapter was fitted on {n_features}")
    if not np.all(np.isfinite(X)):
        raise ValueError("X contains NaN or inf")
    return X


def validate_fit_data(adapter: Any, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray, Task]:
    """(X, y, task) checked against each other and against ``adapter.tasks``."""
    X = validate_X(X)
    task = infer_task(y)
    if task not in adapter.tasks:
        raise ValueError(f"{type(adapter).__name__} does not support {task} (supports {sorted(adapter.tasks)})")
    y = np.asarray(y)
    if len(y) != len(X):
        raise ValueError(f"X has {len(X)} rows but y has {len(y)}")
    if len(X) == 0:
        raise ValueError("X has no rows")
    if task == "classification" and y.min() < 0:
        raise ValueError(f"class labels must be >= 0, got min {y.min()}")
    if task == "regression" and not np.all(np.isfinite(y)):
        raise ValueError("y contains NaN or inf")
    return X, y, task


def n_classes_for(y: np.ndarray, n_classes: Any) -> int:
    """Output classes: ``n_classes`` from the dataset when given (checked against the
    labels ``y`` ``[N]``), else one more than the largest training label."""
    seen = int(np.max(y)) + 1
    if n_classes is None:
        return seen
    if isinstance(n_classes, bool) or not isinstance(n_classes, Integral) or n_classes < seen:
        raise ValueError(f"n_classes must be an int >= the labels' max + 1 ({seen}), got {n_classes!r}")
    return int(n_classes)
