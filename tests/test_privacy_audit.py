"""Privacy by construction, proven on the computations: only shared values and scalar metrics cross
CLIENTS→SERVER. Nothing here executes a TFF computation (so no execution context and no worker):
the audit reads the building blocks of built computations.
"""

from __future__ import annotations

import collections
import functools

import numpy as np
import pytest

tff = pytest.importorskip("tensorflow_federated")
import tensorflow as tf  # noqa: E402

from tff_fedmm.cli import main  # noqa: E402
from tff_fedmm.federated import audit  # noqa: E402
from tff_fedmm.pipelines import signature  # noqa: E402
from tff_fedmm.federated.codebook_aggregator import RULES, client_payload_type  # noqa: E402
from tff_fedmm.federated.codebook_process import CodebookStageConfig, build_codebook_process  # noqa: E402
from tff_fedmm.federated.partial_fedavg import (  # noqa: E402
    build_partial_fedavg_process, private_weights, shared_weights,
)
from tff_fedmm.training import rqvae as rt  # noqa: E402
from tff_fedmm.models.ctr import BACKBONES, build_ctr_model  # noqa: E402
from tff_fedmm.models.rqvae import RQVAEConfig, build_rqvae  # noqa: E402

# Every size distinct so a shape names one variable: K_global=5, K_local=3, d=6, hidden=9, input=10.
RQ = RQVAEConfig(input_dim=10, latent_dim=6, hidden=9, k_global=5, k_local=3)
# Private: users 11, items 13, local codes 3; shared: global codes 5, embed 4, MLP 8.
CTR = dict(num_users=11, num_items=13, k_global=5, k_local=3, embed_dim=4, hidden=(8,))


def shape_of(t) -> tuple:
    return tuple(t.shape)


def crossing_shapes(crossings) -> list[tuple]:
    return [shape_of(leaf) for c in crossings for leaf in c.leaves]


# --- the codebook process ---------------------------------------------------------------------------


@pytest.fixture(scope="module", params=RULES)
def codebook(request):
    rule = request.param
    return rule, build_codebook_process(CodebookStageConfig(rqvae=RQ, rule=rule))


def test_codebook_process_sends_only_the_payload_and_float_scalars(codebook):
    rule, process = codebook
    crossings = audit.audit_codebook_process(process, rule, RQ.k_global, RQ.latent_dim)
    payload = sorted(shape_of(t) for t in audit.leaf_types(client_payload_type(rule, RQ.k_global, RQ.latent_dim)))
    assert sorted(shape_of(t) for t in audit.nonscalar_leaves(crossings)) == payload
    assert all(np.dtype(t.dtype) == np.float32 for c in crossings for t in c.leaves)


def test_codebook_process_never_sends_local_codebook_encoder_or_decoder(codebook):
    _, process = codebook
    private = {tuple(v.shape) for v in rt.private_variables(build_rqvae(RQ))}
    assert (RQ.k_local, RQ.latent_dim) in private  # the local codebook is among them
    assert (RQ.input_dim, RQ.hidden) in private and (RQ.hidden, RQ.input_dim) in private  # encoder/decoder
    sent = set(crossing_shapes(audit.client_to_server_values(process.next)))
    assert not sent & private, f"private shapes cross: {sent & private}"


def test_strict_descriptor_level1_sends_only_the_codebook_payload():
    """Strict mode with level 1 on descriptors: the same payload crosses, the frozen anchor map and every
    input-derived value stay home. (That the inputs themselves hold no key-derived value is
    `tests/test_descriptors.py`.)"""
    rq = RQVAEConfig(input_dim=17, latent_dim=6, hidden=9, k_global=5, k_local=3, descriptor_dim=7)
    for rule in RULES:
        process = build_codebook_process(CodebookStageConfig(rqvae=rq, rule=rule))
        crossings = audit.audit_codebook_process(process, rule, rq.k_global, rq.latent_dim)
        payload = sorted(shape_of(t) for t in audit.leaf_types(client_payload_type(rule, rq.k_global, rq.latent_dim)))
        assert sorted(shape_of(t) for t in audit.nonscalar_leaves(crossings)) == payload
        anchor = {tuple(w.shape) for n in ("private_anchor_hidden", "private_anchor_out")
                  for w in build_rqvae(rq).get_layer(n).weights}
        assert not set(crossing_shapes(crossings)) & anchor


