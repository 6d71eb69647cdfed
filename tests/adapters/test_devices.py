"""The ``device`` keyword of the in-tree torch adapters and their ``n_classes``.

This machine has no GPU, so the device plumbing is exercised on torch's ``meta`` device:
tensors there carry shapes but no data, and an elementwise op between a meta and a CPU
tensor raises, as one between a CUDA and a CPU tensor does. Fitting and sampling on
``meta`` therefore fails for any tensor a hook creates on the CPU by mistake (parameters,
noise, sign tables, minibatch indices), and every parameter must end up there. The CUDA
cases run only where torch sees a GPU.
"""

from __future__ import annotations

from typing import Any
from unittest import mock

import numpy as np
import pytest
import torch

from uqbench.registry import make_adapter
from uqbench.testing import check_adapter
from uqbench_adapters.torch import _base, vae

SUPERVISED = ("deterministic", "output-only", "mc-dropout", "bbb", "flipout", "lrt", "ensemble", "swag", "sgld",
              "sghmc", "laplace")
AUTOENCODERS = ("vae", "bayesian-ae")
# Read a value back during fit (the samplers' divergence check; laplace-torch's own
# code), which a meta tensor cannot give: they are checked on the CPU here, not on meta.
READS_VALUES = ("sgld", "sghmc", "laplace")
QUICK = {"epochs": 2, "hidden": (8,)}
# The samplers' budget is steps, not epochs.
_SAMPLER_QUICK = {"n_steps": 20, "thin": 2, "hidden": (8,)}


def quick(name: str) -> dict[str, Any]:
    """The smallest budget of adapter ``name``."""
    return dict(_SAMPLER_QUICK) if name in ("sgld", "sghmc") else dict(QUICK)


def _data(task: str) -> tuple[np.ndarray, np.ndarray | None]:
    rng = np.random.default_rng(0)
    if task == "reconstruction":
        return (rng.random((40, 16)) < 0.3).astype(np.float64), None
    X = rng.normal(size=(40, 3))
    if task == "classification":
        return X, rng.integers(0, 3, size=40).astype(np.int64)
    return X, np.sin(X[:, :1])


def _on_meta_only(t: torch.Tensor) -> np.ndarray:
    """Stands in for ``to_numpy``: the outputs must come from the meta device."""
    assert t.is_meta, f"an output was computed on {t.device}, not the adapter's device"
    return np.zeros(t.shape)


@pytest.mark.parametrize(
    ("name", "task"),
    [(n, t) for n in SUPERVISED if n not in READS_VALUES for t in ("regression", "classification")]
    + [(n, "reconstruction") for n in AUTOENCODERS]
    + [("mc-dropout", "regression-hetero"), ("bbb", "regression-mixture"), ("ensemble", "regression-adversarial")],
)
def test_fit_and_sample_stay_on_the_adapters_device(name: str, task: str) -> None:
    extra = {"regression-hetero": {"heteroscedastic": True}, "regression-mixture": {"prior": "mixture"},
             "regression-adversarial": {"adversarial_eps": 0.1}}.get(task, {})
    task = task.split("-")[0]
    X, y = _data(task)
    adapter = make_adapter(name, **quick(name), **extra, device="meta")
    with mock.patch.object(_base, "to_numpy", _on_meta_only), mock.patch.object(vae, "to_numpy", _on_meta_only):
        adapter.fit(X, y, seed=0)
        devices = {p.device.type for p in adapter.model_.parameters()} | {b.device.type for b in adapter.model_.buffers()}
        assert devices == {"meta"}
        samples = adapter.sample_predictive(X[:5], n_samples=3, seed=1)
        if task == "reconstruction":
            adapter.generate(seed=0, X_interp=X[:4])
    assert type(samples).__name__.lower().startswith(task[:5])


@pytest.mark.parametrize("name", [*SUPERVISED, *AUTOENCODERS])
def test_cpu_given_explicitly_or_as_auto_changes_no_number(name: str) -> None:
    task = "reconstruction" if name in AUTOENCODERS else "classification"
    X, y = _data(task)
    runs = []
    for device in (None, "cpu", "auto"):
        params = quick(name) if device is None else {**quick(name), "device": device}
        adapter = make_adapter(name, **params).fit(X, y, seed=3)
        s = adapter.sample_predictive(X[:7], n_samples=4, seed=4)
        runs.append(s.probs if task == "classification" else s.recon)
    if torch.cuda.is_available():  # auto means CUDA there: only the explicit CPU run must match
        runs = runs[:2]
    for other in runs[1:]:
        np.testing.assert_array_equal(runs[0], other)


@pytest.mark.parametrize("bad", ["gpu0", 3, "cuda:99"])
def test_a_bad_or_absent_device_is_a_value_error_at_fit(bad) -> None:
    X, y = _data("regression")
    with pytest.raises(ValueError, match="device"):
        make_adapter("bbb", **QUICK, device=bad).fit(X, y, seed=0)


@pytest.mark.parametrize("name", ["deterministic", "mc-dropout", "bbb", "ensemble", "tfp-bbb"])
def test_n_classes_from_the_dataset_not_the_labels(name: str) -> None:
    if name.startswith("tfp"):
        pytest.importorskip("tensorflow_probability")
    X = np.random.default_rng(1).normal(size=(60, 2))
    y = np.digitize(X[:, 0], [-0.5, 0.5]).astype(np.int64)  # labels 0..2, learnable
    adapter = make_adapter(name, epochs=40, hidden=(8,))
    adapter.fit(X, y, seed=0, n_classes=5)
    p = adapter.sample_predictive(X[:6], n_samples=3, seed=0).probs
    assert p.shape == (3, 6, 5)
    # Classes never seen in training get little mass, and every draw is a distribution.
    assert p[..., 3:].max() < p[..., :3].max()
    np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-6)
    with pytest.raises(ValueError, match="n_classes must be an int >= the labels' max"):
        make_adapter(name, epochs=1).fit(X, y, seed=0, n_classes=2)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="torch sees no CUDA device")
@pytest.mark.parametrize("name", SUPERVISED)
def test_cuda_fits_and_samples_to_numpy(name: str) -> None:
    adapter = make_adapter(name, **quick(name), device="cuda")
    check_adapter(adapter, "regression")
    check_adapter(adapter, "classification")
    X, y = _data("regression")
    fitted = make_adapter(name, **quick(name), device="cuda").fit(X, y, seed=0)
    assert next(fitted.model_.parameters()).is_cuda
