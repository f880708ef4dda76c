"""#13 item 4: interaction-level DP (`--dp-unit interaction`): DP-SGD's per-record clipping bounds one
record's influence on a step, the accountant composes Poisson-sampled Gaussian steps per interaction, a run
reports one ε per interaction of each market, and combinations that make no sense are refused."""

from __future__ import annotations

import json

import dp_accounting
import numpy as np
import pytest
import tensorflow as tf

from test_cli_compare import tiny_market_files

from tff_fedmm.cli import main
from tff_fedmm.data.dp_records import interaction_records, poisson_batches
from tff_fedmm.data.pipelines import record_dataset
from tff_fedmm.federated import accounting
from tff_fedmm.training.dp_sgd import DpSgdConfig, RecordGradients
from tff_fedmm.models.ctr import build_ctr_model
from tff_fedmm.pipelines.privacy_report import Ledger

CLIP = 0.05


def _records() -> dict:
    """Four records of 1 interaction + 2 negatives; record 2 draws its positive item again as a negative."""
    rng = np.random.default_rng(0)
    users = np.repeat(np.array([0, 1, 2, 3], np.int32)[:, None], 3, axis=1)
    items = np.array([[1, 2, 3], [4, 5, 6], [7, 8, 7], [9, 10, 11]], np.int32)
    labels = np.tile(np.array([1.0, 0.0, 0.0], np.float32), (4, 1))
    codes = rng.integers(0, 3, size=items.shape).astype(np.int32)
    x = {"user": users, "item": items, "user_gcode": codes, "item_gcode": codes[::-1].copy()}
    return {"x": {k: tf.constant(v) for k, v in x.items()}, "y": tf.constant(labels)}


def _model() -> tf.keras.Model:
    tf.keras.utils.set_random_seed(1)
    return build_ctr_model("deepfm", num_users=5, num_items=13, k_global=3, k_local=0, embed_dim=4, hidden=(8,))


def _naive_clipped_sum(model, records: dict, clip: float) -> list[np.ndarray]:
    """One record at a time: full gradient, clipped by its global norm, summed."""
    total = [np.zeros(v.shape, np.float32) for v in model.trainable_variables]
    for r in range(int(records["y"].shape[0])):
        x = {k: v[r] for k, v in records["x"].items()}
        with tf.GradientTape() as tape:
            loss = tf.reduce_sum(tf.keras.losses.binary_crossentropy(records["y"][r][:, None], model(x, training=True)))
        grads = [tf.convert_to_tensor(g) for g in tape.gradient(loss, model.trainable_variables)]
        scale = min(1.0, clip / float(tf.linalg.global_norm(grads)))
        total = [t + scale * g.numpy() for t, g in zip(total, grads)]
    return total


def test_per_record_clipping_matches_clipping_each_record_alone():
    model, records = _model(), _records()
    fast, _ = RecordGradients(model, model.trainable_variables).clipped_sum(records, CLIP)
    for got, want in zip(fast, _naive_clipped_sum(model, records, CLIP)):
        np.testing.assert_allclose(got.numpy(), want, atol=1e-6)
    unclipped, _ = RecordGradients(model, model.trainable_variables).clipped_sum(records, 1e6)
    for got, want in zip(unclipped, _naive_clipped_sum(model, records, 1e6)):
        np.testing.assert_allclose(got.numpy(), want, atol=1e-5)


def test_one_record_moves_a_step_by_at_most_clip_over_the_batch_size():
    model, records = _model(), _records()
    config = DpSgdConfig(noise_multiplier=0.0, clip=CLIP, batch_size=4)
    gradients = RecordGradients(model, model.trainable_variables)
    seed = tf.constant([1, 2], tf.int64)
    with_all, _, n = gradients.noised({"records": records, "noise_seed": seed}, config)
    # Record 0 with its loss pushed far up (label flipped on every example): its raw gradient is huge.
    loud = {"x": records["x"], "y": tf.tensor_scatter_nd_update(records["y"], [[0]], [[0.0, 1.0, 1.0]])}
    with_loud, _, _ = gradients.noised({"records": loud, "noise_seed": seed}, config)
    without = {"x": {k: v[1:] for k, v in records["x"].items()}, "y": records["y"][1:]}
    removed, _, _ = gradients.noised({"records": without, "noise_seed": seed}, config)
    assert float(n) == 4
    assert float(tf.linalg.global_norm([a - b for a, b in zip(with_all, removed)])) <= CLIP / 4 + 1e-7
    assert float(tf.linalg.global_norm([a - b for a, b in zip(with_loud, removed)])) <= CLIP / 4 + 1e-7