def test_codebook_predicate_rejects_a_payload_of_other_sizes(codebook):
    rule, process = codebook
    with pytest.raises(audit.PrivacyAuditError, match="not allowed: float32\\[5,6\\]"):
        audit.assert_only_allowed(process.next, audit.codebook_allowed(rule, RQ.k_local, RQ.latent_dim))


# --- partial FedAvg over a CTR model with codes ------------------------------------------------------


@pytest.fixture(scope="module", params=BACKBONES)
def ctr(request):
    model_fn = functools.partial(build_ctr_model, request.param, **CTR)
    spec = signature.ctr_element_spec(CTR["k_global"], CTR["k_local"], batch_size=2)
    return model_fn, build_partial_fedavg_process(model_fn, spec)


def test_partial_fedavg_sends_exactly_the_shared_weights(ctr):
    model_fn, process = ctr
    model = model_fn()
    crossings = audit.audit_partial_fedavg_process(process, model)
    shared = sorted(tuple(w.shape) for w in shared_weights(model))
    assert sorted(shape_of(t) for t in audit.nonscalar_leaves(crossings)) == shared
    assert (CTR["k_global"], CTR["embed_dim"]) in shared  # the global-code embeddings are federated


def test_partial_fedavg_never_sends_a_private_embedding(ctr):
    model_fn, process = ctr
    model = model_fn()
    private = {tuple(w.shape) for w in private_weights(model)}
    shared = {tuple(w.shape) for w in shared_weights(model)}
    assert not private & shared, "test sizes must make private and shared shapes distinct"
    for rows in (CTR["num_users"], CTR["num_items"], CTR["k_local"]):
        assert (rows, CTR["embed_dim"]) in private
    sent = set(crossing_shapes(audit.client_to_server_values(process.next)))
    assert not sent & private, f"private shapes cross: {sent & private}"


@pytest.mark.parametrize("share_interaction", [True, False])
def test_default_fedmm_ctr_shares_code_embeddings_and_never_ids(share_interaction):
    """FedMM's CTR as configured (interaction layers shared or, by default, private)."""
    model_fn = functools.partial(build_ctr_model, "deepfm", **CTR, share_interaction=share_interaction)
    spec = signature.ctr_element_spec(CTR["k_global"], CTR["k_local"], batch_size=2)
    model = model_fn()
    crossings = audit.audit_partial_fedavg_process(build_partial_fedavg_process(model_fn, spec), model)
    sent = sorted(shape_of(t) for t in audit.nonscalar_leaves(crossings))
    assert (CTR["k_global"], CTR["embed_dim"]) in sent
    assert (CTR["num_users"], CTR["embed_dim"]) not in sent and (CTR["k_local"], CTR["embed_dim"]) not in sent
    if not share_interaction:  # then only the global-code embeddings (and their first-order terms) cross
        assert set(sent) == {(CTR["k_global"], CTR["embed_dim"]), (CTR["k_global"], 1)}


def test_cf_tower_process_sends_only_the_tower():
    """The CF stage's federated tower: embeddings never cross, the `shared_tower_*` layers do."""
    from tff_fedmm.data.pipelines import to_dataset
    from tff_fedmm.models.cf import CFConfig, build_cf_model

    config = CFConfig(dim=6, tower=True, tower_hidden=5)
    model_fn = functools.partial(build_cf_model, 11, 13, config)
    features = {"user": np.zeros(2, np.int32), "item": np.zeros(2, np.int32), "label": np.zeros(2, np.float32)}
    process = build_partial_fedavg_process(model_fn, to_dataset(features, batch_size=2).element_spec)
    crossings = audit.audit_partial_fedavg_process(process, model_fn())
    sent = sorted(shape_of(t) for t in audit.nonscalar_leaves(crossings))
    assert sent == sorted([(18, 5), (5,), (5, 1), (1,)])  # tower kernel/bias and output kernel/bias


