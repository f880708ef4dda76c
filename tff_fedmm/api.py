"""The Python API: the same objects the `fedmm` command uses, for scripts and notebooks.

    from tff_fedmm import load_markets, make_config, compare, read_run
    markets = load_markets("synthetic")   # SyntheticConfig(seed=D) for data seed D
    result = compare(markets, ["fedmm", "local", "fedavg"], ["deepfm"], make_config(rounds=5), out="runs/nb",
                     seeds=[0, 1, 2])
    run = read_run("runs/nb")          # results, history, codebooks, config of any finished run folder

Two seeds: the DATA seed (`make_config(data_seed=...)`, and the synthetic generator's seed) fixes every
evaluation candidate set; the training seeds (`compare(seeds=...)`) vary initialisation, shuffles and
drawn training negatives only, so seeds are paired and their differences can be averaged.

Modules that load TensorFlow are imported inside the functions that run training: `import tff_fedmm`,
`read_run` and the flag checks stay free of TensorFlow's seconds of start-up
(`tests/test_cli_data.py::test_entry_modules_and_flag_errors_do_not_import_tensorflow`).
"""

from __future__ import annotations

import hashlib
import json
import platform
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import pandas as pd

from tff_fedmm.data.markets import MarketSet
from tff_fedmm.errors import UsageError
from tff_fedmm.pipelines.compare_names import ANCHORED_METHODS, BACKBONES, CODEBOOK_RULES, METHODS, refuse_renamed
from tff_fedmm.run_schema import SCHEMA_VERSION

# `--resume` refuses checkpoints of another format (the fingerprint differs) rather than finishing a run
# from stages it cannot find: format 2 keeps what a run exports (CF tables, RQ-VAE weights); format 3 names
# the methods and code variants as BUILD_NOTES' "Renamed methods and options" does (stage names changed).
CHECKPOINT_FORMAT = "3"


