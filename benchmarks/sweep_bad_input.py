"""The adversarial sweep of issue 16: every attack, its exit code and the first line it prints.

Runs the real ``uqbench`` command line (``python -m uqbench.cli``, the installed adapters) in
a scratch directory, once per case, and prints a table ``case -> exit code -> first line of
stderr`` (stdout when stderr is empty). Each case is also a test (tests/test_run_dir_integrity.py,
tests/test_bad_input*.py, tests/harness/test_ray_cluster.py); this script shows them side by
side as a user meets them::

    .venv/bin/python -m benchmarks.sweep_bad_input [--ray] [--keep DIR]

A row is marked ``!!`` when its exit code is not the one expected (2 for every refusal,
0 where the run repairs itself). About two minutes on two cores; ``--ray`` adds the Ray
case (a local cluster without a free CPU, about 20 s more).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

PY = sys.executable
BASE = ["run", "--adapters", "deterministic", "--datasets", "toy-gap", "--samples", "4", "--executor", "serial"]


class Sweep:
    """Runs cases in ``root`` and collects (case, expected code, code, first line)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.rows: list[tuple[str, int, int, str]] = []
        self._finished: Path | None = None

    # -- helpers ---------------------------------------------------------------------------
    def cli(self, *argv: str, cwd: Path | None = None, env: dict[str, str] | None = None,
            python: str | None = None) -> subprocess.CompletedProcess[str]:
        cmd = [PY, "-c", python, *argv] if python else [PY, "-m", "uqbench.cli", *argv]
        return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd or self.root,
                              env={**os.environ, **(env or {})}, timeout=600)

    def record(self, case: str, expected: int, proc: subprocess.CompletedProcess[str] | tuple[int, str]) -> None:
        if isinstance(proc, tuple):
            code, text = proc
        else:
            code, text = proc.returncode, (proc.stderr.strip() or proc.stdout.strip())
        first = text.splitlines()[0] if text else ""
        self.rows.append((case, expected, code, first))
        mark = "  " if code == expected else "!!"
        print(f"{mark} {case:<34} {code:>3}  {first[:150]}", flush=True)

    def note(self, case: str, text: str, *, ok: bool = True) -> None:
        """A row that is an observation (a size, a path), marked ``!!`` when not ``ok``."""
        self.record(case, 0, (0 if ok else 1, text))

    def finished(self) -> Path:
        """A finished run (deterministic on toy-gap, 2 seeds), made once; copy it to damage it."""
        if self._finished is None:
            out = self.root / "finished"
            proc = self.cli(*BASE, "--seeds", "2", "--out", str(out))
            if proc.returncode != 0:
                raise SystemExit(f"the base run failed: {proc.stderr.strip()}")
            (self._finished,) = out.iterdir()
        return self._finished

    def copy(self, name: str) -> Path:
        return Path(shutil.copytree(self.finished(), self.root / name))

    def suite_file(self, name: str, body: str) -> Path:
        path = self.root / f"{name}.toml"
        path.write_text(body)
        return path

    def empty_out(self, name: str) -> Path:
        return self.root / f"out-{name}"


