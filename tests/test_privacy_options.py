"""#6's privacy options, executed: DP on the global-codebook aggregation (its state in the server state,
seeded noise, ε from the recorded events), secure summation equal to the plain sum, and market drop-out
leaving absent markets' private state bit-identical. DP on the other stages: tests/test_dp_all_stages.py."""

from __future__ import annotations

import collections
import json
import subprocess
import sys

import numpy as np
import pytest

tff = pytest.importorskip("tensorflow_federated")
import dp_accounting  # noqa: E402
import tensorflow as tf  # noqa: E402

from conftest import DP_RUN  # noqa: E402
from test_cli_compare import tiny_market_files  # noqa: E402

from tff_fedmm.cli import main  # noqa: E402
from tff_fedmm.federated import accounting, audit  # noqa: E402
from tff_fedmm.federated import privacy as dp  # noqa: E402
from tff_fedmm.federated.codebook_aggregator import client_payload_type  # noqa: E402
from tff_fedmm.federated.codebook_process import (  # noqa: E402
    CodebookStageConfig, build_codebook_process, initial_client_state, rqvae_dataset,
)
from tff_fedmm.federated.participation import Participation, run_present  # noqa: E402
from tff_fedmm.training import rqvae as rt  # noqa: E402
from tff_fedmm.models.rqvae import RQVAEConfig, build_rqvae, local_codebook  # noqa: E402
from tff_fedmm.pipelines.privacy_report import Ledger  # noqa: E402

RQ = RQVAEConfig(input_dim=6, latent_dim=3, hidden=8, k_global=5, k_local=3, seed=0)
CONFIG = CodebookStageConfig(rqvae=RQ, local_epochs=1, learning_rate=1e-2)
FLOAT = tff.TensorType(np.float32)
MARKETS = 3


def inputs() -> list[np.ndarray]:
    return [np.random.default_rng(10 + m).normal(size=(30 + 10 * m, RQ.input_dim)).astype(np.float32)
            for m in range(MARKETS)]


def process_for(privacy: dp.PrivacyConfig):
    """The codebook process as a run builds it: under DP, its loss sums stay in the markets."""
    return build_codebook_process(CONFIG, dp.codebook_aggregator("fedavg", privacy, MARKETS, seed=3),
                                  metrics_cross=not privacy.dp)


def epsilon(event, rounds: int, delta: float = 1e-5) -> float:
    """ε of one market charged `rounds` times with `event`."""
    return accounting.epsilon([accounting.charge("codebook", accounting.MARKET, ["m"], event, rounds)], "m",
                              accounting.MARKET, delta)


def run(process, rounds: int, present=lambda r: list(range(MARKETS))):
    """`rounds` rounds; returns every round's (server state, client states)."""
    xs = inputs()
    server = process.initialize()
    clients = [initial_client_state(CONFIG, i, server.global_model_weights, x) for i, x in enumerate(xs)]
    states = []
    for r in range(rounds):
        server, clients, _ = run_present(process.next, server, clients,
                                         lambda i, r=r: rqvae_dataset(xs[i], batch_size=16, seed=r), present(r))
        states.append((server, clients))
    return states


# --- DP -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("clip", [0.5, None], ids=["fixed", "adaptive"])
def test_dp_aggregator_state_is_in_the_server_state(clip):
    process = process_for(dp.PrivacyConfig(noise_multiplier=0.2, clip=clip))
    aggregator = process.initialize.type_signature.result.member.aggregator
    text = str(aggregator)
    assert "dp_event" in text and "l2_norm_clip" in text and "seed=int64[2]" in text
    assert ("quantile_estimator_state" in text) == (clip is None)
    assert "dp_event" not in str(build_codebook_process(CONFIG).initialize.type_signature.result)


def test_dp_sends_only_the_codebook_update_and_scalars():
    for clip in (0.5, None):
        process = process_for(dp.PrivacyConfig(noise_multiplier=0.2, clip=clip))
        audit.audit_codebook_process(process, "fedavg", RQ.k_global, RQ.latent_dim)


