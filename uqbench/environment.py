"""What a run ran on: package versions, git commit, CPU, threads, Python, command line.

Recorded in ``run.json`` so numbers can be traced to the software and machine that made
them. Every probe is best-effort: a missing package or a non-git checkout gives None.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any

PACKAGES = ("uqbench", "torch", "numpy", "scipy", "scikit-learn", "pandas")
# Variables that change how many threads the numeric libraries use, hence the timings.
THREAD_ENV_PREFIXES = ("OMP_", "MKL_", "OPENBLAS_", "VECLIB_", "NUMEXPR_", "KMP_")


def package_versions(names: Sequence[str] = PACKAGES) -> dict[str, str | None]:
    out: dict[str, str | None] = {}
    for name in names:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _git(args: list[str], cwd: Path) -> str | None:
    try:
        done = subprocess.run(
            ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return done.stdout.strip() if done.returncode == 0 else None


def git_state(path: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Commit and dirtiness of the git checkout holding ``path`` (default: uqbench's source)."""
    cwd = Path(path) if path is not None else Path(__file__).resolve().parent
    commit = _git(["rev-parse", "HEAD"], cwd)
    if commit is None:
        return {"commit": None, "dirty": None}
    status = _git(["status", "--porcelain", "--untracked-files=no"], cwd)
    return {"commit": commit, "dirty": None if status is None else bool(status)}


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def torch_threads() -> dict[str, int | None]:
    """torch's thread counts *while cells run* (the harness pins intra-op and BLAS to
    ``CELL_THREADS``); None when no adapter imported torch."""
    from uqbench.harness.timing import CELL_THREADS

    torch = sys.modules.get("torch")
    if torch is None:
        return {"intra_op": None, "inter_op": None}
    return {"intra_op": CELL_THREADS, "inter_op": torch.get_num_interop_threads()}


def capture_environment(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Everything above as one JSON-safe dict."""
    try:
        affinity: int | None = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        affinity = None
    return {
        "packages": package_versions(),
        "git": git_state(),
        "python": sys.version.split()[0],
        "python_implementation": platform.python_implementation(),
        "platform": platform.platform(),
        "hostname": platform.node(),
        "cpu_model": cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_affinity": affinity,
        "torch_threads": torch_threads(),
        "thread_env": {k: v for k, v in sorted(os.environ.items()) if k.startswith(THREAD_ENV_PREFIXES)},
        "command_line": list(sys.argv if argv is None else argv),
        "cwd": os.getcwd(),
    }
