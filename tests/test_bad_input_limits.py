"""Adversarial input, part two: sizes, names and values that used to be accepted.

- Memory bombs: every size a suite carries has a documented maximum (``uqbench.suites``
  ``MAX_*``), a cell whose predictive draws would not fit the sample-memory limit fails
  before it is fitted, and a gzip idx file is inflated no further than its header allows.
- Tracebacks: a NUL byte in a name, a seed past 2**64, an idx header whose sizes overflow
  int64 are one line, exit 2.
- Control characters in any name of a suite are rejected.
- Silent wrong numbers: a UCI feature list holding the target, misspelt ``dataset_params``
  keys, a mixture NLL of NaN, per-draw probabilities that are not distributions.
- Typos in ``adapter_seeds`` / ``adapter_datasets`` / ``dataset_seeds`` and a grid with no
  applicable cell are rejected when the run is planned.

Usage errors are checked through ``uqbench.cli.main``: exit 2, exactly one stderr line
``uqbench: error: ...``, and no run directory. Everything runs in-process with the dummy
adapters and metrics.
"""

from __future__ import annotations

import gzip
import struct
import tracemalloc
import zlib
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
from _dummies import (
    DATASETS,
    DUMMY_ADAPTERS,
    DummyMetrics,
    NoisyAdapter,
    load_toy_cls,
    load_toy_reg,
)
from scipy.special import logsumexp
from scipy.stats import norm

from uqbench import datasets as real_datasets
from uqbench import store
from uqbench.cli import main
from uqbench.datasets import DataFormatError, load_dataset
from uqbench.datasets.images import MAX_IDX_BYTES, MAX_IDX_ITEMS, parse_idx, read_idx
from uqbench.harness import Catalog, DatasetSource
from uqbench.harness import timing as timing_module
from uqbench.harness.cell import run_cell
from uqbench.harness.grid import Cell
from uqbench.interface import ClassificationSamples
from uqbench.metrics import evaluate, evaluate_ood, mixture_nll_loss
from uqbench.suites import (
    MAX_BOOTSTRAP,
    MAX_HYPERPARAMETER_INT,
    MAX_SAMPLES,
    MAX_SEED,
    MAX_SEEDS,
    Suite,
    SuiteError,
)


def _real_source(name: str) -> DatasetSource:
    spec = real_datasets.DATASETS[name]
    load = lambda **kw: real_datasets.load_dataset(name, **kw)  # noqa: E731
    return DatasetSource(name, spec.task, spec.image, load, needs_data_dir=spec.needs_data_dir)


def _catalog() -> Catalog:
    """Dummy adapters and metrics; the dummy datasets, ``digits`` (the dummy images under a
    real dataset name, so a config file may set its ``dataset_params``) and two real file
    loaders."""
    sources = {
        **DATASETS,
        "digits": DatasetSource("digits", "classification", True, load_toy_cls),
        **{n: _real_source(n) for n in ("uci-concrete", "fashion-mnist-t10k")},
    }
    return Catalog(adapters=DUMMY_ADAPTERS, datasets=sources, metrics=DummyMetrics())


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("UQBENCH_DATA", raising=False)
    monkeypatch.delenv("UQBENCH_MAX_SAMPLE_BYTES", raising=False)


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, list[str]]:
    """``uqbench *argv`` in-process: (exit code, stdout, stderr lines)."""
    try:
        code = main(list(argv), catalog=_catalog())
    except SystemExit as exc:  # argparse's own errors
        code = int(exc.code or 0)
    out, err = capsys.readouterr()
    return code, out, err.splitlines()


def _one_error_line(code: int, err: list[str]) -> str:
    assert code == 2, err
    assert len(err) == 1, err
    assert err[0].startswith("uqbench: error: ")
    return err[0]


# -- suite files: sizes, seeds, names, scoping typos ------------------------------------------

_BASE = {"name": '"t"', "datasets": '["toy-reg"]', "seeds": "[0]", "n_samples": "2", "n_bootstrap": "5",
         "adapters": '["noisy"]'}


