"""Training throughput: FedMM's federated CTR round against plain Keras `fit` on the same examples.

The federated side is one `process.next` over all markets (its round times come from the round-time
comparison, the same rounds). The Keras side trains one model per market — the same architecture as a
FedMM market's model (`workload.fedmm_model_fn`), same optimizer and rate, batch size and one epoch per
round, as each market's local step in FedMM — and is timed over the same rounds' datasets. Keras models
are compiled once and warmed up first, so the first `fit`'s tracing is excluded as TFF's compilation is.
Per round: examples / seconds; the figure is the median over timed rounds.
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass

import tensorflow as tf

from tff_fedmm.bench.timing import RoundTimes, measure
from tff_fedmm.bench.workload import CTRWorkload


@dataclass(frozen=True)
class Throughput:
    federated: float  # examples per wall second
    keras_fit: float
    federated_cpu: float  # examples per CPU second (federated: Python + worker)
    keras_fit_cpu: float

    @property
    def ratio(self) -> float:
        return self.federated / self.keras_fit

    @property
    def cpu_ratio(self) -> float:
        return self.federated_cpu / self.keras_fit_cpu


def keras_fit_seconds(workload: CTRWorkload, warmup: int, rounds: int) -> RoundTimes:
    """Seconds per round of `fit` (1 epoch) on every market's model in turn, timed rounds only."""
    train = workload.config.train
    models = []
    for index in range(len(workload.market_set.names)):
        tf.keras.utils.set_random_seed(train.seed * 1000 + index)
        model = workload.fedmm_model_fn()
        model.compile(optimizer=tf.keras.optimizers.Adam(train.learning_rate), loss="binary_crossentropy")
        models.append(model)
    kept = []
    for round_num in range(warmup + rounds):
        data = [ds.map(lambda e: (e["x"], e["y"])) for ds in workload.datasets(round_num, True)]
        with measure() as sample:
            for model, ds in zip(models, data):
                model.fit(ds, epochs=1, verbose=0)
        if round_num >= warmup:
            kept.append(sample)
    return RoundTimes(tuple(kept))


def throughput(workload: CTRWorkload, federated: RoundTimes, keras: RoundTimes, warmup: int) -> Throughput:
    """Median examples/s of both, each timed round r paired with round r's example count."""
    def rate(times: RoundTimes, cpu: bool = False) -> float:
        return statistics.median(workload.examples(warmup + i) / (s.cpu if cpu else s.wall)
                                 for i, s in enumerate(times.samples))

    return Throughput(federated=rate(federated), keras_fit=rate(keras),
                      federated_cpu=rate(federated, cpu=True), keras_fit_cpu=rate(keras, cpu=True))


def throughput_line(result: Throughput, workload: CTRWorkload) -> str:
    return (f"throughput_ratio federated/keras_fit = {result.ratio:.3f} "
            f"(examples/s: federated {result.federated:.0f}, keras_fit {result.keras_fit:.0f}; "
            f"per cpu s: federated {result.federated_cpu:.0f}, keras_fit {result.keras_fit_cpu:.0f}, "
            f"ratio {result.cpu_ratio:.3f}; "
            f"{len(workload.market_set.names)} markets, batch {workload.config.train.batch_size}, "
            f"1 epoch per round)")
