"""The naming rule that decides what may leave a market.

Every Keras layer whose weights may be federated is named `shared_*`; every layer whose weights must
stay in its market is named `private_*`. The federated processes select variables by this prefix (never
by position), and the privacy audit checks the same rule on the computations' type signatures.
"""

SHARED_PREFIX = "shared_"
PRIVATE_PREFIX = "private_"


def is_shared(variable_name: str) -> bool:
    """True when the variable belongs to a `shared_*` layer (the name's first path component)."""
    return variable_name.split("/", 1)[0].startswith(SHARED_PREFIX)


def is_private(variable_name: str) -> bool:
    return variable_name.split("/", 1)[0].startswith(PRIVATE_PREFIX)


def layer_weights(model, prefix: str, trainable: bool = True) -> list:
    """Weights of the model's layers named `prefix*`, in layer order.

    Selection goes by layer name, which Keras keeps exactly as given, rather than by variable name,
    which it may uniquify (`..._1/kernel:0`) when TFF builds the same model twice in one graph.
    """
    return [
        w
        for layer in model.layers
        if layer.name.startswith(prefix)
        for w in (layer.trainable_weights if trainable else layer.non_trainable_weights)
    ]


def check_named(model) -> None:
    """Every layer that owns weights must say whether they may leave the market."""
    unnamed = [layer.name for layer in model.layers
               if layer.weights and not layer.name.startswith((SHARED_PREFIX, PRIVATE_PREFIX))]
    if unnamed:
        raise ValueError(f"layers {unnamed} own weights but are named neither {SHARED_PREFIX}* nor {PRIVATE_PREFIX}*")
