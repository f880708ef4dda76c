"""The audit on every run: each federated process a stage builds is audited by identity before its first
round, and the reports of a run are gathered into the run folder's `privacy_audit.json`.

Each stage audits the process it is about to run (`audit_stage`), with the run's real sizes, right after
building it and before the markets' initial states are drawn (those reseed Keras, so the manifest's model
builds leave every number of the run unchanged). A failing audit stops the stage — and the run — before
its first round with `IdentityAuditError`, naming each offending value.

The report is stored next to the stage's checkpoints (`StageCheckpoint.save_audit`), so it is in the run
folder however the run went: a resumed run either rebuilds (and re-audits) a stage or finds it finished
with its report from the first attempt, and seeds run in parallel processes (`--jobs`) each write their
own stages' reports. `collect` merges them per stage over seeds: seeds change values, never what is built,
so their reports are identical and one entry lists the seeds (a difference would get an entry per seed).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from tff_fedmm.checkpoints import RunCheckpoints, StageCheckpoint
from tff_fedmm.federated.audit_identity import audit_process
from tff_fedmm.federated.manifest import Manifest, codebook_manifest, fedavg_manifest, partial_fedavg_manifest

ABOUT = ("Every value that crosses CLIENTS→SERVER in the federated processes this run built, per stage: the "
         "intrinsic, the value's TFF type and its sources — the Keras variable an update is read from, or the "
         "named statistic — each checked by identity (tff_fedmm.federated.audit_identity) before the first round. "
         "audit_seconds: what building the manifests and walking the processes took in all (nothing is run).")
# Methods whose training builds no federated process: nothing crosses to a server, or (centralized) the
# raw data is pooled by design as a non-private reference.
NOT_FEDERATED = {
    "local": "no federated process: each market trains alone, nothing leaves it",
    "local+codes": "no federated CTR process: each market alone, with its own codes (codes-private stages)",
    "centralized": "no federated process: pools every market's raw data (a non-private reference)",
    "centralized-anchored": "no federated process: pools every market's raw data (a non-private reference)",
}


def audit_stage(process, manifest_fn: Callable[[], Manifest], checkpoint: StageCheckpoint | None) -> dict:
    """Audits `process` against `manifest_fn()` (raising on any undeclared value) and records the report,
    with the seconds the manifest and the audit took, with the stage's checkpoints when there are any."""
    started = time.perf_counter()
    report = audit_process(process, manifest_fn())
    report["seconds"] = round(time.perf_counter() - started, 3)
    if checkpoint is not None:
        checkpoint.save_audit(report)
    return report


def audit_codebook(process, config, participants: list[str], federated: bool, privacy,
                   checkpoint: StageCheckpoint | None) -> dict:
    """The codebook process of `config` (a `CodebookStageConfig`) over `participants`."""
    rq = config.rqvae
    options = [f"rule={config.rule}", f"K_global={rq.k_global}", f"K_local={rq.k_local}", f"d={rq.latent_dim}"]
    options += [f"anchored: {config.anchors} anchor slots"] if config.anchors else []
    options += [f"DP z={privacy.noise_multiplier}"] if privacy.dp else []
    options += ["secure sum"] if privacy.secure_agg else []
    title = (f"codebook process ({'federated' if federated else 'one market alone'}: {', '.join(participants)}; "
             f"{', '.join(options)})")
    return audit_stage(process, lambda: codebook_manifest(config, title), checkpoint)


def audit_partial_fedavg(process, model_fn, what: str, checkpoint: StageCheckpoint | None) -> dict:
    """Partial FedAvg over `model_fn()`'s model; `what`: the stage, for the title."""
    def manifest() -> Manifest:
        model = model_fn()
        return partial_fedavg_manifest(model, f"partial FedAvg of {model.name} ({what}): the shared_* weights only")

    return audit_stage(process, manifest, checkpoint)


def audit_fedavg(process, model_fn, tff_model_fn, checkpoint: StageCheckpoint | None) -> dict:
    """TFF's FedAvg over `model_fn()`'s model; `tff_model_fn` builds the TFF model the process wraps."""
    def manifest() -> Manifest:
        model, tff_model = model_fn(), tff_model_fn()  # held: its tf.functions keep only a weak reference
        return fedavg_manifest(model, tff_model.report_local_unfinalized_metrics(),
                               f"FedAvg of {model.name} (TFF build_weighted_fed_avg): every variable, ID "
                               "embeddings included, as the method is defined")

    return audit_stage(process, manifest, checkpoint)


def collect(checkpoints: RunCheckpoints, methods: list[str]) -> dict:
    """`privacy_audit.json`: every stage's report, merged over seeds; a line per method without a
    federated process; and what the audits cost, in all (every stage of every seed)."""
    stages: dict[str, list[dict]] = {}
    seconds = 0.0
    for name, report in sorted(checkpoints.audits().items()):
        seconds += report.pop("seconds", 0.0)
        match = re.fullmatch(r"seed(-?\d+)-(.*)", name)
        seed, stage = (int(match.group(1)), match.group(2)) if match else (None, name)
        entries = stages.setdefault(stage, [])
        same = next((e for e in entries if {k: v for k, v in e.items() if k != "seeds"} == report), None)
        if same is None:
            entries.append(same := {"seeds": [], **report})
        if seed is not None:
            same["seeds"].append(seed)
    merged = {}
    for stage, entries in stages.items():
        for entry in entries:
            key = stage if len(entries) == 1 else f"{stage} (seeds {','.join(map(str, entry['seeds']))})"
            merged[key] = entry
    return {"about": ABOUT, "stages": merged, "audit_seconds": round(seconds, 2),
            "methods_without_a_federated_process": {m: NOT_FEDERATED[m] for m in methods if m in NOT_FEDERATED}}
