"""Partial FedAvg on TFF, executed with a tiny coded CTR model: the server's shared weights are the
example-weighted mean of what each market trained, private weights stay per market and carry over
rounds, and `market_model` puts the two together."""

from __future__ import annotations

import numpy as np
import pytest

tff = pytest.importorskip("tensorflow_federated")

from tff_fedmm.data.pipelines import to_dataset  # noqa: E402
from tff_fedmm.federated import partial_fedavg as pf  # noqa: E402
from tff_fedmm.models.ctr import build_ctr_model  # noqa: E402

pytestmark = [pytest.mark.usefixtures("tff_context"), pytest.mark.slow]

USERS, ITEMS, KG, KL = 7, 9, 3, 2
SIZES = (20, 50, 90)  # unequal, so a weighted and an unweighted mean differ
BATCH = 16
CONFIG = pf.PartialFedAvgConfig(local_epochs=1, client_learning_rate=0.05)


def model_fn():
    return build_ctr_model("deepfm", num_users=USERS, num_items=ITEMS, k_global=KG, k_local=KL, embed_dim=4,
                           hidden=(8,))


def examples(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    features = {"user": rng.integers(0, USERS, n), "item": rng.integers(0, ITEMS, n),
                "user_gcode": rng.integers(0, KG, n), "item_gcode": rng.integers(0, KG, n),
                "user_lcode": rng.integers(0, KL, n), "item_lcode": rng.integers(0, KL, n)}
    out = {k: v.astype(np.int32) for k, v in features.items()}
    # A market-specific rule, so markets pull their weights in different directions.
    out["label"] = ((out["user"] + seed * out["item"]) % 3 == 0).astype(np.float32)
    return out


def datasets(round_num: int = 0, sizes=SIZES):
    return [to_dataset(examples(n, seed=10 * i + 1), batch_size=BATCH, shuffle_seed=round_num)
            for i, n in enumerate(sizes)]


def arrays(structure) -> list[np.ndarray]:
    return [np.asarray(t) for t in structure]


@pytest.fixture(scope="module")
def process(tff_context):
    return pf.build_partial_fedavg_process(model_fn, datasets()[0].element_spec, CONFIG, seed=0)


@pytest.fixture(scope="module")
def first_round(process):
    server = process.initialize()
    clients = [pf.initial_client_state(model_fn, CONFIG, i, seed=100 + i) for i in range(len(SIZES))]
    new_server, new_clients, metrics = process.next(server, clients, datasets())
    return server, clients, new_server, new_clients, metrics


def test_server_takes_the_example_weighted_mean_of_each_markets_trained_shared_weights(process, first_round):
    server, clients, new_server, new_clients, metrics = first_round
    before = arrays(server.global_model_weights.trainable)
    trained, alone_clients = [], []
    for client, data in zip(clients, datasets()):
        # With one market, the server's new shared weights are exactly what that market trained.
        alone, (alone_client,), _ = process.next(server, [client], [data])
        trained.append(arrays(alone.global_model_weights.trainable))
        alone_clients.append(alone_client)
    after = arrays(new_server.global_model_weights.trainable)
    weights = np.array(SIZES, np.float64) / sum(SIZES)
    assert len(after) == len(before) == len(trained[0]) > 0
    for j, (b, a) in enumerate(zip(before, after)):
        per_market = [t[j] for t in trained]
        assert all(not np.array_equal(t, b) for t in per_market), f"shared tensor {j}: a market did not train it"
        expected = sum(w * t for w, t in zip(weights, per_market))
        np.testing.assert_allclose(a, expected, rtol=1e-5, atol=1e-6, err_msg=f"shared tensor {j}")
    unweighted = [np.mean([t[j] for t in trained], axis=0) for j in range(len(after))]
    assert any(not np.allclose(a, u, atol=1e-4) for a, u in zip(after, unweighted))
    # A market's client work does not depend on who else takes part.
    for together, alone in zip(new_clients, alone_clients):
        for a, b in zip(together["private"], alone["private"]):
            np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    assert float(metrics["client_work"]["num_examples"]) == sum(SIZES)


def test_private_weights_differ_across_markets_and_persist_across_rounds(process, first_round):
    _, clients, server, round_one, _ = first_round
    steps = [-(-n // BATCH) for n in SIZES]
    assert [int(c["client_index"]) for c in round_one] == [0, 1, 2]
    assert [int(c["optimizer_state"]["step"]) for c in round_one] == steps
    for before, after in zip(clients, round_one):
        for b, a in zip(before["private"], after["private"]):
            assert not np.array_equal(b, a), "round one returned a market's initial private weights"
    privates = [arrays(c["private"]) for c in round_one]
    for a in range(len(privates)):
        for b in range(a + 1, len(privates)):
            assert any(not np.allclose(x, y) for x, y in zip(privates[a], privates[b]))

    # Round two starts from round one's client state. Market 0 has no data this round: its private
    # weights and optimizer state must come back exactly as it sent them in (kept, not re-initialised).
    data = datasets(round_num=1, sizes=(0, SIZES[1], SIZES[2]))
    _, round_two, _ = process.next(server, round_one, data)
    assert [int(c["client_index"]) for c in round_two] == [0, 1, 2]
    for a, b in zip(round_two[0]["private"], round_one[0]["private"]):
        np.testing.assert_array_equal(a, b)
    assert int(round_two[0]["optimizer_state"]["step"]) == steps[0]
    for i in (1, 2):
        assert int(round_two[i]["optimizer_state"]["step"]) == 2 * steps[i]  # continues, does not restart
        for a, b in zip(round_two[i]["private"], round_one[i]["private"]):
            assert not np.array_equal(a, b)


def test_market_model_composes_server_shared_and_market_private_weights(first_round):
    _, _, server, clients, _ = first_round
    shared = arrays(server.global_model_weights.trainable)
    probe = {k: v for k, v in examples(40, seed=99).items() if k != "label"}
    predictions = []
    for client in clients:
        model = pf.market_model(model_fn, server.global_model_weights, client)
        covered = {id(v) for v in pf.shared_weights(model) + pf.private_weights(model)}
        assert all(id(v) in covered for v in model.weights), "a variable is left at its random initial value"
        for v, w in zip(pf.shared_weights(model), shared):
            np.testing.assert_array_equal(v.numpy(), w)
        for v, w in zip(pf.private_weights(model), client["private"]):
            np.testing.assert_array_equal(v.numpy(), w)
        predictions.append(model.predict(probe, verbose=0)[:, 0])
    # Same shared weights, different private ones: the markets' models disagree.
    assert not np.allclose(predictions[0], predictions[1], atol=1e-4)
