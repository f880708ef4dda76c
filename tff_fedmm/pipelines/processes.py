"""Several training seeds at once, each in a process of its own.

Why: one seed of an XMarket comparison keeps about one of two cores busy (Keras epochs and the driver's
Python are single-threaded; the TFF worker is busy only while a federated round runs), so seeds run side by
side finish a multi-seed comparison in roughly half the wall time (BUILD_NOTES, "The 5-seed XMarket
comparison"). Numbers do not change: every stage seeds itself from (seed, stage, market, round) through
`tff_fedmm.seeding`, so a seed computes the same values in a fresh process as after other seeds in one
(test: the `--jobs 2` run in `test_two_seeds_write_both_and_a_confidence_interval`).

Each process has its own local TFF worker. A process dies with the one that started it (PR_SET_PDEATHSIG,
as the TFF worker does), ignores Ctrl-C (the parent handles it and ends, which takes the processes down),
and writes its checkpoints under the seed's own names, so `--resume` works as for seeds run in turn. If a
seed fails, no new seed starts; seeds already running finish (and are checkpointed), then the error is
raised in the caller. The same holds for a KeyboardInterrupt in a notebook (the CLI instead exits at once
on Ctrl-C, which ends the seed processes with it).
"""

from __future__ import annotations

import itertools
import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from typing import Any

from tff_fedmm.federated.context import install_execution_context
from tff_fedmm.federated.workers import die_with_parent


def _start_seed_process(parent: int) -> None:
    die_with_parent()
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _in_own_context(fn: Callable, args: tuple) -> Any:
    install_execution_context(None)
    return fn(*args)


def map_in_processes(fn: Callable, calls: Sequence[tuple], jobs: int,
                     on_done: Callable[[], None] = lambda: None) -> list:
    """[fn(*args) for args in calls], up to `jobs` at once in spawned processes, results in call order;
    `on_done()` after each call finishes (a progress bar).

    `fn` must be a module-level function and its arguments picklable (spawn, not fork: TensorFlow's
    threads do not survive a fork). A call is handed to the pool only when a process is free (the pool
    would queue ahead), so after a failure no new call starts."""
    context = multiprocessing.get_context("spawn")
    workers = max(1, min(jobs, len(calls)))
    results: dict[int, Any] = {}
    with ProcessPoolExecutor(max_workers=workers, mp_context=context, initializer=_start_seed_process,
                             initargs=(os.getpid(),)) as pool:
        pending = iter(enumerate(calls))
        running = {}
        for index, args in itertools.islice(pending, workers):
            running[pool.submit(_in_own_context, fn, args)] = index
        while running:
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                results[running.pop(future)] = future.result()  # a failure: raised once the running calls end
                on_done()
                for index, args in itertools.islice(pending, 1):
                    running[pool.submit(_in_own_context, fn, args)] = index
    return [results[i] for i in range(len(calls))]
