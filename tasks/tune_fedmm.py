"""Chooses FedMM's defaults on the VALID split: codebook rule × which CTR layers are federated × level-1 source.

The opt-in `fedavg+share-codes+anchored:W` variants choose anchored mode's pull weight W the same way.

    python tasks/tune_fedmm.py --data ../shared/data/xmarket-electronics --out runs/tune_fedmm

Each variant runs `fedmm` (and the `local` reference once) through `tff_fedmm.api.compare` into
OUT/<variant>/; the table reports, per variant and backbone, the mean over markets of each market's
best validation LogLoss and the validation AUC at that round. The test split is never read here.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

from tff_fedmm.cli_args import Parser, add_data_arguments, add_seed_argument, load_market_set, run_guarded

VARIANTS = {
    "kmeans+share-all": dict(rule="kmeans", share_interaction=True),
    "kmeans+share-codes": dict(rule="kmeans", share_interaction=False),
    "fedavg+share-all": dict(rule="fedavg", share_interaction=True),
    "fedavg+share-codes": dict(rule="fedavg", share_interaction=False),
    "fedavg+share-codes+descriptors": dict(rule="fedavg", share_interaction=False, level1="descriptors"),
    "kmeans+share-codes+descriptors": dict(rule="kmeans", share_interaction=False, level1="descriptors"),
}
DEFAULT_VARIANTS = list(VARIANTS)  # strict mode; the anchored ones below are opt-in
VARIANTS.update({f"fedavg+share-codes+anchored:{w:g}": dict(rule="fedavg", share_interaction=False,
                                                            anchors="public-items", anchor_weight=w)
                 for w in (0.3, 1.0, 3.0)})


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="tune_fedmm", description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    add_seed_argument(parser)
    parser.add_argument("--backbones", default="deepfm,dcnv2")
    parser.add_argument("--variants", default=",".join(DEFAULT_VARIANTS),
                        help=f"from: {', '.join(VARIANTS)} (default: the strict ones)")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--k-global", type=int, default=None, help="global codebook size for every variant")
    parser.add_argument("--k-local", type=int, default=None, help="local codebook size for every variant")
    parser.add_argument("--no-reference", action="store_true", help="skip the `local` reference run")
    parser.add_argument("--out", required=True)
    return run_guarded(lambda: _run(parser.parse_args(argv)))


def _run(args) -> int:
    import pandas as pd

    from tff_fedmm import api
    from tff_fedmm.errors import UsageError
    from tff_fedmm.eval.validation import validation_summary
    from tff_fedmm.pipelines.compare_names import refuse_renamed

    variants = args.variants.split(",")
    refuse_renamed("--variants", "codebook rule", [v.split("+")[0] for v in variants])  # a variant starts with its rule
    if any(v not in VARIANTS for v in variants):
        raise UsageError(f"--variants: expected a comma-separated list from: {', '.join(VARIANTS)}")
    backbones = args.backbones.split(",")
    api.check_choices(["fedmm"], backbones, args.rounds)
    market_set = load_market_set(args)
    rows = []
    runs = [] if args.no_reference else [("local", "local", api.make_config(args.seed, args.rounds, data_seed=args.data_seed))]
    for name in variants:
        base = api.make_config(args.seed, args.rounds, VARIANTS[name]["rule"], data_seed=args.data_seed,
                               level1=VARIANTS[name].get("level1", "encoder"),
                               anchors=VARIANTS[name].get("anchors", "none"),
                               anchor_weight=VARIANTS[name].get("anchor_weight", 1.0))
        rq = base.codes.codebook.rqvae
        rq = replace(rq, k_global=args.k_global or rq.k_global, k_local=args.k_local or rq.k_local)
        base = replace(base, codes=replace(base.codes, codebook=replace(base.codes.codebook, rqvae=rq)))
        runs.append((name, "fedmm", replace(base, ctr=replace(base.ctr,
                                                                share_interaction=VARIANTS[name]["share_interaction"]))))
    for name, method, config in runs:
        result = api.compare(market_set, [method], backbones, config, out=Path(args.out) / name, progress=False)
        summary = validation_summary(result.history).reset_index().assign(variant=name)
        rows.append(summary)
        print(summary.round(4).to_string(index=False), flush=True)
    table = pd.concat(rows, ignore_index=True)[["variant", "backbone", "valid_logloss", "valid_auc"]]
    print(table.round(4).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