def make_config(seed: int = 0, rounds: int | None = None, codebook_rule: str = "fedavg", cf_tower: bool = False, *,
                dp_noise_multiplier: float | None = None, dp_clip: float | None = None, dp_delta: float = 1e-5,
                secure_agg: bool = False, dp_noise_seed: int | None = None, dp_ctr_clip: float | str | None = None,
                dp_cf_clip: float | str | None = None, clients_per_round: int | None = None,
                dropout_rate: float = 0.0, dp_mode: str = "central", dp_unit: str = "market",
                dp_example_clip: float | None = None, data_seed: int = 0, level1: str = "encoder",
                anchors: str = "none", anchor_weight: float = 1.0, tuned: dict[str, dict[str, float]] | None = None):
    """A `CompareConfig` with every training seed set to `seed` (`compare(seeds=...)` overrides it) and the
    evaluation candidates drawn from `data_seed`; `rounds` bounds each federated stage's rounds and the
    Keras epochs (None keeps the defaults: 20).

    Privacy (`tff_fedmm.federated.privacy`): `dp_noise_multiplier` turns DP on for every federated
    aggregation of every method, with the L2 clips `dp_clip` (global codebook; None: adaptive),
    `dp_ctr_clip` (CTR shared variables) and `dp_cf_clip` (CF tower) — None keeps their defaults,
    "adaptive" adapts them; its noise is secret unless `dp_noise_seed` makes it reproducible (and so not
    private); `dp_mode="distributed"` has each market add its share of the noise before a secure sum
    instead of the server after summing; `dp_unit="interaction"` protects one interaction instead of one
    market, by DP-SGD with per-record clip `dp_example_clip` (default 1.0; `privacy` module); `secure_agg` sums the codebook aggregation (and DP sums) through TFF's secure sum. Participation in every federated stage (`federated.participation`):
    `clients_per_round` markets sampled per round, each then absent with probability `dropout_rate`.
    `level1` chooses what level-1 codes are read from (`codes_stage.with_level1`). `anchors="public-items"`
    is anchored mode (`data.anchors`): the federated codebook stage pulls anchor items' level-1 latents
    toward a consensus with weight `anchor_weight`; its anchor split comes from `data_seed`. `tuned` maps
    "method/backbone" to CTR settings (learning_rate, embed_dim, patience; `ctr_stage.with_settings`); None
    keeps the ones chosen on XMarket validation (`pipelines.tuned.TUNED_CTR`), {} trains every method with the shared
    defaults."""
    from tff_fedmm.federated.participation import Participation, check_participation
    from tff_fedmm.federated.privacy import PrivacyConfig
    from tff_fedmm.pipelines.codes_stage import with_level1
    from tff_fedmm.pipelines.compare import CompareConfig, with_training_seed
    from tff_fedmm.pipelines.tuned import TUNED_CTR

    refuse_renamed("--codebook-rule", "codebook rule", codebook_rule)
    if codebook_rule not in CODEBOOK_RULES:
        raise UsageError(f"--codebook-rule: expected one of {', '.join(CODEBOOK_RULES)}, got {codebook_rule!r}")
    participation = Participation(clients_per_round, dropout_rate, seed)
    check_participation(participation)
    privacy = PrivacyConfig(dp_noise_multiplier, dp_clip, dp_delta, secure_agg, dp_noise_seed, mode=dp_mode,
                            unit=dp_unit)
    if dp_example_clip is not None:
        if privacy.unit != "interaction":
            raise UsageError("--dp-example-clip: only used with --dp-unit interaction (DP-SGD's per-record clip)")
        privacy = replace(privacy, example_clip=float(dp_example_clip))
    if privacy.unit == "interaction":
        for flag, clip in (("--dp-ctr-clip", dp_ctr_clip), ("--dp-cf-clip", dp_cf_clip)):
            if clip is not None:
                raise UsageError(f"{flag}: not with --dp-unit interaction (a market-level clip; DP-SGD clips each "
                                 "record's gradient to --dp-example-clip)")
        if level1 != "encoder":
            raise UsageError("--level1 descriptors: not with --dp-unit interaction (the descriptors are counted "
                             "from the interactions without DP, and they feed the shared codebook)")
    for flag, name, clip in (("--dp-ctr-clip", "ctr_clip", dp_ctr_clip), ("--dp-cf-clip", "cf_clip", dp_cf_clip)):
        if clip is not None and not privacy.dp:
            raise UsageError(f"{flag}: only used with --dp-noise-multiplier (DP is off without it)")
        if clip is not None:
            privacy = replace(privacy, **{name: None if clip == "adaptive" else float(clip)})
    config = CompareConfig()
    codes, ctr = config.codes, config.ctr
    codes = replace(codes, cf=replace(codes.cf, tower=cf_tower),
                    codebook=replace(codes.codebook, rule=codebook_rule),
                    privacy=privacy, participation=participation)
    codes = with_level1(codes, level1)
    if anchors not in ("none", "public-items"):
        raise UsageError(f"--anchors: expected none or public-items, got {anchors!r}")
    if anchors != "none" and level1 != "encoder":
        raise UsageError("--anchors public-items pulls the encoder's level-1 latents: use it with --level1 encoder")
    if anchor_weight < 0:
        raise UsageError(f"--anchor-weight: expected a weight >= 0, got {anchor_weight}")
    codes = replace(codes, anchors=anchors, data_seed=data_seed,
                    codebook=replace(codes.codebook, anchor_weight=anchor_weight))
    ctr = replace(ctr, train=replace(ctr.train, data_seed=data_seed), participation=participation, privacy=privacy)
    if rounds is not None:
        codes = replace(codes, rounds=rounds)
        ctr = replace(ctr, rounds=rounds, train=replace(ctr.train, epochs=rounds))
    if tuned is not None:
        check_tuned(tuned)
    return with_training_seed(CompareConfig(codes=codes, ctr=ctr,
                                            tuned={k: dict(v) for k, v in (TUNED_CTR if tuned is None else tuned).items()}), seed)


def check_tuned(tuned: dict[str, dict[str, float]]) -> None:
    """Raises `UsageError` for a `tuned` key that is not "method/backbone" or a setting not tunable."""
    from tff_fedmm.pipelines.ctr_stage import CTR_SETTINGS

    for key, settings in tuned.items():
        method, _, backbone = key.partition("/")
        refuse_renamed("tuned", "method", method)
        if method not in METHODS + ANCHORED_METHODS or backbone not in BACKBONES:
            raise UsageError(f"tuned: expected keys 'method/backbone' such as 'local/deepfm', got {key!r}")
        unknown = sorted(set(settings) - set(CTR_SETTINGS))
        if unknown:
            raise UsageError(f"tuned[{key!r}]: unknown setting(s) {unknown}; expected {', '.join(CTR_SETTINGS)}")


def check_seeds(seeds: list[int] | None) -> None:
    """Raises `UsageError` naming the flag for an empty or repeated seed list."""
    if seeds is not None and (not seeds or len(set(seeds)) != len(seeds)):
        raise UsageError(f"--seeds: expected distinct comma-separated integers such as 0,1,2, got {seeds}")


def check_jobs(jobs: int, workers) -> None:
    """Raises `UsageError` naming the flag for a non-positive `--jobs`, or `--jobs` > 1 with `--workers`
    (parallel seeds each start a local worker; remote workers already split every round)."""
    if not isinstance(jobs, int) or jobs < 1:
        raise UsageError(f"--jobs: expected a positive number of processes, got {jobs!r}")
    if jobs > 1 and workers:
        raise UsageError("--jobs: seeds in parallel processes use local TFF workers; with --workers use --jobs 1")


