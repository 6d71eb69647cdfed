"""The ``uqbench`` command: ``run`` a benchmark suite, ``list`` what is installed.

User errors (unknown names, bad values, missing data, a bad run directory) print one line
``uqbench: error: ...`` on stderr and exit 2; a run with failed cells exits 1; Ctrl-C
exits 130 after saying how to resume. Real bugs keep their traceback.

Heavy modules (torch, pandas, the metrics) are imported inside the commands so that
``uqbench --help`` and ``uqbench list`` stay fast.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import os
import shlex
import signal
import sys
from collections.abc import Iterator, Sequence
from typing import Any, NoReturn

from uqbench import __version__
from uqbench.errors import UserError

EXIT_OK, EXIT_FAILED_CELLS, EXIT_USAGE, EXIT_INTERRUPTED, EXIT_TERMINATED = 0, 1, 2, 130, 143
DEFAULT_OUT = "reports"


def _one_line(message: object) -> str:
    return " ".join(str(message).split())


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``uqbench: error: ...`` and exit 2, no usage dump."""

    def error(self, message: str) -> NoReturn:
        sys.stderr.write(f"uqbench: error: {_one_line(message)} (see `{self.prog} --help`)\n")
        raise SystemExit(EXIT_USAGE)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be an integer >= 1, got {text!r}")
    return value


def _seed_count(text: str) -> int:
    """--seeds N: checked against the suites' maximum before ``range(N)`` is ever built."""
    from uqbench.suites import MAX_SEEDS

    value = _positive_int(text)
    if value > MAX_SEEDS:
        raise argparse.ArgumentTypeError(f"must be at most {MAX_SEEDS:,} seeds, got {text!r}")
    return value


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number of seconds > 0, got {text!r}")
    return value


def _memory(text: str) -> int:
    """``4G``, ``500M``, ``1.5GiB`` or a plain number of MiB -> bytes."""
    from uqbench.harness.timing import parse_size

    value = parse_size(text, default_unit="M")
    if value is None:
        raise argparse.ArgumentTypeError(f"must be a size such as 4G, 500M or 2048 (MiB), got {text!r}")
    if value < 2**20:
        raise argparse.ArgumentTypeError(f"must be at least 1M, got {text!r}")
    return int(value)


