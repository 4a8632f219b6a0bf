"""Counter-based uniforms: a row's random number depends only on ``(seed, global row)``.

Sampling, random fill, random picks and tie-breaking all key rows this way, so a pool split into any number of shards
draws exactly what the whole pool draws, and no shard needs to know about the others.
"""

from __future__ import annotations

import numpy as np

_GOLDEN = 0x9E3779B97F4A7C15


def row_uniforms(seed: int, rows: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) floats from splitmix64 of ``rows`` under ``seed``: the same row always gets the same value."""
    with np.errstate(over="ignore"):
        z = np.asarray(rows, dtype=np.uint64) + np.uint64((int(seed) * _GOLDEN) % 2**64)
        z = z + np.uint64(_GOLDEN)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)


def row_gumbels(seed: int, rows: np.ndarray) -> np.ndarray:
    """Standard Gumbel noise keyed by row (for Gumbel top-k sampling), finite for every row."""
    u = np.clip(row_uniforms(seed, rows), 2.0**-53, 1.0 - 2.0**-53)
    return -np.log(-np.log(u))
