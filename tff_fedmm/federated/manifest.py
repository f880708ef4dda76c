"""What each federated process declares its client work sends: the manifest the identity audit checks.

A manifest is written from what an issue names as shared, not from the process's code: partial FedAvg
may send the update of every `shared_*` weight of the Keras model (the naming rule, `tff_fedmm.naming`),
the codebook process the payload fields of its rule (`client_payload_type`) with the global codebook as
the one variable, FedAvg every trainable variable (the baseline shares the whole model by definition).
Around those, each declares the statistics it sends by name (example counts, loss sums, ...). Each
entry says where the client work's output sits, its type, the variable it must be read from (an update)
or that it is a statistic, and which slot of the server's model it is the update against.

`federated.audit_identity` holds each process's real client work and crossings against its manifest.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import tensorflow as tf
import tensorflow_federated as tff
from tensorflow_federated.python.common_libs import structure

from tff_fedmm.federated.codebook_aggregator import client_payload_type
from tff_fedmm.models.rqvae import build_rqvae, global_codebook
from tff_fedmm.naming import SHARED_PREFIX, layer_weights

if TYPE_CHECKING:  # codebook_process builds processes; the manifest only reads its config
    from tff_fedmm.federated.codebook_process import CodebookStageConfig

# The server's model in `next`'s parameter: `LearningAlgorithmState.global_model_weights` of the server
# state `state`, in the processes composed by `federated.composer` and in TFF's own learning processes.
SERVER_MODEL = "state/global_model_weights"


def _composed_groups(update: str) -> tuple[tuple[str, str], ...]:
    """The client work's result in `compose_stateful_process`: (new client state, update, weight, metrics)."""
    return (("0", "client state"), ("1", update), ("2", "weight"), ("3", "metrics"))


@dataclass(frozen=True)
class Sent:
    """One output of the client work declared to leave the market.

    `reads`: the variables it may be read from (an update reads exactly these; a statistic at most
    these); None: any variable that is not a model weight (Keras metric accumulators). `received`: for
    an update, the leaf of the server's model it is taken against (as broadcast to the market)."""

    path: str  # in the client work's result, fields by name and elements by index: "1/codebook_update"
    label: str  # how reports name it: "update/shared_dnn_0/kernel", "metrics/loss"
    type: str  # its TFF type: "float32[64,32]"
    source: str  # what it is, for a reader
    reads: frozenset[str] | None = frozenset()
    received: str | None = None

    @property
    def is_update(self) -> bool:
        return self.received is not None


@dataclass(frozen=True)
class Manifest:
    """`kept`: the client work's result path that must never cross (its new private state; "" if none).
    `weights`: the names of every model weight (a statistic with `reads=None` reads none of them)."""

    title: str
    sent: tuple[Sent, ...]
    kept: str = ""
    groups: tuple[tuple[str, str], ...] = ()
    weights: frozenset[str] = frozenset()

    def label(self, path: str) -> str:
        """A readable name for a result path the manifest may not declare ("3/leak" -> "metrics/leak")."""
        head, _, rest = path.partition("/")
        return "/".join(p for p in (dict(self.groups).get(head, head), rest) if p)


def variable_name(variable: tf.Variable) -> str:
    """A Keras variable's name as its graph's `VarHandleOp` holds it: without the output index."""
    return variable.name.rpartition(":")[0] or variable.name


def _type(tensor: tf.Variable | tf.Tensor) -> str:
    return str(tff.TensorType(np.dtype(tensor.dtype.as_numpy_dtype), list(tensor.shape)))


def _update(path: str, label: str, variable: tf.Variable, received: str, how: str) -> Sent:
    name = variable_name(variable)
    return Sent(path, label, _type(variable), f"update of {name} ({how})", frozenset({name}), received)


def _metrics(described: dict[str, str]) -> list[Sent]:
    """The composed processes' scalar metrics (result element 3), summed across markets."""
    return [Sent(f"3/{name}", f"metrics/{name}", "float32", source) for name, source in described.items()]


