"""Model selection on the validation split, written once for every tuning task and ablation.

Each market keeps the round (or epoch) with the lowest validation LogLoss — the criterion the
federated stages and the Keras baselines use (`training.ctr`) — and ties go to the *first* such
round, so a run that plateaus is not credited with rounds that changed nothing. Methods and variants are
then compared on the mean over markets of what each market selected; the test split is never read.
"""

from __future__ import annotations

import pandas as pd

GROUP = ["method", "backbone"]


def selected_rounds(history: pd.DataFrame, by: list[str] | None = None) -> pd.DataFrame:
    """One row per (`by`…, market): the history row of its first round with the lowest valid LogLoss."""
    keys = [*(GROUP if by is None else by), "market"]
    ordered = history.sort_values([*keys, "round"], kind="stable")
    return ordered.loc[ordered.groupby(keys, sort=False)["valid_logloss"].idxmin()]


def validation_summary(history: pd.DataFrame, by: list[str] | None = None) -> pd.DataFrame:
    """Per (`by`…; default method × backbone): the mean over markets of the selected round's valid LogLoss
    and valid AUC."""
    keys = GROUP if by is None else by
    best = selected_rounds(history, keys)
    return best.groupby(keys, sort=False)[["valid_logloss", "valid_auc"]].mean()
