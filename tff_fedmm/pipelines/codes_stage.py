"""Stage 1–2 of FedMM for a set of markets: CF embeddings, then codes from the codebook process.

`federated=True` runs every market as a client of one codebook process (the global codebook is
aggregated across markets); `federated=False` runs the same process once per market with that market
as its sole client (both levels private: the `local+codes` and `fedmm-local-only` codes).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from tff_fedmm.codes import MarketCodes, encode_market
from tff_fedmm.data.markets import MarketSet
from tff_fedmm.eval.alignment import cluster_nmi, code_agreement
from tff_fedmm.eval.codebook_stats import code_usage, collision_rate, perplexity
from tff_fedmm.federated.codebook_process import (
    CodebookStageConfig, build_codebook_process, initial_client_state, rqvae_dataset,
)
from tff_fedmm.models.cf import CFConfig, embedding_tables, rqvae_inputs, train_cf

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CodesConfig:
    cf: CFConfig = field(default_factory=CFConfig)
    codebook: CodebookStageConfig = field(default_factory=CodebookStageConfig)
    rounds: int = 20


@dataclass
class CodesResult:
    codes: dict[str, MarketCodes]
    history: list[dict]  # one row per round: round, loss, reconstruction, codes used


def cf_inputs(market_set: MarketSet, config: CFConfig) -> dict[str, np.ndarray]:
    """Each market's RQ-VAE input rows (users then items), from its own CF model."""
    return {name: rqvae_inputs(*embedding_tables(train_cf(market, config)))
            for name, market in market_set.markets.items()}


def run_codebook(market_set: MarketSet, inputs: dict[str, np.ndarray], config: CodesConfig,
                 participants: list[str], process=None) -> CodesResult:
    """Trains the codebook process with `participants` as its clients and encodes each of them."""
    process = process or build_codebook_process(config.codebook)
    state = process.initialize()
    clients = [initial_client_state(config.codebook, i, state.global_model_weights, inputs[name])
               for i, name in enumerate(participants)]
    history = []
    for round_num in range(config.rounds):
        data = [rqvae_dataset(inputs[name], seed=config.codebook.rqvae.seed + 1000 * round_num + i)
                for i, name in enumerate(participants)]
        state, clients, metrics = process.next(state, clients, data)
        work = metrics["client_work"]
        history.append({"round": round_num + 1, "loss": float(work["loss"]),
                        "reconstruction": float(work["reconstruction"]),
                        "local_codes_used": float(work["local_codes_used"]),
                        "global_codes_updated": float(metrics["finalizer"]["global_codes_updated"])})
    codes = {}
    for client in clients:
        name = participants[int(client["client_index"])]  # keyed by index, never by list position
        codes[name] = encode_market(config.codebook.rqvae, state.global_model_weights, client, inputs[name],
                                    market_set.markets[name].num_users)
    return CodesResult(codes=codes, history=history)


def learn_codes(market_set: MarketSet, config: CodesConfig, federated: bool, process=None,
                inputs: dict[str, np.ndarray] | None = None) -> CodesResult:
    """`inputs` (from `cf_inputs`) may be passed in so that code variants share one CF stage."""
    inputs = inputs if inputs is not None else cf_inputs(market_set, config.cf)
    process = process or build_codebook_process(config.codebook)
    if federated:
        return run_codebook(market_set, inputs, config, market_set.names, process)
    codes, history = {}, []
    for name in market_set.names:
        result = run_codebook(market_set, inputs, config, [name], process)
        codes.update(result.codes)
        history.extend({**row, "market": name} for row in result.history)
    return CodesResult(codes=codes, history=history)


def codebook_report(market_set: MarketSet, codes: dict[str, MarketCodes], k_global: int,
                    k_local: int) -> pd.DataFrame:
    """Per market: usage and perplexity per level, collision rate, alignment (and NMI on synthetic).

    Alignment uses the evaluation-only same-item table: for items that are the same product in two
    markets, how often their level-1 codes agree, next to the chance rate Σ_k p_k^a p_k^b.
    """
    rows = []
    for name, c in codes.items():
        g = np.concatenate([c.user_global, c.item_global])
        l = np.concatenate([c.user_local, c.item_local])
        row = {"market": name, "global_usage": code_usage(g, k_global), "global_perplexity": perplexity(g, k_global),
               "local_usage": code_usage(l, k_local), "local_perplexity": perplexity(l, k_local),
               "collision_rate": collision_rate(g, l)}
        row.update(_alignment(market_set, codes, name, k_global))
        if market_set.item_cluster is not None:
            row["cluster_nmi"] = cluster_nmi(c.item_global, market_set.item_cluster[name])
        rows.append(row)
    return pd.DataFrame(rows)


def _alignment(market_set: MarketSet, codes: dict[str, MarketCodes], name: str, k_global: int) -> dict:
    """Pair-weighted agreement and chance over every other market sharing items with `name`."""
    pairs = market_set.same_item
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
