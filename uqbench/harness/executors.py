"""Where cells run: in this process, in a pool of worker processes, or as Ray tasks.

Every executor takes the cells still to do and yields ``(cell, outcome, started, ended)``
as cells finish; the driver (:func:`uqbench.harness.runner.execute`) alone writes the run
directory. A cell is a pure, seeded function of its configuration, so the three
executors give identical metrics for the same seeds.

Fault isolation (``process`` and ``ray``): a cell that raises fails in its step as
always; a cell that hangs past ``cell_timeout`` seconds, grows past ``cell_memory``
bytes of resident memory, segfaults, is killed, or exits its worker process is recorded
as failed with that reason, its worker is replaced, and the other cells go on.

The memory limit is enforced inside each worker by a watchdog thread that reads the
process's resident set size every 50 ms and ends the process when it is over the limit
(an allocation faster than that can overshoot briefly; the kernel's OOM killer remains
the backstop). It is a limit on cells, so it is armed once the worker is set up: a worker
whose imports and warm-up alone exceed it is a user error (say how much it holds and
stop), not a crash loop of workers killed before their first cell. Values below
:data:`MIN_CELL_MEMORY` are refused before a run starts.

Worker threads: one intra-op thread for torch, TensorFlow and BLAS per worker, always:
with workers >= cores, more threads per worker oversubscribe the cores and cut throughput
(measured on a 2-core machine), and with fewer workers two threads measured slower than
one on these small nets (see :mod:`uqbench.harness.timing`) and would make timings depend
on the worker count.
"""

from __future__ import annotations

import math
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from uqbench.errors import UserError
from uqbench.harness.cell import CellOutcome
from uqbench.harness.grid import Cell, Plan
from uqbench.harness.worker import WorkerSpec, WorkerState, failed_outcome, now

EXECUTORS = ("serial", "process", "ray")

# Exit code of a worker ended by its own memory watchdog (distinguishes it from a crash).
EXIT_MEMORY = 86
_WATCH_INTERVAL = 0.05
# The driver's poll period for timeouts and dead workers.
_POLL = 0.1
# A worker that dies this many times in a row before it is ready means the set-up itself
# is broken (e.g. an adapter module that crashes on import): stop instead of looping.
_MAX_START_FAILURES = 3
# The smallest --cell-memory accepted. Measured (Linux, CPU torch 2.x): a spawned worker
# holds 36 MiB with numpy-only adapters, 307 MiB once it has imported and warmed up torch
# (deterministic, mc-dropout) and 373 MiB after two toy cells; a TensorFlow (tfp-*) worker
# holds about 1 GiB. Below this even a torch worker cannot run a cell; a limit above this
# but below a heavier worker's set-up is caught when the worker reports its memory.
MIN_CELL_MEMORY = 512 * 2**20
# How long the Ray driver waits for its first worker (actor) to be set up before it gives
# up: on a cluster with no free CPU, Ray keeps an actor pending forever, silently. Long
# enough for a cold worker to import torch/TensorFlow on a busy node.
RAY_START_TIMEOUT = 120.0
RAY_START_TIMEOUT_ENV = "UQBENCH_RAY_START_TIMEOUT"

Done = tuple[Cell, CellOutcome, str, str]
# run_one(cell, state) -> outcome, where state is what WorkerState.build returns.
OnStart = Callable[[Cell], None]


def _adapters_of(plan: Plan, cells: Sequence[Cell] | None = None) -> list[str]:
    """The adapters a worker must import for ``cells`` (not the unavailable ones: their
    cells fail with the reason the plan recorded)."""
    chosen = cells if cells is not None else plan.cells
    return sorted({c.adapter for c in chosen if c.applicable and c.adapter not in plan.unavailable})


def rss_bytes(pid: int | str = "self") -> int | None:
    """Resident set size of process ``pid`` in bytes (Linux ``/proc``), None if unknown."""
    try:
        with open(f"/proc/{pid}/statm", "rb") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, IndexError, ValueError):
        return None


