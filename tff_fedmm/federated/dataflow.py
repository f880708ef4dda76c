"""Which of the client work's outputs each CLIENTS→SERVER crossing carries, read off the building blocks.

`trace(comp)` evaluates a federated computation symbolically: every parameter leaf starts as its own
origin (`clients <path>` or `server <path>`, by placement), every value carries the set of origins it
is computed from, and TensorFlow computations pass origins from their parameter leaves to their result
leaves as `provenance.tf_origins` finds them. The first TensorFlow computation applied to a
CLIENTS-placed parameter (the markets' data or private state) is the client work: its result leaves
become origins of their own (`field <path>`), and its graph's origins are kept for the audit to judge.
At each intrinsic `audit` counts as a crossing, the origins of every CLIENTS-placed leaf are recorded.

Values that the walk cannot see into — an intrinsic it does not model, a function it cannot resolve —
depend on all of their arguments: an origin is never dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import tensorflow_federated as tff
from tensorflow_federated.python.common_libs import structure

from tff_fedmm.federated import audit
from tff_fedmm.federated.provenance import Origin, Origins, leaves, path_str, tf_origins

_MAPS = frozenset({"federated_map", "federated_apply", "federated_map_all_equal", "sequence_map"})
_EVALS = frozenset({"federated_eval_at_server", "federated_eval_at_clients"})
_PASS = frozenset({"federated_broadcast", "federated_zip_at_server", "federated_zip_at_clients",
                   "federated_value_at_server", "federated_value_at_clients"})


@dataclass(frozen=True)
class Leaf:
    origins: Origins


@dataclass(frozen=True)
class Struct:
    elements: tuple  # of values


@dataclass(frozen=True)
class Closure:
    node: object  # a Lambda building block
    env: dict


@dataclass(frozen=True)
class TracedCrossing:
    """A crossing with, per CLIENTS-placed tensor leaf, its path in the member type and its origins."""

    uri: str
    member_type: tff.Type
    leaves: list[tuple[str, tff.Type, Origins]]


@dataclass
class ClientWork:
    """The client work found in the computation: its TF computation and the origins of its arguments."""

    comp: object
    arguments: list[Origins]
    outputs: list[Origins] = field(default_factory=list)  # per result leaf, from its graph


def _all(value) -> Origins:
    if isinstance(value, Leaf):
        return value.origins
    if isinstance(value, Struct):
        return frozenset().union(*(_all(v) for v in value.elements))
    return frozenset()


def _flatten(value, type_spec: tff.Type) -> list[Origins]:
    """The origins of each tensor leaf of `value`, seen as `type_spec`; an opaque value covers all."""
    if isinstance(type_spec, tff.FederatedType):
        return _flatten(value, type_spec.member)
    if isinstance(type_spec, tff.StructType):
        elements = value.elements if isinstance(value, Struct) else [value] * len(type_spec)
        return [o for v, t in zip(elements, type_spec) for o in _flatten(v, t)]
    return [_all(value)]


def _unflatten(type_spec: tff.Type, leaves: list[Origins]):
    if isinstance(type_spec, tff.FederatedType):
        return _unflatten(type_spec.member, leaves)
    if isinstance(type_spec, tff.StructType):
        return Struct(tuple(_unflatten(t, leaves) for t in type_spec))
    return Leaf(leaves.pop(0))


def _parameter(type_spec: tff.Type, placement: str = "server", path: tuple = ()):
    """The parameter's value: every leaf its own origin, `clients ...` or `server ...` by placement."""
    if isinstance(type_spec, tff.FederatedType):
        placement = "clients" if type_spec.placement is tff.CLIENTS else "server"
        return _parameter(type_spec.member, placement, path)
    if isinstance(type_spec, tff.StructType):
        return Struct(tuple(_parameter(t, placement, path + (n if n else i,))
                            for i, (n, t) in enumerate(structure.iter_elements(type_spec))))
    return Leaf(frozenset({Origin(placement, path_str(path))}))


