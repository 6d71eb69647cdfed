"""The predictive-sampling interface every adapter implements, and its sample containers.

An adapter is any object with

- keyword-only hyperparameters in ``__init__``;
- ``fit(X, y, *, seed) -> self``;
- ``sample_predictive(X, *, n_samples, seed) -> samples``;
- a class attribute ``tasks``: the tasks it supports (a subset of ``TASKS``).

``fit`` may also name any of the opt-in keywords in :data:`FIT_KEYWORDS` (``X_val``,
``y_val``, ``n_classes``, ``n_train``); the harness passes exactly those it names (see
:func:`fit_keywords`), so an adapter that names none is called as before.

The task comes from the data: integer targets ``[N]`` mean classification, floating
targets ``[N, D]`` mean regression (see :func:`infer_task`). Every container is numpy,
sample axis first. Derived quantities (predictive mean, the variance and entropy
decompositions) are computed here, once, never per adapter.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

import numpy as np

Task = Literal["regression", "classification", "reconstruction"]
TASKS: tuple[Task, ...] = ("regression", "classification", "reconstruction")

# Probabilities are clipped here before taking logs, so p log p = 0 at p = 0.
_TINY = np.finfo(np.float64).tiny


def infer_task(y: np.ndarray | None) -> Task:
    """Task implied by the targets: ints ``[N]`` -> classification, floats ``[N, D]`` -> regression."""
    if y is None:
        return "reconstruction"
    y = np.asarray(y)
    if np.issubdtype(y.dtype, np.integer):
        if y.ndim != 1:
            raise ValueError(f"classification targets must be 1-D class indices, got shape {y.shape}")
        return "classification"
    if np.issubdtype(y.dtype, np.floating):
        if y.ndim != 2:
            raise ValueError(f"regression targets must have shape [N, D], got shape {y.shape}")
        return "regression"
    raise ValueError(f"cannot infer the task from targets of dtype {y.dtype}")


@dataclass(frozen=True)
class RegressionSamples:
    """S draws of a regression predictive: each draw is one function with Gaussian noise.

    Attributes
    ----------
    loc : ``[S, N, D]`` mean of draw s at input n.
    scale : ``[S, N, D]`` observation-noise standard deviation of draw s (0 allowed).
    """

    loc: np.ndarray
    scale: np.ndarray
    task: ClassVar[Task] = "regression"

    def __post_init__(self) -> None:
        _check_array("loc", self.loc, ndim=3)
        _check_array("scale", self.scale, ndim=3)
        if self.loc.shape != self.scale.shape:
            raise ValueError(f"loc {self.loc.shape} and scale {self.scale.shape} differ in shape")

    @property
    def n_samples(self) -> int:
        return self.loc.shape[0]

    def mean(self) -> np.ndarray:
        """Predictive mean ``[N, D]``."""
        return self.loc.mean(axis=0)

    def aleatoric_variance(self) -> np.ndarray:
        """Mean of the per-draw noise variances ``[N, D]``."""
        return np.mean(self.scale.astype(np.float64) ** 2, axis=0)

    def epistemic_variance(self) -> np.ndarray:
        """Variance of the per-draw means ``[N, D]`` (population variance over draws)."""
        return _var_over_draws(self.loc)

    def total_variance(self) -> np.ndarray:
        """Law of total variance: aleatoric + epistemic ``[N, D]``."""
        return self.aleatoric_variance() + self.epistemic_variance()

    def subset(self, index: np.ndarray) -> RegressionSamples:
        """The same draws restricted to inputs ``index`` (for bootstrapping)."""
        return RegressionSamples(self.loc[:, index], self.scale[:, index])


@dataclass(frozen=True)
class ClassificationSamples:
    """S draws of a categorical predictive.

    Attributes
    ----------
    probs : ``[S, N, C]`` class probabilities of draw s at input n (rows sum to 1).
    """

    probs: np.ndarray
    task: ClassVar[Task] = "classification"

    # Each draw's row must be a distribution: entries >= -PROB_TOL and a sum within PROB_TOL
    # (relative) of 1, which float32 softmax outputs meet with room to spare.
    PROB_TOL: ClassVar[float] = 1e-5

    def __post_init__(self) -> None:
        _check_array("probs", self.probs, ndim=3)

    def check(self) -> None:
        """Raise ValueError unless every draw's class probabilities form a distribution.

        Not the mean's only: draws ``p + d`` and ``p - d`` average to a valid distribution
        but their entropies are meaningless (a mutual information of hundreds of nats,
        where it is at most log C). Called by every decomposition below and by
        ``uqbench.metrics.evaluate`` / ``evaluate_ood``; construction itself stays
        permissive so that the harness can report an adapter's bad draws per split
        (``check_samples``) rather than as an error inside the adapter.
        """
        if self.__dict__.get("_valid") is self.probs:
            return  # checked already: each metric asks again, and the pass is O(S N C)
        p = self.probs
        if not np.issubdtype(p.dtype, np.floating):
            raise ValueError(f"ClassificationSamples: probs must be floating point, got dtype {p.dtype}")
        if p.size == 0:
            return
        finite = np.isfinite(p)
        if not finite.all():
            s, n, _ = np.argwhere(~finite)[0]
            raise ValueError(f"ClassificationSamples: probs of draw {s} at input {n} are not finite (NaN/inf)")
        if p.min() < -self.PROB_TOL:
            s, n, _ = np.argwhere(p < -self.PROB_TOL)[0]
            raise ValueError(
                f"ClassificationSamples: probs of draw {s} at input {n} are negative "
                f"(minimum {float(p[s, n].min()):.6g}); each draw must be a distribution"
            )
        off = np.abs(p.sum(axis=-1, dtype=np.float64) - 1.0)
        if off.max() > self.PROB_TOL:
            s, n = np.unravel_index(int(np.argmax(off)), off.shape)
            raise ValueError(
                f"ClassificationSamples: probs of draw {s} at input {n} sum to "
                f"{float(p[s, n].sum(dtype=np.float64)):.6g}, not 1 (tolerance {self.PROB_TOL:g}); "
                "each draw must be a distribution"
            )
        # Remember which array passed (frozen: set through object). Containers are not
        # mutated in place after the harness checked them; a new probs array is rechecked.
        object.__setattr__(self, "_valid", p)

    def _checked(self) -> np.ndarray:
        self.check()
        return self.probs.astype(np.float64)

    @property
    def n_samples(self) -> int:
        return self.probs.shape[0]

    def mean(self) -> np.ndarray:
        """Predictive (mixture) class probabilities ``[N, C]``."""
        return self._checked().mean(axis=0)

    def predictive_entropy(self) -> np.ndarray:
        """Entropy of the mean predictive, in nats ``[N]`` (total uncertainty)."""
        return _entropy(self.mean())

    def expected_entropy(self) -> np.ndarray:
        """Mean entropy of the draws ``[N]`` (aleatoric uncertainty)."""
        return _entropy(self._checked()).mean(axis=0)

    def mutual_information(self) -> np.ndarray:
        """BALD: predictive minus expected entropy ``[N]`` (epistemic uncertainty), >= 0."""
        return np.maximum(self.predictive_entropy() - self.expected_entropy(), 0.0)

    def aleatoric_variance(self) -> np.ndarray:
        """Variance form: sum over classes of the mean per-draw Bernoulli variance p(1-p) ``[N]``."""
        p = self._checked()
        return np.sum(np.mean(p * (1.0 - p), axis=0), axis=-1)

    def epistemic_variance(self) -> np.ndarray:
        """Variance form: sum over classes of the variance of p across draws ``[N]``."""
        return np.sum(_var_over_draws(self._checked()), axis=-1)

    def total_variance(self) -> np.ndarray:
        """Sum over classes of pbar(1-pbar) = aleatoric + epistemic variance ``[N]``."""
        pbar = self.mean()
        return np.sum(pbar * (1.0 - pbar), axis=-1)

    def subset(self, index: np.ndarray) -> ClassificationSamples:
        return ClassificationSamples(self.probs[:, index])


@dataclass(frozen=True)
class ReconstructionSamples:
    """S draws of an autoencoder's reconstruction of its inputs.

    Attributes
    ----------
    recon : ``[S, N, D]`` decoder mean (pixel probabilities for a Bernoulli decoder) of draw s.
    latent : ``[S, N, K]`` the latent code z of draw s.
    latent_mean : ``[S, N, K]`` or None: the mean of q(z|x) in draw s (the same in every draw
        for a deterministic encoder; varies with the weights of a Bayesian encoder).
    latent_scale : ``[S, N, K]`` or None: the standard deviation of q(z|x) in draw s (with
        ``latent_mean`` it lets metrics compute the ELBO and importance-sampled log p(x)).
    recon_scale : ``[S, N, D]`` or None: the standard deviation of a Gaussian decoder
        p(x|z) = N(recon, recon_scale^2); None means a Bernoulli decoder (``recon`` are
        pixel probabilities).
    """

    recon: np.ndarray
    latent: np.ndarray
    latent_mean: np.ndarray | None = None
    latent_scale: np.ndarray | None = None
    recon_scale: np.ndarray | None = None
    task: ClassVar[Task] = "reconstruction"

    def __post_init__(self) -> None:
        _check_array("recon", self.recon, ndim=3)
        _check_array("latent", self.latent, ndim=3)
        if self.recon.shape[:2] != self.latent.shape[:2]:
            raise ValueError(
                f"recon {self.recon.shape} and latent {self.latent.shape} differ in [S, N]"
            )
        for name in ("latent_mean", "latent_scale"):
            value = getattr(self, name)
            if value is not None:
                _check_array(name, value, ndim=3)
                if value.shape != self.latent.shape:
                    raise ValueError(f"{name} {value.shape} differs from latent {self.latent.shape}")
        if self.recon_scale is not None:
            _check_array("recon_scale", self.recon_scale, ndim=3)
            if self.recon_scale.shape != self.recon.shape:
                raise ValueError(
                    f"recon_scale {self.recon_scale.shape} differs from recon {self.recon.shape}"
                )

    @property
    def n_samples(self) -> int:
        return self.recon.shape[0]

    def mean(self) -> np.ndarray:
        """Mean reconstruction ``[N, D]``."""
        return self.recon.mean(axis=0)

    def epistemic_variance(self) -> np.ndarray:
        """Variance across draws of the encoder's latent mean, summed over K ``[N]``.

        Zero for a deterministic encoder; for a Bayesian encoder it is the spread caused by
        the encoder's weight uncertainty. Falls back to the latent draws when the adapter
        gives no latent means.
        """
        z = self.latent if self.latent_mean is None else self.latent_mean
        return np.sum(_var_over_draws(z), axis=-1)

    def latent_variance(self) -> np.ndarray:
        """Variance of the latent draws across samples, summed over K ``[N]``."""
        return np.sum(_var_over_draws(self.latent), axis=-1)

    def subset(self, index: np.ndarray) -> ReconstructionSamples:
        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[:, index]

        return ReconstructionSamples(
            self.recon[:, index],
            self.latent[:, index],
            pick(self.latent_mean),
            pick(self.latent_scale),
            pick(self.recon_scale),
        )


Samples = RegressionSamples | ClassificationSamples | ReconstructionSamples


@runtime_checkable
class PredictiveSampler(Protocol):
    """What the harness needs from an adapter."""

    tasks: ClassVar[frozenset[str]]

    def fit(self, X: np.ndarray, y: np.ndarray | None, *, seed: int) -> PredictiveSampler: ...

    def sample_predictive(self, X: np.ndarray, *, n_samples: int, seed: int) -> Samples: ...


# Keywords ``fit`` may opt in to by naming them in its signature:
# - ``X_val`` ``[M, F]``, ``y_val``: a validation split carved from the training split (the
#   adapter then trains on the rest); ``y_val`` is None for reconstruction;
# - ``n_classes``: the dataset's number of classes (classification; None otherwise);
# - ``n_train``: the training split's size *before* the validation carve-out.
FIT_KEYWORDS: tuple[str, ...] = ("X_val", "y_val", "n_classes", "n_train")


def fit_keywords(adapter: Any) -> frozenset[str]:
    """The opt-in keywords of :data:`FIT_KEYWORDS` that ``adapter.fit`` names explicitly.

    Only named parameters count: a ``fit(**kwargs)`` receives none of them (it would
    otherwise be handed a validation split it did not ask for and train on fewer rows).
    """
    try:
        parameters = inspect.signature(adapter.fit).parameters
    except (TypeError, ValueError):
        return frozenset()
    return frozenset(
        name
        for name in FIT_KEYWORDS
        if name in parameters
        and parameters[name].kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    )


def validation_split(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(rows to fit on, validation rows) of a training split of ``n`` rows, each sorted ``[k]``.

    ``round(fraction * n)`` validation rows, at least 1 and leaving at least 1 to fit on
    (none when ``fraction`` is 0 or ``n < 2``), drawn without replacement from ``seed``.
    """
    n_val = 0 if fraction <= 0 or n < 2 else min(n - 1, max(1, round(fraction * n)))
    order = np.random.default_rng(seed).permutation(n)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


def n_parameters(adapter: Any) -> int | None:
    """Trainable parameter count an adapter reports via ``n_parameters_``, if any."""
    value = getattr(adapter, "n_parameters_", None)
    return None if value is None else int(value)


def _var_over_draws(a: np.ndarray) -> np.ndarray:
    """Population variance over axis 0, exactly 0 when all draws are identical.

    Centring on the first draw first: ``np.var`` of identical float64 values can return
    ~1e-32 instead of 0, which would blur "no epistemic uncertainty" into rounding noise.
    """
    a = a.astype(np.float64)
    return np.var(a - a[:1], axis=0)


def _entropy(p: np.ndarray) -> np.ndarray:
    return -np.sum(p * np.log(np.clip(p, _TINY, None)), axis=-1)


def _check_array(name: str, a: Any, *, ndim: int) -> None:
    if not isinstance(a, np.ndarray):
        raise TypeError(f"{name} must be a numpy array, got {type(a).__name__}")
    if a.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions [S, N, ...], got shape {a.shape}")
