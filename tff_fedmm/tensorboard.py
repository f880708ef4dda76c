"""The run's curves as TensorBoard logs: `tensorboard --logdir RUN/tensorboard`.

    write_tensorboard(folder, result)  # result: a CompareResult, or the RunFolder `read_run` returns

- `tensorboard/<method>_<backbone>/`: `valid_auc` and `valid_logloss`, mean over markets (and seeds), step = round
  (Keras methods: epoch; a market that stopped early leaves that epoch's mean to the others);
- `tensorboard/codebook_<variant>/`: every numeric column of the codebook history (`loss`,
  `reconstruction`, `local_codes_used`, `global_codes_updated`), mean over markets where the variant
  trained market by market, step = codebook round.

Written with TFF's own `tff.program.TensorBoardReleaseManager` (one per run directory, `release(value,
key=round)`), which turns each scalar of the released structure into a `tf.summary.scalar` named by its
key; no `tf.summary` fallback is needed. TensorBoard 2 stores these as tensor summaries of the scalars
plugin (`EventAccumulator.Tags()["tensors"]`). `release` is a coroutine: it is run with `checkpoints.run_sync`,
on a helper thread when the caller already runs an event loop (a Jupyter kernel does).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import tensorflow_federated as tff

from tff_fedmm.checkpoints import run_sync

TENSORBOARD_DIR = "tensorboard"
HISTORY_TAGS = ("valid_auc", "valid_logloss")


def write_tensorboard(folder: Path, result) -> Path:
    """Writes the logs under `folder/tensorboard` and returns that directory; a run directory written
    again has its old event files replaced, so a resumed run does not show every point twice."""
    root = Path(folder) / TENSORBOARD_DIR
    root.mkdir(parents=True, exist_ok=True)
    runs = scalar_runs(result)
    if runs:
        run_sync(_release_all(root, runs))
    return root


def scalar_runs(result) -> dict[str, dict[int, dict[str, float]]]:
    """{run directory name: {step: {tag: value}}}: what `write_tensorboard` releases."""
    runs: dict[str, dict[int, dict[str, float]]] = {}
    history = _frame(result, "history")
    tags = [t for t in HISTORY_TAGS if t in history.columns]
    if tags and {"method", "backbone", "round"} <= set(history.columns):
        means = history.groupby(["method", "backbone", "round"], sort=False)[tags].mean()
        for (method, backbone, step), row in means.iterrows():
            runs.setdefault(_safe(f"{method}_{backbone}"), {})[int(step)] = row.to_dict()
    codebook = _frame(result, "codebook_history")
    if {"codes", "round"} <= set(codebook.columns):
        numeric = [c for c in codebook.columns if c not in ("codes", "round", "market", "seed")
                   and pd.api.types.is_numeric_dtype(codebook[c])]
        means = codebook.groupby(["codes", "round"], sort=False)[numeric].mean()
        for (variant, step), row in means.iterrows():
            runs.setdefault(_safe(f"codebook_{variant}"), {})[int(step)] = row.to_dict()
    return runs


async def _release_all(root: Path, runs: dict[str, dict[int, dict[str, float]]]) -> None:
    for name, steps in runs.items():
        for old in (root / name).glob("events.out.tfevents.*"):  # a rewritten run (e.g. resumed) replaces its log
            old.unlink()
        manager = tff.program.TensorBoardReleaseManager(root / name)
        for step in sorted(steps):
            values = {tag: np.float32(v) for tag, v in steps[step].items() if np.isfinite(v)}
            if values:
                await manager.release(values, key=step)
        # The manager has no flush/close of its own; its writer's flush makes the file complete now
        # rather than when the writer is garbage-collected.
        writer = getattr(manager, "_summary_writer", None)
        if writer is not None:
            writer.flush()


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_+." else "_" for c in name)


def _frame(result, name: str) -> pd.DataFrame:
    frame = getattr(result, name, None)
    return frame if isinstance(frame, pd.DataFrame) else pd.DataFrame()
