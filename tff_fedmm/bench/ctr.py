"""The CTR figures: round time against TFF's FedAvg, throughput against Keras `fit`, upload bytes, scaling in
markets, memory over rounds, all on one workload.

Both processes come from the CTR stage's builders: FedMM's partial FedAvg by `ctr_stage.build_partial` (as
`train_partial` builds it for a method with codes), TFF's FedAvg by `ctr_fedavg.build_fedavg_process`; same
markets, examples per round, backbone, batch size and learning rates. Codes are random at the default
code-book sizes, not learned: a round's cost depends on how many code fields and rows there are, not on which
code a user has. The throughput figure trains one Keras model per market with `fit`, as each market's local
step in FedMM does (same architecture, optimizer, rate, batch, the same rounds' examples, one epoch per round).
"""

from __future__ import annotations

import os
import statistics
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from types import SimpleNamespace

import numpy as np
import tensorflow as tf

from tff_fedmm import progress
from tff_fedmm.api import make_config
from tff_fedmm.bench.measure import (
    VOCABULARIES, LineFit, Runner, Sample, elapsed, fit_line, medians, now, proc_status_mb, stateful_step, time_rounds,
    upload_bytes, worker_pid,
)
from tff_fedmm.codes import MarketCodes
from tff_fedmm.data.markets import MarketSet
from tff_fedmm.pipelines import ctr_stage
from tff_fedmm.pipelines.ctr_fedavg import build_fedavg_process
from tff_fedmm.pipelines.ctr_stage import CodeUse, CTRStageConfig, federated_dataset, model_fn_for


@dataclass(frozen=True, eq=False)
class CTRWorkload:
    market_set: MarketSet
    backbone: str
    config: CTRStageConfig
    k: tuple[int, int]  # (K_global, K_local) of the codes
    use: CodeUse
    users: int  # rows of the ID tables: the largest market's, as the pipeline sizes them
    items: int
    # Round -> datasets: every process and Keras see the very same examples, never built while timed.
    # Independent of `users`/`items`, so `dataclasses.replace` may share it.
    cache: dict = field(default_factory=dict, repr=False)

    def model_fn(self, coded: bool = True):
        """FedMM's model (with codes, interaction layers as the stage config says), or FedAvg's ID-only one."""
        return model_fn_for(self.backbone, self.users, self.items, self.k if coded else (0, 0), self.config,
                            self.config.share_interaction if coded else True)

    def datasets(self, round_num: int, coded: bool = True) -> list[tf.data.Dataset]:
        if (round_num, coded) not in self.cache:
            featurizers = {n: self.use.featurizer(n) if coded else dict for n in self.market_set.names}
            self.cache[round_num, coded] = [federated_dataset(self.market_set, featurizers, self.config, round_num, i)
                                            for i in range(len(self.market_set.names))]
        return self.cache[round_num, coded]

    def examples(self, round_num: int) -> int:
        """Training examples of round `round_num` over all markets (positives + sampled negatives)."""
        return sum(int(ds.reduce(0, lambda n, batch: n + tf.shape(batch["y"])[0])) for ds in self.datasets(round_num))


def make_workload(market_set: MarketSet, backbone: str, seed: int, data_seed: int, users: int | None = None,
                  items: int | None = None) -> CTRWorkload:
    """FedMM's default CTR stage on `market_set`, with uniform random codes of the default code-book sizes."""
    config = make_config(seed, data_seed=data_seed)
    k = (config.codes.codebook.rqvae.k_global, config.codes.codebook.rqvae.k_local)
    rng = np.random.default_rng([seed, 7])
    draw = lambda n, k_: rng.integers(0, k_, n).astype(np.int32)  # noqa: E731
    codes = {name: MarketCodes(user_global=draw(m.num_users, k[0]), user_local=draw(m.num_users, k[1]),
                               item_global=draw(m.num_items, k[0]), item_local=draw(m.num_items, k[1]),
                               errors=np.zeros(3))
             for name, m in market_set.markets.items()}
    largest = market_set.largest_vocabulary
    return CTRWorkload(market_set, backbone, config.ctr, k, CodeUse(codes), users or largest[0], items or largest[1])


