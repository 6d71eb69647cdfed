"""Dummy adapters: a noisy linear / nearest-centroid model and broken variants."""

from __future__ import annotations

from typing import ClassVar

import numpy as np

from uqbench.interface import ClassificationSamples, ReconstructionSamples, RegressionSamples


class NoisyAdapter:
    """Linear regression / nearest-centroid classifier with per-draw weight noise."""

    tasks: ClassVar[frozenset[str]] = frozenset({"regression", "classification"})
    stochastic: ClassVar[bool] = True

    def __init__(self, *, noise: float = 0.1) -> None:
        self.noise = noise

    def fit(self, X: np.ndarray, y: np.ndarray | None, *, seed: int) -> NoisyAdapter:
        rng = np.random.default_rng(seed)
        if np.issubdtype(np.asarray(y).dtype, np.integer):
            self.task_ = "classification"
            n_classes = int(y.max()) + 1
            self.centroids_ = np.stack([X[y == c].mean(axis=0) for c in range(n_classes)])
            self.centroids_ += 1e-3 * rng.normal(size=self.centroids_.shape)
            self.n_parameters_ = self.centroids_.size
        else:
            self.task_ = "regression"
            A = np.column_stack([X, np.ones(len(X))])
            self.w_, *_ = np.linalg.lstsq(A, y, rcond=None)
            self.sigma_ = np.std(y - A @ self.w_, axis=0) + 1e-3 * rng.random()
            self.n_parameters_ = self.w_.size + self.sigma_.size
        return self

    def _perturb(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        return self.noise * rng.normal(size=shape)

    def sample_predictive(self, X: np.ndarray, *, n_samples: int, seed: int):
        rng = np.random.default_rng(seed)
        if self.task_ == "classification":
            c = self.centroids_[None] + self._perturb(rng, (n_samples, *self.centroids_.shape))
            d2 = ((X[None, :, None, :] - c[:, None]) ** 2).sum(-1)  # [S, N, C]
            logits = -0.5 * d2
            logits -= logits.max(-1, keepdims=True)
            p = np.exp(logits)
            return ClassificationSamples(p / p.sum(-1, keepdims=True))
        A = np.column_stack([X, np.ones(len(X))])
        w = self.w_[None] + self._perturb(rng, (n_samples, *self.w_.shape))
        loc = np.einsum("nf,sfd->snd", A, w)
        scale = np.broadcast_to(self.sigma_, loc.shape).copy()
        return RegressionSamples(loc, scale)


class DeterministicDummy(NoisyAdapter):
    """Every draw identical (zero epistemic uncertainty)."""

    stochastic: ClassVar[bool] = False

    def __init__(self) -> None:
        super().__init__(noise=0.0)

    def _perturb(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        return np.zeros(shape)


class FailingAdapter(NoisyAdapter):
    """Raises in fit."""

    def fit(self, X: np.ndarray, y: np.ndarray | None, *, seed: int) -> FailingAdapter:
        raise RuntimeError("boom: the optimizer\ndiverged")


class NaNAdapter(NoisyAdapter):
    """Puts a NaN into the first draw."""

    def sample_predictive(self, X: np.ndarray, *, n_samples: int, seed: int):
        s = super().sample_predictive(X, n_samples=n_samples, seed=seed)
        if isinstance(s, ClassificationSamples):
            s.probs[0, 0, 0] = np.nan
        else:
            s.loc[0, 0, 0] = np.nan
        return s


class WrongShapeAdapter(NoisyAdapter):
    """Drops the last input point."""

    def sample_predictive(self, X: np.ndarray, *, n_samples: int, seed: int):
        return super().sample_predictive(X[:-1], n_samples=n_samples, seed=seed)


class NegativeScaleAdapter(NoisyAdapter):
    """Regression only; flips the sign of one draw's scale."""

    tasks: ClassVar[frozenset[str]] = frozenset({"regression"})

    def sample_predictive(self, X: np.ndarray, *, n_samples: int, seed: int):
        s = super().sample_predictive(X, n_samples=n_samples, seed=seed)
        s.scale[0, 0, 0] = -s.scale[0, 0, 0]
        return s


class UnnormalizedProbsAdapter(NoisyAdapter):
    """Classification only; probabilities that sum to 0.5 per point."""

    tasks: ClassVar[frozenset[str]] = frozenset({"classification"})

    def sample_predictive(self, X: np.ndarray, *, n_samples: int, seed: int):
        s = super().sample_predictive(X, n_samples=n_samples, seed=seed)
        return ClassificationSamples(0.5 * s.probs)


class ReconstructionDummy:
    """A 'autoencoder' reconstructing with noise; latent = first two inputs plus noise."""

    tasks: ClassVar[frozenset[str]] = frozenset({"reconstruction"})

    def fit(self, X: np.ndarray, y: None, *, seed: int) -> ReconstructionDummy:
        if y is not None:
            raise ValueError(f"reconstruction takes y=None, got {type(y).__name__}")
        if X.min() < 0 or X.max() > 1:
            raise ValueError("expected inputs in [0, 1]")
        self.n_parameters_ = 2 * X.shape[1]
        return self

    def sample_predictive(self, X: np.ndarray, *, n_samples: int, seed: int):
        rng = np.random.default_rng(seed)
        recon = np.clip(X[None] + 0.01 * rng.normal(size=(n_samples, *X.shape)), 0, 1)
        latent = X[None, :, :2] + 0.1 * rng.normal(size=(n_samples, len(X), 2))
        return ReconstructionSamples(recon, latent)


def InterruptOnNthFit(n: int, base: type = NoisyAdapter):
    """An adapter class whose n-th fit (counted across instances) raises KeyboardInterrupt.

    ``cls.armed = False`` disarms it (to resume).
    """

    class Interrupting(base):  # type: ignore[misc, valid-type]
        fits = 0
        armed = True

        def fit(self, X, y, *, seed):
            type(self).fits += 1
            if type(self).armed and type(self).fits == n:
                raise KeyboardInterrupt
            return super().fit(X, y, seed=seed)

    return Interrupting


class RecordingAdapter(NoisyAdapter):
    """Asks for every opt-in ``fit`` keyword and saves what it got to ``dump_dir``.

    ``dump_dir/<n>.npz`` (n counts fits) holds the rows it trained on (``X``), ``X_val``,
    ``y_val`` (absent when None) and ``n_classes`` / ``n_train`` (-1 for None); the same
    numbers are its ``diagnostics_``.
    """

    def __init__(self, *, noise: float = 0.1, dump_dir: str = "", lr: float = 1e-3) -> None:
        super().__init__(noise=noise)
        self.dump_dir = dump_dir
        self.lr = lr

    def fit(self, X, y, *, seed, X_val=None, y_val=None, n_classes=None, n_train=None):
        super().fit(X, y, seed=seed)
        if self.dump_dir:
            import os

            path = os.path.join(self.dump_dir, f"{len(os.listdir(self.dump_dir))}.npz")
            arrays = {"X": X, "n_classes": -1 if n_classes is None else n_classes,
                      "n_train": -1 if n_train is None else n_train}
            arrays.update({k: v for k, v in (("X_val", X_val), ("y_val", y_val)) if v is not None})
            np.savez(path, **arrays)
        self.diagnostics_ = {
            "n_fit": len(X), "n_val": 0 if X_val is None else len(X_val),
            "n_classes": -1 if n_classes is None else n_classes, "n_train": -1 if n_train is None else n_train,
            "note": "ignored: not a number",
        }
        return self


class PlainRecorder(RecordingAdapter):
    """The same, with a plain ``fit(X, y, *, seed)``: gets the whole training split."""

    def fit(self, X, y, *, seed):
        return super().fit(X, y, seed=seed)


class BadDrawsAdapter(NoisyAdapter):
    """Classification draws that are each invalid though their mean is a distribution.

    ``mode="negative"``: draw pairs ``p + d`` and ``p - d`` with entries outside [0, 1];
    ``mode="unnormalised"``: draws summing to 0.9 and 1.1 alternately.
    """

    tasks: ClassVar[frozenset[str]] = frozenset({"classification"})

    def __init__(self, *, mode: str = "negative") -> None:
        super().__init__(noise=0.1)
        self.mode = mode

    def sample_predictive(self, X: np.ndarray, *, n_samples: int, seed: int):
        p = super().sample_predictive(X, n_samples=n_samples, seed=seed).probs
        sign = np.where(np.arange(n_samples) % 2 == 0, 1.0, -1.0)[:, None, None]
        if self.mode == "negative":
            d = np.zeros_like(p)
            d[..., 0], d[..., 1] = 0.8, -0.8
            p = p + sign * d
        else:
            p = p * (1.0 + 0.1 * sign)
        return ClassificationSamples(p)
