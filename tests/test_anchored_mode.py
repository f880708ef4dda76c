"""Anchored mode (`--anchors public-items`): the agreed anchor list and its held-out share, the per-anchor
aggregates through the codebook's aggregator, the finalizer's consensus, the audit, and the pull itself."""

from __future__ import annotations

import collections

import numpy as np
import pytest

tff = pytest.importorskip("tensorflow_federated")

from tests.conftest import small_market_files  # noqa: E402
from tff_fedmm.data.anchors import held_out_pairs, public_anchors, recurring_products  # noqa: E402
from tff_fedmm.data.markets import load_markets  # noqa: E402
from tff_fedmm.federated import audit  # noqa: E402
from tff_fedmm.federated.codebook_aggregator import (  # noqa: E402
    GlobalCodebookFactory, build_codebook_finalizer, client_payload_type,
)
from tff_fedmm.federated.codebook_process import (  # noqa: E402
    CodebookStageConfig, build_codebook_process, codebook_of, data_type, initial_client_state, rqvae_dataset,
)
from tff_fedmm.models.rqvae import RQVAEConfig  # noqa: E402

K, D, A = 4, 3, 5
FLOAT = tff.TensorType(np.float32)
RQ = RQVAEConfig(input_dim=10, latent_dim=4, hidden=8, k_global=5, k_local=3)


@pytest.fixture(scope="module")
def three_markets(tmp_path_factory):
    directory = tmp_path_factory.mktemp("anchors")
    for name, text in small_market_files(["de", "fr", "mx"]).items():
        (directory / name).write_text(text)
    return load_markets(str(directory))


# --- the agreed list and the held-out share (no TFF) ---------------------------------------------------


def test_anchors_are_recurring_items_minus_a_seeded_held_out_share(three_markets):
    products = recurring_products(three_markets)
    split = public_anchors(three_markets, data_seed=0)
    held = {k for k, members in products.items() if split.held_out[members[0][0]][members[0][1]]}
    assert len(products) > 20 and set(split.keys) | held == set(products) and not set(split.keys) & held
    assert len(held) == round(0.3 * len(products))
    for key, members in products.items():  # one slot per product, in every market that carries it
        slots = {int(split.item_slot[m][i]) for m, i in members}
        assert slots == ({-1} if key in held else {split.keys.index(key)})
        assert {bool(split.held_out[m][i]) for m, i in members} == {key in held}
    for name, market in three_markets.markets.items():  # items in one market only: neither
        recurring = {i for members in products.values() for m, i in members if m == name}
        alone = np.setdiff1d(np.arange(market.num_items), list(recurring))
        assert (split.item_slot[name][alone] == -1).all() and not split.held_out[name][alone].any()


def test_held_out_share_follows_the_data_seed_only(three_markets):
    a, b, c = (public_anchors(three_markets, data_seed=s) for s in (0, 0, 1))
    assert a.keys == b.keys and a.keys != c.keys
    assert all(np.array_equal(a.held_out[n], b.held_out[n]) for n in a.held_out)


def test_hashed_slots_bound_the_upload(three_markets):
    split = public_anchors(three_markets, data_seed=0, max_slots=8)
    assert len(split.keys) > 8 and split.num_slots == 8
    assert all(s.max() < 8 for s in split.item_slot.values())
    users = three_markets.markets["de"].num_users
    rows = split.row_slots("de", users)
    assert (rows[:users] == -1).all() and np.array_equal(rows[users:], split.item_slot["de"])


# --- aggregator, finalizer, audit ------------------------------------------------------------------------


def _payloads(rule):
    rng = np.random.default_rng(3)
    out = []
    for present in ([1, 1, 0, 0, 0], [1, 0, 1, 0, 0], [0, 0, 0, 0, 0]):
        counts = np.array(present, np.float32)
        means = rng.normal(size=(A, D)).astype(np.float32) * counts[:, None]
        base = (collections.OrderedDict(codebook_update=np.zeros((K, D), np.float32)) if rule == "fedavg" else
                collections.OrderedDict(code_sums=np.ones((K, D), np.float32), code_counts=np.ones(K, np.float32)))
        out.append(collections.OrderedDict(**base, anchor_means=means, anchor_counts=counts))
    return out


