"""Health statistics of a learned codebook: how many codes are used, how evenly, how often they collide.

A collapsing quantizer shows up as low usage and perplexity; codes too coarse to tell entities apart
show up as a high collision rate.
"""

from __future__ import annotations

import numpy as np
from scipy.stats import entropy


def _code_counts(codes: np.ndarray, num_codes: int) -> np.ndarray:
    codes = np.asarray(codes)
    if codes.ndim != 1:
        raise ValueError(f"codes must be 1-d (one code per entity), got shape {codes.shape}")
    if codes.size == 0:
        raise ValueError("codes is empty")
    if codes.min() < 0 or codes.max() >= num_codes:
        raise ValueError(f"codes must lie in [0, {num_codes}), got range [{codes.min()}, {codes.max()}]")
    return np.bincount(codes, minlength=num_codes)


def code_usage(codes: np.ndarray, num_codes: int) -> float:
    """Number of distinct codes assigned to at least one entity, divided by `num_codes`."""
    return float(np.count_nonzero(_code_counts(codes, num_codes)) / num_codes)


def perplexity(codes: np.ndarray, num_codes: int) -> float:
    """exp(H), H = -sum_k p_k ln p_k over the empirical code distribution (p_k = count_k / n).

    Reads as the effective number of equally used codes: 1 when all entities share one code,
    `num_codes` when usage is perfectly uniform.
    """
    return float(np.exp(entropy(_code_counts(codes, num_codes))))


def collision_rate(global_codes: np.ndarray, local_codes: np.ndarray) -> float:
    """Fraction of entities whose (global, local) code pair is also held by at least one other entity.

    Counted over entities, not pairs: 3 entities sharing one pair contribute 3 collisions.
    """
    global_codes, local_codes = np.asarray(global_codes), np.asarray(local_codes)
    if global_codes.ndim != 1 or global_codes.shape != local_codes.shape or global_codes.size == 0:
        raise ValueError(
            f"global_codes and local_codes must be non-empty 1-d arrays of equal length, "
            f"got shapes {global_codes.shape} and {local_codes.shape}"
        )
    _, inverse, counts = np.unique(
        np.stack([global_codes, local_codes], axis=1), axis=0, return_inverse=True, return_counts=True
    )
    return float(np.mean(counts[inverse.reshape(-1)] > 1))
