"""The dual-codebook RQ-VAE: straight-through gradients, codebook selection by name, nearest-code lookup,
one training round (loss, dead-code re-seeding, statistics) and deterministic codes end to end."""

from __future__ import annotations

import collections

import numpy as np
import pytest
import tensorflow as tf

from tff_fedmm.training import rqvae as rt
from tff_fedmm.models.rqvae import (
    GLOBAL_CODEBOOK, LOCAL_CODEBOOK, RQVAEConfig, build_rqvae, global_codebook, local_codebook, nearest_code,
    rqvae_losses,
)
from tff_fedmm.naming import SHARED_PREFIX, layer_weights

# Every size distinct so a shape names one variable.
CFG = RQVAEConfig(input_dim=10, latent_dim=4, hidden=16, k_global=5, k_local=6, seed=0)


def random_x(n: int = 64, dim: int = CFG.input_dim, seed: int = 0) -> tf.Tensor:
    return tf.constant(np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32))


def clustered_x(n: int = 240, dim: int = CFG.input_dim, clusters: int = 4, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=3.0, size=(clusters, dim))
    return (centers[rng.integers(0, clusters, n)] + 0.3 * rng.normal(size=(n, dim))).astype(np.float32)


def contains(variables, target) -> bool:
    return any(v is target for v in variables)


# --- gradients -----------------------------------------------------------------------------------------


def test_reconstruction_alone_reaches_the_encoder_through_straight_through():
    model = build_rqvae(CFG)
    x = random_x()
    encoder = [model.get_layer(name).kernel for name in ("private_encoder_hidden", "private_encoder_out")]
    with tf.GradientTape() as tape:
        losses = rqvae_losses(x, model(x, training=True), CFG.beta)
    grads = tape.gradient(losses["reconstruction"], encoder)
    for variable, grad in zip(encoder, grads):
        assert grad is not None, f"no gradient reaches {variable.name}: straight-through is broken"
        assert float(tf.reduce_max(tf.abs(grad))) > 0.0, variable.name


@pytest.mark.parametrize("learn", [True, False])
def test_global_codebook_gradient_only_when_learned(learn: bool):
    model = build_rqvae(CFG)
    x = random_x()
    g_var, l_var = global_codebook(model), local_codebook(model)
    with tf.GradientTape() as tape:
        losses = rqvae_losses(x, model(x, training=True), CFG.beta, learn_global_codebook=learn)
    g_grad, l_grad = tape.gradient(losses["loss"], [g_var, l_var])
    g_norm = 0.0 if g_grad is None else float(tf.reduce_sum(tf.abs(tf.convert_to_tensor(g_grad))))
    if learn:
        assert g_norm > 0.0
    else:
        assert g_norm == 0.0
    # The local codebook learns under both rules.
    assert l_grad is not None and float(tf.reduce_sum(tf.abs(tf.convert_to_tensor(l_grad)))) > 0.0


# --- selection by name ---------------------------------------------------------------------------------


def test_codebooks_are_selected_by_name_with_their_shapes():
    model = build_rqvae(CFG)
    g, l = global_codebook(model), local_codebook(model)
    assert g is model.get_layer(GLOBAL_CODEBOOK).codebook and l is model.get_layer(LOCAL_CODEBOOK).codebook
    assert g is not l
    assert tuple(g.shape) == (CFG.k_global, CFG.latent_dim)
    assert tuple(l.shape) == (CFG.k_local, CFG.latent_dim)
    assert g.name.startswith(GLOBAL_CODEBOOK + "/") and l.name.startswith(LOCAL_CODEBOOK + "/")

    shared = layer_weights(model, SHARED_PREFIX)
    assert len(shared) == 1 and shared[0] is g
    shared_by_name = [v for v in model.trainable_variables if v.name.startswith(SHARED_PREFIX)]
    assert len(shared_by_name) == 1 and shared_by_name[0] is g

    private = rt.private_variables(model)
    assert not contains(private, g) and contains(private, l)
    # Every other trainable variable is private: nothing is left unassigned.
    assert len(private) + 1 == len(model.trainable_variables)
    assert contains(rt.trained_variables(model, True), g) and not contains(rt.trained_variables(model, False), g)


def test_selection_survives_a_second_build_in_one_graph():
    with tf.Graph().as_default():
        build_rqvae(CFG)
        model = build_rqvae(CFG)  # Keras uniquifies variable names; layer names stay as given
        assert tuple(global_codebook(model).shape) == (CFG.k_global, CFG.latent_dim)
        assert tuple(local_codebook(model).shape) == (CFG.k_local, CFG.latent_dim)
        assert not contains(rt.private_variables(model), global_codebook(model))


