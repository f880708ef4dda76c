"""Distributed DP (`--dp-mode distributed`): the markets noise their updates before a secure sum, so the
server only sees a noised sum; ε from the DDG bound; the settings it cannot honour are refused."""

from __future__ import annotations

import collections
import json
import math
import subprocess
import sys

import numpy as np
import pytest

tff = pytest.importorskip("tensorflow_federated")
import dp_accounting  # noqa: E402

from test_cli_compare import tiny_market_files  # noqa: E402
from test_kill_anywhere import _kill_after  # noqa: E402

from tff_fedmm.cli import main  # noqa: E402
from tff_fedmm.errors import UsageError  # noqa: E402
from tff_fedmm.federated import accounting, audit, distributed_dp  # noqa: E402
from tff_fedmm.federated import privacy as dp  # noqa: E402

SHAPE = [16, 8]
VALUE = tff.StructWithPythonType([("codebook_update", tff.TensorType(np.float32, SHAPE))], collections.OrderedDict)
MARKETS, Z, CLIP = 3, 1.0, 0.5
DISTRIBUTED = dp.PrivacyConfig(noise_multiplier=Z, clip=CLIP, mode=dp.DISTRIBUTED)


def _process():
    return dp.dp_mean_factory(DISTRIBUTED, CLIP, MARKETS, seed=0).create(VALUE)


def test_only_secure_sums_cross_and_the_state_says_so():
    process = _process()
    crossings = audit.client_to_server_values(process.next)
    assert crossings and {c.uri for c in crossings} == {"federated_secure_sum_bitwidth"}
    # every leaf that crosses is an integer (the quantized, noised update and counts): no float reaches the server
    assert all(np.issubdtype(t.dtype, np.integer) for c in crossings for t in c.leaves)
    assert "distributed_dp" in str(process.initialize.type_signature.result)


def test_the_shape_audit_knows_the_one_padded_vector_distributed_dp_sends():
    process = _process()
    sent = audit.as_sent(audit.leaf_types(VALUE), distributed=True)
    assert [(t.dtype, tuple(t.shape)) for t in sent] == [(np.int32, (16 * 8,))]  # 128 elements: already even
    crossings = audit.client_to_server_values(process.next)
    audit.assert_nonscalar_leaves_equal(crossings, sent)
    with pytest.raises(audit.PrivacyAuditError):  # as the plain update it would not pass
        audit.assert_nonscalar_leaves_equal(crossings, audit.leaf_types(VALUE))
    odd = tff.StructWithPythonType([("u", tff.TensorType(np.float32, [3, 5]))], collections.OrderedDict)
    assert tuple(audit.as_sent(audit.leaf_types(odd), distributed=True)[0].shape) == (16,)  # the DFT pads to even


def test_signature_shows_and_audits_both_processes_under_distributed_dp(capsys):
    flags = ["signature", "--dp-noise-multiplier", "1", "--dp-clip", "0.3", "--dp-ctr-clip", "0.4"]
    assert main([*flags, "--dp-mode", "distributed"]) == 0
    out = capsys.readouterr().out
    sections = out.split("\n== ")
    assert len(sections) == 2 and all("distributed DP)" in section.splitlines()[0] for section in sections)
    assert out.count("audit: passed") == 2 and "[NOT ALLOWED]" not in out
    assert out.count("[shared] federated_secure_sum_bitwidth: int32[") == 2  # one noised vector per process
    assert main([*flags[:3], "--dp-clip", "adaptive", "--dp-mode", "distributed"]) == 2  # as run/compare refuse it


def test_the_server_sees_the_sum_with_noise_of_the_central_scale(tff_context):
    process = _process()
    state = process.initialize()
    assert distributed_dp.is_state(state)
    x = np.full(SHAPE, 0.01, np.float32)  # norm 0.11 < clip: nothing is clipped
    values = [collections.OrderedDict(codebook_update=x)] * MARKETS
    first, second = process.next(state, values), process.next(state, values)
    noise = [(out.result["codebook_update"] - x) * MARKETS for out in (first, second)]  # the noise of the sum
    assert not np.array_equal(noise[0], noise[1])  # drawn by the markets, not from the state
    for n in noise:  # all markets' shares together: standard deviation z x clip, as central DP
        assert np.std(n) == pytest.approx(Z * CLIP, rel=0.2) and abs(np.mean(n)) < 0.15
    event = dp.round_event(first.state)
    assert isinstance(event, dp_accounting.GaussianDpEvent)
    assert 0.95 * Z < event.noise_multiplier <= Z  # the clip is inflated a little by rounding, never deflated


