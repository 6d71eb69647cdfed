"""uqbench: benchmark and uncertainty-evaluation suite for Bayesian neural networks."""

from uqbench.interface import (
    ClassificationSamples,
    PredictiveSampler,
    ReconstructionSamples,
    RegressionSamples,
    infer_task,
)

__version__ = "0.1.0"

__all__ = [
    "ClassificationSamples",
    "PredictiveSampler",
    "ReconstructionSamples",
    "RegressionSamples",
    "__version__",
    "infer_task",
]
