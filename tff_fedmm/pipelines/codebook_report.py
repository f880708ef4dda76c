"""The codebook report of a code variant: per market, code usage and perplexity per level, collisions,
errors, cross-market alignment of level-1 codes (and NMI with the true clusters on synthetic data).

`codebooks.csv` of a run folder and the `alignment` column of `results.csv` come from here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from tff_fedmm.codes import MarketCodes
from tff_fedmm.data.markets import MarketSet
from tff_fedmm.eval.alignment import cluster_nmi, code_agreement
from tff_fedmm.eval.codebook_stats import code_usage, collision_rate, perplexity


def codebook_report(market_set: MarketSet, codes: dict[str, MarketCodes], k_global: int,
                    k_local: int, pairs: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per market: usage and perplexity per level, collision rate, alignment (and NMI on synthetic).

    Alignment uses the evaluation-only same-item table (`pairs`, default `market_set.same_item`; in
    anchored mode only the held-out items, `data.anchors.held_out_pairs`): for items that are the same
    product in two markets, how often their level-1 codes agree, next to the chance rate Σ_k p_k^a p_k^b.
    """
    rows = []
    for name, c in codes.items():
        g = np.concatenate([c.user_global, c.item_global])
        l = np.concatenate([c.user_local, c.item_local])
        row = {"market": name, "global_usage": code_usage(g, k_global), "global_perplexity": perplexity(g, k_global),
               "local_usage": code_usage(l, k_local), "local_perplexity": perplexity(l, k_local),
               "collision_rate": collision_rate(g, l), "level1_error": c.errors[0], "level2_error": c.errors[1],
               "reconstruction_error": c.errors[2]}
        row.update(_alignment(market_set.same_item if pairs is None else pairs, codes, name, k_global))
        if market_set.item_cluster is not None:
            row["cluster_nmi"] = cluster_nmi(c.item_global, market_set.item_cluster[name])
        rows.append(row)
    return pd.DataFrame(rows)


def _alignment(pairs: pd.DataFrame, codes: dict[str, MarketCodes], name: str, k_global: int) -> dict:
    """Pair-weighted agreement and chance over every other market sharing items with `name`."""
    agree = chance = n = 0.0
    for other in codes:
        if other == name:
            continue
        ab = pairs[(pairs.market_a == name) & (pairs.market_b == other)]
        ba = pairs[(pairs.market_a == other) & (pairs.market_b == name)]
        mine = np.concatenate([ab.item_a.to_numpy(), ba.item_b.to_numpy()]).astype(int)
        theirs = np.concatenate([ab.item_b.to_numpy(), ba.item_a.to_numpy()]).astype(int)
        if len(mine) == 0:
            continue
        result = code_agreement(codes[name].item_global[mine], codes[other].item_global[theirs], k_global,
                                all_codes_a=codes[name].item_global, all_codes_b=codes[other].item_global)
        agree += result["agreement"] * len(mine)
        chance += result["chance"] * len(mine)
        n += len(mine)
    if n == 0:
        return {"alignment": np.nan, "alignment_chance": np.nan, "aligned_pairs": 0}
    return {"alignment": agree / n, "alignment_chance": chance / n, "aligned_pairs": int(n)}
