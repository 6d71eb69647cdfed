"""Wall time, CPU time and peak memory of a block of code.

Memory is the **process resident set size** (RSS) read from ``/proc/self/statm`` by a
background thread every few milliseconds, so it includes everything the process holds:
numpy and torch allocations, caches, thread stacks. It is not ``tracemalloc`` (which sees
only Python-level allocations and misses torch's allocator entirely). The reported peak
is the increase over the RSS at the start of the block, in MB (10^6 bytes); memory freed
and re-used inside the process does not count twice, and memory that the process already
held before the block (e.g. a cached dataset) counts zero.
"""

from __future__ import annotations

import math
import os
import re
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from uqbench.errors import UserError

_STATM = "/proc/self/statm"
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


_SIZE_UNITS = {"K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_SIZE = re.compile(r"\s*(\d+(?:\.\d*)?)\s*([KMGT]?)(?:I?B)?\s*")


def parse_size(text: str, *, default_unit: str = "") -> float | None:
    """``"4G"``, ``"500M"``, ``"1.5GiB"`` -> bytes (binary units); a bare number is in
    ``default_unit`` (``""``: bytes, or ``"K"``/``"M"``/``"G"``/``"T"``); None if not a size."""
    match = _SIZE.fullmatch(text.upper())
    if not match:
        return None
    unit = match[2] or default_unit
    return float(match[1]) * (_SIZE_UNITS[unit] if unit else 1)


def current_rss_bytes() -> int | None:
    """Resident set size of this process in bytes, or None where ``/proc`` is missing."""
    try:
        with open(_STATM, "rb") as f:
            return int(f.read().split()[1]) * _PAGE_BYTES
    except (OSError, IndexError, ValueError):
        return None


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) of this process, where Linux allows it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _peak_rss_bytes() -> int | None:
    """VmHWM: the kernel's exact peak RSS since the last reset; None where unavailable."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


class RSSSampler:
    """Peak RSS of the process between start and stop.

    Exact where Linux lets a process reset its peak-RSS mark (``/proc/self/clear_refs``,
    then ``VmHWM``); a background thread sampling RSS covers other systems and is kept as
    a floor (a busy machine can starve the thread, so it alone may miss short peaks).

    Parameters
    ----------
    interval : seconds between readings (5 ms by default: short enough to catch a
        transient allocation of a training step, cheap enough to be invisible in CPU time).
    """

    def __init__(self, *, interval: float = 0.005) -> None:
        if not interval > 0:
            raise ValueError(f"interval must be > 0 seconds, got {interval!r}")
        self.interval = interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.baseline: int | None = None
        self.peak: int | None = None
        self._exact = False

    def _read(self) -> None:
        rss = current_rss_bytes()
        if rss is not None and (self.peak is None or rss > self.peak):
            self.peak = rss

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self._read()

    def start(self) -> RSSSampler:
        # Without a reset, VmHWM is the process-lifetime peak (earlier cells included).
        self._exact = _reset_peak_rss()
        self.baseline = current_rss_bytes()
        self.peak = self.baseline
        self._stop.clear()
        self._thread = threading.Thread(target=self._loop, name="uqbench-rss", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> float:
        """Stop sampling; return the peak increase over the baseline in MB (NaN without /proc)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        self._read()  # the final state counts too (covers blocks shorter than one interval)
        hwm = _peak_rss_bytes() if self._exact else None
        if hwm is not None and self.peak is not None:
            self.peak = max(self.peak, hwm)
        if self.baseline is None or self.peak is None:
            return math.nan
        return max(self.peak - self.baseline, 0) / 1e6


@dataclass
class Measurement:
    """What :func:`measure` found; filled in when the block exits (also on an exception)."""

    wall_seconds: float = math.nan
    cpu_seconds: float = math.nan  # process CPU time: all threads, user + system
    peak_rss_mb: float = math.nan  # peak process-RSS increase over the start of the block


@contextmanager
def measure(*, rss_interval: float = 0.005) -> Iterator[Measurement]:
    """Measure the enclosed block::

        with measure() as m:
            adapter.fit(X, y, seed=seed)
        m.wall_seconds, m.cpu_seconds, m.peak_rss_mb
    """
    m = Measurement()
    sampler = RSSSampler(interval=rss_interval).start()
    wall0, cpu0 = time.perf_counter(), time.process_time()
    try:
        yield m
    finally:
        m.wall_seconds = time.perf_counter() - wall0
        m.cpu_seconds = time.process_time() - cpu0
        m.peak_rss_mb = sampler.stop()