def _toml(keys: dict[str, str], tables: str = "") -> str:
    """A suite file: ``_BASE`` with ``keys`` (TOML value texts) replacing or adding, then ``tables``."""
    return "".join(f"{k} = {v}\n" for k, v in {**_BASE, **keys}.items()) + tables


_DIGITS = {"datasets": '["digits"]'}

# Each: the suite file, words the one line must contain.
BAD_SUITES: dict[str, tuple[str, list[str]]] = {
    "too-many-seeds": (
        _toml({"seeds": f"[{', '.join(map(str, range(MAX_SEEDS + 1)))}]"}),
        [f"seeds has {MAX_SEEDS + 1:,} seeds, more than the maximum {MAX_SEEDS:,}"],
    ),
    "n-samples-huge": (
        _toml({"n_samples": "100000000000000000000"}),
        [f"n_samples = 100000000000000000000 is larger than the maximum {MAX_SAMPLES:,}"],
    ),
    "n-bootstrap-huge": (
        _toml({"n_bootstrap": "1000000000000"}),
        [f"n_bootstrap = 1000000000000 is larger than the maximum {MAX_BOOTSTRAP:,}"],
    ),
    "epochs-huge": (
        _toml(_DIGITS, "[dataset_params.digits]\nepochs = 1000000000000\n"),
        ["dataset_params['digits']['epochs'] = 1000000000000", f"maximum {MAX_HYPERPARAMETER_INT:,}"],
    ),
    "hidden-width-huge": (
        _toml(_DIGITS, "[dataset_params.digits]\nhidden = [50, 1000000000]\n"),
        ["dataset_params['digits']['hidden'][1] = 1000000000 is larger than the maximum"],
    ),
    "seed-past-int64": (
        _toml({"seeds": "[100000000000000000000]"}),
        [f"seeds: seed 100000000000000000000 is larger than the maximum {MAX_SEED:,}"],
    ),
    "dataset-seed-past-int64": (
        _toml({"dataset_seeds": "{toy-reg = [100000000000000000000]}"}),
        ["dataset_seeds['toy-reg']: seed 100000000000000000000 is larger than the maximum"],
    ),
    "nul-in-name": (_toml({"name": '"a\\u0000b"'}), ["suite name 'a\\x00b' contains the control character '\\x00'"]),
    "newline-in-name": (_toml({"name": '"a\\nb"'}), ["suite name 'a\\nb' contains the control character '\\n'"]),
    "escape-in-name": (_toml({"name": '"\\u001b[31mred"'}), ["contains the control character '\\x1b'"]),
    "control-in-adapter": (
        _toml({"adapters": '["noisy\\n"]'}), ["adapters entry 'noisy\\n' contains the control character"],
    ),
    "control-in-dataset": (
        _toml({"datasets": '["toy-reg\\u0000"]'}), ["datasets entry 'toy-reg\\x00' contains the control character"],
    ),
    "control-in-metric": (
        _toml({"metrics": '["nll_loss\\u001b"]'}), ["metrics entry 'nll_loss\\x1b' contains the control character"],
    ),
    "control-in-scoping-key": (
        _toml({"adapter_seeds": '{"noisy\\u0007" = [0]}'}), ["adapter_seeds key 'noisy\\x07' contains the control character"],
    ),
    "misspelt-adapter-seeds": (
        _toml({"adapter_seeds": "{nosiy = [0]}"}), ["adapter_seeds: unknown adapter 'nosiy' (did you mean 'noisy'?)"],
    ),
    "misspelt-adapter-datasets": (
        _toml({"adapter_datasets": '{nosiy = ["toy-reg"]}'}),
        ["adapter_datasets: unknown adapter 'nosiy' (did you mean 'noisy'?)"],
    ),
    "misspelt-dataset-in-adapter-datasets": (
        _toml({"adapter_datasets": '{noisy = ["toy-rge"]}'}),
        ["adapter_datasets['noisy']: unknown dataset 'toy-rge' (did you mean 'toy-reg'?)"],
    ),
    "misspelt-dataset-seeds": (
        _toml({"dataset_seeds": "{toy-rge = [0, 1]}"}),
        ["dataset_seeds: unknown dataset 'toy-rge' (did you mean 'toy-reg'?)"],
    ),
    "dataset-seeds-pattern-matching-nothing": (
        _toml({"dataset_seeds": '{"tyo-*" = [0, 1]}'}),
        ["dataset_seeds: dataset pattern 'tyo-*' matches no known dataset"],
    ),
    "misspelt-dataset-params-key": (
        _toml(_DIGITS, "[dataset_params.digits]\nepoch = 5\n"),
        ["dataset_params['digits']: unknown hyperparameter(s) 'epoch' (did you mean 'epochs'?)", "silently ignored"],
    ),
    "no-applicable-cell": (
        _toml({"adapters": '["recon"]'}),
        ["no cell of the grid is applicable", "recon on toy-reg: adapter tasks {reconstruction} lack 'regression'"],
    ),
    "no-cell-at-all": (_toml({"adapter_seeds": "{noisy = [7]}"}), ["the grid is empty"]),
}


