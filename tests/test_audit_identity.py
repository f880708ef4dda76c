"""The privacy audit by identity (issue #13, item 5): every value that crosses CLIENTS→SERVER is tied to
the Keras variable or the named statistic it is, not accepted for its shape. The negative controls are
processes the shape audit (`federated.audit`) passes — a private tensor of an allowed shape, an extra
scalar — and the identity audit must reject, naming the value. Nothing here executes a computation."""

from __future__ import annotations

import functools
import json
from pathlib import Path

import numpy as np
import pytest

tff = pytest.importorskip("tensorflow_federated")
import tensorflow as tf  # noqa: E402

from test_cli_compare import tiny_market_files  # noqa: E402

from tff_fedmm.cli import main  # noqa: E402
from tff_fedmm.federated import audit, codebook_process, dataflow, manifest, partial_fedavg  # noqa: E402
from tff_fedmm.pipelines import signature  # noqa: E402
from tff_fedmm.federated.audit_identity import IdentityAuditError, audit_process  # noqa: E402
from tff_fedmm.federated.codebook_process import CodebookStageConfig, build_codebook_process  # noqa: E402
from tff_fedmm.federated.partial_fedavg import build_partial_fedavg_process  # noqa: E402
from tff_fedmm.federated.privacy import PrivacyConfig, codebook_aggregator  # noqa: E402
from tff_fedmm.training import rqvae as rt  # noqa: E402
from tff_fedmm.models.ctr import BACKBONES, build_ctr_model  # noqa: E402
from tff_fedmm.models.rqvae import LOCAL_CODEBOOK, RQVAEConfig, build_rqvae, local_codebook  # noqa: E402

# K_local == K_global: the local codebook has exactly the shape of the global codebook's update.
RQ = RQVAEConfig(input_dim=10, latent_dim=6, hidden=9, k_global=5, k_local=5)
# num_users == K_global: the private user-ID embedding has the shape of the shared global-code embedding.
CTR = dict(num_users=5, num_items=13, k_global=5, k_local=3, embed_dim=4, hidden=(8,))


def codebook(rule: str = "fedavg", anchors: int = 0, aggregator=None):
    config = CodebookStageConfig(rqvae=RQ, rule=rule, anchors=anchors)
    return build_codebook_process(config, aggregator), manifest.codebook_manifest(config, f"codebook {rule}")


def ctr(backbone: str = "deepfm"):
    model_fn = functools.partial(build_ctr_model, backbone, **CTR)
    spec = signature.ctr_element_spec(CTR["k_global"], CTR["k_local"], batch_size=2)
    return model_fn, build_partial_fedavg_process(model_fn, spec)


def sources(report: dict) -> list[str]:
    return [s for c in report["crossings"] for v in c["values"] for s in v["sources"]]


# --- honest processes pass, and the report names what crosses -------------------------------------------


@pytest.mark.parametrize("rule,anchors", [("fedavg", 0), ("kmeans", 0), ("fedavg", 3), ("kmeans", 3)])
def test_codebook_process_passes_and_names_its_payload(rule, anchors):
    process, declared = codebook(rule, anchors)
    report = audit_process(process, declared)
    json.dumps(report)  # the run folder stores it as JSON
    (payload,) = [c for c in report["crossings"] if c["values"][0]["value"] in ("codebook_update", "code_sums")]
    names = [v["value"] for v in payload["values"]]
    assert names == ["codebook_update"] * (rule == "fedavg") + ["code_sums", "code_counts"] * (rule == "kmeans") \
        + ["anchor_means", "anchor_counts"] * bool(anchors)
    text = " ".join(sources(report))
    if rule == "fedavg":
        assert "update of shared_global_codebook/codebook" in text
    assert "private_" not in text and "client state" not in text


@pytest.mark.parametrize("privacy", [PrivacyConfig(secure_agg=True), PrivacyConfig(noise_multiplier=0.1),
                                     PrivacyConfig(noise_multiplier=1.0, clip=0.3, secure_agg=True)],
                         ids=["secure", "dp-adaptive", "dp-fixed-secure"])
def test_dp_and_secure_sums_carry_only_the_declared_payload(privacy):
    """DP's clipping and secure sum's quantization send more values (clip indicators, overflow counts):
    each is computed from the declared payload and server values only."""
    process, declared = codebook(aggregator=codebook_aggregator("fedavg", privacy, 5, 0))
    report = audit_process(process, declared)
    assert len(sources(report)) > len(sources(audit_process(*codebook())))
    known = ("update of shared_global_codebook/codebook", "weight (", "metrics/", "server value state/aggregator/")
    assert all(s.startswith(known) or s == "a constant" for s in sources(report)), sources(report)


