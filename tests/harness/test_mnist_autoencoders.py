"""Autoencoders on real MNIST (the shared test file, split 8,000/2,000) with notMNIST as OOD.

Skips cleanly when the shared data directory is absent.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from uqbench import store
from uqbench.harness.runner import run_suite
from uqbench.suites import Suite

SHARED = Path(os.environ.get("UQBENCH_SHARED_DATA") or Path(__file__).resolve().parents[3] / "shared" / "data")


@pytest.mark.slow
@pytest.mark.data
def test_vae_and_bayesian_ae_on_mnist_flag_notmnist(tmp_path):
    if not (SHARED / "images" / "notmnist").is_dir():
        pytest.skip(f"shared data directory {SHARED} is absent (set UQBENCH_SHARED_DATA)")
    suite = Suite(
        name="mnist-ae",
        datasets=("mnist-t10k",),
        seeds=(0,),
        n_samples=100,
        adapters=("vae", "bayesian-ae"),
        adapter_params={"vae": {"epochs": 3}, "bayesian-ae": {"epochs": 3}},
        n_bootstrap=20,
    )
    result = run_suite(suite, out=tmp_path, data_dir=SHARED)
    assert result.failures == []
    df = store.load_results(result.run_dir)
    assert set(df["status"]) == {"ok"}
    value = df.set_index(["adapter", "split", "metric"])["value"]
    for adapter in ("vae", "bayesian-ae"):
        # Letters are far from any digit under the model: -ELBO separates them almost perfectly.
        assert value[adapter, "ood:notmnist", "auroc_neg_elbo"] > 0.95
        assert -250 < value[adapter, "test", "elbo_score"] < -80  # nats per 784-pixel image
        assert value[adapter, "test", "latent_knn_accuracy_score"] > 0.3  # 10 classes, chance 0.1; 2-D latent, 3 epochs
    assert np.isnan(value["vae", "ood:notmnist", "epistemic_ratio"])  # deterministic encoder
    assert value["bayesian-ae", "ood:notmnist", "epistemic_ratio"] > 0
    arrays = store.load_arrays(result.run_dir, "vae__mnist-t10k__0")
    assert arrays["latent/manifold"].shape[2] == 784
    assert arrays["generate/prior_samples"].shape[1] == 784
