"""Codebook sizes K_global × K_local for `fedmm`, judged on the VALIDATION split only.

    python tasks/ablation_codebook_size.py --data ../shared/data/xmarket-electronics --out runs/ablation_k

For each cell of the grid, FedMM runs on one backbone and reports the mean over markets of the validation
AUC and LogLoss, each market at the round the pipeline selects for it (its lowest validation LogLoss, the
earliest on ties), plus the final codes' mean global and local usage. Test metrics are computed by the
pipeline but never written or printed: pick K here, then measure it once with `fedmm compare`.
Writes OUT/ablation.csv (rewritten after every cell) and OUT/config.json, and prints the table.
"""

from __future__ import annotations

import argparse
import logging
import sys
import time
from dataclasses import replace

from tff_fedmm.cli_args import Parser, add_data_arguments, add_seed_argument, load_market_set, run_guarded
from tff_fedmm.errors import UsageError
from tff_fedmm.eval.validation import selected_rounds
from tff_fedmm.pipelines.compare_names import BACKBONES

COLUMNS = ["k_global", "k_local", "backbone", "selected_rounds", "rounds_run", "valid_auc", "valid_logloss",
           "global_usage", "local_usage", "seconds"]


def _sizes(text: str) -> list[int]:
    try:
        sizes = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        sizes = []
    if not sizes or min(sizes) < 1:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive codebook sizes such as 16,64, got {text!r}")
    return sizes


def main(argv: list[str] | None = None) -> int:
    parser = Parser(prog="ablation_codebook_size", description=__doc__.splitlines()[0])
    add_data_arguments(parser)
    add_seed_argument(parser)
    parser.add_argument("--k-global", type=_sizes, default=[16, 64, 256], metavar="K,K,...",
                        help="global codebook sizes (default 16,64,256)")
    parser.add_argument("--k-local", type=_sizes, default=[8, 32, 128], metavar="K,K,...",
                        help="local codebook sizes (default 8,32,128)")
    parser.add_argument("--backbone", default="deepfm", help="CTR backbone: deepfm or dcnv2 (default deepfm)")
    parser.add_argument("--rounds", type=int, default=None,
                        help="federated rounds per stage (codebook and CTR); default 20")
    parser.add_argument("--out", required=True, help="folder for ablation.csv and config.json")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    return run_guarded(lambda: _run(parser.parse_args(argv)))


def config_for(seed: int, rounds: int | None, k_global: int, k_local: int, data_seed: int = 0):
    """`make_config`'s configuration with the RQ-VAE's codebook sizes replaced (its input_dim, CF dim + 2,
    is unchanged)."""
    from tff_fedmm.api import make_config

    config = make_config(seed, rounds, data_seed=data_seed)
    codebook = config.codes.codebook
    rqvae = replace(codebook.rqvae, k_global=k_global, k_local=k_local)
    return replace(config, codes=replace(config.codes, codebook=replace(codebook, rqvae=rqvae)))


def validation_row(history, codebooks) -> dict:
    """Validation metrics of one `fedmm` run from its `compare` history: every market at its selected
    round (its first round with the lowest validation LogLoss), then the mean over markets."""
    best = selected_rounds(history, by=[])
    row = {"selected_rounds": ";".join(f"{m}:{int(r)}" for m, r in zip(best["market"], best["round"])),
           "rounds_run": int(history["round"].max()),
           "valid_auc": float(best["valid_auc"].mean()), "valid_logloss": float(best["valid_logloss"].mean())}
    for column in ("global_usage", "local_usage"):
        row[column] = float(codebooks[column].mean()) if column in codebooks.columns else float("nan")
    return row


def _run(args: argparse.Namespace) -> int:
    import pandas as pd

    from tff_fedmm import api
    from tff_fedmm.run_folder import mark_complete, open_run_folder, write_csv, write_json

    if args.backbone not in BACKBONES:
        raise UsageError(f"--backbone: expected one of {', '.join(BACKBONES)}, got {args.backbone!r}")
    api.check_choices(["fedmm"], [args.backbone], args.rounds)
    market_set = load_market_set(args)
    out = open_run_folder(args.out)
    cells = [(kg, kl) for kg in args.k_global for kl in args.k_local]
    write_json(out, "config.json", {"task": "ablation_codebook_size", "data": market_set.source,
                                    "markets": market_set.names, "backbone": args.backbone, "seed": args.seed,
                                    "rounds": args.rounds, "cells": cells, "versions": api.versions(),
                                    "selection": "per market: first round with the lowest validation LogLoss"})
    rows = []
    for i, (k_global, k_local) in enumerate(cells, 1):
        if not args.quiet:
            print(f"[{i}/{len(cells)}] K_global={k_global} K_local={k_local}", file=sys.stderr, flush=True)
        started = time.monotonic()
        config = config_for(args.seed, args.rounds, k_global, k_local, args.data_seed)
        result = api.compare(market_set, ["fedmm"], [args.backbone], config, progress=not args.quiet)
        rows.append({"k_global": k_global, "k_local": k_local, "backbone": args.backbone,
                     **validation_row(result.history, result.codebooks),
                     "seconds": round(time.monotonic() - started, 1)})
        write_csv(out, "ablation.csv", pd.DataFrame(rows, columns=COLUMNS))
    mark_complete(out)
    table = pd.DataFrame(rows, columns=COLUMNS)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4f}", formatters={"seconds": "{:.1f}".format}))
    return 0


if __name__ == "__main__":
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="ablation: %(levelname)s: %(message)s")
    logging.getLogger("tensorflow").setLevel(logging.ERROR)
    sys.exit(main())
