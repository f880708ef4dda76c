"""Which markets take part in a round: client sampling and drop-out, seeded, for every federated stage.

`--clients-per-round K` samples K of the N markets uniformly without replacement each round; then
`--dropout-rate p` drops each sampled market independently with probability p (a market that was asked
but never answered). The draw depends only on (seed, stage, round), so reruns and resumed runs see the
same markets. Absent markets are not passed to the TFF process at all: their private state is not an
argument of that round's computation, so it comes back bit-identical; the server aggregates over the
markets present. Evaluation is unaffected: every market scores its model every round.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from tff_fedmm.errors import UsageError
from tff_fedmm.seeding import derive_rng


@dataclass(frozen=True)
class Participation:
    clients_per_round: int | None = None  # None: every market is asked every round
    dropout_rate: float = 0.0
    seed: int = 0

    @property
    def everyone(self) -> bool:
        return self.clients_per_round is None and self.dropout_rate == 0.0

    def expected(self, markets: int) -> float:
        """Expected markets per round: the denominator of a DP mean (TFF's `clients_per_round`)."""
        asked = markets if self.clients_per_round is None else min(self.clients_per_round, markets)
        return asked * (1.0 - self.dropout_rate)

    def present(self, stage: str, round_num: int, markets: int) -> list[int]:
        """Indices (sorted) of the markets present in `round_num` of `stage`."""
        if self.everyone:
            return list(range(markets))
        rng = derive_rng("participation", self.seed, stage, round_num)
        asked = np.arange(markets)
        if self.clients_per_round is not None and self.clients_per_round < markets:
            asked = np.sort(rng.choice(markets, size=self.clients_per_round, replace=False))
        kept = rng.random(len(asked)) >= self.dropout_rate
        return [int(i) for i in asked[kept]]


def check_participation(participation: Participation) -> None:
    """Raises `UsageError` naming the flag for an impossible setting."""
    k = participation.clients_per_round
    if k is not None and k < 1:
        raise UsageError(f"--clients-per-round: expected a positive number of markets, got {k}")
    if not 0.0 <= participation.dropout_rate < 1.0:
        raise UsageError(f"--dropout-rate: expected a probability in [0, 1), got {participation.dropout_rate}")


def run_present(next_fn: Callable, server, clients: Sequence, data_fn: Callable[[int], object], present: list[int]):
    """One round with only the `present` markets; returns (server, all client states, metrics or None).

    `clients[i]` is market i's state (keyed by its `client_index`). Returned states are put back by
    `client_index`, never by position: TFF may return CLIENTS values in another order. With nobody
    present the round changes nothing and has no metrics.
    """
    if not present:
        return server, list(clients), None
    server, returned, metrics = next_fn(server, [clients[i] for i in present], [data_fn(i) for i in present])
    merged = list(clients)
    for state in returned:
        merged[int(state["client_index"])] = state
    return server, merged, metrics