CELL_THREADS = 1


@contextmanager
def one_thread() -> Iterator[None]:
    """Run cells with one torch thread and one BLAS thread, restoring the settings after.

    The networks benchmarked here are small: per-op overhead dominates, and on a shared
    2-core machine two intra-op threads measured 3-10x *slower* than one (thread hand-off
    and oversubscription). One thread also makes timings comparable across adapters.
    """
    import sys

    from threadpoolctl import threadpool_limits

    torch = sys.modules.get("torch")
    before = torch.get_num_threads() if torch is not None else None
    if torch is not None:
        torch.set_num_threads(CELL_THREADS)
    try:
        with threadpool_limits(limits=CELL_THREADS):
            yield
    finally:
        if torch is not None and before is not None:
            torch.set_num_threads(before)


def warm_up_frameworks() -> None:
    """Pay the one-time lazy initialisation of already-imported frameworks, untimed.

    torch defers much of its set-up (optimizer machinery, autograd and thread pools) to
    the first training step, which costs seconds; without this the first adapter of a
    run would be charged for it in ``fit_wall_seconds``. Runs a two-step Adam fit of a
    tiny linear model inside a forked RNG, so no global random state changes. Does
    nothing when torch has not been imported (no adapter uses it).
    """
    import sys

    torch = sys.modules.get("torch")
    if torch is None:
        return
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = torch.nn.Linear(3, 2)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(2):
            loss = model(torch.randn(4, 3)).pow(2).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()


# -- the sample-memory limit of a cell (see uqbench.harness.cell.check_sample_budget) ------

# The predictive draws of a cell are held in memory at once (every split's, for the
# metrics). S x N x outputs float64s grow fast (S = 10,000 draws of 10,000 MNIST test
# images x 10 classes is 8 GB): beyond this limit the cell fails with one line before the
# adapter is fitted or asked for a single draw, instead of the machine swapping or the
# OOM killer taking the whole run. Default: SAMPLE_MEMORY_FRACTION of physical memory.
MAX_SAMPLE_BYTES_ENV = "UQBENCH_MAX_SAMPLE_BYTES"
SAMPLE_MEMORY_FRACTION = 0.25
FALLBACK_SAMPLE_BYTES = 4 * 2**30  # where physical memory cannot be read (os.sysconf)


def physical_memory() -> int | None:
    """Bytes of physical memory (``os.sysconf``), None where the platform cannot say."""
    try:
        pages, page_size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, OSError, ValueError):
        return None
    return pages * page_size if pages > 0 and page_size > 0 else None


def format_bytes(n: float) -> str:
    """``n`` bytes in binary units: ``3.8 GiB``, ``512.0 MiB``, ``12 bytes``."""
    for unit, size in (("TiB", 2**40), ("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} bytes"


def sample_byte_limit() -> tuple[int, str]:
    """(bytes, where the number comes from) of the largest predictive-sample memory a cell may hold.

    ``$UQBENCH_MAX_SAMPLE_BYTES`` (bytes, or with a K/M/G/T suffix: ``8G``) when set, else
    ``SAMPLE_MEMORY_FRACTION`` of physical memory, else ``FALLBACK_SAMPLE_BYTES``.

    Raises
    ------
    UserError
        ``$UQBENCH_MAX_SAMPLE_BYTES`` is not a size (checked when a run is planned).
    """
    text = os.environ.get(MAX_SAMPLE_BYTES_ENV, "").strip()
    if text:
        value = parse_size(text) or 0.0
        if not 1 <= value < 2**63:
            raise UserError(
                f"${MAX_SAMPLE_BYTES_ENV} must be a number of bytes >= 1 such as 2000000000 or 8G, got {text!r}"
            )
        return int(value), f"${MAX_SAMPLE_BYTES_ENV}"
    ram = physical_memory()
    if ram is None:
        return FALLBACK_SAMPLE_BYTES, f"default; ${MAX_SAMPLE_BYTES_ENV} sets it"
    fraction = f"1/{round(1 / SAMPLE_MEMORY_FRACTION)}" if SAMPLE_MEMORY_FRACTION < 1 else "all"
    return (
        int(ram * SAMPLE_MEMORY_FRACTION),
        f"{fraction} of the {format_bytes(ram)} of RAM; ${MAX_SAMPLE_BYTES_ENV} sets it",
    )