def test_executed_form_sends_the_same(ctr):
    """The compiler rewrites sums into federated_aggregate; what crosses must not change."""
    from tensorflow_federated.python.core.backends.native import compiler

    _, process = ctr
    before = audit.client_to_server_values(process.next)
    after = audit.client_to_server_values(compiler.desugar_and_transform_to_native(process.next))
    assert {c.uri for c in after} == {"federated_aggregate"}
    assert [str(c.member_type) for c in after] == [str(c.member_type) for c in before]


# --- negative controls: the audit can fail ----------------------------------------------------------

PRIVATE = tff.FederatedType(tff.TensorType(np.float32, [7, 3]), tff.CLIENTS)
WEIGHT = tff.FederatedType(tff.TensorType(np.float32), tff.CLIENTS)
only_scalars = audit.is_scalar


def leaky_sum():
    @tff.federated_computation(PRIVATE)
    def comp(x):
        return tff.federated_sum(x)

    return comp


def leaky_mean():
    @tff.federated_computation(PRIVATE)
    def comp(x):
        return tff.federated_mean(x)

    return comp


def leaky_weighted_mean():
    @tff.federated_computation(PRIVATE, WEIGHT)
    def comp(x, w):
        return tff.federated_mean(x, weight=w)

    return comp


def leaky_aggregate():
    value = tff.TensorType(np.float32, [7, 3])

    @tff.tensorflow.computation(value, value)
    def add(a, b):
        return a + b

    @tff.tensorflow.computation(value)
    def identity(a):
        return tf.identity(a)

    @tff.federated_computation(PRIVATE)
    def comp(x):
        return tff.federated_aggregate(x, np.zeros([7, 3], np.float32), add, add, identity)

    return comp


def leaky_max():
    @tff.federated_computation(PRIVATE)
    def comp(x):
        return tff.federated_max(x)

    return comp


def leaky_secure_sum():
    """Secure aggregation hides each market's value, not the sum: it still crosses."""

    @tff.federated_computation(tff.FederatedType(tff.TensorType(np.int32, [7, 3]), tff.CLIENTS))
    def comp(x):
        return tff.federated_secure_sum_bitwidth(x, 8)

    return comp


def leaky_nested():
    """The leak hides in an inner federated computation behind a struct and a selection."""
    inner = leaky_sum()

    @tff.federated_computation(PRIVATE, WEIGHT)
    def comp(x, w):
        return collections.OrderedDict(metric=tff.federated_sum(w), leaked=inner(x))

    return comp


def leaky_unknown_intrinsic():
    """An intrinsic this TFF does not know: judged by its type, CLIENTS in and SERVER out."""
    fn_type = tff.FunctionType(PRIVATE, tff.FederatedType(tff.TensorType(np.float32, [7, 3]), tff.SERVER))
    return tff.framework.Lambda(
        "x", PRIVATE, tff.framework.Call(tff.framework.Intrinsic("federated_new_gather", fn_type),
                                         tff.framework.Reference("x", PRIVATE)))


LEAKS = {
    "federated_sum": (leaky_sum, "federated_sum"),
    "federated_mean": (leaky_mean, "federated_mean"),
    "federated_weighted_mean": (leaky_weighted_mean, "federated_weighted_mean"),
    "federated_aggregate": (leaky_aggregate, "federated_aggregate"),
    "federated_max": (leaky_max, "federated_max"),
    "federated_secure_sum_bitwidth": (leaky_secure_sum, "federated_secure_sum_bitwidth"),
    "nested": (leaky_nested, "federated_sum"),
    "unknown intrinsic": (leaky_unknown_intrinsic, "federated_new_gather"),
}


@pytest.mark.parametrize("case", LEAKS)
def test_audit_flags_a_private_value(case):
    build, uri = LEAKS[case]
    comp = build()
    crossings = audit.client_to_server_values(comp)
    assert [c.uri for c in crossings if (7, 3) in crossing_shapes([c])] == [uri]
    with pytest.raises(audit.PrivacyAuditError, match=r"not allowed: \w+\[7,3\]") as err:
        audit.assert_only_allowed(comp, only_scalars)
    assert len(err.value.offending) == 1
    with pytest.raises(audit.PrivacyAuditError):
        audit.assert_only_allowed(comp, audit.codebook_allowed("kmeans", RQ.k_global, RQ.latent_dim))


