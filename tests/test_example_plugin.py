"""The example plugin package under ``examples/`` installs with pip and runs in a grid.

It is pip-installed (from a copy, so the build leaves nothing in the repository) into a
temporary target directory; a subprocess with that directory on its path is then a
Python in which the plugin is installed exactly as a user's would be.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from uqbench import store

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "uqbench-example-plugin"


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("example-plugin")
    source = shutil.copytree(EXAMPLE, root / "src")
    target = root / "site"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--disable-pip-version-check", "--target", str(target), str(source)],
        capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert (target / "uqbench_example" / "ridge.py").is_file()
    return target


def _uqbench(site: Path, *args: str) -> subprocess.CompletedProcess[str]:
    code = f"import sys; sys.path.insert(0, {str(site)!r}); from uqbench.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_the_example_plugin_is_listed_runs_and_records_its_provenance(installed: Path, tmp_path: Path) -> None:
    listing = _uqbench(installed, "list")
    assert listing.returncode == 0, listing.stderr
    line = next(ln for ln in listing.stdout.splitlines() if ln.strip().startswith("example-ridge"))
    # The summary `uqbench list` shows is the docstring's first line.
    assert "regression" in line and "Bayesian ridge regression; prior precision chosen by validation" in line
    out = tmp_path / "runs"
    run = _uqbench(installed, "run", "--adapters", "example-ridge", "--datasets", "toy-gap", "--seeds", "2",
                   "--samples", "10", "--executor", "serial", "--out", str(out))
    assert run.returncode == 0, run.stderr
    (run_dir,) = out.iterdir()
    df = store.load_results(run_dir)
    assert set(df["seed"]) == {0, 1} and (df["status"] == "ok").all()
    test_rows = df[(df["split"] == "test") & (df["metric"] == "nll_loss")]
    assert len(test_rows) == 2 and test_rows["value"].notna().all()
    diag = df[df["split"] == "diagnostics"].set_index(["seed", "metric"])["value"]
    assert diag[0, "alpha"] in (1e-2, 1e-1, 1.0, 10.0, 100.0)
    cells = {c["seed"]: c for c in store.read_cells(run_dir).values()}
    n_train = diag[0, "n_train"]
    assert cells[0]["validation"]["n_validation"] == round(0.2 * n_train)
    assert diag[0, "n_fit"] + cells[0]["validation"]["n_validation"] == n_train
    assert cells[0]["fit_keywords"] == ["X_val", "n_train", "y_val"]
    record = json.loads((run_dir / "run.json").read_text())["adapters"]["example-ridge"]
    assert (record["distribution"], record["version"]) == ("uqbench-example-plugin", "0.1.0")
    assert record["entry_point"] == "uqbench_example.ridge:BayesianRidgeAdapter"


@pytest.mark.slow
def test_the_example_plugin_passes_the_contract(installed: Path) -> None:
    code = (
        f"import sys; sys.path.insert(0, {str(installed)!r})\n"
        "from uqbench.registry import make_adapter\n"
        "from uqbench.testing import check_adapter\n"
        "check_adapter(make_adapter('example-ridge'), 'regression')\n"
        "print('contract ok')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "contract ok" in done.stdout, done.stderr
