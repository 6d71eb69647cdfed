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

import hashlib
import math
import os
import zlib
from collections.abc import Callable
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


# Upper bounds on what an idx header may declare, checked before any data is decompressed:
# a gzip file of 7 MB can inflate to 1.5 GiB of zeros, and a header's sizes (up to
# (2**32 - 1)**3 bytes) are the loader's only clue to what is coming. MNIST's training set
# is 60,000 images (47 MB); notMNIST's large set about 530,000.
MAX_IDX_ITEMS = 1_000_000  # images or labels in one file of a dataset
MAX_IDX_BYTES = 2**30  # data bytes of any idx file (read_idx / parse_idx)
_GZIP_MAGIC = b"\x1f\x8b"


class _IdxStream:
    """Decompressed bytes of an idx file, read in bounded pieces.

    Plain (already decompressed) content is sliced; gzip content is inflated with
    ``zlib.decompressobj(max_length=...)`` so that reading the header and then at most the
    declared size plus one byte never inflates more, whatever the file would expand to.
    Multi-member gzip files and zero padding between members are read as ``gzip`` does.
    """

    def __init__(self, raw: bytes, source: str, *, inflate: bool = True) -> None:
        self._source = source
        compressed = inflate and raw[:2] == _GZIP_MAGIC  # else an already-decompressed idx file
        self._plain = None if compressed else memoryview(raw)
        self._offset = 0
        self._inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        self._pending = raw

    @property
    def total(self) -> int | None:
        """Size of uncompressed content (None for gzip: unknown without inflating it all)."""
        return None if self._plain is None else len(self._plain)

    def read(self, n: int) -> bytes:
        """Up to ``n`` bytes; fewer only at the end of the content."""
        if self._plain is not None:
            out = bytes(self._plain[self._offset : self._offset + n])
            self._offset += len(out)
            return out
        chunks: list[bytes] = []
        got = 0
        try:
            while got < n:
                if self._inflater.eof:
                    rest = self._inflater.unused_data.lstrip(b"\x00")
                    if not rest:
                        break
                    if rest[:2] != _GZIP_MAGIC:
                        raise DataFormatError(f"{self._source}: corrupt gzip data (trailing garbage)")
                    self._inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
                    self._pending = rest
                chunk = self._inflater.decompress(self._pending, n - got)
                self._pending = self._inflater.unconsumed_tail
                if not chunk and not self._pending and not self._inflater.eof:
                    raise DataFormatError(
                        f"{self._source}: corrupt gzip data (the file ends before the end-of-stream marker)"
                    )
                chunks.append(chunk)
                got += len(chunk)
        except zlib.error as exc:
            raise DataFormatError(f"{self._source}: corrupt gzip data ({exc})") from None
        return b"".join(chunks)


HeaderCheck = Callable[[int, tuple[int, ...]], None]


def _read_idx_stream(
    stream: _IdxStream,
    *,
    source: str,
    expected_magic: int | None,
    check_header: HeaderCheck | None = None,
) -> tuple[np.ndarray, bytes]:
    """(array, the decompressed content) of one idx file, validating the header first.

    The header's sizes are multiplied exactly (Python integers: a product past 2**63
    cannot wrap around to a small number that matches the data), checked by
    ``check_header(magic, shape)`` and against :data:`MAX_IDX_BYTES`, and only then is the
    data read, at most the declared size plus one byte (to tell "too long" from "exact").
    """
    head = stream.read(4)
    if len(head) < 4:
        raise DataFormatError(f"{source}: {len(head)} bytes is too short for an idx header")
    magic = int.from_bytes(head, "big")
    if magic not in (MAGIC_IMAGES, MAGIC_LABELS):
        raise DataFormatError(
            f"{source}: idx magic number {magic} is neither {MAGIC_IMAGES} (images) nor "
            f"{MAGIC_LABELS} (labels); not a uint8 MNIST-format idx file"
        )
    if expected_magic is not None and magic != expected_magic:
        raise DataFormatError(f"{source}: idx magic number {magic}, expected {expected_magic}")
    ndim = head[3]
    sizes = stream.read(4 * ndim)
    if len(sizes) < 4 * ndim:
        raise DataFormatError(f"{source}: truncated idx header ({4 + len(sizes)} bytes)")
    shape = tuple(int.from_bytes(sizes[i : i + 4], "big") for i in range(0, 4 * ndim, 4))
    expected = math.prod(shape)
    if check_header is not None:
        check_header(magic, shape)
    if expected > MAX_IDX_BYTES:
        raise DataFormatError(
            f"{source}: idx header says shape {shape} ({expected} bytes of data), more than the "
            f"maximum {MAX_IDX_BYTES} bytes of an idx file; not a dataset file"
        )
    data = stream.read(expected + 1)
    if len(data) != expected:
        if len(data) > expected and stream.total is None:
            holds = f"more (stopped reading after {expected} bytes)"
        else:
            holds = str(len(data) if stream.total is None else stream.total - 4 - 4 * ndim)
        raise DataFormatError(
            f"{source}: idx header says shape {shape} ({expected} bytes of data) but the file holds {holds}"
        )
    array = np.frombuffer(data, dtype=np.uint8).reshape(shape).copy()
    return array, head + sizes + data


