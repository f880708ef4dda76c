"""`fedmm bench`: flags, the upload byte count (exact, hand-derived), the line format of a quick run, and
the per-round model reuse it motivated. No timing assertions: timings depend on the machine's load."""

from __future__ import annotations

import math
import re

import numpy as np
import pytest

from tff_fedmm.cli import run_command


@pytest.mark.parametrize("argv, flag", [
    (["--rounds", "0"], "--rounds"),
    (["--rounds", "five"], "--rounds"),
    (["--warmup", "0"], "--warmup"),
    (["--scaling", "5"], "--scaling"),
    (["--scaling", "5,x"], "--scaling"),
    (["--memory-rounds", "2"], "--memory-rounds"),
    (["--backbone", "mlp"], "--backbone"),
])
def test_a_bad_flag_is_one_line_naming_it_and_exit_2(capsys, argv, flag):
    assert run_command(["bench", *argv]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"fedmm: error: {flag}"), captured.err
    assert captured.out == ""


def test_the_task_script_is_the_same_command():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "tasks" / "bench.py"
    done = subprocess.run([sys.executable, str(script), "--scaling", "off,5"], capture_output=True, text=True,
                          check=False, timeout=60)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.strip().splitlines() == [done.stderr.strip()] and "fedmm: error: --scaling" in done.stderr


def test_fit_line_is_exact_on_a_line_and_flags_a_bend():
    from tff_fedmm.bench.measure import fit_line

    fit = fit_line([5, 10, 20, 50], [1.5, 2.5, 4.5, 10.5])  # 0.2 s/market + 0.5 s
    assert fit.slope == pytest.approx(0.2) and fit.intercept == pytest.approx(0.5)
    assert fit.r2 == pytest.approx(1.0) and fit.max_deviation == pytest.approx(0.0, abs=1e-9)
    bent = fit_line([5, 10, 20, 50], [1.0, 2.0, 4.0, 25.0])
    assert bent.r2 < 0.99 and bent.max_deviation > 0.1


def test_upload_bytes_sum_every_crossing_leaf_and_nothing_else():
    tff = pytest.importorskip("tensorflow_federated")
    from tff_fedmm.bench.measure import upload_bytes

    @tff.tensorflow.computation(np.float32)
    def as_int64(w):
        return tf_cast_int64(w)

    @tff.federated_computation(tff.FederatedType(tff.TensorType(np.float32, [3, 4]), tff.CLIENTS),
                               tff.FederatedType(np.float32, tff.CLIENTS),
                               tff.FederatedType(tff.TensorType(np.float32, [7]), tff.SERVER))
    def comp(x, w, server_value):
        broadcast = tff.federated_broadcast(server_value)  # SERVER→CLIENTS: never counted
        counts = tff.federated_map(as_int64, w)  # stays at CLIENTS: not counted either
        return (tff.federated_mean(x, weight=w),  # weighted: value f32[3,4] = 48 bytes + weight f32 = 4 bytes
                tff.federated_sum(counts),  # i64[5] = 40 bytes
                broadcast)

    assert upload_bytes(comp) == 48 + 4 + 40


def tf_cast_int64(w):
    import tensorflow as tf

    return tf.cast(tf.fill([5], w), tf.int64)


def test_the_data_seed_draws_the_synthetic_markets_and_the_seed_does_not(monkeypatch):
    from tff_fedmm.bench import command, quick_settings, run_bench
    from tff_fedmm.data import markets

    given = []
    monkeypatch.setattr(command, "run_bench", lambda settings, emit: given.append(settings))
    assert run_command(["bench", "--data-seed", "3", "--quick"]) == 0
    assert (given[0].data_seed, given[0].seed) == (3, 0)

    class Drawn(Exception):
        pass

    def load_markets(data, names, synthetic):
        raise Drawn(synthetic.seed)

    monkeypatch.setattr(markets, "load_markets", load_markets)
    with pytest.raises(Drawn, match="^3$"):
        run_bench(quick_settings(data_seed=3, seed=5))


