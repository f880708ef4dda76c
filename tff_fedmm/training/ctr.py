"""Trains a CTR model on one market (or the pooled markets) with Keras, early-stopped on validation.

Used by the non-federated methods (`local`, `local+codes`; `centralized` runs its epochs through
`pipelines.rounds` to select per market). Train negatives are re-drawn every epoch; the epoch with the
lowest validation LogLoss is kept (never the test split).
Validation AUC keeps creeping up long after the model turns overconfident (on XMarket de, epoch 18
had valid LogLoss 0.87 and test LogLoss 1.16, against 0.40/0.44 at epoch 1, at equal test AUC), so
LogLoss is the criterion, for the federated rounds too.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from tff_fedmm import progress
from tff_fedmm.data.pipelines import to_dataset
from tff_fedmm.data.sampling import ctr_examples
from tff_fedmm.data.splits import Market
from tff_fedmm.eval.evaluate import Featurize, evaluate_market
from tff_fedmm.seeding import derive_seed


@dataclass(frozen=True)
class CTRTrainConfig:
    epochs: int = 20
    patience: int = 5
    batch_size: int = 256
    learning_rate: float = 1e-3
    neg_ratio: int = 4
    seed: int = 0  # training: initialisation, shuffles, drawn training negatives
    data_seed: int = 0  # evaluation: the valid/test candidate sets, shared by every training seed


def train_examples(market: Market, config: CTRTrainConfig, epoch: int) -> dict[str, np.ndarray]:
    return ctr_examples(market, "train", neg_ratio=config.neg_ratio, seed=config.seed, epoch=epoch)


def fit_ctr(model: tf.keras.Model, make_dataset: Callable[[int], tf.data.Dataset],
            validate: Callable[[], tuple[float, float]], config: CTRTrainConfig) -> list[tuple[float, float, float]]:
    """Epoch loop with early stopping on validation LogLoss; returns (valid AUC, valid LogLoss, train
    loss) per epoch, with the best epoch's weights restored."""
    model.compile(optimizer=tf.keras.optimizers.Adam(config.learning_rate), loss="binary_crossentropy")
    history, best, best_weights, waited = [], -np.inf, model.get_weights(), 0
    for epoch in range(config.epochs):
        fitted = model.fit(make_dataset(epoch).map(lambda e: (e["x"], e["y"])), epochs=1, verbose=0)
        auc, logloss = validate()
        history.append((auc, logloss, float(fitted.history["loss"][0])))
        progress.round_done(valid_auc=auc, valid_logloss=logloss)
        score = -logloss
        if score > best:
            best, best_weights, waited = score, model.get_weights(), 0
        else:
            waited += 1
            if waited >= config.patience:
                break
    model.set_weights(best_weights)
    return history


def fit_ctr_on_market(model: tf.keras.Model, market: Market, config: CTRTrainConfig,
                      featurize: Featurize = dict) -> list[tuple[float, float, float]]:
    def make_dataset(epoch: int) -> tf.data.Dataset:
        return to_dataset(featurize(train_examples(market, config, epoch)), batch_size=config.batch_size,
                          shuffle_seed=derive_seed(config.seed, "ctr-shuffle", market.name, epoch))

    def validate() -> tuple[float, float]:
        result = evaluate_market(model, market, "valid", featurize, data_seed=config.data_seed, ranking=False)
        return result["auc"], result["logloss"]

    return fit_ctr(model, make_dataset, validate, config)