class Watchdog(threading.Thread):
    """Ends this process when its RSS exceeds ``memory_limit`` or its parent has died.

    The memory limit counts only once :meth:`arm` is called (after the worker's set-up):
    the parent check runs from the start, so a worker never outlives a killed driver.
    """

    def __init__(self, memory_limit: int | None, *, parent: int | None) -> None:
        super().__init__(name="uqbench-watchdog", daemon=True)
        self.memory_limit = memory_limit
        self.parent = parent
        self.armed = threading.Event()

    def arm(self) -> None:
        self.armed.set()

    def run(self) -> None:
        while True:
            time.sleep(_WATCH_INTERVAL)
            if self.parent is not None and os.getppid() != self.parent:
                os._exit(0)  # the driver died (e.g. SIGKILL): nobody will read our result
            if self.memory_limit is not None and self.armed.is_set():
                rss = rss_bytes()
                if rss is not None and rss > self.memory_limit:
                    os._exit(EXIT_MEMORY)


def check_limits_supported(cell_memory: int | None) -> None:
    """Refuse a memory limit this machine cannot measure, or one no worker can run under."""
    if cell_memory is None:
        return
    if cell_memory < MIN_CELL_MEMORY:
        raise UserError(
            f"--cell-memory {_mib(cell_memory)} is below the minimum of {_mib(MIN_CELL_MEMORY)}: a worker "
            "holds about 300-400 MiB once it has imported torch (about 1 GiB with TensorFlow) before "
            "its first cell"
        )
    if rss_bytes() is None:
        raise UserError("--cell-memory needs Linux /proc to read a process's memory; not available here")


def over_limit_at_start(memory_limit: int | None) -> int | None:
    """This worker's RSS when its set-up alone already exceeds ``memory_limit``, else None."""
    if memory_limit is None:
        return None
    rss = rss_bytes()
    return rss if rss is not None and rss > memory_limit else None


def _set_up_too_big(memory_limit: int, rss: int, adapters: Sequence[str]) -> UserError:
    what = ", ".join(adapters) or "its adapters"
    return UserError(
        f"--cell-memory {_mib(memory_limit)} is less than a worker holds before its first cell "
        f"({_mib(rss)} after importing and warming up {what}): give more, e.g. --cell-memory "
        f"{-(-2 * rss // 2**30)}G"
    )


def _mib(n: int) -> str:
    return f"{n / 2**20:.0f} MiB"


# -- serial ---------------------------------------------------------------------------------


class SerialExecutor:
    """Cells one after another in this process (the cleanest timings; no fault isolation)."""

    name = "serial"

    def __init__(self, *, workers: int = 1, cell_timeout: float | None = None, cell_memory: int | None = None,
                 **_: Any) -> None:
        if workers != 1:
            raise UserError(f"--executor serial runs one cell at a time; got --workers {workers}")
        if cell_timeout is not None or cell_memory is not None:
            raise UserError("--cell-timeout and --cell-memory need --executor process or ray "
                            "(a cell in the driver's own process cannot be stopped safely)")
        self.workers = 1

    def run(self, spec: WorkerSpec, cells: list[Cell], on_start: OnStart) -> Iterator[Done]:
        from uqbench.harness.timing import one_thread

        cache = "UQBENCH_CACHE_DIR"
        before = os.environ.get(cache)
        os.environ.setdefault(cache, str(Path(spec.run_dir) / "cache"))  # for this run only
        try:
            with one_thread():
                state = WorkerState(spec, _adapters_of(spec.plan, cells), own_process=False)
                for cell in cells:
                    on_start(cell)
                    outcome, started, ended = state.run_cell(cell)
                    yield cell, outcome, started, ended
        finally:
            if before is None:
                os.environ.pop(cache, None)


# -- process pool ---------------------------------------------------------------------------