def _tiny_model_fn():
    from tff_fedmm.models.ctr import build_ctr_model

    # FedMM's default split: only the global-code embeddings are shared.
    return build_ctr_model("deepfm", num_users=7, num_items=9, k_global=3, k_local=2, embed_dim=4, hidden=(8,),
                           share_interaction=False)


def test_partial_fedavg_upload_is_shared_weights_weight_and_metrics():
    pytest.importorskip("tensorflow_federated")
    from tff_fedmm.bench.measure import upload_bytes
    from tff_fedmm.federated.partial_fedavg import build_partial_fedavg_process
    from tff_fedmm.pipelines.signature import ctr_element_spec

    process = build_partial_fedavg_process(_tiny_model_fn, ctr_element_spec(3, 2))
    # Shared: user and item global-code embeddings 3x4 each, and their 3x1 first-order terms = 30 floats.
    shared = 4 * (3 * 4 + 3 * 4 + 3 * 1 + 3 * 1)
    assert upload_bytes(process.next) == shared + 4 + 2 * 4  # + example weight + metrics (loss, examples)


def test_reused_market_models_predict_exactly_as_fresh_ones():
    pytest.importorskip("tensorflow_federated")
    import tensorflow as tf
    import tensorflow_federated as tff

    from tff_fedmm.federated import partial_fedavg as pf

    def weights(seed: int):
        tf.keras.utils.set_random_seed(seed)
        model = _tiny_model_fn()
        shared = tff.learning.models.ModelWeights(
            trainable=tuple(v.numpy() for v in pf.shared_weights(model)), non_trainable=())
        return shared, {"private": tuple(v.numpy() for v in pf.private_weights(model))}

    rng = np.random.default_rng(0)
    features = {"user": rng.integers(0, 7, 32), "item": rng.integers(0, 9, 32),
                "user_gcode": rng.integers(0, 3, 32), "item_gcode": rng.integers(0, 3, 32),
                "user_lcode": rng.integers(0, 2, 32), "item_lcode": rng.integers(0, 2, 32)}
    features = {k: v.astype(np.int32) for k, v in features.items()}
    models = pf.MarketModels(_tiny_model_fn)
    reused = []
    for seed in (1, 2, 1):  # back to the first weights: nothing of round 2 may linger
        shared, client = weights(seed)
        model = models("m0", shared, client)
        reused.append(model)
        fresh = pf.market_model(_tiny_model_fn, shared, client)
        np.testing.assert_array_equal(model.predict(features, verbose=0), fresh.predict(features, verbose=0))
    assert reused[0] is reused[1] is reused[2]


ROUND_TIMES = (r" fedmm/fedavg = (?P<v>\S+) \(median s per round: fedmm (?P<a>\S+), fedavg (?P<b>\S+); cpu s per "
               r"round, python\+worker: fedmm (?P<c>\S+), fedavg (?P<d>\S+), ratio (?P<e>\S+); 2 timed rounds after 1 "
               r"warm-up, 2 markets\)")
STEP_TIMES = (r" ids=100000/ids=1000 = (?P<v>\S+) \(median ms per step: ids=1000 (?P<a>\S+), ids=10000 (?P<b>\S+), "
              r"ids=100000 (?P<c>\S+); cpu ms, python\+worker: (?P<d>[^,]+), (?P<e>[^,]+), (?P<f>[^,]+), ratio (?P<g>\S+); "
              r"(?P<n>\d+) timed after 1 warm-up, interleaved; retraces after the first step 0\)$")
