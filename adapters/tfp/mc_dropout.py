"""``tfp-mc-dropout``: Monte Carlo dropout in ``tf_keras``, aligned with the torch ``mc-dropout``.

Model: ``Dense -> activation -> Dropout(p)`` per hidden layer, then a linear output layer
(regression adds one learned homoscedastic noise scale per output, ``softplus(rho) + 1e-6``
starting at 0.5, or a ``2 D`` heteroscedastic head); dense kernels and biases start at
``U(-1/sqrt(fan_in), 1/sqrt(fan_in))``, ``torch.nn.Linear``'s default (Keras' own is Glorot
kernels and zero biases). Training is ordinary Keras dropout training (a fresh inverted-
dropout mask per example and step) with the mean NLL, through ``model.fit``, with the torch
twin's optimiser and schedule (see ``_common``).

Prediction follows the torch twin's convention: draw ``s`` is one function, with one
dropout mask per hidden layer ``[S, 1, H]`` shared by all N inputs and scaled by
``1 / (1 - p)``. Keras' ``Dropout(training=True)`` would draw a mask per example, mixing
functions across inputs, so the adapter runs its own forward over the trained dense
weights in one ``tf.function`` per chunk of draws: the first layer (mask-free) once
``[N, H]``, every later layer as one batched matmul over ``[S, N, H]``; masks come from
stateless TF ops seeded from the sampling seed.
"""

from __future__ import annotations

import itertools
from typing import Any

from uqbench_adapters._validation import is_real
from uqbench_adapters.tfp._common import (
    TFPAdapter,
    activation_fn,
    noise_head_layer,
    tf_modules,
    torch_linear_init,
)


class TFPMCDropoutAdapter(TFPAdapter):
    """TFP/Keras MC dropout MLP, one shared mask per draw; aligned with the torch ``mc-dropout``.

    Parameters
    ----------
    hidden, activation, epochs, batch_size, lr, weight_decay, heteroscedastic : see
        ``TFPAdapter`` in ``_common``.
    dropout : drop probability p of each hidden unit, in (0, 1).
    """

    def __init__(
        self,
        *,
        hidden: tuple[int, ...] = (50,),
        activation: str = "relu",
        epochs: int = 100,
        batch_size: int = 64,
        lr: float = 1e-2,
        weight_decay: float = 0.0,
        dropout: float = 0.1,
        heteroscedastic: bool = False,
    ) -> None:
        super().__init__(
            hidden=hidden,
            activation=activation,
            epochs=epochs,
            batch_size=batch_size,
            lr=lr,
            weight_decay=weight_decay,
            heteroscedastic=heteroscedastic,
        )
        self.dropout = dropout

    def _validate_params(self) -> None:
        super()._validate_params()
        p = self.dropout
        if not is_real(p) or not 0.0 < float(p) < 1.0:
            raise ValueError(f"dropout must be a probability in (0, 1), got {p!r}")
        if not self.hidden:
            raise ValueError("hidden must name at least one layer to apply dropout to, got ()")

    def _build(self, n_in: int, width: int, seeds: list[int]) -> Any:
        keras = tf_modules().keras
        widths = (n_in, *self.hidden, width)
        layers: list[Any] = [keras.Input(shape=(n_in,))]
        for k, (a, b) in enumerate(itertools.pairwise(widths)):
            last = k == len(widths) - 2
            layers.append(
                keras.layers.Dense(
                    b,
                    activation=None if last else activation_fn(self.activation),
                    kernel_initializer=torch_linear_init(a, seeds[2 * k]),
                    bias_initializer=torch_linear_init(a, seeds[2 * k + 1]),
                    name=f"dense_{k}",
                )
            )
            if not last:
                # Unseeded: its stream follows TF's global seed, set from the fit seed.
                layers.append(keras.layers.Dropout(float(self.dropout), name=f"dropout_{k}"))
        if self.task_ == "regression" and not self._hetero():
            layers.append(noise_head_layer(width))
        return keras.Sequential(layers)

    def _make_sampler(self) -> Any:
        """The compiled ``(X [N, F], n, seed [2]) -> [n, N, width]`` with one mask per draw and layer."""
        tf = tf_modules().tf
        dense = [self.model_.get_layer(f"dense_{k}") for k in range(len(self.hidden) + 1)]
        noise = self.model_.get_layer("noise") if self.task_ == "regression" and not self._hetero() else None
        act = activation_fn(self.activation)
        keep = 1.0 - float(self.dropout)
        n_features = self.n_features_in_

        @tf.function(
            input_signature=[
                tf.TensorSpec([None, n_features], tf.float32),
                tf.TensorSpec([], tf.int32),
                tf.TensorSpec([2], tf.int64),
            ],
            reduce_retracing=True,
            autograph=False,
        )
        def sample(X: Any, n: Any, seed: Any) -> Any:
            seeds = tf.random.experimental.stateless_split(seed, num=len(dense) - 1)
            h = act(tf.matmul(X, dense[0].kernel) + dense[0].bias)[None]  # [1, N, H]: mask-free
            for k, layer in enumerate(dense[1:]):
                u = tf.random.stateless_uniform([n, 1, layer.kernel.shape[0]], seed=seeds[k])
                mask = tf.cast(u < keep, tf.float32) / keep  # [n, 1, H]
                h = tf.matmul(h * mask, layer.kernel) + layer.bias
                if k < len(dense) - 2:
                    h = act(h)
            if noise is not None:
                h = tf.concat([h, tf.broadcast_to(noise.rho, tf.shape(h))], axis=-1)
            return h

        return sample
