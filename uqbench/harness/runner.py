"""The run loop: cells in order, results appended as they finish, resume, progress.

::

    run = prepare(suite, out="reports", catalog=Catalog())   # validates, creates RUN_DIR
    result = execute(run, progress=LineProgress())
    result.exit_code                                          # 1 if any cell failed

    run = prepare_resume(run_dir)                             # after a crash or Ctrl-C
    execute(run)                                              # redoes unfinished cells only

A cell is finished when its ``cells/<key>.json`` exists; it is written after the cell's
rows and arrays, so a crash at any point leaves at most one unfinished cell whose rows
are dropped on resume. ``KeyboardInterrupt`` stops the loop after recording the session
as interrupted, then propagates (the CLI prints how to resume and exits 130).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, Protocol

from uqbench import store
from uqbench.errors import UserError
from uqbench.harness.cell import CellOutcome, cell_steps, one_line, run_cell
from uqbench.harness.grid import Catalog, Cell, Plan, plan_run
from uqbench.harness.timing import one_thread, warm_up_frameworks
from uqbench.suites import Suite


class ProgressHook(Protocol):
    """What the runner reports while it works (all no-ops in :class:`NullProgress`)."""

    def start(self, total: int, done: int) -> None: ...

    def cell_started(self, cell: Cell) -> None: ...

    def cell_finished(self, cell: Cell, record: dict[str, Any]) -> None: ...

    def stop(self) -> None: ...


class NullProgress:
    def start(self, total: int, done: int) -> None:
        pass

    def cell_started(self, cell: Cell) -> None:
        pass

    def cell_finished(self, cell: Cell, record: dict[str, Any]) -> None:
        pass

    def stop(self) -> None:
        pass


@dataclass(frozen=True)
class Run:
    """A run directory and the plan to complete it."""

    run_dir: Path
    plan: Plan
    catalog: Catalog
    resumed: bool = False


@dataclass
class RunResult:
    """Outcome of :func:`execute`: every finished cell of the run (all sessions)."""

    run_dir: Path
    cells: dict[str, dict[str, Any]]
    status: str  # "complete" | "interrupted"

    @property
    def failures(self) -> list[dict[str, Any]]:
        return [r for r in self.cells.values() if r["status"] == "failed"]

    @property
    def not_applicable(self) -> list[dict[str, Any]]:
        return [r for r in self.cells.values() if r["status"] == "skipped"]

    @property
    def exit_code(self) -> int:
        return 1 if self.failures else 0


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def _steps_note(suite: Suite) -> dict[str, list[str]]:
    from uqbench.harness.cell import OPTIONAL_STEPS

    return {
        "enabled": [s for s in suite.steps if OPTIONAL_STEPS.get(s) is not None],
        "not_implemented": [s for s in suite.steps if OPTIONAL_STEPS.get(s) is None],
    }


def prepare(
    suite: Suite,
    *,
    out: str | os.PathLike[str] = "reports",
    catalog: Catalog | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    argv: Sequence[str] | None = None,
) -> Run:
    """Validate ``suite`` and create a new run directory under ``out`` with its ``run.json``.

    Raises
    ------
    UserError
        Unknown names, bad hyperparameters, missing data directory; nothing is created.
    """
    from uqbench import __version__
    from uqbench.environment import capture_environment

    catalog = catalog or Catalog()
    plan = plan_run(suite, catalog=catalog, data_dir=data_dir)
    run_dir = store.new_run_dir(out, plan.suite.name)
    record = {
        "uqbench_version": __version__,
        "suite": plan.suite.to_dict(),
        "data_dir": plan.data_dir,
        "n_cells": len(plan.cells),
        "n_applicable": len(plan.applicable),
        "steps": _steps_note(plan.suite),
        "environment": capture_environment(argv),
        "status": "created",
        "started": None,
        "ended": None,
        "duration_seconds": None,
        "sessions": [],
    }
    store.write_run_json(run_dir, record)
    return Run(run_dir, plan, catalog)


def prepare_resume(
    run_dir: str | os.PathLike[str],
    *,
    catalog: Catalog | None = None,
    data_dir: str | os.PathLike[str] | None = None,
) -> Run:
    """Re-plan the run in ``run_dir`` from its ``run.json`` (data dir may be overridden)."""
    run_dir = store.require_run_dir(run_dir)
    record = store.read_run_json(run_dir)
    if "suite" not in record:
        raise UserError(f"{run_dir / store.RUN_JSON} has no suite; it was not written by `uqbench run`")
    suite = Suite.from_dict(record["suite"])
    catalog = catalog or Catalog()
    plan = plan_run(suite, catalog=catalog, data_dir=data_dir or record.get("data_dir"))
    return Run(run_dir, plan, catalog, resumed=True)


def _update_run_json(run_dir: Path, session: dict[str, Any], status: str) -> None:
    record = store.read_run_json(run_dir)
    sessions = [s for s in record.get("sessions", []) if s.get("id") != session["id"]]
    sessions.append(session)
    record["sessions"] = sessions
    record["status"] = status
    record["started"] = sessions[0]["started"]
    record["ended"] = session.get("ended")
    record["duration_seconds"] = sum(s.get("duration_seconds") or 0.0 for s in sessions)
    store.write_run_json(run_dir, record)


class _DatasetCache:
    """Datasets of the current (dataset, seed), one per input scaling; earlier ones dropped."""

    def __init__(self, catalog: Catalog, data_dir: str | None) -> None:
        self.catalog, self.data_dir = catalog, data_dir
        self._key: tuple[str, int] | None = None
        self._items: dict[str, Any] = {}

    def get(self, cell: Cell) -> Any:
        """The dataset, or the exception loading it raised (cached too: fails once per cell)."""
        if self._key != (cell.dataset, cell.seed):
            self._key, self._items = (cell.dataset, cell.seed), {}
        if cell.input_scaling not in self._items:
            source = self.catalog.dataset(cell.dataset)
            try:
                value: Any = source.load(seed=cell.seed, data_dir=self.data_dir, input_scaling=cell.input_scaling)
            except UserError:
                raise  # missing or unreadable data: the user must fix it, stop the run
            except Exception as exc:
                value = exc
            self._items[cell.input_scaling] = value
        return self._items[cell.input_scaling]


def _failed(cell: Cell, stage: str, reason: str) -> CellOutcome:
    row = store.make_row(cell.adapter, cell.dataset, cell.seed, stage, "", float("nan"), status="failed", error=reason)
    return CellOutcome("failed", [row], {}, reason, stage)


def _run_one(
    cell: Cell, run: Run, cache: _DatasetCache, steps: list[Any], broken: dict[str, str] | None = None
) -> CellOutcome:
    if cell.applicable and broken and cell.adapter in broken:
        return _failed(cell, "warm_up", broken[cell.adapter])
    if not cell.applicable:
        return run_cell(cell, dataset=None, make_adapter=lambda: None, metrics=None, n_samples=1, n_bootstrap=1)
    dataset = cache.get(cell)
    if isinstance(dataset, Exception):
        return _failed(cell, "load", one_line(dataset))
    suite = run.plan.suite
    params = suite.params_for(cell.adapter, cell.dataset, run.catalog.adapter_keywords(cell.adapter))
    return run_cell(
        cell,
        dataset=dataset,
        make_adapter=lambda: run.catalog.make_adapter(cell.adapter, params),
        metrics=run.catalog.metrics,
        n_samples=suite.n_samples,
        n_bootstrap=suite.n_bootstrap,
        steps=steps,
    )


def execute(
    run: Run,
    *,
    progress: ProgressHook | None = None,
    argv: Sequence[str] | None = None,
    jobs: int = 1,
) -> RunResult:
    """Run every unfinished cell of ``run``; return all finished cells.

    Rows of unfinished cells left by an earlier session are dropped first. A
    ``KeyboardInterrupt`` (or any other escaping exception) is recorded in ``run.json``
    and re-raised; everything already written stays valid.

    ``jobs > 1`` runs cells in that many worker processes (each single-threaded, as
    cells always are); this process alone writes the run directory, cell by cell. Each
    cell is still timed in its own process, but cells on neighbouring cores share memory
    bandwidth: use ``jobs=1`` for the cleanest timings. Needs the default catalog (the
    entry-point registry), which workers rebuild.
    """
    if isinstance(jobs, bool) or not isinstance(jobs, int) or jobs < 1:
        raise UserError(f"jobs must be an integer >= 1, got {jobs!r}")
    progress = progress or NullProgress()
    run_dir, plan = run.run_dir, run.plan
    finished = store.read_cells(run_dir)
    store.keep_rows_of(run_dir, set(finished))
    todo = [c for c in plan.cells if c.key not in finished]
    step_names = _enabled_steps(plan.suite)
    jobs = min(jobs, max(1, sum(c.applicable for c in todo)))
    if jobs > 1 and not run.catalog.is_default():
        raise ValueError("jobs > 1 needs the default catalog (workers rebuild it from the registry)")
    session: dict[str, Any] = {
        "id": len(store.read_run_json(run_dir).get("sessions", [])),
        "started": _now(),
        "ended": None,
        "duration_seconds": None,
        "command": list(sys.argv if argv is None else argv),
        "resumed": run.resumed,
        "cells_todo": len(todo),
        "jobs": jobs,
        "status": "running",
    }
    _update_run_json(run_dir, session, "running")
    t0 = time.perf_counter()
    status = "crashed"
    progress.start(len(plan.cells), len(plan.cells) - len(todo))
    try:
        if jobs == 1:
            outcomes = _run_here(run, todo, step_names, progress)
        else:
            outcomes = _run_in_workers(run, todo, step_names, progress, jobs)
        for cell, outcome, started, ended in outcomes:
            record = _write_cell(run, cell, outcome, started, ended)
            finished[cell.key] = record
            progress.cell_finished(cell, record)
        status = "complete"
    except KeyboardInterrupt:
        status = "interrupted"
        raise
    except UserError:
        status = "aborted"
        raise
    finally:
        progress.stop()
        session.update(ended=_now(), duration_seconds=time.perf_counter() - t0, status=status)
        _update_run_json(run_dir, session, status)
    return RunResult(run_dir, store.read_cells(run_dir), status)


def _enabled_steps(suite: Suite) -> tuple[str, ...]:
    return tuple(s for s in suite.steps if s in _steps_note(suite)["enabled"])


_Done = tuple[Cell, CellOutcome, str, str]


def _run_here(run: Run, todo: list[Cell], step_names: tuple[str, ...], progress: ProgressHook) -> Iterator[_Done]:
    """Cells one after another in this process (a generator: each is written before the next runs)."""
    steps = cell_steps(step_names)
    cache = _DatasetCache(run.catalog, run.plan.data_dir)
    broken: dict[str, str] = {}
    with one_thread():
        if any(c.applicable for c in todo):
            broken = run.catalog.warm_up(sorted({c.adapter for c in todo if c.applicable}))
            warm_up_frameworks()
        for cell in todo:
            progress.cell_started(cell)
            started = _now()
            outcome = _run_one(cell, run, cache, steps, broken)
            yield cell, outcome, started, _now()


def _run_in_workers(
    run: Run, todo: list[Cell], step_names: tuple[str, ...], progress: ProgressHook, jobs: int
) -> Iterator[_Done]:
    """Cells in ``jobs`` spawned worker processes, yielded in the order they finish.

    A worker that dies (out of memory, a segfault in native code) breaks the pool without
    saying which cell killed it: the cells that were in flight are then re-run one at a
    time, each in a fresh single-worker pool, so only the culprit is recorded as failed
    and the run (or its resume) goes on.
    """
    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    queue = list(todo)
    while queue:
        suspects: list[Cell] = []
        pool = _new_pool(run, step_names, jobs)
        pending: dict[Any, Cell] = {}
        try:
            while (queue or pending) and not suspects:
                while queue and len(pending) < jobs:
                    cell = queue[0]
                    try:
                        future = pool.submit(_worker_run, cell)
                    except BrokenProcessPool:  # a worker died since the last wait
                        break
                    progress.cell_started(queue.pop(0))
                    pending[future] = cell
                if not pending:  # the pool broke before taking any cell: start a new one
                    break
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for future in done:
                    try:
                        outcome, started, ended = future.result()
                    except BrokenProcessPool:
                        suspects = list(pending.values())
                        break
                    yield pending.pop(future), outcome, started, ended
        except BaseException:
            _stop_workers(pool)
            raise
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
        for cell in suspects:
            yield _run_isolated(run, step_names, cell)


def _run_isolated(run: Run, step_names: tuple[str, ...], cell: Cell) -> _Done:
    """One cell in its own worker: a dead worker now names its cell."""
    from concurrent.futures.process import BrokenProcessPool

    pool = _new_pool(run, step_names, 1)
    try:
        outcome, started, ended = pool.submit(_worker_run, cell).result()
        return cell, outcome, started, ended
    except BrokenProcessPool:
        reason = "the worker process running this cell died (killed, out of memory, or a native crash)"
        return cell, _failed(cell, "worker", reason), _now(), _now()
    except BaseException:
        _stop_workers(pool)
        raise
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _new_pool(run: Run, step_names: tuple[str, ...], jobs: int) -> Any:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")  # never fork a process that holds torch
    init = (run.run_dir, run.plan, step_names)
    return ProcessPoolExecutor(jobs, mp_context=context, initializer=_worker_init, initargs=init)


def _stop_workers(pool: Any) -> None:
    """Terminate a pool's workers now (they ignore SIGINT, and shutdown would wait for them)."""
    for process in list((getattr(pool, "_processes", None) or {}).values()):
        if process.is_alive():
            process.terminate()