def _worker_main(
    conn: Any, spec: WorkerSpec, adapters: list[str], memory_limit: int | None, driver: int
) -> None:
    """A worker process: set up once, then run the cells the driver sends until EOF/None."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the driver handles Ctrl-C and stops us
    watchdog = Watchdog(memory_limit, parent=driver)
    watchdog.start()
    try:
        state = WorkerState(spec, adapters)
    except BaseException as exc:
        conn.send(("init_failed", f"{type(exc).__name__}: {exc}".splitlines()[0][:300]))
        return
    rss = over_limit_at_start(memory_limit)
    if rss is not None:
        conn.send(("over_limit", rss))
        return
    watchdog.arm()
    conn.send(("ready", os.getpid()))
    while True:
        try:
            cell = conn.recv()
        except (EOFError, OSError):
            return
        if cell is None:
            return
        try:
            outcome, started, ended = state.run_cell(cell)
        except UserError as exc:  # bad data the user must fix: the driver stops the run
            conn.send(("user_error", str(exc)))
            continue
        conn.send(("done", outcome, started, ended))


@dataclass
class _Worker:
    process: Any
    conn: Any
    ready: bool = False
    cell: Cell | None = None
    since: float = 0.0
    started: str = ""


class ProcessExecutor:
    """Cells in ``workers`` spawned processes, each set up once and reused.

    Each worker holds one cell at a time, so a timeout is measured from when the cell
    started, not from when it was queued. A worker that dies is replaced.
    """

    name = "process"

    def __init__(self, *, workers: int, cell_timeout: float | None = None, cell_memory: int | None = None,
                 **_: Any) -> None:
        check_limits_supported(cell_memory)
        self.workers, self.cell_timeout, self.cell_memory = workers, cell_timeout, cell_memory

    def _spawn(self, spec: WorkerSpec, adapters: list[str]) -> _Worker:
        import multiprocessing

        context = multiprocessing.get_context("spawn")  # never fork a process that holds torch
        parent, child = context.Pipe(duplex=True)
        process = context.Process(
            target=_worker_main,
            args=(child, spec, adapters, self.cell_memory, os.getpid()),
            name="uqbench-worker",
            daemon=True,
        )
        process.start()
        child.close()
        return _Worker(process, parent)

    def _death_reason(self, worker: _Worker) -> str:
        worker.process.join(timeout=1.0)
        code = worker.process.exitcode
        if code == EXIT_MEMORY and self.cell_memory is not None:
            return f"exceeded the memory limit of {_mib(self.cell_memory)} (--cell-memory); the worker was stopped"
        if code is not None and code < 0:
            try:
                name = signal.Signals(-code).name
            except ValueError:
                name = f"signal {-code}"
            return f"the worker process running this cell died from {name} (killed, out of memory, or a native crash)"
        return f"the cell exited its worker process (exit code {code})"

    def run(self, spec: WorkerSpec, cells: list[Cell], on_start: OnStart) -> Iterator[Done]:
        from multiprocessing.connection import wait

        queue = list(cells)
        adapters = _adapters_of(spec.plan, cells)
        n = min(self.workers, max(1, len(queue)))
        workers: list[_Worker] = []
        start_failures = 0
        try:
            workers += [self._spawn(spec, adapters) for _ in range(n)]
            while queue or any(w.cell is not None for w in workers):
                for w in workers:  # hand idle, ready workers the next cell
                    if w.ready and w.cell is None and queue:
                        cell = queue.pop(0)
                        try:
                            w.conn.send(cell)
                        except OSError:  # it died since its last message: retry the cell elsewhere
                            queue.insert(0, cell)
                            w.ready = False
                            continue
                        on_start(cell)
                        w.cell, w.since, w.started = cell, time.monotonic(), now()
                handles = [w.conn for w in workers] + [w.process.sentinel for w in workers]
                ready = set(wait(handles, timeout=_POLL))
                for i, w in enumerate(workers):
                    exhausted = False  # its pipe is at EOF: nothing more will come
                    if w.conn in ready:
                        try:
                            message = w.conn.recv()
                        except (EOFError, OSError):
                            message, exhausted = None, True
                        if message is not None:
                            kind = message[0]
                            if kind == "ready":
                                w.ready, start_failures = True, 0
                            elif kind == "user_error":
                                w.cell = None
                                raise UserError(message[1])
                            elif kind == "over_limit":
                                assert self.cell_memory is not None
                                raise _set_up_too_big(self.cell_memory, message[1], adapters)
                            elif kind == "init_failed":
                                raise RuntimeError(f"a worker process could not start: {message[1]}")
                            elif kind == "done":
                                _, outcome, started, ended = message
                                cell, w.cell = w.cell, None
                                assert cell is not None
                                yield cell, outcome, started, ended
                    # Death is judged afresh (not from the stale `ready` set): a worker may
                    # die right after its last message, while this loop was yielding.
                    dead = not w.process.is_alive()
                    timed_out = (
                        not dead
                        and w.cell is not None
                        and self.cell_timeout is not None
                        and time.monotonic() - w.since > self.cell_timeout
                        and not _pending(w)  # a result already sent is not a timeout
                    )
                    if not (dead or timed_out):
                        continue
                    if dead and w.cell is not None and not exhausted and _pending(w):
                        continue  # read its last result first, next round
                    if timed_out:
                        _kill(w)
                        reason = f"timed out after {self.cell_timeout:g} s (--cell-timeout); the worker was stopped"
                    else:
                        reason = self._death_reason(w)
                    if w.cell is not None:
                        cell, w.cell = w.cell, None
                        yield cell, failed_outcome(cell, "worker", reason), w.started, now()
                    elif not w.ready:
                        start_failures += 1
                        if start_failures >= _MAX_START_FAILURES:
                            raise RuntimeError(f"worker processes keep dying before they are ready: {reason}")
                    _close(w)
                    workers[i] = self._spawn(spec, adapters)
        finally:
            for w in workers:
                _kill(w)
                _close(w)


def _pending(worker: _Worker) -> bool:
    """Whether the worker's pipe has something to read (a message, or EOF)."""
    try:
        return bool(worker.conn.poll(0))
    except (EOFError, OSError):
        return False


