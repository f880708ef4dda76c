"""The round loop of every federated stage: step, score, keep the best, checkpoint, stop early.

The loop's whole state (model state, best state, scores so far) is one structure saved after every
round, so a killed run resumed from its checkpoint continues exactly where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tff_fedmm.checkpoints import StageCheckpoint

# step(state, round_num) -> (new state, one row of round metrics, e.g. each market's valid AUC)
Step = Callable[[object, int], tuple[object, np.ndarray]]


@dataclass
class RoundsResult:
    best_state: object
    metrics: np.ndarray  # [rounds run, metrics per round]


def run_rounds(initial, step: Step, rounds: int, width: int, *, patience: int | None = None,
               score: Callable[[np.ndarray], float] | None = None,
               checkpoint: StageCheckpoint | None = None) -> RoundsResult:
    """With `patience` and `score` (higher is better, of a metric row), the best state is the round with
    the best score and the loop stops after `patience` rounds without improvement; else the last round."""
    loop = {"state": initial, "best_state": initial, "best": -np.inf, "waited": 0, "round": 0,
            "metrics": np.zeros((0, width), np.float64)}
    if checkpoint is not None:
        loop = checkpoint.load_round(loop) or loop
    while loop["round"] < rounds and (patience is None or loop["waited"] < patience):
        state, row = step(loop["state"], int(loop["round"]))
        metrics = np.concatenate([np.asarray(loop["metrics"]).reshape(-1, width), np.asarray(row)[None, :]])
        value = float(score(np.asarray(row))) if patience is not None else np.inf
        improved = patience is None or value > loop["best"]
        loop = {"state": state, "best_state": state if improved else loop["best_state"],
                "best": value if improved and patience is not None else loop["best"],
                "waited": 0 if improved else int(loop["waited"]) + 1,
                "round": int(loop["round"]) + 1, "metrics": metrics}
        if checkpoint is not None:
            checkpoint.save_round(loop, loop["round"])
    return RoundsResult(best_state=loop["best_state"], metrics=np.asarray(loop["metrics"]).reshape(-1, width))