@pytest.mark.usefixtures("tff_context")
@pytest.mark.parametrize("rule", ["fedavg", "kmeans"])
def test_consensus_is_the_mean_over_markets_carrying_the_anchor_and_unsent_slots_keep_theirs(rule):
    payloads = _payloads(rule)
    process = GlobalCodebookFactory(rule).create(client_payload_type(rule, K, D, A), FLOAT)
    result = process.next(process.initialize(), payloads, [1.0, 1.0, 1.0]).result
    means = [p["anchor_means"] for p in payloads]
    consensus = np.asarray(result["anchor_consensus"])
    np.testing.assert_allclose(consensus[0], (means[0][0] + means[1][0]) / 2, rtol=1e-5)
    np.testing.assert_allclose(consensus[1], means[0][1], rtol=1e-5)
    np.testing.assert_allclose(consensus[2], means[1][2], rtol=1e-5)
    finalizer = build_codebook_finalizer(K, D, rule, A)
    old = collections.OrderedDict(codebook=np.zeros((K, D), np.float32),
                                  anchor_consensus=np.full((A, D), 7.0, np.float32),
                                  anchor_known=np.array([0, 0, 0, 1, 0], np.float32))
    merged = finalizer.next(finalizer.initialize(), old, result).result
    np.testing.assert_allclose(merged["anchor_consensus"][:3], consensus[:3], rtol=1e-6)
    np.testing.assert_array_equal(merged["anchor_consensus"][3:], old["anchor_consensus"][3:])
    np.testing.assert_array_equal(merged["anchor_known"], [1, 1, 1, 1, 0])


def test_audit_names_the_per_anchor_aggregates_and_strict_audit_rejects_them():
    process = build_codebook_process(CodebookStageConfig(rqvae=RQ, rule="fedavg", anchors=A))
    crossings = audit.audit_codebook_process(process, "fedavg", RQ.k_global, RQ.latent_dim, anchors=A)
    assert any("anchor_means=float32[5,4]" in c.text and "anchor_counts=float32[5]" in c.text for c in crossings)
    fields = audit.codebook_payload_fields("fedavg", RQ.k_global, RQ.latent_dim, A)
    assert fields[1:] == [("anchor_means", "float32[5,4]", A * RQ.latent_dim * 4), ("anchor_counts", "float32[5]", A * 4)]
    with pytest.raises(audit.PrivacyAuditError):  # what strict mode allows does not include them
        audit.audit_codebook_process(process, "fedavg", RQ.k_global, RQ.latent_dim)


def test_strict_mode_reads_no_anchor_slot():
    """Without anchors a market's dataset has no slot column: no key-derived value enters the process."""
    strict = build_codebook_process(CodebookStageConfig(rqvae=RQ))
    assert "slot" not in str(strict.next.type_signature.parameter[2])
    assert "slot" in str(data_type(CodebookStageConfig(rqvae=RQ, anchors=A)))


# --- the pull, run --------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.usefixtures("tff_context")
def test_the_pull_brings_anchor_latents_of_two_markets_together():
    """Two markets with unrelated inputs share 6 anchors (item rows 0-5 of each). After a few rounds, their
    anchors' level-1 latents are closer across markets with the pull than without it."""
    rng = np.random.default_rng(0)
    xs = [rng.normal(size=(60, RQ.input_dim)).astype(np.float32) for _ in range(2)]
    slots = np.full(60, -1, np.int32)
    slots[:6] = np.arange(6)

    def distance(weight: float) -> float:
        config = CodebookStageConfig(rqvae=RQ, rule="kmeans", anchors=6, anchor_weight=weight)
        process = build_codebook_process(config)
        server = process.initialize()
        clients = [initial_client_state(config, i, server.global_model_weights, x) for i, x in enumerate(xs)]
        for r in range(6):
            data = [rqvae_dataset(x, batch_size=20, seed=r, slots=slots) for x in xs]
            server, clients, _ = process.next(server, clients, data)
        from tff_fedmm.training import rqvae as rt
        from tff_fedmm.models.rqvae import build_rqvae, global_codebook

        latents = []
        for client, x in zip(clients, xs):
            model = build_rqvae(RQ)
            global_codebook(model).assign(codebook_of(server.global_model_weights))
            for v, w in zip(rt.private_variables(model), client["private"]):
                v.assign(w)
            latents.append(model(x[:6], training=False)[6].numpy())
        return float(np.square(latents[0] - latents[1]).sum(1).mean())

    assert distance(5.0) < 0.5 * distance(0.0)


# --- the pipeline and the flags -------------------------------------------------------------------------


def test_make_config_sets_anchored_mode_and_refuses_it_with_descriptors():
    from tff_fedmm.api import make_config
    from tff_fedmm.errors import UsageError

    codes = make_config(3, data_seed=7, anchors="public-items", anchor_weight=2.5).codes
    assert (codes.anchors, codes.data_seed, codes.codebook.anchor_weight) == ("public-items", 7, 2.5)
    assert make_config().codes.anchors == "none"  # strict stays the default
    with pytest.raises(UsageError, match="--level1 encoder"):
        make_config(anchors="public-items", level1="descriptors")
    with pytest.raises(UsageError, match="--anchor-weight"):
        make_config(anchors="public-items", anchor_weight=-1.0)


