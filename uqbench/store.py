"""Reading and writing a run directory.

Layout::

    RUN_DIR/
      run.json                                  configuration + environment + sessions
      results.csv                               tidy table, appended cell by cell
      cells/<adapter>__<dataset>__<seed>.json   cell status; written last = completion marker
      arrays/<adapter>__<dataset>__<seed>.npz   arrays for the report (no pickles)
      summary.txt                               the terminal summary, as text
      run.lock                                  the writer lock (:func:`lock_run_dir`); run.lock.json names its holder

``results.csv`` has one row per measurement (columns :data:`COLUMNS`). A failed cell has
exactly one row: ``status="failed"``, ``split`` naming the step that failed (``make``,
``load``, ``fit``, ``sample``, ``metrics``, ``arrays`` or an optional step), ``metric`` ""
and the one-line reason in ``error``. Skipped (not applicable) cells have no rows.

Every record carries ``schema_version``; readers refuse versions they do not know
(:class:`SchemaVersionError`) instead of guessing. JSON files and ``.npz`` archives are
written to a temporary name and renamed, so a crash never leaves half a file under the
real name; ``results.csv`` is appended with a flush and fsync per cell *before* the
cell file, which is the cell's atomic commit: :func:`load_results` reads only rows of
cells that have one (so a crash mid-cell, or a line cut short, is never read back as a
result), and a resume drops those rows from the file (:func:`keep_rows_of`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import tempfile
import zipfile
import zlib
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from uqbench.errors import UserError

if TYPE_CHECKING:
    import pandas as pd

SCHEMA_VERSION = 1

COLUMNS = (
    "schema_version",
    "adapter",
    "dataset",
    "seed",
    "split",
    "metric",
    "value",
    "ci_low",
    "ci_high",
    "status",
    "error",
)
_FLOAT_COLUMNS = ("value", "ci_low", "ci_high")
_HEADER = ",".join(COLUMNS) + "\n"

RUN_JSON = "run.json"
RESULTS_CSV = "results.csv"
CELLS_DIR = "cells"
ARRAYS_DIR = "arrays"
SUMMARY_TXT = "summary.txt"


class SchemaVersionError(UserError):
    """A stored record has a schema version this uqbench cannot read."""


class NotARunDirError(UserError):
    """A path is not a uqbench run directory."""


class StoreWriteError(UserError):
    """A run directory file cannot be written (permissions, disk full, read-only)."""


class DamagedRunError(UserError):
    """Finished cells of a run directory whose rows or arrays are missing, torn or doubled."""


class RunDirLockedError(UserError):
    """Another uqbench process is writing this run directory."""


def _cannot_write(path: Path, exc: OSError) -> StoreWriteError:
    return StoreWriteError(f"cannot write {path}: {exc.strerror or exc}")


def _check_version(version: Any, what: str) -> None:
    if version != SCHEMA_VERSION:
        raise SchemaVersionError(
            f"{what} has schema version {version!r}, but this uqbench reads only version "
            f"{SCHEMA_VERSION}; use the uqbench version that wrote it, or re-run"
        )


def cell_key(adapter: str, dataset: str, seed: int) -> str:
    """File stem of a cell's records: ``<adapter>__<dataset>__<seed>``."""
    return f"{adapter}__{dataset}__{int(seed)}"


# -- run directory -----------------------------------------------------------------------


def new_run_dir(parent: str | os.PathLike[str], suite: str, *, now: datetime | None = None) -> Path:
    """Create and return ``parent/run-<YYYYmmdd-HHMMSS>-<suite>`` (suffixed if taken)."""
    now = now or datetime.now()
    parent = Path(parent)
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create output directory {parent}: {exc.strerror or exc}") from exc
    stem = f"run-{now:%Y%m%d-%H%M%S}-{suite}"
    for attempt in range(1, 1000):
        path = parent / (stem if attempt == 1 else f"{stem}-{attempt}")
        try:
            path.mkdir()
            (path / CELLS_DIR).mkdir()
            (path / ARRAYS_DIR).mkdir()
            (path / LOCK_FILE).touch()  # made once here, so locking later creates no file
            # The header now, whole: a crash in the first cell's append never tears it.
            write_atomic(path / RESULTS_CSV, _HEADER)
        except FileExistsError:
            continue
        except OSError as exc:
            raise UserError(f"cannot create run directory {path}: {exc.strerror or exc}") from exc
        return path
    raise UserError(f"cannot find a free run directory name {stem}-N under {parent}")


