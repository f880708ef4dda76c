"""What a finished run exports, used from a fresh process: each market's model gives the run's own test
scores, `encode` gives the run's own codes, `fedmm score` scores a pairs file, and mistakes are one line."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO_ROOT, TINY_RUN_BACKBONES, TINY_RUN_METHODS, TINY_RUN_SEED
from test_cli_compare import MARKETS

from tff_fedmm.cli import main

METHODS, BACKBONES = TINY_RUN_METHODS, TINY_RUN_BACKBONES
SEED = TINY_RUN_SEED  # not the default: the exported seed must be the run's first, whatever it is

# Run in a fresh Python: every exported model scores its market's test examples (raw IDs, as a user would
# have them) and prints the test AUC and LogLoss it gives, formatted as results.csv formats them.
FRESH = """
import json, sys
from tff_fedmm import load_market_model, load_markets
from tff_fedmm.data.sampling import ctr_examples
from tff_fedmm.eval.metrics import auc, logloss
run, data, data_seed = sys.argv[1], sys.argv[2], int(sys.argv[3])
markets = load_markets(data)
for method, backbones in json.load(open(f"{run}/exports.json"))["methods"].items():
    for backbone in backbones:
        for name, market in markets.markets.items():
            model = load_market_model(run, method, name, backbone)
            ex = ctr_examples(market, "test", seed=data_seed)
            p = model.score(market.user_ids[ex["user"]], market.item_ids[ex["item"]])
            print(json.dumps({"key": [method, backbone, name], "auc": f"{auc(ex['label'], p):.6g}",
                              "logloss": f"{logloss(ex['label'], p):.6g}"}))
