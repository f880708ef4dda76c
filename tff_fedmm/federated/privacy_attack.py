"""Two adversaries against the global-codebook stage, as pure functions of what they observe.

What they try to learn about a target market: its level-1 latent clusters, i.e. which of the K global
codes its users and items occupy when it joins (its rows through the shared initial encoder, against
the initial codebook: a function of its data and public initial weights only, `pipelines.attack_trace`).
A market's first update pulls exactly the codes its rows are assigned to and leaves the others still.

(a) Another market or the public sees every broadcast global codebook C_0 … C_R and guesses the codes
    that moved most in the first round (`movement_scores`; measured stronger than the movement over
    all rounds, as later rounds follow encoders that have moved since).
(b) The server sees exactly what crosses (`server_view`): without secure summation each market's own
    update (clipped under central DP), with it only their sum, under distributed DP a sum the markets
    already noised, which is what the public sees too. It guesses the codes its view of the first
    round moved most (`update_scores`).

Both name as many codes as the target occupies; the recovery rate is the share of them that are its
(`recovery_rate`). Scores that carry no information about the target name each code with probability
|T|/K, the chance rate, with a hypergeometric spread (`chance_rate`, `chance_std`). AUC over all codes
(`auc`, 0.5 at chance) is reported beside it.

In anchored mode a second secret: which anchor slots (public products) a market carries, scored by AUC
over the slots (`attack_anchor_targets`, below).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

# What the server receives, by protection (see `server_view`).
PER_MARKET = "per-market"  # no secure sum: each market's update, clipped under central DP
CLIPPED_SUM = "clipped-sum"  # secure sum under central DP: the sum of clipped updates, before the noise
RELEASED_SUM = "released-sum"  # secure sum without DP, or distributed DP: the aggregate the broadcast shows
VIEWS = (PER_MARKET, CLIPPED_SUM, RELEASED_SUM)


def movement_scores(codebooks: np.ndarray) -> np.ndarray:
    """Adversary (a): per code, how far the first round moved it (`codebooks` is [rounds + 1, K, d], the
    codebook broadcast before each round and after the last)."""
    return np.linalg.norm(codebooks[1] - codebooks[0], axis=1)


def update_scores(updates: np.ndarray) -> np.ndarray:
    """Adversary (b): per code, the norm of the first round's update in its view (`updates` is
    [rounds, K, d])."""
    return np.linalg.norm(updates[0], axis=1)


def clip_l2(update: np.ndarray, clip: float) -> np.ndarray:
    """One market's update as TFF's DP aggregation clips it before summing: to L2 norm `clip` overall."""
    norm = float(np.linalg.norm(update))
    return update if norm <= clip else update * (clip / norm)


def view_kind(dp: bool, secure_agg: bool, distributed: bool) -> str:
    """Which of `VIEWS` the server gets under these protections."""
    if distributed or (secure_agg and not dp):
        return RELEASED_SUM
    return CLIPPED_SUM if secure_agg else PER_MARKET


def server_view(kind: str, target: str, market_updates: Mapping[str, np.ndarray] | None,
                codebooks: np.ndarray, clip: float | None) -> np.ndarray:
    """What the server observes that bears on `target`, [rounds, K, d].

    `market_updates`: each market's raw codebook update per round ([rounds, K, d], what it computed);
    `clip`: the fixed DP clip, None without DP. PER_MARKET: the target's own (clipped) updates.
    CLIPPED_SUM: every market's clipped update summed, no noise yet. RELEASED_SUM: the round-to-round
    change of the broadcast codebook, the released aggregate up to the known scale of the mean.
    """
    if kind == RELEASED_SUM:
        return np.diff(codebooks, axis=0)
    if market_updates is None:
        raise ValueError(f"the {kind} view needs each market's updates")
    clipped = {name: np.stack([u if clip is None else clip_l2(u, clip) for u in updates])
               for name, updates in market_updates.items()}
    if kind == PER_MARKET:
        return clipped[target]
    if kind == CLIPPED_SUM:
        return np.sum(list(clipped.values()), axis=0)
    raise ValueError(f"unknown server view {kind!r}; expected one of {VIEWS}")


def recovery_rate(scores: np.ndarray, truth: np.ndarray) -> float:
    """Share of the `truth` codes among the len(truth) highest `scores` (ties broken by code index)."""
    named = np.argsort(-scores, kind="stable")[: len(truth)]
    return float(np.isin(named, truth).mean())


def chance_rate(num_codes: int, num_true: int) -> float:
    """Expected recovery rate of scores that carry no information: |T|/K."""
    return num_true / num_codes


def chance_std(num_codes: int, num_true: int) -> float:
    """Standard deviation of the recovery rate at chance: naming |T| of K codes at random hits a
    hypergeometric number of the |T| true ones."""
    k, t = num_codes, num_true
    if k <= 1:
        return 0.0
    hits_var = t * (t / k) * (1 - t / k) * (k - t) / (k - 1)
    return float(np.sqrt(hits_var) / t)


def auc(scores: np.ndarray, truth: np.ndarray) -> float:
    """Probability that a true cluster code scores above a code that is none (ties count half)."""
    positive = np.zeros(len(scores), bool)
    positive[truth] = True
    pos, neg = scores[positive], scores[~positive]
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).mean()
    ties = (pos[:, None] == neg[None, :]).mean()
    return float(greater + 0.5 * ties)


def attack_targets(codebooks: np.ndarray, market_updates: Mapping[str, np.ndarray] | None,
                   row_codes: Mapping[str, np.ndarray], kind: str, clip: float | None) -> list[dict]:
    """Both adversaries against every market in turn (`row_codes`: market → level-1 code of each of its
    rows when it joined): one row per target with the recovery rate and AUC of (a) and (b), the chance
    rate and its standard deviation, and how many codes the target occupies."""
    num_codes = codebooks.shape[1]
    public = movement_scores(codebooks)
    rows = []
    for target, codes in row_codes.items():
        truth = np.unique(codes)
        server = update_scores(server_view(kind, target, market_updates, codebooks, clip))
        rows.append({"target": target, "codes": len(truth),
                     "chance": chance_rate(num_codes, len(truth)), "chance_std": chance_std(num_codes, len(truth)),
                     "recovery_a": recovery_rate(public, truth), "auc_a": auc(public, truth),
                     "recovery_b": recovery_rate(server, truth), "auc_b": auc(server, truth)})
    return rows


# Anchored mode (`data.anchors`): does market X carry anchor slot a? Each market sends, per slot, the mean
# level-1 latent of its items there and `anchor_counts` (1 if it has one), through the codebook's
# aggregator; the truth is that count, a function of the market's data alone (`anchor_truth`). The three
# adversaries score every slot for a target and are judged by AUC over the slots (0.5 at chance):
# - the list: another market knows the agreed list (every anchor is carried by two or more markets) and
#   which slots it carries itself; a slot it lacks must be carried by others (`list_scores`). No
#   training value is read, so no protection of the training changes it.
# - (a) the public: the released per-slot count aggregate, averaged over rounds (`anchor_scores` of
#   `released_counts`): a slot many markets carry is likely the target's too.
# - (b) the server: the target's own counts without secure summation (clipped under central DP, which
#   scales a market's whole payload at once, `payload_scales`), the clipped sum under central DP with
#   secure summation, else the released aggregate.


def anchor_truth(slots: np.ndarray, num_slots: int) -> np.ndarray:
    """Which slots a market carries, from its rows' slots (-1: no anchor): what its `anchor_counts` say."""
    return np.isin(np.arange(num_slots), slots[slots >= 0])


