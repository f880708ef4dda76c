"""Each market alone: CTR without codes (`local`) and with its own RQ-VAE codes (`local+codes`).

    python tasks/local_baseline.py --data ../shared/data/xmarket-electronics --out runs/local

Writes OUT/results.csv with the columns method,backbone,market, every metric (auc ... auc_held_out) and
schema_version, and OUT/config.json (`tff_fedmm.run_schema`); no exports.
"""

from __future__ import annotations

import argparse
import sys

from tff_fedmm.cli_args import Parser, add_data_arguments, add_seed_argument, load_market_set, run_guarded
from tff_fedmm.errors import UsageError


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="local_baseline", description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    add_seed_argument(parser)
    parser.add_argument("--backbone", default="deepfm,dcnv2", help="deepfm, dcnv2 or both, comma-separated")
    parser.add_argument("--rounds", type=int, default=None,
                        help="codebook rounds and CTR epochs per market (default 20)")
    parser.add_argument("--out", required=True, help="run folder for results.csv")
    return run_guarded(lambda: _run(parser.parse_args(argv)))


def _run(args: argparse.Namespace) -> int:
    from tff_fedmm.api import check_choices, interactions, make_config
    from tff_fedmm.pipelines.compare_names import BACKBONES
    from tff_fedmm.run_folder import mark_complete, open_run_folder, write_csv, write_json
    from tff_fedmm.run_schema import SCHEMA_VERSION, with_schema_version

    backbones = [b for b in args.backbone.split(",") if b]
    if not backbones or any(b not in BACKBONES for b in backbones):
        raise UsageError(f"--backbone: expected deepfm, dcnv2 or both comma-separated, got {args.backbone!r}")
    check_choices(["local"], backbones, args.rounds)
    market_set = load_market_set(args)
    out = open_run_folder(args.out)

    from tff_fedmm.federated.context import install_execution_context
    from tff_fedmm.pipelines.local import LocalPipelineConfig, run_local
    from tff_fedmm.report import format_table

    install_execution_context()
    config = make_config(args.seed, args.rounds, data_seed=args.data_seed)
    results = run_local(market_set, backbones, LocalPipelineConfig(codes=config.codes, ctr=config.ctr,
                                                                     tuned=config.tuned))
    write_csv(out, "results.csv", with_schema_version(results))
    write_json(out, "config.json", {"schema_version": SCHEMA_VERSION, "data": market_set.source,
                                    "interactions": interactions(market_set), "seed": args.seed,
                                    "rounds": args.rounds})
    mark_complete(out)
    print(format_table(results, interactions(market_set)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