# --- nearest code --------------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_nearest_code_matches_brute_force(seed: int):
    rng = np.random.default_rng(seed)
    points = rng.normal(size=(300, 7)).astype(np.float32)
    codebook = rng.normal(scale=1.5, size=(37, 7)).astype(np.float32)
    expected = np.argmin(((points[:, None, :].astype(np.float64) - codebook[None]) ** 2).sum(-1), axis=1)
    got = nearest_code(tf.constant(points), tf.constant(codebook)).numpy()
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, expected)


# --- one training round --------------------------------------------------------------------------------


def make_round(learn_global: bool = False, local_epochs: int = 2, patience: int = 2):
    import tensorflow_federated as tff

    model = build_rqvae(CFG)
    optimizer = tff.learning.optimizers.build_adam(1e-2)
    specs = tuple(tf.TensorSpec(v.shape, v.dtype) for v in rt.trained_variables(model, learn_global))
    round_fn = tf.function(rt.build_round_fn(model, optimizer, CFG, local_epochs=local_epochs,
                                             learn_global_codebook=learn_global, reseed_patience=patience))
    state = dict(
        global_cb=tf.identity(global_codebook(model)),
        private=[tf.identity(v) for v in rt.private_variables(model)],
        opt_state=optimizer.initialize(specs),
        idle=tf.zeros([CFG.k_local]),
    )
    local_index = next(i for i, v in enumerate(rt.private_variables(model)) if v is local_codebook(model))
    return round_fn, state, local_index


def dataset(x: np.ndarray, batch_size: int = 64) -> tf.data.Dataset:
    return tf.data.Dataset.from_tensor_slices(collections.OrderedDict(x=x)).batch(batch_size)


def run(round_fn, state, ds, seed: int):
    private, opt_state, idle, global_cb, stats = round_fn(
        state["global_cb"], state["private"], state["opt_state"], state["idle"], ds, tf.constant(seed, tf.int32))
    return dict(global_cb=global_cb, private=private, opt_state=opt_state, idle=idle), stats


@pytest.mark.slow
@pytest.mark.parametrize("learn_global", [False, True], ids=["kmeans", "fedavg"])
def test_round_fn_loss_decreases_and_stats_count_the_last_epoch(learn_global: bool):
    x = clustered_x()
    ds = dataset(x)
    round_fn, state, _ = make_round(learn_global=learn_global, local_epochs=2)
    losses, initial_global = [], state["global_cb"].numpy()
    for r in range(4):
        state, stats = run(round_fn, state, ds, r)
        losses.append(float(stats["loss"]))
        # Statistics describe one epoch (the last), not local_epochs of them.
        assert float(stats["num_examples"]) == len(x)
        # Per-global-code statistics are what the kmeans rule sends; the fedavg rule skips them.
        assert float(tf.reduce_sum(stats["global_code_counts"])) == (0 if learn_global else len(x))
        assert float(tf.reduce_sum(stats["local_code_counts"])) == len(x)
        assert stats["global_code_sums"].shape == (CFG.k_global, CFG.latent_dim)
    assert all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0], losses
    moved = not np.allclose(state["global_cb"].numpy(), initial_global)
    assert moved == learn_global  # the global codebook moves locally only under the fedavg rule


@pytest.mark.slow
def test_round_fn_code_sums_are_the_latents_of_the_last_epoch():
    x = clustered_x(n=96)
    round_fn, state, _ = make_round(local_epochs=1)
    model = build_rqvae(CFG)  # replays the forward pass: one full batch, assignments before the step
    global_codebook(model).assign(state["global_cb"])
    for v, w in zip(rt.private_variables(model), state["private"]):
        v.assign(w)
    _, _, _, _, idx_g, _, z = model(x, training=False)
    _, stats = run(round_fn, state, dataset(x, batch_size=len(x)), 0)
    expected_counts = np.bincount(idx_g.numpy(), minlength=CFG.k_global)
    expected_sums = np.zeros((CFG.k_global, CFG.latent_dim), np.float32)
    np.add.at(expected_sums, idx_g.numpy(), z.numpy())
    np.testing.assert_array_equal(stats["global_code_counts"].numpy(), expected_counts)
    np.testing.assert_allclose(stats["global_code_sums"].numpy(), expected_sums, atol=1e-4)