def _kill(worker: _Worker) -> None:
    if worker.process.is_alive():
        worker.process.kill()
    worker.process.join(timeout=5.0)


def _close(worker: _Worker) -> None:
    try:
        worker.conn.close()
    except OSError:
        pass


# -- Ray ------------------------------------------------------------------------------------

class _CellActor:
    """A Ray actor holding one worker's set-up; its ``run`` method is one cell's task."""

    def __init__(self, spec: WorkerSpec, adapters: list[str], memory_limit: int | None) -> None:
        self.state = WorkerState(spec, adapters)
        self.over_limit = over_limit_at_start(memory_limit)
        if memory_limit is not None and self.over_limit is None:
            watchdog = Watchdog(memory_limit, parent=None)
            watchdog.arm()
            watchdog.start()

    def ready(self) -> tuple[str, int]:
        """``("ready", pid)``, or ``("over_limit", rss)`` when the set-up alone exceeds the limit."""
        if self.over_limit is not None:
            return "over_limit", self.over_limit
        return "ready", os.getpid()

    def run(self, cell: Cell) -> Any:
        try:
            return self.state.run_cell(cell)
        except UserError as exc:  # plain data back to the driver, which stops the run
            return ("user_error", str(exc))


@dataclass
class _Slot:
    actor: Any
    ready_ref: Any
    created: float = field(default_factory=time.monotonic)
    ready: bool = False
    cell: Cell | None = None
    ref: Any = None
    since: float = 0.0
    started: str = ""


