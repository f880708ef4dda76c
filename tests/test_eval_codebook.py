import math

import numpy as np
import pytest

from tff_fedmm.eval.alignment import cluster_nmi, code_agreement
from tff_fedmm.eval.codebook_stats import code_usage, collision_rate, perplexity


def test_code_usage():
    assert code_usage(np.array([0, 0, 1]), 4) == pytest.approx(0.5)


@pytest.mark.parametrize(
    "codes, expected",
    [([0, 0, 0, 0], 1.0), ([0, 0, 1, 1], 2.0), ([0, 1, 2, 3], 4.0), ([0, 0, 1, 2], 2**1.5)],
)
def test_perplexity_is_effective_number_of_codes(codes, expected):
    assert perplexity(np.array(codes), 4) == pytest.approx(expected)


def test_codes_out_of_range_rejected():
    with pytest.raises(ValueError, match=r"\[0, 4\)"):
        perplexity(np.array([0, 4]), 4)


def test_collision_rate_counts_entities():
    # pairs (0,0) x2, (1,0), (1,1), (2,0): two of five entities collide
    assert collision_rate(np.array([0, 0, 1, 1, 2]), np.array([0, 0, 0, 1, 0])) == pytest.approx(0.4)
    assert collision_rate(np.array([0, 0, 0, 1]), np.array([1, 1, 1, 1])) == pytest.approx(0.75)
    assert collision_rate(np.array([0, 1, 2]), np.array([0, 0, 0])) == 0.0


def test_code_agreement_against_chance():
    out = code_agreement(
        np.array([0, 1, 2, 3]), np.array([0, 1, 3, 3]), 4,
        all_codes_a=np.array([0, 0, 1, 1]), all_codes_b=np.array([0, 1, 1, 1]),
    )
    # p_a = (.5, .5, 0, 0), p_b = (.25, .75, 0, 0): chance = .125 + .375
    assert out == pytest.approx({"agreement": 0.75, "chance": 0.5})


def test_cluster_nmi():
    assert cluster_nmi(np.array([3, 3, 1, 1]), np.array([0, 0, 1, 1])) == pytest.approx(1.0)
    assert cluster_nmi(np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1])) == pytest.approx(0.0, abs=1e-12)
    assert not math.isnan(cluster_nmi(np.array([0, 0]), np.array([1, 1])))
