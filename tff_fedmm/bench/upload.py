"""Bytes one market uploads per round, read off the TFF types of what crosses CLIENTS→SERVER.

The audit (`federated.audit.client_to_server_values`) finds every intrinsic through which a CLIENTS value
reaches the SERVER (aggregator value and weight, summed metrics) with its member type, i.e. what ONE client
sends. dtype size × elements summed over every tensor leaf is the payload per market per round, metrics
included, as written (no wire overhead, no compression): exact, and no run needed.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from tff_fedmm.bench.ctr import CTRWorkload, fedavg_process, fedmm_runner
from tff_fedmm.federated.audit import client_to_server_values

VOCABULARIES = (1_000, 10_000, 100_000)  # users + items per market


def upload_bytes(comp) -> int:
    """Bytes one client sends per call of `comp` (e.g. a process's `next`); raises on an unfixed dimension."""
    total = 0
    for leaf in (leaf for crossing in client_to_server_values(comp) for leaf in crossing.leaves):
        if leaf.shape is None or any(d is None for d in leaf.shape):
            raise ValueError(f"a crossing tensor has an unknown dimension: {leaf}; its bytes are not fixed")
        total += np.dtype(leaf.dtype).itemsize * math.prod(leaf.shape)
    return total


def upload_line(codebook: int, fedmm_ctr: int, fedavg_ctr: int, ids: int | None = None) -> str:
    """FedMM per round is one codebook-stage round plus one CTR-stage round; FedAvg's, its CTR round."""
    fedmm, size = codebook + fedmm_ctr, "" if ids is None else f" ids={ids}"
    line = (f"upload_bytes_per_market_per_round{size} fedmm = {fedmm} fedavg = {fedavg_ctr} "
            f"ratio = {fedavg_ctr / fedmm:.2f}")
    if ids is None:
        line += (f" (fedmm = codebook round {codebook} + ctr round {fedmm_ctr}; fedavg = FedAvg ctr round; "
                 f"float32 payload + weight + metrics)")
    return line


def upload_at_vocabulary(work: CTRWorkload, codebook_bytes: int, ids: int) -> str:
    """As if every market had `ids` users + items (half each): both CTR processes rebuilt at that size, not
    trained. FedAvg ships every ID embedding row, FedMM none (nor does its codebook round)."""
    sized = replace(work, users=ids // 2, items=ids - ids // 2)
    fedmm, fedavg = fedmm_runner(sized).process, fedavg_process(sized)
    return upload_line(codebook_bytes, upload_bytes(fedmm.next), upload_bytes(fedavg.next), ids)
