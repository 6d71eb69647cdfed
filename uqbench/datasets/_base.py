"""Containers, argument checks, the data-directory lookup and the scalers every loader shares."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from uqbench.errors import DataNotFoundError, UserError
from uqbench.interface import Task

InputScaling = Literal["standardize", "unit"]
INPUT_SCALINGS: tuple[InputScaling, ...] = ("standardize", "unit")

DATA_ENV = "UQBENCH_DATA"
LAYOUT_HINT = "pass --data-dir or set UQBENCH_DATA (layout: see README)"


class DatasetArgumentError(UserError, ValueError):
    """A bad argument to :func:`load_dataset`: unknown name, bad seed or scaling."""


class DataFormatError(UserError, ValueError):
    """A data file is present but malformed (bad header, wrong size, unparsable rows)."""


class ChecksumError(DataFormatError):
    """A data file's sha256 differs from the checksum recorded for it."""


@dataclass(frozen=True)
class OODSet:
    """A named off-distribution input set, scaled exactly like the training inputs.

    Attributes
    ----------
    X : ``[M, F]`` float64 inputs.
    y : targets when they mean something for the in-distribution model: ``[M]`` int64 labels
        (e.g. corrupted in-distribution images) or ``[M, D]`` float64 standardized
        regression targets; None otherwise (e.g. images of unseen classes).
    """

    X: np.ndarray
    y: np.ndarray | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """Registry entry: what a dataset is, before loading it."""

    name: str
    task: Task
    summary: str
    needs_data_dir: bool
    image: bool


