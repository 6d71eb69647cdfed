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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from uqbench import store
from uqbench.errors import UserError
from uqbench.harness.cell import CellOutcome
from uqbench.harness.grid import Catalog, Cell, Plan, cell_params, plan_run
from uqbench.harness.worker import WorkerSpec, now
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
    notes: tuple[str, ...] = ()  # e.g. an adapter whose version changed since the run began


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
    adapters = adapters_record(plan, catalog)
    run_dir = store.new_run_dir(out, plan.suite.name)
    record = {
        "uqbench_version": __version__,
        "suite": plan.suite.to_dict(),
        "data_dir": plan.data_dir,
        "n_cells": len(plan.cells),
        "n_applicable": len(plan.applicable),
        "steps": _steps_note(plan.suite),
        "adapters": adapters,
        "environment": capture_environment(argv),
        "status": "created",
        "started": None,
        "ended": None,
        "duration_seconds": None,
        "sessions": [],
    }
    store.write_run_json(run_dir, record)
    return Run(run_dir, plan, catalog)


def adapters_record(plan: Plan, catalog: Catalog) -> dict[str, dict[str, Any]]:
    """Per adapter of ``plan``: where it comes from (:func:`uqbench.registry.adapter_provenance`:
    entry point, distribution, version, git commit; None for an injected test catalog),
    whether it is available (and why not), and its constructor keywords per dataset."""
    out: dict[str, dict[str, Any]] = {}
    for name in plan.suite.adapters or ():
        provenance: dict[str, Any] = {}
        if catalog.is_default():
            from uqbench import registry

            provenance = registry.adapter_provenance(name)
        datasets = [d for d in plan.suite.datasets if plan.suite.runs_on(name, d)]
        out[name] = {
            **provenance,
            "available": name not in plan.unavailable,
            "reason": plan.unavailable.get(name, ""),
            "params": {d: cell_params(plan, catalog, name, d) for d in datasets},
        }
    return out


def prepare_resume(
    run_dir: str | os.PathLike[str],
    *,
    catalog: Catalog | None = None,
    data_dir: str | os.PathLike[str] | None = None,
    retry_failed: bool = False,
) -> Run:
    """Re-plan the run in ``run_dir`` from its ``run.json`` (data dir may be overridden).

    ``retry_failed``: also redo the cells that finished as failed (their records and rows
    are removed first; the rows go when :func:`execute` starts).
    """
    run_dir = store.require_run_dir(run_dir)
    with store.lock_run_dir(run_dir):  # it un-finishes cells: no other writer meanwhile
        record = store.read_run_json(run_dir)
        if "suite" not in record:
            raise UserError(f"{run_dir / store.RUN_JSON} has no suite; it was not written by `uqbench run`")
        suite = Suite.from_dict(record["suite"])
        catalog = catalog or Catalog()
        _check_same_data_dir(suite, catalog, data_dir, record.get("data_dir"))
        plan = plan_run(suite, catalog=catalog, data_dir=data_dir or record.get("data_dir"))
        notes: list[str] = []
        # Cells whose rows or arrays did not all survive (a truncated results.csv, a
        # damaged npz) are not finished: un-finish them so this session redoes them.
        for key, why in store.damaged_cells(run_dir, deep=True).items():
            store.forget_cell(run_dir, key)
            notes.append(f"cell {key}: {why}; redoing it")
        if retry_failed:
            for key, cell in store.read_cells(run_dir).items():
                if cell.get("status") == "failed":
                    store.forget_cell(run_dir, key)
        from uqbench.registry import provenance_changes

        notes += [f"{note} since this run began"
                  for note in provenance_changes(record.get("adapters") or {}, adapters_record(plan, catalog))]
    return Run(run_dir, plan, catalog, resumed=True, notes=tuple(notes))


def _check_same_data_dir(suite: Suite, catalog: Catalog, given: str | os.PathLike[str] | None,
                         recorded: str | None) -> None:
    """A resume reads its data where the run did: a different ``--data-dir`` would mix two
    sources of the same dataset in one table, so it is refused (when any dataset reads one)."""
    if given in (None, ""):
        return
    if not any(catalog.dataset(d).needs_data_dir for d in suite.datasets if d in catalog.dataset_names()):
        return

    def real(p: str | os.PathLike[str]) -> str:
        return os.path.realpath(os.path.expanduser(os.fspath(p)))

    if recorded is None or real(given) != real(recorded):
        was = f"from {recorded}" if recorded else "without a data directory"
        raise UserError(
            f"this run read its data {was}; resuming it with --data-dir {given} would mix two data "
            "sources in one run: drop --data-dir (restore the data at its old path), or start a new run"
        )


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


