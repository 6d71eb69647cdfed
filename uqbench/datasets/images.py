"""MNIST-format image sets from gzip idx files: ``mnist``, ``fashion-mnist``, ``notmnist``.

Files live in ``<data_dir>/images/<set>/``: ``train-images-idx3-ubyte.gz``,
``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``, ``t10k-labels-idx1-ubyte.gz``.
idx format: a big-endian header (magic 2051 + three sizes for images, 2049 + one size for
labels), then uint8 data. Every header and size is validated; a file whose checksum is in
:data:`KNOWN_SHA256` must match it (gzip file or decompressed content, so a re-compressed
copy of the same data passes). Files with no recorded checksum are only validated
structurally; ``info["checksums"]`` says which were verified.

Datasets (10 classes, 28×28 inputs flattened to 784 features):

- ``<set>``: the official 60,000/10,000 train/test files.
- ``<set>-t10k``: only the 10,000-image test files, split 8,000/2,000 by the seed, for
  directories that hold no training images (the shared test data has MNIST's and
  notMNIST's test sets only). Named explicitly so the swap is never silent.

OOD sets: the ``t10k`` images of every *other* set present in the data directory, named
after the set (``y`` None); sets absent are listed in ``info["ood_missing"]``.

Scaling: ``"standardize"`` subtracts one scalar mean and divides by one scalar std over all
training pixels (per-pixel statistics would divide by the zero-to-tiny spread of blank
border pixels and blow up OOD images that ink them); ``"unit"`` gives ``pixels / 255``.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from uqbench.errors import DataNotFoundError

from ._base import (
    LAYOUT_HINT,
    ChecksumError,
    DataFormatError,
    Dataset,
    InputScaling,
    OODSet,
    require_file,
    resolve_data_dir,
    rng_streams,
)

IMAGE_SETS: tuple[str, ...] = ("mnist", "fashion-mnist", "notmnist")
IMAGE_SHAPE = (28, 28)
N_CLASSES = 10
T10K_TEST_FRACTION = 0.2
MAGIC_IMAGES = 2051
MAGIC_LABELS = 2049

FILES = {
    ("train", "images"): "train-images-idx3-ubyte.gz",
    ("train", "labels"): "train-labels-idx1-ubyte.gz",
    ("t10k", "images"): "t10k-images-idx3-ubyte.gz",
    ("t10k", "labels"): "t10k-labels-idx1-ubyte.gz",
}


@dataclass(frozen=True)
class KnownChecksum:
    """sha256 of the gzip file and of its decompressed idx content."""

    gz: str
    content: str


# Values from the shared test data's SHA256SUMS (gz) and of the same files decompressed.
KNOWN_SHA256: dict[tuple[str, str], KnownChecksum] = {
    ("mnist", "t10k-images-idx3-ubyte.gz"): KnownChecksum(
        "167310007f03058885c7e95e6c0b19c20de5c7fd3031f4cbdadc9014a523d80b",
        "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    ),
    ("mnist", "t10k-labels-idx1-ubyte.gz"): KnownChecksum(
        "fc607395669ec21321ea83e4b82c0544b7e8e63ff5b34337c06bc0a17cc0da3c",
        "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    ),
    ("mnist", "train-labels-idx1-ubyte.gz"): KnownChecksum(
        "ec02e7948609e5754d47881c09b8afdd8dfa60600b9e5388c8c54a67069ec772",
        "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
    ),
    ("notmnist", "t10k-images-idx3-ubyte.gz"): KnownChecksum(
        "70ae9e06201f2827e5b0a3781a3169d735dd2efc69996b9eeaee7f10ed4044d7",
        "8e7f38ae95cc8f48e0986175ffc9137e5007ebcf3d8fdf6656c904eb9dab198b",
    ),
    ("notmnist", "t10k-labels-idx1-ubyte.gz"): KnownChecksum(
        "1fa03836e01c862542f8eb83463bb951bebec6fcb3efa28dad748c6b38a9021b",
        "5f8e6012f2ce730700d8d05fca098bc47f71d25b890e4bec7ac5ebfd614a4001",
    ),
    ("notmnist", "train-labels-idx1-ubyte.gz"): KnownChecksum(
        "0db4c4ec5d019838a57f8c9dd764ada7dc3c73e6ccc93032c538c5845f332545",
        "7a4b2925b1283e4d663fae8ccd0e6bab537e6288f9b0384e8440bc066d460e96",
    ),
}


# ---------------------------------------------------------------------------------------
# idx files


def parse_idx(
    content: bytes, *, source: str = "idx data", expected_magic: int | None = None
) -> np.ndarray:
    """Decode uncompressed idx bytes into a uint8 array shaped by the header.

    Raises
    ------
    DataFormatError
        Unknown or unexpected magic number, truncated header, or a data size that differs
        from the product of the header's sizes.
    """
    if len(content) < 4:
        raise DataFormatError(f"{source}: {len(content)} bytes is too short for an idx header")
    magic = int.from_bytes(content[:4], "big")
    if magic not in (MAGIC_IMAGES, MAGIC_LABELS):
        raise DataFormatError(
            f"{source}: idx magic number {magic} is neither {MAGIC_IMAGES} (images) nor "
            f"{MAGIC_LABELS} (labels); not a uint8 MNIST-format idx file"
        )
    if expected_magic is not None and magic != expected_magic:
        raise DataFormatError(f"{source}: idx magic number {magic}, expected {expected_magic}")
    ndim = content[3]
    header = 4 + 4 * ndim
    if len(content) < header:
        raise DataFormatError(f"{source}: truncated idx header ({len(content)} bytes)")
    shape = tuple(int(d) for d in np.frombuffer(content, dtype=">u4", count=ndim, offset=4))
    expected = int(np.prod(shape, dtype=np.int64))
    actual = len(content) - header
    if actual != expected:
        raise DataFormatError(
            f"{source}: idx header says shape {shape} ({expected} bytes of data) "
            f"but the file holds {actual}"
        )
    return np.frombuffer(content, dtype=np.uint8, offset=header).reshape(shape).copy()


def _decompress(raw: bytes, source: str) -> bytes:
    if raw[:2] != b"\x1f\x8b":
        return raw  # accept an already-decompressed idx file
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as exc:
        raise DataFormatError(f"{source}: corrupt gzip data ({exc})") from None


def read_idx(path: str | os.PathLike[str], *, expected_magic: int | None = None) -> np.ndarray:
    """Read a (gzip-compressed or plain) idx file into a uint8 array, e.g. ``[N, 28, 28]``.

    No checksum check; see :func:`load_idx` for that.
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"no idx file at {path}")
    raw = path.read_bytes()
    return parse_idx(_decompress(raw, str(path)), source=str(path), expected_magic=expected_magic)


