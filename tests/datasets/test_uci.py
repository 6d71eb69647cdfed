"""UCI regression benchmark: fixed published splits and the extrapolate carve-out."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from sklearn.decomposition import PCA

from uqbench.datasets import DataFormatError, load_dataset
from uqbench.datasets.uci import UCI_FOLDERS, uci_rows
from uqbench.errors import DataNotFoundError

# rows, inputs, n_splits, as published (and in the shared data README)
PUBLISHED = {
    "boston": (506, 13, 20),
    "concrete": (1030, 8, 20),
    "energy": (768, 8, 20),
    "kin8nm": (8192, 8, 20),
    "naval": (11934, 16, 20),
    "power": (9568, 4, 20),
    "protein": (45730, 9, 5),
    "wine": (1599, 11, 20),
    "yacht": (308, 6, 20),
}


def read_ints(path: Path) -> list[int]:
    return [int(line) for line in path.read_text().split()]


def write_fake_uci(root: Path, *, n_rows: int = 60, n_splits: int = 3) -> np.ndarray:
    """A small UCI-layout folder (trailing blank lines included); returns its data matrix."""
    rng = np.random.default_rng(0)
    folder = root / "uci" / "concrete"
    folder.mkdir(parents=True)
    X = rng.normal(size=(n_rows, 3)) * [1.0, 10.0, 100.0] + [0.0, 5.0, -3.0]
    X[:, 1] += 5 * X[:, 0]  # correlated, so PC1 is well defined
    data = np.column_stack(
        [X, X @ [1.0, 0.1, 0.01] + rng.normal(size=n_rows), np.full(n_rows, 7.0)]
    )
    data = np.round(data, 6)  # exactly what the text file holds
    lines = ["\t".join(f"{v:.6f}" for v in row) for row in data]
    (folder / "data.txt").write_text("\n".join(lines) + "\n\n")
    (folder / "index_features.txt").write_text("0\n1\n2\n\n")
    (folder / "index_target.txt").write_text("3\n")
    (folder / "n_splits.txt").write_text(f"{n_splits}\n")
    for k in range(n_splits):
        perm = rng.permutation(n_rows)
        n_test = n_rows // 10
        (folder / f"index_test_{k}.txt").write_text("\n".join(map(str, perm[:n_test])) + "\n")
        (folder / f"index_train_{k}.txt").write_text("\n".join(map(str, perm[n_test:])) + "\n\n")
    return data


def pca_top_rows(X_train_raw: np.ndarray, train_rows: np.ndarray) -> np.ndarray:
    """Independent reference: scikit-learn PCA on the standardized training inputs."""
    Z = (X_train_raw - X_train_raw.mean(0)) / X_train_raw.std(0)
    pca = PCA(n_components=1).fit(Z)
    pc1 = pca.components_[0]
    pc1 = pc1 * np.sign(pc1[np.argmax(np.abs(pc1))])
    proj = Z @ pc1
    n_out = math.ceil(0.1 * len(Z))
    return np.sort(train_rows[np.argsort(-proj)[:n_out]])


# --------------------------------------------------------------------- synthetic layout


def test_fake_layout_split_and_standardization(tmp_path, check_contract):
    data = write_fake_uci(tmp_path)
    ds = load_dataset("uci-concrete", seed=4, data_dir=tmp_path)  # split 4 % 3 = 1
    check_contract(ds)
    assert ds.info["split"] == 1 and ds.info["n_splits"] == 3 and ds.ood == {}
    train = read_ints(tmp_path / "uci/concrete/index_train_1.txt")
    test = read_ints(tmp_path / "uci/concrete/index_test_1.txt")
    X, y = data[:, :3], data[:, 3:4]
    mu, sd = X[train].mean(0), X[train].std(0)
    np.testing.assert_allclose(ds.X_train, (X[train] - mu) / sd)
    np.testing.assert_allclose(ds.X_test, (X[test] - mu) / sd)
    np.testing.assert_allclose(ds.y_test * ds.target_std + ds.target_mean, y[test], atol=1e-12)
    np.testing.assert_allclose(ds.y_train.mean(0), 0.0, atol=1e-12)
    assert np.all(np.abs(ds.X_test.mean(0)) > 1e-6)


def test_env_var_is_the_fallback(tmp_path, monkeypatch):
    write_fake_uci(tmp_path)
    monkeypatch.setenv("UQBENCH_DATA", str(tmp_path))
    assert load_dataset("uci-concrete", seed=0).info["source"] == str(tmp_path / "uci" / "concrete")


def test_fake_layout_extrapolate(tmp_path):
    data = write_fake_uci(tmp_path)
    X = data[:, :3]
    rows = uci_rows("concrete", seed=2, data_dir=tmp_path, extrapolate=True)
    published = np.array(read_ints(tmp_path / "uci/concrete/index_train_2.txt"))
    np.testing.assert_array_equal(np.sort(rows.ood), pca_top_rows(X[published], published))
    np.testing.assert_array_equal(
        np.sort(np.concatenate([rows.train, rows.ood])), np.sort(published)
    )
    ds = load_dataset("uci-concrete-extrapolate", seed=2, data_dir=tmp_path)
    mu, sd = X[rows.train].mean(0), X[rows.train].std(0)
    np.testing.assert_allclose(ds.ood["extrapolate"].X, (X[rows.ood] - mu) / sd)
    np.testing.assert_allclose(ds.X_train, (X[rows.train] - mu) / sd)


def test_constant_target_and_feature_columns_are_guarded(tmp_path):
    write_fake_uci(tmp_path)
    (tmp_path / "uci/concrete/index_features.txt").write_text("0\n4\n")  # column 4 is constant
    ds = load_dataset("uci-concrete", seed=0, data_dir=tmp_path)
    assert np.all(ds.X_train[:, 1] == 0) and np.all(np.isfinite(ds.X_test))


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(
        DataNotFoundError,
        match=r"uci-concrete needs .*uci/concrete/data\.txt; pass --data-dir or set UQBENCH_DATA",
    ):
        load_dataset("uci-concrete", seed=0, data_dir=tmp_path)
    write_fake_uci(tmp_path)
    (tmp_path / "uci/concrete/index_test_0.txt").unlink()
    with pytest.raises(DataNotFoundError, match=r"index_test_0\.txt"):
        load_dataset("uci-concrete", seed=0, data_dir=tmp_path)
    (tmp_path / "uci/concrete/index_train_1.txt").write_text("0\n1\n100000\n")
    with pytest.raises(DataFormatError, match="outside"):
        load_dataset("uci-concrete", seed=1, data_dir=tmp_path)
    (tmp_path / "uci/concrete/data.txt").write_text("1 2 3\n4 five 6\n")
    with pytest.raises(DataFormatError, match="cannot parse"):
        load_dataset("uci-concrete", seed=2, data_dir=tmp_path)


# --------------------------------------------------------------------- shared real data


@pytest.mark.data
@pytest.mark.parametrize("short", list(PUBLISHED))
def test_published_sizes(shared_data, short, check_contract):
    n_rows, n_inputs, n_splits = PUBLISHED[short]
    folder = shared_data / "uci" / UCI_FOLDERS[short]
    ds = load_dataset(f"uci-{short}", seed=0, data_dir=shared_data)
    check_contract(ds)
    assert ds.X_train.shape[1] == n_inputs and ds.y_train.shape[1] == 1
    assert len(ds.X_train) == len(read_ints(folder / "index_train_0.txt"))
    assert len(ds.X_test) == len(read_ints(folder / "index_test_0.txt"))
    assert len(ds.X_train) + len(ds.X_test) == n_rows == ds.info["n_rows"]
    assert ds.info["split"] == 0 and ds.info["n_splits"] == n_splits
    # standardized with the training rows only; constant columns (naval) become 0
    np.testing.assert_allclose(ds.X_train.mean(0), 0.0, atol=1e-9)
    stds = ds.X_train.std(0)
    assert np.all(np.isclose(stds, 1.0) | (stds == 0.0))


@pytest.mark.data
def test_boston_values_against_the_file(shared_data):
    data = np.loadtxt(shared_data / "uci/bostonHousing/data.txt")
    test = read_ints(shared_data / "uci/bostonHousing/index_test_3.txt")
    ds = load_dataset("uci-boston", seed=23, data_dir=shared_data)  # 23 % 20 = 3
    assert ds.info["split"] == 3
    np.testing.assert_allclose(
        ds.y_test[:, 0] * ds.target_std[0] + ds.target_mean[0], data[test, 13]
    )


@pytest.mark.data
def test_seed_maps_to_split(shared_data, same_dataset):
    same_dataset(
        load_dataset("uci-yacht", seed=21, data_dir=shared_data),
        load_dataset("uci-yacht", seed=1, data_dir=shared_data),
    )
    a = load_dataset("uci-yacht", seed=1, data_dir=shared_data)
    b = load_dataset("uci-yacht", seed=2, data_dir=shared_data)
    assert not np.array_equal(a.y_test, b.y_test)
    assert load_dataset("uci-protein", seed=7, data_dir=shared_data).info["split"] == 2


@pytest.mark.data
@pytest.mark.parametrize("short", ["boston", "naval"])
def test_extrapolate_rows_are_top_pc1_and_disjoint(shared_data, short):
    folder = shared_data / "uci" / UCI_FOLDERS[short]
    data = np.loadtxt(folder / "data.txt")
    features = read_ints(folder / "index_features.txt")
    published = np.array(read_ints(folder / "index_train_5.txt"))
    X = data[:, features]
    if short == "naval":  # two constant columns: the reference PCA skips them
        keep = np.ptp(X[published], axis=0) > 0
        X = X[:, keep]
    rows = uci_rows(short, seed=5, data_dir=shared_data, extrapolate=True)
    np.testing.assert_array_equal(np.sort(rows.ood), pca_top_rows(X[published], published))
    assert len(rows.ood) == math.ceil(0.1 * len(published))
    assert np.intersect1d(rows.ood, rows.train).size == 0
    np.testing.assert_array_equal(
        np.sort(np.concatenate([rows.train, rows.ood])), np.sort(published)
    )
    ds = load_dataset(f"uci-{short}-extrapolate", seed=5, data_dir=shared_data)
    assert len(ds.ood["extrapolate"].X) == len(rows.ood) == ds.info["n_ood"]["extrapolate"]
    assert len(ds.X_train) == len(rows.train) and ds.info["split"] == 5
    plain = load_dataset(f"uci-{short}", seed=5, data_dir=shared_data)
    assert plain.ood == {} and len(plain.X_train) == len(published)
