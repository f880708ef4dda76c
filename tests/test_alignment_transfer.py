"""Issue #12: on synthetic markets whose shared clusters are identifiable (a launch date common to all
markets), level-1 codes read from descriptors align across markets and follow the planted clusters;
codes read from each market's private CF encoder, and randomly permuted codes, do not."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tff_fedmm.data.synthetic import SyntheticConfig

K = 16


def pooled_ratio(same_item, codes: dict[str, np.ndarray]) -> float:
    from tff_fedmm.eval.alignment import pairwise_alignment

    rows = pairwise_alignment(same_item, codes, K)
    return sum(r["agreement"] * r["pairs"] for r in rows) / sum(r["chance"] * r["pairs"] for r in rows)


@pytest.fixture(scope="module")
def identifiable():
    from tff_fedmm.data.markets import load_markets

    return load_markets("synthetic", None, SyntheticConfig(num_markets=3, users_per_market=150, items_per_market=120,
                                                           launch_jitter_days=20))


def test_launch_dates_are_shared_by_cluster_across_markets(identifiable):
    """The planted, market-invariant attribute: a shared cluster's items launch together in every market."""
    first = {}
    for name, market in identifiable.markets.items():
        rows = market.train.assign(cluster=identifiable.item_cluster[name][market.train["item"]])
        first[name] = rows[rows.cluster < SyntheticConfig().shared_clusters].groupby("cluster")["date"].min()
    spread = (first["m0"] - first["m1"]).abs().dt.days
    assert spread.max() <= 60  # launch jitter 20 days + rating lag: the same month in both markets


@pytest.mark.slow
def test_descriptor_level1_aligns_and_encoder_level1_stays_at_chance(identifiable, tff_context):
    from tff_fedmm.eval.alignment import cluster_nmi
    from tff_fedmm.pipelines.codes_stage import CodesConfig, learn_codes, with_level1

    base = CodesConfig(rounds=3)
    base = replace(base, cf=replace(base.cf, epochs=5),
                   codebook=replace(base.codebook, rqvae=replace(base.codebook.rqvae, k_global=K)))
    result = {}
    for level1 in ("encoder", "descriptors"):
        codes = learn_codes(identifiable, with_level1(base, level1), federated=True).codes
        result[level1] = {n: c.item_global for n, c in codes.items()}
    ratio = {level1: pooled_ratio(identifiable.same_item, codes) for level1, codes in result.items()}
    rng = np.random.default_rng(0)
    shuffled = pooled_ratio(identifiable.same_item, {n: rng.permutation(c) for n, c in result["descriptors"].items()})
    nmi = {level1: np.mean([cluster_nmi(c, identifiable.item_cluster[n]) for n, c in codes.items()])
           for level1, codes in result.items()}
    assert ratio["descriptors"] > 1.7 and ratio["descriptors"] > ratio["encoder"] + 0.4, ratio
    assert 0.6 < shuffled < 1.4, shuffled
    assert nmi["descriptors"] > nmi["encoder"] + 0.15, nmi