def load_idx(
    path: Path, *, image_set: str, expected_magic: int, dataset: str
) -> tuple[np.ndarray, bool]:
    """Read one file of ``image_set``, checking its checksum when :data:`KNOWN_SHA256` has it.

    Returns
    -------
    (array, verified) : the decoded uint8 array and whether a known checksum was matched.

    Raises
    ------
    DataNotFoundError, ChecksumError, DataFormatError
    """
    raw = require_file(path, dataset=dataset).read_bytes()
    content = _decompress(raw, str(path))
    known = KNOWN_SHA256.get((image_set, path.name))
    if known is not None:
        gz_hash = hashlib.sha256(raw).hexdigest()
        if gz_hash != known.gz and hashlib.sha256(content).hexdigest() != known.content:
            raise ChecksumError(
                f"{dataset}: sha256 of {path} is {gz_hash}, expected {known.gz} "
                f"(or decompressed {known.content}); the file is corrupt or not the known "
                f"{image_set} file, replace it"
            )
    return parse_idx(content, source=str(path), expected_magic=expected_magic), known is not None


# ---------------------------------------------------------------------------------------
# datasets


def dataset_name(image_set: str, *, t10k_only: bool) -> str:
    return f"{image_set}-t10k" if t10k_only else image_set


def _missing_message(name: str, folder: Path, missing: list[str], t10k_only: bool) -> str:
    files = ", ".join(missing)
    hint = "" if t10k_only else f"; with the 10k test files alone use {name}-t10k"
    return f"{name} needs {files} in {folder}{hint}; {LAYOUT_HINT}"


def _pair(
    folder: Path, part: str, *, image_set: str, dataset: str, checksums: dict[str, bool]
) -> tuple[np.ndarray, np.ndarray]:
    images, ok_i = load_idx(
        folder / FILES[part, "images"],
        image_set=image_set,
        expected_magic=MAGIC_IMAGES,
        dataset=dataset,
    )
    labels, ok_l = load_idx(
        folder / FILES[part, "labels"],
        image_set=image_set,
        expected_magic=MAGIC_LABELS,
        dataset=dataset,
    )
    checksums[f"{image_set}/{FILES[part, 'images']}"] = ok_i
    checksums[f"{image_set}/{FILES[part, 'labels']}"] = ok_l
    if images.shape[1:] != IMAGE_SHAPE:
        raise DataFormatError(
            f"{dataset}: {folder / FILES[part, 'images']} holds {images.shape[1:]} images, expected {IMAGE_SHAPE}"
        )
    if len(images) == 0:
        raise DataFormatError(f"{dataset}: {folder / FILES[part, 'images']} holds no images")
    if len(images) != len(labels):
        raise DataFormatError(
            f"{dataset}: {len(images)} images but {len(labels)} labels in {folder} ({part})"
        )
    if labels.size and labels.max() >= N_CLASSES:
        raise DataFormatError(
            f"{dataset}: label {labels.max()} in {folder} ({part}) is not in 0..9"
        )
    return images, labels.astype(np.int64)


def _pixel_statistics(images: np.ndarray) -> tuple[float, float]:
    # Exact mean/std of uint8 pixels from their histogram: no float copy of 60k images.
    counts = np.bincount(images.ravel(), minlength=256).astype(np.float64)
    values = np.arange(256, dtype=np.float64)
    n = counts.sum()
    mean = float(counts @ values / n)
    std = float(np.sqrt(counts @ (values - mean) ** 2 / n))
    return mean, (std if std > 0 else 1.0)


