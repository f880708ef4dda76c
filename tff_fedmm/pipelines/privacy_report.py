"""One (ε, δ) per method and market: the DP charges each stage makes, and the run's privacy section.

Under DP every stage whose aggregation carries a market's data records `accounting.Charge`s in a
`Ledger`: one per market, counting every round that market took part in (rounds whose loss was not
finite included: the noised release happened), with the `DpEvent` the stage's DP aggregator recorded
in its server state (`privacy.round_event`). A method's charges are those of every stage its models
come from — the federated CF tower, the federated codebook of its code variant, its CTR stage — and
`accounting.epsilon` composes them (RDP) into one ε per market at the run's δ.

One training of a method (one seed, one backbone) is what a deployment would run and release, so
`epsilon` is that training's, the largest over the run's seeds and backbones; `epsilon_all_trainings`
composes every training of the method in the run (what publishing all of them would cost).

With `--dp-unit interaction` the charges are DP-SGD's (`record_steps`): per market, every step of every
stage that trained on its interactions (the CF stage, the CTR stage), each a Poisson-sampled Gaussian;
they compose into one ε per interaction of that market, whichever stages it was sampled in.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from tff_fedmm.federated import accounting
from tff_fedmm.federated import privacy as dp
from tff_fedmm.pipelines.privacy_audit import NOT_FEDERATED
from tff_fedmm.training.dp_sgd import step_event

# Charges per training seed: method -> backbone -> the JSON charges of one training.
SeedCharges = dict[str, dict[str, list[dict]]]


@dataclass
class Ledger:
    """Where a stage records its charges; `stage` names them (and keys the stage's noise seed)."""

    stage: str
    charges: list[accounting.Charge] = field(default_factory=list)

    def record(self, privacy: dp.PrivacyConfig, aggregator_state, names: Sequence[str],
               presence: Iterable[Sequence[int]]) -> None:
        """Charges each market of `names` for every round it was present in (`presence`: the indices of
        the markets present in each round that ran), with the event the aggregator last recorded."""
        if not privacy.dp:
            return
        counts = [0] * len(names)
        for present in presence:
            for i in present:
                counts[i] += 1
        if not any(counts):  # no aggregation ran: the state holds no event, and nobody is charged
            return
        event = dp.round_event(aggregator_state)
        self.charges += [accounting.charge(self.stage, accounting.MARKET, [name], event, count)
                         for name, count in zip(names, counts) if count]

    def record_steps(self, market: str, sampling_rate: float, noise_multiplier: float, steps: int) -> None:
        """Charges `market` per interaction for `steps` DP-SGD steps sampling its records at `sampling_rate`."""
        if steps:
            self.charges.append(accounting.charge(self.stage, accounting.INTERACTION, [market],
                                                  step_event(sampling_rate, noise_multiplier), steps))


def section(privacy: dp.PrivacyConfig, per_seed: Sequence[SeedCharges], methods: Sequence[str],
            markets: Sequence[str]) -> dict:
    """config.json's "privacy": the settings and, per method, the stages charged and ε per market."""
    out = {"dp": privacy.dp, "secure_agg": privacy.secure_agg}
    if not privacy.dp:
        return out
    unit = accounting.INTERACTION if privacy.dp_sgd else accounting.MARKET
    clips = ({"record": privacy.example_clip} if privacy.dp_sgd else
             {stage: "adaptive" if clip is None else clip for stage, clip in
              (("codebook", privacy.clip), ("ctr", privacy.ctr_clip), ("cf_tower", privacy.cf_clip))})
    out.update(noise_multiplier=privacy.noise_multiplier, delta=privacy.delta, unit_name=unit,
               unit=accounting.UNITS[unit], clips=clips, mode="dp-sgd in each market" if privacy.dp_sgd else privacy.mode,
               noise=(dp.NOISE_DISTRIBUTED if privacy.mode == dp.DISTRIBUTED else
                      dp.NOISE_SECRET if privacy.noise_seed is None else dp.NOISE_REPRODUCIBLE),
               per=("epsilon: one training of the method (one seed, one backbone), every stage it ran, every "
                    "round a market took part in; the largest over the run's trainings. epsilon_all_trainings: "
                    "every training of the method in this run composed"),
               methods={m: _method(m, per_seed, markets, privacy.delta, unit) for m in methods})
    return out


def _method(method: str, per_seed: Sequence[SeedCharges], markets: Sequence[str], delta: float, unit: str) -> dict:
    if method in NOT_FEDERATED:
        eps = None if method.startswith("centralized") else 0.0  # pooled raw data: no guarantee at all
        return {"stages": [], "epsilon": {m: eps for m in markets}, "note": NOT_FEDERATED[method]}
    trainings = [[accounting.Charge.from_json(c) for c in charges]
                 for seed in per_seed for charges in seed.get(method, {}).values()]
    everything = []
    for seed in per_seed:  # a seed's backbones share its CF and codebook stages: count those once
        unique = {}
        for charges in seed.get(method, {}).values():
            unique.update({(c["stage"], tuple(c["markets"])): c for c in charges})
        everything += [accounting.Charge.from_json(c) for c in unique.values()]

    def eps(charges: list[accounting.Charge]) -> dict[str, float]:
        return {m: accounting.epsilon(charges, m, unit, delta) for m in markets}

    per_training = [eps(charges) for charges in trainings] or [eps([])]
    return {"stages": sorted({c.stage for c in everything}), "trainings": len(trainings),
            "epsilon": {m: max(e[m] for e in per_training) for m in markets},
            "epsilon_all_trainings": eps(everything)}


def lines(report: dict) -> list[str]:
    """One line per method for the CLI: ε per market at δ, the stages it covers, the unit and the noise."""
    if not report.get("dp"):
        return []
    out = []
    for method, entry in report["methods"].items():
        if entry["epsilon"] and all(e is None for e in entry["epsilon"].values()):
            values = "none (no DP guarantee)"
        else:
            values = ", ".join(f"{m} {e:.3g}" for m, e in entry["epsilon"].items())
        interaction = report.get("unit_name") == accounting.INTERACTION
        covers = ", ".join(entry["stages"]) or entry.get("note", "no federated stage")
        if interaction and any(stage.startswith("cf") for stage in entry["stages"]):
            covers += "; codebook: post-processing of the DP-SGD CF tables"
        per = "interaction of each market" if interaction else "market"
        line = f"DP {method}: epsilon per {per} at delta = {report['delta']:g}: {values} (covers: {covers}"
        if entry.get("trainings", 0) > 1:
            line += "; per training, all {} trainings composed: {}".format(entry["trainings"], ", ".join(
                f"{m} {e:.3g}" for m, e in entry["epsilon_all_trainings"].items()))
        out.append(line + f"); unit: {report['unit']}; noise: {report['noise']}")
    return out
