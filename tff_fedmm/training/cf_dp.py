"""Trains one market's CF model alone with DP-SGD (`--dp-unit interaction`, `training.dp_sgd`).

Every variable (user and item tables and biases) gets clipped, noised gradients: the tables become the
RQ-VAE's input, whose codebook updates are shared, so all of them must be DP for the codebook stage to be
post-processing. Returns what the accountant needs: the sampling rate and the number of steps.
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf

from tff_fedmm.data.pipelines import market_record_dataset
from tff_fedmm.data.splits import Market
from tff_fedmm.training.dp_sgd import DpSgdConfig, RecordGradients
from tff_fedmm.models.cf import CFConfig, build_cf_model
from tff_fedmm.seeding import set_global_seed


def train_cf_dp(market: Market, config: CFConfig, sgd: DpSgdConfig, noise_seed: int) -> tuple[tf.keras.Model, float, int]:
    """(model, sampling rate, steps): `config.epochs` passes of Poisson-sampled DP-SGD steps, the noise,
    sampling and negatives drawn from `noise_seed` (secret unless `--dp-noise-seed`)."""
    if config.loss != "bce":
        raise ValueError(f"DP-SGD trains the CF model with the bce loss, not {config.loss!r}")
    set_global_seed(config.seed, "cf", market.name)  # the initialisation, as `train_cf`
    model = build_cf_model(market.num_users, market.num_items, config, market=market.name)
    optimizer = tf.keras.optimizers.SGD(sgd.learning_rate, momentum=sgd.momentum)
    gradients = RecordGradients(model, model.trainable_variables)

    @tf.function
    def epoch(dataset: tf.data.Dataset) -> None:
        for batch in dataset:
            grads, _, _ = gradients.noised(batch, sgd)
            optimizer.apply_gradients(zip(grads, model.trainable_variables))

    records = len(market.split("train"))
    rate, steps = sgd.sampling_rate(records), sgd.steps_per_epoch(records)
    rng = np.random.default_rng(noise_seed)
    for _ in range(config.epochs):
        epoch(market_record_dataset(market, config.neg_ratio, rate, steps, rng))
    return model, rate, config.epochs * steps