def check_choices(methods: list[str], backbones: list[str], rounds: int | None = None) -> None:
    """Raises `UsageError` naming the flag for an unknown method or backbone, or non-positive rounds."""
    refuse_renamed("--methods", "method", methods)
    for flag, values, allowed in (("--methods", methods, METHODS + ANCHORED_METHODS),
                                  ("--backbones", backbones, BACKBONES)):
        bad = [v for v in values if v not in allowed]
        if bad or not values:
            raise UsageError(f"{flag}: unknown {', '.join(map(repr, bad)) or 'empty list'}; "
                             f"expected a comma-separated list from: {', '.join(allowed)}")
    if rounds is not None and rounds <= 0:
        raise UsageError(f"--rounds: expected a positive number of rounds, got {rounds}")


def check_config(config, market_set: MarketSet) -> None:
    """Raises `UsageError` naming the flag for privacy settings these markets cannot honour; the privacy of
    the codes and CTR stages must be one (DP covers every stage of every method)."""
    from tff_fedmm.federated.privacy import check_privacy

    codes = config.codes
    if config.ctr.privacy != codes.privacy:
        raise ValueError("config.ctr.privacy differs from config.codes.privacy: one privacy setting covers a run")
    check_privacy(codes.privacy, codes.codebook.rule, codes.participation.expected(len(market_set.names)),
                  codes.participation.dropout_rate)


def compare(market_set: MarketSet, methods: list[str], backbones: list[str], config=None, *,
            seeds: list[int] | None = None, out: str | Path | None = None, resume: bool = False,
            progress: bool = True, command: dict | None = None, workers: str | list[str] | None = None,
            jobs: int = 1):
    """Runs `methods` × `backbones` for each training seed in `seeds` (default: the config's seed) and
    returns a `CompareResult` whose tables have a `seed` column; with `out`, also writes one run folder
    for all seeds (checkpointed every round per seed, resumable with `resume=True`). `command` (the CLI's flags) is recorded
    in config.json. `workers` (`host:port` of `fedmm worker`s, a list or comma-separated) runs the federated
    computations on those TFF workers instead of a local one. `jobs` > 1 runs up to that many seeds at once,
    each in its own process with its own local TFF worker (same numbers as one after another)."""
    from tff_fedmm.checkpoints import RunCheckpoints
    from tff_fedmm.federated.context import install_execution_context
    from tff_fedmm.pipelines.compare import run_compare
    from tff_fedmm.pipelines.privacy_audit import collect as collect_audits
    from tff_fedmm.pipelines.exports import Exporter, clear_exports
    from tff_fedmm.progress import reporting
    from tff_fedmm.run_folder import open_run_folder, write_json

    config = config or make_config()
    seeds = [config.ctr.train.seed] if seeds is None else list(seeds)
    check_seeds(seeds)
    check_choices(methods, backbones)
    check_config(config, market_set)
    if config.codes.privacy.dp_sgd and "fedavg" in methods:
        raise UsageError("--methods fedavg: not with --dp-unit interaction (TFF's FedAvg client work has no "
                         "per-example clipping); fedper is the federated baseline DP-SGD covers")
    check_jobs(jobs, workers)
    if workers:  # reach the workers before touching the run folder: an unreachable one leaves it as it was
        install_execution_context(workers)
    folder = open_run_folder(out) if out is not None else None
    checkpoints = (RunCheckpoints(folder, resume, {"data": market_fingerprint(market_set),
                                                   "config": json.dumps(asdict(config), sort_keys=True),
                                                   "seeds": json.dumps(seeds),
                                                   "checkpoint_format": CHECKPOINT_FORMAT})
                   if folder is not None else None)
    if checkpoints is not None and not checkpoints.resumed:
        clear_exports(folder)
    if jobs == 1 or len(seeds) == 1:  # with seeds in processes, each starts its own worker
        install_execution_context(workers)
    started = time.monotonic()
    with reporting(enabled=progress, stages=len(seeds) * len(methods) * len(backbones)):
        result = run_compare(market_set, methods, backbones, config, checkpoints=checkpoints, seeds=seeds,
                             jobs=jobs, exports=folder)
    if folder is not None:
        Exporter(folder, market_set, seeds[0]).write_manifest({m: list(backbones) for m in methods})
        # every stage's audit, made before its first round (also by earlier attempts)
        write_json(folder, "privacy_audit.json", collect_audits(checkpoints, methods))
        _write_run_folder(folder, result, {"schema_version": SCHEMA_VERSION, "command": command,
                                           "workers": workers or None, "methods": methods, "backbones": backbones,
                                           "data": market_set.source, "markets": market_set.names,
                                           "interactions": interactions(market_set),
                                           "seeds": seeds, "data_seed": config.ctr.train.data_seed,
                                           "privacy": result.privacy,
                                           "config": asdict(config),
                                           "versions": versions(), "seconds": round(time.monotonic() - started, 1)})
    return result


