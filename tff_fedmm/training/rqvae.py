"""One market's RQ-VAE training round, written once for both local Keras use and TFF client work.

The round is a pure function of tensors (global codebook, private weights, optimizer state, idle
counters, dataset) so that TFF can run it inside a `tff.tensorflow.computation` on a freshly built
model, and the local pipeline can run the very same code eagerly under `tf.function`. The optimizer is
a `tff.learning.optimizers` optimizer: its state is a plain tensor structure that persists across
rounds as client-private state.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

import numpy as np
import tensorflow as tf

from tff_fedmm.naming import PRIVATE_PREFIX, layer_weights
from tff_fedmm.models.rqvae import RQVAEConfig, global_codebook, local_codebook, rqvae_losses
from tff_fedmm.training.optimizer_step import gradient_step


def private_variables(model: tf.keras.Model) -> list[tf.Variable]:
    """Every trainable variable of the `private_*` layers, in layer order (stable across rebuilds)."""
    return layer_weights(model, PRIVATE_PREFIX)


def trained_variables(model: tf.keras.Model, learn_global_codebook: bool) -> list[tf.Variable]:
    """What the client optimizer moves: private weights, plus the global codebook under the fedavg rule."""
    variables = private_variables(model)
    return variables + [global_codebook(model)] if learn_global_codebook else variables


def build_round_fn(
    model: tf.keras.Model,
    optimizer,
    config: RQVAEConfig,
    *,
    local_epochs: int,
    learn_global_codebook: bool,
    reseed_patience: int,
    anchors: int = 0,
    anchor_weight: float = 0.0,
) -> Callable:
    """Returns `round_fn(global_cb, private, opt_state, local_idle, dataset, seed, anchor_target=None,
    anchor_known=None) -> (private, opt_state, local_idle, global_cb, stats)`.

    Anchored mode (`anchors` slots): dataset rows carry `slot` (-1 for rows that are no anchor), the
    loss adds `anchor_weight` × the mean squared distance of anchor rows' level-1 latents to their
    slot's consensus (`anchor_target`, where `anchor_known`; standardised, see `_spread_targets`),
    and `stats` carries per slot the mean level-1 latent of the market's anchor rows and whether it
    has any (`anchor_means`, `anchor_counts`).

    `stats` carries exactly what the federation rules need (per-global-code latent sums and counts, for
    the kmeans rule, i.e. `learn_global_codebook=False`; zeros otherwise), plus scalar diagnostics. Local codes unused for `reseed_patience` consecutive rounds are re-seeded
    from current residuals so the private level keeps its capacity.
    """
    variables = trained_variables(model, learn_global_codebook)
    privates = private_variables(model)
    g_var, l_var = global_codebook(model), local_codebook(model)
    k_g, k_l, d = config.k_global, config.k_local, config.latent_dim

    def batch_loss(x, pull):
        outputs = model(x, training=True)
        losses = rqvae_losses(x, outputs, config.beta, learn_global_codebook)
        if pull is not None:
            losses["loss"] += anchor_weight * pull(outputs[6])
        return losses["loss"], (outputs, losses)

    def round_fn(global_cb, private, opt_state, local_idle, dataset, seed, anchor_target=None, anchor_known=None):
        g_var.assign(global_cb)
        for v, w in zip(privates, private):
            v.assign(w)
        zero = tf.constant(0.0)
        state = (opt_state,)
        if anchors:
            anchor_target = _spread_targets(anchor_target, anchor_known)

        def reduce_fn(state, batch):
            opt_state, g_sums, g_counts, l_counts, loss_sum, rec_sum, n, a_sums, a_counts = state
            x = batch["x"]
            slot = _anchor_slots(batch, anchors)
            pull = (lambda z1: _anchor_pull(z1, slot, anchor_target, anchor_known)) if anchors else None
            opt_state, (outputs, losses) = gradient_step(optimizer, opt_state, variables,
                                                         lambda x: batch_loss(x, pull), x)
            _, _, _, _, idx_g, idx_l, z = outputs  # the latents level 1 quantizes
            b = tf.cast(tf.shape(x)[0], tf.float32)
            if anchors:
                a_sums += tf.math.unsorted_segment_sum(z, slot, anchors + 1)[:anchors]
                a_counts += tf.math.unsorted_segment_sum(tf.ones_like(slot, tf.float32), slot, anchors + 1)[:anchors]
            if not learn_global_codebook:  # only the kmeans rule reads them (skipping them saves ~15% of a round)
                g_sums += tf.math.unsorted_segment_sum(z, idx_g, k_g)
                g_counts += tf.math.unsorted_segment_sum(tf.ones_like(idx_g, tf.float32), idx_g, k_g)
            l_counts += tf.math.unsorted_segment_sum(tf.ones_like(idx_l, tf.float32), idx_l, k_l)
            return opt_state, g_sums, g_counts, l_counts, loss_sum + losses["loss"] * b, \
                rec_sum + losses["reconstruction"] * b, n + b, a_sums, a_counts

        for _ in range(local_epochs):
            # Statistics describe the last epoch only: the codes the final weights actually use.
            fresh_stats = (tf.zeros([k_g, d]), tf.zeros([k_g]), tf.zeros([k_l]), zero, zero, zero,
                           tf.zeros([anchors, d]), tf.zeros([anchors]))
            state = dataset.reduce(state[:1] + fresh_stats, reduce_fn)
        opt_state, g_sums, g_counts, l_counts, loss_sum, rec_sum, n, a_sums, a_counts = state
        local_idle = tf.where(l_counts > 0, tf.zeros_like(local_idle), local_idle + 1)
        local_idle = _reseed_dead_codes(model, l_var, local_idle, reseed_patience, dataset, seed)
        stats = collections.OrderedDict(
            global_code_sums=g_sums,
            global_code_counts=g_counts,
            local_code_counts=l_counts,
            loss=tf.math.divide_no_nan(loss_sum, n),
            reconstruction=tf.math.divide_no_nan(rec_sum, n),
            num_examples=n,
        )
        if anchors:
            stats["anchor_means"] = tf.math.divide_no_nan(a_sums, a_counts[:, tf.newaxis])
            stats["anchor_counts"] = tf.cast(a_counts > 0, tf.float32)
        return [tf.identity(v) for v in privates], opt_state, local_idle, tf.identity(g_var), stats

    return round_fn


def _anchor_slots(batch, anchors: int) -> tf.Tensor:
    """Each row's slot, with rows that are no anchor (-1) sent to an extra segment `anchors`."""
    if not anchors:
        return tf.zeros([0], tf.int32)
    slot = tf.cast(batch["slot"], tf.int32)
    return tf.where(slot >= 0, slot, anchors)


