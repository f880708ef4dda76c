"""`fedmm bench`: FedMM's cost against TFF's FedAvg and plain Keras, measured in one run, one line per figure.

    round_time_ratio ctr fedmm/fedavg = X        (timing: the same coded CTR model and examples under both
                                                  algorithms; interleaved rounds, medians after warm-up)
    round_time_ratio ctr_as_compared fedmm/fedavg = X  (FedAvg on its own ID-only model, as `compare` runs it)
    round_time_ratio codebook fedmm/fedavg = X   (codebook: the same RQ-VAE under both algorithms)
    throughput_ratio federated/keras_fit = X     (throughput: examples/s, same examples and model)
    upload_bytes_per_market_per_round fedmm = N fedavg = M ratio = M/N   (upload: from TFF types)
    upload_bytes_per_market_per_round ids=1000|10000|100000 fedmm = N fedavg = M ratio = M/N
                                                 (the same, both CTR models at N users + items per market)
    scaling markets=5,10,20,50 seconds_per_round = a,b,c,d (...)          (scaling: fixed-size markets)
    memory peak_rss_mb python=.. worker=..       (memory: 50 rounds of the real CTR pipeline)
    memory growth_mb_per_round python=.. worker=..

Every module measures one thing; this one builds the shared workload once and runs them in order. It
imports TensorFlow only inside `run_bench`, so that `fedmm --help` can import the flags module.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from tff_fedmm.bench.options import BenchSettings, quick_settings

__all__ = ["BenchResult", "BenchSettings", "quick_settings", "run_bench"]


@dataclass
class BenchResult:
    """Every figure, as numbers (the printed lines are in `lines`)."""

    lines: list[str] = field(default_factory=list)
    ctr_seconds: dict[str, float] = field(default_factory=dict)  # fedmm, fedavg medians
    codebook_seconds: dict[str, float] = field(default_factory=dict)
    throughput: object | None = None  # throughput.Throughput
    upload: object | None = None  # upload.Upload
    upload_by_ids: dict = field(default_factory=dict)  # users + items per market -> upload.Upload
    scaling: object | None = None  # scaling.Scaling
    memory: object | None = None  # memory.Memory


def load_bench_markets(settings: BenchSettings):
    """The markets to measure: a data directory, or synthetic markets at the settings' sizes."""
    from tff_fedmm.data.markets import SYNTHETIC, load_markets
    from tff_fedmm.data.synthetic import SyntheticConfig

    s = settings.sizes
    synthetic = SyntheticConfig(num_markets=settings.synthetic_markets, users_per_market=s.users_per_market,
                                items_per_market=s.items_per_market,
                                interactions_per_user=s.interactions_per_user, seed=settings.seed)
    return load_markets(settings.data, settings.markets, synthetic if settings.data == SYNTHETIC else None)


def run_bench(settings: BenchSettings, emit: Callable[[str], None] = print) -> BenchResult:
    """Measures every figure on the same markets; `emit` gets each line as soon as it is known."""
    market_set = load_bench_markets(settings)  # first: bad data fails in a second, before TFF loads

    from tff_fedmm.federated.context import install_execution_context

    install_execution_context()  # before anything touches TFF: our owned worker, never TFF's own

    from tff_fedmm.api import make_config
    from tff_fedmm.bench import codebook, memory, scaling, throughput, timing, upload
    from tff_fedmm.bench.workload import FedAvgCTR, FedMMCTR, make_workload

    result = BenchResult()

    def say(line: str) -> None:
        result.lines.append(line)
        emit(line)

    markets = len(market_set.names)
    say(f"bench data={market_set.source} markets={','.join(market_set.names)} backbone={settings.backbone} "
        f"(wall-clock timings; approximate on a shared machine)")
    work = make_workload(market_set, settings.backbone, settings.seed)

    # The figure is algorithm against algorithm on the same data and model: FedAvg also trains
    # FedMM's coded CTR model. FedAvg's own (ID-only) model, as the comparison runs it, is reported too.
    runners = [FedMMCTR(work), FedAvgCTR(work, coded=True), FedAvgCTR(work)]
    fedmm_ctr, fedavg_ctr = runners[0], runners[2]
    ctr = timing.time_rounds(runners, settings.warmup, settings.rounds)
    result.ctr_seconds = {"fedmm": ctr[0].median, "fedavg": ctr[1].median, "fedavg_id_model": ctr[2].median}
    say(timing.ratio_line("ctr", ctr[0], ctr[1], settings.warmup, markets))
    say(timing.ratio_line("ctr_as_compared", ctr[0], ctr[2], settings.warmup, markets)
        + " [FedAvg on its ID-only model: FedMM's model has 6 input fields to its 2]")

    keras = throughput.keras_fit_seconds(work, settings.warmup, settings.rounds)
    result.throughput = throughput.throughput(work, ctr[0], keras, settings.warmup)
    say(throughput.throughput_line(result.throughput, work))

    codes_config = make_config(settings.seed).codes
    cb_work = codebook.CodebookWorkload(market_set, codes_config.codebook, codes_config.cf.dim, settings.seed)
    fedmm_cb, fedavg_cb = codebook.FedMMCodebook(cb_work), codebook.FedAvgCodebook(cb_work)
    cb = timing.time_rounds([fedmm_cb, fedavg_cb], settings.warmup, settings.rounds)
    result.codebook_seconds = {"fedmm": cb[0].median, "fedavg": cb[1].median}
    say(timing.ratio_line("codebook", cb[0], cb[1], settings.warmup, markets))

    result.upload = upload.Upload(codebook=upload.upload_bytes(fedmm_cb.process.next),
                                  fedmm_ctr=upload.upload_bytes(fedmm_ctr.process.next),
                                  fedavg_ctr=upload.upload_bytes(fedavg_ctr.process.next))
    say(upload.upload_line(result.upload))
    for ids in upload.VOCABULARIES:
        result.upload_by_ids[ids] = upload.upload_at_vocabulary(work, result.upload.codebook, ids)
        say(upload.vocabulary_line(ids, result.upload_by_ids[ids]))

    if settings.scaling:
        result.scaling = scaling.measure_scaling(settings.scaling, settings.sizes, settings.backbone,
                                                 settings.seed, warmup=1, rounds=settings.scaling_rounds)
        say(scaling.scaling_line(result.scaling))

    if settings.memory_rounds:
        result.memory = memory.watch_pipeline(work, settings.memory_rounds)
        for line in memory.memory_lines(result.memory):
            say(line)
    return result