class RayExecutor:
    """Each cell a Ray task on one of ``workers`` actors (``num_cpus=1`` each, no retries).

    ``address`` None starts a local Ray with ``workers`` CPUs; otherwise connects to that
    cluster (``HOST:PORT`` of its head, ``auto`` or ``ray://host:port``). An actor is a
    worker process set up once (imports, warm-up) and reused, so a timeout counts from a
    cell's start, not from the worker's set-up; an actor that dies or times out is replaced.

    Ray keeps an actor that no node can place (no free CPU, or not the ``memory`` that
    ``--cell-memory`` asks for) pending forever without a word, so while no worker is set
    up the driver waits at most ``start_timeout`` seconds (:data:`RAY_START_TIMEOUT`, or
    ``$UQBENCH_RAY_START_TIMEOUT``), then stops with a UserError saying what the cluster has.
    Once one worker runs, others that cannot start are no error: the run goes on, slower.
    """

    name = "ray"

    def __init__(self, *, workers: int, cell_timeout: float | None = None, cell_memory: int | None = None,
                 ray_address: str | None = None, **_: Any) -> None:
        try:
            import ray  # noqa: F401
        except ImportError:
            raise UserError("--executor ray needs Ray: pip install 'uqbench[ray]'") from None
        check_limits_supported(cell_memory)
        self.workers, self.cell_timeout, self.cell_memory = workers, cell_timeout, cell_memory
        self.address = ray_address
        self.start_timeout = _start_timeout()

    def _init(self) -> bool:
        """Start or connect; True when this executor started Ray (and must shut it down)."""
        import ray

        if ray.is_initialized():
            return False
        # Workers import what the driver can: its sys.path (plugins, test helpers).
        env = {"env_vars": {"PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}}
        # ray.init installs its own SIGTERM handler (sys.exit), which would turn a SIGTERM
        # of the driver into exit 1 with the session "crashed": keep the driver's handler
        # (the CLI records the session as interrupted and prints how to resume).
        sigterm = signal.getsignal(signal.SIGTERM) if threading.current_thread() is threading.main_thread() else None
        try:
            if self.address:
                ray.init(address=self.address, runtime_env=env, log_to_driver=False, logging_level="ERROR")
            else:
                ray.init(num_cpus=self.workers, include_dashboard=False, runtime_env=env,
                         log_to_driver=False, logging_level="ERROR")
        except (ConnectionError, RuntimeError, ValueError) as exc:
            where = self.address or "a local cluster"
            raise UserError(f"cannot start Ray on {where}: {' '.join(str(exc).split())[:300]}") from exc
        finally:
            if sigterm is not None:
                signal.signal(signal.SIGTERM, sigterm)
        return True

    def run(self, spec: WorkerSpec, cells: list[Cell], on_start: OnStart) -> Iterator[Done]:
        import ray

        started_here = self._init()
        adapters = _adapters_of(spec.plan, cells)
        options: dict[str, Any] = {"num_cpus": 1, "max_restarts": 0, "max_task_retries": 0}
        if self.cell_memory is not None:
            options["memory"] = self.cell_memory
        actor_class = ray.remote(_CellActor).options(**options)
        spec_ref = ray.put(spec)

        def new_slot() -> _Slot:
            actor = actor_class.remote(spec_ref, adapters, self.cell_memory)
            return _Slot(actor, actor.ready.remote())

        queue = list(cells)
        slots = [new_slot() for _ in range(min(self.workers, max(1, len(queue))))]
        start_failures = 0
        try:
            while queue or any(s.cell is not None for s in slots):
                for slot in slots:
                    if slot.ready and slot.cell is None and queue:
                        cell = queue.pop(0)
                        on_start(cell)
                        slot.cell, slot.since, slot.started = cell, time.monotonic(), now()
                        slot.ref = slot.actor.run.remote(cell)
                waiting = [s.ref for s in slots if s.cell is not None] + [s.ready_ref for s in slots if not s.ready]
                done, _ = ray.wait(waiting, num_returns=1, timeout=_POLL)
                done_ids = set(done)
                for i, slot in enumerate(slots):
                    if not slot.ready and slot.ready_ref in done_ids:
                        try:
                            kind, value = ray.get(slot.ready_ref)
                            if kind == "over_limit":
                                assert self.cell_memory is not None
                                raise _set_up_too_big(self.cell_memory, value, adapters)
                            slot.ready, start_failures = True, 0
                        except ray.exceptions.RayError as exc:
                            start_failures += 1
                            if start_failures >= _MAX_START_FAILURES:
                                reason = self._error_reason(exc)
                                raise RuntimeError(f"Ray workers keep failing to start: {reason}") from exc
                            slots[i] = new_slot()
                        continue
                    if slot.cell is None:
                        continue
                    if slot.ref in done_ids:
                        cell, slot.cell = slot.cell, None
                        try:
                            result = ray.get(slot.ref)
                        except ray.exceptions.RayError as exc:
                            yield cell, failed_outcome(cell, "worker", self._error_reason(exc)), slot.started, now()
                            ray.kill(slot.actor, no_restart=True)
                            slots[i] = new_slot()
                            continue
                        if result[0] == "user_error":
                            raise UserError(result[1])
                        outcome, started, ended = result
                        yield cell, outcome, started, ended
                    elif (
                        self.cell_timeout is not None
                        and time.monotonic() - slot.since > self.cell_timeout
                        and not ray.wait([slot.ref], timeout=0)[0]  # finished meanwhile: not a timeout
                    ):
                        cell, slot.cell = slot.cell, None
                        ray.kill(slot.actor, no_restart=True)
                        reason = f"timed out after {self.cell_timeout:g} s (--cell-timeout); the Ray worker was stopped"
                        yield cell, failed_outcome(cell, "worker", reason), slot.started, now()
                        slots[i] = new_slot()
                if not any(s.ready for s in slots):
                    waited = time.monotonic() - min(s.created for s in slots)
                    if waited > self.start_timeout:
                        raise UserError(self._no_worker_message())
        finally:
            for slot in slots:
                ray.kill(slot.actor, no_restart=True)
            if started_here:
                ray.shutdown()

    def _no_worker_message(self) -> str:
        import ray

        where = f"cluster {self.address}" if self.address else "the local Ray cluster"
        try:
            total = ray.cluster_resources().get("CPU", 0.0)
            free = ray.available_resources().get("CPU", 0.0)
            has = f" (it has {total:g} CPUs, {free:g} free)"
        except Exception:  # only a diagnostic: never hide the real message
            has = ""
        need = "a free CPU" + (f" and {_mib(self.cell_memory)} of memory" if self.cell_memory else "")
        return (
            f"no Ray worker started within {self.start_timeout:g} s on {where}{has}: does it have {need} "
            f"for a worker (each takes num_cpus=1)? Set {RAY_START_TIMEOUT_ENV}=SECONDS to wait longer"
        )

    def _error_reason(self, exc: BaseException) -> str:
        from ray.exceptions import OutOfMemoryError, RayActorError, WorkerCrashedError

        if isinstance(exc, OutOfMemoryError):
            return "Ray's memory monitor killed the worker running this cell (out of memory)"
        if isinstance(exc, RayActorError | WorkerCrashedError):
            limit = f", or it exceeded --cell-memory {_mib(self.cell_memory)}" if self.cell_memory else ""
            return f"the Ray worker running this cell died (killed, a native crash, or the cell exited it{limit})"
        return " ".join(f"{type(exc).__name__}: {exc}".split())[:300]


def _start_timeout() -> float:
    """:data:`RAY_START_TIMEOUT`, or ``$UQBENCH_RAY_START_TIMEOUT`` seconds when set."""
    text = os.environ.get(RAY_START_TIMEOUT_ENV, "").strip()
    if not text:
        return RAY_START_TIMEOUT
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value > 0 or value == math.inf:
        raise UserError(f"{RAY_START_TIMEOUT_ENV} must be a number of seconds > 0, got {text!r}")
    return value


def make_executor(name: str, workers: int = 1, *, check_only: bool = False, **options: Any) -> Any:
    """The executor ``name`` (one of :data:`EXECUTORS`) with the given options.

    Raises UserError for options the executor cannot honour (``check_only``: validate only).
    """
    classes = {"serial": SerialExecutor, "process": ProcessExecutor, "ray": RayExecutor}
    if name not in classes:
        raise UserError(f"unknown executor {name!r}; known executors: {', '.join(EXECUTORS)}")
    if options.get("ray_address") and name != "ray":
        raise UserError("--ray-address needs --executor ray")
    executor = classes[name](workers=workers, **options)
    return None if check_only else executor
