"""Selection on validation: each market's first round with the lowest valid LogLoss, then means."""

import pandas as pd
import pytest

from tff_fedmm.eval.validation import selected_rounds, validation_summary


def _history() -> pd.DataFrame:
    rows = []
    for method, losses in (("fedmm", {"a": [0.5, 0.4, 0.4], "b": [0.3, 0.35, 0.2]}),
                           ("local", {"a": [0.6, 0.6, 0.7], "b": [0.1, 0.2, 0.3]})):
        for market, series in losses.items():
            for rnd, loss in enumerate(series, start=1):
                rows.append({"method": method, "backbone": "deepfm", "market": market, "round": rnd,
                             "valid_logloss": loss, "valid_auc": 0.5 + rnd / 10})
    return pd.DataFrame(rows).sample(frac=1.0, random_state=0)  # selection must not rely on row order


def test_each_market_keeps_its_first_round_with_the_lowest_valid_logloss():
    best = selected_rounds(_history()).set_index(["method", "market"])["round"].to_dict()
    assert best == {("fedmm", "a"): 2, ("fedmm", "b"): 3, ("local", "a"): 1, ("local", "b"): 1}


def test_the_summary_is_the_mean_over_markets_of_what_each_selected():
    summary = validation_summary(_history())
    assert summary.loc[("fedmm", "deepfm"), "valid_logloss"] == pytest.approx((0.4 + 0.2) / 2)
    assert summary.loc[("fedmm", "deepfm"), "valid_auc"] == pytest.approx((0.7 + 0.8) / 2)
    assert summary.loc[("local", "deepfm"), "valid_auc"] == pytest.approx(0.6)


def test_selection_can_group_by_nothing_but_the_market():
    one = _history().query("method == 'fedmm'")
    assert sorted(selected_rounds(one, by=[])["round"]) == [2, 3]