def test_dp_clips_each_market_and_noise_is_seeded_by_the_state(tff_context):
    noise = dp.codebook_aggregator("fedavg", dp.PrivacyConfig(noise_multiplier=1.0, clip=0.5), MARKETS, seed=3)
    plain = dp.codebook_aggregator("fedavg", dp.PrivacyConfig(noise_multiplier=0.0, clip=0.5), MARKETS, seed=3)
    value_type = client_payload_type("fedavg", 4, 2)
    updates = [collections.OrderedDict(codebook_update=np.full((4, 2), v, np.float32)) for v in (1.0, 2.0, 0.01)]
    weights = [1.0, 1.0, 1.0]
    clipped = plain.create(value_type, FLOAT)
    result = np.asarray(clipped.next(clipped.initialize(), updates, weights).result["estimate"])
    # Norms 2√2·v: the first two are clipped to 0.5, the third is not; DP means are unweighted.
    expected = (0.5 / np.sqrt(8)) * 2 + 0.01
    np.testing.assert_allclose(result, np.full((4, 2), expected / MARKETS), rtol=1e-5)

    process = noise.create(value_type, FLOAT)
    first = process.next(process.initialize(), updates, weights)
    again = process.next(process.initialize(), updates, weights)
    second = process.next(first.state, updates, weights)
    np.testing.assert_array_equal(first.result["estimate"], again.result["estimate"])  # same state, same noise
    assert not np.allclose(first.result["estimate"], second.result["estimate"])  # the seed advances
    assert not np.allclose(first.result["estimate"], result)
    assert dp.round_event(first.state) == dp_accounting.GaussianDpEvent(1.0)


def test_epsilon_decreases_as_noise_grows_and_grows_with_rounds():
    eps = [epsilon(dp_accounting.GaussianDpEvent(z), 20) for z in (0.5, 1.0, 2.0, 4.0, 8.0)]
    assert all(a > b for a, b in zip(eps, eps[1:])), eps
    assert epsilon(dp_accounting.GaussianDpEvent(1.0), 40) > eps[1]
    assert epsilon(dp_accounting.GaussianDpEvent(1.0), 20, 1e-7) > eps[1]


@pytest.mark.slow
def test_dp_process_reports_epsilon_from_its_recorded_events(tff_context):
    eps = []
    for z in (0.5, 2.0):
        privacy = dp.PrivacyConfig(noise_multiplier=z, clip=0.5)
        server, _ = run(process_for(privacy), 2)[-1]
        ledger = Ledger("codebook")
        ledger.record(privacy, server.aggregator, ["a", "b", "c"], [[0, 1, 2], [0, 1, 2]])
        eps.append(accounting.epsilon(ledger.charges, "b", accounting.MARKET, 1e-5))
        assert eps[-1] == pytest.approx(epsilon(dp_accounting.GaussianDpEvent(z), 2))
    assert eps[0] > eps[1] > 0


# --- secure aggregation -------------------------------------------------------------------------------


@pytest.mark.parametrize("noise", [None, 0.2], ids=["secure", "secure+dp"])
def test_secure_sum_is_in_the_computation_and_only_the_payload_crosses(noise):
    process = process_for(dp.PrivacyConfig(noise_multiplier=noise, secure_agg=True))
    crossings = audit.audit_codebook_process(process, "fedavg", RQ.k_global, RQ.latent_dim, secure=True)
    # Every crossing but the summed scalar metrics (which stay in the markets under DP) is a secure sum:
    # the server sees no market's value.
    assert {c.uri for c in crossings} == {"federated_secure_sum_bitwidth"} | ({"federated_sum"} if noise is None else set())
    metrics = [c for c in crossings if c.uri == "federated_sum"]
    assert len(metrics) == (noise is None) and all(audit.is_float32_scalar(t) for c in metrics for t in c.leaves)
    with pytest.raises(audit.PrivacyAuditError):  # the plain payload type is not what crosses
        audit.audit_codebook_process(process, "fedavg", RQ.k_global, RQ.latent_dim)