@pytest.mark.parametrize("case", list(BAD_SUITES))
def test_bad_suite_is_one_line_and_creates_nothing(tmp_path, capsys, case):
    text, words = BAD_SUITES[case]
    path = tmp_path / "suite.toml"
    path.write_text(text)
    line = _one_error_line(*_run(capsys, "run", "--config", str(path), "--out", str(tmp_path / "out"))[::2])
    assert f"config file {path}: " in line or case.startswith(("misspelt", "dataset-seeds", "no-")), line
    for word in words:
        assert word in line, line
    assert len(line) < 600, line  # a 10,001-seed list is not echoed back
    assert not (tmp_path / "out").exists()


def test_too_many_seeds_from_the_flag(tmp_path, capsys):
    # Checked while parsing the flag, before range(N) is built: --seeds 1000000000 costs nothing.
    for n in (MAX_SEEDS + 1, 1_000_000_000):
        argv = ["run", "--adapters", "noisy", "--datasets", "toy-reg", "--seeds", str(n), "--out", str(tmp_path / "out")]
        line = _one_error_line(*_run(capsys, *argv)[::2])
        assert f"argument --seeds: must be at most {MAX_SEEDS:,} seeds, got '{n}'" in line
    assert not (tmp_path / "out").exists()


def test_empty_grid_from_the_flags(tmp_path, capsys):
    argv = ["run", "--adapters", "recon", "--datasets", "toy-reg", "--seeds", "1", "--out", str(tmp_path / "out")]
    line = _one_error_line(*_run(capsys, *argv)[::2])
    assert "no cell of the grid is applicable, nothing would run" in line
    assert not (tmp_path / "out").exists()


def test_limits_hold_for_suites_built_in_code():
    base = dict(name="t", datasets=("toy-reg",), seeds=(0,), n_samples=2)
    with pytest.raises(SuiteError, match="larger than the maximum"):
        Suite(**{**base, "adapter_params": {"noisy": {"n": {"deep": [MAX_HYPERPARAMETER_INT + 1]}}}})
    with pytest.raises(SuiteError, match="adapter_seeds\\['noisy'\\]: seed"):
        Suite(**{**base, "adapter_seeds": {"noisy": (MAX_SEED + 1,)}})
    with pytest.raises(SuiteError, match="adapter_params\\['noisy'\\] key 'a\\\\tb' contains the control character"):
        Suite(**{**base, "adapter_params": {"noisy": {"a\tb": 1}}})
    with pytest.raises(SuiteError, match="adapter_datasets\\['noisy'\\] entry 'toy\\\\x00' contains"):
        Suite(**{**base, "adapter_datasets": {"noisy": ("toy\x00",)}})
    # At the maxima themselves, suites are fine.
    Suite(**{**base, "seeds": (MAX_SEED,), "n_samples": MAX_SAMPLES, "n_bootstrap": MAX_BOOTSTRAP,
             "dataset_params": {"toy-reg": {"epochs": MAX_HYPERPARAMETER_INT}}})


# -- the sample-memory limit of a cell --------------------------------------------------------


