"""Per-point uncertainty values, taken from the sample containers' own decompositions.

The containers in :mod:`uqbench.interface` define every decomposition once; these
functions only select, name and reduce (over outputs) what the containers compute.
"""

from __future__ import annotations

import numpy as np

from uqbench.interface import ClassificationSamples, RegressionSamples

# Scores at or below this are floating-point residue of a zero decomposition (identical
# draws give variances of ~1e-29 and mutual informations of ~1e-15, not exact zeros).
ZERO_ATOL = 1e-12


def regression_uncertainty(samples: RegressionSamples) -> dict[str, np.ndarray]:
    """Variance decomposition per point ``{name: [N]}``, each summed over the D outputs.

    ``aleatoric_variance`` = mean_s scale^2, ``epistemic_variance`` = var_s loc,
    ``total_variance`` = their sum (law of total variance).
    """
    return {
        "aleatoric_variance": samples.aleatoric_variance().sum(axis=-1),
        "epistemic_variance": samples.epistemic_variance().sum(axis=-1),
        "total_variance": samples.total_variance().sum(axis=-1),
    }


def classification_uncertainty(samples: ClassificationSamples) -> dict[str, np.ndarray]:
    """Variance and entropy decompositions per point ``{name: [N]}``.

    Variance forms are summed over classes; entropies are in nats
    (``predictive_entropy`` = ``expected_entropy`` + ``mutual_information``).
    """
    return {
        "aleatoric_variance": samples.aleatoric_variance(),
        "epistemic_variance": samples.epistemic_variance(),
        "total_variance": samples.total_variance(),
        "predictive_entropy": samples.predictive_entropy(),
        "expected_entropy": samples.expected_entropy(),
        "mutual_information": samples.mutual_information(),
    }


def _zero_residue(scores: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {k: np.where(v <= ZERO_ATOL, 0.0, v) for k, v in scores.items()}


def regression_ood_scores(samples: RegressionSamples) -> dict[str, np.ndarray]:
    """OOD scores ``{"epistemic", "total", "aleatoric": [N]}``: variances summed over D.

    Scores at or below ``ZERO_ATOL`` (1e-12) are set to exactly 0 so that rounding noise
    of a zero decomposition (a deterministic net) ranks as ties, not as signal.
    """
    u = regression_uncertainty(samples)
    return _zero_residue(
        {
            "epistemic": u["epistemic_variance"],
            "total": u["total_variance"],
            "aleatoric": u["aleatoric_variance"],
        }
    )


def classification_ood_scores(samples: ClassificationSamples) -> dict[str, np.ndarray]:
    """OOD scores: mutual information, predictive entropy, expected entropy (nats) ``[N]``.

    Scores at or below ``ZERO_ATOL`` are set to exactly 0 (see :func:`regression_ood_scores`).
    """
    return _zero_residue(
        {
            "epistemic": samples.mutual_information(),
            "total": samples.predictive_entropy(),
            "aleatoric": samples.expected_entropy(),
        }
    )
