"""Sampling speed of the TFP adapters relative to the batched torch floor, in one process.

``python -m benchmarks.bench_tfp`` (from the repository root) prints, for S = 100 draws at
N = 1,000 inputs of an 8-50-1 regression net, the time of each TFP adapter's
``sample_predictive`` divided by the floor: one ``torch.baddbmm`` per layer with
pre-drawn per-draw weights ``[S, in, out]`` (the same floor as ``bench_variational``).
Target: at most 15x. For reference it also times the torch twins' ``sample_predictive``
and, with ``--naive``, what a TFP user would write without the compiled sampler (one
``model.predict_on_batch`` per draw of a ``DenseReparameterization`` net; Flipout and LRT
would not even give whole functions that way).

Both frameworks run on one thread (``torch.set_num_threads(1)`` before TensorFlow is
imported, which the TFP adapters copy into TF's intra-op pool; see
``uqbench_adapters.tfp._common``). Times are medians over repeats; methods are
interleaved within each repeat and the ratio is taken per repeat, so slow phases of a
shared machine hit numerator and denominator alike. Fitting (one epoch) also compiles each
TFP sampler, so compilation is not in the sampling time.

asv discovers ``SampleRatio.track_ratio``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import torch

S, N = 100, 1000
TARGET = 15.0
TFP_METHODS = ("tfp-bbb", "tfp-flipout", "tfp-lrt", "tfp-mc-dropout")
TWINS = {"tfp-bbb": "bbb", "tfp-flipout": "flipout", "tfp-lrt": "lrt", "tfp-mc-dropout": "mc-dropout"}


def make_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """8-feature regression training data (1,000 rows) and N query points."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(1000, 8))
    y = np.sin(X[:, :1]) + 0.1 * rng.normal(size=(1000, 1))
    return X, y, rng.normal(size=(N, 8))


def make_adapter(name: str) -> Any:
    """An unfitted 8-50-1 adapter (one epoch) by registry-style name, without the registry."""
    from uqbench_adapters.tfp.mc_dropout import TFPMCDropoutAdapter
    from uqbench_adapters.tfp.variational import TFPBBBAdapter, TFPFlipoutAdapter, TFPLRTAdapter
    from uqbench_adapters.torch.bbb import BBBAdapter
    from uqbench_adapters.torch.flipout import FlipoutAdapter
    from uqbench_adapters.torch.lrt import LRTAdapter
    from uqbench_adapters.torch.mc_dropout import MCDropoutAdapter

    classes = {
        "tfp-bbb": TFPBBBAdapter, "tfp-flipout": TFPFlipoutAdapter, "tfp-lrt": TFPLRTAdapter,
        "tfp-mc-dropout": TFPMCDropoutAdapter, "bbb": BBBAdapter, "flipout": FlipoutAdapter,
        "lrt": LRTAdapter, "mc-dropout": MCDropoutAdapter,
    }
    return classes[name](hidden=(50,), epochs=1, batch_size=100)


def floor_call(torch_bbb: Any, Xq: np.ndarray) -> Callable[[], torch.Tensor]:
    """The floor: one ``baddbmm`` per layer with pre-drawn weights, ReLU in place between."""
    Xt = torch.as_tensor(Xq, dtype=torch.float32)
    with torch.no_grad():
        weights = [
            (w[:, :-1, :].contiguous(), w[:, -1:, :].contiguous())
            for w in torch_bbb.model_.sample_weights(S)
        ]

    def run() -> torch.Tensor:
        with torch.no_grad():
            h = Xt.expand(S, *Xt.shape)
            for i, (w, b) in enumerate(weights):
                if i:
                    h = h.relu_()
                h = torch.baddbmm(b, h, w)
            return h

    return run


def naive_call(tfp_bbb: Any, Xq: np.ndarray) -> Callable[[], np.ndarray]:
    """S ``predict_on_batch`` calls of the Keras model (one kernel sample per call)."""
    X32 = Xq.astype(np.float32)
    return lambda: np.stack([tfp_bbb.model_.predict_on_batch(X32) for _ in range(S)])


def _timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(*, repeats: int = 9, naive: bool = False, twins: bool = True) -> dict[str, dict[str, float]]:
    """Median seconds and median per-repeat ratio to the floor of each sampler."""
    torch.set_num_threads(1)  # before TF is imported: the TFP adapters copy it
    X, y, Xq = make_data()
    fitted = {m: make_adapter(m).fit(X, y, seed=0) for m in TFP_METHODS}
    if twins:
        fitted |= {TWINS[m]: make_adapter(TWINS[m]).fit(X, y, seed=0) for m in TFP_METHODS}
    torch_bbb = fitted["bbb"] if twins else make_adapter("bbb").fit(X, y, seed=0)
    calls: dict[str, Callable[[], Any]] = {"floor": floor_call(torch_bbb, Xq)}
    for m, a in fitted.items():
        calls[m] = lambda a=a: a.sample_predictive(Xq, n_samples=S, seed=0)
    if naive:
        calls["tfp-bbb predict_on_batch x S"] = naive_call(fitted["tfp-bbb"], Xq)
    for fn in calls.values():  # warm-up
        fn()
    times: dict[str, list[float]] = {m: [] for m in calls}
    for r in range(repeats):
        for m, fn in calls.items():
            if m.endswith("x S") and r >= 3:  # slow: three repeats are plenty
                continue
            times[m].append(_timed(fn))
    floor = times["floor"]
    return {
        m: {
            "seconds": statistics.median(ts),
            "ratio": statistics.median(t / f for t, f in zip(ts, floor, strict=False)),
            "ratio_min": min(t / f for t, f in zip(ts, floor, strict=False)),
            "ratio_max": max(t / f for t, f in zip(ts, floor, strict=False)),
        }
        for m, ts in times.items()
    }


class SampleRatio:
    """asv: TFP ``sample_predictive`` time over the torch floor, S = 100, N = 1000, 8-50-1."""

    params = (list(TFP_METHODS),)
    param_names = ("method",)
    timeout = 600

    def setup_cache(self) -> dict[str, dict[str, float]]:
        return measure(repeats=5, twins=False)

    def track_ratio(self, cache: dict[str, dict[str, float]], method: str) -> float:
        return cache[method]["ratio"]

    track_ratio.unit = "ratio"  # type: ignore[attr-defined]


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument("--naive", action="store_true", help="also time predict_on_batch per draw")
    args = parser.parse_args(argv)
    res = measure(repeats=args.repeats, naive=args.naive)
    from uqbench_adapters.tfp._common import tf_modules

    tfm = tf_modules()
    print(
        f"torch {torch.__version__} ({torch.get_num_threads()} thread), tensorflow {tfm.tf.__version__} "
        f"({tfm.threads} intra-op thread), tfp {tfm.tfp.__version__}; medians of {args.repeats} repeats"
    )
    print(f"sampling S={S}, N={N}, 8-50-1 (floor: {res['floor']['seconds'] * 1e3:.2f} ms)")
    for m, r in res.items():
        if m == "floor":
            continue
        note = f"target <= {TARGET:g}" if m in TFP_METHODS else ""
        print(
            f"  {m:<28} {r['seconds'] * 1e3:9.2f} ms  ratio {r['ratio']:7.2f} "
            f"[{r['ratio_min']:.2f}-{r['ratio_max']:.2f}]  {note}"
        )


if __name__ == "__main__":
    main()