@pytest.mark.slow
@pytest.mark.usefixtures("tff_context")
def test_anchored_codes_without_pull_are_the_strict_codes_and_the_pull_changes_them():
    """Weight 0 sends the aggregates but trains exactly as strict mode (same shuffles, same codes); a
    positive weight changes the codes: the pull acts through the pipeline."""
    from dataclasses import replace

    from tff_fedmm.data.synthetic import SyntheticConfig
    from tff_fedmm.pipelines.codes_stage import CodesConfig, cf_inputs, learn_codes

    markets = load_markets("synthetic", ["m0", "m1"], SyntheticConfig(users_per_market=60, items_per_market=50))
    base = CodesConfig(rounds=2)
    base = replace(base, cf=replace(base.cf, epochs=2))
    inputs = cf_inputs(markets, base.cf)

    def codes(anchors: str, weight: float):
        config = replace(base, anchors=anchors, codebook=replace(base.codebook, anchor_weight=weight))
        return learn_codes(markets, config, federated=True, inputs=inputs).codes

    strict, control, pulled = codes("none", 1.0), codes("public-items", 0.0), codes("public-items", 5.0)
    for name in markets.names:
        np.testing.assert_array_equal(strict[name].item_global, control[name].item_global)
    assert any(not np.array_equal(strict[n].item_local, pulled[n].item_local)
               or not np.array_equal(strict[n].item_global, pulled[n].item_global) for n in markets.names)


@pytest.mark.slow
@pytest.mark.usefixtures("tff_context")
def test_anchored_level1_aligns_recurring_items_it_was_never_told_about():
    """3 synthetic markets, 8 rounds: on the held-out recurring items (never anchors), level-1 agreement
    is > 2x chance with the pull and below 1.5x without it (the control, which trains as strict mode).
    Measured when written: 2.99x and 0.80x."""
    from dataclasses import replace

    from tff_fedmm.eval.alignment import pairwise_alignment
    from tff_fedmm.pipelines.codes_stage import CodesConfig, cf_inputs, learn_codes

    markets = load_markets("synthetic", ["m0", "m1", "m2"])
    base = CodesConfig(rounds=8, anchors="public-items")
    inputs = cf_inputs(markets, base.cf)
    same = held_out_pairs(markets, public_anchors(markets, base.data_seed))

    def ratio(weight: float) -> float:
        config = replace(base, codebook=replace(base.codebook, anchor_weight=weight))
        codes = learn_codes(markets, config, federated=True, inputs=inputs).codes
        pairs = pairwise_alignment(same, {n: c.item_global for n, c in codes.items()}, base.codebook.rqvae.k_global)
        n = sum(p["pairs"] for p in pairs)
        return sum(p["agreement"] * p["pairs"] for p in pairs) / sum(p["chance"] * p["pairs"] for p in pairs) \
            if n else float("nan")

    assert len(same) >= 90
    assert ratio(0.0) < 1.5 and ratio(1.0) > 2.0


def test_fedper_anchored_field_is_the_anchor_slot_plus_one(three_markets):
    from tff_fedmm.pipelines.compare import anchor_fields

    split = public_anchors(three_markets, data_seed=0)
    fields = anchor_fields(three_markets, split)
    for name, market in three_markets.markets.items():
        f = fields[name]
        assert (f.user_global == 0).all() and len(f.user_global) == market.num_users
        np.testing.assert_array_equal(f.item_global, split.item_slot[name] + 1)
        assert (f.item_global[split.held_out[name]] == 0).all()  # held-out items get no shared row
        assert f.item_global.max() <= split.num_slots


@pytest.mark.slow
@pytest.mark.usefixtures("tff_context")
def test_anchor_aggregates_go_through_secure_sum_and_match_the_plain_run():
    """The per-anchor aggregates ride the codebook's aggregator stack: with --secure-agg they cross only
    as secure sums and the consensus matches the plain run's (up to the secure sum's quantisation)."""
    from tff_fedmm.federated import privacy as dp

    rng = np.random.default_rng(1)
    xs = [rng.normal(size=(40, RQ.input_dim)).astype(np.float32) for _ in range(2)]
    slots = np.full(40, -1, np.int32)
    slots[:4] = np.arange(4)
    config = CodebookStageConfig(rqvae=RQ, anchors=4)

    def run(privacy):
        process = build_codebook_process(config, dp.codebook_aggregator("fedavg", privacy, 2, seed=3))
        server = process.initialize()
        clients = [initial_client_state(config, i, server.global_model_weights, x) for i, x in enumerate(xs)]
        for r in range(2):
            server, clients, _ = process.next(server, clients,
                                              [rqvae_dataset(x, batch_size=20, seed=r, slots=slots) for x in xs])
        return process, server.global_model_weights

    _, plain = run(dp.PrivacyConfig())
    process, secure = run(dp.PrivacyConfig(secure_agg=True))
    crossings = audit.audit_codebook_process(process, "fedavg", RQ.k_global, RQ.latent_dim, secure=True, anchors=4)
    assert {c.uri for c in crossings} == {"federated_secure_sum_bitwidth", "federated_sum"}
    np.testing.assert_array_equal(plain["anchor_known"], np.ones(4))
    np.testing.assert_allclose(secure["anchor_consensus"], plain["anchor_consensus"], atol=1e-4)
