"""The codebook stage's workload: FedMM's codebook process against `build_weighted_fed_avg` on the same RQ-VAE.

FedAvg trains the very same Keras model and loss (`build_rqvae`, `rqvae_losses`) as a hand-written
`VariableModel`: `from_keras_model` takes per-output losses, and the codebook and commitment terms tie
several outputs together (the TFF notes rule out `add_loss`). Same client Adam, rate and local epochs (the
dataset repeated `local_epochs` times, as FedMM's client loops over it); what differs is the algorithm:
FedMM averages only the global codebook and keeps the rest per market. Inputs are random rows of the real
shape, one per user and item: a round's cost depends on rows and sizes, not on CF values.
"""

from __future__ import annotations

import collections

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_fedmm.bench.timing import Runner, stateful_step
from tff_fedmm.data.markets import MarketSet
from tff_fedmm.federated.codebook_process import (
    CodebookStageConfig, build_codebook_process, initial_client_state, rqvae_dataset,
)
from tff_fedmm.models.cf import rqvae_inputs
from tff_fedmm.models.rqvae import RQVAEConfig, build_rqvae, rqvae_losses


class RQVAEModel(tff.learning.models.VariableModel):
    """The RQ-VAE and its loss, reporting the metrics `from_keras_model` would (loss, examples, batches)."""

    def __init__(self, config: RQVAEConfig, learn_global_codebook: bool):
        self._config, self._learn_global = config, learn_global_codebook
        self._keras = build_rqvae(config)
        self._sums = [tf.Variable(0.0, trainable=False, name=n) for n in ("loss_sum", "num_examples", "num_batches")]

    trainable_variables = property(lambda self: self._keras.trainable_variables)
    non_trainable_variables = property(lambda self: self._keras.non_trainable_variables)
    local_variables = property(lambda self: self._sums)
    input_spec = property(lambda self: collections.OrderedDict(
        x=tf.TensorSpec([None, self._config.input_dim], tf.float32)))

    @tf.function
    def predict_on_batch(self, batch_input, training=True):
        return self._keras(batch_input, training=training)

    @tf.function
    def forward_pass(self, batch_input, training=True):
        x = batch_input["x"]
        outputs = self.predict_on_batch(x, training)
        loss = rqvae_losses(x, outputs, self._config.beta, self._learn_global)["loss"]
        n = tf.shape(x)[0]
        for total, value in zip(self._sums, (loss * tf.cast(n, tf.float32), tf.cast(n, tf.float32), 1.0)):
            total.assign_add(value)
        return tff.learning.models.BatchOutput(loss=loss, predictions=outputs[0], num_examples=n)

    @tf.function
    def report_local_unfinalized_metrics(self):
        loss, examples, batches = (v.read_value() for v in self._sums)
        return collections.OrderedDict(loss=[loss, examples], num_examples=[examples], num_batches=[batches])

    def metric_finalizers(self):
        return collections.OrderedDict(loss=tf.function(lambda v: tf.math.divide_no_nan(v[0], v[1])),
                                       num_examples=tf.function(lambda v: v[0]),
                                       num_batches=tf.function(lambda v: v[0]))

    @tf.function
    def reset_metrics(self):
        for v in self._sums:
            v.assign(0.0)


def codebook_runners(market_set: MarketSet, config: CodebookStageConfig, cf_dim: int,
                     seed: int) -> tuple[Runner, Runner]:
    """(FedMM, FedAvg) on the same markets and per-round datasets (`codes_stage.run_codebook`'s seeds)."""
    rng = np.random.default_rng([seed, 11])
    inputs = {n: rqvae_inputs(rng.normal(size=(m.num_users, cf_dim)), rng.normal(size=(m.num_items, cf_dim)))
              for n, m in market_set.markets.items()}

    def data(round_num: int, epochs: int = 1) -> list[tf.data.Dataset]:
        return [rqvae_dataset(x, seed=config.rqvae.seed + 1000 * round_num + i).repeat(epochs)
                for i, x in enumerate(inputs.values())]

    fedmm = build_codebook_process(config)
    server = fedmm.initialize()
    clients = [initial_client_state(config, i, server.global_model_weights, x) for i, x in enumerate(inputs.values())]
    fedavg = tff.learning.algorithms.build_weighted_fed_avg(  # global codebook trained as FedMM's rule trains it
        lambda: RQVAEModel(config.rqvae, learn_global_codebook=config.rule == "fedavg"),
        client_optimizer_fn=tff.learning.optimizers.build_adam(config.learning_rate),
        server_optimizer_fn=tff.learning.optimizers.build_sgdm(1.0))
    return (Runner(fedmm, (server, clients), data, stateful_step),
            Runner(fedavg, fedavg.initialize(), lambda r: data(r, config.local_epochs)))
