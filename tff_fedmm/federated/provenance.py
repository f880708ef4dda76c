"""Where a value inside a TFF computation comes from: a Keras variable, a received value, or a reduction.

The privacy audit by shape (`federated.audit`) cannot tell two tensors of one shape apart. This module
follows values instead, in two layers:

- inside a TensorFlow computation (`tf_origins`): the graph is walked backwards from each result
  tensor, through function calls, `If` branches and pass-through ops, until it reaches a parameter of
  the computation, a variable read (named by the variable's `shared_name`, which Keras sets from the
  layer and weight name, e.g. `shared_dnn_0/kernel`) or the output of a `ReduceDataset` (a statistic
  over the market's data). The walk stops there: it does not ask how a variable got its value (training
  mixes every variable and the data into every other), only which variable a value is *read from*;
- in a federated computation (`Dataflow`): the building blocks are evaluated symbolically, each value
  carrying the set of its origins, composed through every TensorFlow computation by `tf_origins`. The
  client work — the TensorFlow computation `federated_map` applies to the markets' data — is the one
  place whose outputs get names of their own (`Field`), so every crossing can be said to carry which of
  the client work's outputs, and the audit can judge each output against what is declared
  (`federated.audit_identity`).

Conservative wherever it is not exact: an op not modelled depends on all of its inputs, a `While` on
all of its inputs, an intrinsic not modelled on all of its arguments. So an origin is never lost; at
worst a value is attributed more origins than it has, which makes the audit fail, not pass. One
exception, on purpose: an `If` passes on its branches' values, not its condition's origins (TFF's own
FedAvg zeroes a non-finite update that way, on a condition over every weight), so a condition could
carry one bit per `If` into a sent value unseen.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import tensorflow_federated as tff
from tensorflow_federated.python.common_libs import structure
from tensorflow_federated.python.tensorflow_libs import serialization_utils

# TensorFlow ops whose output k is their input k, resources included (a read happens downstream).
_PASS_THROUGH = frozenset({"Identity", "IdentityN"})
_CALLS = frozenset({"PartitionedCall", "StatefulPartitionedCall"})
_IFS = frozenset({"If", "StatelessIf"})
# TFF renames the variables of a TF computation it imports into another ("x" -> "x__tffshared_0").
_TFF_IMPORT_SUFFIX = re.compile(r"(?:_+tffshared_\d+)+$")


@dataclass(frozen=True, order=True)
class Origin:
    """`kind`: `param` (a leaf of the computation's parameter, `name` its path), `variable` (a read of
    the variable `name`), `reduction` (an output of a reduction over a dataset), `resource` (a variable
    handle not read yet; internal) or `field` (an output of the client work, `name` its path)."""

    kind: str
    name: str

    def __str__(self) -> str:
        return f"{self.kind} {self.name}"


Origins = frozenset[Origin]
REDUCTION = Origin("reduction", "a reduction over the market's data (ReduceDataset)")


def path_str(path: tuple) -> str:
    """"a/0/b"; "" for a value that is not a struct."""
    return "/".join(str(p) for p in path)


def leaves(type_spec: tff.Type, prefix: tuple = ()) -> Iterator[tuple[tuple, tff.Type]]:
    """(path, type) of a type's leaves — tensors and sequences, as TFF binds them — with struct fields
    named where they have a name and numbered where not."""
    if isinstance(type_spec, tff.FederatedType):
        yield from leaves(type_spec.member, prefix)
    elif isinstance(type_spec, tff.StructType):
        for i, (name, element) in enumerate(structure.iter_elements(type_spec)):
            yield from leaves(element, prefix + (name if name else i,))
    else:
        yield prefix, type_spec


def _binding_tensors(binding) -> Iterator[str]:
    """The tensor names of a TFF TensorFlow binding, in leaf order."""
    kind = binding.WhichOneof("binding")
    if kind == "struct":
        for element in binding.struct.element:
            yield from _binding_tensors(element)
    elif kind == "tensor":
        yield binding.tensor.tensor_name
    elif kind == "sequence":
        sequence = binding.sequence
        yield sequence.variant_tensor_name or sequence.graph_def_tensor_name


def _split_outer(ref: str) -> tuple[str, int]:
    name, _, index = ref.partition(":")
    return name, int(index or 0)


class _Walk:
    """One TensorFlow computation's graph, with memoised origins per (frame, tensor)."""

    def __init__(self, comp) -> None:
        proto = comp.proto.tensorflow
        graph = serialization_utils.unpack_graph_def(proto.graph_def)
        self.nodes = {n.name: n for n in graph.node}
        self.functions = {f.signature.name: f for f in graph.library.function}
        parameter = comp.type_signature.parameter
        paths = [p for p, _ in leaves(parameter)] if parameter is not None else []
        names = list(_binding_tensors(proto.parameter)) if proto.HasField("parameter") else []
        self.params = {_split_outer(t)[0]: Origin("param", path_str(p)) for t, p in zip(names, paths)}
        self.results = [_split_outer(t) for t in _binding_tensors(proto.result)]
        self._memo: dict = {}

    # -- the outer graph -------------------------------------------------------------------------

    def result_origins(self) -> list[Origins]:
        return [self.outer(name, index) for name, index in self.results]

    def outer(self, name: str, index: int) -> Origins:
        key = ("", name, index)
        if key not in self._memo:
            self._memo[key] = frozenset()  # a cycle (none in a TF graph) ends here
            node = self.nodes[name]
            if name in self.params:
                found = frozenset({self.params[name]})
            elif node.op == "Placeholder":
                found = frozenset({Origin("param", f"?{name}")})
            else:
                inputs = [_split_outer(i) for i in node.input if not i.startswith("^")]
                found = self._op(node, index, [lambda n=n, k=k: self.outer(n, k) for n, k in inputs])
            self._memo[key] = found
        return self._memo[key]

    # -- functions ---------------------------------------------------------------------------------

    def call(self, function: str, args: tuple[Origins, ...]) -> list[Origins]:
        key = (function, args)
        if key not in self._memo:
            fdef = self.functions[function]
            frame = {a.name: origins for a, origins in zip(fdef.signature.input_arg, args)}
            body = {n.name: n for n in fdef.node_def}
            memo: dict = {}

            def ref(text: str) -> Origins:
                if text in frame:
                    return frame[text]
                if text not in memo:
                    memo[text] = frozenset()
                    name, _, rest = text.partition(":")
                    index = int(rest.rpartition(":")[2] or 0) if rest else 0
                    node = body[name]
                    inputs = [i for i in node.input if not i.startswith("^")]
                    memo[text] = self._op(node, index, [lambda i=i: ref(i) for i in inputs])
                return memo[text]

            self._memo[key] = [ref(fdef.ret[out.name]) for out in fdef.signature.output_arg]
        return self._memo[key]

    # -- one op --------------------------------------------------------------------------------------

    def _op(self, node, index: int, inputs: list) -> Origins:
        op = node.op
        if op == "VarHandleOp":
            shared = node.attr["shared_name"].s.decode() if "shared_name" in node.attr else ""
            return frozenset({Origin("resource", _TFF_IMPORT_SUFFIX.sub("", shared or node.name))})
        if op == "ReduceDataset":
            return frozenset({REDUCTION})
        if op in _PASS_THROUGH:
            return inputs[index if op == "IdentityN" else 0]()
        if op in _CALLS or op in self.functions:
            function = node.attr["f"].func.name if op in _CALLS else op
            return self.call(function, tuple(i() for i in inputs))[index]
        if op in _IFS:  # both branches' values; the condition only picks one (see the module's doc)
            args = tuple(i() for i in inputs[1:])
            return (self.call(node.attr["then_branch"].func.name, args)[index]
                    | self.call(node.attr["else_branch"].func.name, args)[index])
        return _read(frozenset().union(*(i() for i in inputs)))


def _read(origins: Origins) -> Origins:
    """An op consuming a variable handle reads the variable."""
    return frozenset(Origin("variable", o.name) if o.kind == "resource" else o for o in origins)


def tf_origins(comp) -> list[Origins]:
    """Per result leaf of a TensorFlow `CompiledComputation` (in `leaves` order): its origins, in
    terms of the computation's parameter leaves (`param`), variables read and dataset reductions."""
    return [_read(o) for o in _Walk(comp).result_origins()]