def test_noise_has_standard_deviation_z_clip_over_batch_and_follows_the_seed():
    model, records = _model(), _records()
    config = DpSgdConfig(noise_multiplier=2.0, clip=CLIP, batch_size=4)
    gradients = RecordGradients(model, model.trainable_variables)
    clean, _ = gradients.clipped_sum(records, CLIP)
    noised, _, _ = gradients.noised({"records": records, "noise_seed": tf.constant([5, 6], tf.int64)}, config)
    again, _, _ = gradients.noised({"records": records, "noise_seed": tf.constant([5, 6], tf.int64)}, config)
    other, _, _ = gradients.noised({"records": records, "noise_seed": tf.constant([5, 7], tf.int64)}, config)
    noise = np.concatenate([(n * 4 - c).numpy().ravel() for n, c in zip(noised, clean)])
    assert noise.std() == pytest.approx(2.0 * CLIP, rel=0.1)
    assert all(np.array_equal(a.numpy(), b.numpy()) for a, b in zip(noised, again))
    assert not np.array_equal(noised[0].numpy(), other[0].numpy())


def test_poisson_batches_sample_each_record_independently(synthetic_set):
    market = synthetic_set.markets[synthetic_set.names[0]]
    rng = np.random.default_rng(3)
    records = interaction_records(market, 4, rng)
    assert records["item"].shape == (len(market.split("train")), 5)
    assert (records["label"][:, 0] == 1).all() and (records["label"][:, 1:] == 0).all()
    batches, seeds = poisson_batches(records, 0.1, 200, rng)
    sizes = np.array([len(b) for b in batches])
    assert sizes.mean() == pytest.approx(0.1 * len(records["label"]), rel=0.05) and sizes.std() > 0
    assert seeds.shape == (200, 2)
    dataset = record_dataset(records, batches[:3], seeds[:3])
    first = next(iter(dataset))
    assert first["records"]["y"].shape[0] == sizes[0] and dataset.element_spec["records"]["y"].shape.as_list() == [None, 5]


def test_secret_draws_are_kept_for_a_resumed_stage_and_deleted_with_it(synthetic_set, tmp_path):
    """Secret noise: a resumed stage recomputes a cut round with the same draws (never a second noised
    release of it), another run draws its own, and nothing of the seed outlives the finished stage."""
    from tff_fedmm.checkpoints import SECRET_FILE, RunCheckpoints
    from tff_fedmm.federated.privacy import INTERACTION, PrivacyConfig
    from tff_fedmm.pipelines.dp_sgd_clients import DpSgdClients

    privacy = PrivacyConfig(noise_multiplier=1.0, unit=INTERACTION)
    assert privacy.noise_seed is None  # secret

    def first_batch(checkpoint) -> np.ndarray:
        clients = DpSgdClients(synthetic_set, privacy, "ctr (fedmm/deepfm)", 0, 0.5, 4, checkpoint)
        return next(iter(clients.dataset(1, 3)))["noise_seed"].numpy()  # drawn after the records and batches

    stage = RunCheckpoints(tmp_path / "run", resume=False, fingerprint={}).stage("seed0-ctr")
    kept = first_batch(stage)
    assert (stage.root / stage.name / SECRET_FILE).exists()
    assert np.array_equal(first_batch(stage), kept)  # as after a kill: the same draws
    other = RunCheckpoints(tmp_path / "other", resume=False, fingerprint={}).stage("seed0-ctr")
    assert not np.array_equal(first_batch(other), kept)  # another run's secret
    stage.save_done({"x": np.zeros(1)})
    assert not list((tmp_path / "run").rglob(SECRET_FILE))


def test_the_accountant_composes_poisson_sampled_gaussian_steps_per_interaction():
    ledger = Ledger("ctr (fedmm/deepfm)")
    ledger.record_steps("de", 0.05, 1.1, 300)
    ledger.record_steps("de", 1.0, 1.1, 7)  # a market smaller than a batch: every record in every step
    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(dp_accounting.PoissonSampledDpEvent(0.05, dp_accounting.GaussianDpEvent(1.1)), 300)
    accountant.compose(dp_accounting.GaussianDpEvent(1.1), 7)
    got = accounting.epsilon(ledger.charges, "de", accounting.INTERACTION, 1e-5)
    assert got == pytest.approx(accountant.get_epsilon(1e-5))
    assert accounting.epsilon(ledger.charges, "de", accounting.MARKET, 1e-5) == 0.0  # units never mix