class _CountingAdapter(NoisyAdapter):
    calls: ClassVar[list[str]] = []

    def fit(self, X: np.ndarray, y: np.ndarray | None, *, seed: int) -> _CountingAdapter:
        self.calls.append("fit")
        return super().fit(X, y, seed=seed)

    def sample_predictive(self, X: np.ndarray, *, n_samples: int, seed: int) -> Any:
        self.calls.append("sample")
        return super().sample_predictive(X, n_samples=n_samples, seed=seed)


def _cell(n_samples: int) -> Any:
    _CountingAdapter.calls = []
    return run_cell(Cell("counting", "toy-reg", 0, "regression"), dataset=load_toy_reg(seed=0),
                    make_adapter=_CountingAdapter, metrics=DummyMetrics(), n_samples=n_samples, n_bootstrap=5)


def test_cell_over_the_sample_memory_limit_fails_before_fitting(monkeypatch):
    # toy-reg: 20 test + 10 OOD + 25 grid points, loc and scale of one output.
    monkeypatch.setattr(timing_module, "physical_memory", lambda: 64 * 2**20)  # limit: 16 MiB
    outcome = _cell(MAX_SAMPLES)
    expected = MAX_SAMPLES * 55 * 2 * 8
    assert outcome.status == "failed" and outcome.stage == "sample"
    assert outcome.reason.startswith(
        f"SampleBudgetError: predictive draws need about {expected / 2**20:.1f} MiB "
        f"(S={MAX_SAMPLES:,} x N=55 points x 2 outputs x 8 bytes), over the limit of 16.0 MiB "
        "(1/4 of the 64.0 MiB of RAM; $UQBENCH_MAX_SAMPLE_BYTES sets it)"
    ), outcome.reason
    assert _CountingAdapter.calls == []  # neither fitted nor sampled
    assert _cell(10).status == "ok"  # 88 KB: well under the limit

    monkeypatch.setenv("UQBENCH_MAX_SAMPLE_BYTES", "8K")
    outcome = _cell(10)
    assert outcome.status == "failed" and "over the limit of 8.0 KiB ($UQBENCH_MAX_SAMPLE_BYTES)" in outcome.reason


def test_default_sample_limit_is_a_quarter_of_physical_memory(monkeypatch):
    limit, source = timing_module.sample_byte_limit()
    ram = timing_module.physical_memory()
    assert ram is not None and limit == ram // 4 and "1/4 of the" in source
    monkeypatch.setattr(timing_module, "physical_memory", lambda: None)
    assert timing_module.sample_byte_limit()[0] == timing_module.FALLBACK_SAMPLE_BYTES


def test_sample_limit_through_the_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("UQBENCH_MAX_SAMPLE_BYTES", "1000")
    argv = ["run", "--adapters", "noisy", "--datasets", "toy-reg", "--seeds", "1", "--samples", "5", "--out", str(tmp_path)]
    code, _, err = _run(capsys, *argv)
    assert code == 1, err
    (run_dir,) = tmp_path.iterdir()
    (record,) = store.read_cells(run_dir).values()
    assert record["status"] == "failed" and "over the limit of 1000 bytes ($UQBENCH_MAX_SAMPLE_BYTES)" in record["reason"]

    monkeypatch.setenv("UQBENCH_MAX_SAMPLE_BYTES", "lots")
    line = _one_error_line(*_run(capsys, *argv[:-1], str(tmp_path / "other"))[::2])
    assert "$UQBENCH_MAX_SAMPLE_BYTES must be a number of bytes >= 1 such as 2000000000 or 8G, got 'lots'" in line
    assert not (tmp_path / "other").exists()


# -- gzip idx files: the header bounds the inflation ------------------------------------------