def require_run_dir(path: str | os.PathLike[str]) -> Path:
    """``path`` if it holds a ``run.json``, else a one-line :class:`NotARunDirError`."""
    path = Path(path)
    if not (path / RUN_JSON).is_file():
        what = "does not exist" if not path.exists() else f"has no {RUN_JSON}"
        raise NotARunDirError(f"{path} is not a uqbench run directory ({what})")
    return path


def write_atomic(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write ``data`` (text as UTF-8) to ``path`` atomically and durably; return the path.

    The bytes go to a hidden temporary file beside it, are flushed and fsync'ed, then
    renamed over ``path``: a reader sees the old file or the new one, never a part. On an
    OSError the old file, if any, is untouched and a one-line :class:`StoreWriteError`
    is raised. Every file uqbench writes whole (JSON records, reports, tables, caches)
    goes through here.
    """
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    tmp: Path | None = None
    try:
        # mkstemp opens with O_CREAT | O_EXCL: a fresh name per writer, and a file planted
        # under that name (a symlink to elsewhere, say) is never written through.
        fd, name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        tmp = Path(name)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.chmod(0o644)  # mkstemp makes it 0600; reports and tables are for reading
        os.replace(tmp, path)
        tmp = None
        _fsync_directory(path.parent)  # the rename itself survives a power cut
    except BaseException as exc:  # a signal mid-write leaves no temporary file either
        if tmp is not None:
            with contextlib.suppress(OSError):
                tmp.unlink()
        if isinstance(exc, OSError):
            raise _cannot_write(path, exc) from exc
        raise
    return path


def _fsync_directory(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return  # not every platform opens directories; the data itself is synced
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def write_json(path: Path, record: Mapping[str, Any]) -> None:
    """Write ``record`` (with ``schema_version`` first) atomically as JSON."""
    data = {"schema_version": SCHEMA_VERSION, **{k: v for k, v in record.items() if k != "schema_version"}}
    write_atomic(path, (json.dumps(jsonable(data), indent=2, allow_nan=False) + "\n").encode())


def read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(f"cannot read {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path} is not a uqbench record (expected a JSON object)")
    _check_version(data.get("schema_version"), str(path))
    return data


def jsonable(value: Any) -> Any:
    """JSON-safe copy of ``value`` (for ``json.dumps(..., allow_nan=False)``).

    Mappings to dicts with string keys, lists/tuples/arrays to lists, numpy scalars to
    Python ones, non-finite floats to None, paths to strings; any other object that is not
    a JSON value (``str``, ``int``, ``float``, ``bool``, None) to ``str(value)``.
    """
    if isinstance(value, Mapping):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def write_run_json(run_dir: Path, record: Mapping[str, Any]) -> None:
    write_json(Path(run_dir) / RUN_JSON, record)


def read_run_json(run_dir: str | os.PathLike[str]) -> dict[str, Any]:
    return read_json(require_run_dir(run_dir) / RUN_JSON)


# -- results table -----------------------------------------------------------------------


def make_row(
    adapter: str,
    dataset: str,
    seed: int,
    split: str,
    metric: str,
    value: float,
    ci_low: float = math.nan,
    ci_high: float = math.nan,
    *,
    status: str = "ok",
    error: str = "",
) -> dict[str, Any]:
    """One row of the results table, columns in :data:`COLUMNS` order."""
    return {
        "schema_version": SCHEMA_VERSION,
        "adapter": adapter,
        "dataset": dataset,
        "seed": int(seed),
        "split": split,
        "metric": metric,
        "value": float(value),
        "ci_low": float(ci_low),
        "ci_high": float(ci_high),
        "status": status,
        "error": error,
    }


def _format(value: Any) -> str:
    # repr of a float round-trips exactly; "nan"/"inf" are read back by pandas.
    return repr(float(value)) if isinstance(value, float | np.floating) else str(value)


def append_rows(run_dir: Path, rows: Iterable[Mapping[str, Any]]) -> int:
    """Append ``rows`` to ``results.csv`` (header first if new), flushed to disk."""
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    n = 0
    for row in rows:
        writer.writerow([_format(row[c]) for c in COLUMNS])
        n += 1
    path = Path(run_dir) / RESULTS_CSV
    # No file, an empty one, or a header cut short (by a run directory made before the
    # header was written at creation): (re)start it with the header.
    new = not path.exists() or (path.stat().st_size < len(_HEADER) and _HEADER.startswith(path.read_text("utf-8")))
    try:
        with open(path, "w" if new else "a", encoding="utf-8", newline="") as f:
            if new:
                f.write(_HEADER)
            f.write(buf.getvalue())
            f.flush()
            os.fsync(f.fileno())
    except OSError as exc:  # a torn last line is dropped on resume (keep_rows_of)
        raise _cannot_write(path, exc) from exc
    return n


def keep_rows_of(run_dir: Path, keys: set[str]) -> int:
    """Rewrite ``results.csv`` keeping only rows of the cells in ``keys``; return rows dropped.

    Used before resuming: rows of a cell whose cell file is missing (crash between the
    rows and the marker, or a line cut short by a kill) are dropped and redone.
    """
    path = Path(run_dir) / RESULTS_CSV
    if not path.exists():
        return 0
    body = _read_rows(path)
    if not body:
        return 0
    i_ad, i_ds, i_seed = (COLUMNS.index(c) for c in ("adapter", "dataset", "seed"))
    kept = [r for r in body if len(r) == len(COLUMNS) and _row_key(r, i_ad, i_ds, i_seed) in keys]
    if len(kept) == len(body):
        return 0
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(COLUMNS)
    writer.writerows(kept)
    write_atomic(path, buf.getvalue().encode("utf-8"))
    return len(body) - len(kept)


def load_results(run_dir: str | os.PathLike[str], *, arrays: bool = True) -> pd.DataFrame:
    """The results table of a run as a DataFrame with columns :data:`COLUMNS`.

    ``seed`` and ``schema_version`` are ints, ``value``/``ci_low``/``ci_high`` floats
    (NaN where undefined or no interval), the rest strings (``error`` is "" when ok).
    ``arrays=False``: a reader of the rows alone (``uqbench compare``) does not require the
    cells' ``.npz`` files, so a run kept without ``arrays/`` (the regression baseline) reads.

    Raises
    ------
    DamagedRunError
        A finished cell's rows (or, with ``arrays``, its arrays file) are not all there.
    SchemaVersionError
        ``run.json`` or any row has a schema version other than :data:`SCHEMA_VERSION`.
    NotARunDirError
        ``run_dir`` is not a run directory.
    """
    import pandas as pd

    run_dir = require_run_dir(run_dir)
    read_run_json(run_dir)  # refuses an unknown run version before looking at rows
    path = run_dir / RESULTS_CSV
    # Only rows of finished cells are results: a cell's rows are appended before its
    # cell file, so rows without one (a crash mid-cell, a line cut short, a cell being
    # written while we read) are not read. The cells are listed first for that reason.
    cells = read_cells(run_dir)
    body = _read_rows(path) if path.exists() else []
    damaged = _damage(run_dir, cells, body, arrays=arrays)
    if damaged:
        raise damaged_run_error(run_dir, damaged)
    if not body:
        return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in COLUMNS})
    finished = {_cell_id(key, record) for key, record in cells.items()}
    i_ad, i_ds, i_seed = (COLUMNS.index(c) for c in ("adapter", "dataset", "seed"))
    body = [r for r in body if len(r) == len(COLUMNS) and (r[i_ad], r[i_ds], r[i_seed]) in finished]
    df = pd.DataFrame(body, columns=list(COLUMNS), dtype=object)
    bad = sorted(set(df["schema_version"]) - {str(SCHEMA_VERSION)})
    if bad:
        _check_version(bad[0], f"{path} (rows)")
    try:
        df["schema_version"] = df["schema_version"].astype("int64")
        df["seed"] = df["seed"].astype("int64")
    except (ValueError, OverflowError) as exc:
        raise UserError(f"{path}: a seed that is not an integer ({exc})") from exc
    for c in _FLOAT_COLUMNS:
        try:
            df[c] = np.array([float(v) if v else math.nan for v in df[c]], dtype=np.float64)
        except ValueError as exc:
            raise UserError(f"{path}: column {c!r} holds a value that is not a number ({exc})") from exc
    for c in COLUMNS:
        if c not in _FLOAT_COLUMNS and c not in ("schema_version", "seed"):
            df[c] = df[c].astype(str)
    return df


def _read_rows(path: Path) -> list[list[str]]:
    """The rows of ``results.csv`` after its header (checked), as text; one-line errors."""
    try:
        with open(path, encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
    except UnicodeDecodeError as exc:
        raise UserError(f"cannot read {path}: not UTF-8 text (byte {exc.start}); it is damaged") from exc
    except (OSError, csv.Error) as exc:
        raise UserError(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    if not rows or (len(rows) == 1 and _HEADER.startswith(",".join(rows[0]))):
        return []  # empty, or a header cut short before any row: nothing written yet
    header, body = rows[0], rows[1:]
    if tuple(header) != COLUMNS:
        raise SchemaVersionError(f"{path}: unexpected columns {header}; expected {list(COLUMNS)}")
    return body


def _cell_id(key: str, record: Mapping[str, Any]) -> tuple[str, str, str]:
    """(adapter, dataset, seed as text) of a cell record; a bare marker's name says which cell it is."""
    if {"adapter", "dataset", "seed"} <= record.keys():
        return str(record["adapter"]), str(record["dataset"]), str(record["seed"])
    adapter, dataset, seed = [*key.rsplit("__", 2), "", "", ""][:3]
    return adapter, dataset, seed


def damaged_cells(run_dir: str | os.PathLike[str], *, deep: bool = False) -> dict[str, str]:
    """Cell key -> what is wrong, for every finished cell whose data is not all on disk.

    A cell file records how many rows the cell appended (``n_rows``) and whether it saved
    arrays; a finished cell is damaged when ``results.csv`` holds fewer of its rows (a
    truncated or edited file), more (rows written twice), or its ``.npz`` cannot be opened
    (missing, empty, truncated). Every reader refuses a damaged run (:func:`load_results`);
    ``uqbench run --resume`` redoes those cells. ``deep``: also read every array and check its
    CRC (what a resume does: bytes damaged inside an intact archive are found only so).
    """
    run_dir = require_run_dir(run_dir)
    path = run_dir / RESULTS_CSV
    return _damage(run_dir, read_cells(run_dir), _read_rows(path) if path.exists() else [], deep=deep)


def _damage(run_dir: Path, cells: Mapping[str, Mapping[str, Any]], body: list[list[str]], *,
            deep: bool = False, arrays: bool = True) -> dict[str, str]:
    i_ad, i_ds, i_seed = (COLUMNS.index(c) for c in ("adapter", "dataset", "seed"))
    counts: dict[tuple[str, str, str], int] = {}
    for r in body:
        if len(r) == len(COLUMNS):
            k = (r[i_ad], r[i_ds], r[i_seed])
            counts[k] = counts.get(k, 0) + 1
    out: dict[str, str] = {}
    for key, record in cells.items():
        expected = record.get("n_rows")
        if isinstance(expected, int) and not isinstance(expected, bool):
            found = counts.get(_cell_id(key, record), 0)
            if found < expected:
                out[key] = f"{expected - found} of its {expected} rows missing from {RESULTS_CSV}"
            elif found > expected:
                out[key] = f"{found} rows in {RESULTS_CSV} where it wrote {expected} (written twice?)"
        if arrays and key not in out and record.get("arrays") is True:
            problem = _npz_problem(Path(run_dir) / ARRAYS_DIR / f"{key}.npz", deep=deep)
            if problem:
                out[key] = problem
    return out


def _npz_problem(path: Path, *, deep: bool = False) -> str:
    """Why ``path`` is not a readable ``.npz``: "" when its zip directory is whole (and, with
    ``deep``, every member decompresses with the right CRC)."""
    try:
        with zipfile.ZipFile(path) as z:
            bad = z.testzip() if deep else None
    except FileNotFoundError:
        return f"its arrays file {ARRAYS_DIR}/{path.name} is missing"
    except (OSError, zipfile.BadZipFile, EOFError, ValueError, zlib.error) as exc:
        return f"its arrays file {ARRAYS_DIR}/{path.name} is unreadable ({exc})"
    return f"its arrays file {ARRAYS_DIR}/{path.name} is damaged (member {bad})" if bad else ""


def damaged_run_error(run_dir: Path, damaged: Mapping[str, str]) -> DamagedRunError:
    """The one-line refusal of a damaged run directory, naming (up to 3 of) its cells and the repair."""
    import shlex

    shown = "; ".join(f"{key}: {why}" for key, why in list(damaged.items())[:3])
    more = f"; and {len(damaged) - 3} more" if len(damaged) > 3 else ""
    return DamagedRunError(
        f"{run_dir} is damaged: {len(damaged)} finished cell(s) do not match what they wrote ({shown}{more}); "
        f"`uqbench run --resume {shlex.quote(str(run_dir))}` redoes them"
    )


def _row_key(row: list[str], i_ad: int, i_ds: int, i_seed: int) -> str | None:
    try:
        return cell_key(row[i_ad], row[i_ds], int(row[i_seed]))
    except ValueError:
        return None


def _dtype(column: str) -> str:
    if column in ("schema_version", "seed"):
        return "int64"
    return "float64" if column in _FLOAT_COLUMNS else "object"


# -- cells and arrays --------------------------------------------------------------------


def write_cell(run_dir: Path, key: str, record: Mapping[str, Any]) -> None:
    """Write the cell file; call only after the cell's rows and arrays are on disk."""
    write_json(Path(run_dir) / CELLS_DIR / f"{key}.json", record)


def forget_cell(run_dir: str | os.PathLike[str], key: str) -> None:
    """Un-finish cell ``key``: remove its marker first (then its arrays); its rows are
    dropped by the next :func:`keep_rows_of`, so a crash in between loses nothing."""
    run_dir = Path(run_dir)
    (run_dir / CELLS_DIR / f"{key}.json").unlink(missing_ok=True)
    (run_dir / ARRAYS_DIR / f"{key}.npz").unlink(missing_ok=True)


def read_cells(run_dir: str | os.PathLike[str]) -> dict[str, dict[str, Any]]:
    """Cell key -> cell record for every finished cell."""
    directory = Path(run_dir) / CELLS_DIR
    if not directory.is_dir():
        return {}
    return {p.stem: read_json(p) for p in sorted(directory.glob("*.json"))}


def write_arrays(run_dir: Path, key: str, arrays: Mapping[str, np.ndarray]) -> Path:
    """Save ``arrays`` as ``arrays/<key>.npz`` (compressed, no object arrays)."""
    for name, a in arrays.items():
        if np.asarray(a).dtype == object:
            raise ValueError(f"array {name!r} has dtype object; the report store holds no pickles")
    path = Path(run_dir) / ARRAYS_DIR / f"{key}.npz"
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    write_atomic(path, buf.getvalue())
    return path


def load_arrays(run_dir: str | os.PathLike[str], key: str, *, prefix: str = "") -> dict[str, np.ndarray]:
    """The arrays of cell ``key`` whose names start with ``prefix`` (empty dict if the cell
    saved none). An unreadable file is a one-line :class:`DamagedRunError` naming the repair."""
    path = Path(run_dir) / ARRAYS_DIR / f"{key}.npz"
    if not path.exists():
        return {}
    try:
        with np.load(path, allow_pickle=False) as data:
            return {k: data[k] for k in data.files if k.startswith(prefix)}
    except (OSError, ValueError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as exc:
        import shlex

        raise DamagedRunError(
            f"cannot read {path}: {' '.join(str(exc).split())}; "
            f"`uqbench run --resume {shlex.quote(str(run_dir))}` redoes its cell"
        ) from exc


# -- one writer per run directory ---------------------------------------------------------

LOCK_FILE = "run.lock"
LOCK_OWNER = "run.lock.json"


@contextlib.contextmanager
def lock_run_dir(run_dir: str | os.PathLike[str], *, command: str = "") -> Iterator[None]:
    """Hold the run directory's writer lock for the ``with`` block, or fail at once.

    The lock is an exclusive ``flock`` on ``RUN_DIR/run.lock`` (:mod:`filelock`): the
    kernel drops it when the holder exits however it exits (kill -9 included), so a lock
    is never stale. Holding it, this process writes its pid, host, start time and
    ``command`` to ``run.lock.json`` for the message a second writer gets. Re-entrant
    within one process (a driver that resumes and then writes its report holds it once).

    Raises
    ------
    RunDirLockedError
        Another process holds it: one line naming that process.
    """
    import socket

    from filelock import FileLock, Timeout

    run_dir = Path(run_dir)
    lock = FileLock(run_dir / LOCK_FILE, timeout=0, is_singleton=True)
    try:
        lock.acquire()
    except Timeout:
        raise RunDirLockedError(_locked_message(run_dir)) from None
    except OSError as exc:
        raise UserError(f"cannot lock {run_dir / LOCK_FILE}: {exc.strerror or exc}") from exc
    try:
        if lock.lock_counter == 1:
            owner = {"pid": os.getpid(), "host": socket.gethostname(),
                     "since": datetime.now().astimezone().isoformat(timespec="seconds"), "command": command}
            write_atomic(run_dir / LOCK_OWNER, json.dumps(owner) + "\n")
        yield
    finally:
        if lock.lock_counter == 1:
            with contextlib.suppress(OSError):
                (run_dir / LOCK_OWNER).unlink()
        lock.release()


def _locked_message(run_dir: Path) -> str:
    try:
        owner = json.loads((run_dir / LOCK_OWNER).read_text(encoding="utf-8"))
        holder = f"pid {int(owner['pid'])} on {owner.get('host', '?')}, since {owner.get('since', '?')}"
    except (OSError, ValueError, KeyError, TypeError):
        holder = "a process that has not said which"
    return (f"{run_dir} is being written by another uqbench ({holder}); wait for it to finish "
            "or stop it, then run again")
