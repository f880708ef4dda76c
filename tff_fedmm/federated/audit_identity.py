"""The privacy audit by identity: every value that crosses CLIENTS→SERVER is tied to what it is.

`audit_process(process, manifest)` runs on the process a run actually builds, before its first round,
and never executes it. Three checks, all of which must hold:

1. *Structure* — the client work (the TensorFlow computation `federated_map` applies to the markets'
   data and state, found by `dataflow.trace`) returns, besides its new private state, exactly the
   outputs the manifest declares, at the declared paths (names and order) and types. An extra scalar,
   a missing or a reordered field fails.
2. *Identity inside the client work* — each declared output's origins in its TensorFlow graph
   (`provenance.tf_origins`): an update must be read from exactly its declared Keras variable and taken
   against exactly its own slot of the server's model as broadcast; a statistic may read no model
   weight and no value the market holds privately (only reductions over its data, constants and server
   values). So a private variable of the same shape as a shared one, or the local codebook sent in place
   of the global update at `k_local == k_global`, is named and rejected.
3. *Crossings* — every tensor leaf of every CLIENTS→SERVER crossing is computed only from declared
   outputs of the client work and from server values (`dataflow`): the markets' private state and data
   never reach an aggregation any other way.

What it does not establish: how a statistic is computed inside a dataset reduction (the provenance
walk stops at the reduction: a statistic of the data is by nature a function of private values), and
anything the aggregator does on the server. Those are the manifest's and the aggregator's claims.
"""

from __future__ import annotations

from tff_fedmm.federated import dataflow
from tff_fedmm.federated.manifest import Manifest, Sent
from tff_fedmm.federated.provenance import REDUCTION, Origin, Origins, leaves, path_str


class IdentityAuditError(RuntimeError):
    """A value crosses CLIENTS→SERVER that the process's manifest does not declare, or not as declared."""

    def __init__(self, title: str, problems: list[str]):
        self.problems = problems
        super().__init__(f"privacy audit failed for {title}: {len(problems)} value(s) not allowed to "
                         "leave a market\n" + "\n".join(f"  - {p}" for p in problems))


def _names(origins) -> str:
    return ", ".join(sorted(o if isinstance(o, str) else o.name for o in origins)) or "nothing"


def _within(path: str, prefix: str) -> bool:
    return bool(prefix) and (path == prefix or path.startswith(prefix + "/"))


def _as_received(work: dataflow.ClientWork, graph: Origins) -> Origins:
    """What the client work's parameters in `graph` hold, as the market received them: server values
    (broadcast) or the market's own (`clients`). A parameter the walk cannot bind counts as private."""
    index = {path_str(p): i for i, (p, _) in enumerate(leaves(work.comp.type_signature.parameter))}
    return frozenset().union(*(work.arguments[index[o.name]] if o.name in index else {Origin("clients", o.name)}
                               for o in graph if o.kind == "param"))


def _judge_output(sent: Sent, graph: Origins, work: dataflow.ClientWork, manifest: Manifest) -> list[str]:
    reads = frozenset(o.name for o in graph if o.kind == "variable")
    received = _as_received(work, graph)
    private = [o for o in received if o.kind != "server"]
    problems = []
    if sent.is_update:
        if reads != sent.reads:
            problems.append(f"{sent.label}: read from {_names(reads)}; declared: the update of {_names(sent.reads)}")
        if received != {Origin("server", sent.received)}:
            problems.append(f"{sent.label}: taken against {_names(received)}; declared: the server's {sent.received}")
        if REDUCTION in graph:
            problems.append(f"{sent.label}: mixes a statistic of the data into the update of {_names(sent.reads)}")
        return problems
    bad = reads & manifest.weights if sent.reads is None else reads - sent.reads
    if bad:
        problems.append(f"{sent.label}: declared a statistic, but reads the model variable(s) {_names(bad)}")
    if private:
        problems.append(f"{sent.label}: declared a statistic, but carries the market's own {_names(private)}")
    return problems


def _judge_client_work(work: dataflow.ClientWork, manifest: Manifest) -> list[str]:
    declared = {s.path: s for s in manifest.sent}
    problems, seen = [], set()
    for (path, type_spec), graph in zip(leaves(work.comp.type_signature.result), work.outputs):
        key = path_str(path)
        if _within(key, manifest.kept):
            continue
        sent = declared.get(key)
        if sent is None:
            problems.append(f"{manifest.label(key)} ({type_spec}): sent by the client work, not declared "
                            f"(from: {', '.join(sorted(map(str, graph))) or 'a constant'})")
            continue
        seen.add(key)
        if str(type_spec) != sent.type:
            problems.append(f"{sent.label}: the client work sends {type_spec}; declared {sent.type}")
        problems += _judge_output(sent, graph, work, manifest)
    problems += [f"{s.label}: declared, but the client work has no such output" for s in manifest.sent
                 if s.path not in seen]
    return problems


def _judge_crossings(crossings: list[dataflow.TracedCrossing], manifest: Manifest) -> list[str]:
    declared = {s.path for s in manifest.sent}
    problems = []
    for c in crossings:
        for path, _, origins in c.leaves:
            where = f"{c.uri} ({path})" if path else c.uri
            for o in sorted(origins):
                if o.kind == "field" and o.name not in declared:
                    private = " — the market's private state" if _within(o.name, manifest.kept) else ""
                    problems.append(f"{where} carries {manifest.label(o.name)}, not declared as sent{private}")
                elif o.kind == "clients":
                    problems.append(f"{where} carries the market's {o.name} without passing the client work")
                elif o.kind not in ("field", "server"):
                    problems.append(f"{where} carries {o} from outside the client work")
    return problems


def audit_process(process, manifest: Manifest) -> dict:
    """Raises `IdentityAuditError` naming every offending value; returns the report: per crossing its
    intrinsic and type, and per tensor leaf its type and sources (declared outputs, server values)."""
    crossings, work = dataflow.trace(process.next)
    problems = _judge_client_work(work, manifest) if work is not None else []
    problems += _judge_crossings(crossings, manifest)
    if problems:
        raise IdentityAuditError(manifest.title, problems)
    by_path = {s.path: s for s in manifest.sent}

    def source(o: Origin) -> str:
        if o.kind != "field":
            return f"server value {o.name}"
        sent = by_path[o.name]
        return sent.source if sent.is_update else f"{sent.label} ({sent.source})"

    return {"process": manifest.title, "verdict": "passed: every value that crosses is declared, and read from its source",
            "crossings": [{"intrinsic": c.uri, "type": str(c.member_type),
                           "values": [{"value": path or "(whole)", "type": str(t),
                                       "sources": sorted(map(source, origins)) or ["a constant"]}
                                      for path, t, origins in c.leaves]} for c in crossings]}
