"""The report's intervals and paired differences against a hand computation on a tiny results table."""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest

from tff_fedmm.eval.seed_stats import paired_differences, summary, t_interval
from tff_fedmm.report import markdown_report

# 3 seeds × 2 methods × 2 markets, as results.csv writes them.
CSV = """seed,method,backbone,market,auc
0,local,deepfm,a,0.70
0,local,deepfm,b,0.60
0,fedmm,deepfm,a,0.74
0,fedmm,deepfm,b,0.62
1,local,deepfm,a,0.72
1,local,deepfm,b,0.62
1,fedmm,deepfm,a,0.75
1,fedmm,deepfm,b,0.63
2,local,deepfm,a,0.68
2,local,deepfm,b,0.64
2,fedmm,deepfm,a,0.71
2,fedmm,deepfm,b,0.66
"""
T_975_2 = 4.302652729929  # Student t, 97.5% quantile, 2 degrees of freedom (printed tables)


def results() -> pd.DataFrame:
    return pd.read_csv(io.StringIO(CSV))


def test_interval_of_the_mean_over_markets_by_hand():
    # local's per-seed means over markets: 0.65, 0.67, 0.66 → mean 0.66, sd 0.01.
    row = summary(results(), "auc").query("method == 'local' and market == 'mean'").iloc[0]
    assert row["mean"] == pytest.approx(0.66)
    assert row["ci"] == pytest.approx(T_975_2 * 0.01 / np.sqrt(3))
    assert row["seeds"] == 3


def test_paired_difference_by_hand():
    # fedmm − local per seed: 0.68 − 0.65, 0.69 − 0.67, 0.685 − 0.66 = 0.03, 0.02, 0.025 → sd 0.005.
    row = paired_differences(results(), "auc", "local").query("market == 'mean'").iloc[0]
    assert row["mean"] == pytest.approx(0.025)
    assert row["ci"] == pytest.approx(T_975_2 * 0.005 / np.sqrt(3))
    assert row["verdict"] == "beats"  # 0.025 ± 0.0124 excludes 0


def test_verdicts_need_an_interval_that_excludes_zero():
    frame = results()
    noisy = frame.copy()
    noisy.loc[(noisy["method"] == "fedmm") & (noisy["seed"] == 1), "auc"] -= 0.06  # one seed flips the sign
    assert paired_differences(noisy, "auc", "local").query("market == 'mean'")["verdict"].iloc[0] == \
        "no real difference"
    worse = paired_differences(frame, "auc", "fedmm").query("market == 'mean'").iloc[0]
    assert worse["method"] == "local" and worse["verdict"] == "worse"
    assert t_interval([0.5])[1] != t_interval([0.5])[1]  # NaN: one seed has no interval
    report = markdown_report(frame, "auc", {"a": 1, "b": 1})
    assert "0.6600 ± 0.0248" in report and "+0.0250 ± 0.0124 | beats" in report


def test_summary_table_row_carries_the_interval_and_the_bold_paired_difference():
    from tff_fedmm.report import markdown_summary

    table = markdown_summary(results(), ["auc"])
    header, _, local, fedmm = table.split("\n\n")[0].splitlines()
    assert header == "| method | backbone | auc | − local |"
    half = T_975_2 * 0.005 / np.sqrt(3)
    assert fedmm == f"| fedmm | deepfm | 0.6850 ± {T_975_2 * 0.005 / np.sqrt(3):.4f} | **+0.0250 ± {half:.4f}** |"
    assert local.startswith("| local | deepfm | 0.6600 ± ") and local.endswith("|  |")


def test_fedmm_report_prints_the_summary_then_each_metric(tmp_path, capsys):
    from tff_fedmm import cli
    from tff_fedmm.run_folder import mark_complete, open_run_folder, write_csv, write_json

    folder = open_run_folder(tmp_path / "run")
    write_csv(folder, "results.csv", results())
    write_json(folder, "config.json", {"interactions": {"a": 10, "b": 30}})
    mark_complete(folder)
    assert cli.main(["report", str(folder), "--metrics", "auc"]) == 0
    out = capsys.readouterr().out
    assert out.index("## Summary") < out.index("## auc: mean ± 95% CI over seeds")
    assert "| fedmm | deepfm | 0.6850 ± " in out and "**+0.0250 ± " in out
