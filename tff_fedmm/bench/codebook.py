"""The codebook stage's workload: FedMM's codebook process against `build_weighted_fed_avg` on the same RQ-VAE.

FedAvg trains the very same Keras model and loss (`build_rqvae`, `rqvae_losses`) through TFF's
`from_keras_model`: its losses are per output, and the codebook and commitment terms tie several outputs
together (the TFF notes rule out `add_loss`), so the wrapped model outputs the loss itself, per row (TFF then
reports what FedMM's client does: loss, examples, batches), and the rows carry a placeholder label. Same client
Adam, rate and local epochs (the dataset repeated `local_epochs` times, as FedMM's client loops over it); what
differs is the algorithm: FedMM averages only the global codebook and keeps the rest per market. Inputs are
random rows of the real shape, one per user and item: a round's cost depends on rows and sizes, not CF values.
"""

from __future__ import annotations

import collections

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_fedmm.bench.measure import Runner, stateful_step
from tff_fedmm.data.markets import MarketSet
from tff_fedmm.models.cf import rqvae_inputs
from tff_fedmm.models.rqvae import RQVAEConfig, build_rqvae, rqvae_losses
from tff_fedmm.pipelines.codes_stage import CodesConfig, build_codebook
from tff_fedmm.pipelines.privacy_report import Ledger


class _Output(tf.keras.losses.Loss):
    def call(self, _, loss):
        return loss  # averaged over the batch by the default reduction


def _fedavg_model(config: RQVAEConfig, learn_global_codebook: bool):
    x = tf.keras.Input([config.input_dim])
    loss = tf.keras.layers.Lambda(lambda t: tf.fill(tf.shape(t[0])[:1], rqvae_losses(
        t[0], t[1:], config.beta, learn_global_codebook)["loss"]))([x, *build_rqvae(config)(x)])
    spec = collections.OrderedDict(x=tf.TensorSpec([None, config.input_dim]), y=tf.TensorSpec([None]))
    return tff.learning.models.from_keras_model(tf.keras.Model(x, loss), loss=_Output(), input_spec=spec)


def _with_label(row: dict) -> collections.OrderedDict:
    return collections.OrderedDict(x=row["x"], y=tf.zeros(tf.shape(row["x"])[:1]))


def codebook_runners(market_set: MarketSet, codes: CodesConfig, seed: int) -> tuple[Runner, Runner]:
    """(FedMM, FedAvg) on the same markets and per-round datasets: FedMM's process, market states and datasets
    as `codes_stage.run_codebook` builds them."""
    config, rng, dim = codes.codebook, np.random.default_rng([seed, 11]), codes.cf.dim
    inputs = {n: rqvae_inputs(rng.normal(size=(m.num_users, dim)), rng.normal(size=(m.num_items, dim)))
              for n, m in market_set.markets.items()}
    fedmm, state = build_codebook(codes, inputs, market_set.names, None, None, True, codes.privacy.aggregation(),
                                  codes.participation, Ledger("codebook"), None)

    def data(round_num: int, epochs: int = 1) -> list[tf.data.Dataset]:
        return [fedmm.dataset(i, round_num).repeat(epochs) for i in range(len(inputs))]

    fedavg = tff.learning.algorithms.build_weighted_fed_avg(  # global codebook trained as FedMM's rule trains it
        lambda: _fedavg_model(config.rqvae, learn_global_codebook=config.rule == "fedavg"),
        client_optimizer_fn=tff.learning.optimizers.build_adam(config.learning_rate),
        server_optimizer_fn=tff.learning.optimizers.build_sgdm(1.0))
    return (Runner(fedmm.process, state, data, stateful_step),
            Runner(fedavg, fedavg.initialize(), lambda r: [ds.map(_with_label) for ds in data(r, config.local_epochs)]))
