"""idx reader, checksums and the MNIST-family datasets."""

from __future__ import annotations

import gzip
import hashlib
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from uqbench.datasets import ChecksumError, DataFormatError, load_dataset
from uqbench.datasets.images import KNOWN_SHA256, parse_idx, read_idx
from uqbench.errors import DataNotFoundError


def idx_bytes(array: np.ndarray, magic: int) -> bytes:
    """Reference encoder written from the format description: header, then uint8 data."""
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", d) for d in array.shape)
    return header + array.astype(np.uint8).tobytes()


def write_idx(path: Path, array: np.ndarray, magic: int, *, compress: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    content = idx_bytes(array, magic)
    path.write_bytes(gzip.compress(content) if compress else content)
    return path


def write_set(root: Path, name: str, *, n_train: int, n_test: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    folder = root / "images" / name
    for part, n in (("train", n_train), ("t10k", n_test)):
        if n == 0:
            continue
        write_idx(folder / f"{part}-images-idx3-ubyte.gz", rng.integers(0, 256, (n, 28, 28)), 2051)
        write_idx(folder / f"{part}-labels-idx1-ubyte.gz", np.arange(n) % 10, 2049)


# --------------------------------------------------------------------- idx reader


def test_read_idx_round_trip(tmp_path):
    images = np.random.default_rng(1).integers(0, 256, (5, 4, 3), dtype=np.uint8)
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    got = read_idx(write_idx(tmp_path / "i.gz", images, 2051), expected_magic=2051)
    assert got.dtype == np.uint8 and got.shape == (5, 4, 3)
    np.testing.assert_array_equal(got, images)
    np.testing.assert_array_equal(
        read_idx(write_idx(tmp_path / "l", labels, 2049, compress=False)), labels
    )
    got[0, 0, 0] = 1  # writable, not a view of the file buffer


@pytest.mark.parametrize(
    ("content", "match"),
    [
        (b"\x00\x00", "too short"),
        (struct.pack(">I", 2052) + b"\x00" * 12, "neither 2051"),
        (struct.pack(">II", 2051, 2), "truncated idx header"),
        (
            idx_bytes(np.zeros((2, 3, 3)), 2051)[:-1],
            r"shape \(2, 3, 3\) \(18 bytes of data\) but the file holds 17",
        ),
        (idx_bytes(np.zeros(4), 2049) + b"\x00", "holds 5"),
    ],
)
def test_parse_idx_rejects_corrupt_content(content, match):
    with pytest.raises(DataFormatError, match=match):
        parse_idx(content, source="x")


def test_read_idx_wrong_magic_and_bad_gzip(tmp_path):
    path = write_idx(tmp_path / "labels.gz", np.zeros(3), 2049)
    with pytest.raises(DataFormatError, match="expected 2051"):
        read_idx(path, expected_magic=2051)
    bad = tmp_path / "bad.gz"
    bad.write_bytes(gzip.compress(idx_bytes(np.zeros(100), 2049))[:-20])
    with pytest.raises(DataFormatError, match="corrupt gzip"):
        read_idx(bad)
    with pytest.raises(DataNotFoundError):
        read_idx(tmp_path / "absent.gz")


# --------------------------------------------------------------------- datasets on fake files


def test_checksum_mismatch_is_an_error(tmp_path):
    # notMNIST's t10k files have known checksums; a different file under that name must fail
    write_set(tmp_path, "notmnist", n_train=0, n_test=20, seed=0)
    with pytest.raises(
        ChecksumError,
        match=r"sha256 of .*notmnist/t10k-images-idx3-ubyte\.gz is [0-9a-f]{64}, expected 70ae9e06",
    ):
        load_dataset("notmnist-t10k", seed=0, data_dir=tmp_path)


@pytest.mark.data
def test_known_checksums_match_the_shared_list(shared_data):
    listed = {}
    for line in (shared_data / "SHA256SUMS").read_text().splitlines():
        digest, path = line.split()
        listed[path.removeprefix("./")] = digest
    for (image_set, name), known in KNOWN_SHA256.items():
        assert listed[f"images/{image_set}/{name}"] == known.gz
        path = shared_data / "images" / image_set / name
        assert hashlib.sha256(gzip.decompress(path.read_bytes())).hexdigest() == known.content


@pytest.mark.data
def test_recompressed_copy_of_a_known_file_passes(shared_data, tmp_path):
    for name in ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"):
        content = gzip.decompress((shared_data / "images/notmnist" / name).read_bytes())
        target = tmp_path / "images/notmnist" / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(gzip.compress(content, compresslevel=1, mtime=0))
    ds = load_dataset("notmnist-t10k", seed=0, data_dir=tmp_path)
    assert set(ds.info["checksums"].values()) == {"verified"}


def test_full_set_with_ood_from_other_sets(tmp_path, check_contract):
    write_set(tmp_path, "fashion-mnist", n_train=30, n_test=12, seed=1)
    write_set(tmp_path, "mnist", n_train=0, n_test=0, seed=2)
    write_idx(tmp_path / "images/mnist/t10k-images-idx3-ubyte.gz", np.zeros((7, 28, 28)), 2051)
    # mnist's known checksum does not match this fake file: it must not be used silently
    with pytest.raises(ChecksumError):
        load_dataset("fashion-mnist", seed=0, data_dir=tmp_path)
    (tmp_path / "images/mnist/t10k-images-idx3-ubyte.gz").unlink()
    ds = load_dataset("fashion-mnist", seed=0, data_dir=tmp_path)
    check_contract(ds)
    assert (
        ds.X_train.shape == (30, 784)
        and ds.X_test.shape == (12, 784)
        and ds.image_shape == (28, 28)
    )
    assert ds.ood == {} and ds.info["ood_missing"] == ["mnist", "notmnist"]
    assert set(ds.info["checksums"].values()) == {"unverified (no known checksum)"}
    np.testing.assert_array_equal(ds.y_train, np.arange(30) % 10)
    # one scalar mean/std from the training pixels
    np.testing.assert_allclose(ds.X_train.mean(), 0.0, atol=1e-12)
    np.testing.assert_allclose(ds.X_train.std(), 1.0)
    raw = read_idx(tmp_path / "images/fashion-mnist/t10k-images-idx3-ubyte.gz").reshape(12, -1)
    unit = load_dataset("fashion-mnist", seed=0, data_dir=tmp_path, input_scaling="unit")
    np.testing.assert_allclose(unit.X_test, raw / 255.0)
    s = ds.info["input_scaling"]
    np.testing.assert_allclose(ds.X_test, (raw - s["mean"]) / s["std"])


def test_t10k_split(tmp_path, same_dataset):
    write_set(tmp_path, "fashion-mnist", n_train=0, n_test=50, seed=3)
    ds = load_dataset("fashion-mnist-t10k", seed=1, data_dir=tmp_path)
    assert len(ds.X_train) == 40 and len(ds.X_test) == 10
    raw = (
        read_idx(tmp_path / "images/fashion-mnist/t10k-images-idx3-ubyte.gz").reshape(50, -1)
        / 255.0
    )
    unit = load_dataset("fashion-mnist-t10k", seed=1, data_dir=tmp_path, input_scaling="unit")
    both = np.concatenate([unit.X_train, unit.X_test])
    np.testing.assert_allclose(both[np.lexsort(both.T[::-1])], raw[np.lexsort(raw.T[::-1])])
    same_dataset(ds, load_dataset("fashion-mnist-t10k", seed=1, data_dir=tmp_path))
    assert not np.array_equal(
        ds.y_train, load_dataset("fashion-mnist-t10k", seed=2, data_dir=tmp_path).y_train
    )
    with pytest.raises(
        DataNotFoundError,
        match=r"fashion-mnist needs train-images-idx3-ubyte\.gz, train-labels-idx1-ubyte\.gz in .*; with the 10k test files alone use fashion-mnist-t10k",
    ):
        load_dataset("fashion-mnist", seed=0, data_dir=tmp_path)


def test_label_out_of_range(tmp_path):
    write_set(tmp_path, "fashion-mnist", n_train=0, n_test=10, seed=0)
    write_idx(tmp_path / "images/fashion-mnist/t10k-labels-idx1-ubyte.gz", np.full(10, 12), 2049)
    with pytest.raises(DataFormatError, match="label 12"):
        load_dataset("fashion-mnist-t10k", seed=0, data_dir=tmp_path)


# --------------------------------------------------------------------- shared real data


@pytest.mark.data
def test_mnist_t10k_on_shared_data(shared_data, check_contract):
    start = time.perf_counter()
    ds = load_dataset("mnist-t10k", seed=0, data_dir=shared_data)
    assert time.perf_counter() - start < 5.0
    check_contract(ds)
    assert ds.X_train.shape == (8000, 784) and ds.X_test.shape == (2000, 784) and ds.n_classes == 10
    assert set(ds.ood) == {"notmnist"} and ds.ood["notmnist"].X.shape == (10000, 784)
    assert "fashion-mnist" in ds.info["ood_missing"]
    assert set(ds.info["checksums"].values()) == {"verified"}
    labels = read_idx(shared_data / "images/mnist/t10k-labels-idx1-ubyte.gz")
    np.testing.assert_array_equal(
        np.bincount(np.concatenate([ds.y_train, ds.y_test])), np.bincount(labels)
    )


@pytest.mark.data
def test_mnist_proper_says_what_is_missing(shared_data):
    with pytest.raises(
        DataNotFoundError,
        match=r"^mnist needs train-images-idx3-ubyte\.gz in .*images/mnist; with the 10k test files alone use mnist-t10k",
    ):
        load_dataset("mnist", seed=0, data_dir=shared_data)
