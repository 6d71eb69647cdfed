"""`--ray-address`: a run on an existing (real, two-node) Ray cluster, and executor limits.

The clusters are started with the real ``ray start`` command, all on 127.0.0.1, in their
own sessions (``start_new_session``) and under a private ``--temp-dir``. Teardown never
uses ``ray stop`` (it would stop every Ray on this machine, e.g. another test run's): it
kills only the processes in those sessions or naming that temp dir, and it is registered
before the first node starts, so a failing test leaves nothing behind.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from _dummies import NoisyAdapter, make_catalog

from uqbench import store
from uqbench.cli import main
from uqbench.harness import executors

TIMING = ("fit", "sample", "probe")
GRID = ["--adapters", "noisy,det,where", "--datasets", "toy-reg,toy-cls", "--seeds", "2", "--samples", "6"]
# Where the `where` adapter's fits note the Ray node they ran on (set on the cluster only).
NODE_LOG = "UQBENCH_TEST_NODE_LOG"


class WhereAdapter(NoisyAdapter):
    """The noisy dummy, noting the Ray node of each fit: proves both nodes ran cells."""

    def fit(self, X: np.ndarray, y: np.ndarray | None, *, seed: int) -> WhereAdapter:
        log = os.environ.get(NODE_LOG)
        if log:
            import ray

            with open(log, "a") as f:
                f.write(ray.get_runtime_context().get_node_id() + "\n")
            time.sleep(1.0)  # hold this worker, so that the other node's takes the next cell
        super().fit(X, y, seed=seed)
        return self


_HELD: list[np.ndarray] = []


class HeavySetUp(NoisyAdapter):
    """An adapter whose warm-up alone holds more than the smallest accepted --cell-memory."""

    tasks: ClassVar[frozenset[str]] = frozenset({"regression"})

    @classmethod
    def warm_up(cls) -> None:
        _HELD.append(np.ones((executors.MIN_CELL_MEMORY + 128 * 2**20) // 8))  # touched pages


def _values(run_dir: Path) -> pd.Series:
    """Every non-timing value of a run, indexed by (adapter, dataset, seed, split, metric)."""
    df = store.load_results(run_dir)
    df = df[~df["split"].isin(TIMING)]
    return df.set_index(["adapter", "dataset", "seed", "split", "metric"])["value"].sort_index()


def _free_ports(n: int) -> list[int]:
    sockets = []
    for _ in range(n):
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        sockets.append(s)
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


class LocalCluster:
    """A Ray cluster of ``ray start`` nodes on this machine, and a teardown for it alone."""

    def __init__(self, env: dict[str, str]) -> None:
        # Short: Ray's unix sockets live under it (paths are limited to ~107 bytes).
        self.temp_dir = tempfile.mkdtemp(prefix="uqray", dir="/tmp")
        self.env = {**os.environ, **env, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
        self.sessions: list[int] = []
        self.address = ""

    def add_node(self, num_cpus: int) -> None:
        ray = str(Path(sys.executable).with_name("ray"))
        node, om, agent, agent_grpc, runtime_env, metrics, gcs, dashboard, client = _free_ports(9)
        args = [ray, "start", "--num-cpus", str(num_cpus), "--node-ip-address", "127.0.0.1",
                "--temp-dir", self.temp_dir, "--disable-usage-stats", "--object-store-memory", str(80 * 2**20),
                "--node-manager-port", str(node), "--object-manager-port", str(om),
                "--dashboard-agent-listen-port", str(agent), "--dashboard-agent-grpc-port", str(agent_grpc),
                "--runtime-env-agent-port", str(runtime_env), "--metrics-export-port", str(metrics)]
        if not self.address:
            args += ["--head", "--port", str(gcs), "--include-dashboard", "false", "--dashboard-host", "127.0.0.1",
                     "--dashboard-port", str(dashboard), "--ray-client-server-port", str(client)]
        else:
            args += ["--address", self.address]
        proc = subprocess.Popen(args, env=self.env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                                start_new_session=True)  # its daemons stay in session proc.pid
        self.sessions.append(proc.pid)
        out, _ = proc.communicate(timeout=90)
        assert proc.returncode == 0, out[-3000:]
        if not self.address:
            self.address = f"127.0.0.1:{gcs}"

    def _ours(self) -> list[int]:
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit() or int(entry.name) == os.getpid():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes().decode(errors="replace")
            except OSError:
                continue
            session = int(stat.rsplit(")", 1)[1].split()[4])  # field 6, after "pid (comm)"
            if session in self.sessions or self.temp_dir in cmdline:
                pids.append(int(entry.name))
        return pids

    def stop(self) -> None:
        deadline = time.monotonic() + 20
        while (pids := self._ours()) and time.monotonic() < deadline:
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.2)  # a raylet may have started a worker meanwhile: look again
        shutil.rmtree(self.temp_dir, ignore_errors=True)
        assert not self._ours(), "Ray processes of the test cluster survived teardown"


@pytest.fixture
def cluster(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[LocalCluster]:
    ray = pytest.importorskip("ray")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")  # the driver, like the cluster: no token
    node_log = Path(tempfile.mkdtemp(prefix="uqnodes")) / "nodes.txt"
    made = LocalCluster({NODE_LOG: str(node_log)})

    def teardown() -> None:
        if ray.is_initialized():  # a failed run must not leave this process on a dead cluster
            ray.shutdown()
        made.stop()
        shutil.rmtree(node_log.parent, ignore_errors=True)

    request.addfinalizer(teardown)  # before any node starts
    yield made


# The driver of a run on an existing cluster runs in a fresh process, as `uqbench run` does:
# Ray (2.60) cannot connect a process to a cluster after that process has run a local Ray
# session of its own (its actors are never scheduled), and other tests of this suite run
# local sessions in the pytest process.
_DRIVER = """
import sys
sys.path[:0] = [{harness!r}, {tests!r}]
from _dummies import make_catalog
from test_ray_cluster import WhereAdapter
from uqbench.cli import main
sys.exit(main(sys.argv[1:], catalog=make_catalog(where=WhereAdapter)))
"""


def _drive(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """``uqbench *argv`` with the dummy catalog (and ``where``) in a new Python process."""
    here = Path(__file__).resolve().parent
    script = _DRIVER.format(harness=str(here), tests=str(here.parent))
    return subprocess.run([sys.executable, "-c", script, *argv], capture_output=True, text=True, timeout=110,
                          env={**os.environ, **(env or {})})


@pytest.mark.timeout(120)
def test_a_run_on_an_existing_two_node_cluster_gives_the_serial_numbers(tmp_path, capsys, cluster):
    t0 = time.monotonic()
    cluster.add_node(num_cpus=1)
    cluster.add_node(num_cpus=1)
    catalog = make_catalog(where=WhereAdapter)
    assert main(["run", *GRID, "--executor", "serial", "--out", str(tmp_path / "one")], catalog=catalog) == 0
    proc = _drive("run", *GRID, "--executor", "ray", "--workers", "2", "--ray-address", cluster.address,
                  "--out", str(tmp_path / "ray"))
    assert proc.returncode == 0, proc.stderr
    (one,), (two,) = (tmp_path / "one").iterdir(), (tmp_path / "ray").iterdir()
    a, b = _values(one), _values(two)
    assert len(a) > 50
    assert a.index.equals(b.index) and ((a == b) | (a.isna() & b.isna())).all()
    assert len(store.read_cells(two)) == 12
    session = store.read_run_json(two)["sessions"][0]
    assert (session["executor"], session["workers"], session["status"]) == ("ray", 2, "complete")
    nodes = Path(cluster.env[NODE_LOG]).read_text().split()
    assert len(nodes) == 4 and len(set(nodes)) == 2  # the `where` cells ran on both nodes
    assert time.monotonic() - t0 < 90


@pytest.mark.timeout(60)
def test_a_cluster_without_a_free_cpu_is_a_one_line_error_not_a_silent_wait(tmp_path, capsys, monkeypatch,
                                                                            cluster):
    cluster.add_node(num_cpus=0)
    monkeypatch.setenv(executors.RAY_START_TIMEOUT_ENV, "3")
    t0 = time.monotonic()
    proc = _drive("run", "--adapters", "noisy", "--datasets", "toy-reg", "--seeds", "1", "--executor", "ray",
                  "--ray-address", cluster.address, "--out", str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert time.monotonic() - t0 < 40
    err = proc.stderr.strip().splitlines()
    assert len(err) == 1, err
    assert f"no Ray worker started within 3 s on cluster {cluster.address} (it has 0 CPUs, 0 free)" in err[0]
    assert executors.RAY_START_TIMEOUT_ENV in err[0]
    (run_dir,) = tmp_path.iterdir()
    assert store.read_run_json(run_dir)["status"] == "aborted"  # not 'crashed': resumable as is


@pytest.mark.parametrize("value", ["0", "soon", "-5"])
def test_a_bad_start_timeout_is_refused_before_a_run_directory_exists(tmp_path, capsys, monkeypatch, value):
    pytest.importorskip("ray")
    monkeypatch.setenv(executors.RAY_START_TIMEOUT_ENV, value)
    out = tmp_path / "runs"
    assert main(["run", *GRID, "--executor", "ray", "--out", str(out)], catalog=make_catalog(where=WhereAdapter)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and f"{executors.RAY_START_TIMEOUT_ENV} must be a number of seconds > 0" in err[0]
    assert not out.exists()


@pytest.mark.parametrize("executor", ["process", "ray"])
def test_a_cell_memory_below_a_workers_baseline_is_refused_before_the_run(tmp_path, capsys, executor):
    if executor == "ray":
        pytest.importorskip("ray")
    out = tmp_path / "runs"
    args = ["run", *GRID, "--executor", executor, "--cell-memory", "200M", "--out", str(out)]
    assert main(args, catalog=make_catalog(where=WhereAdapter)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "--cell-memory 200 MiB is below the minimum of 512 MiB" in err[0]
    assert not out.exists()


@pytest.mark.timeout(120)
def test_a_set_up_bigger_than_cell_memory_is_a_one_line_error_not_a_crash(tmp_path, capsys):
    args = ["run", "--adapters", "heavy", "--datasets", "toy-reg", "--seeds", "1", "--executor", "process",
            "--workers", "1", "--cell-memory", "512M", "--out", str(tmp_path)]
    assert main(args, catalog=make_catalog(heavy=HeavySetUp)) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert "--cell-memory 512 MiB is less than a worker holds before its first cell" in err[0]
    assert "warming up heavy" in err[0]
    (run_dir,) = tmp_path.iterdir()
    assert store.read_run_json(run_dir)["status"] == "aborted"


def test_ray_keeps_the_drivers_sigterm_handler():
    """ray.init installs a SIGTERM handler that exits 1; the driver's own (which records the
    session as interrupted and exits 143) must survive it."""
    ray = pytest.importorskip("ray")

    def handler(signum, frame):  # a stand-in for the CLI's
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        executor = executors.make_executor("ray", workers=1)
        assert executor._init() is True
        assert signal.getsignal(signal.SIGTERM) is handler
    finally:
        ray.shutdown()
        signal.signal(signal.SIGTERM, previous)
