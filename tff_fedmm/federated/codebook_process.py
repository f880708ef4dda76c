"""FedMM's codebook stage as a TFF process: one global codebook on the server, the rest in the markets.

Server state: the global codebook (`LearningAlgorithmState.global_model_weights`) plus the states of
the distributor, aggregator and finalizer. Client state, per market and CLIENTS-placed: encoder/decoder
weights, the local codebook, the client optimizer's state and the idle counters of local codes. Every
round each market receives the global codebook, trains its RQ-VAE for `local_epochs`, and sends only
what the aggregation rule needs (see `codebook_aggregator`).

Anchored mode (`anchors` > 0 slots, see `tff_fedmm.data.anchors`): the server also holds a consensus
level-1 latent per anchor slot, broadcast with the codebook; each market's rows carry their slot, its
training pulls its anchor items' level-1 latents toward that consensus (`anchor_weight`), and it sends
its per-slot mean latents and presence through the codebook's aggregator (`codebook_aggregator`).
"""

from __future__ import annotations

import collections
import collections.abc
from dataclasses import dataclass

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff

from tff_fedmm.federated.codebook_aggregator import (
    GlobalCodebookFactory, build_codebook_finalizer, client_payload_type, shared_state_type,
)
from tff_fedmm.federated.composer import build_finalize_metrics, compose_stateful_process
from tff_fedmm.models.rqvae import RQVAEConfig, build_rqvae, global_codebook, local_codebook
from tff_fedmm.training import rqvae as rt


@dataclass(frozen=True)
class CodebookStageConfig:
    rqvae: RQVAEConfig = RQVAEConfig()
    rule: str = "fedavg"  # better than "kmeans" on XMarket validation for both backbones (BUILD_NOTES)
    local_epochs: int = 2
    learning_rate: float = 3e-3
    reseed_patience: int = 2
    anchors: int = 0  # anchor slots (anchored mode); 0: strict, nothing keyed is used
    anchor_weight: float = 1.0  # weight of the pull toward the anchor consensus (anchored mode only)


def _optimizer(config: CodebookStageConfig):
    return tff.learning.optimizers.build_adam(config.learning_rate)


def data_type(config: CodebookStageConfig) -> tff.SequenceType:
    element = collections.OrderedDict(x=tff.TensorType(np.float32, [None, config.rqvae.input_dim]))
    if config.anchors:
        element["slot"] = tff.TensorType(np.int32, [None])
    return tff.SequenceType(element)


def codebook_of(shared) -> np.ndarray:
    """The global codebook inside the server's shared state (a bare codebook unless anchored)."""
    return shared["codebook"] if isinstance(shared, collections.abc.Mapping) else shared


def _learns_global(config: CodebookStageConfig) -> bool:
    return config.rule == "fedavg"


def client_state_structure(model: tf.keras.Model, config: CodebookStageConfig, optimizer) -> collections.OrderedDict:
    """A market's state as `client_update` takes it, from `model`'s weights (public: `fedmm bench` times the
    client's round on it)."""
    variables = rt.trained_variables(model, _learns_global(config))
    specs = tuple(tf.TensorSpec(v.shape, v.dtype) for v in variables)
    return collections.OrderedDict(
        client_index=tf.constant(0, tf.int32),
        round_num=tf.constant(0, tf.int32),
        private=tuple(tf.identity(v) for v in rt.private_variables(model)),
        optimizer_state=optimizer.initialize(specs),
        local_idle=tf.zeros([config.rqvae.k_local]),
    )


def _build_client_update(config: CodebookStageConfig, client_state_type: tff.Type) -> tff.Computation:
    cfg = config.rqvae
    shared_type = shared_state_type(cfg.k_global, cfg.latent_dim, config.anchors)

    @tff.tensorflow.computation(shared_type, client_state_type, data_type(config))
    def client_update(shared, state, dataset):
        codebook = codebook_of(shared)
        anchor_args = (shared["anchor_consensus"], shared["anchor_known"]) if config.anchors else ()
        model = build_rqvae(cfg)
        # tf.function for its automatic control dependencies: reads of the trained variables must
        # follow the training loop (a bare TFF graph gives no such order).
        round_fn = tf.function(rt.build_round_fn(
            model, _optimizer(config), cfg, local_epochs=config.local_epochs,
            learn_global_codebook=_learns_global(config), reseed_patience=config.reseed_patience,
            anchors=config.anchors, anchor_weight=config.anchor_weight))
        seed = state["client_index"] * 100_003 + state["round_num"]
        private, opt_state, idle, trained_codebook, stats = round_fn(
            codebook, state["private"], state["optimizer_state"], state["local_idle"], dataset, seed, *anchor_args)
        new_state = collections.OrderedDict(
            client_index=state["client_index"], round_num=state["round_num"] + 1, private=tuple(private),
            optimizer_state=opt_state, local_idle=idle)
        if config.rule == "fedavg":
            payload = collections.OrderedDict(codebook_update=trained_codebook - codebook)
        else:
            payload = collections.OrderedDict(
                code_sums=stats["global_code_sums"], code_counts=stats["global_code_counts"])
        if config.anchors:
            payload["anchor_means"] = stats["anchor_means"]
            payload["anchor_counts"] = stats["anchor_counts"]
        n = stats["num_examples"]
        metrics = collections.OrderedDict(
            loss=stats["loss"] * n,
            reconstruction=stats["reconstruction"] * n,
            local_codes_used=tf.reduce_mean(tf.cast(stats["local_code_counts"] > 0, tf.float32)),
            markets=tf.constant(1.0),
            num_examples=n,
        )
        return new_state, payload, n, metrics

    return client_update


