"""Bytes one market uploads per round, read off the TFF types of what crosses CLIENTS→SERVER.

The audit (`federated.audit.client_to_server_values`) finds every intrinsic through which a
CLIENTS-placed value reaches the SERVER — the aggregator's inputs (value and weight), the summed
metrics — and gives each crossing's member type, i.e. what ONE client sends there. Summing
dtype size × number of elements over every tensor leaf of every crossing is therefore the payload per
market per round, metrics included, as the computation is written (no wire overhead, no compression).
Types, not measurements: the figure is exact and needs no run.

`upload_at_vocabulary` rebuilds both CTR processes (no training) with N users + items per market, to show
how each upload grows with the vocabulary: FedAvg ships every ID embedding row, FedMM none.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np

from tff_fedmm.bench.workload import CTRWorkload, fedavg_ctr_process, fedmm_ctr_process
from tff_fedmm.federated.audit import Crossing, client_to_server_values

VOCABULARIES = (1_000, 10_000, 100_000)  # users + items per market


def tensor_bytes(t) -> int:
    """dtype size × elements of a `tff.TensorType`; raises on an unknown dimension (not a fixed payload)."""
    shape = None if t.shape is None else tuple(t.shape)
    if shape is None or any(d is None for d in shape):
        raise ValueError(f"a crossing tensor has an unknown dimension: {t}; its bytes are not fixed")
    return np.dtype(t.dtype).itemsize * math.prod(shape)


def crossing_bytes(crossings: Iterable[Crossing]) -> int:
    return sum(tensor_bytes(leaf) for c in crossings for leaf in c.leaves)


def upload_bytes(comp) -> int:
    """Bytes one client sends per call of `comp` (e.g. a process's `next`), summed over every crossing."""
    return crossing_bytes(client_to_server_values(comp))


@dataclass(frozen=True)
class Upload:
    codebook: int  # FedMM codebook-stage round
    fedmm_ctr: int  # FedMM CTR-stage round
    fedavg_ctr: int  # TFF FedAvg's CTR round

    @property
    def fedmm(self) -> int:
        """FedMM per round = one codebook-stage round + one CTR-stage round (both stages' uploads)."""
        return self.codebook + self.fedmm_ctr

    @property
    def ratio(self) -> float:
        return self.fedavg_ctr / self.fedmm


def upload_line(result: Upload) -> str:
    return (f"upload_bytes_per_market_per_round fedmm = {result.fedmm} fedavg = {result.fedavg_ctr} "
            f"ratio = {result.ratio:.2f} (fedmm = codebook round {result.codebook} + ctr round "
            f"{result.fedmm_ctr}; fedavg = FedAvg ctr round; float32 payload + weight + metrics)")


def upload_at_vocabulary(workload: CTRWorkload, codebook_bytes: int, ids: int) -> Upload:
    """The upload if every market had `ids` users + items (half each): the CTR processes rebuilt at that
    size (their example types do not depend on it); the codebook round never ships an ID row."""
    sized = replace(workload, users=ids // 2, items=ids - ids // 2)
    fedmm = fedmm_ctr_process(sized, workload.datasets(0, True)[0].element_spec)
    fedavg = fedavg_ctr_process(sized, element_spec=workload.datasets(0, False)[0].element_spec)
    return Upload(codebook=codebook_bytes, fedmm_ctr=upload_bytes(fedmm.next), fedavg_ctr=upload_bytes(fedavg.next))


def vocabulary_line(ids: int, result: Upload) -> str:
    return (f"upload_bytes_per_market_per_round ids={ids} fedmm = {result.fedmm} fedavg = {result.fedavg_ctr} "
            f"ratio = {result.ratio:.2f}")
