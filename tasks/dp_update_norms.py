"""The L2 norms of each DP stage's per-market updates: what the clip of each stage is chosen from.

    python tasks/dp_update_norms.py --data synthetic --rounds 5

Runs FedMM (with `--cf-tower`), fedper and FedAvg without DP through the real pipelines and, before
every federated round, lets each market present run that round alone from the same server state: with
one market the server's new shared weights are the old ones plus exactly that market's update (plain
mean, server step 1.0), so the norm of the difference is the norm a DP clip would see. Prints the median
and 90th percentile per stage over markets and rounds (`--dp-clip` is the codebook's, `--dp-ctr-clip` the
CTR stages', `--dp-cf-clip` the CF tower's).
"""

from __future__ import annotations

import argparse
from collections import defaultdict
from unittest import mock

import numpy as np

from tff_fedmm.cli_args import Parser, add_data_arguments, add_seed_argument, load_market_set, run_guarded


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="dp_update_norms", description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    add_seed_argument(parser)
    parser.add_argument("--rounds", type=int, default=5, help="federated rounds per stage (default 5)")
    return run_guarded(lambda: _run(parser.parse_args(argv)))


def _flat(weights) -> np.ndarray:
    import tensorflow as tf

    return np.concatenate([np.ravel(np.asarray(w, np.float64)) for w in tf.nest.flatten(weights)])


def _probing(norms: list[float], run_present):
    """`run_present` that first runs each present market alone from the same state and records its norm."""
    def probe(next_fn, server, clients, data_fn, present):
        before = _flat(server.global_model_weights)
        for i in present:
            alone, _, _ = run_present(next_fn, server, clients, data_fn, [i])
            norms.append(float(np.linalg.norm(_flat(alone.global_model_weights) - before)))
        return run_present(next_fn, server, clients, data_fn, present)

    return probe


class _ProbingFedAvg:
    """TFF's FedAvg process whose `next` first runs each market alone and records its update's norm."""

    def __init__(self, process, norms: list[float]):
        self._process, self._norms = process, norms

    def __getattr__(self, name):
        return getattr(self._process, name)

    def next(self, server, data):
        before = _flat(self._process.get_model_weights(server).trainable)
        for dataset in data:
            alone = self._process.next(server, [dataset]).state
            self._norms.append(float(np.linalg.norm(_flat(self._process.get_model_weights(alone).trainable) - before)))
        return self._process.next(server, data)


def _run(args: argparse.Namespace) -> int:
    from tff_fedmm import api
    from tff_fedmm.federated.context import install_execution_context
    from tff_fedmm.federated.participation import run_present
    from tff_fedmm.pipelines import cf_stage, codes_stage, ctr_fedavg, ctr_stage

    api.check_choices(["fedmm"], ["deepfm"], args.rounds)
    market_set = load_market_set(args)
    install_execution_context(None)
    config = api.make_config(args.seed, args.rounds, cf_tower=True, data_seed=args.data_seed)
    norms: dict[str, list[float]] = defaultdict(list)
    build_fedavg, audit_fedavg = ctr_fedavg.build_fedavg_process, ctr_fedavg.audit_fedavg
    for method in ("fedmm", "fedper", "fedavg"):
        with mock.patch.object(cf_stage, "run_present", _probing(norms["CF tower (--dp-cf-clip)"], run_present)), \
                mock.patch.object(codes_stage, "run_present", _probing(norms["codebook (--dp-clip)"], run_present)), \
                mock.patch.object(ctr_stage, "run_present", _probing(norms[f"CTR {method} (--dp-ctr-clip)"], run_present)), \
                mock.patch.object(ctr_fedavg, "build_fedavg_process", lambda *a: _ProbingFedAvg(
                    build_fedavg(*a), norms["CTR fedavg (--dp-ctr-clip)"])), \
                mock.patch.object(ctr_fedavg, "audit_fedavg", lambda process, *a: audit_fedavg(process._process, *a)):
            api.compare(market_set, [method], ["deepfm"], config, progress=False)
    print(f"L2 norm of one market's update per round ({market_set.source}: {', '.join(market_set.names)}; "
          f"{args.rounds} rounds, seed {args.seed})")
    print("| stage | updates | median | 90th percentile | max |\n|---|---|---|---|---|")
    for stage, values in norms.items():
        if values:
            print(f"| {stage} | {len(values)} | {np.median(values):.3g} | {np.percentile(values, 90):.3g} | "
                  f"{max(values):.3g} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
