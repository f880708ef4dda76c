from collections import OrderedDict

import numpy as np
import pytest
import tensorflow as tf

from tff_fedmm.eval.metrics import auc
from tff_fedmm.models.ctr import build_ctr_model, input_names, shared_and_private_variables

NUM_USERS, NUM_ITEMS, GROUPS, K_LOCAL = 300, 200, 4, 8


def planted_clicks(seed: int = 0, n: int = 30_000) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Random (user, item) pairs; click iff user group == item group, 5% labels flipped.

    Global codes are the groups (informative), local codes are random (noise), so the ID-only
    model must discover the groups from co-occurrence while the coded model can read them.
    """
    rng = np.random.default_rng(seed)
    user_group, item_group = rng.integers(0, GROUPS, NUM_USERS), rng.integers(0, GROUPS, NUM_ITEMS)
    user_lcode, item_lcode = rng.integers(0, K_LOCAL, NUM_USERS), rng.integers(0, K_LOCAL, NUM_ITEMS)
    users, items = rng.integers(0, NUM_USERS, n), rng.integers(0, NUM_ITEMS, n)
    labels = (user_group[users] == item_group[items]) ^ (rng.random(n) < 0.05)
    features = {
        "user": users, "item": items,
        "user_gcode": user_group[users], "item_gcode": item_group[items],
        "user_lcode": user_lcode[users], "item_lcode": item_lcode[items],
    }
    return {k: v.astype(np.int32) for k, v in features.items()}, labels.astype(np.float32)


@pytest.mark.slow
@pytest.mark.parametrize("backbone", ["deepfm", "dcnv2"])
@pytest.mark.parametrize("codes", [False, True], ids=["ids_only", "with_codes"])
def test_one_epoch_learns_planted_signal(backbone: str, codes: bool):
    tf.keras.utils.set_random_seed(1)
    k_global, k_local = (GROUPS, K_LOCAL) if codes else (0, 0)
    features, labels = planted_clicks()
    names = input_names(k_global, k_local)
    split = int(0.8 * len(labels))
    train = {k: features[k][:split] for k in names}
    test = {k: features[k][split:] for k in names}
    model = build_ctr_model(backbone, num_users=NUM_USERS, num_items=NUM_ITEMS, k_global=k_global, k_local=k_local)
    model.compile(optimizer=tf.keras.optimizers.Adam(0.01), loss=tf.keras.losses.BinaryCrossentropy())
    model.fit(train, labels[:split], batch_size=128, epochs=1, verbose=0)  # y is (batch,), output (batch, 1)
    probs = model.predict(test, batch_size=1024, verbose=0)
    assert probs.shape == (len(labels) - split, 1) and probs.dtype == np.float32
    assert auc(labels[split:], probs[:, 0]) > 0.7


def test_input_names_follow_code_sizes():
    model = build_ctr_model("deepfm", num_users=5, num_items=5, k_local=3)
    assert set(model.input) == set(input_names(0, 3)) == {"user", "item", "user_lcode", "item_lcode"}
    assert all(t.dtype == tf.int32 and t.shape.rank == 1 for t in model.input.values())


@pytest.mark.parametrize("backbone", ["deepfm", "dcnv2"])
def test_shared_private_split_names(backbone: str):
    model = build_ctr_model(backbone, num_users=10, num_items=20, k_global=4, k_local=8, dropout=0.1)
    shared, private = shared_and_private_variables(model)
    assert len(shared) + len(private) == len(model.trainable_variables)
    private_layers = {v.name.split("/")[0] for v in private}
    shared_layers = {v.name.split("/")[0] for v in shared}
    expected_private = {
        "private_user_id_embedding", "private_item_id_embedding",
        "private_user_local_code_embedding", "private_item_local_code_embedding",
    }
    expected_shared = {"shared_user_global_code_embedding", "shared_item_global_code_embedding", "shared_dnn_0"}
    if backbone == "deepfm":
        fields = ("user_id", "item_id", "user_local_code", "item_local_code")
        expected_private |= {f"private_{f}_first_order" for f in fields}
        expected_shared |= {"shared_user_global_code_first_order", "shared_item_global_code_first_order"}
    else:
        expected_shared.add("shared_cross")
    assert private_layers == expected_private
    assert expected_shared <= shared_layers
    assert all(layer.name.startswith(("shared_", "private_")) for layer in model.layers if layer.weights)


def test_split_holds_in_graph_mode_even_when_built_twice():
    """TFF builds models inside a tf.Graph, sometimes twice; Keras then suffixes the scopes (`_1`)."""
    with tf.Graph().as_default():
        first = build_ctr_model("dcnv2", num_users=10, num_items=20, k_global=4, k_local=8)
        second = build_ctr_model("dcnv2", num_users=10, num_items=20, k_global=4, k_local=8)
        shared, private = shared_and_private_variables(first)
        assert {v.name for v in private} == {
            "private_user_id_embedding/embeddings:0", "private_item_id_embedding/embeddings:0",
            "private_user_local_code_embedding/embeddings:0", "private_item_local_code_embedding/embeddings:0",
        }
        assert "shared_cross/kernel_0:0" in {v.name for v in shared}
        shared_2, private_2 = shared_and_private_variables(second)
        assert (len(shared_2), len(private_2)) == (len(shared), len(private))
        assert "private_user_id_embedding_1/embeddings:0" in {v.name for v in private_2}


def test_misnamed_layer_is_rejected():
    user = tf.keras.Input(shape=(), dtype=tf.int32, name="user")
    out = tf.keras.layers.Dense(1)(tf.keras.layers.Embedding(5, 2, name="private_e")(user))
    with pytest.raises(ValueError, match="dense"):
        shared_and_private_variables(tf.keras.Model({"user": user}, out))


def test_unknown_backbone_lists_allowed():
    with pytest.raises(ValueError, match="deepfm, dcnv2"):
        build_ctr_model("wide_deep", num_users=1, num_items=1)


def test_config_round_trip():
    model = build_ctr_model("deepfm", num_users=10, num_items=20, k_global=4)
    clone = tf.keras.Model.from_config(model.get_config())
    assert [w.shape for w in clone.weights] == [w.shape for w in model.weights]


@pytest.mark.slow
def test_tff_from_keras_model_accepts_model_and_runs_a_round():
    import tensorflow_federated as tff

    features, labels = planted_clicks(n=64)
    names = input_names(GROUPS, K_LOCAL)
    dataset = tf.data.Dataset.from_tensor_slices(
        OrderedDict(x=OrderedDict((k, features[k]) for k in names), y=labels)
    ).batch(32)

    def model_fn() -> tff.learning.models.VariableModel:
        return tff.learning.models.from_keras_model(
            build_ctr_model("dcnv2", num_users=NUM_USERS, num_items=NUM_ITEMS, k_global=GROUPS, k_local=K_LOCAL),
            loss=tf.keras.losses.BinaryCrossentropy(),
            input_spec=dataset.element_spec,
            metrics=[tf.keras.metrics.AUC()],
        )

    tff_model = model_fn()
    output = tff_model.forward_pass(next(iter(dataset)))
    assert output.predictions.shape == (32, 1)
    assert np.isfinite(output.loss.numpy())
    shared_names = {v.name for v in tff_model.trainable_variables if v.name.startswith("shared_")}
    assert "shared_user_global_code_embedding/embeddings:0" in shared_names

    # One FedAvg round: the model must also survive TFF's graph tracing and serialization.
    from tff_fedmm.federated.context import install_execution_context

    install_execution_context()
    process = tff.learning.algorithms.build_weighted_fed_avg(
        model_fn, client_optimizer_fn=tff.learning.optimizers.build_sgdm(0.1)
    )
    result = process.next(process.initialize(), [dataset, dataset.take(1)])
    train_metrics = result.metrics["client_work"]["train"]
    assert train_metrics["num_examples"] == 96 and np.isfinite(train_metrics["loss"])
