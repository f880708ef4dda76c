"""`fedavg`: TFF's own FedAvg on the CTR model, every variable averaged (the naive approach FedMM argues against).

Each market's IDs index one common table (built at `MarketSet.largest_vocabulary`), so ID k of every market
shares a row. Selection, validation and test metrics are the CTR stage's (`pipelines.ctr_stage`): after each
round every market scores the one global model on its own validation split and keeps its own best round.
Under DP the average is TFF's `build_unweighted_fed_avg` with the stage's DP mean, and the metric sums
stay in the markets.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_fedmm.checkpoints import StageCheckpoint
from tff_fedmm.data.markets import MarketSet
from tff_fedmm.features import MarketFeatures
from tff_fedmm.pipelines.ctr_stage import (
    CTRStageConfig, Keep, Metrics, charge_rounds, federated_dataset, model_fn_for, neg_logloss, round_history,
    round_row, selected_test_metrics, valid_row,
)
from tff_fedmm.pipelines.privacy_audit import audit_fedavg
from tff_fedmm.pipelines.privacy_report import Ledger
from tff_fedmm.pipelines.rounds import Selection, run_rounds
from tff_fedmm.seeding import set_global_seed
from tff_fedmm.training.ctr import CTRTrainConfig


def tff_model_fn(model_fn, element_spec):
    """The TFF model FedAvg trains (and its audit reads the metrics of): `model_fn`'s with the CTR loss."""
    return lambda: tff.learning.models.from_keras_model(model_fn(), loss=tf.keras.losses.BinaryCrossentropy(),
                                                        input_spec=element_spec)


def build_fedavg_process(model_fn, element_spec, train: CTRTrainConfig, dp_mean=None):
    """TFF's `build_weighted_fed_avg` on `model_fn`'s Keras model: client Adam at the stage's rate, server
    SGD at 1.0 (the plain FedAvg step), initial weights from the training seed. With `dp_mean` (a DP
    factory, unweighted), TFF's `build_unweighted_fed_avg` with it, the metrics kept in the markets."""
    set_global_seed(train.seed, "ctr-fedavg")
    optimizers = dict(client_optimizer_fn=tff.learning.optimizers.build_adam(train.learning_rate),
                      server_optimizer_fn=tff.learning.optimizers.build_sgdm(1.0))
    if dp_mean is None:
        return tff.learning.algorithms.build_weighted_fed_avg(tff_model_fn(model_fn, element_spec), **optimizers)
    return tff.learning.algorithms.build_unweighted_fed_avg(tff_model_fn(model_fn, element_spec), **optimizers,
                                                            model_aggregator=dp_mean,
                                                            metrics_aggregator=_metrics_stay_in_markets)


def _metrics_stay_in_markets(metric_finalizers, local_unfinalized_metrics_type=None):
    """A TFF metrics aggregator that aggregates nothing: under DP the metric sums never leave a market, and
    the server's train loss is NaN (not known)."""
    return lambda metrics: tff.federated_value(collections.OrderedDict(loss=np.float32(np.nan)), tff.SERVER)


@dataclass(frozen=True)
class _FedAvgRounds:
    """A built FedAvg CTR run: one round of it, and the Keras model a server state holds."""

    market_set: MarketSet
    config: CTRStageConfig
    featurizers: dict[str, MarketFeatures]
    process: tff.learning.templates.LearningProcess
    model_fn: Callable[[], tf.keras.Model]
    keras_model: tf.keras.Model  # one model the round's validation re-assigns

    def round(self, server, round_num: int):
        """One FedAvg round among the markets present, then every market's validation of the global model."""
        names, config = self.market_set.names, self.config
        present = config.participation.present("ctr", round_num, len(names))
        loss = np.nan
        if present:
            output = self.process.next(server, [federated_dataset(self.market_set, self.featurizers, config,
                                                                  round_num, i) for i in present])
            server, loss = output.state, output.metrics["client_work"]["train"]["loss"]
        self.process.get_model_weights(server).assign_weights_to(self.keras_model)
        valid = valid_row({n: self.keras_model for n in names}, self.market_set, self.featurizers,
                          config.train.data_seed)
        return server, round_row(valid, loss)

    def model_at(self, server) -> tf.keras.Model:
        model = self.model_fn()
        self.process.get_model_weights(server).assign_weights_to(model)
        return model


def _build_fedavg(market_set: MarketSet, backbone: str, config: CTRStageConfig, checkpoint: StageCheckpoint | None,
                  ledger: Ledger | None) -> _FedAvgRounds:
    users, items = market_set.largest_vocabulary
    model_fn = model_fn_for(backbone, users, items, (0, 0), config)
    featurizers = {name: MarketFeatures() for name in market_set.names}
    spec = federated_dataset(market_set, featurizers, config, 0, 0).element_spec
    process = build_fedavg_process(model_fn, spec, config.train, config.dp_mean(len(market_set.names), ledger))
    audit_fedavg(process, model_fn, tff_model_fn(model_fn, spec), checkpoint)
    return _FedAvgRounds(market_set, config, featurizers, process, model_fn, model_fn())


def train_fedavg(market_set: MarketSet, backbone: str, config: CTRStageConfig, checkpoint: StageCheckpoint | None = None,
                 keep: Keep | None = None, ledger: Ledger | None = None) -> tuple[Metrics, list[dict]]:
    if config.privacy.dp_sgd:
        raise ValueError("FedAvg has no DP-SGD (TFF's client work has no per-example clipping)")
    rounds = _build_fedavg(market_set, backbone, config, checkpoint, ledger)
    names = market_set.names
    # Every market keeps the global model of its own best round.
    selection = Selection(neg_logloss, lambda server, _: server, len(names), config.patience())
    result = run_rounds(rounds.process.initialize(), rounds.round, config.rounds, 2 * len(names) + 1,
                        selection=selection, checkpoint=checkpoint)
    charge_rounds(ledger, config, result, names, result.state.aggregator)
    models = {name: rounds.model_at(result.best_state[i]) for i, name in enumerate(names)}
    return (selected_test_metrics(models, market_set, rounds.featurizers, config.train.data_seed, keep),
            round_history(result, names))
