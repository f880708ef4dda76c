"""The codebook stage's workload: FedMM's codebook process against `build_weighted_fed_avg` on the same RQ-VAE.

How FedAvg is given the RQ-VAE: as a hand-written `tff.learning.models.VariableModel` whose
`forward_pass` runs the very same Keras model (`build_rqvae`) and the very same loss (`rqvae_losses`,
global codebook learned as under the default `mean` rule). `from_keras_model` cannot express it: its
losses are per output `(y_true, y_pred)`, while the codebook and commitment terms tie several outputs
together (z, q_global, q_local), and the notes rule out `add_loss`. A `FunctionalModel` would need the
RQ-VAE rewritten as pure functions of its weights, i.e. a different model. With the VariableModel both
processes train the same model, loss, client optimizer (Adam, same rate) and local epochs (FedAvg gets
the dataset repeated `local_epochs` times, as FedMM's client loops over it); what differs is the
algorithm: FedAvg averages every weight and keeps no client state, FedMM averages only the global
codebook, keeps encoder/decoder/local codebook per market and re-seeds idle local codes.

RQ-VAE inputs are random rows of the real shape (CF dim + 2 type flags, one row per user and item of
each market): a round's cost depends on rows and sizes, not on the CF values.
"""

from __future__ import annotations

import collections

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_fedmm.bench.timing import Sample, measure
from tff_fedmm.data.markets import MarketSet
from tff_fedmm.federated.codebook_process import (
    CodebookStageConfig,
    build_codebook_process,
    initial_client_state,
    rqvae_dataset,
)
from tff_fedmm.federated.participation import run_present
from tff_fedmm.models.cf import rqvae_inputs
from tff_fedmm.models.rqvae import RQVAEConfig, build_rqvae, rqvae_losses


def random_rqvae_inputs(market_set: MarketSet, cf_dim: int, seed: int) -> dict[str, np.ndarray]:
    """Per market, `rqvae_inputs` of random CF tables with the market's user and item counts."""
    rng = np.random.default_rng([seed, 11])
    return {name: rqvae_inputs(rng.normal(size=(m.num_users, cf_dim)), rng.normal(size=(m.num_items, cf_dim)))
            for name, m in market_set.markets.items()}


class RQVAEModel(tff.learning.models.VariableModel):
    """The RQ-VAE and its loss as a TFF model, for `build_weighted_fed_avg` (see the module docstring)."""

    def __init__(self, config: RQVAEConfig, learn_global_codebook: bool = True):
        self._config = config
        self._learn_global = learn_global_codebook
        self._keras = build_rqvae(config)
        self._loss_sum = tf.Variable(0.0, trainable=False, name="loss_sum")
        self._examples = tf.Variable(0.0, trainable=False, name="num_examples")
        self._batches = tf.Variable(0.0, trainable=False, name="num_batches")
        self._input_spec = collections.OrderedDict(x=tf.TensorSpec([None, config.input_dim], tf.float32))

    @property
    def trainable_variables(self):
        return self._keras.trainable_variables

    @property
    def non_trainable_variables(self):
        return self._keras.non_trainable_variables

    @property
    def local_variables(self):
        return [self._loss_sum, self._examples, self._batches]

    @property
    def input_spec(self):
        return self._input_spec

    @tf.function
    def predict_on_batch(self, batch_input, training=True):
        return self._keras(batch_input, training=training)

    @tf.function
    def forward_pass(self, batch_input, training=True):
        x = batch_input["x"]
        outputs = self.predict_on_batch(x, training)
        loss = rqvae_losses(x, outputs, self._config.beta, self._learn_global)["loss"]
        n = tf.shape(x)[0]
        self._loss_sum.assign_add(loss * tf.cast(n, tf.float32))
        self._examples.assign_add(tf.cast(n, tf.float32))
        self._batches.assign_add(1.0)
        return tff.learning.models.BatchOutput(loss=loss, predictions=outputs[0], num_examples=n)

    @tf.function
    def report_local_unfinalized_metrics(self):
        # The same three metrics `from_keras_model` reports (loss as total/count, examples, batches).
        return collections.OrderedDict(loss=[self._loss_sum.read_value(), self._examples.read_value()],
                                       num_examples=[self._examples.read_value()],
                                       num_batches=[self._batches.read_value()])

    def metric_finalizers(self):
        return collections.OrderedDict(
            loss=tf.function(lambda v: tf.math.divide_no_nan(v[0], v[1])),
            num_examples=tf.function(lambda v: v[0]),
            num_batches=tf.function(lambda v: v[0]))

    @tf.function
    def reset_metrics(self):
        for v in self.local_variables:
            v.assign(tf.zeros_like(v))


class CodebookWorkload:
    """Both codebook-stage processes on the same markets and per-round data, as `codes_stage.run_codebook`."""

    def __init__(self, market_set: MarketSet, config: CodebookStageConfig, cf_dim: int, seed: int):
        self.config = config
        self.names = market_set.names
        self.inputs = random_rqvae_inputs(market_set, cf_dim, seed)

    def datasets(self, round_num: int, epochs: int = 1) -> list[tf.data.Dataset]:
        """Round `round_num`'s datasets with `run_codebook`'s seeds, repeated `epochs` times."""
        seed = self.config.rqvae.seed
        return [rqvae_dataset(self.inputs[n], seed=seed + 1000 * round_num + i).repeat(epochs)
                for i, n in enumerate(self.names)]


class FedMMCodebook:
    """FedMM's codebook process with its server and market states."""

    def __init__(self, workload: CodebookWorkload):
        self.workload = workload
        self.process = build_codebook_process(workload.config)
        self.server = self.process.initialize()
        self.clients = [initial_client_state(workload.config, i, self.server.global_model_weights,
                                             workload.inputs[n]) for i, n in enumerate(workload.names)]

    def __call__(self, round_num: int) -> Sample:
        data = self.workload.datasets(round_num)
        with measure() as sample:  # states put back by client_index, as the pipeline does
            self.server, self.clients, _ = run_present(self.process.next, self.server, self.clients,
                                                       data.__getitem__, list(range(len(data))))
        return sample


class FedAvgCodebook:
    """`build_weighted_fed_avg` on `RQVAEModel`: same model, loss, optimizer, epochs and examples."""

    def __init__(self, workload: CodebookWorkload):
        self.workload = workload
        cfg = workload.config
        self.process = tff.learning.algorithms.build_weighted_fed_avg(
            lambda: RQVAEModel(cfg.rqvae, learn_global_codebook=cfg.rule == "mean"),
            client_optimizer_fn=tff.learning.optimizers.build_adam(cfg.learning_rate),
            server_optimizer_fn=tff.learning.optimizers.build_sgdm(1.0))
        self.state = self.process.initialize()

    def __call__(self, round_num: int) -> Sample:
        data = self.workload.datasets(round_num, epochs=self.workload.config.local_epochs)
        with measure() as sample:
            output = self.process.next(self.state, data)
        self.state = output.state
        return sample
