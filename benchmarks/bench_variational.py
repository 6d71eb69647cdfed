"""Speed of the variational adapters (``bbb``, ``flipout``, ``lrt``), as ratios.

Two uses:

- ``python -m benchmarks.bench_variational [--repeats 7] [--skip ...]`` (from the
  repository root) measures in one process and prints ratios: training time per epoch
  over a deterministic MLP of the same shape (wall and process-CPU time), where a
  training step's time goes (profiler categories and matmul multiply-accumulates),
  sampling time over a floor, and the peak memory of a large sampling call (in a fresh
  subprocess).
- asv discovers the ``time_*``, ``peakmem_*`` and ``track_*`` methods below.

Shapes: ``small`` is 8-50-1 regression (batch 100, N = 1000); ``wide`` is 64-256-256-10
classification (batch 128, N = 1280). Every fit goes through the same training loop
(``TorchAdapter.fit``: Adam, the same batches), so the ratios isolate the layers. torch
runs on one thread (``torch.set_num_threads(1)``) because the machine is shared and
multi-threaded timings of small matmuls are unstable. Times are medians over repeats;
methods are interleaved within each repeat and a ratio is taken per repeat, so slow
phases of a shared machine hit numerator and denominator alike.

bayesian-torch's ``LinearReparameterization`` and ``LinearFlipout`` are measured too when
``bayesian_torch`` is importable (``pip install --no-deps bayesian-torch==0.5.0``), run
through the same loop.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from itertools import pairwise
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from uqbench_adapters.torch._base import (
    HomoscedasticNoise,
    TorchAdapter,
    gaussian_nll,
)
from uqbench_adapters.torch.bbb import BBBAdapter
from uqbench_adapters.torch.deterministic import DeterministicAdapter
from uqbench_adapters.torch.flipout import FlipoutAdapter
from uqbench_adapters.torch.lrt import LRTAdapter

try:
    from bayesian_torch.layers import LinearFlipout, LinearReparameterization
except ImportError:  # optional peer
    LinearFlipout = LinearReparameterization = None

TARGETS = {"bbb": 2.0, "lrt": 2.2, "flipout": 2.5}
SAMPLE_TARGET = 1.3
SHAPES: dict[str, dict[str, Any]] = {
    "small": {"n_in": 8, "hidden": (50,), "n_out": 1, "task": "regression", "batch": 100, "n": 1000},
    "wide": {"n_in": 64, "hidden": (256, 256), "n_out": 10, "task": "classification", "batch": 128, "n": 1280},
}
EPOCHS = {"small": 20, "wide": 5}
OURS = {"bbb": BBBAdapter, "flipout": FlipoutAdapter, "lrt": LRTAdapter}
PEERS = {"bbb": "bt-reparam", "flipout": "bt-flipout"}


# -- bayesian-torch through the same training loop ------------------------------------
class _BTNet(nn.Module):
    def __init__(self, layer_cls: type, widths: tuple[int, ...], noise: nn.Module | None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layer_cls(a, b) for a, b in pairwise(widths))
        self.noise = noise

    def forward(self, x: torch.Tensor, return_kl: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        kl = x.new_zeros(())
        for i, layer in enumerate(self.layers):
            if i:
                x = F.relu(x)
            if return_kl:
                x, layer_kl = layer(x)
                kl = kl + layer_kl
            else:
                x = layer(x, return_kl=False)
        return x, kl


class BayesianTorchAdapter(TorchAdapter):
    """bayesian-torch's layers in uqbench's loop; draws are a Python loop of forwards."""

    def __init__(self, *, layer: str = "reparam", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.layer = layer

    def _build(self, n_in: int, n_out: int) -> nn.Module:
        layer_cls = LinearReparameterization if self.layer == "reparam" else LinearFlipout
        noise = HomoscedasticNoise(n_out) if self.task_ == "regression" else None
        return _BTNet(layer_cls, (n_in, *self.hidden, n_out), noise)

    def _loss(self, xb: torch.Tensor, yb: torch.Tensor, n_train: int) -> torch.Tensor:
        out, kl = self.model_(xb)
        if self.task_ == "classification":
            nll = F.cross_entropy(out, yb)
        else:
            nll = gaussian_nll(yb, out, self.model_.noise())
        return nll + kl / n_train

    def _sample_chunk(self, X: torch.Tensor, n_draws: int) -> torch.Tensor:
        return torch.stack([self.model_(X, return_kl=False)[0] for _ in range(n_draws)])

    def _regression_head(self, out: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return out, self.model_.noise().expand_as(out)


def make_adapter(method: str, shape: str, epochs: int) -> Any:
    """An unfitted adapter of ``method`` (ours, ``deterministic`` or ``bt-*``) for ``shape``."""
    spec = SHAPES[shape]
    kw = {"hidden": spec["hidden"], "batch_size": spec["batch"], "epochs": epochs}
    if method == "deterministic":
        return DeterministicAdapter(**kw)
    if method in OURS:
        return OURS[method](**kw)
    if method.startswith("bt-"):
        if LinearReparameterization is None:
            raise NotImplementedError("bayesian_torch is not importable")
        return BayesianTorchAdapter(layer=method[3:], **kw)
    raise ValueError(f"unknown method {method!r}")


def methods() -> list[str]:
    out = ["deterministic", *OURS]
    if LinearReparameterization is not None:
        out += ["bt-reparam", "bt-flipout"]
    return out


def make_data(shape: str, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    spec = SHAPES[shape]
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(spec["n"], spec["n_in"]))
    if spec["task"] == "classification":
        y = rng.integers(0, spec["n_out"], size=spec["n"]).astype(np.int64)
        y[: spec["n_out"]] = np.arange(spec["n_out"])  # every class present
    else:
        y = np.sin(X[:, :1]) + 0.1 * rng.normal(size=(spec["n"], 1))
    return X, y


# -- training ---------------------------------------------------------------------------
def measure_training(shape: str, *, repeats: int = 7) -> dict[str, dict[str, float]]:
    """Seconds per epoch (median) and ratios to ``deterministic`` (median of per-repeat ratios).

    ``ratio`` uses wall time, ``cpu_ratio`` process CPU time (with one thread the same
    work, but less sensitive to other processes taking the core).
    """
    X, y = make_data(shape)
    epochs = EPOCHS[shape]
    names = methods()
    for m in names:  # warm-up: first-call allocations, lazy imports
        make_adapter(m, shape, 1).fit(X, y, seed=0)
    wall: dict[str, list[float]] = {m: [] for m in names}
    cpu: dict[str, list[float]] = {m: [] for m in names}
    for r in range(repeats):
        for m in names:
            adapter = make_adapter(m, shape, epochs)
            w0, c0 = time.perf_counter(), time.process_time()
            adapter.fit(X, y, seed=r)
            wall[m].append((time.perf_counter() - w0) / epochs)
            cpu[m].append((time.process_time() - c0) / epochs)

    def ratios(ts: list[float], ref: list[float]) -> list[float]:
        return [t / d for t, d in zip(ts, ref, strict=True)]

    out = {}
    for m in names:
        rw, rc = ratios(wall[m], wall["deterministic"]), ratios(cpu[m], cpu["deterministic"])
        out[m] = {
            "epoch_s": statistics.median(wall[m]),
            "cpu_epoch_s": statistics.median(cpu[m]),
            "ratio": statistics.median(rw),
            "ratio_min": min(rw),
            "ratio_max": max(rw),
            "cpu_ratio": statistics.median(rc),
        }
    return out


def measure_breakdown(shape: str, *, steps: int = 30, repeats: int = 3) -> dict[str, dict[str, float]]:
    """Where a training step's time goes (ms per step, CPU time; medians over repeats).

    Categories from the torch profiler: matmul (``mm``/``addmm``), random numbers,
    transcendental elementwise ops (softplus, log, sigmoid, sqrt...), all other aten ops
    (cheap elementwise passes, copies, the optimizer's arithmetic), and the remainder
    (Python and dispatch): process CPU time of an unprofiled fit minus the profiled aten
    time. Profiling is intrusive and the machine shared, so read these as approximate.
    """
    from torch.profiler import ProfilerActivity, profile

    groups = {
        "matmul": {"aten::mm", "aten::addmm", "aten::bmm"},
        "rng": {"aten::normal_", "aten::random_", "aten::uniform_", "aten::randperm", "aten::bernoulli_"},
        "transcendental": {
            "aten::softplus", "aten::softplus_backward", "aten::log", "aten::log1p", "aten::exp",
            "aten::sigmoid", "aten::sqrt", "aten::sqrt_", "aten::tanh", "aten::logaddexp",
        },
    }
    spec = SHAPES[shape]
    X, y = make_data(shape)
    steps_per_epoch = spec["n"] // spec["batch"]
    epochs = max(1, steps // steps_per_epoch)
    per_step = 1.0 / (epochs * steps_per_epoch)
    names = ("deterministic", *OURS)
    rows: dict[str, list[dict[str, float]]] = {m: [] for m in names}
    for m in names:
        make_adapter(m, shape, 1).fit(X, y, seed=0)
    for _ in range(repeats):
        for m in names:
            c0 = time.process_time()
            make_adapter(m, shape, epochs).fit(X, y, seed=0)
            total = (time.process_time() - c0) * 1e3 * per_step
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                make_adapter(m, shape, epochs).fit(X, y, seed=0)
            events = [e for e in prof.key_averages() if e.key.startswith("aten::")]
            row = {
                g: sum(e.self_cpu_time_total for e in events if e.key in keys) * 1e-3 * per_step
                for g, keys in groups.items()
            }
            aten = sum(e.self_cpu_time_total for e in events) * 1e-3 * per_step
            row["other aten"] = aten - sum(row.values())
            row["python+dispatch"] = max(0.0, total - aten)
            row["total"] = total
            rows[m].append(row)
    return {m: {k: statistics.median(r[k] for r in rs) for k in rs[0]} for m, rs in rows.items()}


def matmul_macs(shape: str, method: str) -> int:
    """Multiply-accumulates of one training step's matmuls (forward and backward).

    Per layer: forward ``B K out`` with ``K = in + 1`` for the packed variational weights
    (``in`` for ``nn.Linear``), weight gradient the same, input gradient the same except
    in the first layer. ``lrt`` and ``flipout`` run two such products per layer (mean
    and variance / mean and perturbation); ``bbb`` and ``deterministic`` one.
    """
    spec = SHAPES[shape]
    widths = (spec["n_in"], *spec["hidden"], spec["n_out"])
    extra = 0 if method == "deterministic" else 1
    per_pass = sum(
        spec["batch"] * (a + extra) * b * (2 if i == 0 else 3) for i, (a, b) in enumerate(pairwise(widths))
    )
    return per_pass * (2 if method in ("lrt", "flipout") else 1)


# -- sampling ---------------------------------------------------------------------------
def floor_weights(adapter: Any, n_samples: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Pre-drawn contiguous per-draw (weight ``[S, in, out]``, bias ``[S, 1, out]``) per layer."""
    out = []
    with torch.no_grad():
        for w in adapter.model_.sample_weights(n_samples):
            out.append((w[:, :-1, :].contiguous(), w[:, -1:, :].contiguous()))
    return out


def floor_forward(X: torch.Tensor, weights: list[tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
    """The floor: one ``baddbmm`` per layer with pre-drawn weights, ReLU in place between."""
    h = X.expand(weights[0][0].shape[0], *X.shape)
    for i, (w, b) in enumerate(weights):
        if i:
            h = h.relu_()
        h = torch.baddbmm(b, h, w)
    return h


def measure_sampling(
    *, n_samples: int = 100, n_points: int = 1000, repeats: int = 9
) -> dict[str, dict[str, float]]:
    """``sample_predictive`` time (median) and its ratio to the floor (8-50-1 net).

    ``ratio`` is the median of per-repeat process-CPU-time ratios (wall-time ratios of
    identical code spread by +-30% here while other jobs ran); ``seconds`` is wall time.
    """
    X, y = make_data("small")
    Xq = np.random.default_rng(1).normal(size=(n_points, X.shape[1]))
    Xt = torch.as_tensor(Xq, dtype=torch.float32)
    fitted = {m: make_adapter(m, "small", 1).fit(X, y, seed=0) for m in (*OURS, "bt-reparam") if m in methods()}
    weights = floor_weights(fitted["bbb"], n_samples)
    calls: dict[str, Callable[[], Any]] = {"floor": lambda: floor_forward(Xt, weights)}
    for m, a in fitted.items():
        calls[m] = lambda a=a: a.sample_predictive(Xq, n_samples=n_samples, seed=0)
    with torch.no_grad():
        for fn in calls.values():
            fn()
        wall: dict[str, list[float]] = {m: [] for m in calls}
        cpu: dict[str, list[float]] = {m: [] for m in calls}
        for _ in range(repeats):
            for m, fn in calls.items():
                w0, c0 = time.perf_counter(), time.process_time()
                fn()
                wall[m].append(time.perf_counter() - w0)
                cpu[m].append(time.process_time() - c0)
    return {
        m: {
            "seconds": statistics.median(wall[m]),
            "ratio": statistics.median(t / f for t, f in zip(cpu[m], cpu["floor"], strict=True)),
            "wall_ratio": statistics.median(t / f for t, f in zip(wall[m], wall["floor"], strict=True)),
        }
        for m in calls
    }


_PEAK_CODE = """
import json, sys, numpy as np, torch
torch.set_num_threads(1)
from benchmarks.bench_variational import make_adapter, make_data
from uqbench_adapters.torch._base import _CHUNK_FLOATS

def status(field):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(field)) / 1024

X, y = make_data("small")
a = make_adapter(sys.argv[1], "small", 1).fit(X, y, seed=0)
n, S = int(sys.argv[3]), int(sys.argv[2])
Xq = np.random.default_rng(1).normal(size=(n, X.shape[1]))
a.sample_predictive(Xq, n_samples=2, seed=0)
before = status("VmRSS:")
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current RSS
s = a.sample_predictive(Xq, n_samples=S, seed=0)
chunk = min(S, max(1, _CHUNK_FLOATS // (n * a._widest())))
print(json.dumps({
    "delta_mb": status("VmHWM:") - before,
    "output_mb": (s.loc.nbytes + s.scale.nbytes) / 2**20,
    "chunk_draws": chunk,
    "chunk_mb": chunk * n * a._widest() * 4 / 2**20,
}))
"""


def measure_peak_memory(method: str, *, n_samples: int = 1000, n_points: int = 1000) -> dict[str, float]:
    """Rise of the peak RSS during one ``sample_predictive`` call, in a fresh process.

    tracemalloc does not see torch's allocations and torch keeps no CPU allocator
    statistics, so this is the peak RSS during the call (``VmHWM``, reset just before it
    through ``/proc/self/clear_refs``) minus the RSS before it (MiB), next to
    the size of the returned float64 arrays and the widest float32 intermediate of one
    chunk ``[n, N, width]``.
    """
    # A fixed mmap threshold stops glibc keeping freed blocks on its heap, so the RSS
    # follows the live allocations rather than the allocator's high-water mark.
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536", "MALLOC_TRIM_THRESHOLD_": "0"}
    out = subprocess.run(
        [sys.executable, "-c", _PEAK_CODE, method, str(n_samples), str(n_points)],
        capture_output=True, text=True, check=True, env=env,
    )
    return json.loads(out.stdout)


# -- gradient-variance probe on a toy problem --------------------------------------------
def measure_probe(*, epochs: int = 50, n_repeats: int = 200) -> dict[str, dict[str, float]]:
    """Gradient variance of bbb, flipout and lrt at one shared posterior (toy regression).

    8-50-1 regression, N = 2048, ``y = sin(2 x.w / sqrt(8)) + 0.1 noise``. BBB is trained
    (batch 128) and its posterior loaded into all three, so only the gradient estimator
    differs. Values: mean per-coordinate variance, see ``uqbench.harness.probe``.
    """
    from uqbench.harness.probe import gradient_variance

    rng = np.random.default_rng(0)
    X = rng.normal(size=(2048, 8))
    y = np.sin(X @ rng.normal(size=(8, 1)) / np.sqrt(8) * 2) + 0.1 * rng.normal(size=(2048, 1))
    kw = {"hidden": (50,), "batch_size": 128}
    state = BBBAdapter(**kw, epochs=epochs).fit(X, y, seed=0).model_.state_dict()
    out = {}
    for name, cls in OURS.items():
        adapter = cls(**kw, epochs=1).fit(X, y, seed=0)
        adapter.model_.load_state_dict(state)
        out[name] = dict(gradient_variance(adapter, X, y, n_repeats=n_repeats, seed=1))
    return out


# -- asv --------------------------------------------------------------------------------
class TrainEpoch:
    """asv: one training epoch per method and shape (fit with one epoch)."""

    params = (["deterministic", "bbb", "flipout", "lrt", "bt-reparam", "bt-flipout"], list(SHAPES))
    param_names = ("method", "shape")
    timeout = 300

    def setup(self, method: str, shape: str) -> None:
        torch.set_num_threads(1)
        self.X, self.y = make_data(shape)
        self.adapter = make_adapter(method, shape, 1)

    def time_fit_one_epoch(self, method: str, shape: str) -> None:
        self.adapter.fit(self.X, self.y, seed=0)


class TrainRatio:
    """asv: per-epoch training time over the deterministic MLP's, measured in one process."""

    params = (["bbb", "flipout", "lrt", "bt-reparam", "bt-flipout"], list(SHAPES))
    param_names = ("method", "shape")
    timeout = 600

    def setup_cache(self) -> dict[str, dict[str, dict[str, float]]]:
        torch.set_num_threads(1)
        return {shape: measure_training(shape, repeats=5) for shape in SHAPES}

    def track_ratio(self, cache: dict[str, Any], method: str, shape: str) -> float:
        if method not in cache[shape]:
            raise NotImplementedError(f"{method} unavailable")
        return cache[shape][method]["ratio"]

    track_ratio.unit = "ratio"  # type: ignore[attr-defined]


class Sample:
    """asv: S = 100 draws at N = 1000 (8-50-1), and peak memory of S = 1000 draws."""

    params = (["bbb", "flipout", "lrt"],)
    param_names = ("method",)

    def setup(self, method: str) -> None:
        torch.set_num_threads(1)
        X, y = make_data("small")
        self.adapter = make_adapter(method, "small", 1).fit(X, y, seed=0)
        self.Xq = np.random.default_rng(1).normal(size=(1000, X.shape[1]))

    def time_sample_100(self, method: str) -> None:
        self.adapter.sample_predictive(self.Xq, n_samples=100, seed=0)

    def peakmem_sample_1000(self, method: str) -> None:
        self.adapter.sample_predictive(self.Xq, n_samples=1000, seed=0)

    def track_sample_ratio(self, method: str) -> float:
        return measure_sampling(repeats=5)[method]["ratio"]

    track_sample_ratio.unit = "ratio"  # type: ignore[attr-defined]


# -- script -----------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument(
        "--skip", nargs="*", default=[], choices=["train", "breakdown", "sample", "memory", "probe"]
    )
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    print(f"torch {torch.__version__}, 1 thread, medians of {args.repeats} repeats; "
          "ratio = wall time, cpu = process CPU time, [min-max] of the per-repeat wall ratios")
    if "train" not in args.skip:
        for shape in SHAPES:
            res = measure_training(shape, repeats=args.repeats)
            spec = SHAPES[shape]
            arch = "-".join(map(str, (spec["n_in"], *spec["hidden"], spec["n_out"])))
            det = res["deterministic"]["epoch_s"] * 1e3
            print(f"\ntraining per epoch, {shape} {arch}, batch {spec['batch']}, "
                  f"{spec['n'] // spec['batch']} steps (deterministic: {det:.2f} ms)")
            for m, r in res.items():
                if m == "deterministic":
                    continue
                target = TARGETS.get(m)
                peer = res.get(PEERS.get(m, ""), {})
                note = f"target <= {target}" if target else ""
                if target and peer:
                    note += (f"; {peer['epoch_s'] / r['epoch_s']:.2f}x faster than {PEERS[m]} "
                             f"(cpu {peer['cpu_epoch_s'] / r['cpu_epoch_s']:.2f}x)")
                print(f"  {m:<11} {r['epoch_s'] * 1e3:8.2f} ms  ratio {r['ratio']:.2f} "
                      f"[{r['ratio_min']:.2f}-{r['ratio_max']:.2f}]  cpu {r['cpu_ratio']:.2f}  {note}")
    if "breakdown" not in args.skip:
        for shape in SHAPES:
            res = measure_breakdown(shape)
            print(f"\nwhere a training step goes, {shape} (ms per step, CPU; matmul MACs per step)")
            for m, row in res.items():
                parts = "  ".join(f"{k} {v:5.2f}" for k, v in row.items())
                print(f"  {m:<14} {parts}  MACs {matmul_macs(shape, m) / 1e6:.1f}M")
    if "sample" not in args.skip:
        res = measure_sampling(repeats=args.repeats + 2)
        print(f"\nsampling S=100, N=1000, 8-50-1 (floor: {res['floor']['seconds'] * 1e3:.2f} ms)")
        for m, r in res.items():
            if m != "floor":
                tgt = f"target <= {SAMPLE_TARGET}" if m in OURS else "a Python loop of 100 forwards"
                print(f"  {m:<11} {r['seconds'] * 1e3:8.2f} ms  ratio {r['ratio']:.2f} (cpu; wall "
                      f"{r['wall_ratio']:.2f})  {tgt}")
    if "probe" not in args.skip:
        res = measure_probe()
        print("\ngradient variance at one shared posterior (toy 8-50-1 regression, N=2048, 200 repeats)")
        for metric in res["bbb"]:
            print(f"  {metric:<20} " + "  ".join(f"{m} {r[metric]:.2e}" for m, r in res.items()))
    if "memory" not in args.skip:
        print("\npeak RSS rise of sample_predictive, S=1000, N=1000, 8-50-1 (fresh process)")
        for m in OURS:
            r = measure_peak_memory(m)
            print(f"  {m:<11} {r['delta_mb']:7.1f} MiB (returned float64 arrays: {r['output_mb']:.1f} MiB; "
                  f"chunks of {r['chunk_draws']} draws, widest intermediate {r['chunk_mb']:.1f} MiB)")


if __name__ == "__main__":
    main()
