"""FedMM's test AUC against the ε of a DP global-codebook aggregation, over several noise levels.

    python tasks/dp_tradeoff.py --data ../shared/data/xmarket-electronics --out runs/dp

Runs `fedmm` on one backbone once without DP and once per noise multiplier Z (fixed L2 clip `--dp-clip`,
the same seed and data), each as `fedmm compare --methods fedmm --dp-noise-multiplier Z --dp-clip C` in a
process of its own (run folders OUT/no_dp, OUT/z<Z>); `global_usage` is the mean over markets of the fraction of global codes in use. ε is per market at `--dp-delta` over the codebook rounds run (see `tff_fedmm.federated.privacy`:
it covers the global-codebook aggregation; the CTR stage's shared code embeddings are not noised).
Writes OUT/dp_tradeoff.csv (rewritten after every run), OUT/dp_tradeoff.png and OUT/config.json, and
prints the table as Markdown.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time

from tff_fedmm.cli_args import Parser, add_data_arguments, add_seed_argument, load_market_set, run_guarded
from tff_fedmm.errors import UsageError
from tff_fedmm.pipelines.compare_names import BACKBONES

COLUMNS = ["noise_multiplier", "clip", "epsilon", "delta", "rounds", "auc_mean", "auc_weighted_mean",
           "logloss_mean", "global_usage", "seconds"]


def _noise_levels(text: str) -> list[float]:
    try:
        levels = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        levels = []
    if not levels or min(levels) <= 0:
        raise argparse.ArgumentTypeError(f"expected comma-separated positive noise multipliers such as 0.5,1,2, "
                                         f"got {text!r}")
    return levels


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="dp_tradeoff", description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    add_seed_argument(parser)
    parser.add_argument("--noise", type=_noise_levels, default=[0.1, 0.3, 1.0, 3.0], metavar="Z,Z,...",
                        help="noise multipliers (default 0.1,0.3,1,3); a run without DP is always added")
    parser.add_argument("--dp-clip", type=float, default=0.3, help="fixed L2 clip of a market's update (0.3)")
    parser.add_argument("--dp-delta", type=float, default=1e-5, help="delta of the reported epsilon (1e-5)")
    parser.add_argument("--backbone", default="deepfm", help="CTR backbone: deepfm or dcnv2 (default deepfm)")
    parser.add_argument("--rounds", type=int, default=None, help="federated rounds per stage (default 20)")
    parser.add_argument("--out", required=True, help="folder for dp_tradeoff.csv/.png and config.json")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return run_guarded(lambda: _run(parser.parse_args(argv)))


def summary_row(results, weights: dict[str, int]) -> dict:
    """Mean and interaction-weighted mean test AUC, mean LogLoss, of one method's per-market results."""
    from tff_fedmm.eval.metrics import summarize_markets

    summary = summarize_markets(results[["market", "auc", "logloss"]], weights).set_index("market")
    return {"auc_mean": float(summary.loc["mean", "auc"]), "auc_weighted_mean": float(summary.loc["weighted_mean", "auc"]),
            "logloss_mean": float(summary.loc["mean", "logloss"])}


def markdown(table) -> str:
    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(f"{v:.4g}" if isinstance(v, float) else str(v) for v in row) + " |"
              for row in table.itertuples(index=False)]
    return "\n".join(lines)


def _compare_in_fresh_process(args: argparse.Namespace, z: float | None, folder):
    """`fedmm compare --methods fedmm ...` in its own process, its run folder read back.

    One process per noise level, so that each level's result is exactly what `fedmm compare` gives alone:
    a FedMM result once depended on what ran before it in the same process (TensorFlow's global seed
    entered the codebook stage's shuffles; fixed in `codes_stage`, see BUILD_NOTES "Fixed: a FedMM result
    depended on what ran before it"), and separate processes keep any such coupling out of the table.
    """
    import subprocess

    from tff_fedmm.api import read_run

    command = [sys.executable, "-m", "tff_fedmm", "compare", "--methods", "fedmm", "--backbones", args.backbone,
               "--data", args.data, "--seed", str(args.seed), "--data-seed", str(args.data_seed), "--out", str(folder), "--quiet"]
    command += ["--markets", ",".join(args.markets)] if args.markets else []
    command += ["--rounds", str(args.rounds)] if args.rounds else []
    if z is not None:
        # Reproducible noise (not private) so the table can be regenerated; secret noise has the same law.
        command += ["--dp-noise-multiplier", str(z), "--dp-clip", str(args.dp_clip), "--dp-delta", str(args.dp_delta),
                    "--dp-noise-seed", str(args.seed)]
    done = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr[-3000:]}")
    return read_run(folder)


def _run(args: argparse.Namespace) -> int:
    import pandas as pd

    from tff_fedmm import api
    from tff_fedmm.plots import write_privacy_tradeoff
    from tff_fedmm.run_folder import mark_complete, open_run_folder, write_csv, write_json

    if args.backbone not in BACKBONES:
        raise UsageError(f"--backbone: expected one of {', '.join(BACKBONES)}, got {args.backbone!r}")
    if args.dp_clip <= 0:
        raise UsageError(f"--dp-clip: expected a positive L2 norm, got {args.dp_clip}")
    api.check_choices(["fedmm"], [args.backbone], args.rounds)
    market_set = load_market_set(args)
    weights = api.interactions(market_set)
    out = open_run_folder(args.out)
    write_json(out, "config.json", {"task": "dp_tradeoff", "data": market_set.source, "markets": market_set.names,
                                    "backbone": args.backbone, "seed": args.seed, "rounds": args.rounds,
                                    "noise": args.noise, "clip": args.dp_clip, "delta": args.dp_delta,
                                    "versions": api.versions()})
    rows = []
    for i, z in enumerate([None, *args.noise], 1):
        if not args.quiet:
            print(f"[{i}/{len(args.noise) + 1}] noise multiplier {z or 'none (no DP)'}", file=sys.stderr, flush=True)
        started = time.monotonic()
        run = _compare_in_fresh_process(args, z, out / ("no_dp" if z is None else f"z{z:g}"))
        privacy = run.config["privacy"].get("federated", {})
        rows.append({"noise_multiplier": z or 0.0, "clip": args.dp_clip if z else float("nan"),
                     "epsilon": privacy.get("epsilon", float("inf")), "delta": args.dp_delta,
                     "rounds": privacy.get("rounds", 0), **summary_row(run.results, weights),
                     "global_usage": float(run.codebooks["global_usage"].mean()),
                     "seconds": round(time.monotonic() - started, 1)})
        write_csv(out, "dp_tradeoff.csv", pd.DataFrame(rows, columns=COLUMNS))
    table = pd.DataFrame(rows, columns=COLUMNS)
    write_privacy_tradeoff(table, out / "dp_tradeoff.png")
    mark_complete(out)
    print(markdown(table))
    return 0


if __name__ == "__main__":
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="dp_tradeoff: %(levelname)s: %(message)s")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    sys.exit(main())
