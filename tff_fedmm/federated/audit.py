"""What crosses from the markets to the server, read off a computation's building blocks.

A TFF computation is a tree of building blocks (Lambda, Block, Call, Struct, Selection, Reference,
Intrinsic, CompiledComputation, Data, ...). Values move between placements only through intrinsics, so
a walk over every node of the tree — nested federated computations are inlined as Lambdas, TensorFlow
bodies (CompiledComputation) hold no federated code — finds every place where data leaves CLIENTS for
the SERVER. The walk decides from types, not from a list of names, so a new aggregation intrinsic
cannot slip through:

- any intrinsic (or opaque `Data` function) whose parameter holds a CLIENTS-placed value and whose
  result holds a SERVER-placed one is a crossing (federated_sum, _mean, _weighted_mean, _aggregate,
  _min, _max, the secure sums, ...);
- also any intrinsic TFF itself registers as an aggregation (`aggregation_kind`), whatever its type;
- and `federated_select`, whose CLIENTS-placed keys must reach the server to be answered.

What crosses is the CLIENTS-placed part of the intrinsic's argument (its member type): for
`federated_weighted_mean` both the value and the weight, for `federated_aggregate` the value only (the
accumulate/merge/report functions are code, not data).

The project's claim — only `shared_*` weights, the global-codebook payload and scalar metrics ever
leave a market — is checked with `assert_only_allowed` and the predicates below.
"""

from __future__ import annotations

import collections
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

import numpy as np
import tensorflow_federated as tff
from tensorflow_federated.python.common_libs import structure

from tff_fedmm.federated.codebook_aggregator import client_payload_type
from tff_fedmm.federated.partial_fedavg import shared_weights

# Intrinsics whose CLIENTS-placed argument reaches the server although their result stays at CLIENTS.
_KEY_REVEALING_URIS = frozenset({"federated_select"})

TypePredicate = Callable[[tff.Type], bool]


@dataclass(frozen=True)
class Crossing:
    """One call site where a value leaves CLIENTS for SERVER."""

    uri: str
    member_type: tff.Type  # the CLIENTS-placed argument's member type (a struct when there are several)
    text: str

    @property
    def leaves(self) -> list[tff.TensorType]:
        return leaf_types(self.member_type)

    def __str__(self) -> str:
        return self.text


class PrivacyAuditError(AssertionError):
    """A value not named as shared crosses CLIENTS→SERVER."""

    def __init__(self, offending: Sequence[Crossing], reason: str = "not allowed",
                 allowed: TypePredicate | None = None):
        self.offending = list(offending)
        lines = [f"{len(self.offending)} CLIENTS→SERVER crossing(s) {reason}:"]
        for c in self.offending:
            bad = [_fmt(t) for t in c.leaves if allowed is not None and not allowed(t)]
            lines.append(f"  {c.text}" + (f"  <- not allowed: {', '.join(bad)}" if bad else ""))
        super().__init__("\n".join(lines))


# ---------------------------------------------------------------------------------------------------
# Types


def _is_placed(type_spec: tff.Type, placement) -> bool:
    return isinstance(type_spec, tff.FederatedType) and type_spec.placement is placement


def _contains_placement(type_spec: tff.Type | None, placement) -> bool:
    if type_spec is None:
        return False
    for t in _preorder_types(type_spec):
        if _is_placed(t, placement):
            return True
    return False


def _preorder_types(type_spec: tff.Type):
    yield type_spec
    for child in type_spec.children():
        yield from _preorder_types(child)


def _clients_parts(type_spec: tff.Type | None, name: str | None = None) -> list[tuple[str | None, tff.Type]]:
    """The members of the CLIENTS-placed values inside a parameter type, with their field names.

    Descends into structs only: a function-typed element (e.g. federated_aggregate's accumulate) is
    code, and a federated value's member cannot itself be federated.
    """
    if type_spec is None:
        return []
    if _is_placed(type_spec, tff.CLIENTS):
        return [(name, type_spec.member)]
    if isinstance(type_spec, tff.StructType):
        parts = []
        for element_name, element in tff.structure.iter_elements(type_spec):
            parts += _clients_parts(element, element_name)
        return parts
    return []