def fedmm_runner(work: CTRWorkload) -> Runner:
    """FedMM's CTR process, server and market states as `train_partial` builds them, tables at the workload's size."""
    rounds, state = ctr_stage.build_partial(work.market_set, work.backbone, work.use, work.config, work.k, None, None,
                                            (work.users, work.items))
    return Runner(rounds.process, state, work.datasets, stateful_step)


def fedavg_process(work: CTRWorkload, coded: bool = False):
    """TFF FedAvg on its own ID-only model, or (`coded`) on FedMM's model and examples."""
    return build_fedavg_process(work.model_fn(coded), work.datasets(0, coded)[0].element_spec, work.config.train)


def fedavg_runner(work: CTRWorkload, coded: bool = False) -> Runner:
    process = fedavg_process(work, coded)
    return Runner(process, process.initialize(), lambda r: work.datasets(r, coded))


def _fit_each(_, models: list[tf.keras.Model], datasets: list[tf.data.Dataset]) -> list[tf.keras.Model]:
    for model, ds in zip(models, datasets):
        model.fit(ds, epochs=1, verbose=0)
    return models


def keras_fit_runner(work: CTRWorkload) -> Runner:
    """One Keras model per market, seeded per market as the stage seeds its markets, compiled once."""
    models = []
    for index in range(len(work.market_set.names)):
        tf.keras.utils.set_random_seed(work.config.train.seed * 1000 + index)
        models.append(work.model_fn()())
        models[-1].compile(optimizer=tf.keras.optimizers.Adam(work.config.train.learning_rate),
                           loss="binary_crossentropy")
    return Runner(None, models, lambda r: [ds.map(lambda e: (e["x"], e["y"])) for ds in work.datasets(r)], _fit_each)


def throughput_line(work: CTRWorkload, federated: Sequence[Sample], keras: Sequence[Sample], warmup: int) -> str:
    """Median examples per second; timed round i is paired with round warmup+i's example count."""
    def rate(samples: Sequence[Sample], cpu: bool = False) -> float:
        return statistics.median(work.examples(warmup + i) / (s.cpu if cpu else s.wall) for i, s in enumerate(samples))

    fed, fit, fed_cpu, fit_cpu = rate(federated), rate(keras), rate(federated, True), rate(keras, True)
    return (f"throughput_ratio federated/keras_fit = {fed / fit:.3f} (examples/s: federated {fed:.0f}, "
            f"keras_fit {fit:.0f}; per cpu s: federated {fed_cpu:.0f}, keras_fit {fit_cpu:.0f}, "
            f"ratio {fed_cpu / fit_cpu:.3f}; {len(work.market_set.names)} markets, "
            f"batch {work.config.train.batch_size}, 1 epoch per round)")


