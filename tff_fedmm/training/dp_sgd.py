"""DP-SGD for interaction-level DP (`--dp-unit interaction`): one record's influence on a step, bounded.

A record is one train interaction of a market together with the negatives drawn for it
(`data.dp_records`). Each step takes a Poisson sample of a market's records (each independently with
probability q = batch_size / records), computes every sampled record's gradient of its summed loss with
respect to EVERY trained variable (private ID embeddings included: they shape every later shared update),
clips it to L2 norm `clip`, sums, adds Gaussian noise of standard deviation noise_multiplier x clip and
divides by the expected batch size (a fixed denominator, so the sum's sensitivity stays `clip`). This is
the sampled Gaussian mechanism of Abadi et al. (2016); its `DpEvent` per step is
`PoissonSampledDpEvent(q, GaussianDpEvent(noise_multiplier))`, composed over steps by
`federated.accounting` (RDP).

Per-record gradients: `RecordGradients` (embedding tables from their lookups, the rest by a Jacobian).
tensorflow_privacy's fast gradient clipping does the same for registered layers, but its registry has no
entry for this project's `CrossNet` / `FMInteraction`; `tf.vectorized_map` of a per-record tape falls back
to a while-loop on every embedding lookup (`ResourceGather` has no pfor converter).

The update is meant for plain SGD (momentum allowed), not Adam: Adam divides each coordinate by its own
running gradient scale, so the noise on an embedding row that no record touched becomes a full-size step
and every row random-walks; with SGD a row's noise per step is lr x noise_multiplier x clip / batch.

The noise and the sampling draw from a seed carried in each batch (`noise_seed`), drawn from the stage's
DP seed (`privacy.noise_seed`; in a federated stage `pipelines.dp_sgd_clients`): secret by default. Both must be secret: amplification by sampling
assumes nobody knows which records a step used.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import tensorflow as tf


@dataclass(frozen=True)
class DpSgdConfig:
    """One DP-SGD stage: noise multiplier, per-record clip, expected records per step, SGD settings."""

    noise_multiplier: float
    clip: float
    batch_size: int = 256
    learning_rate: float = 0.5
    momentum: float = 0.9

    def sampling_rate(self, records: int) -> float:
        """q of a market with `records` records (1 when the market has fewer records than a batch)."""
        return min(1.0, self.batch_size / max(records, 1))

    def steps_per_epoch(self, records: int) -> int:
        """Steps that use each record once in expectation."""
        return max(1, -(-records // self.batch_size))


def step_event(sampling_rate: float, noise_multiplier: float):
    """The `DpEvent` of one DP-SGD step on a market whose records are sampled with `sampling_rate`."""
    import dp_accounting

    gaussian = dp_accounting.GaussianDpEvent(noise_multiplier)
    return gaussian if sampling_rate >= 1.0 else dp_accounting.PoissonSampledDpEvent(sampling_rate, gaussian)


class RecordGradients:
    """Per-record gradients of a Keras model's binary cross-entropy, clipped and summed.

    The forward pass runs batched over every example of every record (a record's interaction and its
    negatives). An embedding table's per-record gradient has one row per lookup, so it is read off the
    gradient of the summed loss with respect to the embedding layers' outputs (each example's output
    feeds only its own loss: these models have no batch-coupled layer); its norm is exact even when a
    record looks a row up twice (a user's row in every example of its record). The other variables'
    per-record gradients are the Jacobian of the per-record losses (TF's pfor over the backward pass).
    Dense per-record Jacobians of the tables would cost batch x vocabulary x dim.
    """

    def __init__(self, model: tf.keras.Model, variables: Sequence[tf.Variable]):
        layers = [layer for layer in model.layers
                  if isinstance(layer, tf.keras.layers.Embedding) and layer.trainable]
        for layer in layers:
            if len(layer.inbound_nodes) != 1:
                raise ValueError(f"embedding layer {layer.name} is called {len(layer.inbound_nodes)} times; "
                                 "per-record clipping reads each table's lookups from its one call")
        table_of = {id(layer.embeddings): i for i, layer in enumerate(layers)}
        self._tables = [table_of.get(id(v)) for v in variables]
        self._variables = list(variables)
        self._dense = [v for v, t in zip(variables, self._tables) if t is None]
        self._model = tf.keras.Model(model.inputs, [model.output, [layer.input for layer in layers],
                                                    [layer.output for layer in layers]])

    def clipped_sum(self, records: dict, clip: float) -> tuple[list[tf.Tensor], tf.Tensor]:
        """(sum over `records` of their gradients clipped to L2 norm `clip`, the norm taken over every
        variable together; sum of their losses). `records`: `OrderedDict(x=..., y=...)`, each field
        [records, 1 + negatives]."""
        count, width = tf.shape(records["y"])[0], tf.shape(records["y"])[1]
        flat = {key: tf.reshape(value, [-1]) for key, value in records["x"].items()}
        with tf.GradientTape(persistent=True) as tape:
            probs, ids, outputs = self._model(flat, training=True)
            losses = _bce(records["y"], tf.reshape(probs, [count, width]))
            total = tf.reduce_sum(losses)
        lookups = tape.gradient(total, outputs)  # [examples, ..., dim] per table: each example's own
        dense = tape.jacobian(losses, self._dense, unconnected_gradients=tf.UnconnectedGradients.ZERO) \
            if self._dense else []
        del tape
        ids = [tf.reshape(i, [count, -1]) for i in ids]  # per record: the rows its examples looked up
        lookups = [tf.reshape(g, [count, tf.shape(i)[1], -1]) for g, i in zip(lookups, ids)]
        squares = [_table_norms(i, g) for i, g in zip(ids, lookups)]
        squares += [tf.reduce_sum(tf.reshape(tf.square(j), [count, -1]), axis=1) for j in dense]
        scale = tf.minimum(1.0, clip / (tf.sqrt(tf.add_n(squares)) + 1e-12))
        summed, dense_sums = [], iter([tf.tensordot(scale, j, axes=1) for j in dense])
        for v, t in zip(self._variables, self._tables):
            if t is None:
                summed.append(next(dense_sums))
            else:
                rows = scale[:, tf.newaxis, tf.newaxis] * lookups[t]
                summed.append(tf.math.unsorted_segment_sum(tf.reshape(rows, [-1, tf.shape(v)[1]]),
                                                           tf.reshape(ids[t], [-1]), tf.shape(v)[0]))
        return summed, total

    def noised(self, batch: dict, config: DpSgdConfig) -> tuple[list[tf.Tensor], tf.Tensor, tf.Tensor]:
        """(DP-SGD gradient estimate, loss sum, records sampled) of one Poisson batch
        (`data.pipelines.record_dataset` element: `records`, `noise_seed`)."""
        summed, loss_sum = self.clipped_sum(batch["records"], config.clip)
        seed = tf.cast(batch["noise_seed"], tf.int64)
        std = config.noise_multiplier * config.clip
        noised = [(g + std * tf.random.stateless_normal(tf.shape(g), tf.random.experimental.stateless_fold_in(seed, j)))
                  / float(config.batch_size) for j, g in enumerate(summed)]
        return noised, loss_sum, tf.cast(tf.shape(batch["records"]["y"])[0], tf.float32)


def _bce(labels: tf.Tensor, probs: tf.Tensor) -> tf.Tensor:
    """Per-record summed binary cross-entropy ([records, examples] -> [records]), as Keras clips it."""
    eps = tf.keras.backend.epsilon()
    probs = tf.clip_by_value(probs, eps, 1.0 - eps)
    return -tf.reduce_sum(labels * tf.math.log(probs) + (1.0 - labels) * tf.math.log(1.0 - probs), axis=1)


def _table_norms(ids: tf.Tensor, lookups: tf.Tensor) -> tf.Tensor:
    """Squared norm of each record's gradient of one table: lookups of the same row add up first."""
    same = tf.cast(tf.equal(ids[:, :, tf.newaxis], ids[:, tf.newaxis, :]), tf.float32)
    return tf.reduce_sum(same * tf.matmul(lookups, lookups, transpose_b=True), axis=[1, 2])