def leaf_types(type_spec: tff.Type) -> list[tff.TensorType]:
    """The tensor leaves of a (possibly nested, possibly federated) type, in order.

    A sequence contributes its element's leaves: a dataset crossing would carry all of them.
    """
    if isinstance(type_spec, tff.TensorType):
        return [type_spec]
    if isinstance(type_spec, tff.FederatedType):
        return leaf_types(type_spec.member)
    if isinstance(type_spec, tff.SequenceType):
        return leaf_types(type_spec.element)
    if isinstance(type_spec, tff.StructType):
        return [leaf for element in type_spec for leaf in leaf_types(element)]
    return []


def _shape(t: tff.TensorType) -> tuple | None:
    return None if t.shape is None else tuple(t.shape)


def is_scalar(t: tff.TensorType) -> bool:
    return _shape(t) == ()


def is_float32_scalar(t: tff.TensorType) -> bool:
    return is_scalar(t) and np.dtype(t.dtype) == np.float32


def _key(t: tff.TensorType) -> tuple:
    return (np.dtype(t.dtype).name, _shape(t))


def _fmt(t: tff.TensorType) -> str:
    shape = _shape(t)
    dims = "?" if shape is None else ",".join("?" if d is None else str(d) for d in shape)
    return f"{np.dtype(t.dtype).name}[{dims}]"


# ---------------------------------------------------------------------------------------------------
# The walk


def building_block(comp):
    if isinstance(comp, tff.framework.ComputationBuildingBlock):
        return comp
    if hasattr(comp, "to_building_block"):
        return comp.to_building_block()
    raise TypeError(f"expected a tff.Computation or building block, got {type(comp).__name__}")


def crossing_of(node) -> Crossing | None:
    if isinstance(node, tff.framework.Intrinsic):
        uri = node.uri
        registered_aggregation = bool(getattr(_intrinsic_def(node), "aggregation_kind", None))
    elif isinstance(node, tff.framework.Data):
        uri = f"data:{getattr(node.content, 'type_url', '?')}"
        registered_aggregation = False
    else:
        return None
    fn_type = node.type_signature
    if not isinstance(fn_type, tff.FunctionType):
        return None
    parts = _clients_parts(fn_type.parameter)
    if not parts:
        return None
    crosses = (
        _contains_placement(fn_type.result, tff.SERVER)
        or registered_aggregation
        or uri in _KEY_REVEALING_URIS
    )
    if not crosses:
        return None
    if len(parts) == 1:
        member = parts[0][1]
    else:
        member = tff.StructType([(name, t) for name, t in parts])
    return Crossing(uri=uri, member_type=member, text=f"{uri}: {member}")


def _intrinsic_def(node):
    try:
        return node.intrinsic_def()
    except Exception:  # an intrinsic unknown to this TFF version: judged by its type alone
        return None


def client_to_server_values(comp) -> list[Crossing]:
    """Every intrinsic call site in `comp` that moves data CLIENTS→SERVER, in post-order."""
    found: list[Crossing] = []

    def visit(node):
        crossing = crossing_of(node)
        if crossing is not None:
            found.append(crossing)
        return node, False

    tff.framework.transform_postorder(building_block(comp), visit)
    return found


def assert_only_allowed(comp, allowed: TypePredicate) -> list[Crossing]:
    """Returns the crossings; raises `PrivacyAuditError` naming every one with a disallowed leaf.

    `allowed` is asked about each tensor leaf of what crosses.
    """
    crossings = client_to_server_values(comp)
    offending = [c for c in crossings if not all(allowed(leaf) for leaf in c.leaves)]
    if offending:
        raise PrivacyAuditError(offending, allowed=allowed)
    return crossings


def nonscalar_leaves(crossings: Iterable[Crossing]) -> list[tff.TensorType]:
    return [leaf for c in crossings for leaf in c.leaves if not is_scalar(leaf)]


def assert_nonscalar_leaves_equal(crossings: Sequence[Crossing], expected: Iterable[tff.TensorType]) -> None:
    """The non-scalar leaves that cross are exactly `expected`, as a multiset of (dtype, shape)."""
    got = collections.Counter(_key(t) for t in nonscalar_leaves(crossings))
    want = collections.Counter(_key(t) for t in expected)
    if got != want:
        extra, missing = got - want, want - got
        raise PrivacyAuditError(
            crossings,
            f"do not carry exactly the expected non-scalar leaves (extra: {dict(extra)}, missing: {dict(missing)})",
        )


