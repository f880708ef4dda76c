"""The round loop of every federated stage: step, score, keep the best, checkpoint, stop early.

Model selection is per market: after every round each market scores the model it would use on its own
validation split and keeps its own best round (its snapshot of the shared weights and its private
state). A market needs nothing from the others for that, and it is the choice the non-federated
baselines make too (each market keeps its best epoch). The loop stops once no market has improved for
`patience` rounds; under DP, where that cross-market signal may not leave the markets, stages pass a
patience of all their rounds, so the rounds are fixed.

The loop's whole state is one structure saved after every round, so a killed run resumed from its
checkpoint continues exactly where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tff_fedmm.checkpoints import StageCheckpoint

# step(state, round_num) -> (new state, one row of round metrics, e.g. each market's valid AUC)
Step = Callable[[object, int], tuple[object, np.ndarray]]


@dataclass(frozen=True)
class Selection:
    """`scores(row)`: one score per market, higher is better; `pick(state, i)`: market i's snapshot."""

    scores: Callable[[np.ndarray], np.ndarray]
    pick: Callable[[object, int], object]
    markets: int
    patience: int


@dataclass
class RoundsResult:
    best_state: object  # the last state, or with a Selection the list of per-market best snapshots
    metrics: np.ndarray  # [rounds run, metrics per round]
    state: object = None  # the last state (with a Selection, the server's DP state is read from it)


def run_rounds(initial, step: Step, rounds: int, width: int, *, selection: Selection | None = None,
               checkpoint: StageCheckpoint | None = None) -> RoundsResult:
    n = selection.markets if selection else 0
    loop = {"state": initial, "round": 0, "waited": 0, "metrics": np.zeros((0, width), np.float64),
            "best": np.full(n, -np.inf), "best_state": [selection.pick(initial, i) for i in range(n)]}
    if checkpoint is not None:
        loop = checkpoint.load_round(loop) or loop
    while loop["round"] < rounds and (selection is None or loop["waited"] < selection.patience):
        state, row = step(loop["state"], int(loop["round"]))
        metrics = np.concatenate([np.asarray(loop["metrics"]).reshape(-1, width), np.asarray(row)[None, :]])
        best, best_state, improved = np.asarray(loop["best"], np.float64), list(loop["best_state"]), False
        if selection is not None:
            for i, score in enumerate(selection.scores(np.asarray(row))):
                if score > best[i]:
                    best[i], best_state[i], improved = score, selection.pick(state, i), True
        loop = {"state": state, "round": int(loop["round"]) + 1, "metrics": metrics, "best": best,
                "waited": 0 if improved else int(loop["waited"]) + 1, "best_state": best_state}
        if checkpoint is not None:
            checkpoint.save_round(loop, loop["round"])
    return RoundsResult(best_state=loop["best_state"] if selection else loop["state"],
                        metrics=np.asarray(loop["metrics"]).reshape(-1, width), state=loop["state"])
