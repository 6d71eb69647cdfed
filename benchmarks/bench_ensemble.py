"""Speed of the vectorized deep ensemble against M sequential member fits, as a ratio.

Two uses:

- ``python -m benchmarks.bench_ensemble`` (from the repository root) measures both in one
  process and prints, per shape, the per-epoch time of ``EnsembleAdapter`` (M members in
  one stacked model) over the time of M separate fits of one member, at M = 5. Target:
  ratio <= 0.4.
- asv discovers the ``time_*`` and ``track_*`` methods below.

Shapes: ``small`` is 8-50-1 regression (heteroscedastic head, N = 1000); ``digits`` is a
digits-sized classifier 64-50-8 (N = 1080). Batch 100 for both. A sequential member is
the plain ``nn.Linear`` MLP with the same head and loss, trained by the shared
``TorchAdapter`` loop (Adam, one permutation per epoch) -- what M independent fits would
run. The ensemble uses fused Adam (one kernel per step); the ratio is also printed against
sequential fits with fused Adam, to separate the two gains. torch runs on one thread (``torch.set_num_threads(1)``): the machine is shared and
multi-threaded timings of small matmuls are unstable. Each repeat times both methods back
to back and takes their ratio, so slow phases of the machine hit numerator and denominator
alike; the figure is the median ratio over repeats.
"""

from __future__ import annotations

import argparse
import functools
import statistics
import time
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from uqbench_adapters.torch._base import TorchAdapter, gaussian_nll, heteroscedastic_split, mlp
from uqbench_adapters.torch.ensemble import EnsembleAdapter

N_MEMBERS = 5
TARGET = 0.4
SHAPES: dict[str, dict[str, Any]] = {
    "small": {"n_in": 8, "hidden": (50,), "n_out": 1, "task": "regression", "n": 1000},
    "digits": {"n_in": 64, "hidden": (50,), "n_out": 8, "task": "classification", "n": 1080},
}
BATCH = 100


class SingleMember(TorchAdapter):
    """One ensemble member as a plain network: the sequential baseline."""

    def _build(self, n_in: int, n_out: int) -> nn.Module:
        width = 2 * n_out if self.task_ == "regression" else n_out
        return mlp(n_in, self.hidden, width, self.activation)

    def _loss(self, xb: torch.Tensor, yb: torch.Tensor, n_train: int) -> torch.Tensor:
        out = self.model_(xb)
        if self.task_ == "classification":
            return F.cross_entropy(out, yb)
        return gaussian_nll(yb, *heteroscedastic_split(out))


def make_data(shape: str) -> tuple[np.ndarray, np.ndarray]:
    spec = SHAPES[shape]
    rng = np.random.default_rng(0)
    X = rng.normal(size=(spec["n"], spec["n_in"]))
    if spec["task"] == "regression":
        return X, np.sin(X[:, :1]) + 0.1 * rng.normal(size=(spec["n"], 1))
    return X, rng.integers(0, spec["n_out"], size=spec["n"])


class SingleMemberFused(SingleMember):
    """The sequential baseline with fused Adam, as the ensemble uses (its own loop)."""

    def fit(self, X: np.ndarray, y: np.ndarray, *, seed: int) -> SingleMemberFused:
        original = torch.optim.Adam
        torch.optim.Adam = functools.partial(original, fused=True)  # type: ignore[misc]
        try:
            return super().fit(X, y, seed=seed)
        finally:
            torch.optim.Adam = original  # type: ignore[misc]


METHODS = ("vectorized", "sequential", "sequential-fused")


def fit_seconds(method: str, shape: str, epochs: int) -> float:
    """Wall time of the whole ensemble's ``epochs`` epochs, by ``method``."""
    X, y = make_data(shape)
    kw = {"hidden": SHAPES[shape]["hidden"], "epochs": epochs, "batch_size": BATCH}
    start = time.perf_counter()
    if method == "vectorized":
        EnsembleAdapter(n_members=N_MEMBERS, **kw).fit(X, y, seed=0)
    else:
        member = SingleMemberFused if method == "sequential-fused" else SingleMember
        for m in range(N_MEMBERS):
            member(**kw).fit(X, y, seed=m)
    return time.perf_counter() - start


def measure(shape: str, *, repeats: int = 7, epochs: int = 10) -> dict[str, float]:
    """Median per-epoch seconds of each method and the median per-repeat ratios.

    ``ratio``: vectorized over M sequential fits with the shared loop's default Adam (how
    every other adapter trains); ``ratio_same_adam``: over sequential fits that also use
    fused Adam, isolating the vectorization.
    """
    for method in METHODS:
        fit_seconds(method, shape, 1)  # warm-up
    times: dict[str, list[float]] = {m: [] for m in METHODS}
    for _ in range(repeats):
        for method in METHODS:
            times[method].append(fit_seconds(method, shape, epochs) / epochs)
    vec = times["vectorized"]
    ratios = [v / s for v, s in zip(vec, times["sequential"], strict=True)]
    same = [v / s for v, s in zip(vec, times["sequential-fused"], strict=True)]
    out = {f"{m}_epoch_s": statistics.median(t) for m, t in times.items()}
    return {
        **out,
        "ratio": statistics.median(ratios),
        "ratio_min": min(ratios),
        "ratio_max": max(ratios),
        "ratio_same_adam": statistics.median(same),
    }


# -- asv --------------------------------------------------------------------------------
class TrainEpoch:
    """asv: ten epochs of all M = 5 members, vectorized or one member after another."""

    params = (list(METHODS), list(SHAPES))
    param_names: ClassVar[list[str]] = ["method", "shape"]
    timeout = 300

    def setup(self, method: str, shape: str) -> None:
        torch.set_num_threads(1)

    def time_fit_ten_epochs(self, method: str, shape: str) -> None:
        fit_seconds(method, shape, 10)


class TrainRatio:
    """asv: per-epoch time of the vectorized ensemble over M sequential fits (target <= 0.4)."""

    params = (list(SHAPES),)
    param_names: ClassVar[list[str]] = ["shape"]
    timeout = 600

    def setup_cache(self) -> dict[str, dict[str, float]]:
        torch.set_num_threads(1)
        return {shape: measure(shape, repeats=5) for shape in SHAPES}

    def track_ratio(self, cache: dict[str, Any], shape: str) -> float:
        return cache[shape]["ratio"]

    track_ratio.unit = "ratio"  # type: ignore[attr-defined]


# -- script -----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=10, help="epochs per timed fit")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(
        f"torch {torch.__version__}, torch.set_num_threads(1), M = {N_MEMBERS}, batch {BATCH}, "
        f"medians of {args.repeats} repeats of {args.epochs}-epoch fits"
    )
    for shape, spec in SHAPES.items():
        r = measure(shape, repeats=args.repeats, epochs=args.epochs)
        arch = "-".join(map(str, (spec["n_in"], *spec["hidden"], spec["n_out"])))
        verdict = "ok" if r["ratio"] <= TARGET else "MISSED"
        print(
            f"{shape:<7} {arch:<8} {spec['task']:<14} ms/epoch: vectorized "
            f"{r['vectorized_epoch_s'] * 1e3:.2f}, {N_MEMBERS} sequential "
            f"{r['sequential_epoch_s'] * 1e3:.2f} (fused Adam "
            f"{r['sequential-fused_epoch_s'] * 1e3:.2f}); ratio {r['ratio']:.3f} "
            f"[{r['ratio_min']:.3f}-{r['ratio_max']:.3f}] (target <= {TARGET}: {verdict}); "
            f"with the same fused Adam {r['ratio_same_adam']:.3f}"
        )


if __name__ == "__main__":
    main()
