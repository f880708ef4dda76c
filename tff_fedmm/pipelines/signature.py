"""The reviewer's view of the privacy audit: type signatures and what crosses, labelled.

`fedmm signature` builds (never runs) the codebook process and a federated CTR process at small,
distinct sizes and prints, for each, its `next` type signature and every CLIENTS→SERVER value, marked
`shared` (the global-codebook update or a shared layer) or `metric` (scalars), with the verdict of
the audits by shape (`audit`) and by identity (`audit_identity`, which every run also applies).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import numpy as np

from tff_fedmm.federated.audit import (
    Crossing, PrivacyAuditError, TypePredicate, audit_codebook_process, audit_partial_fedavg_process,
    client_to_server_values, codebook_allowed, codebook_payload_fields, is_scalar, shared_weights_allowed,
)
from tff_fedmm.data.pipelines import to_dataset
from tff_fedmm.federated.audit_identity import IdentityAuditError, audit_process
from tff_fedmm.federated.codebook_process import CodebookStageConfig, build_codebook_process
from tff_fedmm.federated.manifest import codebook_manifest, partial_fedavg_manifest
from tff_fedmm.federated.partial_fedavg import build_partial_fedavg_process
from tff_fedmm.federated.privacy import DISTRIBUTED, PrivacyConfig, codebook_aggregator, dp_mean_factory
from tff_fedmm.models.ctr import build_ctr_model, input_names
from tff_fedmm.pipelines.compare_names import refuse_renamed
from tff_fedmm.pipelines.ctr_stage import CTRStageConfig


def kind(crossing: Crossing) -> str:
    """`metric` when only scalars cross, else `shared`. Describes, does not judge: see `labeler`."""
    return "metric" if all(is_scalar(t) for t in crossing.leaves) else "shared"


def labeler(allowed: TypePredicate) -> Callable[[Crossing], str]:
    """Like `kind`, but a crossing with any leaf `allowed` rejects is labelled `NOT ALLOWED`."""
    return lambda c: kind(c) if all(allowed(t) for t in c.leaves) else "NOT ALLOWED"


def describe(comp, label: Callable[[Crossing], str] | None = None) -> str:
    """`comp`'s type signature and what crosses CLIENTS→SERVER, one line per call site."""
    crossings = client_to_server_values(comp)
    signature = comp.type_signature
    formatted = signature.formatted_representation() if hasattr(signature, "formatted_representation") else str(signature)
    lines = ["type_signature:"]
    lines += ["  " + line for line in formatted.splitlines()]
    lines.append(f"crosses CLIENTS→SERVER ({len(crossings)}):")
    for c in crossings:
        prefix = f"[{label(c)}] " if label else ""
        lines.append(f"  {prefix}{c.text}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------------------------------
# `fedmm signature`: the two processes at small, distinct sizes


SIGNATURE_CTR_SIZES = dict(num_users=100, num_items=200, k_global=64, k_local=32)


def ctr_element_spec(k_global: int, k_local: int, batch_size: int = 256):
    """The element spec of a market's CTR dataset, from `to_dataset` on a tiny array."""
    features = {name: np.zeros(2, np.int32) for name in input_names(k_global, k_local)}
    features["label"] = np.zeros(2, np.float32)
    return to_dataset(features, batch_size=batch_size).element_spec


SIGNATURE_MARKETS = 5  # markets per round assumed by a DP mean's denominator (it does not change types)


def signature_report(rule: str = "fedavg", backbone: str = "deepfm", privacy=None, anchors: int = 0) -> tuple[str, bool]:
    """Builds (never runs) both processes; returns their `describe` text and whether both audits pass.
    `privacy` (a `PrivacyConfig`) wraps the aggregations as `--dp-*`/`--secure-agg` do in a run: the
    codebook's with DP and secure sums, the CTR's with DP (its clipped records summed securely with
    `--secure-agg`; the DP state — clip, noise seed, `DpEvent` — then
    shows in the server state of `next`'s signature, and the loss sums no longer cross).
    `anchors` > 0 builds the codebook process in anchored mode with that many anchor slots."""
    refuse_renamed("rule", "codebook rule", rule)
    sections, passed = [], True
    privacy = privacy or PrivacyConfig()
    config = CodebookStageConfig(rule=rule, anchors=anchors)
    cfg = config.rqvae
    codebook = build_codebook_process(config, codebook_aggregator(rule, privacy, SIGNATURE_MARKETS, cfg.seed),
                                      metrics_cross=not privacy.dp)
    secure = privacy.secure_agg
    distributed = privacy.dp and privacy.mode == DISTRIBUTED  # every DP mean sends one noised int32 vector
    sizes = SIGNATURE_CTR_SIZES
    # The federated CTR model as FedMM builds it by default (which layers are shared follows the stage config).
    model_fn = functools.partial(build_ctr_model, backbone, **sizes,
                                 share_interaction=CTRStageConfig().share_interaction)
    ctr_mean = dp_mean_factory(privacy, privacy.ctr_clip, SIGNATURE_MARKETS, cfg.seed) if privacy.dp else None
    ctr = build_partial_fedavg_process(model_fn, ctr_element_spec(sizes["k_global"], sizes["k_local"]), aggregator=ctr_mean,
                                       metrics_cross=not privacy.dp)
    model = model_fn()
    checks = [
        (f"codebook process (rule={rule}, K_global={cfg.k_global}, K_local={cfg.k_local}, d={cfg.latent_dim}"
         + (f", DP z={privacy.noise_multiplier} clip={privacy.clip or 'adaptive'}" if privacy.dp else "")
         + (", distributed DP" if distributed else ", secure sum" if secure else "")
         + (f", anchored: {anchors} anchor slots" if anchors else "") + ")",
         codebook, codebook_allowed(rule, cfg.k_global, cfg.latent_dim, secure, anchors, distributed),
         lambda: audit_codebook_process(codebook, rule, cfg.k_global, cfg.latent_dim, secure, anchors, distributed),
         lambda title: codebook_manifest(config, title)),
        (f"federated CTR process (partial FedAvg, backbone={backbone}, "
         + ", ".join(f"{k}={v}" for k, v in sizes.items())
         + (f", DP z={privacy.noise_multiplier} clip={privacy.ctr_clip or 'adaptive'}" if privacy.dp else "")
         + (", distributed DP" if distributed else ", secure sum" if secure and privacy.dp else "") + ")",
         ctr, shared_weights_allowed(model, secure and privacy.dp, distributed),
         lambda: audit_partial_fedavg_process(ctr, model, secure and privacy.dp, distributed),
         lambda title: partial_fedavg_manifest(model, title)),
    ]
    for title, process, allowed, audit, manifest in checks:
        try:  # by shape (`audit`), then by identity (`audit_identity`), as every run does
            audit()
            audit_process(process, manifest(title))
            verdict = ("audit: passed (only shared values and scalar metrics cross; by identity, each is "
                       "declared and read from its source)")
        except (PrivacyAuditError, IdentityAuditError) as err:
            passed, verdict = False, f"audit: FAILED\n{err}"
        payload = ""
        if process is codebook:  # name every field of the payload, the per-anchor aggregates included
            payload = "\npayload per market and round:\n" + "\n".join(
                f"  {name}: {type_} ({size:,} bytes)" for name, type_, size in
                codebook_payload_fields(rule, cfg.k_global, cfg.latent_dim, anchors))
        sections.append(f"== {title}: next ==\n{describe(process.next, labeler(allowed))}{payload}\n{verdict}")
    return "\n\n".join(sections), passed
