"""Shared machinery of the TFP adapters: lazy TensorFlow import, thread and seed settings,
validation, the Keras training loop and compiled predictive sampling.

Importing this module imports neither TensorFlow nor torch; :func:`tf_modules` does, the
first time an adapter is fitted.

Threads
-------
TensorFlow and torch each default to one thread per core. Before the first TF op,
:func:`tf_modules` sets TF's intra-op pool to torch's thread count (``torch.get_num_threads()``;
the harness runs cells with one torch thread, so one) and the inter-op pool to 1: the small MLPs here
have no independent ops worth running concurrently, and one inter-op thread keeps TF from
running two ops that each fan out over the intra-op pool. So TF uses the same number of
cores as torch would, never more, and speed comparisons between twins use the same budget.
Set ``UQBENCH_TF_THREADS`` to override the intra-op count. When the TF runtime was already
initialised by someone else, its settings are left alone.

Seeds
-----
``fit`` runs inside :func:`seeded`: ``tf_keras.utils.set_random_seed(seed)`` (TF's global
seed, which fixes every stateful TF op's stream in a freshly traced function) with the
caller's numpy and ``random`` states restored afterwards. Initialisers get explicit seeds
derived from the fit seed. Sampling uses only stateless TF ops seeded from the explicit
``seed``, so the same seed gives bit-identical samples on CPU, independent of anything
run before.

Compiled functions
------------------
The samplers are ``tf.function(autograph=False)`` and the losses are marked
``do_not_convert``: they are plain TF ops over Python loops, and autograph would re-read
their source from disk when tracing (so editing the files under a running benchmark could
silently compile the wrong code; seen once, as chance-level digits accuracy).

Training
--------
``model.fit`` on a ``tf.data`` pipeline shuffled from the fit seed (reshuffled every epoch)
and batched with ``drop_remainder=True``, as the torch loop drops the ragged last batch;
Adam with torch's defaults (betas 0.9/0.999, epsilon 1e-8); ``weight_decay`` is torch's
coupled L2 (``+ weight_decay * theta`` in the gradient), added as the loss
``0.5 * weight_decay * |theta|^2``. Keras adds ``model.losses`` (KL terms, that penalty) to
the compiled loss itself, so the compiled loss is the data term only.
"""

from __future__ import annotations

import math
import os
import random
import sys
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from numbers import Integral
from types import SimpleNamespace
from typing import Any, ClassVar

import numpy as np

from uqbench.interface import ClassificationSamples, RegressionSamples, Task
from uqbench_adapters._validation import (
    check_training_params,
    is_positive_int,
    n_classes_for,
    validate_fit_data,
    validate_X,
)

REQUIRES = ("tensorflow", "tensorflow_probability", "tf_keras")
INSTALL_HINT = "pip install 'uqbench[tfp]'"
ACTIVATIONS = ("relu", "tanh", "gelu", "silu")
# Bound on the floats of the widest [n, N, width] intermediate of one compiled sampling call.
CHUNK_FLOATS = 8_000_000
MIN_SCALE = 1e-6  # the torch twins' floor on a predicted noise scale
NOISE_INIT_SCALE = 0.5  # the torch twins' initial homoscedastic noise scale

_TF: SimpleNamespace | None = None


def tf_modules() -> SimpleNamespace:
    """Import TensorFlow, TFP and tf_keras once (threads configured first).

    Returns a namespace with ``tf``, ``tfp``, ``tfd`` (distributions), ``keras``
    (``tf_keras``) and ``threads`` (the intra-op count set, or None if TF was already
    running with its own settings).
    """
    global _TF
    if _TF is not None:
        return _TF
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    threads = _configure_threads(tf)
    # Every fitted adapter compiles its own sampler, which TF's Python logger reports as
    # "excessive retracing" after a few fits; that warning is about performance only.
    tf.get_logger().setLevel("ERROR")
    import tensorflow_probability as tfp
    import tf_keras

    _TF = SimpleNamespace(tf=tf, tfp=tfp, tfd=tfp.distributions, keras=tf_keras, threads=threads)
    return _TF


