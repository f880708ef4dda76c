"""Per-method CTR settings chosen on validation reach exactly the method × backbone they were chosen for."""

from __future__ import annotations

import numpy as np
import pytest

from tff_fedmm import api
from tff_fedmm.data.markets import load_markets
from tff_fedmm.data.synthetic import SyntheticConfig
from tff_fedmm.errors import UsageError
from tff_fedmm.eval.evaluate import METRICS
from tff_fedmm.pipelines import compare, ctr_stage
from tff_fedmm.pipelines.tuned import TUNED_CTR


def test_tuned_settings_reach_only_their_method_and_backbone(monkeypatch):
    seen = {}

    def fake_train_local(market_set, backbone, use, config, sizes, keep=None):
        seen[backbone] = (config.train.learning_rate, config.train.patience, config.embed_dim, config.round_patience)
        return {name: dict.fromkeys(METRICS, 0.5) for name in market_set.names}, []

    monkeypatch.setattr(ctr_stage, "train_local", fake_train_local)
    markets = load_markets("synthetic", None, SyntheticConfig(num_markets=2, users_per_market=30, items_per_market=120))
    config = api.make_config(tuned={"local/deepfm": {"learning_rate": 3e-3, "patience": 10, "embed_dim": 32}})
    result = api.compare(markets, ["local"], ["deepfm", "dcnv2"], config, progress=False)
    defaults = ctr_stage.CTRStageConfig()
    assert seen["deepfm"] == (3e-3, 10, 32, 10)
    assert seen["dcnv2"] == (defaults.train.learning_rate, defaults.train.patience, defaults.embed_dim,
                             defaults.round_patience)
    assert np.allclose(result.results["auc"], 0.5)


def test_default_config_carries_the_validation_chosen_settings_and_can_drop_them():
    assert api.make_config().tuned == TUNED_CTR
    assert api.make_config(tuned={}).tuned == {}
    seeded = compare.with_training_seed(api.make_config(tuned={"fedper/dcnv2": {"embed_dim": 8}}), 3)
    assert seeded.tuned == {"fedper/dcnv2": {"embed_dim": 8}}  # a training seed leaves the tuning alone


@pytest.mark.parametrize("tuned, fragment", [
    ({"local": {"embed_dim": 8}}, "expected keys 'method/backbone'"),
    ({"local/resnet": {"embed_dim": 8}}, "expected keys 'method/backbone'"),
    ({"local/deepfm": {"dropout": 0.1}}, "unknown setting(s) ['dropout']"),
])
def test_bad_tuned_settings_name_what_was_expected(tuned, fragment):
    with pytest.raises(UsageError) as err:
        api.make_config(tuned=tuned)
    assert fragment in str(err.value)


def test_ablations_train_with_the_settings_of_what_they_ablate_unless_given_their_own():
    from tff_fedmm.pipelines.tuned import settings_for

    mine = {"fedper/deepfm": {"embed_dim": 8}, "fedper-anchored/dcnv2": {"learning_rate": 1e-2}}
    config = api.make_config(tuned=mine)
    assert config.for_method("fedper-anchored", "deepfm").ctr.embed_dim == 8  # the parent's
    assert config.for_method("fedper-anchored", "dcnv2").ctr.train.learning_rate == 1e-2  # its own
    assert config.for_method("local", "deepfm") == config  # no entry: the shared defaults
    for derived, parent in (("fedmm-private-codebooks", "fedmm"), ("local+codes", "local")):
        for backbone in ("deepfm", "dcnv2"):
            assert settings_for(TUNED_CTR, derived, backbone) == settings_for(TUNED_CTR, parent, backbone)
    config.tuned["fedper/deepfm"]["embed_dim"] = 64
    assert mine["fedper/deepfm"] == {"embed_dim": 8} and api.make_config().tuned == TUNED_CTR  # copies
