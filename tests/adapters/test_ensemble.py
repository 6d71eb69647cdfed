"""Deep ensemble: the contract, vectorized training == M separate fits, sampling, and a
behavioural check against a single deterministic network."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from sklearn.metrics import log_loss
from torch.nn import functional as F

from uqbench.testing import check_adapter
from uqbench_adapters.torch._base import gaussian_nll, heteroscedastic_split
from uqbench_adapters.torch.deterministic import DeterministicAdapter
from uqbench_adapters.torch.ensemble import EnsembleAdapter


@pytest.fixture(autouse=True)
def _one_thread():
    # Tiny networks gain nothing from intra-op threads, and lose a lot to contention on
    # a shared machine.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_contract(task):
    check_adapter(EnsembleAdapter(n_members=3, epochs=3, hidden=(16,)), task)


def _recording_fit(adapter, X, y, seed):
    """Fit ``adapter`` while recording its initial model and every minibatch index array."""
    record = {"batches": []}
    build, epoch_batches = adapter._build, adapter._epoch_batches

    def spy_build(n_in, n_out):
        model = build(n_in, n_out)
        record["init"] = copy.deepcopy(model)
        return model

    def spy_batches(n, batch):
        out = epoch_batches(n, batch)
        record["batches"].extend(out)
        return out

    adapter._build, adapter._epoch_batches = spy_build, spy_batches
    adapter.fit(X, y, seed=seed)
    return record


@pytest.mark.parametrize("task", ["regression", "classification"])
def test_vectorized_training_equals_separate_member_fits(task):
    rng = np.random.default_rng(3)
    X = rng.normal(size=(48, 3))
    if task == "regression":
        y = (X[:, :1] ** 2 + 0.3 * rng.normal(size=(48, 1))).astype(np.float64)
    else:
        y = (X[:, 0] + X[:, 1] > 0).astype(np.int64) + (X[:, 2] > 1).astype(np.int64)
    adapter = EnsembleAdapter(
        n_members=3, hidden=(7, 5), epochs=2, batch_size=16, lr=0.02, weight_decay=1e-3
    )
    record = _recording_fit(adapter, X, y, seed=11)
    batches = record["batches"]
    assert len(batches) == 6 and batches[0].shape == (3, 16)
    # Independent data orders and initialisations per member.
    assert not torch.equal(batches[0][0], batches[0][1])
    init = record["init"]
    assert not torch.allclose(init.weight[0][0], init.weight[0][1])

    Xt = torch.as_tensor(X, dtype=torch.float32)
    yt = torch.as_tensor(y, dtype=torch.long if task == "classification" else torch.float32)
    for m in range(3):
        net = init.member(m)
        opt = torch.optim.Adam(net.parameters(), lr=0.02, weight_decay=1e-3)
        for idx in batches:
            out = net(Xt[idx[m]])
            if task == "classification":
                loss = F.cross_entropy(out, yt[idx[m]])
            else:
                loss = gaussian_nll(yt[idx[m]], *heteroscedastic_split(out))
            opt.zero_grad()
            loss.backward()
            opt.step()
        fitted = adapter.model_.member(m)
        moved = False
        for p_ref, p_fit, p_init in zip(
            net.parameters(), fitted.parameters(), init.member(m).parameters(), strict=True
        ):
            torch.testing.assert_close(p_fit, p_ref, atol=2e-5, rtol=1e-4)
            moved |= not torch.allclose(p_fit, p_init)
        assert moved


def test_draws_are_members_cycled_in_a_seeded_order():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 2))
    y = (X[:, 0] > 0).astype(np.int64)
    X_test = rng.normal(size=(9, 2))
    m = 4
    adapter = EnsembleAdapter(n_members=m, epochs=3, hidden=(8,)).fit(X, y, seed=0)
    with torch.no_grad():
        members = np.stack(
            [
                torch.softmax(adapter.model_.member(k)(torch.as_tensor(X_test).float()), -1)
                .double()
                .numpy()
                for k in range(m)
            ]
        )
    probs = adapter.sample_predictive(X_test, n_samples=2 * m + 1, seed=5).probs
    order = adapter.member_order(2 * m + 1, seed=5)
    assert sorted(order[:m]) == list(range(m))
    np.testing.assert_array_equal(order[m:], order[: m + 1])  # cycles with period M
    np.testing.assert_allclose(probs, members[order], atol=1e-6)
    # S < M: distinct members, the first S of the seed's permutation.
    few = adapter.member_order(3, seed=5)
    np.testing.assert_array_equal(few, order[:3])
    assert not np.array_equal(adapter.member_order(m, seed=1), adapter.member_order(m, seed=2))


def test_adversarial_training_changes_the_fit():
    X = np.random.default_rng(1).normal(size=(40, 3))
    y = np.sin(X[:, :1])
    plain = EnsembleAdapter(n_members=2, epochs=3, hidden=(8,)).fit(X, y, seed=0)
    adv = EnsembleAdapter(n_members=2, epochs=3, hidden=(8,), adversarial_eps=0.05).fit(X, y, seed=0)
    assert not torch.allclose(plain.model_.weight[0], adv.model_.weight[0])
    check_adapter(EnsembleAdapter(n_members=2, epochs=2, adversarial_eps=0.05), "regression")


@pytest.mark.parametrize(
    ("param", "value"),
    [("n_members", 0), ("n_members", 2.5), ("n_members", True), ("adversarial_eps", -0.1)],
)
def test_invalid_hyperparameters(param, value):
    X = np.zeros((10, 2))
    y = np.zeros(10, dtype=np.int64)
    with pytest.raises(ValueError, match=param):
        EnsembleAdapter(**{param: value}).fit(X, y, seed=0)


def test_sampling_requires_fit_and_valid_n_samples():
    with pytest.raises(RuntimeError, match="not fitted"):
        EnsembleAdapter().sample_predictive(np.zeros((2, 2)), n_samples=3, seed=0)
    fitted = EnsembleAdapter(n_members=2, epochs=1).fit(np.zeros((10, 2)), np.zeros((10, 1)), seed=0)
    with pytest.raises(ValueError, match="n_samples"):
        fitted.sample_predictive(np.zeros((2, 2)), n_samples=0, seed=0)


def test_ensemble_beats_a_single_network_in_nll_on_noisy_labels():
    # Easy linear boundary, 20% flipped labels, 100 points and an over-trained wide net:
    # single networks become overconfident on the flips; averaging members softens that.
    rng = np.random.default_rng(0)

    def make(n):
        X = rng.normal(size=(n, 2))
        y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64)
        return X, np.where(rng.random(n) < 0.2, 1 - y, y)

    X, y = make(100)
    X_test, y_test = make(2000)
    kw = {"hidden": (100, 100), "epochs": 60, "batch_size": 25, "lr": 1e-2}
    single = DeterministicAdapter(**kw).fit(X, y, seed=0)
    ens = EnsembleAdapter(n_members=5, **kw).fit(X, y, seed=0)
    p_single = single.sample_predictive(X_test, n_samples=1, seed=0).mean()
    draws = ens.sample_predictive(X_test, n_samples=5, seed=0).probs
    nll_single = log_loss(y_test, p_single, labels=[0, 1])
    nll_ens = log_loss(y_test, draws.mean(axis=0), labels=[0, 1])
    nll_members = [log_loss(y_test, p, labels=[0, 1]) for p in draws]
    assert nll_ens < nll_single - 0.05, (nll_ens, nll_single)
    # Jensen only guarantees beating the members' mean NLL; this asks for the best one.
    assert nll_ens < min(nll_members), (nll_ens, nll_members)
