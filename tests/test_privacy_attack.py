"""The privacy attacks: pure scoring functions, and a small real codebook stage attacked under protections.

Tolerance at chance: a guess that knows nothing names |T| of K codes at random, so one target's
recovery rate is hypergeometric with standard deviation `chance_std`; the mean over targets spreads
no more than one target does. Within 3 of those standard deviations is "at chance" (an uninformed
guess falls outside about 0.3% of the time, under a normal approximation), more than 3 above is
"better than chance" (about 0.1%). Without DP and with seeded central noise the stage is
deterministic, so those tests pass or fail every time.

Anchored membership (does a market carry anchor slot a): an uninformed score's AUC for one target has the
Mann-Whitney standard deviation `membership_chance_std`; the mean over targets spreads no more than the
mean of theirs (`anchor_chance_std`), and within 3 of those is "at chance". The markets get unequal sizes
so that they carry different anchors, and enough items for 126 slots (a tolerance below 0.2).
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from tff_fedmm.federated import privacy as dp
from tff_fedmm.federated import privacy_attack as pa


def test_recovery_rate_and_auc_at_the_extremes():
    truth = np.array([1, 3])
    perfect = np.array([0.0, 5.0, 0.0, 4.0, 0.0])
    assert pa.recovery_rate(perfect, truth) == 1.0 and pa.auc(perfect, truth) == 1.0
    assert pa.recovery_rate(-perfect, truth) == 0.0 and pa.auc(-perfect, truth) == 0.0
    assert pa.auc(np.zeros(5), truth) == 0.5
    assert pa.chance_rate(5, 2) == 0.4


def test_chance_std_matches_random_guesses():
    rng = np.random.default_rng(0)
    truth = np.arange(20)
    rates = [pa.recovery_rate(rng.random(64), truth) for _ in range(4000)]
    assert np.mean(rates) == pytest.approx(pa.chance_rate(64, 20), abs=0.01)
    assert np.std(rates) == pytest.approx(pa.chance_std(64, 20), rel=0.1)


def test_server_views():
    updates = {"a": np.full((2, 3, 2), 1.0), "b": np.full((2, 3, 2), -2.0)}
    codebooks = np.cumsum(np.ones((3, 3, 2)), axis=0)
    assert np.array_equal(pa.server_view(pa.PER_MARKET, "a", updates, codebooks, None), updates["a"])
    clipped = pa.server_view(pa.PER_MARKET, "b", updates, codebooks, 0.5)
    assert np.linalg.norm(clipped[0]) == pytest.approx(0.5)
    total = pa.server_view(pa.CLIPPED_SUM, "a", updates, codebooks, 0.5)
    assert np.allclose(total, 0.0)  # equal and opposite once clipped to one norm
    assert np.array_equal(pa.server_view(pa.RELEASED_SUM, "a", None, codebooks, None), np.ones((2, 3, 2)))
    assert pa.view_kind(dp=False, secure_agg=False, distributed=False) == pa.PER_MARKET
    assert pa.view_kind(dp=True, secure_agg=True, distributed=False) == pa.CLIPPED_SUM
    assert pa.view_kind(dp=False, secure_agg=True, distributed=False) == pa.RELEASED_SUM
    assert pa.view_kind(dp=True, secure_agg=False, distributed=True) == pa.RELEASED_SUM


@pytest.fixture(scope="module")
def small_stage(tff_context):
    from tff_fedmm.data.markets import load_markets
    from tff_fedmm.data.synthetic import SyntheticConfig
    from tff_fedmm.models.cf import CFConfig
    from tff_fedmm.pipelines.codes_stage import CodesConfig, cf_inputs

    markets = load_markets("synthetic", None, SyntheticConfig(num_markets=3, users_per_market=60, items_per_market=50))
    config = CodesConfig(cf=CFConfig(epochs=1), rounds=1)
    return cf_inputs(markets, config.cf), config


def _attack(inputs, config, protection) -> tuple[dict, object]:
    from tff_fedmm.pipelines.attack_trace import record_trace, summarize

    trace = record_trace(inputs, replace(config, privacy=protection.privacy),
                         record_markets=protection.view != pa.RELEASED_SUM)
    result = summarize(trace, protection)
    return {**result, "tolerance": 3 * result["chance_std"]}, trace


def test_without_protection_both_adversaries_beat_chance(small_stage):
    from tff_fedmm.pipelines.attack_trace import Protection

    inputs, config = small_stage
    result, trace = _attack(inputs, config, Protection("none", dp.PrivacyConfig()))
    # The recomputed per-market updates are what the joint round averaged (weights: RQ-VAE rows).
    total = sum(trace.weights.values())
    mixed = sum(w * trace.market_updates[n] for n, w in trace.weights.items()) / total
    assert np.allclose(mixed, np.diff(trace.codebooks, axis=0), atol=1e-5)
    assert result["recovery_a"] > result["chance"] + result["tolerance"]
    assert result["recovery_b"] > result["chance"] + result["tolerance"]


def test_low_epsilon_brings_the_public_to_chance_but_not_the_server_of_central_dp(small_stage):
    from tff_fedmm.pipelines.attack_trace import Protection

    inputs, config = small_stage
    privacy = dp.PrivacyConfig(noise_multiplier=30.0, clip=0.3, noise_seed=0)
    result, trace = _attack(inputs, config, Protection("central", privacy))
    assert trace.epsilon < 0.5
    assert abs(result["recovery_a"] - result["chance"]) <= result["tolerance"]
    # Central DP adds its noise after the server has seen each market's clipped update.
    assert result["recovery_b"] > result["chance"] + result["tolerance"]


def test_low_epsilon_under_distributed_dp_brings_both_adversaries_to_chance(small_stage):
    from tff_fedmm.pipelines.attack_trace import Protection

    inputs, config = small_stage
    protection = Protection("distributed", dp.PrivacyConfig(noise_multiplier=30.0, clip=0.3, mode=dp.DISTRIBUTED))
    assert protection.view == pa.RELEASED_SUM  # the server only ever sees the sum the markets noised
    result, trace = _attack(inputs, config, protection)
    assert trace.epsilon < 0.5
    assert abs(result["recovery_a"] - result["chance"]) <= result["tolerance"]
    assert abs(result["recovery_b"] - result["chance"]) <= result["tolerance"]


def test_anchor_membership_scores():
    assert pa.anchor_truth(np.array([-1, 2, 2, 0, -1]), 4).tolist() == [True, False, True, False]
    payload = {"codebook_update": np.full((2, 1, 3), 1.0), "anchor_means": np.zeros((2, 4, 3)),
               "anchor_counts": np.array([[1.0, 0, 1, 0]] * 2)}
    assert pa.payload_scales(payload, None).tolist() == [1.0, 1.0]
    assert pa.payload_scales(payload, 0.5) == pytest.approx([0.5 / np.sqrt(5)] * 2)  # one norm over every field
    other = {**payload, "anchor_counts": np.array([[1.0, 1, 0, 0]] * 2)}
    payloads, released = {"x": payload, "y": other}, np.array([[0.5, 0.25, 0.25, 0.0]] * 2)
    assert np.array_equal(pa.anchor_view(pa.PER_MARKET, "x", payloads, released, None), payload["anchor_counts"])
    assert pa.anchor_view(pa.CLIPPED_SUM, "x", payloads, released, None)[0].tolist() == [2.0, 1, 1, 0]
    assert pa.anchor_view(pa.RELEASED_SUM, "x", None, released, None) is released
    carries = {"x": np.array([True, False, True, False]), "y": np.array([True, True, False, False]),
               "z": np.ones(4, bool)}  # z carries every slot: no AUC, not a target
    rows = pa.attack_anchor_targets(carries, released, payloads, pa.PER_MARKET, 0.5)
    assert [r["target"] for r in rows] == ["x", "y"] and rows[0]["auc_b"] == 1.0
    assert rows[0]["auc_list"] == pytest.approx(np.mean([0.5, 0.5]))  # y's list: ranks x's slots no better
    rng = np.random.default_rng(0)
    truth = np.arange(30)
    aucs = [pa.auc(rng.random(80), truth) for _ in range(4000)]
    assert np.std(aucs) == pytest.approx(pa.membership_chance_std(30, 50), rel=0.1)


# Markets of unequal sizes, so that they carry different anchors (equal sizes carry nearly all the same);
# 126 anchor slots, which puts the bound on the chance standard deviation of the mean AUC below 0.06.
ANCHORED_MARKETS = dict(num_markets=4, users_per_market=150, items_per_market=800, market_sizes=(1, 0.8, 0.6, 0.4))


@pytest.fixture(scope="module")
def anchored_stage(tff_context):
    from tff_fedmm.data.markets import load_markets
    from tff_fedmm.data.synthetic import SyntheticConfig
    from tff_fedmm.models.cf import CFConfig
    from tff_fedmm.pipelines.codes_stage import CodesConfig, anchored, cf_inputs

    markets = load_markets("synthetic", None, SyntheticConfig(**ANCHORED_MARKETS))
    config = CodesConfig(cf=CFConfig(epochs=1), rounds=1, anchors="public-items")
    config, slots = anchored(markets, config, federated=True)
    return cf_inputs(markets, config.cf), config, slots


def _attack_anchored(stage, protection) -> tuple[dict, object]:
    from tff_fedmm.pipelines.attack_trace import record_trace, summarize

    inputs, config, slots = stage
    trace = record_trace(inputs, replace(config, privacy=protection.privacy),
                         record_markets=protection.view != pa.RELEASED_SUM, slots=slots)
    result = summarize(trace, protection)
    return {**result, "tolerance": 3 * result["anchor_chance_std"]}, trace


def test_anchored_server_without_protection_reads_membership(anchored_stage):
    from tff_fedmm.pipelines.attack_trace import Protection

    result, trace = _attack_anchored(anchored_stage, Protection("none", dp.PrivacyConfig()))
    assert result["anchor_targets"] == 4 and result["tolerance"] < 0.2
    # The recomputed per-market counts are what the joint round released (weights: RQ-VAE rows).
    anchors, total = trace.anchors, sum(trace.weights.values())
    mixed = sum(w * anchors.market_payloads[n]["anchor_counts"] for n, w in trace.weights.items()) / total
    assert np.allclose(mixed, anchors.released_counts, atol=1e-6)
    assert all(np.array_equal(anchors.market_payloads[n]["anchor_counts"][0], c) for n, c in anchors.carries.items())
    assert result["anchor_auc_b"] > 0.9
    assert result["anchor_auc_a"] > 0.5 + result["tolerance"]  # slots most markets carry are the target's too


def test_anchored_low_epsilon_under_distributed_dp_brings_membership_to_chance(anchored_stage):
    from tff_fedmm.pipelines.attack_trace import Protection

    protection = Protection("distributed", dp.PrivacyConfig(noise_multiplier=30.0, clip=0.3, mode=dp.DISTRIBUTED))
    result, trace = _attack_anchored(anchored_stage, protection)
    assert trace.epsilon < 0.5
    assert abs(result["anchor_auc_a"] - 0.5) <= result["tolerance"]
    assert abs(result["anchor_auc_b"] - 0.5) <= result["tolerance"]


def _task():
    import importlib.util

    from conftest import REPO_ROOT

    spec = importlib.util.spec_from_file_location("privacy_attack_task", REPO_ROOT / "tasks" / "privacy_attack.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("argv, message", [
    (["--out", "x", "--seeds", "0"], "--seeds: expected 1 or more"),
    (["--out", "x", "--noise", "1,-2"], "--noise"),
    (["--out", "x", "--dp-clip", "0"], "--dp-clip"),
    (["--out", "x", "--market-sizes", "1,-0.5"], "--market-sizes"),
    (["--out", "x", "--data", "some/dir", "--anchored", "--market-sizes", "1,0.5"], "synthetic data only"),
])
def test_task_names_the_bad_flag(argv, message, tmp_path, capsys):
    assert _task().main(argv) == 2
    assert message in capsys.readouterr().err


def test_task_summary_and_plot(tmp_path):
    import pandas as pd

    from tff_fedmm.plots import write_privacy_attack

    task = _task()
    rows = [{"protection": p, "seed": s, "noise_multiplier": z, "epsilon": e, "server_view": v, "codes": 30.0,
             "chance": 0.5, "chance_std": 0.06, "recovery_a": ra + s / 100, "auc_a": 0.9, "recovery_b": rb,
             "auc_b": 0.95, "seconds": 1.0}
            for s in (0, 1)
            for p, z, e, v, ra, rb in (("none", 0.0, float("inf"), pa.PER_MARKET, 0.9, 0.95),
                                       ("central DP z=3", 3.0, 2.5, pa.PER_MARKET, 0.5, 0.95))]
    table = task.summary(pd.DataFrame(rows, columns=task.COLUMNS))
    assert list(table["protection"]) == ["none", "central DP z=3"] and list(table["seeds"]) == [2, 2]
    assert table["recovery_a"].tolist() == pytest.approx([0.905, 0.505])
    assert write_privacy_attack(table, tmp_path / "attack.png").stat().st_size > 0
    assert "| none | per-market |" in task.markdown(table)
    assert "anchor_auc_b" in table and "anchor_auc_b" not in task.markdown(table)  # not anchored: dropped