def test_epsilon_is_finite_and_decreases_with_more_noise():
    scale, dim = 2.5e5, 128  # a scale factor and dimension as TFF picks them for a small codebook

    def eps(z: float) -> float:
        event = dp_accounting.GaussianDpEvent(distributed_dp.noise_multiplier(
            CLIP * scale, z * CLIP * scale / math.sqrt(MARKETS), MARKETS, dim))
        return accounting.epsilon([accounting.charge("codebook", accounting.MARKET, ["m"], event, 20)], "m",
                                  accounting.MARKET, 1e-5)

    values = [eps(z) for z in (0.5, 1.0, 2.0, 4.0)]
    assert all(math.isfinite(v) and v > 0 for v in values)
    assert values == sorted(values, reverse=True)
    # large shares: the bound is the Gaussian one; tiny shares (scale < 1/2): no guarantee is claimed
    assert distributed_dp.noise_multiplier(1e5, 1e5 / math.sqrt(3), 3, dim) == pytest.approx(1.0)
    assert distributed_dp.noise_multiplier(2.0, 0.4, 3, dim) == 0.0
    # small shares: the discreteness term makes the bound weaker than the Gaussian one
    assert distributed_dp.noise_multiplier(4.0, 2.0, 3, dim) < 2.0 * math.sqrt(3) / 4.0


@pytest.mark.parametrize("flags, message", [
    (["--dp-mode", "distributed"], "--dp-mode distributed: needs --dp-noise-multiplier"),
    (["--dp-noise-multiplier", "1", "--dp-clip", "0.3", "--dp-mode", "distributed", "--dp-noise-seed", "3"],
     "--dp-noise-seed: not with --dp-mode distributed"),
    (["--dp-noise-multiplier", "0.01", "--dp-mode", "distributed"],
     "--dp-clip adaptive: not with --dp-mode distributed"),
    (["--dp-noise-multiplier", "1", "--dp-clip", "0.3", "--dp-mode", "distributed", "--dropout-rate", "0.2"],
     "--dropout-rate: not with --dp-mode distributed"),
    (["--dp-mode", "local"], "--dp-mode"),
])
def test_settings_distributed_dp_cannot_honour_are_one_line(flags, message, market_dir, tmp_path, capsys):
    data = market_dir(tiny_market_files())
    status = main(["compare", "--methods", "fedmm", "--backbones", "deepfm", "--data", str(data),
                   "--out", str(tmp_path / "run"), "--quiet", *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and message in err[0], err
    assert not (tmp_path / "run").exists()


def test_the_flag_offers_the_modes_privacy_knows():
    from tff_fedmm.cli import build_parser

    for command in ("run", "compare"):
        sub = build_parser()._subparsers._group_actions[0].choices[command]
        (action,) = [a for a in sub._actions if a.dest == "dp_mode"]
        assert tuple(action.choices) == dp.MODES and action.default == dp.CENTRAL


def test_an_unknown_mode_is_refused_by_the_api_too():
    with pytest.raises(UsageError, match="--dp-mode: expected one of central, distributed"):
        dp.check_privacy(dp.PrivacyConfig(noise_multiplier=1.0, clip=0.3, mode="local"), "fedavg", 2)


@pytest.mark.slow
def test_run_killed_and_resumed_completes_and_writes_epsilon(market_dir, tmp_path):
    """`fedmm run --dp-mode distributed`, killed once the federated codebook stage saved a round, resumes
    and completes. Its numbers are not those of an uninterrupted run (the markets' noise cannot be
    redrawn), so what is checked is what holds: every round ran, every table is complete, ε is reported."""
    data, out = market_dir(tiny_market_files()), tmp_path / "run"
    flags = ["--dp-noise-multiplier", "1", "--dp-clip", "0.3", "--dp-mode", "distributed"]
    command = [sys.executable, "-m", "tff_fedmm", "run", "--rounds", "2", "--quiet", "--data", str(data),
               "--out", str(out), *flags]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _kill_after("checkpoints/seed0-codes-federated-codebooks-*/round_1", out, process)
    done = subprocess.run([*command, "--resume"], capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]

    report = json.loads((out / "config.json").read_text())["privacy"]
    assert report["mode"] == dp.DISTRIBUTED and report["noise"] == dp.NOISE_DISTRIBUTED
    for method in ("fedmm", "fedavg"):  # every federated stage is charged, each of them distributed
        epsilon = report["methods"][method]["epsilon"]
        assert all(0 < e < math.inf for e in epsilon.values()), (method, epsilon)
        assert ", ".join(f"{m} {e:.3g}" for m, e in epsilon.items()) in done.stdout
    stages = report["methods"]["fedmm"]["stages"]
    assert [stage.split()[0] for stage in stages] == ["codebook", "ctr"], stages
    assert dp.NOISE_DISTRIBUTED in done.stdout
    results = (out / "results.csv").read_text().splitlines()
    assert len(results) == 1 + 3 * 2  # fedmm, local, fedavg on both markets
    # what carries the codebook update crosses only through secure sums (the round's metrics cross in plain sums)
    stage = json.loads((out / "privacy_audit.json").read_text())["stages"]["codes-federated-codebooks-local-cf-aa-bb"]
    carrying = {c["intrinsic"] for c in stage["crossings"]
                if any("update of" in source for value in c["values"] for source in value["sources"])}
    assert carrying == {"federated_secure_sum_bitwidth"}
