import collections

import numpy as np

from tff_fedmm.data.pipelines import to_dataset

FEATURES = {
    "user": np.arange(10, dtype=np.int32),
    "item": np.arange(10, 20, dtype=np.int32),
    "label": np.ones(10, np.float32),
}


def batches(dataset):
    return [{"user": b["x"]["user"].numpy().tolist(), "y": b["y"].numpy().tolist()} for b in dataset]


def test_ordered_dict_elements_batched():
    dataset = to_dataset(FEATURES, batch_size=4)
    spec = dataset.element_spec
    assert isinstance(spec, collections.OrderedDict) and list(spec) == ["x", "y"]
    assert isinstance(spec["x"], collections.OrderedDict) and list(spec["x"]) == ["user", "item"]
    assert [len(b["y"]) for b in batches(dataset)] == [4, 4, 2]
    assert sum((b["user"] for b in batches(dataset)), []) == list(range(10))


def test_shuffle_is_reproducible():
    shuffled = to_dataset(FEATURES, batch_size=10, shuffle_seed=1)
    first = batches(shuffled)
    assert first == batches(shuffled) == batches(to_dataset(FEATURES, batch_size=10, shuffle_seed=1))
    assert sorted(first[0]["user"]) == list(range(10)) and first[0]["user"] != list(range(10))