class _Trace:
    """The symbolic evaluation: values are `Leaf`/`Struct` of origins, functions are closures or nodes."""

    def __init__(self) -> None:
        self.crossings: list[TracedCrossing] = []
        self.client_work: ClientWork | None = None
        self._tf: dict[int, list[Origins]] = {}

    def eval(self, node, env: dict):
        if isinstance(node, tff.framework.Reference):
            return env[node.name]
        if isinstance(node, tff.framework.Selection):
            source = self.eval(node.source, env)
            return source.elements[node.as_index()] if isinstance(source, Struct) else source
        if isinstance(node, tff.framework.Struct):
            return Struct(tuple(self.eval(e, env) for e in node))
        if isinstance(node, tff.framework.Block):
            env = dict(env)
            for name, value in node.locals:
                env[name] = self.eval(value, env)
            return self.eval(node.result, env)
        if isinstance(node, tff.framework.Lambda):
            return Closure(node, env)
        if isinstance(node, tff.framework.Call):
            argument = None if node.argument is None else self.eval(node.argument, env)
            return self.call(self.eval(node.function, env), argument)
        if isinstance(node, (tff.framework.Intrinsic, tff.framework.CompiledComputation, tff.framework.Data)):
            return node  # a function: applied by `call`
        return Leaf(frozenset())  # placements and literals carry nothing

    def call(self, function, argument):
        if isinstance(function, Closure):
            env = dict(function.env)
            if function.node.parameter_name is not None:
                env[function.node.parameter_name] = argument
            return self.eval(function.node.result, env)
        if isinstance(function, tff.framework.CompiledComputation):
            return self.tensorflow(function, argument)
        if isinstance(function, (tff.framework.Intrinsic, tff.framework.Data)):
            return self.intrinsic(function, argument)
        return Leaf(_all(function) | _all(argument))

    def tensorflow(self, comp, argument):
        """A TF computation's result: each leaf's origins through its graph; the client work's are its fields."""
        parameter = comp.type_signature.parameter
        arguments = _flatten(argument, parameter) if parameter is not None else []
        if id(comp) not in self._tf:
            self._tf[id(comp)] = tf_origins(comp)
        graph = self._tf[id(comp)]
        result_type = comp.type_signature.result
        if self.client_work is None and any(o.kind == "clients" for a in arguments for o in a):
            self.client_work = ClientWork(comp, arguments, graph)
            return _unflatten(result_type, [frozenset({Origin("field", path_str(p))}) for p, _ in leaves(result_type)])
        index = {path_str(p): i for i, (p, _) in enumerate(leaves(parameter))} if parameter is not None else {}
        return _unflatten(result_type, [
            frozenset().union(*(arguments[index[o.name]] if o.kind == "param" and o.name in index else {o}
                                for o in origins)) for origins in graph])

    def intrinsic(self, node, argument):
        uri = node.uri if isinstance(node, tff.framework.Intrinsic) else None
        crossing = audit.crossing_of(node)
        if crossing is not None:
            leaves = _clients_leaves(node.type_signature.parameter, argument)
            self.crossings.append(TracedCrossing(crossing.uri, crossing.member_type, leaves))
        elif uri in _MAPS and isinstance(argument, Struct):
            function, value = argument.elements
            return self.call(function, value)
        elif uri in _EVALS:
            return self.call(argument, None)
        elif uri in _PASS:
            return argument
        return Leaf(_all(argument))


def _clients_leaves(parameter: tff.Type, argument) -> list[tuple[str, tff.Type, Origins]]:
    """The CLIENTS-placed tensor leaves of an intrinsic's argument: (path, type, origins)."""
    found = []

    def visit(type_spec, value, path):
        if isinstance(type_spec, tff.FederatedType) and type_spec.placement is tff.CLIENTS:
            member = type_spec.member
            found.extend((path_str(path + p), t, o) for (p, t), o in zip(leaves(member), _flatten(value, member)))
        elif isinstance(type_spec, tff.StructType):
            values = value.elements if isinstance(value, Struct) else [value] * len(type_spec)
            for i, ((name, t), v) in enumerate(zip(structure.iter_elements(type_spec), values)):
                visit(t, v, path + (name if name else i,))

    visit(parameter, argument, ())
    return found


def trace(comp) -> tuple[list[TracedCrossing], ClientWork | None]:
    """Every crossing `audit.client_to_server_values` finds in `comp`, with its leaves' origins, and the
    client work. Raises `RuntimeError` if the evaluation did not reach every crossing site."""
    root = audit.building_block(comp)
    tracer = _Trace()
    tracer.call(tracer.eval(root, {}), _parameter(root.parameter_type) if root.parameter_type else None)
    expected = sorted(str(c) for c in audit.client_to_server_values(root))
    if sorted(f"{c.uri}: {c.member_type}" for c in tracer.crossings) != expected:
        raise RuntimeError(f"the dataflow trace reached {len(tracer.crossings)} of {len(expected)} crossings")
    return tracer.crossings, tracer.client_work