def payload_scales(payload: Mapping[str, np.ndarray], clip: float | None) -> np.ndarray:
    """Per round, the factor DP's clip applies to one market's payload (every field at once: one L2 norm
    over the codebook update, `anchor_means` and `anchor_counts`); ones without DP. Fields are
    [rounds, ...]."""
    rounds = len(next(iter(payload.values())))
    if clip is None:
        return np.ones(rounds)
    norms = np.sqrt(sum(np.square(v.reshape(rounds, -1)).sum(axis=1) for v in payload.values()))
    return np.minimum(1.0, clip / np.maximum(norms, 1e-30))


def anchor_view(kind: str, target: str, market_payloads: Mapping[str, Mapping[str, np.ndarray]] | None,
                released_counts: np.ndarray, clip: float | None) -> np.ndarray:
    """The per-slot counts the server observes that bear on `target`, [rounds, A] (views as in
    `server_view`; `released_counts` is the aggregator's released `anchor_counts` per round)."""
    if kind == RELEASED_SUM:
        return released_counts
    if market_payloads is None:
        raise ValueError(f"the {kind} view needs each market's payloads")
    clipped = {name: p["anchor_counts"] * payload_scales(p, clip)[:, None] for name, p in market_payloads.items()}
    if kind == PER_MARKET:
        return clipped[target]
    if kind == CLIPPED_SUM:
        return np.sum(list(clipped.values()), axis=0)
    raise ValueError(f"unknown server view {kind!r}; expected one of {VIEWS}")


def anchor_scores(counts: np.ndarray) -> np.ndarray:
    """Per slot, the mean over rounds of the observed counts (a market carries the same slots every
    round, so the mean averages independent noise down)."""
    return counts.mean(axis=0)


def list_scores(carries_other: np.ndarray) -> np.ndarray:
    """Another market's score from the agreed list: 1 where it lacks the slot (then two or more of the
    others carry it), 0 where it has it."""
    return 1.0 - carries_other.astype(float)


def membership_chance_std(num_pos: int, num_neg: int) -> float:
    """Standard deviation of the AUC of scores that carry no information (Mann-Whitney, no ties)."""
    return float(np.sqrt((num_pos + num_neg + 1) / (12.0 * num_pos * num_neg)))


def attack_anchor_targets(carries: Mapping[str, np.ndarray], released_counts: np.ndarray,
                          market_payloads: Mapping[str, Mapping[str, np.ndarray]] | None, kind: str,
                          clip: float | None) -> list[dict]:
    """Every target market that carries some slots and lacks others (else its AUC is undefined): one row
    with the AUC of the list, (a) and (b), the chance standard deviation and how many slots it carries.
    `carries`: market → bool[A] (`anchor_truth`)."""
    public = anchor_scores(released_counts)
    rows = []
    for target, truth in carries.items():
        positive = np.flatnonzero(truth)
        if not 0 < len(positive) < len(truth):
            continue
        server = anchor_scores(anchor_view(kind, target, market_payloads, released_counts, clip))
        listed = [auc(list_scores(other), positive) for name, other in carries.items() if name != target]
        rows.append({"target": target, "carried": len(positive),
                     "chance_std": membership_chance_std(len(positive), len(truth) - len(positive)),
                     "auc_list": float(np.mean(listed)), "auc_a": auc(public, positive),
                     "auc_b": auc(server, positive)})
    return rows
