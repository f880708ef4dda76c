"""The run-level accountant composes every stage's DP charges per market and unit."""

import dp_accounting
import pytest

from tff_fedmm.federated import accounting


def _eps(events, delta=1e-5):
    acc = dp_accounting.rdp.RdpAccountant()
    for event, count in events:
        acc.compose(event, count)
    return acc.get_epsilon(delta)


def test_events_survive_json_including_nested_ones():
    event = dp_accounting.ComposedDpEvent([dp_accounting.GaussianDpEvent(1.5),
                                           dp_accounting.PoissonSampledDpEvent(0.01, dp_accounting.GaussianDpEvent(0.9))])
    assert accounting.event_from_json(accounting.event_to_json(event)) == event


def test_epsilon_composes_every_stage_of_a_market_and_only_its_unit():
    g1, g2 = dp_accounting.GaussianDpEvent(1.0), dp_accounting.GaussianDpEvent(2.0)
    charges = [accounting.charge("codebook", accounting.MARKET, ["de", "fr"], g1, 10),
               accounting.charge("ctr", accounting.MARKET, ["de"], g2, 7),
               accounting.charge("ctr", accounting.INTERACTION, ["de", "fr"], g1, 100)]
    charges = [accounting.Charge.from_json(c.to_json()) for c in charges]
    de = accounting.epsilon(charges, "de", accounting.MARKET, 1e-5)
    fr = accounting.epsilon(charges, "fr", accounting.MARKET, 1e-5)
    assert de == pytest.approx(_eps([(g1, 10), (g2, 7)]))
    assert fr == pytest.approx(_eps([(g1, 10)]))
    assert de > fr
    assert accounting.epsilon(charges, "jp", accounting.MARKET, 1e-5) == 0.0
    report = accounting.report(charges, ["de", "fr"], 1e-5)
    assert set(report) == {accounting.MARKET, accounting.INTERACTION}
    assert report[accounting.MARKET]["stages"] == ["codebook", "ctr"]


def test_unknown_unit_is_refused():
    with pytest.raises(ValueError, match="unit"):
        accounting.charge("ctr", "user", ["de"], dp_accounting.GaussianDpEvent(1.0), 1)