_CODEBOOK_STATISTICS = {
    "code_sums": "per global code: sum of the level-1 latents the market's rows assign to it (kmeans rule)",
    "code_counts": "per global code: how many of the market's rows it quantizes (kmeans rule)",
    "anchor_means": "per anchor slot: mean level-1 latent of the market's anchor items in it, 0 where none",
    "anchor_counts": "per anchor slot: 1 where the market has an anchor item, else 0",
}
_CODEBOOK_METRICS = {
    "loss": "sum of the RQ-VAE loss over the round's examples",
    "reconstruction": "sum of the reconstruction error over the round's examples",
    "local_codes_used": "share of the market's local codes in use (one number)",
    "markets": "the constant 1 (counts the markets that sent)",
    "num_examples": "number of the market's RQ-VAE rows this round",
}
_CTR_METRICS = {"loss": "sum of the training loss over the round's examples",
                "num_examples": "number of examples this round"}


def codebook_manifest(config: CodebookStageConfig, title: str) -> Manifest:
    """The codebook process (`codebook_process.build_codebook_process(config)`): its rule's payload —
    the update of the global codebook variable, or per-code statistics — plus, anchored, the per-anchor
    statistics; the number of examples as weight; scalar metrics."""
    cfg = config.rqvae
    payload = client_payload_type(config.rule, cfg.k_global, cfg.latent_dim, config.anchors)
    model = build_rqvae(cfg)
    received = SERVER_MODEL + ("/codebook" if config.anchors else "")
    sent = []
    for name, type_spec in structure.iter_elements(payload):
        if name == "codebook_update":
            sent.append(_update(f"1/{name}", f"payload/{name}", global_codebook(model), received,
                                "trained minus received global codebook"))
        else:
            sent.append(Sent(f"1/{name}", f"payload/{name}", str(type_spec), _CODEBOOK_STATISTICS[name]))
    sent.append(Sent("2", "weight", "float32", "number of the market's RQ-VAE rows this round"))
    sent += _metrics(_CODEBOOK_METRICS)
    return Manifest(title, tuple(sent), kept="0", groups=_composed_groups("payload"),
                    weights=frozenset(map(variable_name, model.weights)))


def partial_fedavg_manifest(model: tf.keras.Model, title: str) -> Manifest:
    """Partial FedAvg (`partial_fedavg.build_partial_fedavg_process`) over `model`: the update of every
    `shared_*` weight, in layer order, each against its own slot of the server's model; the examples per
    local epoch as weight; the loss sum and example count."""
    shared = layer_weights(model, SHARED_PREFIX)
    sent = [_update(f"1/{i}", f"update/{variable_name(v)}", v, f"{SERVER_MODEL}/trainable/{i}",
                    "received minus trained") for i, v in enumerate(shared)]
    sent.append(Sent("2", "weight", "float32", "number of examples per local epoch"))
    sent += _metrics(_CTR_METRICS)
    return Manifest(title, tuple(sent), kept="0", groups=_composed_groups("update"),
                    weights=frozenset(map(variable_name, model.weights)))


def fedavg_manifest(model: tf.keras.Model, unfinalized_metrics: collections.OrderedDict, title: str) -> Manifest:
    """TFF's `build_weighted_fed_avg` over `model`: the update of every trainable variable (FedAvg
    shares the whole model, ID embeddings included), the number of examples as weight, and the sums of
    the TFF model's metrics (`report_local_unfinalized_metrics`: Keras metric accumulators)."""
    sent = [_update(f"0/update/{i}", f"update/{variable_name(v)}", v, f"{SERVER_MODEL}/trainable/{i}",
                    "received minus trained") for i, v in enumerate(model.trainable_variables)]
    sent.append(Sent("0/update_weight", "weight", "float32", "number of examples this round"))
    for name, values in unfinalized_metrics.items():
        for j, value in enumerate(values):
            sent.append(Sent(f"1/{name}/{j}", f"metrics/{name}/{j}", _type(tf.convert_to_tensor(value)),
                             f"metric accumulator {j} of {name} (a sum over the round's examples)", reads=None))
    return Manifest(title, tuple(sent), groups=(("0", "client result"), ("1", "metrics")),
                    weights=frozenset(map(variable_name, model.weights)))