def record_outputs_failed(run_dir: Path, reason: str) -> None:
    """Mark the run's last session: its cells finished but its tables or report were not written.

    ``run.json`` then says ``"outputs_failed"`` (not ``"complete"``) until ``uqbench report``
    succeeds, so nothing reading it mistakes the run for a finished one.
    """
    record = store.read_run_json(run_dir)
    record["status"] = "outputs_failed"
    if record.get("sessions"):
        record["sessions"][-1]["status"] = "outputs_failed"
        record["sessions"][-1]["error"] = reason
    store.write_run_json(run_dir, record)


def record_outputs_written(run_dir: Path) -> None:
    """Undo :func:`record_outputs_failed` once ``uqbench report`` has written the outputs."""
    record = store.read_run_json(run_dir)
    if record.get("status") != "outputs_failed":
        return
    record["status"] = "complete"
    if record.get("sessions"):
        record["sessions"][-1]["status"] = "complete"
    store.write_run_json(run_dir, record)


def execute(
    run: Run,
    *,
    progress: ProgressHook | None = None,
    argv: Sequence[str] | None = None,
    executor: str | None = None,
    workers: int | None = None,
    cell_timeout: float | None = None,
    cell_memory: int | None = None,
    ray_address: str | None = None,
) -> RunResult:
    """Run every unfinished cell of ``run``; return all finished cells.

    Rows of unfinished cells left by an earlier session are dropped first. A
    ``KeyboardInterrupt`` (or any other escaping exception) is recorded in ``run.json``
    and re-raised; everything already written stays valid.

    Parameters
    ----------
    executor : ``"serial"`` (this process), ``"process"`` (spawned worker processes) or
        ``"ray"`` (Ray tasks); see :mod:`uqbench.harness.executors`. Default: ``serial``
        for one worker, else ``process``.
    workers : cells in flight at once (default 1).
    cell_timeout, cell_memory : per-cell limits in seconds and bytes (process and ray).
    ray_address : an existing Ray cluster (None: start a local one).

    Whatever the executor, this process alone writes the run directory, cell by cell, and
    it holds the directory's writer lock (:func:`uqbench.store.lock_run_dir`) throughout:
    a second driver on the same directory fails at once (:class:`~uqbench.store.RunDirLockedError`).
    Cells on neighbouring cores share memory bandwidth: use one worker for the cleanest
    timings.
    """
    with store.lock_run_dir(run.run_dir, command=" ".join(sys.argv if argv is None else argv)):
        return _execute(run, progress=progress, argv=argv, executor=executor, workers=workers,
                        cell_timeout=cell_timeout, cell_memory=cell_memory, ray_address=ray_address)