def _gzip_stream(header: bytes, n_zeros: int) -> bytes:
    """gzip of ``header`` followed by ``n_zeros`` zero bytes, built in 1 MiB pieces."""
    z = zlib.compressobj(9, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
    parts = [z.compress(header)]
    chunk = bytes(2**20)
    for start in range(0, n_zeros, len(chunk)):
        parts.append(z.compress(chunk[: min(len(chunk), n_zeros - start)]))
    return b"".join([*parts, z.flush()])


def _header(magic: int, *sizes: int) -> bytes:
    return struct.pack(">I", magic) + b"".join(struct.pack(">I", s) for s in sizes)


def _peak_bytes(fn: Any) -> tuple[int, BaseException | None]:
    """Peak traced allocation (bytes, numpy's included) while ``fn()`` runs, and what it raised."""
    tracemalloc.start()
    error = None
    try:
        fn()
    except Exception as exc:
        error = exc
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak, error


BOMB_ZEROS = 64 * 2**20  # inflates to 64 MiB; compressed about 64 KB


def test_gzip_bomb_longer_than_its_header_is_read_only_that_far(tmp_path):
    path = tmp_path / "bomb-idx3-ubyte.gz"
    path.write_bytes(_gzip_stream(_header(2051, 10, 28, 28), BOMB_ZEROS))
    assert path.stat().st_size < 200_000
    peak, error = _peak_bytes(lambda: read_idx(path, expected_magic=2051))
    assert isinstance(error, DataFormatError), error
    assert "idx header says shape (10, 28, 28) (7840 bytes of data) but the file holds more" in str(error)
    # The compressed file, the header and at most 7841 inflated bytes: not 64 MiB.
    assert peak < path.stat().st_size + 2 * 2**20, peak


def test_gzip_bomb_declaring_a_huge_size_is_rejected_after_the_header(tmp_path):
    path = tmp_path / "images" / "fashion-mnist" / "t10k-images-idx3-ubyte.gz"
    path.parent.mkdir(parents=True)
    path.write_bytes(_gzip_stream(_header(2051, 2_000_000, 28, 28), BOMB_ZEROS))
    labels = path.parent / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(gzip.compress(_header(2049, 20) + bytes(20)))
    peak, error = _peak_bytes(lambda: load_dataset("fashion-mnist-t10k", seed=0, data_dir=tmp_path))
    assert isinstance(error, DataFormatError), error
    assert str(error) == (
        f"fashion-mnist-t10k: {path}: idx header declares 2000000 images, more than the maximum "
        f"{MAX_IDX_ITEMS} of a dataset file"
    )
    assert peak < path.stat().st_size + 2 * 2**20, peak
    generic = tmp_path / "generic.gz"
    generic.write_bytes(_gzip_stream(_header(2051, 3_000_000, 28, 28), BOMB_ZEROS))
    peak, error = _peak_bytes(lambda: read_idx(generic))
    assert isinstance(error, DataFormatError) and f"more than the maximum {MAX_IDX_BYTES} bytes" in str(error)
    assert peak < generic.stat().st_size + 2 * 2**20, peak


def test_idx_header_whose_sizes_overflow_int64():
    # 2**31 * 2**31 * 4 = 2**64, which int64 arithmetic wraps to 0: "0 bytes of data, 0 held".
    content = _header(2051, 2**31, 2**31, 4)
    with pytest.raises(DataFormatError, match=r"shape \(2147483648, 2147483648, 4\) \(18446744073709551616 bytes"):
        parse_idx(content, source="x")


def test_idx_overflow_in_a_dataset_is_its_bad_data_line(tmp_path, capsys):
    folder = tmp_path / "data" / "images" / "fashion-mnist"
    folder.mkdir(parents=True)
    images = folder / "t10k-images-idx3-ubyte.gz"
    images.write_bytes(gzip.compress(_header(2051, 2**31, 2**31, 4)))
    (folder / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(_header(2049, 20) + bytes(20)))
    code, _, err = _run(capsys, "run", "--adapters", "noisy", "--datasets", "fashion-mnist-t10k", "--seeds", "1",
                        "--samples", "3", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "out"))
    line = _one_error_line(code, err)
    assert line.startswith(f"uqbench: error: fashion-mnist-t10k: {images} holds (2147483648, 4) images, expected (28, 28)")


# -- UCI: the target among the features -------------------------------------------------------


