"""Adapters that break their worker process: hang, segfault, exit, grow without bound.

Each misbehaves in ``fit`` only; the executors must record the cell as failed with the
reason, replace the worker, and let every other cell finish.
"""

from __future__ import annotations

import ctypes
import os
import time
from pathlib import Path

import numpy as np

from _dummies.adapters import NoisyAdapter


class HangingAdapter(NoisyAdapter):
    """Never returns from fit."""

    def fit(self, X, y, *, seed):
        while True:
            time.sleep(0.05)


class SegfaultAdapter(NoisyAdapter):
    """Dereferences a null pointer in native code (SIGSEGV)."""

    def fit(self, X, y, *, seed):
        ctypes.string_at(0)
        return self


class ExitingAdapter(NoisyAdapter):
    """Calls ``os._exit(3)`` mid-fit, as a misbehaving native library might."""

    def fit(self, X, y, *, seed):
        os._exit(3)


class MemoryHogAdapter(NoisyAdapter):
    """Touches 100 MiB more every 20 ms until stopped (about 5 GiB/s)."""

    def fit(self, X, y, *, seed):
        held = []
        for _ in range(200):  # 20 GiB at most, if nothing stops it
            held.append(np.ones(100 * 2**20 // 8))
            time.sleep(0.02)
        return super().fit(X, y, seed=seed)


class FlakyAdapter(NoisyAdapter):
    """Fails while the file named by ``$UQBENCH_TEST_FLAKY`` exists (to test retries)."""

    def fit(self, X, y, *, seed):
        flag = os.environ.get("UQBENCH_TEST_FLAKY")
        if flag and Path(flag).exists():
            raise RuntimeError("flaky: the flag file exists")
        return super().fit(X, y, seed=seed)


FAULTY_ADAPTERS = {
    "hang": HangingAdapter,
    "segfault": SegfaultAdapter,
    "exit": ExitingAdapter,
    "memory-hog": MemoryHogAdapter,
    "flaky": FlakyAdapter,
}