# ---------------------------------------------------------------------------------------------------
# The project's predicates


def as_sent(leaves: list[tff.TensorType], secure: bool = False, distributed: bool = False) -> list[tff.TensorType]:
    """How `leaves` cross: as they are; under `--secure-agg` quantized to int64, as TFF's secure sum sends
    them; under `--dp-mode distributed` as one int32 vector of every element, flattened, rotated and padded
    to an even length (`federated.distributed_dp`), which is what TFF's DDG sum sends."""
    if distributed:
        size = sum(int(np.prod(t.shape)) for t in leaves)
        return [tff.TensorType(np.int32, [2 * math.ceil(size / 2)])]
    return [tff.TensorType(np.int64, t.shape) for t in leaves] if secure else leaves


def _payload_leaves(rule: str, k_global: int, latent_dim: int, secure: bool, anchors: int = 0,
                    distributed: bool = False) -> list[tff.TensorType]:
    """The payload's leaves as they cross (`as_sent`)."""
    return as_sent(leaf_types(client_payload_type(rule, k_global, latent_dim, anchors)), secure, distributed)


def codebook_payload_fields(rule: str, k_global: int, latent_dim: int, anchors: int = 0) -> list[tuple[str, str, int]]:
    """(name, type, bytes) of every field one market sends per round: the audit's description of what
    crosses. In anchored mode it names the per-anchor aggregates (`anchor_means`, `anchor_counts`)."""
    payload = client_payload_type(rule, k_global, latent_dim, anchors)
    return [(name, _fmt(t), int(np.prod(t.shape)) * np.dtype(t.dtype).itemsize)
            for name, t in zip(structure.name_list(payload), payload)]


def codebook_allowed(rule: str, k_global: int, latent_dim: int, secure: bool = False, anchors: int = 0,
                     distributed: bool = False) -> TypePredicate:
    """Codebook stage: a float32 scalar, or a leaf of the global-codebook payload of `rule` (with its
    per-anchor aggregates when `anchors`) as it crosses (`as_sent`); with `secure` or `distributed`, also
    the integer scalars of secure sums (the quantized weight, clip counts, the number of markets)."""
    payload = {_key(t) for t in _payload_leaves(rule, k_global, latent_dim, secure, anchors, distributed)}
    return lambda t: (is_float32_scalar(t) or _key(t) in payload
                      or ((secure or distributed) and is_scalar(t) and np.issubdtype(np.dtype(t.dtype), np.integer)))


def audit_codebook_process(process, rule: str, k_global: int, latent_dim: int, secure: bool = False,
                           anchors: int = 0, distributed: bool = False) -> list[Crossing]:
    """Only the payload and scalars cross, and the payload crosses exactly once."""
    crossings = assert_only_allowed(process.next, codebook_allowed(rule, k_global, latent_dim, secure, anchors,
                                                                   distributed))
    assert_nonscalar_leaves_equal(crossings, _payload_leaves(rule, k_global, latent_dim, secure, anchors, distributed))
    return crossings


def shared_weight_types(model, secure: bool = False, distributed: bool = False) -> list[tff.TensorType]:
    """The tensor types of the model's `shared_*` trainable weights, in the processes' order, as they cross
    (`as_sent`: `secure` for a DP mean whose clipped records are summed securely, `distributed` for DDG)."""
    types = [tff.TensorType(np.dtype(w.dtype.as_numpy_dtype), list(w.shape)) for w in shared_weights(model)]
    return as_sent(types, secure, distributed)


def shared_weights_allowed(model, secure: bool = False, distributed: bool = False) -> TypePredicate:
    """Partial FedAvg: a scalar, or a leaf with the dtype and shape of the `shared_*` weights as they cross."""
    shared = {_key(t) for t in shared_weight_types(model, secure, distributed)}
    return lambda t: is_scalar(t) or _key(t) in shared


def audit_partial_fedavg_process(process, model, secure: bool = False, distributed: bool = False) -> list[Crossing]:
    """Only scalars and shared weights cross, and the shared weights cross exactly once each."""
    crossings = assert_only_allowed(process.next, shared_weights_allowed(model, secure, distributed))
    assert_nonscalar_leaves_equal(crossings, shared_weight_types(model, secure, distributed))
    return crossings
