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