@pytest.mark.parametrize("backbone", BACKBONES)
def test_partial_fedavg_passes_and_names_every_shared_variable(backbone):
    model_fn, process = ctr(backbone)
    report = audit_process(process, manifest.partial_fedavg_manifest(model_fn(), "ctr"))
    shared = [v.name.split(":")[0] for v in partial_fedavg.shared_weights(model_fn())]
    (update,) = [c for c in report["crossings"] if len(c["values"]) == len(shared)]
    assert [v["sources"][0] for v in update["values"]] == [f"update of {n} (received minus trained)" for n in shared]
    assert not [s for s in sources(report) if "private_" in s]


def test_fedavg_names_every_variable_it_shares():
    from tff_fedmm.training.ctr import CTRTrainConfig
    from tff_fedmm.pipelines.ctr_fedavg import build_fedavg_process, tff_model_fn

    model_fn = functools.partial(build_ctr_model, "deepfm", **{**CTR, "k_global": 0, "k_local": 0})
    spec = signature.ctr_element_spec(0, 0, batch_size=2)
    process = build_fedavg_process(model_fn, spec, CTRTrainConfig())
    tff_model = tff_model_fn(model_fn, spec)()  # held: its tf.function methods keep only a weak reference
    metrics = tff_model.report_local_unfinalized_metrics()
    report = audit_process(process, manifest.fedavg_manifest(model_fn(), metrics, "fedavg"))
    text = " ".join(sources(report))
    assert "update of private_user_id_embedding/embeddings" in text  # FedAvg shares the IDs: named, not hidden
    assert "metrics/loss/0" in text


# --- negative controls: what the shape audit lets through ------------------------------------------------


def leaky_composer(monkeypatch, module, change) -> None:
    """`module` composes its process with a client work whose outputs pass through `change`."""
    original = module.compose_stateful_process

    def compose(**pieces):
        honest = pieces["client_update"]

        @tff.tensorflow.computation(*honest.type_signature.parameter)
        def client_update(shared, state, data):
            new_state, update, weight, metrics = honest(shared, state, data)
            return change(state, new_state, update, weight, metrics)

        @tff.tensorflow.computation(client_update.type_signature.result[3])
        def finalize(sums):
            return sums

        return original(**{**pieces, "client_update": client_update, "finalize_metrics": finalize})

    monkeypatch.setattr(module, "compose_stateful_process", compose)


def local_codebook_index() -> int:
    return [v.name for v in rt.private_variables(build_rqvae(RQ))].index(f"{LOCAL_CODEBOOK}/codebook:0")


def test_local_codebook_read_in_place_of_the_global_one_fails(monkeypatch):
    """(a) The trained "global" codebook is the local codebook variable plus the received codebook, so the
    update sent is the local codebook: same shape, same dtype, same field name."""
    original = rt.build_round_fn

    def leaky_round_fn(model, *args, **kwargs):
        round_fn = original(model, *args, **kwargs)

        def leaky(global_cb, *rest):
            private, opt_state, idle, _, stats = round_fn(global_cb, *rest)
            return private, opt_state, idle, tf.identity(local_codebook(model)) + global_cb, stats

        return leaky

    monkeypatch.setattr(rt, "build_round_fn", leaky_round_fn)
    process, declared = codebook()
    audit.audit_codebook_process(process, "fedavg", RQ.k_global, RQ.latent_dim)  # the shape audit passes
    with pytest.raises(IdentityAuditError, match="payload/codebook_update: read from private_local_codebook/codebook; "
                                                 "declared: the update of shared_global_codebook/codebook"):
        audit_process(process, declared)


def test_local_codebook_from_the_client_state_in_place_of_the_update_fails(monkeypatch):
    """(a') The market's stored local codebook (its client state) sent as `codebook_update`."""
    index = local_codebook_index()
    leaky_composer(monkeypatch, codebook_process, lambda state, new_state, update, weight, metrics: (
        new_state, {"codebook_update": state["private"][index]}, weight, metrics))
    process, declared = codebook()
    audit.audit_codebook_process(process, "fedavg", RQ.k_global, RQ.latent_dim)
    with pytest.raises(IdentityAuditError) as err:
        audit_process(process, declared)
    assert f"payload/codebook_update: read from nothing; declared: the update of shared_global_codebook/codebook" \
        in str(err.value)
    assert f"taken against client_states/private/{index}" in str(err.value)


