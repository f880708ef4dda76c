"""What the anchored-mode membership adversaries observe (`federated.privacy_attack.attack_anchor_targets`).

In anchored mode each market sends, next to its codebook payload, `anchor_means` and `anchor_counts`
per anchor slot (`federated.codebook_aggregator`). The finalizer keeps only their ratio (the consensus)
and whether a slot was ever sent, so the released aggregate itself is not in the server state: the trace
builds the same aggregator wrapped in `ReleasedAggregate`, which passes its state and result through
unchanged and adds the result to the round's measurements. That is the output of the DP mechanism, so ε
covers it; the broadcast (consensus, known slots) is a function of it, and an adversary reading it sees
at least what the broadcast shows.

Each market's own payload is recomputed as `attack_trace` recomputes its codebook update (a plain
process on that market alone, from the same states and dataset): with one market, the aggregate is its
payload (`anchor_counts` exactly, `anchor_means` = consensus × counts).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

import numpy as np
import tensorflow_federated as tff

from tff_fedmm.federated import privacy_attack as pa


@dataclass(frozen=True)
class AnchorTrace:
    carries: dict[str, np.ndarray]  # market → bool[A]: which slots its data carries (evaluator only)
    released_counts: np.ndarray  # [rounds, A]: the aggregator's released `anchor_counts`
    market_payloads: dict[str, dict[str, np.ndarray]] | None  # market → field → [rounds, ...]; None: not recorded


class ReleasedAggregate:
    """A codebook aggregator factory (`GlobalCodebookFactory`'s interface) that behaves as `inner` and
    also reports its result as the measurement `released`."""

    def __init__(self, inner) -> None:
        self.rule = inner.rule
        self._inner = inner

    def create(self, value_type, weight_type):
        process = self._inner.create(value_type, weight_type)

        @tff.federated_computation(process.initialize.type_signature.result,
                                   tff.FederatedType(value_type, tff.CLIENTS),
                                   tff.FederatedType(weight_type, tff.CLIENTS))
        def next_fn(state, value, weight):
            output = process.next(state, value, weight)
            measurements = tff.federated_zip(collections.OrderedDict(inner=output.measurements,
                                                                     released=output.result))
            return tff.templates.MeasuredProcessOutput(state=output.state, result=output.result,
                                                       measurements=measurements)

        return tff.templates.AggregationProcess(process.initialize, next_fn)


def released(metrics) -> dict[str, np.ndarray]:
    """The anchor fields of the aggregate `ReleasedAggregate` reported in a round's `metrics`."""
    result = metrics["aggregator"]["released"]
    counts = np.asarray(result["anchor_counts"])
    return {"anchor_counts": counts, "anchor_means": np.asarray(result["anchor_consensus"]) * counts[:, None]}


def carries_of(slots: dict[str, np.ndarray], num_slots: int) -> dict[str, np.ndarray]:
    """Each market's truth (`privacy_attack.anchor_truth`) from its rows' slots."""
    return {name: pa.anchor_truth(s, num_slots) for name, s in slots.items()}


def summarize_anchors(trace: AnchorTrace, view: str, clip: float | None) -> dict:
    """The list, (a) and (b) against every target that has an AUC: means over those targets, how many
    there are, how many slots there are, and the mean of the targets' chance standard deviations: a bound
    on that of the mean AUC whatever the targets' correlation (the standard deviation of a sum is at most
    the sum of theirs), and the targets share their slots' scores."""
    rows = pa.attack_anchor_targets(trace.carries, trace.released_counts, trace.market_payloads, view, clip)
    mean = {f"anchor_{key}": float(np.mean([r[key] for r in rows])) if rows else float("nan")
            for key in ("auc_list", "auc_a", "auc_b")}
    return {"anchor_slots": trace.released_counts.shape[1], "anchor_targets": len(rows),
            "anchor_chance_std": float(np.mean([r["chance_std"] for r in rows])) if rows else float("nan"), **mean}