_WORKER: dict[str, Any] = {}


def _worker_init(run_dir: Path, plan: Plan, step_names: tuple[str, ...]) -> None:
    import signal

    from threadpoolctl import threadpool_limits

    from uqbench.harness.timing import CELL_THREADS

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    run = Run(Path(run_dir), plan, Catalog(), resumed=False)
    _WORKER.update(
        run=run, steps=cell_steps(step_names), cache=_DatasetCache(run.catalog, plan.data_dir), broken={}
    )
    # Load every adapter module now (imports torch), then set threads and warm up.
    for name in plan.suite.adapters or ():
        run.catalog.adapter_tasks(name)
    _WORKER["limits"] = threadpool_limits(limits=CELL_THREADS)
    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(CELL_THREADS)
    _WORKER["broken"] = run.catalog.warm_up(plan.suite.adapters or ())
    warm_up_frameworks()


def _worker_run(cell: Cell) -> tuple[CellOutcome, str, str]:
    started = _now()
    outcome = _run_one(cell, _WORKER["run"], _WORKER["cache"], _WORKER["steps"], _WORKER["broken"])
    return outcome, started, _now()


def _write_cell(run: Run, cell: Cell, outcome: CellOutcome, started: str, ended: str) -> dict[str, Any]:
    """Append the cell's rows and arrays, then its json (the completion marker, last)."""
    store.append_rows(run.run_dir, outcome.rows)
    if outcome.arrays:
        store.write_arrays(run.run_dir, cell.key, outcome.arrays)
    record = {
        "adapter": cell.adapter,
        "dataset": cell.dataset,
        "seed": cell.seed,
        "status": outcome.status,
        "reason": outcome.reason,
        "stage": outcome.stage,
        "mode": cell.mode,
        "task": run.catalog.dataset(cell.dataset).task,
        "n_rows": len(outcome.rows),
        "arrays": bool(outcome.arrays),
        "times": outcome.times,
        "started": started,
        "ended": ended,
        "traceback": outcome.traceback,
    }
    store.write_cell(run.run_dir, cell.key, record)
    return record


