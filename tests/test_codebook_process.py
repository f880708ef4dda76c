"""The codebook stage on TFF, executed: aggregator arithmetic for both rules, the finalizer, the broadcast,
and the stateful process over several rounds with per-market state carried from round to round."""

from __future__ import annotations

import collections

import numpy as np
import pytest

tff = pytest.importorskip("tensorflow_federated")

from tff_fedmm.federated.codebook_aggregator import (  # noqa: E402
    RULES, GlobalCodebookFactory, build_codebook_finalizer, client_payload_type,
)
from tff_fedmm.federated.codebook_process import (  # noqa: E402
    CodebookStageConfig, build_codebook_process, initial_client_state, rqvae_dataset,
)
from tff_fedmm.training import rqvae as rt  # noqa: E402
from tff_fedmm.models.rqvae import RQVAEConfig, build_rqvae, global_codebook, local_codebook  # noqa: E402

pytestmark = pytest.mark.usefixtures("tff_context")

K, D = 4, 3
FLOAT = tff.TensorType(np.float32)


def rng_array(seed: int, *shape: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=shape).astype(np.float32)


# --- aggregator and finalizer, on hand-made inputs ------------------------------------------------------


def test_fedavg_rule_makes_the_example_weighted_mean_codebook():
    process = GlobalCodebookFactory("fedavg").create(client_payload_type("fedavg", K, D), FLOAT)
    finalizer = build_codebook_finalizer(K, D, "fedavg")
    current = rng_array(99, K, D)
    codebooks = [rng_array(i, K, D) for i in range(3)]
    weights = [1.0, 3.0, 6.0]
    output = process.next(process.initialize(),
                          [collections.OrderedDict(codebook_update=c - current) for c in codebooks], weights)
    expected = sum(w * c for w, c in zip(weights, codebooks)) / sum(weights)
    assert not np.allclose(expected, np.mean(codebooks, axis=0), atol=1e-3)  # the weights matter here
    np.testing.assert_allclose(output.result["estimate"], expected - current, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(output.result["code_counts"], np.ones(K))
    merged = finalizer.next(finalizer.initialize(), current, output.result).result
    np.testing.assert_allclose(merged, expected, rtol=1e-5, atol=1e-5)


def test_kmeans_rule_is_summed_latents_over_summed_counts_per_code():
    process = GlobalCodebookFactory("kmeans").create(client_payload_type("kmeans", K, D), FLOAT)
    sums = [rng_array(10 + i, K, D) for i in range(3)]
    counts = [np.array([2, 0, 1, 0], np.float32), np.array([3, 5, 0, 0], np.float32),
              np.array([1, 1, 0, 0], np.float32)]
    payloads = [collections.OrderedDict(code_sums=s, code_counts=c) for s, c in zip(sums, counts)]
    first = process.next(process.initialize(), payloads, [1.0, 1.0, 1.0])
    total_sums, total_counts = sum(sums), sum(counts)
    expected = total_sums / np.maximum(total_counts, 1)[:, None]
    expected[total_counts == 0] = 0.0  # nobody used code 3: no estimate (the finalizer keeps the old one)
    np.testing.assert_allclose(first.result["estimate"], expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(first.result["code_counts"], total_counts)
    # Per code, not per market: market weights (numbers of examples) play no part.
    second = process.next(process.initialize(), payloads, [100.0, 1.0, 7.0])
    np.testing.assert_allclose(second.result["estimate"], first.result["estimate"], rtol=1e-6)


def test_finalizer_keeps_unused_codes_and_takes_the_rest():
    finalizer = build_codebook_finalizer(K, D, "kmeans")
    current, aggregated = rng_array(20, K, D), rng_array(21, K, D)
    counts = np.array([0, 3, 0, 1], np.float32)
    output = finalizer.next(finalizer.initialize(), current,
                            collections.OrderedDict(estimate=aggregated, code_counts=counts))
    result = np.asarray(output.result)
    np.testing.assert_array_equal(result[[0, 2]], current[[0, 2]])
    np.testing.assert_array_equal(result[[1, 3]], aggregated[[1, 3]])
    assert float(output.measurements["global_codes_updated"]) == pytest.approx(0.5)


def test_kmeans_rule_and_finalizer_leave_an_unused_code_alone_even_with_zero_sums():
    process = GlobalCodebookFactory("kmeans").create(client_payload_type("kmeans", K, D), FLOAT)
    finalizer = build_codebook_finalizer(K, D, "kmeans")
    current = rng_array(30, K, D)
    counts = np.array([1, 0, 2, 0], np.float32)
    payload = collections.OrderedDict(code_sums=rng_array(31, K, D) * counts[:, None], code_counts=counts)
    aggregated = process.next(process.initialize(), [payload, payload], [1.0, 1.0]).result
    result = np.asarray(finalizer.next(finalizer.initialize(), current, aggregated).result)
    np.testing.assert_array_equal(result[[1, 3]], current[[1, 3]])
    np.testing.assert_allclose(result[[0, 2]], payload["code_sums"][[0, 2]] / counts[[0, 2], None], rtol=1e-6)


# --- broadcast -----------------------------------------------------------------------------------------


def test_every_market_receives_the_server_codebook():
    codebook_type = tff.TensorType(np.float32, [K, D])
    broadcast = tff.learning.templates.build_broadcast_process(codebook_type)

    @tff.tensorflow.computation(codebook_type, np.int32)
    def received(codebook, market):
        return codebook, market

    @tff.federated_computation(broadcast.initialize.type_signature.result,
                               tff.FederatedType(codebook_type, tff.SERVER),
                               tff.FederatedType(np.int32, tff.CLIENTS))
    def distribute(state, codebook, markets):
        return tff.federated_map(received, (broadcast.next(state, codebook).result, markets))

    server = rng_array(40, K, D)
    per_market = distribute(broadcast.initialize(), server, [7, 8, 9])
    assert [int(m) for _, m in per_market] == [7, 8, 9]
    for codebook, _ in per_market:
        np.testing.assert_array_equal(codebook, server)


# --- the stateful process ------------------------------------------------------------------------------

RQ = RQVAEConfig(input_dim=6, latent_dim=3, hidden=8, k_global=12, k_local=3, seed=0)
MARKET_SIZES = (30, 40, 50)
ROUNDS = 3


def market_inputs() -> list[np.ndarray]:
    """Each market its own clusters, so the private codebooks and encoders have something distinct to fit."""
    out = []
    for m, n in enumerate(MARKET_SIZES):
        rng = np.random.default_rng(100 + m)
        centers = rng.normal(scale=2.0, size=(3, RQ.input_dim))
        out.append((centers[rng.integers(0, 3, n)] + 0.2 * rng.normal(size=(n, RQ.input_dim))).astype(np.float32))
    return out


def forward_stats(codebook: np.ndarray, client: dict, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-global-code (sums, counts) of the market's latents under the round's input weights."""
    model = build_rqvae(RQ)
    global_codebook(model).assign(codebook)
    for v, w in zip(rt.private_variables(model), client["private"]):
        v.assign(w)
    _, _, _, _, idx, _, z = model(x, training=False)
    sums = np.zeros((RQ.k_global, RQ.latent_dim), np.float64)
    np.add.at(sums, idx.numpy(), z.numpy())
    return sums, np.bincount(idx.numpy(), minlength=RQ.k_global).astype(np.float64)


def local_index() -> int:
    model = build_rqvae(RQ)
    return next(i for i, v in enumerate(rt.private_variables(model)) if v is local_codebook(model))


@pytest.fixture(scope="module", params=RULES)
def rounds(request, tff_context):
    """Runs ROUNDS rounds with 3 markets (passed in a shuffled order); records every round's in and out."""
    rule = request.param
    config = CodebookStageConfig(rqvae=RQ, rule=rule, local_epochs=1, learning_rate=1e-2, reseed_patience=10)
    process = build_codebook_process(config)
    state = process.initialize()
    xs = market_inputs()
    order = [2, 0, 1]  # list position != client_index
    clients = [initial_client_state(config, i, state.global_model_weights, xs[i]) for i in order]
    data_x = [xs[i] for i in order]
    records = []
    for r in range(ROUNDS):
        # One batch per market: the round's statistics are those of the input weights' forward pass.
        data = [rqvae_dataset(x, batch_size=len(x), seed=r) for x in data_x]
        new_state, new_clients, metrics = process.next(state, clients, data)
        records.append(dict(state=state, clients=clients, new_state=new_state, new_clients=new_clients,
                            metrics=metrics))
        state, clients = new_state, new_clients
    return rule, order, data_x, records


@pytest.mark.slow
def test_private_weights_and_local_codebook_change_every_round(rounds):
    _, _, _, records = rounds
    li = local_index()
    for r, rec in enumerate(records):
        for before, after in zip(rec["clients"], rec["new_clients"]):
            assert len(before["private"]) == len(after["private"])
            for j, (b, a) in enumerate(zip(before["private"], after["private"])):
                assert not np.array_equal(b, a), f"round {r + 1}: private tensor {j} came back unchanged"
            assert not np.array_equal(before["private"][li], after["private"][li])


@pytest.mark.slow
def test_client_state_carries_over_rounds(rounds):
    _, order, _, records = rounds
    for r, rec in enumerate(records):
        assert [int(c["client_index"]) for c in rec["new_clients"]] == order
        assert [int(c["round_num"]) for c in rec["new_clients"]] == [r + 1] * len(order)
        # One batch per round: the optimizer's step count continues instead of restarting.
        assert [int(c["optimizer_state"]["step"]) for c in rec["new_clients"]] == [r + 1] * len(order)
        if r:
            previous = records[r - 1]["new_clients"]
            for fed, came_out in zip(rec["clients"], previous):
                for a, b in zip(fed["private"], came_out["private"]):
                    np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_local_codebooks_differ_across_markets(rounds):
    _, _, _, records = rounds
    li = local_index()
    local = [np.asarray(c["private"][li]) for c in records[-1]["new_clients"]]
    assert local[0].shape == (RQ.k_local, RQ.latent_dim)
    for a in range(len(local)):
        for b in range(a + 1, len(local)):
            assert not np.allclose(local[a], local[b], atol=1e-3)


@pytest.mark.slow
def test_server_codebook_under_the_rule(rounds):
    rule, _, data_x, records = rounds
    total = sum(len(x) for x in data_x)
    for r, rec in enumerate(records):
        before = np.asarray(rec["state"].global_model_weights)
        after = np.asarray(rec["new_state"].global_model_weights)
        assert after.shape == (RQ.k_global, RQ.latent_dim)
        assert float(rec["metrics"]["client_work"]["num_examples"]) == total
        if rule == "fedavg":
            assert not np.allclose(before, after)
            assert float(rec["metrics"]["finalizer"]["global_codes_updated"]) == 1.0
            continue
        stats = [forward_stats(before, c, x) for c, x in zip(rec["clients"], data_x)]
        sums, counts = sum(s for s, _ in stats), sum(c for _, c in stats)
        used = counts > 0
        assert used.any() and not used.all(), "precondition: some codes used and some unused this round"
        np.testing.assert_array_equal(after[~used], before[~used])  # untouched codes keep their value
        assert np.all(np.any(after[used] != before[used], axis=1))
        # The federated k-means step: each used code is the mean of every market's latents assigned to it.
        np.testing.assert_allclose(after[used], sums[used] / counts[used, None], rtol=1e-4, atol=1e-5)
        assert float(rec["metrics"]["finalizer"]["global_codes_updated"]) == pytest.approx(used.mean())