@dataclass(frozen=True)
class Dataset:
    """One seeded train/test split plus named off-distribution sets.

    Attributes
    ----------
    X_train, X_test : ``[N, F]`` float64 inputs, scaled with training statistics only.
    y_train, y_test : regression ``[N, D]`` float64 standardized targets; classification
        ``[N]`` int64 class indices.
    ood : name -> :class:`OODSet` (may be empty).
    n_classes : classification only.
    target_mean, target_std : ``[D]`` regression only: ``y_original = y * target_std + target_mean``.
    plot_grid : ``[G, F]`` inputs spanning beyond the data (1-D toy data only).
    regions : named input intervals in standardized units (1-D toy data only).
    image_shape : ``(H, W)`` for image data; ``F == H * W``.
    info : JSON-safe description: source, split, sizes, scaling.
    """

    name: str
    task: Task
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    ood: dict[str, OODSet] = field(default_factory=dict)
    n_classes: int | None = None
    target_mean: np.ndarray | None = None
    target_std: np.ndarray | None = None
    plot_grid: np.ndarray | None = None
    regions: dict[str, tuple[float, float]] = field(default_factory=dict)
    image_shape: tuple[int, int] | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Loaders are the only producers: these checks catch their bugs (a ValueError, which
        # the harness records as failed cells), while loaders report bad files themselves
        # (DataFormatError, naming the file). Checked: dtypes and shapes, matching feature
        # counts, non-empty train and test splits, finite values, labels in 0..n_classes-1.
        n_features = _check_inputs(f"{self.name}: X_train", self.X_train, None)
        _check_inputs(f"{self.name}: X_test", self.X_test, n_features)
        for split, X, y in (
            ("train", self.X_train, self.y_train),
            ("test", self.X_test, self.y_test),
        ):
            if len(X) == 0:
                raise ValueError(f"{self.name}: the {split} split is empty (0 rows)")
            _check_targets(f"{self.name}: y_{split}", y, self.task, len(X), self.n_classes)
        for key, ood in self.ood.items():
            _check_inputs(f"{self.name}: ood[{key!r}].X", ood.X, n_features)
            if ood.y is not None:
                _check_targets(f"{self.name}: ood[{key!r}].y", ood.y, self.task, len(ood.X), self.n_classes)
        if self.plot_grid is not None:
            _check_inputs(f"{self.name}: plot_grid", self.plot_grid, n_features)
        if self.image_shape is not None and int(np.prod(self.image_shape)) != n_features:
            raise ValueError(
                f"{self.name}: image_shape {self.image_shape} does not match {n_features} features"
            )

    @property
    def n_features(self) -> int:
        return self.X_train.shape[1]


def _check_inputs(what: str, X: Any, n_features: int | None) -> int:
    if not isinstance(X, np.ndarray) or X.dtype != np.float64 or X.ndim != 2:
        raise ValueError(f"{what} must be a float64 [N, F] array, got {_describe(X)}")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(f"{what} has {X.shape[1]} features, expected {n_features} (as X_train)")
    _check_finite(what, X)
    return X.shape[1]


def _check_finite(what: str, a: np.ndarray) -> None:
    finite = np.isfinite(a)
    if not finite.all():
        row = int(np.argwhere(~finite)[0][0])
        raise ValueError(f"{what} has {a.size - int(finite.sum())} non-finite values (NaN/inf), the first in row {row}")


def _check_targets(what: str, y: Any, task: Task, n: int, n_classes: int | None = None) -> None:
    if task == "classification":
        ok = isinstance(y, np.ndarray) and y.dtype == np.int64 and y.ndim == 1
        expected = "an int64 [N] array"
    else:
        ok = isinstance(y, np.ndarray) and y.dtype == np.float64 and y.ndim == 2
        expected = "a float64 [N, D] array"
    if not ok:
        raise ValueError(f"{what} must be {expected}, got {_describe(y)}")
    if len(y) != n:
        raise ValueError(f"{what} has {len(y)} rows, expected {n}")
    if task != "classification":
        _check_finite(what, y)
    elif y.size and (y.min() < 0 or (n_classes is not None and y.max() >= n_classes)):
        allowed = "0.." + (str(n_classes - 1) if n_classes is not None else "")
        raise ValueError(f"{what} has labels {int(y.min())}..{int(y.max())}, outside {allowed}")


def _describe(a: Any) -> str:
    if isinstance(a, np.ndarray):
        return f"{a.dtype} array of shape {a.shape}"
    return type(a).__name__


# ---------------------------------------------------------------------------------------
# Argument checks and the data directory


def check_seed(seed: Any) -> int:
    """The seed as an int >= 0 (bools and floats rejected)."""
    if isinstance(seed, bool) or not isinstance(seed, int | np.integer) or seed < 0:
        raise DatasetArgumentError(f"seed must be an integer >= 0, got {seed!r}")
    return int(seed)


def check_input_scaling(input_scaling: Any, *, name: str, image: bool) -> InputScaling:
    if input_scaling not in INPUT_SCALINGS:
        raise DatasetArgumentError(
            f"input_scaling must be one of {', '.join(INPUT_SCALINGS)}, got {input_scaling!r}"
        )
    if input_scaling == "unit" and not image:
        raise DatasetArgumentError(
            f"input_scaling='unit' is only for image datasets; {name} is not one "
            "(use input_scaling='standardize')"
        )
    return input_scaling


def resolve_data_dir(
    data_dir: str | os.PathLike[str] | None = None,
    *,
    dataset: str = "this dataset",
    needs: str = "",
) -> Path:
    """The data directory: ``data_dir`` if given, else env ``UQBENCH_DATA``.

    ``dataset`` and ``needs`` (what the dataset reads, relative to the data directory, e.g.
    ``"uci/concrete/data.txt"``) only word the error message.

    Raises
    ------
    DataNotFoundError
        Neither is set, or the directory does not exist.
    """
    source = "data_dir"
    if data_dir is None or str(data_dir) == "":
        data_dir = os.environ.get(DATA_ENV) or None
        source = DATA_ENV
    if data_dir is None:
        what = f"<data_dir>/{needs}" if needs else "a data directory"
        raise DataNotFoundError(f"{dataset} needs {what}; {LAYOUT_HINT}")
    path = Path(data_dir).expanduser()
    if not path.is_dir():
        raise DataNotFoundError(
            f"{dataset}: data directory {path} (from {source}) does not exist; {LAYOUT_HINT}"
        )
    return path


def require_file(path: Path, *, dataset: str) -> Path:
    """``path`` if it is a file, else a one-line :class:`DataNotFoundError`."""
    if not path.is_file():
        raise DataNotFoundError(f"{dataset} needs {path}; {LAYOUT_HINT}")
    return path


def rng_streams(seed: int, n: int) -> list[np.random.Generator]:
    """``n`` independent generators from ``default_rng(seed)``.

    One stream per purpose (split, corruption, ...) so that adding a draw to one purpose
    never changes the others.
    """
    return np.random.default_rng(seed).spawn(n)


# ---------------------------------------------------------------------------------------
# Scaling


@dataclass(frozen=True)
class Standardizer:
    """``(x - mean) / std`` with statistics of one (training) array.

    Constant features get ``std = 1``: they are centred and otherwise left alone. Constant
    means no spread at all or spread at rounding level (e.g. a column of 0.998 whose
    computed std is 1e-13, as in the naval data).
    """

    mean: np.ndarray
    std: np.ndarray

    @classmethod
    def fit(cls, X: np.ndarray, *, axis: int | None = 0) -> Standardizer:
        X = np.asarray(X, dtype=np.float64)
        mean = np.mean(X, axis=axis)
        std = np.std(X, axis=axis)
        constant = (np.ptp(X, axis=axis) == 0) | (std <= 1e-10 * np.maximum(1.0, np.abs(mean)))
        std = np.where(constant, 1.0, std)
        return cls(np.asarray(mean, dtype=np.float64), np.asarray(std, dtype=np.float64))

    def transform(self, X: np.ndarray) -> np.ndarray:
        return (np.asarray(X, dtype=np.float64) - self.mean) / self.std

    def to_info(self) -> dict[str, list[float] | float]:
        return {"mean": _jsonable(self.mean), "std": _jsonable(self.std)}


def _jsonable(a: np.ndarray) -> list[float] | float:
    return float(a) if a.ndim == 0 else [float(v) for v in a]