LINE_PATTERNS = {  # every line a quick run prints, each exactly once
    "header": r"^bench data=synthetic markets=m0,m1 backbone=deepfm \(",
    "round_time_ratio ctr": r"^round_time_ratio ctr" + ROUND_TIMES + "$",
    "round_time_ratio ctr_as_compared": r"^round_time_ratio ctr_as_compared" + ROUND_TIMES + " \\[FedAvg on its ID-only",
    "step_time_ratio cf": r"^step_time_ratio cf" + STEP_TIMES,
    "step_time_ratio rqvae": r"^step_time_ratio rqvae" + STEP_TIMES,
    "step_time_ratio ctr": r"^step_time_ratio ctr" + STEP_TIMES,
    "pipeline_round_seconds": r"^pipeline_round_seconds ctr = (?P<v>\S+) \(cpu s, python\+worker (?P<a>\S+); "
                              r"train_partial round incl\. per-market validation, median over rounds 2\.\.4\)$",
    "round_time_ratio codebook": r"^round_time_ratio codebook" + ROUND_TIMES + "$",
    "throughput_ratio": r"^throughput_ratio federated/keras_fit = (?P<v>\S+) \(examples/s: federated (?P<a>\S+), "
                        r"keras_fit (?P<b>\S+); per cpu s: federated (?P<c>\S+), keras_fit (?P<d>\S+), "
                        r"ratio (?P<e>\S+);",
    "upload": r"^upload_bytes_per_market_per_round fedmm = (?P<a>\d+) fedavg = (?P<b>\d+) ratio = (?P<v>\S+) "
              r"\(fedmm = codebook round (?P<c>\d+) \+ ctr round (?P<d>\d+); ",
    "upload ids=1000": r"^upload_bytes_per_market_per_round ids=1000 fedmm = (?P<a>\d+) fedavg = (?P<b>\d+) "
                       r"ratio = (?P<v>\S+)$",
    "upload ids=10000": r"^upload_bytes_per_market_per_round ids=10000 fedmm = (?P<a>\d+) fedavg = (?P<b>\d+) "
                        r"ratio = (?P<v>\S+)$",
    "upload ids=100000": r"^upload_bytes_per_market_per_round ids=100000 fedmm = (?P<a>\d+) fedavg = (?P<b>\d+) "
                         r"ratio = (?P<v>\S+)$",
    "scaling": r"^scaling markets=2,3 seconds_per_round = (?P<a>[^,]+),(?P<b>\S+) \(least squares "
               r"(?P<v>\S+) s/market .*; cpu s per round, python\+worker (?P<c>[^,]+),(?P<d>[^:]+): ",
    "memory peak": r"^memory peak_rss_mb python=(?P<a>\S+) worker=(?P<b>\S+) ",
    "memory growth": r"^memory growth_mb_per_round python=(?P<a>\S+) worker=(?P<b>\S+) ",
}


@pytest.mark.slow
def test_a_quick_bench_prints_every_figure_with_finite_values(tff_context):
    from tff_fedmm.bench import quick_settings, run_bench

    printed: list[str] = []
    assert run_bench(quick_settings(), emit=printed.append) == printed and len(printed) == len(LINE_PATTERNS), \
        "\n".join(printed)
    found = {}
    for name, pattern in LINE_PATTERNS.items():
        matches = [m for m in (re.match(pattern, line) for line in printed) if m]
        assert len(matches) == 1, f"{name}: expected one line matching {pattern!r} in:\n" + "\n".join(printed)
        found[name] = values = {k: float(v) for k, v in matches[0].groupdict().items()}
        if name.startswith("step_time_ratio"):  # 5x as many single steps as rounds
            assert values.pop("n") == 10, name
            assert values["v"] == pytest.approx(values["c"] / values["a"], rel=0.02, abs=0.01), (name, values)
            assert values["g"] == pytest.approx(values["f"] / values["d"], rel=0.02, abs=0.01), (name, values)
        assert all(math.isfinite(v) for v in values.values()), (name, values)
        if name == "memory growth":  # a slope: may be negative or zero
            continue
        assert all(v > 0 for k, v in values.items() if name != "scaling" or k != "v"), (name, values)
    up = found["upload"]
    assert up["a"] == up["c"] + up["d"] and up["v"] == pytest.approx(up["b"] / up["a"], abs=0.005)
    # FedMM's upload does not depend on the vocabulary; FedAvg's grows by the same bytes per added ID.
    by_ids = {ids: found[f"upload ids={ids}"] for ids in (1_000, 10_000, 100_000)}
    assert {u["a"] for u in by_ids.values()} == {up["a"]}
    grow_small = by_ids[10_000]["b"] - by_ids[1_000]["b"]
    assert grow_small > 0 and by_ids[100_000]["b"] - by_ids[10_000]["b"] == 10 * grow_small