def upload_lines(work: CTRWorkload, codebook, fedmm_ctr, fedavg_ctr) -> Iterator[str]:
    """From the processes: FedMM per round is one codebook-stage round plus one CTR-stage round; FedAvg's, its CTR
    round. Then as if every market had `ids` users + items (half each): both CTR processes rebuilt at that
    size, not trained. FedAvg ships every ID embedding row, FedMM none (nor does its codebook round)."""
    codebook_bytes = upload_bytes(codebook.next)

    def line(size: str, fedmm_ctr, fedavg_ctr) -> str:
        ctr, fedavg = upload_bytes(fedmm_ctr.next), upload_bytes(fedavg_ctr.next)
        fedmm = codebook_bytes + ctr
        breakdown = (f" (fedmm = codebook round {codebook_bytes} + ctr round {ctr}; fedavg = FedAvg ctr round; "
                     f"float32 payload + weight + metrics)")
        return (f"upload_bytes_per_market_per_round{size} fedmm = {fedmm} fedavg = {fedavg} "
                f"ratio = {fedavg / fedmm:.2f}{'' if size else breakdown}")

    yield line("", fedmm_ctr, fedavg_ctr)
    for ids in VOCABULARIES:
        sized = replace(work, users=ids // 2, items=ids - ids // 2)
        yield line(f" ids={ids}", fedmm_runner(sized).process, fedavg_process(sized))


def _fit_text(f: LineFit) -> str:
    return (f"least squares {f.slope:.4f} s/market {f.intercept:+.3f} s, r2 = {f.r2:.4f}, "
            f"max deviation from line {100 * f.max_deviation:.1f}%")


def scaling_line(full: CTRWorkload, counts: Sequence[int], warmup: int, rounds: int) -> str:
    """Round time against the number of markets. `full`: the workload on max(counts) synthetic markets of one
    size, its ID tables at the generator's sizes. The generator draws each market from its own seed, so its
    first N markets are the N-market set, and the FedMM process of every N has the same model: only the number
    of clients changes. A least-squares line through (N, seconds) says whether the cost per market is constant
    (slope = seconds per market, R², the largest relative deviation of a point from the line)."""
    per_count = []
    for n in counts:
        markets = replace(full.market_set, markets={m: full.market_set.markets[m] for m in full.market_set.names[:n]})
        runner = fedmm_runner(replace(full, market_set=markets, cache={}))
        per_count.append(medians(time_rounds([runner], warmup, rounds)[0]))
    wall, cpu = [s.wall for s in per_count], [s.cpu for s in per_count]
    return (f"scaling markets={','.join(map(str, counts))} seconds_per_round = {','.join(f'{s:.3f}' for s in wall)} "
            f"({_fit_text(fit_line(counts, wall))}; cpu s per round, python+worker "
            f"{','.join(f'{s:.3f}' for s in cpu)}: {_fit_text(fit_line(counts, cpu))})")


def memory_lines(work: CTRWorkload, rounds: int) -> list[str]:
    """Memory over exactly `rounds` rounds of `ctr_stage.train_partial` itself (per-market validation included,
    early stopping off): a leak that matters is one the pipeline has (per-round models, retracing, datasets),
    not one of a bare `next` loop. A stand-in progress reporter samples after each round, so no pipeline code
    changes: VmRSS, growth = its least-squares slope after the first fifth of the rounds (caches and allocator
    pools fill early), peak = the high-water mark (VmHWM) over the whole bench run; and seconds per round."""
    pids = {"python": os.getpid(), "worker": worker_pid()}
    readings, rss = [now()], {name: [] for name in pids}

    def round_done(**_: float) -> None:
        readings.append(now())
        for name, pid in pids.items():
            rss[name].append(proc_status_mb(pid, "VmRSS"))

    # `train_partial` reports nothing but `round_done`.
    previous, progress._reporter = progress._reporter, SimpleNamespace(round_done=round_done)
    try:
        ctr_stage.train_partial(work.market_set, work.backbone, work.use,
                                replace(work.config, rounds=rounds, round_patience=rounds + 1), work.k)
    finally:
        progress._reporter = previous
    laps = [elapsed(start, end) for start, end in zip(readings, readings[1:])]
    skip = max(1, len(laps) // 5)  # round 1 also carries building the process
    # Without a local worker its VmRSS is NaN: no slope.
    growth = {n: fit_line(range(len(laps) - skip), rss[n][skip:]).slope if pid else float("nan")
              for n, pid in pids.items()}
    per_round, span = medians(laps[skip:]), f"rounds {skip + 1}..{len(laps)}"  # 3 rounds at least: 2 laps
    return [
        (f"memory peak_rss_mb python={proc_status_mb(pids['python'], 'VmHWM'):.1f} "
         f"worker={proc_status_mb(pids['worker'], 'VmHWM'):.1f} (VmHWM over the bench run)"),
        (f"memory growth_mb_per_round python={growth['python']:.3f} worker={growth['worker']:.3f} "
         f"(least-squares slope of VmRSS over {span} of the CTR pipeline, train_partial)"),
        (f"pipeline_round_seconds ctr = {per_round.wall:.3f} (cpu s, python+worker {per_round.cpu:.3f}; "
         f"train_partial round incl. per-market validation, median over {span})"),
    ]