@pytest.mark.parametrize("flags, message", [
    (["--dp-unit", "interaction"], "--dp-unit interaction: needs --dp-noise-multiplier"),
    (["--dp-unit", "interaction", "--dp-noise-multiplier", "1", "--dp-mode", "distributed"], "--dp-mode distributed"),
    (["--dp-unit", "interaction", "--dp-noise-multiplier", "1", "--dp-clip", "0.3"], "--dp-clip: not with"),
    (["--dp-unit", "interaction", "--dp-noise-multiplier", "1", "--dp-ctr-clip", "0.3"], "--dp-ctr-clip: not with"),
    (["--dp-unit", "interaction", "--dp-noise-multiplier", "1", "--level1", "descriptors"], "--level1 descriptors"),
    (["--dp-unit", "interaction", "--dp-noise-multiplier", "1", "--methods", "fedavg"], "--methods fedavg"),
    (["--dp-unit", "interaction", "--dp-noise-multiplier", "1", "--dp-example-clip", "0"], "--dp-example-clip"),
    (["--dp-noise-multiplier", "1", "--dp-example-clip", "1"], "--dp-example-clip: only used with --dp-unit"),
])
def test_refused_combinations_are_one_line_errors(flags, message, market_dir, tmp_path, capsys):
    data = market_dir(tiny_market_files())
    methods = [] if "--methods" in flags else ["--methods", "fedper"]
    status = main(["compare", *methods, "--backbones", "deepfm", "--data", str(data), "--out", str(tmp_path / "run"),
                   "--quiet", *flags])
    err = capsys.readouterr().err.strip().splitlines()
    assert status == 2 and len(err) == 1 and message in err[0], err


@pytest.mark.slow
def test_a_run_reports_one_epsilon_per_interaction_of_each_market(market_dir, tmp_path, capsys):
    data, out = market_dir(tiny_market_files()), tmp_path / "run"
    assert main(["run", "--rounds", "2", "--dp-unit", "interaction", "--dp-noise-multiplier", "1.5",
                 "--dp-noise-seed", "4", "--quiet", "--data", str(data), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    config = json.loads((out / "config.json").read_text())
    report, markets = config["privacy"], config["markets"]
    assert report["unit_name"] == "interaction" and "one interaction" in report["unit"]
    assert set(report["methods"]) == {"fedmm", "local", "fedper"}  # fedper stands in for FedAvg
    # Tiny markets (< one batch of records): q = 1, one step per CF epoch and per CTR round.
    cf_epochs = config["config"]["codes"]["cf"]["epochs"]
    for market in markets:
        assert report["methods"]["fedmm"]["epsilon"][market] == pytest.approx(_gaussian_eps(1.5, cf_epochs + 2))
        assert report["methods"]["fedper"]["epsilon"][market] == pytest.approx(_gaussian_eps(1.5, 2))
    assert report["methods"]["fedmm"]["stages"] == ["cf (dp-sgd)", "ctr (fedmm/deepfm)"]
    for method in ("fedmm", "fedper", "local"):
        assert printed.count(f"DP {method}: epsilon per interaction of each market at delta = 1e-05: ") == 1
    assert "codebook: post-processing" in printed


def _gaussian_eps(z: float, count: int) -> float:
    accountant = dp_accounting.rdp.RdpAccountant()
    accountant.compose(dp_accounting.GaussianDpEvent(z), count)
    return accountant.get_epsilon(1e-5)


@pytest.mark.slow
def test_partial_fedavg_runs_dp_sgd_in_its_client_work_and_sends_only_the_shared_update(tff_context, synthetic_set):
    """The `--cf-tower` / CTR path: DP-SGD inside TFF's client computation (graph mode), a plain unweighted
    mean, no metric crossing; every variable, private embeddings included, trains."""
    import tensorflow_federated as tff

    from tff_fedmm.data.pipelines import market_record_dataset
    from tff_fedmm.federated import audit
    from tff_fedmm.federated import partial_fedavg as pf
    from tff_fedmm.federated.participation import run_present
    from tff_fedmm.models.cf import CFConfig, build_cf_model

    market = synthetic_set.markets[synthetic_set.names[0]]
    model_fn = lambda: build_cf_model(market.num_users, market.num_items,  # noqa: E731
                                      CFConfig(dim=4, tower=True, tower_hidden=4))
    sgd = DpSgdConfig(noise_multiplier=1.0, clip=1.0, batch_size=64)
    dataset = market_record_dataset(market, 2, sgd.sampling_rate(len(market.split("train"))), 2,
                                    np.random.default_rng(0))
    config = pf.PartialFedAvgConfig(dp_sgd=sgd)
    process = pf.build_partial_fedavg_process(model_fn, dataset.element_spec, config,
                                              tff.aggregators.UnweightedMeanFactory(), metrics_cross=False)
    # The one scalar that crosses is the unweighted mean's count of markets that sent (1 each), no metric.
    assert [c.text for c in audit.client_to_server_values(process.next)
            if any(audit.is_scalar(t) for t in c.leaves)] == ["federated_sum: int32"]
    audit.audit_partial_fedavg_process(process, model_fn())
    server, clients = process.initialize(), [pf.initial_client_state(model_fn, config, 0, seed=1)]
    new_server, new_clients, _ = run_present(process.next, server, clients, lambda i: dataset, [0])
    for before, after in ((server.global_model_weights.trainable, new_server.global_model_weights.trainable),
                          (clients[0]["private"], new_clients[0]["private"])):
        assert all(np.all(np.isfinite(a)) for a in after)
        assert all(not np.array_equal(b, a) for b, a in zip(before, after))
