"""`fedmm compare` (every method you name) and `fedmm run` (the main job: FedMM vs local vs FedAvg)."""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import platform
import time
from dataclasses import asdict, replace

from tff_fedmm.errors import UsageError

log = logging.getLogger("fedmm")
RUN_METHODS = "fedmm,local,fedavg"


def _comma_list(text: str) -> list[str]:
    return [part.strip() for part in text.split(",") if part.strip()]


def add_compare_commands(commands: argparse._SubParsersAction, add_data_arguments) -> None:
    from tff_fedmm.pipelines.compare_names import BACKBONES, METHODS

    compare = commands.add_parser("compare", help="run several methods on the same markets and compare them")
    add_data_arguments(compare)
    compare.add_argument("--methods", type=_comma_list, default=list(METHODS),
                         help=f"comma-separated, from: {', '.join(METHODS)} (default: all)")
    compare.add_argument("--backbones", type=_comma_list, default=list(BACKBONES),
                         help="comma-separated CTR backbones: deepfm, dcnv2 (default: both)")
    _add_common(compare, out_default=None)
    compare.set_defaults(handler=_compare)

    run = commands.add_parser("run", help="the main job: FedMM, local and TFF FedAvg on one backbone")
    add_data_arguments(run)
    run.add_argument("--backbone", default="deepfm", help="CTR backbone: deepfm or dcnv2 (default deepfm)")
    _add_common(run, out_default="runs/latest")
    run.set_defaults(handler=_run)


def _add_common(parser: argparse.ArgumentParser, out_default: str | None) -> None:
    parser.add_argument("--rounds", type=int, default=None,
                        help="federated rounds per stage (and max Keras epochs); default: the config's")
    parser.add_argument("--out", default=out_default, required=out_default is None,
                        help="run folder to write" + (f" (default {out_default})" if out_default else ""))
    parser.add_argument("--codebook-rule", default="usage", choices=("usage", "mean"),
                        help="how the global codebook is aggregated: per-code usage-weighted means of assigned "
                             "latents (default) or the example-weighted mean of the markets' codebooks")
    parser.add_argument("--cf-tower", action="store_true",
                        help="score CF with a shared interaction tower, federated across markets (embeddings "
                             "stay private) so the markets' CF spaces align")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last checkpoint (same data and flags)")


def _check(methods: list[str], backbones: list[str], rounds: int | None) -> None:
    from tff_fedmm.pipelines.compare_names import BACKBONES, METHODS

    for flag, values, allowed in (("--methods", methods, METHODS), ("--backbones", backbones, BACKBONES)):
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise UsageError(f"{flag}: unknown {', '.join(map(repr, bad)) or 'empty list'}; "
                             f"expected a comma-separated list from: {', '.join(allowed)}")
    if rounds is not None and rounds <= 0:
        raise UsageError(f"--rounds: expected a positive number of rounds, got {rounds}")


def _run(args: argparse.Namespace) -> int:
    from tff_fedmm.pipelines.compare_names import BACKBONES

    if args.backbone not in BACKBONES:
        raise UsageError(f"--backbone: unknown {args.backbone!r}; expected one of: {', '.join(BACKBONES)}")
    args.methods, args.backbones = _comma_list(RUN_METHODS), [args.backbone]
    return _compare(args)


def _compare(args: argparse.Namespace) -> int:
    from tff_fedmm.cli import load_market_set
    from tff_fedmm.run_folder import open_run_folder

    _check(args.methods, args.backbones, args.rounds)
    market_set = load_market_set(args)
    out = open_run_folder(args.out)

    from tff_fedmm.federated.context import install_execution_context
    from tff_fedmm.pipelines.compare import run_compare
    from tff_fedmm.report import format_table, markdown_by_market
    from tff_fedmm.run_folder import mark_complete, write_csv, write_json, write_text

    from tff_fedmm.checkpoints import RunCheckpoints

    config = _config(args.seed, args.rounds, args.codebook_rule, args.cf_tower)
    checkpoints = RunCheckpoints(out, args.resume, {"data": _data_fingerprint(args, market_set.names),
                                                    "config": json.dumps(asdict(config), sort_keys=True)})
    install_execution_context()
    started = time.monotonic()
    result = run_compare(market_set, args.methods, args.backbones, config,
                         on_result=lambda m, b: log.warning("done: %s / %s", m, b), checkpoints=checkpoints)
    write_csv(out, "results.csv", result.results)
    write_csv(out, "history.csv", result.history)
    write_csv(out, "codebooks.csv", result.codebooks)
    write_csv(out, "codebook_history.csv", result.codebook_history)
    write_text(out, "results.md", markdown_by_market(result.results) + "\n")
    write_json(out, "config.json", {"command": vars(args) | {"handler": None}, "config": asdict(config),
                                    "versions": _versions(), "seconds": round(time.monotonic() - started, 1)})
    mark_complete(out)
    print(format_table(result.results))
    return 0


def _config(seed: int, rounds: int | None, rule: str = "usage", cf_tower: bool = False):
    """Every seed follows `--seed`; `--rounds` bounds each stage's rounds and the Keras epochs."""
    from tff_fedmm.pipelines.compare import CompareConfig

    config = CompareConfig()
    codes, ctr = config.codes, config.ctr
    codes = replace(codes, cf=replace(codes.cf, seed=seed, tower=cf_tower),
                    codebook=replace(codes.codebook, rule=rule, rqvae=replace(codes.codebook.rqvae, seed=seed)))
    ctr = replace(ctr, train=replace(ctr.train, seed=seed))
    if rounds is not None:
        codes = replace(codes, rounds=rounds)
        ctr = replace(ctr, rounds=rounds, train=replace(ctr.train, epochs=rounds))
    return CompareConfig(codes=codes, ctr=ctr)


def _data_fingerprint(args: argparse.Namespace, names: list[str]) -> dict[str, str]:
    """What the data was: the synthetic seed, or the sha256 of every market file used."""
    if args.data == "synthetic":
        return {"synthetic": f"seed={args.seed}"}
    from tff_fedmm.data.loading import find_market_files

    files = find_market_files(args.data)
    return {name: hashlib.sha256(files[name].read_bytes()).hexdigest() for name in names}


def _versions() -> dict[str, str]:
    import tensorflow as tf
    import tensorflow_federated as tff

    return {"python": platform.python_version(), "tensorflow": tf.__version__, "tensorflow_federated": tff.__version__}
