"""Gives the baselines FedMM's tuning budget on the VALID split: learning rate, embedding size, patience.

    python tasks/tune_baselines.py --data ../shared/data/xmarket-electronics --out runs/tune_baselines

FedMM's defaults were chosen among 4 variants on validation (`tasks/tune_fedmm.py`); here `local`,
`fedper` and `centralized` get 4 variants too, one setting moved from the defaults in each. Every
variant runs through `tff_fedmm.api.compare` into OUT/<variant>/; the table reports, per variant,
method and backbone, the mean over markets of each market's best validation LogLoss and the validation
AUC at that round, and marks each method × backbone's best variant by that LogLoss (a tie goes to the
variant listed first, so to the defaults). The task reads
only the validation history: the test split is never used to choose.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from tff_fedmm.cli_args import Parser, add_data_arguments, add_seed_argument, load_market_set, run_guarded

BASELINES = "local,fedper,centralized"
VARIANTS = {
    "defaults": {},
    "lr-3e-3": {"learning_rate": 3e-3},
    "embed-32": {"embed_dim": 32},
    "patience-10": {"patience": 10},
}


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="tune_baselines", description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    add_seed_argument(parser)
    parser.add_argument("--methods", default=BASELINES, help=f"comma-separated (default {BASELINES})")
    parser.add_argument("--backbones", default="deepfm,dcnv2")
    parser.add_argument("--variants", default=",".join(VARIANTS), help=f"from: {', '.join(VARIANTS)}")
    parser.add_argument("--rounds", type=int, default=None, help="rounds / epochs per stage (default 20)")
    parser.add_argument("--out", required=True)
    return run_guarded(lambda: _run(parser.parse_args(argv)))


def variant_config(base, settings: dict):
    """`base` with one variant's settings for every method (`ctr_stage.with_settings`)."""
    from tff_fedmm.pipelines.ctr_stage import with_settings

    return replace(base, ctr=with_settings(base.ctr, settings))


def _run(args) -> int:
    import pandas as pd

    from tff_fedmm import api
    from tff_fedmm.errors import UsageError
    from tff_fedmm.eval.validation import validation_summary

    variants, methods, backbones = args.variants.split(","), args.methods.split(","), args.backbones.split(",")
    if any(v not in VARIANTS for v in variants):
        raise UsageError(f"--variants: expected a comma-separated list from: {', '.join(VARIANTS)}")
    api.check_choices(methods, backbones, args.rounds)
    market_set = load_market_set(args)
    base = api.make_config(args.seed, args.rounds, data_seed=args.data_seed, tuned={})  # from the shared defaults
    rows = []
    for name in variants:
        result = api.compare(market_set, methods, backbones, variant_config(base, VARIANTS[name]),
                             out=Path(args.out) / name, progress=False)
        summary = validation_summary(result.history).reset_index().assign(variant=name)
        rows.append(summary)
        print(summary.round(4).to_string(index=False), flush=True)
    table = pd.concat(rows, ignore_index=True)[["method", "backbone", "variant", "valid_logloss", "valid_auc"]]
    first_best = table.groupby(["method", "backbone"], sort=False)["valid_logloss"].idxmin()  # ties: earlier variant
    table["chosen"] = ["*" if chosen else "" for chosen in table.index.isin(first_best)]
    print(table.round(4).to_string(index=False))
    chosen = {f"{r.method}/{r.backbone}": VARIANTS[r.variant] for r in table[table.chosen == "*"].itertuples()}
    print("chosen (make_config(tuned=...)):", {k: v for k, v in chosen.items() if v})
    return 0


if __name__ == "__main__":
    sys.exit(main())