def _execute(
    run: Run,
    *,
    progress: ProgressHook | None,
    argv: Sequence[str] | None,
    executor: str | None,
    workers: int | None,
    cell_timeout: float | None,
    cell_memory: int | None,
    ray_address: str | None,
) -> RunResult:
    from uqbench.harness import executors

    if workers is None:
        workers = 1
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise UserError(f"workers must be an integer >= 1, got {workers!r}")
    for name, value in (("cell_timeout", cell_timeout), ("cell_memory", cell_memory)):
        if value is not None and not value > 0:
            raise UserError(f"{name} must be > 0, got {value!r}")
    progress = progress or NullProgress()
    run_dir, plan = run.run_dir, run.plan
    finished = store.read_cells(run_dir)
    store.keep_rows_of(run_dir, set(finished))
    todo = [c for c in plan.cells if c.key not in finished]
    step_names = _enabled_steps(plan.suite)
    if executor is None:
        executor = "serial" if workers == 1 and cell_timeout is None and cell_memory is None else "process"
    runner = executors.make_executor(
        executor, workers=workers, cell_timeout=cell_timeout, cell_memory=cell_memory, ray_address=ray_address
    )
    spec = WorkerSpec(run_dir, plan, step_names, run.catalog)
    if executor != "serial":
        _check_picklable(spec)
    session: dict[str, Any] = {
        "id": len(store.read_run_json(run_dir).get("sessions", [])),
        "started": now(),
        "ended": None,
        "duration_seconds": None,
        "command": list(sys.argv if argv is None else argv),
        "resumed": run.resumed,
        "cells_todo": len(todo),
        "executor": executor,
        "workers": workers,
        "cell_timeout": cell_timeout,
        "cell_memory": cell_memory,
        "status": "running",
        "notes": list(run.notes),
    }
    _update_run_json(run_dir, session, "running")
    t0 = time.perf_counter()
    status = "crashed"
    progress.start(len(plan.cells), len(plan.cells) - len(todo))
    try:
        for n_written, (cell, outcome, started, ended) in enumerate(runner.run(spec, todo, progress.cell_started)):
            record = _write_cell(run, cell, outcome, started, ended, n_written)
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
        session.update(ended=now(), duration_seconds=time.perf_counter() - t0, status=status)
        _update_run_json(run_dir, session, status)
    return RunResult(run_dir, store.read_cells(run_dir), status)


def _check_picklable(spec: Any) -> None:
    """Worker processes get the catalog by pickle: say so plainly when it cannot be."""
    import pickle

    try:
        pickle.dumps(spec)
    except Exception as exc:
        raise UserError(
            "this catalog cannot be sent to worker processes (its adapters, datasets and "
            f"metrics must be importable module-level objects): {type(exc).__name__}: {exc}"
        ) from exc


def _enabled_steps(suite: Suite) -> tuple[str, ...]:
    return tuple(s for s in suite.steps if s in _steps_note(suite)["enabled"])


# Fault injection for the crash-safety tests: UQBENCH_FAULT="<point>:<n>" SIGKILLs this
# process at <point> of writing the n-th cell of the session (0-based). Points, in order:
# before_rows, torn_rows (half a row line on disk), after_rows, after_arrays, after_cell.
_FAULT_ENV = "UQBENCH_FAULT"


def _fault(point: str, n_written: int, run_dir: Path) -> None:
    spec = os.environ.get(_FAULT_ENV)
    if not spec or spec != f"{point}:{n_written}":
        return
    import signal

    if point == "torn_rows":
        with open(run_dir / store.RESULTS_CSV, "a", encoding="utf-8") as f:
            f.write("1,torn-adapter,toy")  # a row cut short, as a kill mid-write leaves it
            f.flush()
            os.fsync(f.fileno())
    os.kill(os.getpid(), signal.SIGKILL)


def _write_cell(
    run: Run, cell: Cell, outcome: CellOutcome, started: str, ended: str, n_written: int = 0
) -> dict[str, Any]:
    """Append the cell's rows and arrays, then its json (the completion marker, last)."""
    _fault("before_rows", n_written, run.run_dir)
    _fault("torn_rows", n_written, run.run_dir)
    store.append_rows(run.run_dir, outcome.rows)
    _fault("after_rows", n_written, run.run_dir)
    if outcome.arrays:
        store.write_arrays(run.run_dir, cell.key, outcome.arrays)
    _fault("after_arrays", n_written, run.run_dir)
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
        # The exact constructor keywords (suite budgets, device and adapter_params merged),
        # the validation rows held out and the fit keywords passed (see harness.cell).
        "params": outcome.record.get("params"),
        "validation": outcome.record.get("validation"),
        "fit_keywords": outcome.record.get("fit_keywords"),
    }
    store.write_cell(run.run_dir, cell.key, record)
    _fault("after_cell", n_written, run.run_dir)
    return record


_EXECUTE_OPTIONS = ("progress", "executor", "workers", "cell_timeout", "cell_memory", "ray_address")


def run_suite(suite: Suite, **kwargs: Any) -> RunResult:
    """``execute(prepare(suite, ...))``; execution options go to :func:`execute`."""
    options = {k: kwargs.pop(k) for k in _EXECUTE_OPTIONS if k in kwargs}
    run = prepare(suite, **kwargs)
    return execute(run, argv=kwargs.get("argv"), **options)


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