def _scaler(train_images: np.ndarray, input_scaling: InputScaling) -> tuple[float, float, dict]:
    """``(shift, divisor, info)`` so that ``x = (pixel - shift) / divisor``."""
    if input_scaling == "unit":
        return 0.0, 255.0, {"kind": "unit", "divisor": 255.0}
    mean, std = _pixel_statistics(train_images)
    info = {"kind": "standardize (one scalar over all training pixels)", "mean": mean, "std": std}
    return mean, std, info


def _flatten(images: np.ndarray, shift: float, divisor: float) -> np.ndarray:
    X = images.reshape(len(images), -1).astype(np.float64)
    X -= shift  # in place: the 60k-image arrays are large
    X /= divisor
    return X


def load_image_dataset(
    image_set: str,
    *,
    seed: int,
    data_dir: str | os.PathLike[str] | None = None,
    input_scaling: InputScaling = "standardize",
    t10k_only: bool = False,
) -> Dataset:
    """An idx image set (see the module docstring).

    Parameters
    ----------
    image_set : one of :data:`IMAGE_SETS`.
    seed : the ``-t10k`` split's permutation (the official split is fixed).
    data_dir : directory holding ``images/<set>/``; default env ``UQBENCH_DATA``.
    input_scaling : ``"standardize"`` or ``"unit"``.
    t10k_only : split the 10k test files 8,000/2,000 instead of using the training files.

    Returns
    -------
    Dataset with ``X_*`` ``[N, 784]`` float64 and ``y_*`` ``[N]`` int64 in 0..9.
    """
    name = dataset_name(image_set, t10k_only=t10k_only)
    parts = ("t10k",) if t10k_only else ("train", "t10k")
    root = resolve_data_dir(
        data_dir, dataset=name, needs=f"images/{image_set}/{FILES[parts[0], 'images']} (and labels)"
    )
    folder = root / "images" / image_set
    missing = [
        FILES[p, k]
        for p in parts
        for k in ("images", "labels")
        if not (folder / FILES[p, k]).is_file()
    ]
    if missing:
        raise DataNotFoundError(_missing_message(name, folder, missing, t10k_only))

    checksums: dict[str, bool] = {}
    (rng_split,) = rng_streams(seed, 1)
    if t10k_only:
        images, labels = _pair(
            folder, "t10k", image_set=image_set, dataset=name, checksums=checksums
        )
        order = rng_split.permutation(len(images))
        n_test = round(T10K_TEST_FRACTION * len(images))
        if not 0 < n_test < len(images):
            raise DataFormatError(
                f"{name}: {folder / FILES['t10k', 'images']} holds {len(images)} image(s), too few "
                f"for a {1 - T10K_TEST_FRACTION:.0%}/{T10K_TEST_FRACTION:.0%} train/test split"
            )
        test, train = order[:n_test], order[n_test:]
        train_images, y_train = images[train], labels[train]
        test_images, y_test = images[test], labels[test]
        split = f"t10k file split {len(train)}/{len(test)} by a seeded permutation"
    else:
        train_images, y_train = _pair(
            folder, "train", image_set=image_set, dataset=name, checksums=checksums
        )
        test_images, y_test = _pair(
            folder, "t10k", image_set=image_set, dataset=name, checksums=checksums
        )
        split = "official train/t10k files"

    shift, divisor, scaling_info = _scaler(train_images, input_scaling)
    ood: dict[str, OODSet] = {}
    ood_missing = []
    for other in IMAGE_SETS:
        if other == image_set:
            continue
        path = root / "images" / other / FILES["t10k", "images"]
        if not path.is_file():
            ood_missing.append(other)
            continue
        ood_images, verified = load_idx(
            path, image_set=other, expected_magic=MAGIC_IMAGES, dataset=name
        )
        if ood_images.shape[1:] != IMAGE_SHAPE or len(ood_images) == 0:
            raise DataFormatError(
                f"{name}: {path} holds {len(ood_images)} images of shape {ood_images.shape[1:]}, "
                f"expected at least one of {IMAGE_SHAPE}"
            )
        checksums[f"{other}/{path.name}"] = verified
        ood[other] = OODSet(_flatten(ood_images, shift, divisor), None)

    return Dataset(
        name=name,
        task="classification",
        X_train=_flatten(train_images, shift, divisor),
        y_train=y_train,
        X_test=_flatten(test_images, shift, divisor),
        y_test=y_test,
        ood=ood,
        n_classes=N_CLASSES,
        image_shape=IMAGE_SHAPE,
        info={
            "source": str(folder),
            "seed": seed,
            "split": split,
            "input_scaling": scaling_info,
            "n_train": len(y_train),
            "n_test": len(y_test),
            "n_ood": {key: len(s.X) for key, s in ood.items()},
            "ood_missing": ood_missing,
            "checksums": {
                key: "verified" if ok else "unverified (no known checksum)"
                for key, ok in checksums.items()
            },
        },
    )
