"""Chooses the CF stage on the VALID split: MF vs shared-tower scorer, BCE vs BPR, epochs.

    python tasks/tune_cf.py --data ../shared/data/xmarket-electronics --markets de,fr,jp

Prints one line per market × variant with valid AUC / LogLoss / HR@10 / nDCG@10; never reads test.
"""

from __future__ import annotations

import sys
from dataclasses import replace

from tff_fedmm.cli_args import Parser, add_data_arguments, add_seed_argument, load_market_set, run_guarded
from tff_fedmm.errors import UsageError

VARIANTS = {
    "mf-bce-20": dict(tower=False, loss="bce", epochs=20),
    "mf-bce-10": dict(tower=False, loss="bce", epochs=10),
    "mf-bpr-20": dict(tower=False, loss="bpr", epochs=20),
    "tower-bce-20": dict(tower=True, loss="bce", epochs=20),
}


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="tune_cf", description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    add_seed_argument(parser)
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"from: {', '.join(VARIANTS)}")
    return run_guarded(lambda: _run(parser.parse_args(argv)))


def _run(args) -> int:
    import pandas as pd

    from tff_fedmm.eval.evaluate import evaluate_market
    from tff_fedmm.models.cf import CFConfig
    from tff_fedmm.training.cf import train_cf

    variants = args.variants.split(",")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise UsageError(f"--variants: unknown {unknown}; expected a comma-separated list from: {', '.join(VARIANTS)}")
    market_set = load_market_set(args)
    rows = []
    for variant in variants:
        config = replace(CFConfig(seed=args.seed), **VARIANTS[variant])
        for name, market in market_set.markets.items():
            metrics = evaluate_market(train_cf(market, config), market, "valid", data_seed=args.data_seed)
            rows.append({"variant": variant, "market": name, **metrics})
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    print(table.groupby("variant", sort=False)[["auc", "logloss", "hr@10", "ndcg@10"]].mean().round(4).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
