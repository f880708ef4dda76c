"""Interaction layers for the CTR backbones that Keras 2 does not ship.

Both create their weights with `add_weight` directly (no nested sublayers), so every variable name is
`<layer name>/<weight name>:0` and the `shared_`/`private_` rule of `tff_fedmm.naming` sees the layer
name as the first path component. Both are registered Keras serializables, so `Model.from_config`
and saved models find them without `custom_objects`. Neither calls `add_loss`: TFF's Keras wrapper
cannot carry `model.losses` through its computations.
"""

from __future__ import annotations

from typing import Any

import tensorflow as tf


@tf.keras.saving.register_keras_serializable(package="tff_fedmm")
class FMInteraction(tf.keras.layers.Layer):
    """Factorization-machine second-order term over a list of field embeddings, each (batch, dim).

    Uses the O(fields * dim) identity sum_{i<j} <v_i, v_j> = 0.5 * sum_d((sum_i v_id)^2 - sum_i v_id^2)
    instead of enumerating field pairs. Takes a list rather than a stacked tensor so the model needs no
    Lambda/Reshape glue (Lambda layers do not round-trip through `get_config`). No weights.
    """

    def call(self, inputs: list[tf.Tensor]) -> tf.Tensor:
        fields = tf.stack(inputs, axis=1)  # (batch, fields, dim)
        square_of_sum = tf.square(tf.reduce_sum(fields, axis=1))
        sum_of_squares = tf.reduce_sum(tf.square(fields), axis=1)
        return 0.5 * tf.reduce_sum(square_of_sum - sum_of_squares, axis=1, keepdims=True)

    def compute_output_shape(self, input_shape: list[tf.TensorShape]) -> tf.TensorShape:
        return tf.TensorShape([input_shape[0][0], 1])


@tf.keras.saving.register_keras_serializable(package="tff_fedmm")
class CrossNet(tf.keras.layers.Layer):
    """DCN-v2 full-rank cross network: x_{l+1} = x0 * (W_l x_l + b_l) + x_l, for `num_layers` layers.

    Full rank (not the paper's low-rank mixture) because the input here is a handful of fields
    (a few dozen to ~100 units): W_l is small, and a low-rank factorisation would only save
    parameters that are not a bottleneck. Kernels start near zero-mean Glorot and biases at zero, so
    the residual term makes each layer start close to the identity.
    """

    def __init__(self, num_layers: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if num_layers < 1:
            raise ValueError(f"CrossNet needs num_layers >= 1, got {num_layers}")
        self.num_layers = num_layers

    def build(self, input_shape: tf.TensorShape) -> None:
        width = int(input_shape[-1])
        self.kernels = [
            self.add_weight(name=f"kernel_{i}", shape=(width, width), initializer="glorot_uniform")
            for i in range(self.num_layers)
        ]
        self.biases = [
            self.add_weight(name=f"bias_{i}", shape=(width,), initializer="zeros") for i in range(self.num_layers)
        ]
        super().build(input_shape)

    def call(self, x0: tf.Tensor) -> tf.Tensor:
        x = x0
        for kernel, bias in zip(self.kernels, self.biases):
            x = x0 * (tf.matmul(x, kernel) + bias) + x
        return x

    def compute_output_shape(self, input_shape: tf.TensorShape) -> tf.TensorShape:
        return tf.TensorShape(input_shape)

    def get_config(self) -> dict[str, Any]:
        return {**super().get_config(), "num_layers": self.num_layers}