def run_method(market_set: MarketSet, method: str, backbone: str = "deepfm", config=None,
               seeds: list[int] | None = None) -> pd.DataFrame:
    """One method on one backbone, no run folder: the per-seed, per-market results table."""
    return compare(market_set, [method], [backbone], config, seeds=seeds, progress=False).results


@dataclass
class RunFolder:
    results: pd.DataFrame
    history: pd.DataFrame
    codebooks: pd.DataFrame
    codebook_history: pd.DataFrame
    config: dict
    schema_version: int = SCHEMA_VERSION  # of the folder as written (`tff_fedmm.run_schema`)
    exports: dict = field(default_factory=dict)  # exports.json: the exported seed, methods and backbones


def read_run(out: str | Path) -> RunFolder:
    """A finished run folder's tables, from every schema version this project has written (version 1: the
    folders from before `schema_version`), in the current version's shape (`run_schema.upgraded`); refuses
    a folder marked incomplete, and one of an unknown version."""
    from tff_fedmm.export_layout import MANIFEST
    from tff_fedmm.run_folder import is_complete
    from tff_fedmm.run_schema import folder_version, upgraded

    folder = Path(out)
    if not is_complete(folder):
        raise UsageError(f"{folder}: not a finished run folder (missing, or marked INCOMPLETE)")

    def read(name: str, parse):
        try:
            return parse(folder / name)
        except (ValueError, UnicodeDecodeError) as err:  # JSONDecodeError and pandas' ParserError included
            raise UsageError(f"{folder / name}: cannot be read ({type(err).__name__}: {err})") from None

    def table(path: Path) -> pd.DataFrame:
        return pd.read_csv(path) if path.exists() and path.stat().st_size > 1 else pd.DataFrame()

    def document(path: Path) -> dict:
        return json.loads(path.read_text()) if path.exists() else {}

    names = {"results": "results.csv", "history": "history.csv", "codebooks": "codebooks.csv",
             "codebook_history": "codebook_history.csv"}
    tables, config = {key: read(name, table) for key, name in names.items()}, read("config.json", document)
    version = folder_version(str(folder), config, tables["results"])
    return RunFolder(**upgraded(tables, config), config=config, schema_version=version,
                     exports=read(MANIFEST, document))


def interactions(market_set: MarketSet) -> dict[str, int]:
    """Each market's interactions: the weights of the interaction-weighted means."""
    return {name: int(m.num_interactions) for name, m in market_set.markets.items()}


def market_fingerprint(market_set: MarketSet) -> dict[str, str]:
    """What a checkpoint was trained on: a digest of each prepared market (vocabularies and splits) and,
    for data read from a directory, of each market file's bytes (any edit to a file counts)."""
    digests = {}
    if market_set.source != "synthetic":
        from tff_fedmm.data.loading import find_market_files

        files = find_market_files(market_set.source)
        digests.update({f"{name} file": hashlib.sha256(files[name].read_bytes()).hexdigest()
                        for name in market_set.names})
    for name, market in market_set.markets.items():
        h = hashlib.sha256()
        for array in (market.user_ids, market.item_ids):
            h.update("\x1f".join(map(str, array)).encode())
        for frame in (market.train, market.valid, market.test):
            h.update(pd.util.hash_pandas_object(frame[["user", "item"]], index=False).values.tobytes())
        digests[name] = h.hexdigest()
    return digests


def versions() -> dict[str, str]:
    import tensorflow as tf
    import tensorflow_federated as tff

    return {"python": platform.python_version(), "tensorflow": tf.__version__, "tensorflow_federated": tff.__version__}


def _write_run_folder(folder: Path, result, config: dict) -> None:
    from tff_fedmm.plots import write_plots
    from tff_fedmm.report import markdown_report, markdown_summary
    from tff_fedmm.run_schema import with_schema_version
    from tff_fedmm.run_folder import mark_complete, write_csv, write_json, write_text
    from tff_fedmm.tensorboard import write_tensorboard

    write_csv(folder, "results.csv", with_schema_version(result.results))
    write_csv(folder, "history.csv", result.history)
    write_csv(folder, "codebooks.csv", result.codebooks)
    write_csv(folder, "codebook_history.csv", result.codebook_history)
    metrics = ["auc", "ndcg@10_full"]
    write_text(folder, "results.md", "\n\n".join(
        ["## Summary", markdown_summary(result.results, metrics),
         *(markdown_report(result.results, metric, config["interactions"]) for metric in metrics)]) + "\n")
    write_json(folder, "config.json", config)
    write_plots(folder, result)
    write_tensorboard(folder, result)
    mark_complete(folder)
