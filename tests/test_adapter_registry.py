"""The adapter registry: entry points from any installed package, loaded lazily, failing alone.

A third-party package is simulated the way pip installs one: a ``*.dist-info`` folder with
an ``entry_points.txt`` on ``sys.path`` next to its module, so ``importlib.metadata``
finds it exactly as it would a real install.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from uqbench import registry
from uqbench.errors import AdapterUnavailableError, UserError
from uqbench.testing import check_adapter

PLUGIN = '''
import numpy as np
from uqbench.interface import RegressionSamples


class ConstantAdapter:
    """Predicts the training mean with the training spread (a third-party test plugin)."""

    tasks = frozenset({"regression"})
    stochastic = False

    def __init__(self, *, shrink=1.0):
        self.shrink = shrink

    def fit(self, X, y, *, seed):
        self.mean_, self.std_ = y.mean(0), y.std(0)
        self.n_parameters_ = 0
        return self

    def sample_predictive(self, X, *, n_samples, seed):
        loc = np.tile(self.mean_ * self.shrink, (n_samples, len(X), 1)).astype(float)
        return RegressionSamples(loc, np.tile(self.std_, (n_samples, len(X), 1)).astype(float))


class NeedsMissing(ConstantAdapter):
    """Needs a module nobody has."""

    requires = ("uqbench_no_such_module",)
    install_hint = "pip install uqbench-no-such-package"


class Crasher(ConstantAdapter):
    """Kills its own process, as an out-of-memory kill or a native crash would."""

    def fit(self, X, y, *, seed):
        import os

        os._exit(3)


class BadFramework(ConstantAdapter):
    """Its framework is installed but cannot be imported."""

    @classmethod
    def warm_up(cls):
        raise ImportError("libframework.so: cannot open shared object file")


class NoTasks:
    def fit(self): ...
    def sample_predictive(self): ...
'''

ENTRY_POINTS = """
[uqbench.adapters]
constant = uqbench_test_plugin:ConstantAdapter
needs-missing = uqbench_test_plugin:NeedsMissing
no-tasks = uqbench_test_plugin:NoTasks
crasher = uqbench_test_plugin:Crasher
bad-framework = uqbench_test_plugin:BadFramework
broken = uqbench_test_plugin_broken:Anything
"""


@pytest.fixture
def plugin_path(tmp_path):
    (tmp_path / "uqbench_test_plugin.py").write_text(PLUGIN)
    (tmp_path / "uqbench_test_plugin_broken.py").write_text("raise RuntimeError('plugin exploded at import')\n")
    dist = tmp_path / "uqbench_test_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: uqbench-test-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(ENTRY_POINTS)
    return tmp_path


@pytest.fixture
def plugin_installed(plugin_path, monkeypatch):
    monkeypatch.syspath_prepend(str(plugin_path))
    registry._entry_points.cache_clear()
    yield
    registry._entry_points.cache_clear()
    for name in ("uqbench_test_plugin", "uqbench_test_plugin_broken"):
        sys.modules.pop(name, None)


def test_third_party_adapter_is_found_and_passes_the_contract(plugin_installed):
    assert "constant" in registry.adapter_names()
    adapter = registry.make_adapter("constant", shrink=0.5)
    assert adapter.shrink == 0.5
    check_adapter(adapter, "regression")
    info = registry.adapter_info("constant")
    assert info.available and info.tasks == ("regression",)
    assert info.summary.startswith("Predicts the training mean")


def test_missing_requirement_is_named_with_the_install_hint(plugin_installed):
    with pytest.raises(AdapterUnavailableError, match=r"uqbench_no_such_module.*pip install uqbench-no-such-package"):
        registry.load_adapter_class("needs-missing")
    assert not registry.adapter_info("needs-missing").available


def test_broken_plugins_fail_alone(plugin_installed):
    with pytest.raises(AdapterUnavailableError, match=r"'broken' is broken.*plugin exploded at import"):
        registry.load_adapter_class("broken")
    with pytest.raises(AdapterUnavailableError, match=r"'no-tasks'.*tasks"):
        registry.load_adapter_class("no-tasks")
    available = registry.available_adapters()
    assert "constant" in available and "deterministic" in available
    assert not {"broken", "no-tasks", "needs-missing"} & set(available)


def test_unknown_name_and_bad_hyperparameters_are_user_errors(plugin_installed):
    with pytest.raises(UserError, match=r"unknown adapter 'nope'; known adapters: .*constant"):
        registry.load_adapter_class("nope")
    with pytest.raises(UserError, match="bad hyperparameters"):
        registry.make_adapter("constant", no_such_param=1)


def test_list_and_run_with_a_third_party_plugin(plugin_path, tmp_path):
    env_code = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(plugin_path)!r})
        from uqbench.cli import main
        sys.exit(main(sys.argv[1:]))
        """
    )
    listing = subprocess.run(
        [sys.executable, "-c", env_code, "list"], capture_output=True, text=True, timeout=120
    )
    assert listing.returncode == 0, listing.stderr
    lines = {line.split()[0]: line for line in listing.stdout.splitlines() if line.startswith("  ")}
    assert "Predicts the training mean" in lines["constant"]
    assert "unavailable" in lines["broken"] and "plugin exploded" in lines["broken"]
    assert "pip install uqbench-no-such-package" in lines["needs-missing"]
    out = tmp_path / "runs"
    run = subprocess.run(
        [sys.executable, "-c", env_code, "run", "--adapters", "constant", "--datasets", "toy-gap",
         "--seeds", "1", "--samples", "4", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 0, run.stderr
    assert "constant" in run.stdout
    # The run records where the plugin came from: its distribution, version, entry point.
    from uqbench import store

    (run_dir,) = out.iterdir()
    provenance = store.read_run_json(run_dir)["adapters"]["constant"]
    assert provenance["distribution"] == "uqbench-test-plugin" and provenance["version"] == "1.0"
    assert provenance["entry_point"] == "uqbench_test_plugin:ConstantAdapter"
    assert provenance["params"] == {"toy-gap": {}} and provenance["available"] is True
    # A typo (no such entry point at all) is one line, exit 2, with the closest name.
    typo = subprocess.run(
        [sys.executable, "-c", env_code, "run", "--adapters", "constnt", "--datasets", "toy-gap",
         "--out", str(tmp_path / "typo")],
        capture_output=True, text=True, timeout=120,
    )
    assert typo.returncode == 2
    assert typo.stderr.strip().count("\n") == 0 and "did you mean 'constant'" in typo.stderr
    assert not (tmp_path / "typo").exists()


def test_a_named_adapter_that_cannot_be_imported_fails_only_its_cells(plugin_path, tmp_path):
    """The rule: an explicitly named adapter that is registered but cannot be imported (or
    lacks a requirement) fails each of its cells with the reason; every other cell runs,
    and the run exits 1."""
    code = f"import sys; sys.path.insert(0, {str(plugin_path)!r}); from uqbench.cli import main; sys.exit(main(sys.argv[1:]))"
    out = tmp_path / "runs"
    run = subprocess.run(
        [sys.executable, "-c", code, "run", "--adapters", "broken,needs-missing,constant", "--datasets",
         "toy-gap,digits", "--seeds", "2", "--samples", "4", "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 1, run.stderr
    from uqbench import store

    (run_dir,) = out.iterdir()
    cells = store.read_cells(run_dir)
    by = {(c["adapter"], c["dataset"], c["seed"]): c for c in cells.values()}
    assert {by["constant", "toy-gap", s]["status"] for s in (0, 1)} == {"ok"}
    for dataset in ("toy-gap", "digits"):  # its tasks are unknown: every cell fails
        for s in (0, 1):
            broken, missing = by["broken", dataset, s], by["needs-missing", dataset, s]
            assert broken["status"] == missing["status"] == "failed"
            assert broken["stage"] == missing["stage"] == "import"
            assert "plugin exploded at import" in broken["reason"]
            assert "pip install uqbench-no-such-package" in missing["reason"]
    assert by["constant", "digits", 0]["status"] == "skipped"  # constant is regression-only
    record = store.read_run_json(run_dir)["adapters"]
    assert record["broken"]["available"] is False and "plugin exploded" in record["broken"]["reason"]
    assert "uqbench: 8 cell(s) failed" in run.stderr


def _cells(run_root):
    from uqbench import store

    (run_dir,) = run_root.iterdir()
    return {(c["adapter"], c["seed"]): c for c in store.read_cells(run_dir).values()}


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_framework_that_fails_to_import_fails_only_its_cells(plugin_path, tmp_path, workers):
    code = f"import sys; sys.path.insert(0, {str(plugin_path)!r}); from uqbench.cli import main; sys.exit(main(sys.argv[1:]))"
    out = tmp_path / "runs"
    run = subprocess.run(
        [sys.executable, "-c", code, "run", "--adapters", "bad-framework,constant", "--datasets", "toy-gap",
         "--seeds", "2", "--samples", "4", "--workers", workers, "--out", str(out)],
        capture_output=True, text=True, timeout=300,
    )
    assert run.returncode == 1, run.stderr  # some cells failed, the run finished
    cells = _cells(out)
    assert {cells["constant", s]["status"] for s in (0, 1)} == {"ok"}
    for s in (0, 1):
        assert cells["bad-framework", s]["status"] == "failed"
        assert "libframework.so" in cells["bad-framework", s]["reason"]


def test_a_worker_that_dies_fails_its_cell_and_the_run_goes_on(plugin_path, tmp_path):
    code = f"import sys; sys.path.insert(0, {str(plugin_path)!r}); from uqbench.cli import main; sys.exit(main(sys.argv[1:]))"
    out = tmp_path / "runs"
    run = subprocess.run(
        [sys.executable, "-c", code, "run", "--adapters", "crasher,constant", "--datasets", "toy-gap",
         "--seeds", "2", "--samples", "4", "--workers", "2", "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )
    assert run.returncode == 1, run.stderr
    cells = _cells(out)
    for s in (0, 1):
        assert cells["crasher", s]["status"] == "failed"
        assert "exit code 3" in cells["crasher", s]["reason"]  # the crasher calls os._exit(3)
    assert {cells["constant", s]["status"] for s in (0, 1)} == {"ok"}


def test_unwritable_out_is_one_line_and_exit_2(tmp_path):

    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o500)
    target = "/proc" if os.geteuid() == 0 else str(readonly)  # root ignores mode bits
    proc = subprocess.run(
        [sys.executable, "-c", "import sys; from uqbench.cli import main; sys.exit(main(sys.argv[1:]))",
         "run", "--adapters", "deterministic", "--datasets", "toy-gap", "--seeds", "1", "--out", target],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("uqbench: error: cannot create")
