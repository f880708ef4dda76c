"""One batch's gradient step with a `tff.learning.optimizers` optimizer, shared by both client rounds.

The codebook stage's RQ-VAE round (`training.rqvae.build_round_fn`) and partial FedAvg's client update
(`federated.partial_fedavg`) both train inside TFF computations with TFF's functional optimizers: the
optimizer returns new values and a new state (a plain tensor structure that persists across rounds as a
market's private state) instead of updating variables itself. Each batch of either round ends in
`apply_step`; `gradient_step` is the plain one (the batch loss's gradients), while partial FedAvg under
`--dp-unit interaction` brings DP-SGD's noised gradients (`training.dp_sgd`) to the same `apply_step`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import tensorflow as tf

# loss_fn(batch) -> (loss to minimise, anything else the round wants back from the same forward pass)
LossFn = Callable[[object], tuple[tf.Tensor, object]]


def gradient_step(optimizer, opt_state, variables: Sequence[tf.Variable], loss_fn: LossFn, batch):
    """Moves `variables` one optimizer step down `loss_fn(batch)`'s loss; returns (new optimizer state, aux)."""
    with tf.GradientTape() as tape:
        loss, aux = loss_fn(batch)
    # Dense gradients: TFF's functional optimizers do arithmetic that IndexedSlices (embedding lookups)
    # lack; a variable the loss does not reach (the global codebook under the usage rule) gets zeros.
    grads = [tf.zeros_like(v) if g is None else tf.convert_to_tensor(g)
             for g, v in zip(tape.gradient(loss, variables), variables)]
    return apply_step(optimizer, opt_state, variables, grads), aux


def apply_step(optimizer, opt_state, variables: Sequence[tf.Variable], grads: Sequence[tf.Tensor]):
    """Moves `variables` one optimizer step along dense `grads` (however they were computed: DP-SGD's
    noised estimate comes in here too); returns the new optimizer state."""
    opt_state, updated = optimizer.next(opt_state, tuple(variables), tuple(grads))
    for v, u in zip(variables, updated):
        v.assign(u)
    return opt_state
