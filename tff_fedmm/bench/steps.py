"""Step time against vocabulary: one local training step of the CF, RQ-VAE and CTR stages at 1k, 10k and 100k
IDs per market (users + items, half each), on synthetic IDs, with each stage's own model, optimizer and loss.

- CF: `training.cf.train_cf`'s step (BCE, Keras Adam, `fit`'s train function) on `build_cf_model` at that size;
- CTR: `training.ctr.fit_ctr`'s step on the stage's coded model at that size, one batch of the workload's
  examples with its user and item IDs redrawn over the larger tables;
- RQ-VAE: the federated client's round (`training.rqvae.build_round_fn`, TFF Adam) on a market's starting
  state (`codebook_process.client_state_structure`) over one batch of rows (its rows are the IDs). It has no weight per ID: more IDs make a round longer (more batches), never a step
  dearer; a one-batch round also carries the round's fixed work (loading weights, re-seeding dead codes).

Sizes alternate step by step (the same load drift for each). The first step traces; a later one that traced
again would be counted in the line ("retraces"), and warm-up steps are not timed. Medians of wall and CPU
time (CPU: what the step costs, which others' load on a shared machine barely moves).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_fedmm.bench.ctr import CTRWorkload
from tff_fedmm.bench.measure import VOCABULARIES, Runner, Sample, medians, time_rounds
from tff_fedmm.federated.codebook_process import CodebookStageConfig, client_state_structure, rqvae_dataset
from tff_fedmm.models.cf import CFConfig, build_cf_model
from tff_fedmm.models.rqvae import build_rqvae
from tff_fedmm.training import rqvae as rt

Made = tuple[Callable, tuple]  # (a tf.function, its arguments): one step is `fn(*args)`


def _keras_step(model: tf.keras.Model, rate: float, x: dict, y: np.ndarray) -> Made:
    """One step of `fit` (its train function on the next batch) as `train_cf` and `fit_ctr` compile it."""
    model.compile(optimizer=tf.keras.optimizers.Adam(rate), loss="binary_crossentropy")
    return model.make_train_function(), (iter(tf.data.Dataset.from_tensors((x, y)).repeat()),)


def _ids(rng: np.random.Generator, x: dict, ids: int) -> dict:
    users, n = ids // 2, len(x["user"])
    draw = lambda high: rng.integers(0, high, n).astype(np.int32)  # noqa: E731
    return dict(x, user=draw(users), item=draw(ids - users))


def cf_step(cf: CFConfig, ids: int, rng: np.random.Generator) -> Made:
    x = _ids(rng, {"user": np.zeros(cf.batch_size)}, ids)
    y = rng.integers(0, 2, cf.batch_size).astype(np.float32)
    return _keras_step(build_cf_model(ids // 2, ids - ids // 2, cf), cf.learning_rate, x, y)


def ctr_step(work: CTRWorkload, ids: int, rng: np.random.Generator) -> Made:
    x, y = next(iter(work.datasets(0)[0].map(lambda e: (e["x"], e["y"])).as_numpy_iterator()))
    model = replace(work, users=ids // 2, items=ids - ids // 2).model_fn()()
    return _keras_step(model, work.config.train.learning_rate, _ids(rng, x, ids), y)


def rqvae_step(config: CodebookStageConfig, ids: int, rng: np.random.Generator) -> Made:
    model, optimizer = build_rqvae(config.rqvae), tff.learning.optimizers.build_adam(config.learning_rate)
    round_fn = tf.function(rt.build_round_fn(model, optimizer, config.rqvae, local_epochs=1,
                                             learn_global_codebook=config.rule == "fedavg",
                                             reseed_patience=config.reseed_patience))
    state = client_state_structure(model, config, optimizer)
    # One batch of rows at the stage's batch size: with no weight per ID, `ids` enters nowhere (the line shows it).
    dataset = rqvae_dataset(rng.normal(size=(256, config.rqvae.input_dim)).astype(np.float32), seed=config.rqvae.seed)
    return round_fn, (rt.global_codebook(model).read_value(), state["private"], state["optimizer_state"],
                      state["local_idle"], dataset, tf.constant(0))


def step_time_line(stage: str, make: Callable[[int, np.random.Generator], Made], warmup: int, repeats: int,
                   seed: int) -> str:
    rng = np.random.default_rng([seed, 15])
    made = {ids: make(ids, rng) for ids in VOCABULARIES}
    for fn, args in made.values():  # the first step traces
        fn(*args)
    traces = {ids: fn.experimental_get_tracing_count() for ids, (fn, _) in made.items()}
    runners = [Runner(fn, None, lambda _, args=args: args, lambda fn, _, args: fn(*args)) for fn, args in made.values()]
    ms = {ids: medians([Sample(*(1000 * t for t in s)) for s in samples])
          for ids, samples in zip(made, time_rounds(runners, warmup, repeats))}
    retraces = sum(fn.experimental_get_tracing_count() - traces[ids] for ids, (fn, _) in made.items())
    first, last = VOCABULARIES[0], VOCABULARIES[-1]
    return (f"step_time_ratio {stage} ids={last}/ids={first} = {ms[last].wall / ms[first].wall:.2f} (median ms per "
            f"step: {', '.join(f'ids={ids} {ms[ids].wall:.2f}' for ids in VOCABULARIES)}; cpu ms, python+worker: "
            f"{', '.join(f'{ms[ids].cpu:.2f}' for ids in VOCABULARIES)}, ratio {ms[last].cpu / ms[first].cpu:.2f}; "
            f"{repeats} timed after {warmup} warm-up, interleaved; retraces after the first step {retraces})")
