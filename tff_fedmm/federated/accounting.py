"""One (ε, δ) per market for a whole run: every DP event of every stage, composed by the RDP accountant.

A run has several stages whose shared updates carry a market's data (the CF tower, the global codebook,
the CTR model's shared layers). A guarantee for one stage says nothing about the run, so each stage that
applies a DP mechanism records what it did as a `Charge`: which markets it touched, the `DpEvent` of one
application (as TFF's DP aggregators and tensorflow_privacy report it) and how many times it was
applied — every application that ran counts, whether or not the round's result was finite or kept.
`epsilon` composes all charges of one market and one unit of privacy; charges of another unit (one
market's whole data vs. one interaction) never mix, since they bound different neighbouring datasets.

Charges are plain JSON (`to_json`/`from_json`), so a stage cached in a checkpoint keeps its charges.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import asdict, dataclass

import dp_accounting
import numpy as np

MARKET = "market"  # add/remove one market's whole data, over the whole run
INTERACTION = "interaction"  # add/remove one interaction of one market, over the whole run
UNITS = {MARKET: "add/remove one market's whole data, over every stage of the run",
         INTERACTION: "add/remove one interaction (one user-item pair) of one market, over every stage of the run"}


@dataclass(frozen=True)
class Charge:
    """`count` applications of one DP mechanism (`event`, JSON) by `stage` to each market in `markets`."""

    stage: str
    unit: str
    markets: tuple[str, ...]
    event: dict
    count: int

    def to_json(self) -> dict:
        return {**asdict(self), "markets": list(self.markets)}

    @staticmethod
    def from_json(data: dict) -> Charge:
        return Charge(data["stage"], data["unit"], tuple(data["markets"]), data["event"], int(data["count"]))


def charge(stage: str, unit: str, markets: Iterable[str], event: dp_accounting.DpEvent, count: int) -> Charge:
    if unit not in UNITS:
        raise ValueError(f"unit {unit!r}: expected one of {sorted(UNITS)}")
    return Charge(stage, unit, tuple(markets), event_to_json(event), int(count))


def event_to_json(event: dp_accounting.DpEvent) -> dict:
    """A `DpEvent` as nested dicts: its class name and its attrs fields (events nest, e.g. composed)."""
    return _plain(event.to_named_tuple())


def _plain(value):
    if hasattr(value, "_fields"):
        return {field: _plain(getattr(value, field)) for field in value._fields if field != "module_name"}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):  # events read from a TF aggregator state hold numpy scalars
        return value.item()
    return value


def event_from_json(data: dict) -> dp_accounting.DpEvent:
    def build(value):
        if isinstance(value, dict) and "class_name" in value:
            fields = {k: build(v) for k, v in value.items() if k != "class_name"}
            return getattr(dp_accounting, value["class_name"])(**fields)
        if isinstance(value, list):
            return [build(v) for v in value]
        return value

    return build(data)


def epsilon(charges: Iterable[Charge], market: str, unit: str, delta: float) -> float:
    """ε at `delta` of every charge of `unit` on `market`, composed (RDP, add/remove adjacency); 0 if none."""
    accountant = dp_accounting.rdp.RdpAccountant()
    charged = False
    for c in charges:
        if c.unit == unit and market in c.markets and c.count > 0:
            accountant.compose(event_from_json(c.event), c.count)
            charged = True
    return float(accountant.get_epsilon(delta)) if charged else 0.0


def report(charges: list[Charge], markets: Iterable[str], delta: float) -> dict:
    """Per unit that was charged: its meaning, δ, the stages charged and ε of each market."""
    out = {}
    for unit in sorted({c.unit for c in charges}):
        out[unit] = {"unit": UNITS[unit], "delta": delta,
                     "stages": sorted({c.stage for c in charges if c.unit == unit}),
                     "epsilon": {m: epsilon(charges, m, unit, delta) for m in markets}}
    return out