def test_weighted_mean_sends_the_weight_too():
    (crossing,) = audit.client_to_server_values(leaky_weighted_mean())
    assert crossing_shapes([crossing]) == [(7, 3), ()]


def test_broadcast_and_map_do_not_cross():
    server = tff.FederatedType(tff.TensorType(np.float32, [7, 3]), tff.SERVER)

    @tff.tensorflow.computation(tff.TensorType(np.float32, [7, 3]), tff.TensorType(np.float32, [7, 3]))
    def add(a, b):
        return a + b

    @tff.federated_computation(server, PRIVATE)
    def comp(s, x):
        return tff.federated_map(add, (tff.federated_broadcast(s), x))

    assert audit.client_to_server_values(comp) == []
    assert "crosses CLIENTS→SERVER (0):" in signature.describe(comp)


def test_describe_lists_signature_and_crossings():
    text = signature.describe(leaky_nested(), signature.kind)
    assert text.startswith("type_signature:\n")
    assert "[shared] federated_sum: float32[7,3]" in text and "[metric] federated_sum: float32" in text
    judged = signature.describe(leaky_nested(), signature.labeler(only_scalars))
    assert "[NOT ALLOWED] federated_sum: float32[7,3]" in judged and "[metric] federated_sum: float32" in judged


# --- fedmm signature ---------------------------------------------------------------------------------


def test_fedmm_signature_prints_both_processes(capsys):
    assert main(["signature", "--rule", "fedavg", "--backbone", "dcnv2"]) == 0
    out = capsys.readouterr().out
    assert "== codebook process (rule=fedavg" in out and "== federated CTR process (partial FedAvg, backbone=dcnv2" in out
    assert out.count("type_signature:") == 2 and out.count("audit: passed") == 2
    assert out.count("by identity, each is declared and read from its source") == 2
    assert "[shared] federated_sum: <codebook_update=float32[64,32]>" in out
    assert "[metric] federated_sum: <loss=float32,num_examples=float32>" in out


def test_fedmm_signature_shows_the_dp_state_and_secure_sums(capsys):
    assert main(["signature", "--dp-noise-multiplier", "1", "--dp-clip", "0.3", "--secure-agg"]) == 0
    out = capsys.readouterr().out
    assert "DP z=1.0 clip=0.3, secure sum)" in out and out.count("audit: passed") == 2
    assert "dp_event=<" in out and "seed=int64[2]" in out  # the DP aggregator's state is server state
    assert "[shared] federated_secure_sum_bitwidth: <codebook_update=int64[64,32]>" in out


def test_fedmm_signature_names_the_per_anchor_aggregates_in_anchored_mode(capsys):
    assert main(["signature", "--anchor-slots", "3"]) == 0
    out = capsys.readouterr().out
    assert "anchored: 3 anchor slots)" in out and out.count("audit: passed") == 2
    assert "[shared] federated_sum: <codebook_update=float32[64,32],anchor_means=float32[3,32]," \
           "anchor_counts=float32[3]>" in out
    assert "anchor_means: float32[3,32] (384 bytes)" in out and "anchor_counts: float32[3] (12 bytes)" in out
    assert main(["signature", "--anchor-slots", "-1"]) == 2


def test_fedmm_signature_bad_rule_is_one_line(capsys):
    assert main(["signature", "--rule", "median"]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    (line,) = captured.err.splitlines()
    assert line.startswith("fedmm: error: argument --rule: invalid choice: 'median'")


def test_signature_choices_match_the_modules():
    from tff_fedmm.cli import build_parser

    sub = build_parser()._subparsers._group_actions[0].choices["signature"]
    choices = {a.dest: tuple(a.choices) for a in sub._actions if a.choices}
    assert set(choices["rule"]) == set(RULES) and set(choices["backbone"]) == set(BACKBONES)