"""


@pytest.fixture(scope="module")
def run(tiny_run) -> tuple[Path, Path]:
    """(run folder, data folder) of the shared tiny run (`conftest.tiny_run`): every kind of export, on both
    backbones."""
    return tiny_run.out, tiny_run.data


def _results(out: Path) -> dict[tuple[str, str, str], dict[str, str]]:
    with (out / "results.csv").open(newline="") as f:
        return {(r["method"], r["backbone"], r["market"]): r for r in csv.DictReader(f)}


@pytest.mark.slow
def test_a_fresh_process_gets_the_runs_own_test_metrics_from_every_exported_model(run):
    out, data = run
    done = subprocess.run([sys.executable, "-c", FRESH, str(out), str(data), "0"], cwd=REPO_ROOT, capture_output=True,
                          text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    scored = {tuple(r["key"]): r for r in map(json.loads, done.stdout.splitlines())}
    results = _results(out)
    assert set(scored) == set(results) == {(m, b, k) for m in METHODS for b in BACKBONES for k in MARKETS}
    for key, row in results.items():
        assert (scored[key]["auc"], scored[key]["logloss"]) == (row["auc"], row["logloss"]), key
        assert row["seed"] == str(SEED) and row["schema_version"] == "2"


@pytest.mark.slow
def test_the_folder_keeps_private_files_per_market_and_the_global_codebook_shared(run):
    from tff_fedmm import read_run
    from tff_fedmm.data.markets import load_markets

    out, data = run
    folder = read_run(out)
    assert folder.schema_version == 2
    assert folder.exports == {"schema_version": 2, "seed": SEED, "markets": list(MARKETS),
                              "methods": {m: list(BACKBONES) for m in METHODS}}
    assert sorted(p.name for p in (out / "shared").iterdir()) == ["fedmm"]  # the one federated codebook
    assert np.load(out / "shared" / "fedmm" / "global_codebook.npy").shape == (64, 32)
    markets = load_markets(str(data))
    for name in MARKETS:
        market = out / "markets" / name
        with (market / "ids.csv").open(newline="") as f:
            ids = [(r["entity"], r["raw_id"]) for r in csv.DictReader(f)]
        vocab = markets.markets[name]
        assert ids == [("user", u) for u in vocab.user_ids] + [("item", i) for i in vocab.item_ids]
        assert sorted(p.name for p in (market / "codebooks").iterdir()) == ["fedmm", "local+codes"]
        assert not (market / "codebooks" / "fedmm" / "global_codebook.npy").exists()
        assert (market / "codebooks" / "local+codes" / "global_codebook.npy").exists()  # level 1 never left
        assert np.load(market / "codebooks" / "fedmm" / "local_codebook.npy").shape == (8, 32)
        assert sorted(p.stem for p in (market / "codes").iterdir()) == ["centralized-anchored", "fedmm", "local+codes"]
        meta = json.loads((market / "models" / "centralized-anchored" / "dcnv2" / "fedmm.json").read_text())
        assert meta["seed"] == SEED and meta["user_offset"] == (0 if name == MARKETS[0] else 40)


@pytest.mark.slow
@pytest.mark.parametrize("method", ["fedmm", "local+codes"])
def test_encode_gives_the_runs_own_codes_for_the_markets_entities(run, method):
    from tff_fedmm import encode

    out, _ = run
    for name in MARKETS:
        folder = out / "markets" / name
        with (folder / "codes" / f"{method}.csv").open(newline="") as f:
            rows = list(csv.DictReader(f))
        with np.load(folder / "codebooks" / method / "cf.npz") as cf:
            for entity, table in (("user", cf["users"]), ("item", cf["items"])):
                codes = encode(out, name, table, entity=entity, method=method)
                expected = [(int(r["global_code"]), int(r["local_code"])) for r in rows if r["entity"] == entity]
                assert list(zip(codes["global_code"], codes["local_code"])) == expected, (name, entity)


@pytest.mark.slow
def test_score_command_prints_the_apis_scores(run, tmp_path, capsys):
    from tff_fedmm import load_market_model

    out, _ = run
    pairs = tmp_path / "pairs.txt"
    pairs.write_text("userId itemId\naau0 i3\n\naau1 i5\n")
    assert main(["score", str(out), "--method", "fedmm", "--market", "aa", "--backbone", "dcnv2",
                 "--pairs", str(pairs)]) == 0
    lines = capsys.readouterr().out.splitlines()
    expected = load_market_model(out, "fedmm", "aa", "dcnv2").score(["aau0", "aau1"], ["i3", "i5"])
    assert lines[0] == "userId itemId score" and [line.split()[:2] for line in lines[1:]] == [["aau0", "i3"],
                                                                                            ["aau1", "i5"]]
    assert np.array_equal(np.array([line.split()[2] for line in lines[1:]], np.float32), expected)


@pytest.mark.slow
def test_an_unknown_id_is_refused_by_name(run):
    from tff_fedmm import load_market_model
    from tff_fedmm.errors import UsageError

    model = load_market_model(run[0], "local+codes", "bb", "deepfm")
    with pytest.raises(UsageError, match=r"unknown ID\(s\) in market 'bb': user 'aau0' \(pair 0\), item 'nope'"):
        model.score(["aau0", "bbu1"], ["i1", "nope"])  # aau0 is a user of market aa, not bb


@pytest.mark.slow
@pytest.mark.parametrize(("argv", "pairs", "fragment"), [
    (["--method", "fedmm", "--market", "aa", "--backbone", "deepfm"], "aau0 i3\nnobody i5\n",
     "pairs.txt:2: user 'nobody' is not in market 'aa'"),
    (["--method", "fedmm", "--market", "aa"], "userId itemId\naau0 i3\naau1\n", "pairs.txt:3: 1 field(s); expected"),
    (["--method", "fedmm", "--market", "aa", "--backbone", "resnet"], "aau0 i3\n",
     "--backbone: fedmm was not exported on 'resnet'"),
    (["--method", "fedmm", "--market", "zz"], "aau0 i3\n", "--market: no market 'zz'"),
    (["--method", "fedper", "--market", "aa"], "aau0 i3\n", "--method: 'fedper' was not exported"),
    (["--method", "fedmm", "--market", "aa"], "aau0 i3\n", "--backbone: fedmm was exported on deepfm, dcnv2; name one"),
    (["--market", "aa"], "aau0 i3\n", "the following arguments are required: --method"),
], ids=lambda v: " ".join(v) if isinstance(v, list) else None)
def test_score_mistakes_are_one_line_and_status_2(run, tmp_path, capsys, argv, pairs, fragment):
    (tmp_path / "pairs.txt").write_text(pairs)
    assert main(["score", str(run[0]), *argv, "--pairs", str(tmp_path / "pairs.txt")]) == 2
    captured = capsys.readouterr()
    err = captured.err.splitlines()
    assert captured.out == "" and len(err) == 1 and err[0].startswith("fedmm: error: "), err
    assert fragment in err[0]


def exported(out: Path) -> dict[str, object]:
    """Everything a run exported, comparable across runs: file bytes, and each SavedModel's weights."""
    import tensorflow as tf

    found: dict[str, object] = {}
    for path in sorted(p for d in ("markets", "shared") for p in (out / d).rglob("*")):
        relative = str(path.relative_to(out))
        if (path / "saved_model.pb").exists():
            found[relative] = tf.keras.models.load_model(path, compile=False).get_weights()
        elif path.is_file() and not any((parent / "saved_model.pb").exists() for parent in path.parents):
            found[relative] = path.read_bytes()
    return found


def same_exports(a: dict[str, object], b: dict[str, object]) -> bool:
    return a.keys() == b.keys() and all(
        a[k] == b[k] if isinstance(a[k], bytes) else all(np.array_equal(x, y) for x, y in zip(a[k], b[k])) for k in a)