def _spread_targets(target, known):
    """The consensus standardised per dimension over the known slots (zero mean, unit spread).

    Pulling toward the raw consensus collapses level 1: the consensus is itself a mean of the pulled
    latents, so shrinking every latent to one point satisfies it (on synthetic markets, weight 1 raised
    chance agreement to .84: nearly every item on one code). Targets with a fixed spread cannot be met by collapsing."""
    w = known[:, tf.newaxis]
    n = tf.maximum(tf.reduce_sum(known), 1.0)
    mean = tf.reduce_sum(w * target, axis=0) / n
    std = tf.sqrt(tf.reduce_sum(w * tf.square(target - mean), axis=0) / n + 1e-6)
    return (target - mean) / std


def _anchor_pull(z_level1, slot, target, known):
    """Mean squared distance of anchor rows whose slot has a consensus to that consensus."""
    padded_target = tf.concat([target, tf.zeros([1, tf.shape(target)[1]])], axis=0)
    weight = tf.gather(tf.concat([known, tf.zeros([1])], axis=0), slot)
    distance = tf.reduce_sum(tf.square(z_level1 - tf.gather(padded_target, slot)), axis=1)
    return tf.math.divide_no_nan(tf.reduce_sum(weight * distance), tf.reduce_sum(weight))


def _reseed_dead_codes(model, l_var, local_idle, patience, dataset, seed):
    """Moves local codes idle for `patience` rounds onto residuals of a random first batch."""
    dead = local_idle >= patience
    batch = dataset.take(1).get_single_element()
    _, z, q_global, _, _, _, _ = model(batch["x"], training=False)
    residual = z - q_global
    picks = tf.random.stateless_uniform(
        [tf.shape(l_var)[0]], seed=tf.stack([tf.cast(seed, tf.int64), tf.constant(7, tf.int64)]),
        maxval=tf.shape(residual)[0], dtype=tf.int32)
    candidates = tf.gather(residual, picks)
    l_var.assign(tf.where(dead[:, tf.newaxis], candidates, l_var))
    return tf.where(dead, tf.zeros_like(local_idle), local_idle)


def encode_codes(model: tf.keras.Model, x: np.ndarray, batch_size: int = 4096) -> tuple[np.ndarray, ...]:
    """(global codes, local codes, per-level errors) for every row of x, with the current codebooks.

    Errors are mean squared distances: latent to its level-1 code, latent to level 1 + level 2 (what
    the second level leaves unexplained), and input to reconstruction.
    """
    g, l, errors = [], [], np.zeros(3)
    for start in range(0, len(x), batch_size):
        batch = x[start:start + batch_size]
        x_hat, z, q_global, q_local, idx_global, idx_local, z1 = (t.numpy() for t in model(batch, training=False))
        g.append(idx_global)
        l.append(idx_local)
        errors += [np.square(z1 - q_global).sum(1).sum(), np.square(z - q_global - q_local).sum(1).sum(),
                   np.square(batch - x_hat).sum(1).sum()]
    return np.concatenate(g), np.concatenate(l), errors / max(len(x), 1)
