"""Tiny, fast stand-ins for adapters, datasets and metrics, injected into the harness.

Everything is numpy, seeded from explicit seeds, and runs in milliseconds, so harness tests
exercise the runner (failures, resume, determinism, storage) without torch.
"""

from _dummies.adapters import (
    BadDrawsAdapter,
    DeterministicDummy,
    FailingAdapter,
    InterruptOnNthFit,
    NaNAdapter,
    NegativeScaleAdapter,
    NoisyAdapter,
    PlainRecorder,
    ReconstructionDummy,
    RecordingAdapter,
    UnnormalizedProbsAdapter,
    WrongShapeAdapter,
)
from _dummies.datasets import DATASETS, load_toy_cls, load_toy_reg
from _dummies.metrics import DummyMetrics
from uqbench.harness import Catalog

DUMMY_ADAPTERS = {
    "noisy": NoisyAdapter,
    "det": DeterministicDummy,
    "failing": FailingAdapter,
    "nan": NaNAdapter,
    "wrong-shape": WrongShapeAdapter,
    "recon": ReconstructionDummy,
}


def make_catalog(**extra) -> Catalog:
    """Dummy catalog; keyword arguments add or replace adapters (name -> factory)."""
    return Catalog(adapters={**DUMMY_ADAPTERS, **extra}, datasets=DATASETS, metrics=DummyMetrics())

__all__ = [
    "DATASETS",
    "BadDrawsAdapter",
    "DeterministicDummy",
    "DummyMetrics",
    "FailingAdapter",
    "InterruptOnNthFit",
    "NaNAdapter",
    "NegativeScaleAdapter",
    "NoisyAdapter",
    "PlainRecorder",
    "ReconstructionDummy",
    "RecordingAdapter",
    "UnnormalizedProbsAdapter",
    "WrongShapeAdapter",
    "load_toy_cls",
    "load_toy_reg",
    "make_catalog",
]