def test_private_embedding_of_a_shared_shape_fails(monkeypatch):
    """(b) The process takes the private user-ID embedding (shape [5, 4]) for the shared global-code
    embedding (shape [5, 4]) in slot 0: server and client agree, only identity tells them apart."""
    honest = partial_fedavg.shared_weights

    def swapped(model):
        weights = honest(model)
        return [model.get_layer("private_user_id_embedding").embeddings, *weights[1:]]

    monkeypatch.setattr(partial_fedavg, "shared_weights", swapped)
    model_fn, process = ctr()
    audit.audit_partial_fedavg_process(process, model_fn())  # the shape audit passes
    with pytest.raises(IdentityAuditError, match="update/shared_user_global_code_embedding/embeddings: read from "
                                                 "private_user_id_embedding/embeddings"):
        audit_process(process, manifest.partial_fedavg_manifest(model_fn(), "ctr"))


def test_an_extra_scalar_fails(monkeypatch):
    """(c) One more metric: a scalar, which the shape audit allows whatever it is (here the sum of a
    private embedding)."""
    def change(state, new_state, update, weight, metrics):
        return new_state, update, weight, {**metrics, "leak": tf.reduce_sum(new_state["private"][0])}

    leaky_composer(monkeypatch, partial_fedavg, change)
    model_fn, process = ctr()
    audit.audit_partial_fedavg_process(process, model_fn())
    with pytest.raises(IdentityAuditError) as err:
        audit_process(process, manifest.partial_fedavg_manifest(model_fn(), "ctr"))
    assert "metrics/leak (float32): sent by the client work, not declared (from: variable " \
           "private_user_id_embedding/embeddings)" in str(err.value)
    assert "federated_sum (leak) carries metrics/leak, not declared as sent" in str(err.value)


# --- the federated layer: nothing reaches an aggregation except through the client work ------------------

STATE = tff.TensorType(np.float32, [3])
DATA = tff.SequenceType(tff.TensorType(np.float32))


def test_client_state_or_data_reaching_a_sum_directly_fails():
    @tff.tensorflow.computation(STATE, DATA)
    def work(state, data):
        return state * 2.0, data.reduce(np.float32(0), lambda a, b: a + b)

    @tff.federated_computation(tff.FederatedType(STATE, tff.CLIENTS), tff.FederatedType(DATA, tff.CLIENTS))
    def next_fn(states, data):
        new_states, total = tff.federated_map(work, (states, data))
        return tff.federated_sum(total), tff.federated_sum(new_states), tff.federated_sum(states)

    declared = manifest.Manifest("toy", (manifest.Sent("1", "total", "float32", "a sum of the data"),), kept="0",
                                 groups=(("0", "client state"),))
    crossings, work_found = dataflow.trace(next_fn)
    assert work_found is not None and len(crossings) == 3
    with pytest.raises(IdentityAuditError) as err:
        audit_process(type("Process", (), {"next": next_fn})(), declared)
    problems = err.value.problems
    assert problems == ["federated_sum carries client state, not declared as sent — the market's private state",
                        "federated_sum carries the market's states without passing the client work"]


# --- on every run -------------------------------------------------------------------------------------


def test_a_run_whose_process_leaks_stops_before_its_first_round(market_dir, tmp_path, monkeypatch):
    """The leak of `test_private_embedding_of_a_shared_shape_fails` in a real `fedmm compare`: the CTR
    stage's audit raises once the process is built, before any round, and the folder stays INCOMPLETE."""
    honest = partial_fedavg.shared_weights
    monkeypatch.setattr(partial_fedavg, "shared_weights", lambda model: [
        model.get_layer("private_user_id_embedding").embeddings, *honest(model)[1:]])
    out = tmp_path / "run"
    flags = ["compare", "--data", str(market_dir(tiny_market_files())), "--methods", "fedper", "--backbones",
             "deepfm", "--rounds", "1", "--quiet", "--out", str(out)]
    with pytest.raises(IdentityAuditError, match="update/shared_dnn_0/kernel: read from private_user_id_embedding"):
        main(flags)
    assert (out / "INCOMPLETE").exists() and not (out / "privacy_audit.json").exists()
    assert not list(Path(out, "checkpoints").glob("*/round_*")), "a round ran before the audit"
    assert not list(Path(out, "checkpoints").glob("*.audit.json"))
