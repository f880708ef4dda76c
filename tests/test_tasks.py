"""`tasks/ablation_codebook_size.py` (a 1×2 grid, one round, tiny markets) and `tasks/xmarket_compare.py`
(the command line it hands to `fedmm compare`, and its one-line errors)."""

from __future__ import annotations

import csv
import importlib.util
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import REPO_ROOT, small_market_files

MARKETS = ("aa", "bb")
USERS, ITEMS, PER_USER = 40, 110, 6  # ranking evaluation needs > 99 + PER_USER items per market


def load_task(name: str):
    spec = importlib.util.spec_from_file_location(f"{name}_task", REPO_ROOT / "tasks" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_market_files() -> dict[str, str]:
    return small_market_files(MARKETS, USERS, ITEMS, PER_USER)


@pytest.mark.slow
def test_ablation_grid_reports_validation_metrics_only(market_dir, tmp_path):
    ablation = load_task("ablation_codebook_size")
    data, out, log = market_dir(tiny_market_files()), tmp_path / "ablation", tmp_path / "stderr.txt"
    with log.open("w") as err:
        result = subprocess.run(
            [sys.executable, str(REPO_ROOT / "tasks" / "ablation_codebook_size.py"), "--data", str(data),
             "--k-global", "8", "--k-local", "4,16", "--rounds", "1", "--out", str(out), "--quiet"],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=err, text=True, timeout=900)  # five runs
    assert result.returncode == 0, log.read_text()[-3000:]
    with (out / "ablation.csv").open(newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert reader.fieldnames == ablation.COLUMNS  # validation metrics and code usage; nothing from test
    assert [(r["k_global"], r["k_local"]) for r in rows] == [("8", "4"), ("8", "16")]
    for row in rows:
        assert row["selected_rounds"] == "aa:1;bb:1" and row["backbone"] == "deepfm"
        assert 0.0 <= float(row["valid_auc"]) <= 1.0 and float(row["valid_logloss"]) > 0.0
        assert 0.0 < float(row["global_usage"]) <= 1.0 and 0.0 < float(row["local_usage"]) <= 1.0
    assert not (out / "INCOMPLETE").exists() and (out / "config.json").is_file()
    assert "valid_auc" in result.stdout


def test_ablation_config_changes_only_codebook_sizes():
    ablation = load_task("ablation_codebook_size")
    from tff_fedmm.api import make_config

    base, config = make_config(3, 2), ablation.config_for(3, 2, 16, 128)
    assert (config.codes.codebook.rqvae.k_global, config.codes.codebook.rqvae.k_local) == (16, 128)
    assert config.codes.codebook.rqvae.input_dim == base.codes.codebook.rqvae.input_dim
    assert config.ctr == base.ctr and config.codes.cf == base.codes.cf and config.codes.rounds == 2


def test_ablation_selects_each_markets_first_round_of_lowest_valid_logloss():
    ablation = load_task("ablation_codebook_size")
    history = pd.DataFrame({"round": [1, 1, 2, 2, 3, 3], "market": ["a", "b"] * 3,
                            "valid_auc": [0.6, 0.7, 0.7, 0.8, 0.9, 0.85],
                            "valid_logloss": [0.5, 0.5, 0.25, 0.5, 0.25, 0.375]})  # a: tie at rounds 2, 3
    row = ablation.validation_row(history, pd.DataFrame({"global_usage": [0.5, 1.0], "local_usage": [0.25, 0.75]}))
    assert row["selected_rounds"] == "a:2;b:3" and row["rounds_run"] == 3
    assert row["valid_auc"] == pytest.approx(0.775) and row["valid_logloss"] == 0.3125
    assert (row["global_usage"], row["local_usage"]) == (0.75, 0.5)


@pytest.mark.parametrize(("argv", "fragment"), [
    (["--out", "x", "--k-global", "16,a"], "--k-global: expected comma-separated positive"),
    (["--out", "x", "--k-local", "0"], "--k-local: expected comma-separated positive"),
    (["--out", "x", "--backbone", "resnet"], "--backbone: expected one of deepfm, dcnv2"),
    (["--out", "x", "--rounds", "0"], "--rounds: expected a positive"),
    (["--k-global", "16"], "--out"),
])
def test_ablation_bad_flags_are_one_line_errors(argv, fragment, capsys):
    assert load_task("ablation_codebook_size").main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1, err


def test_xmarket_compare_runs_every_method_on_both_backbones():
    task = load_task("xmarket_compare")
    from tff_fedmm.pipelines.compare_names import BACKBONES, METHODS

    argv = task.compare_argv(["--data", "d", "--out", "o", "--rounds", "3", "--markets", "de,fr"])
    assert argv == ["compare", "--data", "d", "--methods", ",".join(METHODS), "--backbones", ",".join(BACKBONES),
                    "--seeds", "0", "--jobs", str(os.cpu_count() or 1), "--out", "o", "--rounds", "3",
                    "--markets", "de,fr"]
    argv = task.compare_argv(["--seeds", "0,1,2,3,4", "--methods", "local,fedper"])
    assert argv[argv.index("--seeds") + 1] == "0,1,2,3,4" and argv[argv.index("--methods") + 1] == "local,fedper"
    assert task.compare_argv(["--jobs", "1"])[task.compare_argv(["--jobs", "1"]).index("--jobs") + 1] == "1"
    remote = task.compare_argv(["--workers", "h:1,h:2"])
    assert remote[remote.index("--jobs") + 1] == "1"  # remote workers already split each round
    assert task.compare_argv([])[task.compare_argv([]).index("--data") + 1].endswith("shared/data/xmarket-electronics")


@pytest.mark.parametrize(("argv", "fragment"), [
    (["--data", "/nonexistent/xmarket", "--out", "o"], "/nonexistent/xmarket: no such directory"),
    (["--out", "o", "--rounds", "0"], "--rounds: expected a positive"),
    (["--out", "o", "--bogus"], "unrecognized arguments: --bogus"),
])
def test_xmarket_compare_errors_are_one_line(argv, fragment, capsys, tmp_path):
    argv = [a if a != "o" else str(tmp_path / "o") for a in argv]
    assert load_task("xmarket_compare").main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and len(err.strip().splitlines()) == 1, err


@pytest.mark.slow
def test_dp_tradeoff_reports_both_units_against_the_run_without_dp(market_dir, tmp_path):
    """Three runs (no DP, then z = 4 in each unit): ε falling with the noise is the accountant's, tested in
    test_accounting.py and test_dp_sgd.py; here the task's table, units and plot."""
    task = load_task("dp_tradeoff")
    data, out, log = market_dir(tiny_market_files()), tmp_path / "dp", tmp_path / "stderr.txt"
    with log.open("w") as err:
        result = subprocess.run(
            [sys.executable, str(REPO_ROOT / "tasks" / "dp_tradeoff.py"), "--data", str(data), "--noise", "4",
             "--dp-clip", "0.1", "--dp-unit", "market,interaction", "--rounds", "1", "--out", str(out), "--quiet"],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=err, text=True, timeout=900)
    assert result.returncode == 0, log.read_text()[-3000:]
    table = pd.read_csv(out / "dp_tradeoff.csv")
    assert list(table.columns) == task.COLUMNS
    assert list(table["noise_multiplier"]) == [0.0, 4.0, 4.0] and table["rounds"].tolist() == [0, 1, 1]
    assert table["unit"].tolist() == ["none", "market", "interaction"]
    assert table["epsilon"].iloc[0] == float("inf") and (table["epsilon"].iloc[1:] > 0).all()
    assert table["epsilon"].iloc[1:].map(np.isfinite).all()
    assert table["auc_mean"].between(0, 1).all() and (out / "dp_tradeoff.png").stat().st_size > 0
    assert "| noise_multiplier |" in result.stdout


@pytest.mark.parametrize("argv, fragment", [
    (["--noise", "0,1", "--out", "x"], "--noise"),
    (["--noise", "1", "--dp-clip", "-1", "--out", "x"], "--dp-clip"),
    (["--noise", "1", "--dp-unit", "market,row", "--out", "x"], "--dp-unit"),
])
def test_dp_tradeoff_bad_flags_are_one_line_errors(argv, fragment, capsys):
    assert load_task("dp_tradeoff").main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and fragment in err[0], err


def test_xmarket_compare_peak_memory_line_reads_both_processes(tff_context):
    line = load_task("xmarket_compare").peak_memory_line()
    python_mb, worker_mb, children_mb = (int(part.split()[-2]) for part in line.split(": ", 1)[1].split(", "))
    assert line.startswith("xmarket_compare: peak resident memory: python ") and python_mb > 100 and worker_mb > 10
    assert children_mb >= 0  # 0 until a child process (a --jobs seed) has ended


def test_tune_baselines_variants_change_one_setting_each():
    from tff_fedmm.api import make_config

    task = load_task("tune_baselines")
    base = make_config(tuned={})
    assert task.variant_config(base, task.VARIANTS["defaults"]) == base
    lr = task.variant_config(base, task.VARIANTS["lr-3e-3"]).ctr
    assert lr.train.learning_rate == 3e-3 and lr.embed_dim == base.ctr.embed_dim
    patience = task.variant_config(base, task.VARIANTS["patience-10"]).ctr
    assert patience.train.patience == patience.round_patience == 10
    assert task.variant_config(base, task.VARIANTS["embed-32"]).ctr.embed_dim == 32


@pytest.mark.slow
def test_leak_effect_reuses_a_finished_leak_free_run_only_when_it_matches(market_dir, tmp_path, capsys):
    task = load_task("leak_effect")
    data = str(market_dir(small_market_files(["de", "fr"])))
    common = ["--data", data, "--methods", "local", "--seeds", "0,1", "--rounds", "1"]
    assert task.main([*common, "--out", str(tmp_path / "first")]) == 0
    first = pd.read_csv(tmp_path / "first" / "leak_effect.csv")
    assert list(first.seeds) == [2, 2, 2] and np.allclose(first.leaky_minus_free, first.leaky - first.leak_free, atol=1e-5)
    assert task.main([*common, "--leak-free", str(tmp_path / "first" / "leak-free"), "--out", str(tmp_path / "again")]) == 0
    assert not (tmp_path / "again" / "leak-free").exists()
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "again" / "leak_effect.csv"), first, atol=1e-5)  # reused rows: results.csv precision
    one_seed = ["--data", data, "--methods", "local", "--seeds", "1", "--rounds", "1"]  # a subset of the run's seeds
    assert task.main([*one_seed, "--leak-free", str(tmp_path / "first" / "leak-free"), "--out", str(tmp_path / "s1")]) == 0
    capsys.readouterr()
    other = ["--data", data, "--methods", "local", "--seeds", "0,1", "--rounds", "2"]
    assert task.main([*other, "--leak-free", str(tmp_path / "first" / "leak-free"), "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("fedmm: error: --leak-free:") and "other settings" in err[0], err