@pytest.mark.slow
def test_secure_aggregation_matches_the_plain_run(tff_context):
    plain = run(process_for(dp.PrivacyConfig()), 2)
    secure = run(process_for(dp.PrivacyConfig(secure_agg=True)), 2)
    for (p_server, p_clients), (s_server, s_clients) in zip(plain, secure):
        np.testing.assert_allclose(s_server.global_model_weights, p_server.global_model_weights, atol=1e-5)
        for p, s in zip(p_clients, s_clients):
            for a, b in zip(p["private"], s["private"]):
                np.testing.assert_allclose(b, a, atol=1e-4)


# --- drop-out -----------------------------------------------------------------------------------------


def test_participation_is_seeded_and_respects_k_and_rate():
    p = Participation(clients_per_round=3, dropout_rate=0.0, seed=1)
    draws = [p.present("ctr", r, 10) for r in range(50)]
    assert all(len(d) == 3 and d == sorted(d) for d in draws)
    assert draws == [p.present("ctr", r, 10) for r in range(50)]
    assert draws != [Participation(3, 0.0, seed=2).present("ctr", r, 10) for r in range(50)]
    assert draws != [p.present("codebook", r, 10) for r in range(50)]
    kept = [len(Participation(None, 0.25, seed=0).present("x", r, 20)) for r in range(200)]
    assert abs(np.mean(kept) / 20 - 0.75) < 0.03
    assert Participation().present("x", 0, 4) == [0, 1, 2, 3]
    assert Participation(2, 0.5).expected(5) == 1.0


@pytest.mark.slow
def test_a_round_without_a_market_leaves_its_private_state_bit_identical(tff_context):
    absent = 1
    states = run(build_codebook_process(CONFIG), 2, present=lambda r: [0, 2] if r == 1 else [0, 1, 2])
    (_, before), (server, after) = states
    model = build_rqvae(RQ)
    local = next(i for i, v in enumerate(rt.private_variables(model)) if v is local_codebook(model))
    assert [int(c["client_index"]) for c in after] == [0, 1, 2]
    for got, was in zip(tf.nest.flatten(after[absent]), tf.nest.flatten(before[absent])):
        np.testing.assert_array_equal(got, was)
    for i in (0, 2):  # the markets present did train
        assert not np.array_equal(after[i]["private"][local], before[i]["private"][local])
    assert not np.array_equal(server.global_model_weights, states[0][0].global_model_weights)


