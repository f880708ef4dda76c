"""Partial federated averaging: `shared_*` layers are averaged, `private_*` layers never leave a market.

This is FedAvg's client work (`model_delta_client_work`: train, send the weight delta weighted by the
number of examples) restricted to the shared layers, with TFF's own pieces doing the rest: the
broadcast distributor, `tff.aggregators.MeanFactory` and `build_apply_optimizer_finalizer`. The
private layers and the client optimizer's state persist per market as CLIENTS-placed state. It serves
the federated CTR models (FedMM's and `fedper`) and the CF stage's shared interaction tower.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_fedmm.federated.composer import build_finalize_metrics, compose_stateful_process
from tff_fedmm.naming import PRIVATE_PREFIX, SHARED_PREFIX, check_named, layer_weights
from tff_fedmm.training import dp_sgd
from tff_fedmm.training.optimizer_step import apply_step

ModelFn = Callable[[], tf.keras.Model]


@dataclass(frozen=True)
class PartialFedAvgConfig:
    local_epochs: int = 1
    client_learning_rate: float = 1e-3
    server_learning_rate: float = 1.0
    # DP-SGD on every trained variable (`--dp-unit interaction`): batches are `data.pipelines.record_dataset`'s
    # and the client optimizer is SGD with momentum at `dp_sgd.learning_rate` (see `training.dp_sgd`).
    dp_sgd: dp_sgd.DpSgdConfig | None = None


def shared_weights(model: tf.keras.Model) -> list[tf.Variable]:
    return layer_weights(model, SHARED_PREFIX)


def private_weights(model: tf.keras.Model) -> list[tf.Variable]:
    """Private trainable weights, then private non-trainable ones (e.g. normalisation statistics)."""
    return layer_weights(model, PRIVATE_PREFIX) + layer_weights(model, PRIVATE_PREFIX, trainable=False)


def _trainable(model: tf.keras.Model) -> list[tf.Variable]:
    return shared_weights(model) + layer_weights(model, PRIVATE_PREFIX)


def bce_loss(labels: tf.Tensor, probs: tf.Tensor) -> tf.Tensor:
    return tf.reduce_mean(tf.keras.losses.binary_crossentropy(labels[:, tf.newaxis], probs))


def _optimizer(config: PartialFedAvgConfig):
    if config.dp_sgd is not None:
        return tff.learning.optimizers.build_sgdm(config.dp_sgd.learning_rate, momentum=config.dp_sgd.momentum)
    return tff.learning.optimizers.build_adam(config.client_learning_rate)


def _gradient_fn(model: tf.keras.Model, trainable: list[tf.Variable], config: PartialFedAvgConfig):
    """batch -> (gradients, loss sum, examples): the batch-mean BCE's gradients, or DP-SGD's estimate."""
    if config.dp_sgd is not None:
        records = dp_sgd.RecordGradients(model, trainable)
        return lambda batch: records.noised(batch, config.dp_sgd)

    def gradients(batch):
        with tf.GradientTape() as tape:
            loss = bce_loss(batch["y"], model(batch["x"], training=True))
        # Dense gradients: TFF's functional optimizers do arithmetic that IndexedSlices lack.
        grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, trainable)]
        b = tf.cast(tf.shape(batch["y"])[0], tf.float32)
        return grads, loss * b, b

    return gradients


def _client_state(model: tf.keras.Model, optimizer) -> collections.OrderedDict:
    specs = tuple(tf.TensorSpec(v.shape, v.dtype) for v in _trainable(model))
    return collections.OrderedDict(
        client_index=tf.constant(0, tf.int32),
        private=tuple(tf.identity(v) for v in private_weights(model)),
        optimizer_state=optimizer.initialize(specs),
    )


def _build_client_update(model_fn: ModelFn, config: PartialFedAvgConfig, weights_type, state_type, data_type):
    @tff.tensorflow.computation(weights_type, state_type, data_type)
    def client_update(weights, state, dataset):
        model = model_fn()
        optimizer = _optimizer(config)
        shared, privates, trainable = shared_weights(model), private_weights(model), _trainable(model)
        gradients = _gradient_fn(model, trainable, config)

        # A tf.function, as in TFF's own client work: its automatic control dependencies order the
        # variable reads after the training loop; a bare graph would return the initial values.
        @tf.function
        def train(weights, state, dataset):
            for v, w in zip(shared, weights.trainable):
                v.assign(w)
            for v, w in zip(privates, state["private"]):
                v.assign(w)

            def reduce_fn(carry, batch):
                opt_state, loss_sum, n = carry
                grads, batch_loss, b = gradients(batch)
                opt_state = apply_step(optimizer, opt_state, trainable, grads)
                return opt_state, loss_sum + batch_loss, n + b

            carry = (state["optimizer_state"], tf.constant(0.0), tf.constant(0.0))
            for _ in range(config.local_epochs):
                carry = dataset.reduce(carry, reduce_fn)
            opt_state, loss_sum, n = carry
            delta = tuple(tf.subtract(w, v) for w, v in zip(weights.trainable, shared))
            new_state = collections.OrderedDict(
                client_index=state["client_index"],
                private=tuple(tf.identity(v) for v in privates),
                optimizer_state=opt_state,
            )
            metrics = collections.OrderedDict(loss=loss_sum, num_examples=n)
            return new_state, delta, n / float(config.local_epochs), metrics

        return train(weights, state, dataset)

    return client_update


def build_partial_fedavg_process(
    model_fn: ModelFn,
    element_spec,
    config: PartialFedAvgConfig = PartialFedAvgConfig(),
    aggregator: tff.aggregators.WeightedAggregationFactory | tff.aggregators.UnweightedAggregationFactory
    | None = None,
    seed: int = 0,
    metrics_cross: bool = True,
) -> tff.templates.IterativeProcess:
    """`element_spec`: the (batched) element spec of a market's dataset, `<x=<...>, y=float32[?]>`.

    `aggregator`: the mean of the shared updates, example-weighted (`MeanFactory`) by default; an
    unweighted one (a DP mean, `privacy.dp_mean_factory`) ignores the weights. `metrics_cross=False`
    keeps the loss sums in the markets (`composer.compose_stateful_process`)."""

    @tff.tensorflow.computation
    def initial_shared():
        tf.keras.utils.set_random_seed(seed)  # the server draws the shared layers from one seed
        model = model_fn()
        check_named(model)
        return tff.learning.models.ModelWeights(trainable=tuple(shared_weights(model)), non_trainable=())

    @tff.tensorflow.computation
    def client_state_template():
        return _client_state(model_fn(), _optimizer(config))

    weights_type = initial_shared.type_signature.result
    state_type = client_state_template.type_signature.result
    data_type = tff.SequenceType(tff.types.tensorflow_to_type(element_spec))
    client_update = _build_client_update(model_fn, config, weights_type, state_type, data_type)
    aggregator = aggregator or tff.aggregators.MeanFactory()
    if isinstance(aggregator, tff.aggregators.UnweightedAggregationFactory):
        aggregator = tff.aggregators.as_weighted_aggregator(aggregator)
    return compose_stateful_process(
        initial_shared_fn=initial_shared,
        initial_client_state_type=state_type,
        data_type=data_type,
        distributor=tff.learning.templates.build_broadcast_process(weights_type),
        client_update=client_update,
        aggregator=aggregator.create(weights_type.trainable, tff.TensorType(np.float32)),
        finalizer=tff.learning.templates.build_apply_optimizer_finalizer(
            tff.learning.optimizers.build_sgdm(config.server_learning_rate), weights_type),
        finalize_metrics=build_finalize_metrics(client_update.type_signature.result[3]),
        metrics_cross=metrics_cross,
    )


def initial_client_state(model_fn: ModelFn, config: PartialFedAvgConfig, client_index: int,
                         seed: int) -> collections.OrderedDict:
    """A market's own starting private weights: drawn in the market, from a market-specific seed."""
    tf.keras.utils.set_random_seed(seed)
    state = _client_state(model_fn(), _optimizer(config))
    state["client_index"] = tf.constant(client_index, tf.int32)
    return tf.nest.map_structure(lambda t: tf.convert_to_tensor(t).numpy(), state)


