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
raised in the caller.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Any


def _start_seed_process(parent: int) -> None:
    from tff_fedmm.federated.workers import die_with_parent

    die_with_parent()
    if os.getppid() != parent:  # the parent died before the death signal was armed
        os._exit(1)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _in_own_context(fn: Callable, args: tuple) -> Any:
    from tff_fedmm.federated.context import install_execution_context

    install_execution_context(None)
    return fn(*args)


def map_in_processes(fn: Callable, calls: Sequence[tuple], jobs: int,
                     on_done: Callable[[], None] = lambda: None) -> list:
    """[fn(*args) for args in calls], up to `jobs` at once in spawned processes, results in call order;
    `on_done()` after each call finishes (a progress bar).

    `fn` must be a module-level function and its arguments picklable (spawn, not fork: TensorFlow's
    threads do not survive a fork)."""
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(max_workers=max(1, min(jobs, len(calls))), mp_context=context,
                               initializer=_start_seed_process, initargs=(os.getpid(),))
    futures = [pool.submit(_in_own_context, fn, args) for args in calls]
    try:
        for future in as_completed(futures):
            future.result()  # the first failure is raised at once
            on_done()
        return [future.result() for future in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