def _thread_budget() -> int:
    env = os.environ.get("UQBENCH_TF_THREADS", "").strip()
    if env:
        if not env.isdigit() or int(env) < 1:
            raise ValueError(f"UQBENCH_TF_THREADS must be a positive integer, got {env!r}")
        return int(env)
    torch = sys.modules.get("torch")
    if torch is None:
        import torch  # a core dependency; the harness has normally imported it already
    return max(1, int(torch.get_num_threads()))


def _configure_threads(tf: Any) -> int | None:
    threads = _thread_budget()
    try:
        tf.config.threading.set_intra_op_parallelism_threads(threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:  # the TF runtime is already initialised: keep its settings
        return None
    return threads


@contextmanager
def quiet_tfp() -> Iterator[None]:
    """Silence TFP 0.25's own deprecation warning about Keras' ``add_variable`` (not ours to fix)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=r"`layer.add_variable` is deprecated", category=UserWarning)
        yield


@contextmanager
def seeded(seed: int) -> Iterator[None]:
    """Seed TF (and Keras' Python/numpy use) from ``seed``; restore the caller's numpy/random state."""
    tfm = tf_modules()
    # set_random_seed also seeds numpy's legacy global RNG, which is the caller's to keep.
    np_state, py_state = np.random.get_state(), random.getstate()  # noqa: NPY002
    try:
        tfm.keras.utils.set_random_seed(int(seed))
        yield
    finally:
        np.random.set_state(np_state)  # noqa: NPY002
        random.setstate(py_state)


def validate_seed(seed: Any) -> int:
    """An int seed in ``[0, 2**32)`` (what Keras' ``set_random_seed`` accepts), else ValueError."""
    if not isinstance(seed, Integral) or isinstance(seed, bool) or not 0 <= seed < 2**32:
        raise ValueError(f"seed must be an int in [0, 2**32), got {seed!r}")
    return int(seed)


def derived_seeds(seed: int, n: int) -> list[int]:
    """``n`` independent 31-bit seeds from ``seed`` (for initialisers and the shuffle)."""
    state = np.random.SeedSequence(int(seed)).generate_state(n, dtype=np.uint32)
    return [int(s) & 0x7FFFFFFF for s in state]


def activation_fn(name: str) -> Any:
    """The TF function for ``name``, matching torch's (GELU exact, not the tanh approximation)."""
    tf = tf_modules().tf
    return {
        "relu": tf.nn.relu,
        "tanh": tf.math.tanh,
        "gelu": lambda x: tf.nn.gelu(x, approximate=False),
        "silu": tf.nn.silu,
    }[name]


def softplus_inverse(x: float) -> float:
    """``rho`` with ``softplus(rho) = x``."""
    return math.log(math.expm1(x))


def torch_linear_init(n_in: int, seed: int) -> Any:
    """``U(-1/sqrt(n_in), 1/sqrt(n_in))``: ``torch.nn.Linear``'s default for weights and bias."""
    bound = 1.0 / math.sqrt(n_in)
    return tf_modules().keras.initializers.RandomUniform(-bound, bound, seed=seed)


def gaussian_nll_from_raw(y: Any, out: Any) -> Any:
    """Gaussian NLL of ``y`` ``[B, D]`` under ``out = [loc, raw]`` ``[B, 2D]``, summed over D
    and averaged over the batch.

    ``scale = softplus(raw) + 1e-6`` and the ``0.5 log 2 pi`` constant, exactly the torch
    twins' ``gaussian_nll``.
    """
    tf = tf_modules().tf
    loc, raw = tf.split(out, 2, axis=-1)
    scale = tf.nn.softplus(raw) + MIN_SCALE
    z = (tf.cast(y, out.dtype) - loc) / scale
    per_output = tf.math.log(scale) + 0.5 * tf.square(z) + 0.5 * math.log(2 * math.pi)
    return tf.reduce_mean(tf.reduce_sum(per_output, axis=-1))


def cross_entropy_from_logits(y: Any, logits: Any) -> Any:
    """Mean categorical cross-entropy of integer labels ``y`` ``[B]`` (or ``[B, 1]``)."""
    tf = tf_modules().tf
    labels = tf.reshape(tf.cast(y, tf.int32), [-1])
    return tf.reduce_mean(
        tf.nn.sparse_softmax_cross_entropy_with_logits(labels=labels, logits=logits)
    )


def noise_head_layer(n_out: int) -> Any:
    """A Keras layer ``[B, D] -> [B, 2D]`` appending one learned raw noise scale per output.

    ``softplus(rho) + 1e-6`` is the noise scale; ``rho`` starts at ``softplus^-1(0.5)`` like
    the torch twins' ``HomoscedasticNoise``. Appending it as a constant column lets one
    loss (:func:`gaussian_nll_from_raw`) serve homoscedastic and heteroscedastic heads.
    """
    keras = tf_modules().keras
    tf = tf_modules().tf

    class AppendNoise(keras.layers.Layer):
        def build(self, input_shape: Any) -> None:
            self.rho = self.add_weight(
                name="noise_rho",
                shape=(n_out,),
                initializer=keras.initializers.Constant(softplus_inverse(NOISE_INIT_SCALE)),
                trainable=True,
            )
            super().build(input_shape)

        def call(self, inputs: Any) -> Any:
            raw = tf.broadcast_to(self.rho, tf.shape(inputs))
            return tf.concat([inputs, raw], axis=-1)

    return AppendNoise(name="noise")


class TFPAdapter:
    """Base of the TFP adapters (not registered itself): hyperparameters, validation, the
    Keras training loop and chunked, compiled sampling.

    A method overrides ``_build(n_in, width, seeds)`` (the Keras model; ``width`` is the
    network's output width: C logits, D or 2D regression outputs), and
    ``_make_sampler()`` returning a ``tf.function`` ``(X [N, F], n [], seed [2]) -> [n, N,
    width]`` of ``n`` whole-function draws. Regression models end in a ``[B, 2D]`` (loc, raw
    scale) output, classification in ``[B, C]`` logits.

    Parameters
    ----------
    hidden : widths of the hidden layers.
    activation : ``"relu"``, ``"tanh"``, ``"gelu"`` or ``"silu"``.
    epochs : passes over the training data.
    batch_size : minibatch size (capped at the training-set size; the ragged last batch of
        an epoch is dropped, as in the torch twins).
    lr : Adam learning rate.
    weight_decay : coupled L2 penalty, as torch's Adam ``weight_decay``.
    heteroscedastic : regression only: predict the noise scale per input from a ``2 D``-wide
        head instead of learning one homoscedastic scale per output.
    """

    tasks: ClassVar[frozenset[str]] = frozenset({"regression", "classification"})
    stochastic: ClassVar[bool] = True
    requires: ClassVar[tuple[str, ...]] = REQUIRES
    install_hint: ClassVar[str] = INSTALL_HINT
    _n_init_seeds: ClassVar[int] = 16

    @classmethod
    def warm_up(cls) -> None:
        """Import TensorFlow now, so no cell's fit time pays for it (the harness calls this)."""
        tf_modules()

    def __init__(
        self,
        *,
        hidden: tuple[int, ...] = (50,),
        activation: str = "relu",
        epochs: int = 100,
        batch_size: int = 64,
        lr: float = 1e-2,
        weight_decay: float = 0.0,
        heteroscedastic: bool = False,
    ) -> None:
        self.hidden = hidden
        self.activation = activation
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.heteroscedastic = heteroscedastic

    # -- hooks ---------------------------------------------------------------------------
    def _build(self, n_in: int, width: int, seeds: list[int]) -> Any:
        raise NotImplementedError

    def _make_sampler(self) -> Any:
        raise NotImplementedError

    def _callbacks(self) -> list[Any]:
        return []

    def _prepare_loss(self) -> None:
        """Set any loss state (e.g. a KL weight) for :meth:`_loss_terms`."""

    # -- validation ----------------------------------------------------------------------
    def _validate_params(self) -> None:
        self.hidden = check_training_params(self, ACTIVATIONS)
        if not isinstance(self.heteroscedastic, bool):
            raise ValueError(f"heteroscedastic must be a bool, got {self.heteroscedastic!r}")

    @staticmethod
    def _validate_X(X: Any, n_features: int | None = None) -> np.ndarray:
        return validate_X(X, n_features).astype(np.float32)

    def _validate_fit_data(self, X: Any, y: Any) -> tuple[np.ndarray, np.ndarray, Task]:
        X, y, task = validate_fit_data(self, X, y)
        return X.astype(np.float32), y, task

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise RuntimeError(f"{type(self).__name__} is not fitted; call fit() first")

    @staticmethod
    def _validate_n_samples(n_samples: Any) -> int:
        if not is_positive_int(n_samples):
            raise ValueError(f"n_samples must be a positive int, got {n_samples!r}")
        return int(n_samples)

    def _hetero(self) -> bool:
        return self.heteroscedastic and self.task_ == "regression"

    # -- fit -----------------------------------------------------------------------------
    def _data_loss(self) -> Any:
        return cross_entropy_from_logits if self.task_ == "classification" else gaussian_nll_from_raw

    def fit(self, X: np.ndarray, y: np.ndarray, *, seed: int, n_classes: int | None = None) -> TFPAdapter:
        """Train on ``X`` ``[N, F]`` and ``y`` (``[N, D]`` floats or ``[N]`` class indices).

        ``n_classes``: the dataset's number of classes (default: the labels' max + 1).
        """
        self._validate_params()
        validate_seed(seed)
        X, y, self.task_ = self._validate_fit_data(X, y)
        self.n_features_in_ = X.shape[1]
        if self.task_ == "classification":
            self.n_outputs_ = n_classes_for(y, n_classes)
            y = y.astype(np.int32)
            width = self.n_outputs_
        else:
            self.n_outputs_ = y.shape[1]
            y = y.astype(np.float32)
            width = 2 * self.n_outputs_ if self._hetero() else self.n_outputs_
        self.n_train_ = len(X)
        seeds = derived_seeds(seed, self._n_init_seeds + 1)
        with seeded(seed), quiet_tfp():
            self.model_ = self._build(self.n_features_in_, width, seeds[1:])
            if self.weight_decay > 0:
                self._add_weight_decay(self.model_)
            self._train(self.model_, self._data_loss(), self._dataset(X, y, seeds[0]))
        self._finish_fit()
        return self

    def _train(self, model: Any, loss: Any, dataset: Any) -> None:
        """``compile`` + ``fit`` (Keras adds ``model.losses`` to ``loss`` itself)."""
        optimizer = self._optimizer()
        # Creating Adam's slots up front spares fit a second trace of its train step.
        optimizer.build(model.trainable_variables)
        # The loss is plain TF ops: autograph need not (re)read its source from disk.
        loss = tf_modules().tf.autograph.experimental.do_not_convert(loss)
        model.compile(optimizer=optimizer, loss=loss)
        model.fit(dataset, epochs=int(self.epochs), verbose=0, callbacks=self._callbacks())

    def _finish_fit(self) -> None:
        """Count parameters and compile the sampler (one trace, on a 1-row input), so
        that ``fit`` pays for compiling and sampling times measure sampling."""
        tf = tf_modules().tf
        self.n_parameters_ = int(sum(int(np.prod(v.shape)) for v in self.model_.trainable_weights))
        self._sampler = self._make_sampler()
        self._sampler(
            tf.zeros([1, self.n_features_in_], tf.float32),
            tf.constant(1, tf.int32),
            tf.constant([0, 0], tf.int64),
        )

    def _optimizer(self) -> Any:
        # torch's Adam defaults; Keras adds epsilon before the bias correction of the
        # second moment (torch after), a difference only while that moment is ~0.
        return tf_modules().keras.optimizers.Adam(
            learning_rate=float(self.lr), beta_1=0.9, beta_2=0.999, epsilon=1e-8
        )

    def _dataset(self, X: np.ndarray, y: np.ndarray, seed: int) -> Any:
        tf = tf_modules().tf
        n = len(X)
        batch = min(int(self.batch_size), n)
        return (
            tf.data.Dataset.from_tensor_slices((X, y))
            .shuffle(n, seed=seed, reshuffle_each_iteration=True)
            .batch(batch, drop_remainder=True)
        )

    def _add_weight_decay(self, model: Any) -> None:
        tf = tf_modules().tf
        wd = float(self.weight_decay)
        model.add_loss(
            lambda: 0.5 * wd * tf.add_n([tf.reduce_sum(tf.square(v)) for v in model.trainable_weights])
        )

    # -- prediction ----------------------------------------------------------------------
    def _widest(self) -> int:
        return max((*self.hidden, 2 * self.n_outputs_, 1))

    def _floats_per_draw(self, n_points: int) -> int:
        """Floats of the largest tensor one draw needs (sizes the chunks over S)."""
        return n_points * self._widest()

    def _draw(self, X: np.ndarray, n_samples: int, seed: int) -> np.ndarray:
        """Raw network outputs ``[S, N, width]`` (float64) from the compiled sampler, chunked over S."""
        tf = tf_modules().tf
        Xt = tf.constant(X, dtype=tf.float32)
        chunk = max(1, CHUNK_FLOATS // max(1, self._floats_per_draw(len(X))))
        outs = []
        for i, start in enumerate(range(0, n_samples, chunk)):
            n = min(chunk, n_samples - start)
            stateless_seed = tf.constant([int(seed), i], dtype=tf.int64)
            outs.append(self._sampler(Xt, tf.constant(n, dtype=tf.int32), stateless_seed).numpy())
        return np.concatenate(outs, axis=0).astype(np.float64) if len(outs) > 1 else outs[0].astype(np.float64)

    def sample_predictive(
        self, X: np.ndarray, *, n_samples: int, seed: int
    ) -> RegressionSamples | ClassificationSamples:
        """Draw ``n_samples`` whole functions and evaluate them at ``X`` ``[N, F]``.

        Returns ``RegressionSamples`` (loc, scale ``[S, N, D]``) or ``ClassificationSamples``
        (probs ``[S, N, C]``), float64. One compiled TF call per chunk of draws.
        """
        self._check_fitted()
        n_samples = self._validate_n_samples(n_samples)
        validate_seed(seed)
        X = self._validate_X(X, self.n_features_in_)
        out = self._draw(X, n_samples, seed)
        if self.task_ == "classification":
            z = out - out.max(axis=-1, keepdims=True)
            p = np.exp(z)
            return ClassificationSamples(p / p.sum(axis=-1, keepdims=True))
        loc, raw = np.split(out, 2, axis=-1)
        return RegressionSamples(loc, np.logaddexp(0.0, raw) + MIN_SCALE)

    # -- the training loss, for tests -------------------------------------------------
    # No public ``training_loss``: the gradient-variance probe (uqbench.harness.probe)
    # differentiates torch tensors, so the TFP adapters do not take part in it.
    def _loss_terms(self, X: Any, y: Any, *, seed: int) -> tuple[float, np.ndarray]:
        """(training loss, network output ``[B, width]`` of the same forward) on one minibatch.

        The loss is ``model.compute_loss`` after a training-mode forward, exactly what
        Keras' ``train_step`` minimises: the compiled (data) loss plus ``model.losses``.
        ``seed`` seeds the forward's noise (weight samples, signs, masks, latent draws).
        """
        self._check_fitted()
        tf = tf_modules().tf
        X = self._validate_X(X, self.n_features_in_)
        if self.task_ == "reconstruction":
            y = X
        else:
            y = np.asarray(y).astype(np.int32 if self.task_ == "classification" else np.float32)
        self._prepare_loss()
        model = self.model_

        @tf.function(autograph=False)
        def step(xb: Any, yb: Any) -> Any:
            out = model(xb, training=True)
            return model.compute_loss(xb, yb, out), tf.convert_to_tensor(out)

        tf.random.set_seed(int(seed))
        loss, out = step(tf.constant(X), tf.constant(y))
        return float(loss.numpy()), out.numpy()