def _write_uci(root: Path) -> Path:
    """A tiny ``uci/concrete/`` folder: 3 inputs + target, one split of 32/8 rows."""
    rng = np.random.default_rng(0)
    folder = root / "uci" / "concrete"
    folder.mkdir(parents=True)
    X = rng.normal(size=(40, 3))
    data = np.column_stack([X, X @ [1.0, -2.0, 0.5]])
    (folder / "data.txt").write_text("\n".join(" ".join(f"{v:.6f}" for v in row) for row in data) + "\n")
    (folder / "index_features.txt").write_text("0\n1\n2\n")
    (folder / "index_target.txt").write_text("3\n")
    (folder / "n_splits.txt").write_text("1\n")
    (folder / "index_train_0.txt").write_text("\n".join(map(str, range(32))) + "\n")
    (folder / "index_test_0.txt").write_text("\n".join(map(str, range(32, 40))) + "\n")
    return folder


def test_uci_features_listing_the_target_are_bad_data(tmp_path, capsys):
    folder = _write_uci(tmp_path / "data")
    assert load_dataset("uci-concrete", seed=0, data_dir=tmp_path / "data").X_train.shape == (32, 3)
    (folder / "index_features.txt").write_text("0\n1\n2\n3\n")
    code, _, err = _run(capsys, "run", "--adapters", "noisy", "--datasets", "uci-concrete", "--seeds", "1",
                        "--samples", "3", "--data-dir", str(tmp_path / "data"), "--out", str(tmp_path / "out"))
    line = _one_error_line(code, err)
    assert line.startswith(
        f"uqbench: error: uci-concrete: {folder / 'index_features.txt'} lists column index 3, the target column of "
        f"{folder / 'index_target.txt'}; remove it from the input features"
    ), line


# -- metrics: the mixture NLL and per-draw distributions ---------------------------------------


def _direct_mixture_nll(loc: np.ndarray, scale: np.ndarray, y: np.ndarray) -> float:
    """``-log mean_s N(y; loc_s, scale_s^2)``, mean over points, with scipy's log-density."""
    with np.errstate(over="ignore", divide="ignore"):
        log_pdf = norm.logpdf(y[None], loc=loc, scale=scale)
        per_point = -(logsumexp(log_pdf, axis=0) - np.log(loc.shape[0]))
    return float(per_point.mean())


def test_mixture_nll_is_inf_not_nan_when_every_component_underflows():
    y = np.array([[1e300]])
    loc, scale = np.full((2, 1, 1), -1e300), np.ones((2, 1, 1))  # |y - loc| / scale = 2e300: z**2 overflows
    assert _direct_mixture_nll(loc, scale, y) == np.inf
    assert mixture_nll_loss(loc, scale, y) == np.inf
    # One component in reach: finite, and equal to the direct computation.
    loc2 = np.array([[[-1e300]], [[1e300 - 1.0]]])
    assert mixture_nll_loss(loc2, scale, y) == pytest.approx(_direct_mixture_nll(loc2, scale, y), rel=1e-12)
    assert np.isfinite(mixture_nll_loss(loc2, scale, y))


def test_classification_draws_must_each_be_distributions():
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), size=(4, 5))  # [S, N, C]
    d = np.zeros_like(p)
    d[..., 0], d[..., 1] = 0.8, -0.8
    sign = np.where(np.arange(4) % 2 == 0, 1.0, -1.0)[:, None, None]
    negative = ClassificationSamples(p + sign * d)  # the mean is p: a valid distribution
    unnormalised = ClassificationSamples(p * (1.0 + 0.1 * sign))
    valid = ClassificationSamples(p)
    valid32 = ClassificationSamples((p / p.sum(-1, keepdims=True)).astype(np.float32))
    for samples in (valid, valid32):
        assert (samples.mutual_information() <= np.log(3) + 1e-6).all()
    with pytest.raises(ValueError, match=r"probs of draw \d at input \d are negative"):
        negative.mutual_information()
    with pytest.raises(ValueError, match=r"probs of draw [02] at input \d sum to 1\.1, not 1 \(tolerance 1e-05\)"):
        unnormalised.expected_entropy()
    with pytest.raises(ValueError, match="are negative"):
        evaluate_ood(valid, negative, seed=0, n_bootstrap=5)
    with pytest.raises(ValueError, match="sum to"):
        evaluate(unnormalised, np.arange(5) % 3, seed=0, n_bootstrap=5)
    assert evaluate_ood(valid, valid32, seed=0, n_bootstrap=5)  # valid draws still pass
