"""The effect of the training-negative leak fixed in issue #11, measured on the same seeds and candidates.

    python tasks/leak_effect.py --data ../shared/data/xmarket-electronics --methods local,fedper \\
        --backbones deepfm --seeds 0 --out runs/leak

Runs the methods twice: as the library does now (training negatives avoid only the user's train
positives) and as it did before, which is also how the published XMarket code samples (training
negatives also avoid the user's held-out valid/test items, so the model learns by their absence which
items are held out). Everything else is shared: training seeds, data seed, evaluation candidates. Writes
OUT/leak-free (unless `--leak-free RUN_DIR` reuses a finished run of the same settings) and OUT/leaky run
folders and OUT/leak_effect.csv: per method × backbone, each version's mean over markets and seeds, and
leaky − leak-free paired by seed with its 95% t-interval.
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

from tff_fedmm.cli_args import Parser, add_data_arguments, exit_at_once_on_ctrl_c, load_market_set, run_guarded

METRICS = ("auc", "ndcg@10", "ndcg@10_full")


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="leak_effect", description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    parser.add_argument("--methods", default="local,fedper", help="comma-separated methods (default local,fedper)")
    parser.add_argument("--backbones", default="deepfm", help="comma-separated backbones (default deepfm)")
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds (default 0)")
    parser.add_argument("--rounds", type=int, default=None, help="rounds / epochs per stage (default 20)")
    parser.add_argument("--jobs", type=int, default=1, help="seeds run at once, one process each (default 1)")
    parser.add_argument("--leak-free", default=None, metavar="RUN_DIR",
                        help="take the leak-free side from this finished run folder (e.g. the 5-seed comparison) "
                             "instead of rerunning it; it must hold these seeds and methods, made with the same "
                             "markets and settings")
    parser.add_argument("--out", required=True, help="folder for the run folders and leak_effect.csv")
    with exit_at_once_on_ctrl_c():  # seed processes (--jobs) end with this one
        return run_guarded(lambda: _run(parser.parse_args(argv)))


def leaky(market_set):
    """The markets with the old training sampler: train negatives avoid every split's positives."""
    markets = {name: replace(m, train_interacted=m.interacted) for name, m in market_set.markets.items()}
    return replace(market_set, markets=markets)


def reused_leak_free(folder: str, market_set, config, seeds: list[int], methods: list[str], backbones: list[str]):
    """The rows of `seeds` × `methods` × `backbones` of a finished run folder, after checking that it was made
    on the same markets with the same settings (so its rows are what the leak-free run here would give)."""
    import json
    from dataclasses import asdict

    from tff_fedmm import api
    from tff_fedmm.errors import UsageError
    from tff_fedmm.pipelines.compare import with_training_seed

    run = api.read_run(folder)
    recorded = run.config
    if recorded.get("interactions") != api.interactions(market_set):
        raise UsageError(f"--leak-free: {folder} was made on other markets (config.json 'interactions' differ)")
    same_seed = with_training_seed(config, recorded.get("seeds", [None])[0])  # the config records its first seed
    if recorded.get("config") != json.loads(json.dumps(asdict(same_seed))):
        raise UsageError(f"--leak-free: {folder} was made with other settings (config.json 'config' differs)")
    rows = run.results[run.results.seed.isin(seeds) & run.results.method.isin(methods)
                       & run.results.backbone.isin(backbones)]
    found = set(zip(rows.seed, rows.method, rows.backbone))
    missing = [(s, m, b) for s in seeds for m in methods for b in backbones if (s, m, b) not in found]
    if missing:
        raise UsageError(f"--leak-free: {folder} has no rows for (seed, method, backbone) {missing[:3]}")
    return rows


def _run(args: argparse.Namespace) -> int:
    import pandas as pd

    from tff_fedmm import api
    from tff_fedmm.eval.seed_stats import per_seed, t_interval
    from tff_fedmm.errors import UsageError
    from tff_fedmm.run_folder import write_csv

    methods, backbones = args.methods.split(","), args.backbones.split(",")
    api.check_choices(methods, backbones, args.rounds)
    try:
        seeds = [int(s) for s in args.seeds.split(",")]
    except ValueError:
        raise UsageError(f"--seeds: expected comma-separated integers, got {args.seeds!r}") from None
    market_set = load_market_set(args)
    config = api.make_config(seeds[0], args.rounds, data_seed=args.data_seed)
    out = Path(args.out)
    results = {"leak-free": reused_leak_free(args.leak_free, market_set, config, seeds, methods, backbones)
               if args.leak_free else None}
    for name, markets in (("leak-free", market_set), ("leaky", leaky(market_set))):
        if results.get(name) is None:
            results[name] = api.compare(markets, methods, backbones, config, seeds=seeds, out=out / name,
                                        progress=False, jobs=args.jobs).results
    rows = []
    for metric in METRICS:
        free, leak = (per_seed(results[n], metric).query("market == 'mean'") for n in ("leak-free", "leaky"))
        paired = free.merge(leak, on=["seed", "method", "backbone"], suffixes=("_free", "_leaky"))
        for (method, backbone), g in paired.groupby(["method", "backbone"], sort=False):
            mean, half, n = t_interval(g[f"{metric}_leaky"] - g[f"{metric}_free"])
            rows.append({"metric": metric, "method": method, "backbone": backbone, "seeds": n,
                         "leak_free": g[f"{metric}_free"].mean(), "leaky": g[f"{metric}_leaky"].mean(),
                         "leaky_minus_free": mean, "ci": half})
    table = pd.DataFrame(rows)
    write_csv(out, "leak_effect.csv", table)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
    return 0


if __name__ == "__main__":
    sys.exit(main())
