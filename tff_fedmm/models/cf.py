"""Per-market collaborative-filtering embeddings: the signal FedMM quantizes.

Scores are either a dot product of private user/item embeddings plus private biases (plain MF) or,
with `tower=True`, a small interaction MLP over (u, i, u*i) whose layers are `shared_*`. Federating
that tower while the embeddings stay private makes every market's embeddings readable by the same
function, meant to align the markets' CF spaces without any ID leaving its market (on XMarket, level-1
codes learned from them still agree across markets at chance: BUILD_NOTES).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import tensorflow as tf

from tff_fedmm.data.descriptors import DESCRIPTORS
from tff_fedmm.seeding import derive_seed


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