def _factor(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value >= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number >= 1 (or inf), got {text!r}")
    return value


def _threshold_item(text: str) -> tuple[str, float]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise argparse.ArgumentTypeError(f"expected METRIC=FACTOR, e.g. nll_loss=1.05, got {text!r}")
    try:
        return name.strip(), _factor(value.strip())
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{name.strip()}: {exc}") from None


def _alpha(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in (0, 1), got {text!r}")
    return value


def _device(text: str) -> str:
    from uqbench.devices import check_device_name

    try:
        return check_device_name(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _name_list(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    if not names:
        raise argparse.ArgumentTypeError(f"expected comma-separated names, got {text!r}")
    return names


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="uqbench",
        description="Benchmark uncertainty estimates of Bayesian neural networks.",
    )
    parser.add_argument("--version", action="version", version=f"uqbench {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    run = sub.add_parser("run", help="run a benchmark suite (or resume one)", description=(
        "Run the grid adapters × datasets × seeds of a suite into a new run directory "
        f"under --out (default {DEFAULT_OUT}/), or finish an interrupted run with --resume."
    ))
    run.add_argument("--suite", help="suite name: quick (default) or standard")
    run.add_argument("--adapters", type=_name_list, metavar="A,B", help="adapters to run (default: the suite's)")
    run.add_argument("--datasets", type=_name_list, metavar="X,Y", help="datasets to run; patterns like 'uci-*' allowed")
    run.add_argument("--seeds", type=_seed_count, metavar="N", help="use seeds 0..N-1")
    run.add_argument("--samples", type=_positive_int, metavar="S", help="predictive draws per split")
    run.add_argument("--data-dir", metavar="D", help="data directory (default: $UQBENCH_DATA)")
    run.add_argument(
        "--device",
        type=_device,
        metavar="DEV",
        help="cpu (default), cuda, cuda:N or auto (CUDA when torch sees one): passed to every "
        "adapter whose constructor takes `device`",
    )
    run.add_argument("--out", metavar="DIR", help=f"parent of the new run directory (default: {DEFAULT_OUT})")
    run.add_argument("--resume", metavar="DIR", help="finish the run in DIR: redo only its unfinished cells")
    run.add_argument(
        "--executor",
        choices=("serial", "process", "ray"),
        help="where cells run: serial (this process), process (worker processes; the default) "
        "or ray (Ray tasks; needs uqbench[ray])",
    )
    run.add_argument(
        "--workers",
        type=_positive_int,
        metavar="N",
        help="cells in flight at once (default: one per usable CPU; 1 gives the cleanest timings)",
    )
    run.add_argument("--ray-address", metavar="ADDR", help="connect to this Ray cluster (default: start a local one)")
    run.add_argument(
        "--cell-timeout",
        type=_seconds,
        metavar="SECONDS",
        help="fail a cell that runs longer than this (its worker is stopped and replaced)",
    )
    run.add_argument(
        "--cell-memory",
        type=_memory,
        metavar="SIZE",
        help="fail a cell whose worker grows past this resident memory, e.g. 4G or 500M",
    )
    run.add_argument(
        "--retry-failed",
        action="store_true",
        help="with --resume: also redo the cells that failed",
    )
    run.add_argument(
        "--probe",
        action="store_true",
        default=None,
        help="also measure the gradient variance of the training loss at batch sizes 32/128/512",
    )
    run.add_argument(
        "--config",
        metavar="FILE",
        help="suite file (.toml or .json) of Suite keys; its `base` key or --suite names the "
        "built-in suite it overrides; the flags above override the file",
    )
    run.add_argument(
        "--metrics",
        type=_name_list,
        metavar="M,N",
        help="record only these metrics (names from `uqbench list`; patterns like 'coverage_*' allowed)",
    )
    run.set_defaults(func=cmd_run)

    lst = sub.add_parser("list", help="list adapters, datasets, metrics and suites")
    lst.set_defaults(func=cmd_list)

    rep = sub.add_parser("report", help="(re)write RUN_DIR/index.html, the self-contained HTML report")
    rep.add_argument("run_dir", metavar="RUN_DIR", help="a run directory written by `uqbench run`")
    rep.set_defaults(func=cmd_report)
    _add_compare_parser(sub)
    return parser


def _add_compare_parser(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``compare`` to the ``uqbench`` sub-commands (see :mod:`uqbench.results.compare`)."""
    from uqbench.results.compare import (
        DEFAULT_ALPHA,
        DEFAULT_SPEED_THRESHOLD,
        DEFAULT_THRESHOLD,
        FORMATS,
    )

    p = subparsers.add_parser(
        "compare",
        help="compare two run directories; exit 1 on a significant regression (CI gate)",
        description=(
            "Join two run directories on (adapter, dataset, split, metric) and report what "
            "changed. Exit 1 when a metric got worse by more than its factor AND the change "
            "is significant over the seeds (paired t-test on common seeds, else Welch's, "
            "else non-overlapping bootstrap intervals), or when a cell ok in BASE failed in "
            "NEW; exit 0 otherwise; exit 2 on unusable input. Quality metrics: relative "
            "change of the mean, |BASE| floored per metric; speed metrics (times, memory): "
            "ratio of the medians over seeds."
        ),
    )
    p.add_argument("base", metavar="BASE", help="the reference run directory")
    p.add_argument("new", metavar="NEW", help="the run directory to check")
    p.add_argument(
        "--threshold", type=_threshold_item, action="append", metavar="METRIC=FACTOR",
        help="per-metric factor (repeatable; METRIC may be a pattern like '*_seconds'; inf: never fail)",
    )
    p.add_argument(
        "--default-threshold", type=_factor, default=DEFAULT_THRESHOLD, metavar="F",
        help=f"factor for quality metrics (default {DEFAULT_THRESHOLD})",
    )
    p.add_argument(
        "--speed-threshold", type=_factor, default=DEFAULT_SPEED_THRESHOLD, metavar="F",
        help=f"factor for time and memory metrics, a ratio of medians (default {DEFAULT_SPEED_THRESHOLD})",
    )
    p.add_argument(
        "--alpha", type=_alpha, default=DEFAULT_ALPHA, metavar="A",
        help=f"significance level of the t-tests (default {DEFAULT_ALPHA})",
    )
    p.add_argument("--format", choices=FORMATS, default="text", help="output format (default text)")
    p.add_argument("--all", action="store_true", help="show every compared row, not only changes beyond the limits")
    p.set_defaults(func=cmd_compare)
    return p


# -- compare ---------------------------------------------------------------------------


def cmd_compare(args: argparse.Namespace, catalog: Any = None) -> int:
    """Run ``uqbench compare``: print the report on stdout, return 0 / 1 (UserError -> 2)."""
    from uqbench.results.compare import compare_runs, render

    comparison = compare_runs(
        args.base,
        args.new,
        thresholds=dict(args.threshold or []),
        default_threshold=args.default_threshold,
        speed_threshold=args.speed_threshold,
        alpha=args.alpha,
    )
    sys.stdout.write(render(comparison, args.format, show_all=args.all))
    sys.stdout.flush()
    return comparison.exit_code



# -- run ---------------------------------------------------------------------------------


def _suite_from_args(args: argparse.Namespace) -> Any:
    """The suite of a new run: --config (over its base, or over --suite) or --suite (default
    quick), then the flags --adapters, --datasets, ... on top."""
    from uqbench.suites import get_suite, load_suite_file

    if args.config:
        suite = load_suite_file(args.config, base=args.suite)
    else:
        suite = get_suite(args.suite or "quick")
    changes: dict[str, Any] = {}
    if args.metrics:
        changes["metrics"] = args.metrics
    if args.adapters:
        changes["adapters"] = args.adapters
    if args.datasets:
        changes["datasets"] = args.datasets
    if args.seeds:  # every dataset, including those the suite gives their own seeds
        changes["seeds"] = tuple(range(args.seeds))
        changes["dataset_seeds"] = {}
        changes["adapter_seeds"] = {}
    if args.samples:
        changes["n_samples"] = args.samples
    if args.device:
        changes["device"] = args.device
    if args.probe and "probe" not in suite.steps:
        changes["steps"] = (*suite.steps, "probe")
    return suite.replace(**changes) if changes else suite


_SUITE_FLAGS = ("suite", "config", "adapters", "datasets", "seeds", "samples", "metrics", "out", "probe", "device")


def _check_resume(args: argparse.Namespace) -> None:
    """--resume DIR: DIR's run.json is readable, no flag tries to change its suite, and its
    cells/ holds only cells of that suite (not records copied from another run)."""
    from uqbench import store

    suite = store.read_run_json(args.resume).get("suite") or {}
    name = suite.get("name", "?")
    conflicting = [f"--{flag}" for flag in _SUITE_FLAGS if getattr(args, flag) is not None]
    if conflicting:
        raise UserError(
            f"--resume continues {args.resume}, a run of suite {name!r}, with its own configuration; "
            f"drop {', '.join(conflicting)}"
        )
    from uqbench.suites import Suite

    resolved = Suite.from_dict(suite)
    adapters, datasets = resolved.adapters or (), resolved.datasets

    def belongs(key: str, cell: dict[str, Any]) -> bool:
        adapter, dataset, seed = cell.get("adapter"), cell.get("dataset"), cell.get("seed")
        return (
            adapter in adapters
            and dataset in datasets
            and isinstance(seed, int)
            and seed in resolved.seeds_for(dataset)
            and resolved.runs_on(adapter, dataset, seed)
            and key == store.cell_key(adapter, dataset, seed)
        )

    foreign = [key for key, cell in store.read_cells(args.resume).items() if not belongs(key, cell)]
    if foreign:
        raise UserError(
            f"{os.path.join(args.resume, store.CELLS_DIR)} holds {len(foreign)} record(s) that are not cells "
            f"of this run's suite {name!r} (e.g. {foreign[0]}.json), copied from another run? "
            "Move them out, then resume"
        )


def cmd_run(args: argparse.Namespace, catalog: Any = None) -> int:
    from uqbench.harness import runner

    argv = sys.argv if args.argv is None else ["uqbench", *args.argv]
    # Executor options are checked before any run directory is created or touched.
    from uqbench.harness.executors import make_executor

    make_executor(*_executor_choice(args, catalog is None), cell_timeout=args.cell_timeout,
                  cell_memory=args.cell_memory, ray_address=args.ray_address, check_only=True)
    from uqbench import store

    with contextlib.ExitStack() as held, _sigterm_as_interrupt():
        if args.resume:
            # The writer lock first: a second driver on this directory stops here, before
            # it reads (or un-finishes) a single cell.
            held.enter_context(store.lock_run_dir(store.require_run_dir(args.resume), command=shlex.join(argv)))
            _check_resume(args)
            run = runner.prepare_resume(
                args.resume, catalog=catalog, data_dir=args.data_dir, retry_failed=args.retry_failed
            )
        else:
            if args.retry_failed:
                raise UserError("--retry-failed needs --resume RUN_DIR (the run whose failed cells to redo)")
            run = runner.prepare(
                _suite_from_args(args),
                out=args.out or DEFAULT_OUT,
                catalog=catalog,
                data_dir=args.data_dir,
                argv=argv,
            )
            held.enter_context(store.lock_run_dir(run.run_dir, command=shlex.join(argv)))
        return _run_and_write(args, run, argv, runner)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, handled as Ctrl-C is: the session is recorded as interrupted, then exit 143."""


@contextlib.contextmanager
def _sigterm_as_interrupt() -> Iterator[None]:
    def handler(signum: int, frame: Any) -> None:
        # Once: a second SIGTERM must not cut short the clean-up that records the session.
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        raise _Terminated()

    try:
        previous = signal.signal(signal.SIGTERM, handler)
    except ValueError:  # not the main thread: leave SIGTERM as it is
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_and_write(args: argparse.Namespace, run: Any, argv: list[str], runner: Any) -> int:
    """Execute ``run`` (prepared, its directory locked), then write its tables and report."""
    from rich.console import Console

    run_dir = run.run_dir
    console = Console()
    if not console.is_terminal:  # logs and pipes: wide enough that no number is cut
        console = Console(width=200)
    verb = "resuming" if run.resumed else "run directory:"
    print(f"{verb} {run_dir}", flush=True)
    for note in run.notes:
        print(f"uqbench: warning: {note}", file=sys.stderr, flush=True)
    progress = runner.RichProgress(console) if console.is_terminal else runner.LineProgress()
    executor, workers = _executor_choice(args, run.catalog.is_default())
    try:
        result = runner.execute(
            run,
            progress=progress,
            argv=argv,
            executor=executor,
            workers=workers,
            cell_timeout=args.cell_timeout,
            cell_memory=args.cell_memory,
            ray_address=args.ray_address,
        )
    except UserError as exc:  # e.g. a data file that cannot be read, found mid-run
        raise UserError(f"{exc} (fix it, then: uqbench run --resume {shlex.quote(str(run_dir))})") from exc
    except KeyboardInterrupt as exc:
        print(
            f"\n{'terminated' if isinstance(exc, _Terminated) else 'interrupted'}: finished cells are kept "
            f"in {run_dir}\nresume with: uqbench run --resume {shlex.quote(str(run_dir))}",
            file=sys.stderr,
            flush=True,
        )
        return EXIT_TERMINATED if isinstance(exc, _Terminated) else EXIT_INTERRUPTED
    from uqbench.results import write_outputs
    from uqbench.store import DamagedRunError

    try:
        write_outputs(run_dir, console=console, cells=result.cells)
    except BaseException as exc:  # the cells are all there; only the tables or the page are not
        with contextlib.suppress(Exception):  # e.g. the disk that failed the outputs is full
            runner.record_outputs_failed(run_dir, f"{type(exc).__name__}: {exc}")
        if isinstance(exc, UserError) and not isinstance(exc, DamagedRunError):  # that one names --resume
            raise UserError(
                f"{exc} (the cells are kept; fix it, then: uqbench report {shlex.quote(str(run_dir))})"
            ) from exc
        raise
    if result.failures:
        print(f"uqbench: {len(result.failures)} cell(s) failed (listed above)", file=sys.stderr)
        return EXIT_FAILED_CELLS
    return EXIT_OK


def _executor_choice(args: argparse.Namespace, default_catalog: bool) -> tuple[str, int]:
    """(executor, workers): process with one worker per CPU, unless given (or a test catalog)."""
    executor = args.executor or ("process" if default_catalog else "serial")
    return executor, args.workers or (_default_workers() if executor != "serial" else 1)


def _default_workers() -> int:
    """One worker per usable CPU (cells are single-threaded)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


# -- report ------------------------------------------------------------------------------


def cmd_report(args: argparse.Namespace, catalog: Any = None) -> int:
    from uqbench import store
    from uqbench.harness.runner import record_outputs_written
    from uqbench.results import write_outputs

    # The report's files are the run directory's too: not while a driver is writing it.
    with store.lock_run_dir(store.require_run_dir(args.run_dir), command="uqbench report"):
        write_outputs(args.run_dir)
        record_outputs_written(args.run_dir)
    return EXIT_OK


# -- list --------------------------------------------------------------------------------


def _rows(title: str, rows: list[tuple[str, ...]]) -> list[str]:
    if not rows:
        return [f"{title}: none"]
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = [f"{title}:"]
    for r in rows:
        cells = [c.ljust(w) for c, w in zip(r[:-1], widths, strict=True)]
        lines.append("  " + "  ".join([*cells, r[-1]]).rstrip())
    return lines


def cmd_list(args: argparse.Namespace, catalog: Any = None) -> int:
    from uqbench import registry
    from uqbench.datasets import DATASETS
    from uqbench.metrics import METRICS
    from uqbench.suites import SUITES

    lines: list[str] = []
    adapters = []
    for name in registry.adapter_names():
        info = registry.adapter_info(name)
        if info.available:
            adapters.append((name, ",".join(info.tasks), info.summary))
        else:
            adapters.append((name, "unavailable", _one_line(info.reason)))
    lines += _rows("adapters", adapters)

    lines += _rows("datasets", [
        (s.name, s.task, s.summary + (" [needs --data-dir]" if s.needs_data_dir else ""))
        for s in DATASETS.values()
    ])
    lines += _rows("metrics", [
        (m.name, ",".join(sorted(m.tasks)), _one_line(m.definition)) for m in METRICS.values()
    ])

    lines += _rows("suites", [(s.name, s.description) for s in SUITES.values()])
    print("\n".join(lines))
    return EXIT_OK


# -- entry point -------------------------------------------------------------------------


def main(argv: Sequence[str] | None = None, *, catalog: Any = None) -> int:
    """Entry point; ``catalog`` (a :class:`uqbench.harness.grid.Catalog`) is for tests."""
    args = build_parser().parse_args(argv)
    args.argv = None if argv is None else list(argv)
    try:
        return args.func(args, catalog)
    except UserError as exc:
        print(f"uqbench: error: {_one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        terminated = isinstance(exc, _Terminated)
        print(f"uqbench: {'terminated' if terminated else 'interrupted'}", file=sys.stderr)
        return EXIT_TERMINATED if terminated else EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())