def parse_idx(
    content: bytes, *, source: str = "idx data", expected_magic: int | None = None
) -> np.ndarray:
    """Decode uncompressed idx bytes into a uint8 array shaped by the header.

    Raises
    ------
    DataFormatError
        Unknown or unexpected magic number, truncated header, a declared size over
        :data:`MAX_IDX_BYTES`, or a data size that differs from the product of the
        header's sizes.
    """
    stream = _IdxStream(content, source, inflate=False)
    return _read_idx_stream(stream, source=source, expected_magic=expected_magic)[0]


def read_idx(path: str | os.PathLike[str], *, expected_magic: int | None = None) -> np.ndarray:
    """Read a (gzip-compressed or plain) idx file into a uint8 array, e.g. ``[N, 28, 28]``.

    No checksum check; see :func:`load_idx` for that. Decompresses at most the header and
    the size it declares plus one byte (see :func:`_read_idx_stream`).
    """
    path = Path(path)
    if not path.is_file():
        raise DataNotFoundError(f"no idx file at {path}")
    stream = _IdxStream(path.read_bytes(), str(path))
    return _read_idx_stream(stream, source=str(path), expected_magic=expected_magic)[0]


def _dataset_header_check(path: Path, dataset: str) -> HeaderCheck:
    """What a dataset's idx header must declare: 28x28 images or one label per item, at
    most :data:`MAX_IDX_ITEMS` of them."""

    def check(magic: int, shape: tuple[int, ...]) -> None:
        if magic == MAGIC_IMAGES and shape[1:] != IMAGE_SHAPE:
            raise DataFormatError(f"{dataset}: {path} holds {shape[1:]} images, expected {IMAGE_SHAPE}")
        if shape and shape[0] > MAX_IDX_ITEMS:
            what = "images" if magic == MAGIC_IMAGES else "labels"
            raise DataFormatError(
                f"{dataset}: {path}: idx header declares {shape[0]} {what}, more than the maximum "
                f"{MAX_IDX_ITEMS} of a dataset file"
            )

    return check


def load_idx(
    path: Path, *, image_set: str, expected_magic: int, dataset: str
) -> tuple[np.ndarray, bool]:
    """Read one file of ``image_set``, checking its checksum when :data:`KNOWN_SHA256` has it.

    The header is checked against the dataset's shape (28x28 images, at most
    :data:`MAX_IDX_ITEMS`) before the data is decompressed, and at most the declared size
    plus one byte is (a gzip bomb is rejected after its header).

    Returns
    -------
    (array, verified) : the decoded uint8 array and whether a known checksum was matched.

    Raises
    ------
    DataNotFoundError, ChecksumError, DataFormatError
    """
    raw = require_file(path, dataset=dataset).read_bytes()
    known = KNOWN_SHA256.get((image_set, path.name))
    gz_hash = hashlib.sha256(raw).hexdigest() if known is not None else ""
    try:
        array, content = _read_idx_stream(
            _IdxStream(raw, str(path)),
            source=str(path),
            expected_magic=expected_magic,
            check_header=_dataset_header_check(path, dataset),
        )
    except DataFormatError:
        if known is not None and gz_hash != known.gz:
            raise _checksum_error(dataset, path, image_set, gz_hash, known) from None
        raise
    if known is not None and gz_hash != known.gz and hashlib.sha256(content).hexdigest() != known.content:
        raise _checksum_error(dataset, path, image_set, gz_hash, known)
    return array, known is not None


def _checksum_error(dataset: str, path: Path, image_set: str, gz_hash: str, known: KnownChecksum) -> ChecksumError:
    return ChecksumError(
        f"{dataset}: sha256 of {path} is {gz_hash}, expected {known.gz} "
        f"(or decompressed {known.content}); the file is corrupt or not the known "
        f"{image_set} file, replace it"
    )


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
