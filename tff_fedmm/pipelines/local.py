"""The local pipeline: each market alone, CF → RQ-VAE (both levels local) → codes → CTR.

The RQ-VAE runs through the same TFF codebook process as FedMM, with the market as its only client:
with one participant the federated rules reduce to local ones, so `local+codes` and `fedmm` differ in
who takes part in the aggregation and nothing else.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import pandas as pd

from tff_fedmm.codes import MarketCodes, encode_market, with_codes
from tff_fedmm.data.markets import MarketSet
from tff_fedmm.data.splits import Market
from tff_fedmm.eval.evaluate import evaluate_market
from tff_fedmm.federated.codebook_process import (
    CodebookStageConfig, build_codebook_process, initial_client_state, rqvae_dataset,
)
from tff_fedmm.models.cf import CFConfig, embedding_tables, rqvae_inputs, train_cf
from tff_fedmm.models.ctr import build_ctr_model
from tff_fedmm.models.ctr_training import CTRTrainConfig, fit_ctr_on_market

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LocalPipelineConfig:
    cf: CFConfig = field(default_factory=CFConfig)
    codebook: CodebookStageConfig = field(default_factory=CodebookStageConfig)
    codebook_rounds: int = 20
    ctr: CTRTrainConfig = field(default_factory=CTRTrainConfig)
    embed_dim: int = 16
    hidden: tuple[int, ...] = (64, 32)


def learn_local_codes(market: Market, config: LocalPipelineConfig, process=None) -> MarketCodes:
    """CF tables, then the RQ-VAE trained by the codebook process with this market as sole client."""
    cf_model = train_cf(market, config.cf)
    x = rqvae_inputs(*embedding_tables(cf_model))
    process = process or build_codebook_process(config.codebook)
    state = process.initialize()
    clients = [initial_client_state(config.codebook, 0, state.global_model_weights, x)]
    for round_num in range(config.codebook_rounds):
        data = [rqvae_dataset(x, seed=config.codebook.rqvae.seed + round_num)]
        state, clients, _ = process.next(state, clients, data)
    return encode_market(config.codebook.rqvae, state.global_model_weights, clients[0], x, market.num_users)


def run_local(market_set: MarketSet, backbones: list[str], config: LocalPipelineConfig) -> pd.DataFrame:
    """Rows `method,backbone,market,auc,logloss,hr@10,ndcg@10` for methods `local` and `local+codes`."""
    process = build_codebook_process(config.codebook)
    rq = config.codebook.rqvae
    rows = []
    for name, market in market_set.markets.items():
        codes = learn_local_codes(market, config, process)
        for backbone in backbones:
            for method, k_global, k_local in (("local", 0, 0), ("local+codes", rq.k_global, rq.k_local)):
                model = build_ctr_model(backbone, num_users=market.num_users, num_items=market.num_items,
                                        k_global=k_global, k_local=k_local, embed_dim=config.embed_dim,
                                        hidden=config.hidden)
                featurize = (lambda ex: with_codes(ex, codes)) if k_global else dict
                fit_ctr_on_market(model, market, config.ctr, featurize)
                metrics = evaluate_market(model, market, "test", featurize, seed=config.ctr.seed)
                log.info("%s %s %s %s", method, backbone, name, metrics)
                rows.append({"method": method, "backbone": backbone, "market": name, **metrics})
    return pd.DataFrame(rows, columns=["method", "backbone", "market", "auc", "logloss", "hr@10", "ndcg@10"])
