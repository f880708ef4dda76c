"""#13 item 2: with DP on, every federated aggregation of every method is a DP mean with its own clip, no
other per-round value crosses, and the run reports one ε per method and market composed over every stage
and every round a market took part in (rounds whose loss is not finite included)."""

from __future__ import annotations

import functools
import json
from dataclasses import replace

import dp_accounting
import pytest

tff = pytest.importorskip("tensorflow_federated")

from test_cli_compare import audited, tiny_market_files  # noqa: E402

from tff_fedmm.cli import main  # noqa: E402
from tff_fedmm.federated import accounting, audit  # noqa: E402
from tff_fedmm.pipelines import signature  # noqa: E402
from tff_fedmm.federated import privacy as dp  # noqa: E402
from tff_fedmm.federated.codebook_process import CodebookStageConfig, build_codebook_process  # noqa: E402
from tff_fedmm.federated.participation import Participation  # noqa: E402
from tff_fedmm.federated.partial_fedavg import build_partial_fedavg_process  # noqa: E402
from tff_fedmm.models.ctr import build_ctr_model  # noqa: E402
from tff_fedmm.training.ctr import CTRTrainConfig  # noqa: E402
from tff_fedmm.models.rqvae import RQVAEConfig  # noqa: E402
from tff_fedmm.pipelines import privacy_report  # noqa: E402
from tff_fedmm.pipelines.ctr_fedavg import build_fedavg_process  # noqa: E402
from tff_fedmm.pipelines.ctr_stage import CTRStageConfig  # noqa: E402

PRIVACY = dp.PrivacyConfig(noise_multiplier=1.0, clip=0.3)
CTR = dict(num_users=5, num_items=13, k_global=5, k_local=3, embed_dim=4, hidden=(8,))
G1 = dp_accounting.GaussianDpEvent(1.0)


def _scalar_crossings(process) -> list:
    """Crossings that carry a scalar: the summed loss and example counts, if they cross."""
    return [c for c in audit.client_to_server_values(process.next) if any(audit.is_scalar(t) for t in c.leaves)]


def _dp_state(process) -> str:
    return str(process.initialize.type_signature.result.member.aggregator)


# --- every stage's process ----------------------------------------------------------------------------


def test_partial_fedavg_under_dp_averages_with_a_dp_mean_and_keeps_the_loss_in_the_markets():
    model_fn = functools.partial(build_ctr_model, "deepfm", **CTR)
    spec = signature.ctr_element_spec(CTR["k_global"], CTR["k_local"], batch_size=2)
    plain = build_partial_fedavg_process(model_fn, spec)
    private = build_partial_fedavg_process(model_fn, spec, aggregator=dp.dp_mean_factory(PRIVACY, 0.5, 2, 7),
                                           metrics_cross=False)
    assert "dp_event" in _dp_state(private) and "l2_norm_clip" in _dp_state(private)
    assert "dp_event" not in _dp_state(plain)
    assert _scalar_crossings(plain) and not _scalar_crossings(private)
    assert "client_work" not in str(private.next.type_signature.result[2])
    audit.audit_partial_fedavg_process(private, model_fn())  # still only the shared weights cross


def test_fedavg_under_dp_is_tffs_unweighted_fedavg_with_the_dp_mean():
    model_fn = functools.partial(build_ctr_model, "deepfm", **{**CTR, "k_global": 0, "k_local": 0})
    spec = signature.ctr_element_spec(0, 0, batch_size=2)
    plain = build_fedavg_process(model_fn, spec, CTRTrainConfig())
    private = build_fedavg_process(model_fn, spec, CTRTrainConfig(), dp.dp_mean_factory(PRIVACY, 0.5, 2, 7))
    assert "dp_event" in _dp_state(private) and "dp_event" not in _dp_state(plain)
    assert _scalar_crossings(plain) and not _scalar_crossings(private)


def test_codebook_under_dp_keeps_its_loss_sums_in_the_markets():
    config = CodebookStageConfig(rqvae=RQVAEConfig(input_dim=6, latent_dim=3, hidden=8, k_global=5, k_local=3))
    private = build_codebook_process(config, dp.codebook_aggregator("fedavg", PRIVACY, 2, 7), metrics_cross=False)
    assert "dp_event" in _dp_state(private) and not _scalar_crossings(private)


