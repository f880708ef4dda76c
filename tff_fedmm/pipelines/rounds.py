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


@dataclass
class _Loop:
    """What the loop carries from one round to the next, and all a round's checkpoint holds."""

    state: object  # the stage's state after `round` rounds
    round: int
    waited: int  # rounds since any market last improved
    metrics: np.ndarray  # [rounds run, width]
    best: np.ndarray  # each market's best score so far
    best_state: list  # each market's snapshot at that score

    @classmethod
    def start(cls, initial, width: int, selection: Selection | None) -> _Loop:
        n = selection.markets if selection else 0
        return cls(initial, 0, 0, np.zeros((0, width), np.float64), np.full(n, -np.inf),
                   [selection.pick(initial, i) for i in range(n)])

    @classmethod
    def restore(cls, saved: dict, width: int) -> _Loop:
        """From a checkpoint, which hands numbers back as arrays."""
        return cls(saved["state"], int(saved["round"]), int(saved["waited"]),
                   np.asarray(saved["metrics"]).reshape(-1, width), np.asarray(saved["best"], np.float64),
                   list(saved["best_state"]))

    def saved(self) -> dict:
        return {"state": self.state, "round": self.round, "waited": self.waited, "metrics": self.metrics,
                "best": self.best, "best_state": self.best_state}

    def running(self, rounds: int, selection: Selection | None) -> bool:
        return self.round < rounds and (selection is None or self.waited < selection.patience)

    def after(self, state, row: np.ndarray, selection: Selection | None) -> _Loop:
        """The loop after one more round that ended in `state` with metrics `row`: each market keeps its
        snapshot when the round improved its score."""
        best, best_state, improved = self.best.copy(), list(self.best_state), False
        if selection is not None:
            for i, score in enumerate(selection.scores(row)):
                if score > best[i]:
                    best[i], best_state[i], improved = score, selection.pick(state, i), True
        return _Loop(state, self.round + 1, 0 if improved else self.waited + 1,
                     np.concatenate([self.metrics, row[None, :]]), best, best_state)


def run_rounds(initial, step: Step, rounds: int, width: int, *, selection: Selection | None = None,
               checkpoint: StageCheckpoint | None = None) -> RoundsResult:
    loop = _Loop.start(initial, width, selection)
    saved = checkpoint.load_round(loop.saved()) if checkpoint is not None else None
    if saved:
        loop = _Loop.restore(saved, width)
    while loop.running(rounds, selection):
        state, row = step(loop.state, loop.round)
        loop = loop.after(state, np.asarray(row), selection)
        if checkpoint is not None:
            checkpoint.save_round(loop.saved(), loop.round)
    return RoundsResult(best_state=loop.best_state if selection else loop.state, metrics=loop.metrics,
                        state=loop.state)