# --- end to end ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("flags, message", [
    (["--dp-clip", "0.5"], "--dp-clip: only used with --dp-noise-multiplier"),
    (["--dp-noise-seed", "3"], "--dp-noise-seed: only used with --dp-noise-multiplier"),
    (["--dp-noise-multiplier", "1", "--dp-clip", "-2"], "--dp-clip: expected a positive"),
    (["--dp-noise-multiplier", "1", "--dp-clip", "wide"], "--dp-clip"),
    (["--dp-noise-multiplier", "1"], "--dp-clip adaptive: TFF's adaptive clipping needs"),
    (["--dp-noise-multiplier", "0.1", "--codebook-rule", "kmeans"], "DP needs --codebook-rule fedavg"),
    (["--dropout-rate", "1"], "--dropout-rate: expected a probability"),
    (["--clients-per-round", "0"], "--clients-per-round: expected a positive"),
])
def test_bad_privacy_and_participation_flags_are_one_line(flags, message, market_dir, tmp_path, capsys):
    data = market_dir(tiny_market_files())
    status = main(["compare", "--methods", "fedmm", "--backbones", "deepfm", "--data", str(data),
                   "--out", str(tmp_path / "run"), "--quiet", *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and message in err[0], err


@pytest.mark.slow
def test_dp_secure_dropout_run_with_a_noise_seed_is_deterministic_and_reports_epsilon(dp_run, tmp_path):
    assert DP_RUN[DP_RUN.index("--seed") + 1] == "5" and DP_RUN[DP_RUN.index("--dp-noise-multiplier") + 1] == "1.0"
    rounds = int(DP_RUN[DP_RUN.index("--rounds") + 1])
    # Seed 5 drops both markets in codebook round 2: each market is charged for the rounds it took part in,
    # in the codebook and the CTR stage.
    participation = Participation(None, 0.3, 5)
    assert not participation.present("codebook", 1, 2)
    charged = [sum(i in participation.present(stage, r, 2) for stage in ("codebook", "ctr") for r in range(rounds))
               for i in range(2)]
    # conftest's run (FedPer and FedMM), then the same command again
    done = subprocess.run([sys.executable, "-m", "tff_fedmm", *DP_RUN, "--data", str(dp_run.data), "--out",
                           str(tmp_path / "b")], capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (dp_run.out / "results.csv").read_text() == (tmp_path / "b" / "results.csv").read_text()
    config = json.loads((dp_run.out / "config.json").read_text())
    report = config["privacy"]
    assert report["dp"] and report["secure_agg"] and report["unit"] == accounting.UNITS[accounting.MARKET]
    assert report["noise"] == dp.NOISE_REPRODUCIBLE and "noise: reproducible" in dp_run.stdout
    eps = report["methods"]["fedmm"]["epsilon"]
    for market, count in zip(config["markets"], charged):
        assert eps[market] == pytest.approx(epsilon(dp_accounting.GaussianDpEvent(1.0), count))
    assert f"DP fedmm: epsilon per market at delta = 1e-05: {config['markets'][0]} {eps[config['markets'][0]]:.3g}" \
        in dp_run.stdout


SECRET = 0x2D1B3F5E7A9C4B  # stands in for the OS entropy, so the test can look for it


def _occurrences(folder, seed: int) -> list[str]:
    """Files under `folder` holding `seed` as decimal text or as the int64 the DP query state stores."""
    needles = (str(seed).encode(), np.int64(seed).tobytes())
    return [str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()
            and any(needle in p.read_bytes() for needle in needles)]


@pytest.mark.slow
def test_dp_noise_is_secret_by_default_and_a_finished_run_folder_cannot_regenerate_it(market_dir, tmp_path,
                                                                                       monkeypatch, capsys):
    """The noise comes from the drawn seed alone (same draw, same codebooks; another draw, other codebooks),
    and once the run has finished no file in its folder holds that seed: the round checkpoints that carried
    it in the server state are gone. `--dp-noise-seed` is the control that the search finds a seed."""
    data = market_dir(tiny_market_files())
    flags = ["compare", "--methods", "fedmm", "--backbones", "deepfm", "--rounds", "1", "--quiet",
             "--data", str(data), "--dp-noise-multiplier", "1.0", "--dp-clip", "0.5"]
    codebooks = {}
    for name, drawn in (("a", SECRET), ("b", SECRET), ("c", SECRET + 1)):
        monkeypatch.setattr(dp.secrets, "randbits", lambda bits, drawn=drawn: drawn)
        assert main([*flags, "--out", str(tmp_path / name)]) == 0
        codebooks[name] = (tmp_path / name / "codebooks.csv").read_text()
    assert codebooks["a"] == codebooks["b"] != codebooks["c"]
    assert "noise: secret" in capsys.readouterr().out

    folder = tmp_path / "a"
    assert json.loads((folder / "config.json").read_text())["privacy"]["noise"] == dp.NOISE_SECRET
    assert not [p for p in (folder / "checkpoints").rglob("round_*")], "round states outlived their stage"
    assert _occurrences(folder, SECRET) == []

    assert main([*flags, "--out", str(tmp_path / "seeded"), "--dp-noise-seed", str(SECRET)]) == 0
    assert "config.json" in _occurrences(tmp_path / "seeded", SECRET)
