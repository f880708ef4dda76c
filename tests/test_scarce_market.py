"""The scarce-market study: thinning keeps a nested, seeded share of one market's train split and nothing
else, and the task writes its per-seed table, intervals and plot."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from test_cli_compare import tiny_market_files

from tff_fedmm.data.markets import load_markets
from tff_fedmm.data.scarce import thin_training
from tff_fedmm.errors import UsageError
from tff_fedmm.eval.seed_stats import t_interval

REPO = __import__("pathlib").Path(__file__).resolve().parents[1]


def _keys(frame: pd.DataFrame) -> set[tuple[int, int]]:
    return set(zip(frame["user"], frame["item"]))


def test_thinning_keeps_a_nested_seeded_share_of_train_only(synthetic_set):
    market = next(iter(synthetic_set.markets.values()))
    half, quarter = thin_training(market, 0.5, data_seed=3), thin_training(market, 0.25, data_seed=3)
    assert len(half.train) == round(0.5 * len(market.train)) and len(quarter.train) == round(0.25 * len(market.train))
    assert _keys(quarter.train) < _keys(half.train) < _keys(market.train)  # nested
    assert _keys(thin_training(market, 0.5, data_seed=4).train) != _keys(half.train)  # the data seed decides
    assert half.valid is market.valid and half.test is market.test
    np.testing.assert_array_equal(half.interacted, market.interacted)  # evaluation candidates unchanged
    kept = half.train["user"].to_numpy(np.int64) * market.num_items + half.train["item"].to_numpy(np.int64)
    np.testing.assert_array_equal(half.train_interacted, np.unique(kept))
    assert half.num_users == market.num_users  # users left with nothing stay, as cold users
    assert thin_training(market, 1.0) is not market and len(thin_training(market, 1.0).train) == len(market.train)
    with pytest.raises(UsageError, match="--fractions"):
        thin_training(market, 0.0)


@pytest.mark.slow
def test_scarce_market_task_writes_table_intervals_and_plot(market_dir, tmp_path):
    data = market_dir(tiny_market_files())
    target = sorted(load_markets(str(data)).names)[0]
    out = tmp_path / "scarce"
    argv = [sys.executable, str(REPO / "tasks" / "scarce_market.py"), "--data", str(data), "--target", target,
            "--fractions", "0.5,1", "--seeds", "0,1", "--methods", "local,centralized-anchored,fedmm",
            "--fedmm-modes", "anchored", "--anchor-weight", "2", "--jobs", "1", "--rounds", "1", "--out", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    first = (out / "scarce.csv").read_bytes()
    (out / "scarce.csv").unlink()  # --resume reads every finished stage back and writes the same tables
    done = subprocess.run(argv + ["--resume"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0 and (out / "scarce.csv").read_bytes() == first, done.stderr[-3000:]
    table = pd.read_csv(out / "scarce.csv")
    assert set(table["method"]) == {"local", "centralized-anchored", "fedmm[anchored]"}
    assert set(table["fraction"]) == {0.5, 1.0} and sorted(table["seed"].unique()) == [0, 1]
    assert len(table) == 3 * 2 * 2 and table["auc_held_out"].between(0, 1).all()
    config = __import__("json").loads((out / "fraction-0.5" / "anchored" / "config.json").read_text())
    assert config["config"]["codes"]["anchors"] == "public-items"
    assert config["config"]["codes"]["codebook"]["anchor_weight"] == 2.0
    summary = pd.read_csv(out / "scarce_summary.csv")
    row = summary.query("method == 'local' and fraction == 0.5 and metric == 'auc'").iloc[0]
    mean, half, _ = t_interval(table.query("method == 'local' and fraction == 0.5")["auc"])
    # The CSVs hold 6 significant digits, so the hand computation from them agrees to about that.
    assert row["mean"] == pytest.approx(mean, rel=1e-4) and row["ci"] == pytest.approx(half, rel=1e-4)
    assert set(summary["metric"]) == {"auc", "auc_held_out"}
    assert (out / "scarce_auc.png").stat().st_size > 0 and not (out / "INCOMPLETE").exists()
    every = pd.read_csv(out / "scarce_all.csv")  # every market, not just the target
    assert len(every) == len(table) * every["market"].nunique() and every["market"].nunique() > 1
    text = (out / "scarce_all.md").read_text()
    assert text.count("## Fraction") == 2 and "| fedmm[anchored] | deepfm |" in text and "− local" in text


def test_scarce_market_task_names_a_bad_flag(tmp_path):
    done = subprocess.run([sys.executable, str(REPO / "tasks" / "scarce_market.py"), "--target", "nowhere",
                           "--out", str(tmp_path / "x")], capture_output=True, text=True, timeout=300)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2 and "--target" in lines[-1] and "Traceback" not in done.stderr