def test_under_dp_rounds_are_fixed():
    """Stopping once no market improves is a signal across markets: under DP every round runs."""
    config = CTRStageConfig(rounds=20, round_patience=5)
    assert config.patience() == 5 and replace(config, privacy=PRIVACY).patience() == 20


def test_each_stage_draws_its_own_reproducible_noise():
    seeded = dp.PrivacyConfig(noise_multiplier=1.0, clip=0.3, noise_seed=4)
    seeds = {dp.noise_seed(seeded, 0, stage) for stage in ("cf-tower", "codebook (federated codes)", "ctr (fedmm/deepfm)")}
    assert len(seeds) == 3 and dp.noise_seed(seeded, 0, "cf-tower") == dp.noise_seed(seeded, 0, "cf-tower")


# --- the accounting ----------------------------------------------------------------------------------


def _eps(count: int, delta: float = 1e-5) -> float:
    if count == 0:
        return 0.0
    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(G1, count)
    return accountant.get_epsilon(delta)


class _State:
    """Stands in for an aggregator state: `round_event` is patched to return G1."""


def test_a_ledger_charges_each_market_for_the_rounds_it_took_part_in(monkeypatch):
    monkeypatch.setattr(dp, "round_event", lambda state: G1)
    ledger = privacy_report.Ledger("codebook")
    ledger.record(PRIVACY, _State(), ["aa", "bb", "cc"], [[0, 1], [], [0], [0, 2]])
    assert {c.markets[0]: c.count for c in ledger.charges} == {"aa": 3, "bb": 1, "cc": 1}
    off = privacy_report.Ledger("codebook")
    off.record(dp.PrivacyConfig(), _State(), ["aa"], [[0]])
    nobody = privacy_report.Ledger("codebook")
    nobody.record(PRIVACY, None, ["aa"], [[], []])  # no aggregation ran: no event is read, nobody charged
    assert off.charges == [] and nobody.charges == []


def test_the_section_composes_every_stage_per_training_and_over_all_trainings():
    def charges(stage, count, markets=("aa", "bb")):
        return [accounting.charge(stage, accounting.MARKET, [m], G1, count).to_json() for m in markets]

    codebook = charges("codebook (federated codes)", 4)
    seed = {"fedmm": {"deepfm": codebook + charges("ctr (fedmm/deepfm)", 3),
                      "dcnv2": codebook + charges("ctr (fedmm/dcnv2)", 5, ["aa"])},
            "fedper": {"deepfm": charges("ctr (fedper/deepfm)", 2)}}
    report = privacy_report.section(PRIVACY, [seed, seed], ["fedmm", "fedper", "local", "centralized"], ["aa", "bb"])
    fedmm = report["methods"]["fedmm"]
    assert fedmm["epsilon"]["aa"] == pytest.approx(_eps(9)) and fedmm["epsilon"]["bb"] == pytest.approx(_eps(7))
    assert fedmm["epsilon"]["aa"] > _eps(4)  # more than the codebook alone
    assert fedmm["epsilon_all_trainings"]["aa"] == pytest.approx(_eps(2 * (4 + 3 + 5)))  # codebook once per seed
    assert fedmm["trainings"] == 4 and len(fedmm["stages"]) == 3
    assert report["methods"]["fedper"]["epsilon"]["bb"] == pytest.approx(_eps(2))
    assert report["methods"]["local"]["epsilon"] == {"aa": 0.0, "bb": 0.0}
    assert report["methods"]["centralized"]["epsilon"] == {"aa": None, "bb": None}
    assert report["unit"] == accounting.UNITS[accounting.MARKET] and report["clips"]["ctr"] == PRIVACY.ctr_clip
    lines = privacy_report.lines(report)
    assert len(lines) == 4 and lines[0].startswith("DP fedmm: epsilon per market at delta = 1e-05: aa ")
    assert "none (no DP guarantee)" in lines[3] and all(report["unit"] in line for line in lines)
    assert privacy_report.section(dp.PrivacyConfig(), [seed], ["fedmm"], ["aa"]) == {"dp": False, "secure_agg": False}


