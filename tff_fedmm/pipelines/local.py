"""The local pipeline: each market alone, CF → RQ-VAE (both levels local) → codes → CTR.

The RQ-VAE runs through the same TFF codebook process as FedMM, with the market as its only client:
with one participant the federated rules reduce to local ones, so a market's `local+codes` codes differ
from FedMM's only in who takes part in the codebook aggregation (their CTR stages differ too: Keras alone
here, partial FedAvg for FedMM).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

from tff_fedmm.data.markets import MarketSet
from tff_fedmm.eval.evaluate import METRICS
from tff_fedmm.pipelines.codes_stage import CodesConfig, learn_codes
from tff_fedmm.pipelines.ctr_stage import CodeUse, CTRStageConfig, train_local, with_settings
from tff_fedmm.pipelines.tuned import settings_for

RESULT_COLUMNS = ["method", "backbone", "market", *METRICS]


@dataclass(frozen=True)
class LocalPipelineConfig:
    codes: CodesConfig = field(default_factory=CodesConfig)
    ctr: CTRStageConfig = field(default_factory=CTRStageConfig)
    tuned: dict[str, dict[str, float]] = field(default_factory=dict)  # as `CompareConfig.tuned`


def run_local(market_set: MarketSet, backbones: list[str], config: LocalPipelineConfig) -> pd.DataFrame:
    """Rows `method,backbone,market` and every metric of `eval.evaluate.METRICS`, for `local` and `local+codes`."""
    rq = config.codes.codebook.rqvae
    k = (rq.k_global, rq.k_local)
    codes = learn_codes(market_set, config.codes, federated=False).codes
    rows = []
    for backbone in backbones:
        for method, use in (("local", CodeUse()), ("local+codes", CodeUse(codes))):
            ctr = with_settings(config.ctr, settings_for(config.tuned, method, backbone))
            metrics, _ = train_local(market_set, backbone, use, ctr, k)
            rows.extend({"method": method, "backbone": backbone, "market": name, **m} for name, m in metrics.items())
    return pd.DataFrame(rows, columns=RESULT_COLUMNS)