@pytest.mark.slow
def test_dead_local_codes_are_reseeded_after_patience_rounds():
    x = clustered_x()
    ds = dataset(x)
    round_fn, state, li = make_round(local_epochs=1, patience=2)
    far = np.array([4, 5])
    local = state["private"][li].numpy()
    local[far] = 100.0  # nothing ever lands there: these codes are dead from the start
    state["private"][li] = tf.constant(local)

    state, stats = run(round_fn, state, ds, 1)
    after_one = state["private"][li].numpy()
    assert stats["local_code_counts"].numpy()[far].tolist() == [0.0, 0.0]
    np.testing.assert_array_equal(state["idle"].numpy()[far], [1.0, 1.0])  # idle, not yet at patience
    np.testing.assert_array_equal(after_one[far], 100.0)  # no gradient, no re-seed yet
    used = stats["local_code_counts"].numpy() > 0
    np.testing.assert_array_equal(state["idle"].numpy()[used], 0.0)

    state, stats = run(round_fn, state, ds, 2)
    after_two = state["private"][li].numpy()
    np.testing.assert_array_equal(state["idle"].numpy()[far], [0.0, 0.0])  # counter reset by the re-seed
    assert np.all(np.abs(after_two[far]) < 10.0), "dead codes were not moved onto residuals"


# --- codes end to end ----------------------------------------------------------------------------------


@pytest.mark.slow
def test_learn_codes_is_deterministic_for_a_fixed_seed(tff_context):
    from tff_fedmm.data.markets import load_markets
    from tff_fedmm.data.synthetic import SyntheticConfig
    from tff_fedmm.federated.codebook_process import CodebookStageConfig
    from tff_fedmm.models.cf import CFConfig
    from tff_fedmm.pipelines.codes_stage import CodesConfig, learn_codes

    market_set = load_markets("synthetic", synthetic=SyntheticConfig(
        num_markets=2, users_per_market=60, items_per_market=50, seed=3))
    cf = CFConfig(dim=8, epochs=2)
    rq = RQVAEConfig(input_dim=cf.dim + 2, latent_dim=4, hidden=16, k_global=6, k_local=3, seed=5)
    config = CodesConfig(cf=cf, codebook=CodebookStageConfig(rqvae=rq, local_epochs=1), rounds=2)

    first = learn_codes(market_set, config, federated=True)
    second = learn_codes(market_set, config, federated=True)
    assert set(first.codes) == set(second.codes) == set(market_set.names)
    for name in market_set.names:
        a, b = first.codes[name], second.codes[name]
        market = market_set.markets[name]
        assert len(a.user_global) == market.num_users and len(a.item_global) == market.num_items
        for field in ("user_global", "user_local", "item_global", "item_local"):
            np.testing.assert_array_equal(getattr(a, field), getattr(b, field), err_msg=f"{name}.{field}")
        assert len(np.unique(np.concatenate([a.user_global, a.item_global]))) > 1  # not a degenerate constant
    assert first.history == second.history


# --- level 1 on descriptors (strict mode, issue #12) ------------------------------------------------------

DCFG = RQVAEConfig(input_dim=12, latent_dim=4, hidden=16, k_global=5, k_local=6, seed=0, descriptor_dim=3)


def test_descriptor_level1_reads_only_flags_and_descriptors():
    """Level-1 codes must not move with the CF columns (market-specific) but must move with descriptors."""
    model = build_rqvae(DCFG)
    x = random_x(64, DCFG.input_dim).numpy()
    other_cf = x.copy()
    other_cf[:, :DCFG.input_dim - 5] = random_x(64, DCFG.input_dim - 5, seed=9).numpy()
    idx = lambda data: model(data, training=False)[4].numpy()  # noqa: E731
    np.testing.assert_array_equal(idx(x), idx(other_cf))
    other_desc = x.copy()
    other_desc[:, -3:] = random_x(64, 3, seed=8).numpy()
    assert not np.array_equal(idx(x), idx(other_desc))


def test_descriptor_anchor_map_is_frozen_identical_across_builds_and_never_trained():
    a, b = build_rqvae(DCFG), build_rqvae(DCFG)
    for name in ("private_anchor_hidden", "private_anchor_out"):
        for wa, wb in zip(a.get_layer(name).weights, b.get_layer(name).weights):
            np.testing.assert_array_equal(wa.numpy(), wb.numpy())
        assert not a.get_layer(name).trainable_weights
    anchor = {id(w) for n in ("private_anchor_hidden", "private_anchor_out") for w in a.get_layer(n).weights}
    assert not anchor & {id(v) for v in rt.trained_variables(a, learn_global_codebook=True)}


def test_descriptor_codebook_init_lands_on_the_level1_manifold():
    """Codes drawn through the anchor map are used; N(0, 1) codes mostly die (the reason for the init)."""
    from tff_fedmm.federated.codebook_process import descriptor_codebook_init

    model = build_rqvae(DCFG)
    x = random_x(400, DCFG.input_dim).numpy()
    x[:, -5:-3] = np.eye(2)[np.arange(400) % 2]
    z1 = model(x, training=False)[6]
    used = lambda codebook: len(np.unique(nearest_code(z1, codebook).numpy()))  # noqa: E731
    assert used(descriptor_codebook_init(DCFG)) >= used(tf.random.stateless_normal([5, 4], seed=[0, 1]))
    assert used(descriptor_codebook_init(DCFG)) >= 3
