"""Trains one market's CF model alone (no federation): BPR or BCE, train negatives re-drawn every epoch.

The network is `models.cf.build_cf_model`; this module owns the loop and the examples it draws.
"""

from __future__ import annotations

import tensorflow as tf

from tff_fedmm.data.pipelines import to_dataset
from tff_fedmm.data.sampling import ctr_examples
from tff_fedmm.data.splits import Market
from tff_fedmm.models.cf import CFConfig, build_cf_model
from tff_fedmm.seeding import set_global_seed


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
