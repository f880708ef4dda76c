"""Training throughput: FedMM's federated CTR rounds against plain Keras `fit` on the same examples.

The federated rounds are the CTR round-time comparison's. Keras trains one model per market, as each market's
local step in FedMM does: same architecture, optimizer, rate and batch size, one epoch per round, the same
rounds' datasets, compiled once and warmed up as the processes are (the first `fit` traces). Figures:
median examples per second over the timed rounds.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import tensorflow as tf

from tff_fedmm.bench.ctr import CTRWorkload
from tff_fedmm.bench.timing import Runner, Sample, time_rounds


def _fit_each(_, models: list[tf.keras.Model], datasets: list[tf.data.Dataset]) -> list[tf.keras.Model]:
    for model, ds in zip(models, datasets):
        model.fit(ds, epochs=1, verbose=0)
    return models


def keras_fit_samples(work: CTRWorkload, warmup: int, rounds: int) -> list[Sample]:
    train = work.config.train
    models = []
    for index in range(len(work.market_set.names)):
        tf.keras.utils.set_random_seed(train.seed * 1000 + index)
        models.append(work.model_fn()())
        models[-1].compile(optimizer=tf.keras.optimizers.Adam(train.learning_rate), loss="binary_crossentropy")
    data = lambda r: [ds.map(lambda e: (e["x"], e["y"])) for ds in work.datasets(r)]  # noqa: E731
    return time_rounds([Runner(None, models, data, _fit_each)], warmup, rounds)[0]


def throughput_line(work: CTRWorkload, federated: Sequence[Sample], keras: Sequence[Sample], warmup: int) -> str:
    """Timed round i is paired with round warmup+i's example count."""
    def rate(samples: Sequence[Sample], cpu: bool = False) -> float:
        return statistics.median(work.examples(warmup + i) / (s.cpu if cpu else s.wall) for i, s in enumerate(samples))

    fed, fit, fed_cpu, fit_cpu = rate(federated), rate(keras), rate(federated, True), rate(keras, True)
    return (f"throughput_ratio federated/keras_fit = {fed / fit:.3f} (examples/s: federated {fed:.0f}, "
            f"keras_fit {fit:.0f}; per cpu s: federated {fed_cpu:.0f}, keras_fit {fit_cpu:.0f}, "
            f"ratio {fed_cpu / fit_cpu:.3f}; {len(work.market_set.names)} markets, "
            f"batch {work.config.train.batch_size}, 1 epoch per round)")
