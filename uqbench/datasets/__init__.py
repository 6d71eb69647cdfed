"""Benchmark datasets: seeded train/test splits plus named off-distribution (OOD) sets.

>>> from uqbench.datasets import load_dataset
>>> ds = load_dataset("toy-gap", seed=0)
>>> ds.X_train.shape, sorted(ds.ood)
((240, 1), ['gap', 'outside'])

Every loader scales inputs (and standardizes regression targets) with training statistics
only, takes every random choice from ``numpy.random.default_rng(seed)``, and returns
float64 inputs, float64 ``[N, 1]`` regression targets or int64 ``[N]`` class labels.
Datasets read from files look in ``data_dir``, else env ``UQBENCH_DATA``, laid out as
``<data_dir>/uci/<folder>/`` and ``<data_dir>/images/<set>/``.
"""

from __future__ import annotations

import os
from collections.abc import Callable

from ._base import (
    ChecksumError,
    DataFormatError,
    Dataset,
    DatasetArgumentError,
    DatasetSpec,
    InputScaling,
    OODSet,
    check_input_scaling,
    check_seed,
    resolve_data_dir,
)
from .digits import load_digits_dataset
from .images import IMAGE_SETS, load_image_dataset
from .toy import load_toy_gap
from .uci import load_uci

__all__ = [
    "DATASETS",
    "ChecksumError",
    "DataFormatError",
    "Dataset",
    "DatasetArgumentError",
    "DatasetSpec",
    "OODSet",
    "dataset_names",
    "load_dataset",
    "resolve_data_dir",
]

DataDir = str | os.PathLike[str] | None
Loader = Callable[[int, DataDir, InputScaling], Dataset]

_UCI_TITLES = {
    "boston": "Boston housing (506 rows, 13 inputs)",
    "concrete": "concrete compressive strength (1,030 rows, 8 inputs)",
    "energy": "energy efficiency, heating load (768 rows, 8 inputs)",
    "kin8nm": "kin8nm robot-arm kinematics (8,192 rows, 8 inputs)",
    "naval": "naval propulsion plant, compressor decay (11,934 rows, 16 inputs)",
    "power": "combined cycle power plant (9,568 rows, 4 inputs)",
    "protein": "protein tertiary structure (45,730 rows, 9 inputs, 5 splits)",
    "wine": "red wine quality (1,599 rows, 11 inputs)",
    "yacht": "yacht hydrodynamics (308 rows, 6 inputs)",
}
_IMAGE_TITLES = {
    "mnist": "MNIST handwritten digits",
    "fashion-mnist": "Fashion-MNIST clothing images",
    "notmnist": "notMNIST letters A-J",
}


def _build() -> tuple[dict[str, DatasetSpec], dict[str, Loader]]:
    specs: dict[str, DatasetSpec] = {}
    loaders: dict[str, Loader] = {}

    def add(spec: DatasetSpec, loader: Loader) -> None:
        specs[spec.name] = spec
        loaders[spec.name] = loader

    add(
        DatasetSpec(
            "toy-gap",
            "regression",
            "1-D heteroscedastic regression, two input clusters with a gap; "
            "OOD: gap, outside (generated, no files)",
            needs_data_dir=False,
            image=False,
        ),
        lambda seed, data_dir, scaling: load_toy_gap(seed=seed),
    )
    add(
        DatasetSpec(
            "digits",
            "classification",
            "scikit-learn 8x8 digits, classes 0-7; OOD: heldout-classes (8-9), "
            "shifted (test images rotated 30-60 degrees)",
            needs_data_dir=False,
            image=True,
        ),
        lambda seed, data_dir, scaling: load_digits_dataset(seed=seed, input_scaling=scaling),
    )
    for short, title in _UCI_TITLES.items():
        add(
            DatasetSpec(
                f"uci-{short}",
                "regression",
                f"UCI {title}: published fixed split seed % n_splits, unmodified protocol; no OOD",
                needs_data_dir=True,
                image=False,
            ),
            lambda seed, data_dir, scaling, s=short: load_uci(s, seed=seed, data_dir=data_dir),
        )
        add(
            DatasetSpec(
                f"uci-{short}-extrapolate",
                "regression",
                f"UCI {title}: published split minus its top-10% first-PC training rows, "
                "which form OOD 'extrapolate' (departs from the published protocol)",
                needs_data_dir=True,
                image=False,
            ),
            lambda seed, data_dir, scaling, s=short: load_uci(
                s, seed=seed, data_dir=data_dir, extrapolate=True
            ),
        )
    for image_set in IMAGE_SETS:
        title = _IMAGE_TITLES[image_set]
        add(
            DatasetSpec(
                image_set,
                "classification",
                f"{title}, official 60k/10k idx files; OOD: t10k images of the other image sets present",
                needs_data_dir=True,
                image=True,
            ),
            lambda seed, data_dir, scaling, s=image_set: load_image_dataset(
                s, seed=seed, data_dir=data_dir, input_scaling=scaling
            ),
        )
        add(
            DatasetSpec(
                f"{image_set}-t10k",
                "classification",
                f"{title}, the 10k test file alone split 8000/2000 by the seed; "
                "OOD: t10k images of the other image sets present",
                needs_data_dir=True,
                image=True,
            ),
            lambda seed, data_dir, scaling, s=image_set: load_image_dataset(
                s, seed=seed, data_dir=data_dir, input_scaling=scaling, t10k_only=True
            ),
        )
    return specs, loaders


DATASETS, _LOADERS = _build()


def dataset_names() -> list[str]:
    """Names of all registered datasets, in registry order."""
    return list(DATASETS)


def load_dataset(
    name: str,
    *,
    seed: int,
    data_dir: DataDir = None,
    input_scaling: InputScaling = "standardize",
) -> Dataset:
    """Load dataset ``name`` for ``seed``.

    Parameters
    ----------
    name : one of :func:`dataset_names`.
    seed : int >= 0. Drives every random choice (toy draws, splits, corruptions); UCI
        uses split ``seed % n_splits``.
    data_dir : directory with ``uci/`` and ``images/`` subfolders, for datasets whose
        spec has ``needs_data_dir``; default env ``UQBENCH_DATA``. Ignored otherwise.
    input_scaling : ``"standardize"`` (training statistics) or ``"unit"`` (pixels in
        ``[0, 1]``; image datasets only). OOD sets are scaled the same way.

    Returns
    -------
    Dataset

    Raises
    ------
    DatasetArgumentError
        Unknown name, bad seed or bad ``input_scaling`` (a :class:`UserError` and ``ValueError``).
    DataNotFoundError
        The data directory or one of the dataset's files is missing.
    DataFormatError, ChecksumError
        A data file is corrupt.
    """
    if not isinstance(name, str) or name not in DATASETS:
        raise DatasetArgumentError(
            f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}"
        )
    seed = check_seed(seed)
    spec = DATASETS[name]
    scaling = check_input_scaling(input_scaling, name=name, image=spec.image)
    return _LOADERS[name](seed, data_dir, scaling)