def _truncate_half(path: Path) -> None:
    lines = path.read_text().splitlines(keepends=True)
    path.write_text("".join(lines[: len(lines) // 2]))


# Writes to a file of this name go to /dev/full: the full disk of case 8, in-process.
_FULL_DISK = textwrap.dedent("""\
    import os, sys, tempfile
    real = tempfile.mkstemp
    def mkstemp(*a, **k):
        fd, path = real(*a, **k)
        if os.path.basename(path).startswith("." + os.environ["SWEEP_FULL"] + "."):
            full = os.open("/dev/full", os.O_WRONLY); os.dup2(full, fd); os.close(full)
        return fd, path
    tempfile.mkstemp = mkstemp
    from uqbench.cli import main
    sys.exit(main(sys.argv[1:]))
""")


def case_0(s: Sweep) -> None:
    run = s.copy("truncated")
    _truncate_half(run / "results.csv")
    s.record("0 truncated results: report", 2, s.cli("report", str(run)))
    s.record("0 truncated results: compare", 2, s.cli("compare", str(s.finished()), str(run)))
    s.record("0 truncated results: --resume", 0, s.cli("run", "--resume", str(run)))
    run = s.copy("data-dir")
    for key in ("cells/deterministic__toy-gap__1.json",):
        (run / key).unlink()
    other = s.root / "elsewhere"
    other.mkdir(exist_ok=True)
    record = json.loads((run / "run.json").read_text())
    record["data_dir"] = str(s.root / "the-run's-data")
    (run / "run.json").write_text(json.dumps(record))
    # toy-gap needs no data directory: the check applies to datasets that read one, so
    # this row shows it through a UCI dataset when the shared data is present.
    shared = os.environ.get("UQBENCH_SHARED_DATA")
    if shared and Path(shared, "uci").is_dir():
        out = s.empty_out("uci")
        first = s.cli("run", "--adapters", "deterministic", "--datasets", "uci-yacht", "--seeds", "1",
                      "--samples", "4", "--executor", "serial", "--data-dir", shared, "--out", str(out))
        if first.returncode == 0:
            (uci_run,) = out.iterdir()
            s.record("0 --resume with another --data-dir", 2,
                     s.cli("run", "--resume", str(uci_run), "--data-dir", str(other)))


def case_1(s: Sweep) -> None:
    run = s.copy("two-drivers")
    record = json.loads((run / "run.json").read_text())
    record["suite"]["seeds"] = list(range(6))  # 4 unfinished cells for the first driver
    record["suite"]["adapters"] = ["mc-dropout"]
    (run / "run.json").write_text(json.dumps(record))
    for p in (run / "cells").glob("*.json"):
        p.unlink()
    first = subprocess.Popen([PY, "-m", "uqbench.cli", "run", "--resume", str(run)], cwd=s.root,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 60
    while not (run / "run.lock.json").exists() and first.poll() is None and time.monotonic() < end:
        time.sleep(0.05)
    s.record("1 second --resume at once", 2, s.cli("run", "--resume", str(run)))
    first.communicate(timeout=600)
    rows = (run / "results.csv").read_text().splitlines()[1:]
    s.record("1 ...first driver; rows doubled?", 0,
             (first.returncode, f"{len(rows)} rows, {len(rows) - len(set(rows))} duplicated"))


def case_2(s: Sweep) -> None:
    s.record("2 --seeds 1000000000", 2, s.cli(*BASE, "--seeds", "1000000000", "--out", str(s.empty_out("seeds"))))
    f = s.suite_file("samples", 'base = "quick"\nn_samples = 1e20\n')
    s.record("2 n_samples = 1e20", 2, s.cli("run", "--config", str(f), "--out", str(s.empty_out("samples"))))
    f = s.suite_file("boot", 'base = "quick"\nn_bootstrap = 1000000000000\n')
    s.record("2 n_bootstrap = 1e12", 2, s.cli("run", "--config", str(f), "--out", str(s.empty_out("boot"))))
    # A gzip bomb: a right-looking idx header (10,000 images of 28 x 28) and 1 GiB of zeros.
    folder = s.root / "bomb" / "images" / "fashion-mnist"
    folder.mkdir(parents=True)
    with gzip.open(folder / "t10k-images-idx3-ubyte.gz", "wb", compresslevel=9) as f_gz:
        f_gz.write(struct.pack(">IIII", 2051, 10_000, 28, 28))
        zeros = bytes(2**24)
        for _ in range(64):
            f_gz.write(zeros)
    with gzip.open(folder / "t10k-labels-idx1-ubyte.gz", "wb") as f_gz:
        f_gz.write(struct.pack(">II", 2049, 10_000) + bytes(10_000))
    size = (folder / "t10k-images-idx3-ubyte.gz").stat().st_size
    proc = subprocess.Popen([PY, "-m", "uqbench.cli", *BASE, "--datasets", "fashion-mnist-t10k", "--seeds", "1",
                             "--data-dir", str(s.root / "bomb"), "--out", str(s.empty_out("bomb"))],
                            cwd=s.root, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    err = proc.stderr.read() if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    s.record(f"2 gzip bomb ({size / 2**20:.1f} MB -> 1 GiB)", 2, (proc.returncode, err.strip()))
    s.note("2 ...peak RSS of that run", f"{usage.ru_maxrss / 1024:.0f} MB")


def case_3(s: Sweep) -> None:
    f = s.suite_file("nul", 'base = "quick"\nname = "a\\u0000b"\n')
    s.record("3 suite name with a NUL byte", 2, s.cli("run", "--config", str(f), "--out", str(s.empty_out("nul"))))
    f = s.suite_file("bigseed", 'base = "quick"\nseeds = [1e20]\n')
    s.record("3 seeds = [1e20]", 2, s.cli("run", "--config", str(f), "--out", str(s.empty_out("bigseed"))))
    f = s.suite_file("dsseed", 'base = "quick"\n[dataset_seeds]\ntoy-gap = [1e20]\n')
    out = s.empty_out("dsseed")
    s.record("3 dataset_seeds = [1e20]", 2, s.cli("run", "--config", str(f), "--out", str(out)))
    if out.exists() and any(out.iterdir()):
        s.note("3 ...left a run directory", str(next(out.iterdir())), ok=False)
    # An idx header whose dimensions multiply past int64 (2^32-1 each).
    folder = s.root / "overflow" / "images" / "fashion-mnist"
    folder.mkdir(parents=True)
    with gzip.open(folder / "t10k-images-idx3-ubyte.gz", "wb") as f_gz:
        f_gz.write(struct.pack(">IIII", 2051, 2**32 - 1, 2**32 - 1, 2**32 - 1) + bytes(784))
    with gzip.open(folder / "t10k-labels-idx1-ubyte.gz", "wb") as f_gz:
        f_gz.write(struct.pack(">II", 2049, 1) + bytes(1))
    s.record("3 idx dims overflowing int64", 2,
             s.cli(*BASE, "--datasets", "fashion-mnist-t10k", "--seeds", "1", "--data-dir", str(s.root / "overflow"),
                   "--out", str(s.empty_out("overflow"))))


def _terminate_after_first_cell(s: Sweep, *argv: str, out: Path) -> tuple[int, str]:
    """Start ``uqbench *argv``, SIGTERM it once its first cell is finished: (exit code, stderr)."""
    driver = subprocess.Popen([PY, "-m", "uqbench.cli", *argv], cwd=s.root, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    end = time.monotonic() + 120
    while not (out.exists() and any(out.glob("*/cells/*.json"))) and driver.poll() is None and time.monotonic() < end:
        time.sleep(0.05)
    driver.send_signal(signal.SIGTERM)
    _, err = driver.communicate(timeout=120)
    return driver.returncode, err


def case_4(s: Sweep) -> None:
    f = s.suite_file("hostile", 'name = "x $(touch PWNED); echo"\nadapters = ["mc-dropout"]\n'
                                'datasets = ["toy-gap"]\nseeds = [0, 1, 2]\nn_samples = 4\n')
    out = s.empty_out("hostile")
    code, err = _terminate_after_first_cell(s, "run", "--config", str(f), "--executor", "serial", "--out", str(out),
                                            out=out)
    hints = [line.split("resume with: ", 1)[1] for line in err.splitlines() if "resume with: " in line]
    s.record("4 hostile name, SIGTERM: hint", 143, (code, hints[0] if hints else err.strip()))
    if hints:
        pasted = subprocess.run(["bash", "-c", f"printf '%s\\n' {hints[0]}"], capture_output=True, text=True,
                                cwd=s.root)
        words = pasted.stdout.splitlines()
        safe = len(words) == 4 and words[:3] == ["uqbench", "run", "--resume"] and not (s.root / "PWNED").exists()
        s.note("4 ...the hint pasted into bash", f"{len(words)} words, PWNED {'absent' if safe else 'CREATED'}",
               ok=safe)
    f = s.suite_file("control", 'base = "quick"\nname = "a\\u001b[31mred"\n')
    s.record("4 suite name with ESC", 2, s.cli("run", "--config", str(f), "--out", str(s.empty_out("control"))))


def case_5(s: Sweep) -> None:
    f = s.suite_file("dptypo", 'base = "quick"\n[dataset_params.toy-gap]\nepochz = 3\n')
    s.record("5 dataset_params typo", 2, s.cli("run", "--config", str(f), "--out", str(s.empty_out("dptypo"))))
    shared = os.environ.get("UQBENCH_SHARED_DATA")
    concrete = Path(shared, "uci", "concrete") if shared else None
    if concrete is not None and concrete.is_dir():
        data = s.root / "leak"
        folder = data / "uci" / "concrete"
        shutil.copytree(concrete, folder)
        target = (folder / "index_target.txt").read_text().split()
        (folder / "index_features.txt").write_text("\n".join(["0", "1", *target]) + "\n")
        s.record("5 index_features lists the target", 2,
                 s.cli("run", "--adapters", "deterministic", "--datasets", "uci-concrete", "--seeds", "1",
                       "--executor", "serial", "--data-dir", str(data), "--out", str(s.empty_out("leak"))))


def case_6(s: Sweep) -> None:
    probe = subprocess.run([PY, "-c", "import ray"], capture_output=True)
    if probe.returncode != 0:
        return
    tmp = Path(tempfile.mkdtemp(prefix="rs", dir="/tmp"))
    env = {**os.environ, "RAY_AUTH_MODE": "disabled"}
    ray = str(Path(PY).with_name("ray"))
    port = "6391"
    started = subprocess.run([ray, "start", "--head", "--num-cpus", "0", "--port", port, "--temp-dir", str(tmp),
                              "--include-dashboard", "false", "--disable-usage-stats"],
                             capture_output=True, text=True, env=env, timeout=120)
    try:
        if started.returncode == 0:
            s.record("6 Ray cluster without a free CPU", 2,
                     s.cli(*BASE, "--seeds", "1", "--executor", "ray", "--ray-address", f"127.0.0.1:{port}",
                           "--out", str(s.empty_out("ray")), env={**env, "UQBENCH_RAY_START_TIMEOUT": "5"}))
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True, env=env, timeout=120)
        shutil.rmtree(tmp, ignore_errors=True)


def case_7(s: Sweep) -> None:
    run = s.copy("not-utf8")
    with open(run / "results.csv", "ab") as f:
        f.write(b"\xff\xfe,broken\n")
    s.record("7 non-UTF-8 results.csv: compare", 2, s.cli("compare", str(s.finished()), str(run)))
    run = s.copy("npz")
    npz = next((run / "arrays").glob("*.npz"))
    npz.write_bytes(npz.read_bytes()[:100])
    s.record("7 truncated npz: report", 2, s.cli("report", str(run)))
    s.record("7 truncated npz: --resume", 0, s.cli("run", "--resume", str(run)))
    run = s.copy("csv-dir")
    (run / "results.csv").unlink()
    (run / "results.csv").mkdir()
    s.record("7 results.csv is a directory", 2, s.cli("report", str(run)))
    s.record("7 --cell-memory 200M", 2,
             s.cli(*BASE, "--seeds", "1", "--executor", "process", "--cell-memory", "200M",
                   "--out", str(s.empty_out("mem"))))
    for key in ("adapter_seeds", "adapter_datasets", "dataset_seeds"):
        value = '["toy-gap"]' if key == "adapter_datasets" else "[0]"
        name = "toy-gapp" if key == "dataset_seeds" else "mc-dropuot"
        f = s.suite_file(key, f'base = "quick"\n[{key}]\n{name} = {value}\n')
        s.record(f"7 typo in {key}", 2, s.cli("run", "--config", str(f), "--out", str(s.empty_out(key))))
    f = s.suite_file("empty", 'base = "quick"\nadapters = ["bayesian-ae"]\ndatasets = ["toy-gap"]\n')
    s.record("7 a grid with no cell", 2, s.cli("run", "--config", str(f), "--out", str(s.empty_out("empty"))))
    run = s.copy("symlink")
    victim = s.root / "victim.txt"
    victim.write_text("precious\n")
    for name in ("index.html.tmp", ".index.html.tmp"):
        (run / name).symlink_to(victim)
    proc = s.cli("report", str(run))
    kept = victim.read_text() == "precious\n"
    s.record("7 planted index.html.tmp symlink", 0, (proc.returncode, f"victim {'untouched' if kept else 'OVERWRITTEN'}"))
    out = s.empty_out("sigterm")
    code, err = _terminate_after_first_cell(s, *BASE, "--adapters", "mc-dropout", "--seeds", "5", "--out", str(out),
                                            out=out)
    status = json.loads(next(out.glob("*/run.json")).read_text())["status"]
    lines = [line for line in err.splitlines() if line.strip()]
    s.record("7 SIGTERM mid-run (run.json status)", 143, (code, f"status={status}; {' / '.join(lines[:2])}"))


def case_8(s: Sweep) -> None:
    for name in ("index.html", "paper_table.md", "summary.txt"):
        run = s.copy(f"full-{name}")
        if name == "summary.txt":
            (run / "cells" / "deterministic__toy-gap__1.json").unlink()
            argv = ["run", "--resume", str(run)]
        else:
            argv = ["report", str(run)]
        proc = s.cli(*argv, python=_FULL_DISK, env={"SWEEP_FULL": name})
        left = [p.name for p in run.glob(".*.tmp")]
        s.record(f"8 disk full at {name}", 2, proc)
        if left:
            s.note(f"8 ...left {left}", "", ok=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ray", action="store_true", help="also the Ray case (needs uqbench[ray])")
    parser.add_argument("--keep", type=Path, help="work in this directory and keep it")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="uqbench-sweep-"))
    root.mkdir(parents=True, exist_ok=True)
    cases: list[Callable[[Sweep], None]] = [case_0, case_1, case_2, case_3, case_4, case_5, case_7, case_8]
    if args.ray:
        cases.insert(6, case_6)
    sweep = Sweep(root)
    print(f"   {'case':<34} exit  first line", flush=True)
    t0 = time.perf_counter()
    try:
        for case in cases:
            case(sweep)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    bad = [r for r in sweep.rows if r[1] != r[2]]
    print(f"{len(sweep.rows)} rows, {len(bad)} not as expected, {time.perf_counter() - t0:.0f} s")
    sys.exit(1 if bad else 0)


if __name__ == "__main__":
    main()
