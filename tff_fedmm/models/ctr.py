"""CTR backbones (DeepFM, DCN-v2) whose layer names encode the federation split.

The models are functional because `tff.learning.models.from_keras_model` rejects subclassed models.
Each input field gets a `dim`-wide embedding (and, for DeepFM, a 1-wide first-order embedding) named
by who may see it: user/item IDs and market-local codes are `private_*` (they identify a market's own
entities), global codes are `shared_*` (their meaning is common to all markets, so averaging them across
markets is sound), and so is every interaction/MLP/output layer unless `share_interaction=False` names
them `private_*` (FedMM's default, `CTRStageConfig.share_interaction`).

No weight regularizers: Keras routes them through `model.losses`, which TFF's Keras wrapper does not
carry into its computations. Capacity is controlled by `embed_dim` and `dropout` instead; put L2
into the client optimizer (weight decay) if it is needed.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import tensorflow as tf

from tff_fedmm.models.layers_ctr import CrossNet, FMInteraction
from tff_fedmm.naming import is_private, is_shared

BACKBONES = ("deepfm", "dcnv2")


@dataclass(frozen=True)
class _Field:
    input_name: str
    vocab_size: int
    layer_stem: str  # full layer names are <stem>_embedding and <stem>_first_order


def input_names(k_global: int = 0, k_local: int = 0) -> tuple[str, ...]:
    """The feature keys a model built with these code sizes expects in its input dict."""
    names = ["user", "item"]
    if k_global > 0:
        names += ["user_gcode", "item_gcode"]
    if k_local > 0:
        names += ["user_lcode", "item_lcode"]
    return tuple(names)


def _fields(num_users: int, num_items: int, k_global: int, k_local: int) -> list[_Field]:
    fields = [
        _Field("user", num_users, "private_user_id"),
        _Field("item", num_items, "private_item_id"),
    ]
    if k_global > 0:
        fields += [
            _Field("user_gcode", k_global, "shared_user_global_code"),
            _Field("item_gcode", k_global, "shared_item_global_code"),
        ]
    if k_local > 0:
        fields += [
            _Field("user_lcode", k_local, "private_user_local_code"),
            _Field("item_lcode", k_local, "private_item_local_code"),
        ]
    return fields


def _validate(
    backbone: str, num_users: int, num_items: int, k_global: int, k_local: int, embed_dim: int,
    hidden: Sequence[int], cross_layers: int, dropout: float,
) -> None:
    if backbone not in BACKBONES:
        raise ValueError(f"unknown backbone {backbone!r}; allowed: {', '.join(BACKBONES)}")
    if num_users < 1 or num_items < 1:
        raise ValueError(f"num_users and num_items must be >= 1, got {num_users} and {num_items}")
    if k_global < 0 or k_local < 0:
        raise ValueError(f"k_global and k_local must be >= 0, got {k_global} and {k_local}")
    if embed_dim < 1:
        raise ValueError(f"embed_dim must be >= 1, got {embed_dim}")
    if not hidden or any(units < 1 for units in hidden):
        raise ValueError(f"hidden must be a non-empty sequence of positive widths, got {tuple(hidden)}")
    if backbone == "dcnv2" and cross_layers < 1:
        raise ValueError(f"cross_layers must be >= 1 for dcnv2, got {cross_layers}")
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")


def _mlp(x: tf.Tensor, hidden: Sequence[int], dropout: float, prefix: str = "shared") -> tf.Tensor:
    for i, units in enumerate(hidden):
        x = tf.keras.layers.Dense(units, activation="relu", name=f"{prefix}_dnn_{i}")(x)
        if dropout > 0:
            x = tf.keras.layers.Dropout(dropout, name=f"{prefix}_dnn_dropout_{i}")(x)
    return x


def build_ctr_model(
    backbone: str,
    *,
    num_users: int,
    num_items: int,
    k_global: int = 0,
    k_local: int = 0,
    embed_dim: int = 16,
    hidden: tuple[int, ...] = (64, 32),
    cross_layers: int = 2,
    dropout: float = 0.0,
    share_interaction: bool = True,
) -> tf.keras.Model:
    """Builds an uncompiled model: dict of int32 scalar features -> click probability, (batch, 1).

    `share_interaction=False` names the FM/cross/MLP/output layers `private_*`: then only the global-code
    embeddings are federated, and every market keeps its own interaction function.

    DeepFM: logit = sum of first-order terms + FM second-order term + DNN logit (the DNN's output
    bias is the global bias), as in the original paper, so each part stays interpretable.

    DCN-v2 is the *parallel* variant: the cross network and the MLP both read the concatenated field
    embeddings and their outputs are concatenated into the logit. With only 2-6 fields the explicit
    bounded-degree crosses (user x item, item x code, ...) are most of the signal; in parallel they
    reach the logit directly instead of being re-mixed through the ReLU MLP, and the structure
    mirrors DeepFM (explicit term + implicit term), which keeps the backbone comparison fair.

    The output is float32 of shape (batch, 1); labels of shape (batch,) also work with
    `BinaryCrossentropy`, which expands y_true to match.
    """
    _validate(backbone, num_users, num_items, k_global, k_local, embed_dim, hidden, cross_layers, dropout)
    fields = _fields(num_users, num_items, k_global, k_local)
    inputs = {f.input_name: tf.keras.Input(shape=(), dtype=tf.int32, name=f.input_name) for f in fields}
    embedded = [
        tf.keras.layers.Embedding(f.vocab_size, embed_dim, name=f"{f.layer_stem}_embedding")(inputs[f.input_name])
        for f in fields
    ]
    p = "shared" if share_interaction else "private"
    concat = tf.keras.layers.Concatenate(name=f"{p}_field_concat")(embedded)
    deep = _mlp(concat, hidden, dropout, p)

    if backbone == "deepfm":
        first_order = tf.keras.layers.Add(name=f"{p}_first_order_sum")([
            tf.keras.layers.Embedding(f.vocab_size, 1, name=f"{f.layer_stem}_first_order")(inputs[f.input_name])
            for f in fields
        ])
        second_order = FMInteraction(name=f"{p}_fm")(embedded)
        deep_logit = tf.keras.layers.Dense(1, name=f"{p}_dnn_logit")(deep)
        logit = tf.keras.layers.Add(name=f"{p}_logit")([first_order, second_order, deep_logit])
    else:
        crossed = CrossNet(cross_layers, name=f"{p}_cross")(concat)
        both = tf.keras.layers.Concatenate(name=f"{p}_cross_deep_concat")([crossed, deep])
        logit = tf.keras.layers.Dense(1, name=f"{p}_logit")(both)

    prob = tf.keras.layers.Activation("sigmoid", dtype="float32", name=f"{p}_output")(logit)
    return tf.keras.Model(inputs=inputs, outputs=prob, name=f"fedmm_{backbone}")


def shared_and_private_variables(model: tf.keras.Model) -> tuple[list[tf.Variable], list[tf.Variable]]:
    """Splits the trainable variables by the naming rule; raises on any variable matching neither.

    Raising (rather than defaulting to private) turns a mis-named layer into an immediate error
    instead of a silently un-federated (or worse, leaked) weight.
    """
    shared: list[tf.Variable] = []
    private: list[tf.Variable] = []
    unmatched: list[str] = []
    for variable in model.trainable_variables:
        if is_shared(variable.name):
            shared.append(variable)
        elif is_private(variable.name):
            private.append(variable)
        else:
            unmatched.append(variable.name)
    if unmatched:
        raise ValueError(
            f"variables not under a shared_*/private_* layer: {', '.join(unmatched)}; rename their layers"
        )
    return shared, private
