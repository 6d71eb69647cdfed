"""Benchmark suites: which adapters, datasets, seeds and sample counts a run uses.

A :class:`Suite` is a frozen value; ``quick`` (the default, offline, about a second per
cell) and ``standard`` (the published protocols, needs the data directory) are built in.
Dataset entries may be shell-style patterns (``"uci-*"``), expanded against the dataset
registry when a run is planned. This module imports nothing heavy.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from uqbench.errors import UserError

__all__ = ["SUITES", "Suite", "SuiteError", "get_suite", "suite_names"]

# Optional per-cell steps a suite may switch on (see uqbench.harness.cell.OPTIONAL_STEPS).
KNOWN_STEPS = ("probe",)


class SuiteError(UserError, ValueError):
    """A bad suite definition or override (unknown key, bad value)."""


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise SuiteError(f"{name} must be an integer >= 1, got {value!r}")
    return value


def _names(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not all(isinstance(v, str) and v for v in value):
        raise SuiteError(f"{name} must be a sequence of non-empty names, got {value!r}")
    out = tuple(dict.fromkeys(value))  # order kept, duplicates dropped
    if not out:
        raise SuiteError(f"{name} must not be empty")
    return out


@dataclass(frozen=True)
class Suite:
    """What one run measures: the grid adapters × datasets × seeds and its settings.

    Parameters
    ----------
    name : suite name, part of the run directory's name.
    datasets : dataset names or shell-style patterns (``"uci-*"``), in run order.
    seeds : the cell seeds; each gives its own train/test split and training seed.
    n_samples : predictive draws ``S`` per split.
    adapters : adapter names, or None for every available (installed) adapter.
    adapter_params : adapter name -> keyword hyperparameters overriding its defaults.
    dataset_params : dataset name -> training-budget hyperparameters (e.g. ``epochs``)
        given to every adapter on that dataset whose constructor accepts them;
        ``adapter_params`` win where both set a key.
    n_bootstrap : bootstrap resamples for the metric confidence intervals.
    steps : optional per-cell steps to switch on, e.g. ``("probe",)``.
    description : one line for ``uqbench list``.
    """

    name: str
    datasets: tuple[str, ...]
    seeds: tuple[int, ...]
    n_samples: int
    adapters: tuple[str, ...] | None = None
    adapter_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    dataset_params: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    n_bootstrap: int = 200
    steps: tuple[str, ...] = ()
    description: str = ""

    def __post_init__(self) -> None:
        # Normalise containers so suites built from JSON (lists) equal hand-written ones.
        if not isinstance(self.name, str) or not self.name or "/" in self.name:
            raise SuiteError(f"suite name must be a non-empty string without '/', got {self.name!r}")
        set_ = object.__setattr__
        set_(self, "datasets", _names("datasets", self.datasets))
        if self.adapters is not None:
            set_(self, "adapters", _names("adapters", self.adapters))
        seeds = tuple(self.seeds)
        if not seeds or any(isinstance(s, bool) or not isinstance(s, int) or s < 0 for s in seeds):
            raise SuiteError(f"seeds must be a non-empty sequence of integers >= 0, got {self.seeds!r}")
        if len(set(seeds)) != len(seeds):
            raise SuiteError(f"seeds must be distinct, got {self.seeds!r}")
        set_(self, "seeds", seeds)
        _positive_int("n_samples", self.n_samples)
        _positive_int("n_bootstrap", self.n_bootstrap)
        if not isinstance(self.adapter_params, Mapping) or not all(
            isinstance(k, str) and isinstance(v, Mapping) for k, v in self.adapter_params.items()
        ):
            raise SuiteError(
                "adapter_params must map adapter names to keyword dicts, "
                f"got {self.adapter_params!r}"
            )
        set_(self, "adapter_params", {k: dict(v) for k, v in self.adapter_params.items()})
        if not isinstance(self.dataset_params, Mapping) or not all(
            isinstance(k, str) and isinstance(v, Mapping) for k, v in self.dataset_params.items()
        ):
            raise SuiteError(
                f"dataset_params must map dataset names to keyword dicts, got {self.dataset_params!r}"
            )
        set_(self, "dataset_params", {k: dict(v) for k, v in self.dataset_params.items()})
        steps = tuple(self.steps)
        unknown = [s for s in steps if s not in KNOWN_STEPS]
        if unknown:
            raise SuiteError(f"unknown cell step(s) {unknown}; known steps: {', '.join(KNOWN_STEPS)}")
        set_(self, "steps", steps)

    # Frozen, but adapter_params is a dict: hash by name and grid only.
    def params_for(self, adapter: str, dataset: str, accepted: frozenset[str] | None) -> dict[str, Any]:
        """Hyperparameters for ``adapter`` on ``dataset``.

        ``accepted``: the keyword names the adapter's constructor takes (None: any), which
        filters ``dataset_params`` only; ``adapter_params`` are passed as given, so a typo
        there is an error rather than silently dropped.
        """
        budget = self.dataset_params.get(dataset, {})
        params = {k: v for k, v in budget.items() if accepted is None or k in accepted}
        params.update(self.adapter_params.get(adapter, {}))
        return params

    def __hash__(self) -> int:
        return hash((self.name, self.datasets, self.seeds, self.n_samples, self.adapters))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Suite:
        """Build a suite from a plain mapping (e.g. ``run.json``), rejecting unknown keys.

        Raises
        ------
        SuiteError
            Unknown or missing keys (with the closest known key), or bad values.
        """
        known = [f.name for f in dataclasses.fields(cls)]
        unknown = [k for k in data if k not in known]
        if unknown:
            hints = []
            for key in unknown:
                close = difflib.get_close_matches(str(key), known, n=1)
                hints.append(f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise SuiteError(f"unknown suite key(s) {', '.join(hints)}; known keys: {', '.join(known)}")
        required = [
            f.name
            for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]
        missing = [k for k in required if k not in data]
        if missing:
            raise SuiteError(f"suite is missing required key(s): {', '.join(missing)}")
        values = dict(data)
        for key in ("datasets", "seeds", "adapters", "steps"):
            if isinstance(values.get(key), list):
                values[key] = tuple(values[key])
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe mapping that :meth:`from_dict` turns back into an equal suite."""
        return {
            "name": self.name,
            "datasets": list(self.datasets),
            "seeds": list(self.seeds),
            "n_samples": self.n_samples,
            "adapters": None if self.adapters is None else list(self.adapters),
            "adapter_params": {k: dict(v) for k, v in self.adapter_params.items()},
            "dataset_params": {k: dict(v) for k, v in self.dataset_params.items()},
            "n_bootstrap": self.n_bootstrap,
            "steps": list(self.steps),
            "description": self.description,
        }

    def replace(self, **changes: Any) -> Suite:
        """A copy with some fields changed (validated like a new suite)."""
        try:
            return dataclasses.replace(self, **changes)
        except TypeError as exc:
            raise SuiteError(str(exc)) from exc