# --- flags ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("flags, message", [
    (["--dp-ctr-clip", "0.5"], "--dp-ctr-clip: only used with --dp-noise-multiplier"),
    (["--dp-cf-clip", "1"], "--dp-cf-clip: only used with --dp-noise-multiplier"),
    (["--dp-noise-multiplier", "1", "--dp-clip", "0.3", "--dp-ctr-clip", "0"], "--dp-ctr-clip: expected a positive"),
    (["--dp-noise-multiplier", "1", "--dp-clip", "0.3", "--dp-cf-clip", "-2"], "--dp-cf-clip: expected a positive"),
    (["--dp-noise-multiplier", "1", "--dp-clip", "0.3", "--dp-cf-clip", "adaptive"],
     "--dp-cf-clip adaptive: TFF's adaptive clipping needs"),
    (["--dp-noise-multiplier", "1", "--dp-clip", "0.3", "--dp-ctr-clip", "wide"], "--dp-ctr-clip"),
])
def test_bad_stage_clips_are_one_line_errors(flags, message, market_dir, tmp_path, capsys):
    data = market_dir(tiny_market_files())
    status = main(["compare", "--methods", "fedper", "--backbones", "deepfm", "--data", str(data),
                   "--out", str(tmp_path / "run"), "--quiet", *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and message in err[0], err


def test_signature_puts_the_ctr_process_under_dp_too(capsys):
    assert main(["signature", "--dp-noise-multiplier", "1", "--dp-clip", "0.3", "--dp-ctr-clip", "0.4"]) == 0
    out = capsys.readouterr().out
    sections = out.split("\n== ")
    assert len(sections) == 2 and all("dp_event=<" in section for section in sections)
    assert "DP z=1.0 clip=0.4)" in sections[1] and out.count("audit: passed") == 2
    assert main(["signature", "--dp-ctr-clip", "0.4"]) == 2


# --- end to end --------------------------------------------------------------------------------------


def _present(stage: str, rounds: int, participation: Participation) -> list[int]:
    """Rounds of `stage` each of the two markets took part in."""
    counts = [0, 0]
    for r in range(rounds):
        for i in participation.present(stage, r, 2):
            counts[i] += 1
    return counts


@pytest.mark.slow
def test_a_dp_run_charges_every_stage_of_every_federated_method(market_dir, tmp_path, capsys):
    data, out = market_dir(tiny_market_files()), tmp_path / "run"
    methods = ["fedmm", "fedper", "fedavg", "local"]
    assert main(["compare", "--methods", ",".join(methods), "--backbones", "deepfm", "--rounds", "3", "--cf-tower",
                 "--dropout-rate", "0.3", "--seed", "5", "--dp-noise-multiplier", "1", "--dp-clip", "0.3",
                 "--dp-noise-seed", "2", "--quiet", "--data", str(data), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    report, markets = config["privacy"], config["markets"]
    participation = Participation(None, 0.3, 5)
    cf = _present("cf-federated", config["config"]["codes"]["cf"]["epochs"], participation)
    codebook, ctr = _present("codebook", 3, participation), _present("ctr", 3, participation)
    assert codebook != [3, 3] and ctr != [3, 3]  # markets were absent from some rounds: those are not charged

    fedmm = report["methods"]["fedmm"]
    assert fedmm["stages"] == ["cf-tower", "codebook (federated codes)", "ctr (fedmm/deepfm)"]
    for i, market in enumerate(markets):
        # z = 1 with fixed clips on every stage: each round a market took part in is one Gaussian(1) event
        assert fedmm["epsilon"][market] == pytest.approx(_eps(cf[i] + codebook[i] + ctr[i]))
        assert fedmm["epsilon"][market] > _eps(codebook[i])  # more than the codebook alone (0 if never present)
        assert report["methods"]["fedper"]["epsilon"][market] == pytest.approx(_eps(ctr[i]))
        assert report["methods"]["fedavg"]["epsilon"][market] == pytest.approx(_eps(ctr[i]))
    assert report["methods"]["local"]["epsilon"] == {m: 0.0 for m in markets}
    # Under DP no loss crosses, so every round's loss is unknown (NaN): each still counted above.
    history = (out / "codebook_history.csv").read_text().splitlines()
    assert len(history) == 4 and all(line.split(",")[2] == "" for line in history[1:])
    for method in methods:
        assert f"DP {method}: epsilon per market at delta = 1e-05: " in printed
    assert "unit: add/remove one market's whole data" in printed
    # Every federated stage's audit: only the DP sum of the updates crosses, no metric.
    for stage in ("cf-federated", "codes-federated-codebooks-federated-cf-aa-bb", "ctr-fedmm-deepfm",
                  "ctr-fedper-deepfm", "ctr-fedavg-deepfm"):
        values, sources = audited(out, stage)
        assert values and not [s for s in sources if "metrics/" in s], (stage, sources)