def build_codebook_process(
    config: CodebookStageConfig, aggregator: GlobalCodebookFactory | None = None, metrics_cross: bool = True
) -> tff.templates.IterativeProcess:
    """The public builder: composes the small typed pieces above, as `build_fed_kmeans` does.
    `metrics_cross=False` (under DP) keeps the loss sums in the markets (`composer`)."""
    cfg = config.rqvae
    aggregator = aggregator or GlobalCodebookFactory(config.rule)
    if aggregator.rule != config.rule:
        raise ValueError(f"aggregator rule {aggregator.rule!r} differs from config rule {config.rule!r}")

    @tff.tensorflow.computation
    def initial_codebook():
        # One server-side seed: code k starts as the same vector in every market.
        if cfg.descriptor_dim:
            codebook = descriptor_codebook_init(cfg)
        else:
            codebook = tf.random.stateless_normal([cfg.k_global, cfg.latent_dim], seed=[cfg.seed, 1])
        if not config.anchors:
            return codebook
        return collections.OrderedDict(codebook=codebook, anchor_consensus=tf.zeros([config.anchors, cfg.latent_dim]),
                                       anchor_known=tf.zeros([config.anchors]))

    @tff.tensorflow.computation
    def client_state_template():
        return client_state_structure(build_rqvae(cfg), config, _optimizer(config))

    client_state_type = client_state_template.type_signature.result
    codebook_type = initial_codebook.type_signature.result
    client_update = _build_client_update(config, client_state_type)
    metrics_type = client_update.type_signature.result[3]
    return compose_stateful_process(
        initial_shared_fn=initial_codebook,
        initial_client_state_type=client_state_type,
        data_type=data_type(config),
        distributor=tff.learning.templates.build_broadcast_process(codebook_type),
        client_update=client_update,
        aggregator=aggregator.create(client_payload_type(config.rule, cfg.k_global, cfg.latent_dim, config.anchors),
                                     tff.TensorType(np.float32)),
        finalizer=build_codebook_finalizer(cfg.k_global, cfg.latent_dim, config.rule, config.anchors),
        finalize_metrics=build_finalize_metrics(metrics_type, per_market=("local_codes_used",)),
        metrics_cross=metrics_cross,
    )


def descriptor_codebook_init(cfg: RQVAEConfig) -> tf.Tensor:
    """Codes drawn on the level-1 manifold without data: the frozen anchor map (`build_rqvae`) applied
    to a seeded prior of inputs, a random type flag and N(0, 1) descriptors (their transforms aim at
    unit scale). N(0, 1) codes in the latent space mostly miss that low-dimensional manifold and die."""
    flags = tf.one_hot(tf.random.stateless_uniform([cfg.k_global], seed=[cfg.seed, 2], maxval=2, dtype=tf.int32), 2)
    descriptors = tf.random.stateless_normal([cfg.k_global, cfg.descriptor_dim], seed=[cfg.seed, 3])
    x = tf.concat([tf.zeros([cfg.k_global, cfg.input_dim - cfg.descriptor_dim - 2]), flags, descriptors], axis=1)
    return build_rqvae(cfg)(x, training=False)[6]


def initial_client_state(config: CodebookStageConfig, client_index: int, codebook: np.ndarray,
                         x: np.ndarray) -> collections.OrderedDict:
    """A market's starting state, computed in the market: shared-seed encoder, k-means local codebook.

    Every market starts from the same encoder/decoder weights (same seed) so that level-1 codes are
    comparable from round one; the local codebook is k-means on the market's first residuals.
    """
    from sklearn.cluster import KMeans

    cfg = config.rqvae
    model = build_rqvae(cfg)
    global_codebook(model).assign(codebook_of(codebook))
    _, z, q_global, _, _, _, _ = model(x, training=False)
    residual = (z - q_global).numpy()
    k = min(cfg.k_local, len(residual))
    centers = KMeans(n_clusters=k, n_init=1, random_state=cfg.seed).fit(residual).cluster_centers_
    local = local_codebook(model)
    local.assign(np.concatenate([centers, local.numpy()[k:]]).astype(np.float32))
    state = client_state_structure(model, config, _optimizer(config))
    state["client_index"] = tf.constant(client_index, tf.int32)
    return tf.nest.map_structure(lambda t: tf.convert_to_tensor(t).numpy(), state)


def rqvae_dataset(x: np.ndarray, batch_size: int = 256, seed: int = 0,
                  slots: np.ndarray | None = None) -> tf.data.Dataset:
    """`slots` (anchored mode): each row's anchor slot, -1 for rows that are no anchor."""
    element = collections.OrderedDict(x=x)
    if slots is not None:
        element["slot"] = slots.astype(np.int32)
    return tf.data.Dataset.from_tensor_slices(element).shuffle(
        len(x), seed=seed, reshuffle_each_iteration=True).batch(batch_size)
