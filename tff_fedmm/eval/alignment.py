"""Do markets agree on codes? Measures of cross-market alignment of the shared (global) codebook.

If federated training works, the same product sold in two markets should receive the same level-1
global code more often than two unrelated code distributions would produce by chance.
"""

from __future__ import annotations

import numpy as np
from sklearn.metrics import normalized_mutual_info_score


def _distribution(codes: np.ndarray, num_codes: int, what: str) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.ndim != 1 or codes.size == 0:
        raise ValueError(f"{what} must be a non-empty 1-d array of level-1 codes, got shape {codes.shape}")
    if codes.min() < 0 or codes.max() >= num_codes:
        raise ValueError(f"{what} must lie in [0, {num_codes}), got range [{codes.min()}, {codes.max()}]")
    return np.bincount(codes, minlength=num_codes) / codes.size


def code_agreement(
    paired_a: np.ndarray,
    paired_b: np.ndarray,
    num_codes: int,
    *,
    all_codes_a: np.ndarray,
    all_codes_b: np.ndarray,
) -> dict[str, float]:
    """Agreement of level-1 codes on paired items, and the agreement expected by chance.

    `paired_a[i]` and `paired_b[i]` are the codes of the same product in markets A and B.
    agreement = mean(paired_a == paired_b); chance = sum_k p_k^A p_k^B, where p^A, p^B are the
    empirical code distributions over *all* items of each market (`all_codes_a`, `all_codes_b`), not
    only the paired ones: the baseline is two markets assigning codes independently at their own
    overall rates, so a popular code shared by accident does not count as alignment.
    """
    paired_a, paired_b = np.asarray(paired_a), np.asarray(paired_b)
    if paired_a.shape != paired_b.shape:
        raise ValueError(f"paired_a and paired_b must have equal shapes, got {paired_a.shape}, {paired_b.shape}")
    _distribution(paired_a, num_codes, "paired_a")
    _distribution(paired_b, num_codes, "paired_b")
    p_a = _distribution(all_codes_a, num_codes, "all_codes_a")
    p_b = _distribution(all_codes_b, num_codes, "all_codes_b")
    return {"agreement": float(np.mean(paired_a == paired_b)), "chance": float(p_a @ p_b)}


def cluster_nmi(codes: np.ndarray, clusters: np.ndarray) -> float:
    """sklearn's normalized mutual information (arithmetic normalisation) between codes and known clusters."""
    return float(normalized_mutual_info_score(np.asarray(clusters), np.asarray(codes)))


def pairwise_alignment(same_item, item_codes: dict[str, np.ndarray], num_codes: int) -> list[dict]:
    """Per market pair sharing items: level-1 agreement on the shared items, chance, and their ratio.

    `same_item` is the evaluation-only table (market_a, item_a, market_b, item_b as item indices);
    `item_codes[m][i]` is item i's level-1 code in market m. Pairs with a market not in `item_codes`
    are skipped.
    """
    rows = []
    for (a, b), group in same_item.groupby(["market_a", "market_b"], sort=True):
        if a not in item_codes or b not in item_codes or len(group) == 0:
            continue
        result = code_agreement(item_codes[a][group.item_a.to_numpy()], item_codes[b][group.item_b.to_numpy()],
                                num_codes, all_codes_a=item_codes[a], all_codes_b=item_codes[b])
        rows.append({"market_a": a, "market_b": b, "pairs": len(group), **result,
                     "ratio": result["agreement"] / result["chance"] if result["chance"] > 0 else float("nan")})
    return rows
