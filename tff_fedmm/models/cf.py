"""Per-market collaborative-filtering embeddings: the signal FedMM quantizes.

Scores are either a dot product of private user/item embeddings plus private biases (plain MF) or,
with `tower=True`, a small interaction MLP over (u, i, u*i) whose layers are `shared_*`. Federating
that tower while the embeddings stay private makes every market's embeddings readable by the same
function, which aligns the markets' CF spaces without any ID leaving its market.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from tff_fedmm.data.descriptors import DESCRIPTORS
from tff_fedmm.data.pipelines import to_dataset
from tff_fedmm.data.sampling import ctr_examples
from tff_fedmm.data.splits import Market
from tff_fedmm.seeding import derive_seed, set_global_seed


@dataclass(frozen=True)
class CFConfig:
    dim: int = 64
    tower: bool = False
    tower_hidden: int = 64
    loss: str = "bce"  # or "bpr"
    epochs: int = 20
    batch_size: int = 256
    learning_rate: float = 2e-3
    neg_ratio: int = 4
    seed: int = 0
    # Weight of the market-invariant descriptors (`data.descriptors`) appended to the RQ-VAE input;
    # 0 appends none. They are what lets level-1 codes mean the same thing across markets.
    descriptors: float = 0.0


def rqvae_input_dim(config: CFConfig) -> int:
    """Width of `rqvae_inputs` rows under `config`: CF dim, 2 type flags, and the descriptors if on."""
    return config.dim + 2 + (len(DESCRIPTORS) if config.descriptors > 0 else 0)


def build_cf_model(num_users: int, num_items: int, config: CFConfig, market: str = "") -> tf.keras.Model:
    """(user, item) → click probability; functional so TFF can wrap it.

    User and item tables, and markets (`market`), draw from different initializer seeds: one shared
    seed gave item j the same starting vector as user j, and as item j of every other market, tying
    unrelated entities together by position.
    """
    user = tf.keras.Input(shape=(), dtype=tf.int32, name="user")
    item = tf.keras.Input(shape=(), dtype=tf.int32, name="item")
    init = lambda table: tf.keras.initializers.RandomNormal(  # noqa: E731
        stddev=0.1, seed=derive_seed(config.seed, "cf-init", market, table))
    u = tf.keras.layers.Embedding(num_users, config.dim, embeddings_initializer=init(0),
                                  name="private_user_embedding")(user)
    i = tf.keras.layers.Embedding(num_items, config.dim, embeddings_initializer=init(1),
                                  name="private_item_embedding")(item)
    if config.tower:
        ui = tf.keras.layers.Multiply(name="ui_product")([u, i])
        h = tf.keras.layers.Concatenate(name="ui_concat")([u, i, ui])
        h = tf.keras.layers.Dense(config.tower_hidden, activation="relu", name="shared_tower_hidden")(h)
        logit = tf.keras.layers.Dense(1, name="shared_tower_out")(h)
    else:
        dot = tf.keras.layers.Dot(axes=1, name="ui_dot")([u, i])
        ub = tf.keras.layers.Embedding(num_users, 1, embeddings_initializer="zeros", name="private_user_bias")(user)
        ib = tf.keras.layers.Embedding(num_items, 1, embeddings_initializer="zeros", name="private_item_bias")(item)
        logit = tf.keras.layers.Add(name="mf_logit")([dot, ub, ib])
    prob = tf.keras.layers.Activation("sigmoid", name="click")(logit)
    return tf.keras.Model({"user": user, "item": item}, prob, name="cf")


def embedding_tables(model: tf.keras.Model) -> tuple[np.ndarray, np.ndarray]:
    """The exported (user table, item table) of a trained CF model."""
    return (model.get_layer("private_user_embedding").embeddings.numpy(),
            model.get_layer("private_item_embedding").embeddings.numpy())


def _bpr_dataset(market: Market, config: CFConfig, epoch: int) -> tf.data.Dataset:
    """Triples (user, positive, negative): the positive and its drawn negatives from `ctr_examples`."""
    ex = ctr_examples(market, "train", neg_ratio=1, seed=config.seed, epoch=epoch)
    pos, neg = ex["label"] == 1, ex["label"] == 0
    users = ex["user"][pos]
    # With neg_ratio=1 the i-th negative belongs to the i-th positive, unless a user had none to draw.
    if neg.sum() != pos.sum():
        raise ValueError(f"market {market.name!r}: some users have no item left to draw as a BPR negative")
    return tf.data.Dataset.from_tensor_slices(
        (users, ex["item"][pos], ex["item"][neg])
    ).shuffle(len(users), seed=config.seed + epoch).batch(config.batch_size)


def train_cf(market: Market, config: CFConfig) -> tf.keras.Model:
    """Trains one market's CF model alone (no federation), re-drawing train negatives every epoch."""
    set_global_seed(config.seed, "cf", market.name)
    model = build_cf_model(market.num_users, market.num_items, config, market=market.name)
    optimizer = tf.keras.optimizers.Adam(config.learning_rate)
    if config.loss == "bce":
        model.compile(optimizer=optimizer, loss="binary_crossentropy")
        for epoch in range(config.epochs):
            ds = to_dataset(ctr_examples(market, "train", neg_ratio=config.neg_ratio, seed=config.seed, epoch=epoch),
                            batch_size=config.batch_size, shuffle_seed=config.seed + epoch)
            model.fit(ds.map(lambda e: (e["x"], e["y"])), epochs=1, verbose=0)
        return model
    if config.loss != "bpr":
        raise ValueError(f"unknown CF loss {config.loss!r}; expected 'bce' or 'bpr'")
    logit_model = tf.keras.Model(model.inputs, model.get_layer("click").input)

    @tf.function
    def step(u, p, n):
        with tf.GradientTape() as tape:
            diff = logit_model({"user": u, "item": p}) - logit_model({"user": u, "item": n})
            loss = -tf.reduce_mean(tf.math.log_sigmoid(diff))
        grads = tape.gradient(loss, model.trainable_variables)
        optimizer.apply_gradients(zip(grads, model.trainable_variables))

    for epoch in range(config.epochs):
        for u, p, n in _bpr_dataset(market, config, epoch):
            step(u, p, n)
    return model