QUICK = Suite(
    name="quick",
    datasets=("toy-gap", "digits"),
    seeds=(0, 1, 2),
    n_samples=50,
    adapters=None,
    # About one second per cell on one core: digits has 4x toy-gap's rows, so fewer
    # epochs. bayes-linear's inputs-as-features cannot fit the 1-D sine: give it random
    # Fourier features with a lengthscale below the gap's width.
    dataset_params={
        "toy-gap": {"epochs": 150, "features": "rff", "lengthscale": 0.5},
        "digits": {"epochs": 20},
    },
    n_bootstrap=100,
    description="offline smoke benchmark: toy-gap and digits, 3 seeds, S=50 (about 2 minutes)",
)

# The UCI protocol of Hernandez-Lobato & Adams (2015): one hidden layer of 50 units (100
# for protein), 40 epochs (20 for protein); batch 32 as in Gal's experiments.
_UCI_NAMES = ("boston", "concrete", "energy", "kin8nm", "naval", "power", "protein", "wine", "yacht")
_UCI_PROTOCOL = {
    f"uci-{name}{variant}": (
        {"hidden": (100,), "epochs": 20, "batch_size": 32}
        if name == "protein"
        else {"hidden": (50,), "epochs": 40, "batch_size": 32}
    )
    for name in _UCI_NAMES
    for variant in ("", "-extrapolate")
}

STANDARD = Suite(
    name="standard",
    datasets=("toy-gap", "digits", "uci-*", "mnist-t10k"),
    seeds=(0, 1, 2, 3, 4),
    n_samples=100,
    adapters=None,
    # mnist-t10k: at the default lr 1e-2 for 100 epochs a deterministic MLP reaches 94%
    # accuracy with NLL 2.8 (wildly over-confident); 20 epochs at 1e-3 is the usual regime.
    dataset_params={
        "toy-gap": {"epochs": 150, "features": "rff", "lengthscale": 0.5},
        "digits": {"epochs": 50},
        "mnist-t10k": {"epochs": 20, "lr": 1e-3, "hidden": (200,)},
        **_UCI_PROTOCOL,
    },
    n_bootstrap=200,
    steps=("probe",),
    description=(
        "published protocols: toy-gap, digits, every UCI dataset (incl. extrapolation "
        "splits), mnist-t10k; 5 seeds, S=100; needs the data directory"
    ),
)

PARITY = Suite(
    name="parity",
    datasets=("toy-gap", "digits"),
    seeds=(0, 1, 2, 3, 4),
    n_samples=50,
    adapters=(
        "bbb", "tfp-bbb", "flipout", "tfp-flipout", "lrt", "tfp-lrt",
        "mc-dropout", "tfp-mc-dropout", "vae", "tfp-vae",
    ),
    # The same budget for both twins; every other hyperparameter is each twin's default,
    # and the TFP adapters' defaults are set to equal the torch ones (see README).
    dataset_params={"toy-gap": {"epochs": 150}, "digits": {"epochs": 20}},
    n_bootstrap=100,
    description=(
        "each method in PyTorch and TFP (needs uqbench[tfp]) on toy-gap and digits, 5 seeds; "
        "prints and saves parity.csv (torch - TFP with paired 95% intervals, speed ratios)"
    ),
)

SUITES: dict[str, Suite] = {s.name: s for s in (QUICK, STANDARD, PARITY)}


def suite_names() -> list[str]:
    return list(SUITES)


def get_suite(name: str) -> Suite:
    """The built-in suite ``name``.

    Raises
    ------
    UserError
        Unknown name (lists the known ones).
    """
    if name not in SUITES:
        raise SuiteError(f"unknown suite {name!r}; known suites: {', '.join(SUITES)}")
    return SUITES[name]
