"""`fedmm bench`: FedMM's cost against TFF's FedAvg and plain Keras, measured in one run, one line per figure:
the CTR stage's round time, throughput, upload bytes, scaling in markets and memory over rounds (`ctr`), the
codebook stage's round time (`codebook`), single training steps of three stages against vocabulary (`steps`).

TensorFlow is imported only once `run_bench` runs: `cli` imports this package (through `command`) on every
`fedmm` call, and `fedmm --help` or a bad flag must not wait for it (`python -c "import tff_fedmm.cli"`
0.65 s; with `tff_fedmm.bench.ctr` and `.codebook` 74 s, on the 2-core machine under load).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from functools import partial


@dataclass(frozen=True)
class BenchSettings:
    data: str = "synthetic"
    markets: list[str] | None = None
    data_seed: int = 0  # the synthetic markets and the CTR pipeline's evaluation candidates
    seed: int = 0  # models, random codes and inputs, round datasets
    backbone: str = "deepfm"
    warmup: int = 2  # untimed rounds first: a process's first `next` compiles in the worker
    rounds: int = 5  # timed rounds per process (and 5x as many single steps per stage); figures are medians
    scaling: tuple[int, ...] = (5, 10, 20, 50)  # () skips the scaling figure
    scaling_rounds: int = 3
    memory_rounds: int = 50  # 0 skips the memory figure
    synthetic_markets: int = 4  # markets of the default synthetic data; scaling uses the same sizes
    users_per_market: int = 400
    items_per_market: int = 300
    interactions_per_user: int = 12


def quick_settings(**overrides) -> BenchSettings:
    """Small enough for a test on 2 shared cores (160 items: ranking evaluation draws 99 negatives per user)."""
    return BenchSettings(**{"warmup": 1, "rounds": 2, "scaling": (2, 3), "scaling_rounds": 1, "memory_rounds": 4,
                            "synthetic_markets": 2, "users_per_market": 50, "items_per_market": 160,
                            "interactions_per_user": 6, **overrides})


def run_bench(settings: BenchSettings, emit: Callable[[str], None] = print) -> list[str]:
    """Every figure on the same markets; `emit` gets each line as soon as it is known; returns them all."""
    lines = []
    for line in _figures(settings):
        lines.append(line)
        emit(line)
    return lines


def _figures(settings: BenchSettings) -> Iterator[str]:
    from tff_fedmm.data.markets import SYNTHETIC, load_markets
    from tff_fedmm.data.synthetic import SyntheticConfig

    def synthetic(markets: int) -> SyntheticConfig:
        return SyntheticConfig(num_markets=markets, users_per_market=settings.users_per_market,
                               items_per_market=settings.items_per_market,
                               interactions_per_user=settings.interactions_per_user, seed=settings.data_seed)

    # First: bad data fails in a second, before TFF loads.
    market_set = load_markets(settings.data, settings.markets,
                              synthetic(settings.synthetic_markets) if settings.data == SYNTHETIC else None)

    from tff_fedmm.federated.context import install_execution_context

    install_execution_context()  # before anything touches TFF: our owned worker, never TFF's own

    from tff_fedmm.api import make_config
    from tff_fedmm.bench import codebook, ctr, steps
    from tff_fedmm.bench.measure import ratio_line, time_rounds

    markets, warmup, rounds = len(market_set.names), settings.warmup, settings.rounds
    yield (f"bench data={market_set.source} markets={','.join(market_set.names)} backbone={settings.backbone} "
           f"(wall-clock timings; approximate on a shared machine)")
    work = ctr.make_workload(market_set, settings.backbone, settings.seed, settings.data_seed)
    # The headline is algorithm against algorithm on the same data and model: FedAvg also trains FedMM's
    # coded CTR model. FedAvg on its own (ID-only) model, as the comparison runs it, is reported too.
    runners = [ctr.fedmm_runner(work), ctr.fedavg_runner(work, coded=True), ctr.fedavg_runner(work)]
    fedmm, fedavg_coded, fedavg = time_rounds(runners, warmup, rounds)
    yield ratio_line("ctr", fedmm, fedavg_coded, warmup, markets)
    yield (ratio_line("ctr_as_compared", fedmm, fedavg, warmup, markets)
           + " [FedAvg on its ID-only model: FedMM's model has 6 input fields to its 2]")
    yield ctr.throughput_line(work, fedmm, time_rounds([ctr.keras_fit_runner(work)], warmup, rounds)[0], warmup)

    codes = make_config(settings.seed, data_seed=settings.data_seed).codes
    cb_runners = codebook.codebook_runners(market_set, codes, settings.seed)
    yield ratio_line("codebook", *time_rounds(cb_runners, warmup, rounds), warmup, markets)

    yield from ctr.upload_lines(work, cb_runners[0].process, runners[0].process, runners[2].process)
    for stage, make in (("cf", partial(steps.cf_step, codes.cf)), ("rqvae", partial(steps.rqvae_step, codes.codebook)),
                        ("ctr", partial(steps.ctr_step, work))):
        yield steps.step_time_line(stage, make, warmup, 5 * rounds, settings.seed)

    if settings.scaling:
        full = load_markets(SYNTHETIC, None, synthetic(max(settings.scaling)))
        yield ctr.scaling_line(ctr.make_workload(full, settings.backbone, settings.seed, settings.data_seed,
                                                 settings.users_per_market, settings.items_per_market),
                               settings.scaling, warmup=1, rounds=settings.scaling_rounds)
    if settings.memory_rounds:
        yield from ctr.memory_lines(work, settings.memory_rounds)