def rqvae_inputs(user_table: np.ndarray, item_table: np.ndarray,
                 descriptors: tuple[np.ndarray, np.ndarray] | None = None, weight: float = 1.0) -> np.ndarray:
    """Users then items, standardised per dimension, each with a one-hot entity-type flag, and, if
    given, the (user, item) market-invariant `descriptors` times `weight`.

    One RQ-VAE quantizes both entity types: in these CF models users and items are read in one space,
    so code k can mean the same taste region for both, and one federated process serves both.
    """
    table = np.concatenate([user_table, item_table]).astype(np.float32)
    rows = standardized_rows(table, len(user_table), *cf_standardization(user_table, item_table))
    if descriptors is not None:
        rows = np.concatenate([rows, weight * np.concatenate(descriptors).astype(np.float32)], axis=1)
    return rows


def cf_standardization(user_table: np.ndarray, item_table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-dimension mean and standard deviation of a market's CF rows, users and items together: the
    RQ-VAE reads its CF space through them, so a new entity is encoded with the same pair."""
    table = np.concatenate([user_table, item_table]).astype(np.float32)
    return table.mean(0), table.std(0)


def standardized_rows(table: np.ndarray, users: int, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    """CF rows standardised by (`mean`, `std`), each with its one-hot entity type (the first `users` rows are
    users, the rest items): RQ-VAE input rows without descriptors."""
    table = (np.asarray(table, np.float32) - mean) / (std + 1e-6)
    flags = np.zeros((len(table), 2), np.float32)
    flags[:users, 0] = 1.0
    flags[users:, 1] = 1.0
    return np.concatenate([table, flags], axis=1)