def run_suite(suite: Suite, **kwargs: Any) -> RunResult:
    """``execute(prepare(suite, ...))``; ``progress`` goes to :func:`execute`."""
    progress = kwargs.pop("progress", None)
    jobs = kwargs.pop("jobs", 1)
    run = prepare(suite, **kwargs)
    return execute(run, progress=progress, argv=kwargs.get("argv"), jobs=jobs)


# -- progress displays -------------------------------------------------------------------


class LineProgress:
    """One line per finished cell (for logs and pipes, where a live bar would garble)."""

    def __init__(self, file: Any = None) -> None:
        self.file = file
        self.total = self.index = 0

    def start(self, total: int, done: int) -> None:
        self.total, self.index = total, done
        if done:
            print(f"resuming: {done}/{total} cells already finished", file=self.file or sys.stdout, flush=True)

    def cell_started(self, cell: Cell) -> None:
        pass

    def cell_finished(self, cell: Cell, record: dict[str, Any]) -> None:
        self.index += 1
        width = len(str(self.total))
        wall = record["times"].get("cell_wall_seconds")
        detail = {
            "ok": f"ok ({wall:.1f} s)" if wall is not None else "ok",
            "failed": f"FAILED in {record['stage']}: {record['reason']}",
            "skipped": "not applicable",
        }[record["status"]]
        print(f"[{self.index:>{width}}/{self.total}] {cell}: {detail}", file=self.file or sys.stdout, flush=True)

    def stop(self) -> None:
        pass


class RichProgress:
    """A live rich progress bar over cells, naming the current one (for terminals)."""

    def __init__(self, console: Any = None) -> None:
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
        )

        self.progress = Progress(
            TextColumn("[bold]cells"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[current]}"),
            TextColumn("[red]{task.fields[failed]}"),
            console=console,
            transient=False,
        )
        self.task: Any = None
        self.n_failed = 0

    def start(self, total: int, done: int) -> None:
        self.progress.start()
        self.task = self.progress.add_task("cells", total=total, completed=done, current="", failed="")

    def cell_started(self, cell: Cell) -> None:
        self.progress.update(self.task, current=str(cell))

    def cell_finished(self, cell: Cell, record: dict[str, Any]) -> None:
        if record["status"] == "failed":
            self.n_failed += 1
            from rich.markup import escape

            text = escape(f"{cell} in {record['stage']}: {record['reason']}")
            self.progress.console.print(f"[red]failed[/red] {text}", highlight=False)
        failed = f"{self.n_failed} failed" if self.n_failed else ""
        self.progress.update(self.task, advance=1, current="", failed=failed)

    def stop(self) -> None:
        self.progress.stop()