def assign_market_weights(model: tf.keras.Model, shared, client_state) -> tf.keras.Model:
    """Writes the server's shared weights and a market's private ones into `model`; returns it."""
    for v, w in zip(shared_weights(model), shared.trainable):
        v.assign(w)
    for v, w in zip(private_weights(model), client_state["private"]):
        v.assign(w)
    return model


def market_model(model_fn: ModelFn, shared, client_state) -> tf.keras.Model:
    """The model a market evaluates with: the server's shared weights plus its own private ones."""
    return assign_market_weights(model_fn(), shared, client_state)


class MarketModels:
    """One Keras model per market, built once and re-assigned each round: `market_model` without rebuilding.

    Why: a round evaluates every market, and a fresh Keras model per market per round costs the build
    plus a new `predict` trace each time (about 0.4 of 1.4 CPU-s per `train_partial` round on the default
    synthetic markets, and ~1 MB of Python RSS per round; `fedmm bench`, BUILD_NOTES). Reuse
    gives the same numbers as a fresh model because the assignment overwrites every weight the model
    has: the shared trainable weights and all private ones (trainable and not), and `check_named`
    leaves no other layer with weights. That is checked once per model, at build.
    """

    def __init__(self, model_fn: ModelFn):
        self._model_fn = model_fn
        self._models: dict[object, tf.keras.Model] = {}

    def __call__(self, market, shared, client_state) -> tf.keras.Model:
        """`market`'s model holding `shared` and `client_state`'s weights (valid until its next call)."""
        model = self._models.get(market)
        if model is None:
            model = self._models[market] = self._model_fn()
            assigned = {id(v) for v in shared_weights(model) + private_weights(model)}
            unassigned = [v.name for v in model.weights if id(v) not in assigned]
            if unassigned:
                raise ValueError(f"market models cannot be reused: weights {unassigned} are neither shared "
                                 f"trainable nor private, so re-assignment would leave them stale")
        return assign_market_weights(model, shared, client_state)
