"""`centralized` and `centralized-anchored`: one Keras model on every market's pooled raw data.

Not private (the raw data is pooled), so it is the reference of what sharing could buy, not a deployable
method. Users and items are offset per market so no ID row is shared; code fields, when given, index
tables common to all markets (`centralized-anchored`: one row per anchor). Every market keeps the pooled
model's epoch with its own lowest validation LogLoss, as every other method does.
"""

from __future__ import annotations

import collections
from dataclasses import replace

import numpy as np
import tensorflow as tf

from tff_fedmm.data.markets import MarketSet
from tff_fedmm.data.pipelines import to_dataset
from tff_fedmm.data.sampling import ctr_examples
from tff_fedmm.features import MarketFeatures
from tff_fedmm.pipelines.ctr_stage import (
    CodeUse, CTRStageConfig, Keep, Metrics, market_test_metrics, model_fn_for, neg_logloss, round_history, round_row,
    valid_row,
)
from tff_fedmm.pipelines.rounds import Selection, run_rounds
from tff_fedmm.seeding import derive_seed, set_global_seed


def pooled_features(market_set: MarketSet, use: CodeUse = CodeUse()) -> dict[str, MarketFeatures]:
    """Each market's features in the pooled model: its code fields (read from its own indices), then its
    users and items offset past every earlier market's."""
    names = market_set.names
    user_offset = np.cumsum([0] + [market_set.markets[n].num_users for n in names])
    item_offset = np.cumsum([0] + [market_set.markets[n].num_items for n in names])
    return {n: replace(use.featurizer(n), user_offset=int(user_offset[i]), item_offset=int(item_offset[i]))
            for i, n in enumerate(names)}


def train_centralized(market_set: MarketSet, backbone: str, config: CTRStageConfig, use: CodeUse = CodeUse(),
                      k: tuple[int, int] = (0, 0), keep: Keep | None = None) -> tuple[Metrics, list[dict]]:
    names = market_set.names
    featurizers = pooled_features(market_set, use)
    last = featurizers[names[-1]]
    t = config.train
    set_global_seed(t.seed, "ctr-centralized")
    model = model_fn_for(backbone, last.user_offset + market_set.markets[names[-1]].num_users,
                         last.item_offset + market_set.markets[names[-1]].num_items, use.sizes(*k), config)()
    model.compile(optimizer=tf.keras.optimizers.Adam(t.learning_rate), loss="binary_crossentropy")

    def step(_, epoch: int):
        parts = [featurizers[n](ctr_examples(market_set.markets[n], "train", neg_ratio=t.neg_ratio, seed=t.seed,
                                             epoch=epoch)) for n in names]
        pooled = collections.OrderedDict((key, np.concatenate([p[key] for p in parts])) for key in parts[0])
        dataset = to_dataset(pooled, batch_size=t.batch_size,
                             shuffle_seed=derive_seed(t.seed, "ctr-shuffle", "pooled", epoch))
        fitted = model.fit(dataset.map(lambda e: (e["x"], e["y"])), epochs=1, verbose=0)
        valid = valid_row({n: model for n in names}, market_set, featurizers, t.data_seed)
        return model.get_weights(), round_row(valid, float(fitted.history["loss"][0]))

    selection = Selection(neg_logloss, lambda weights, _: weights, len(names), t.patience)
    result = run_rounds(model.get_weights(), step, t.epochs, 2 * len(names) + 1, selection=selection)
    metrics = {}
    for i, name in enumerate(names):  # one model, given each market's best weights in turn
        model.set_weights(result.best_state[i])
        metrics[name] = market_test_metrics(model, market_set, name, featurizers[name], t.data_seed, keep)
    return metrics, round_history(result, names)
