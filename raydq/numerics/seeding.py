"""D² sampling (k-means++ seeding, Arthur & Vassilvitskii 2007): each next point is drawn with probability
proportional to its squared distance to the nearest point drawn so far.

``kmeans_plusplus`` seeds every k-means backend (so one seed means one start, whatever the backend), and BADGE
seeds on gradient embeddings through ``d2_sample`` with its own distance.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from raydq.numerics.distances import sq_distances_to
from raydq.numerics.norms import row_sq_norms


def d2_sample(
    n: int,
    k: int,
    sq_dist_to: Callable[[int], np.ndarray],
    rng: np.random.Generator,
    *,
    first: int | None = None,
    distinct: bool = False,
    deadline=None,
) -> np.ndarray:
    """``k`` row indices out of ``n`` by D² sampling. ``sq_dist_to(i)`` gives the squared distance of every row to
    row ``i``; ``first`` is the first pick (default: uniform). When every remaining distance is zero the next pick is
    uniform: over all rows, or over the rows not picked yet with ``distinct`` (which then never repeats a row).
    ``deadline`` is checked before every pick."""
    picks = np.empty(k, dtype=np.int64)
    picks[0] = int(rng.integers(n)) if first is None else int(first)
    closest = sq_dist_to(int(picks[0]))
    if distinct:
        closest[picks[0]] = 0
    for j in range(1, k):
        if deadline is not None:
            deadline.check()
        cdf = np.cumsum(closest, dtype=np.float64)
        total = cdf[-1]
        if total > 0:
            nxt = min(int(np.searchsorted(cdf, rng.random() * total, "right")), n - 1)
        elif distinct:
            rest = np.setdiff1d(np.arange(n), picks[:j])
            nxt = int(rest[rng.integers(len(rest))])
        else:
            nxt = int(rng.integers(n))
        picks[j] = nxt
        np.minimum(closest, sq_dist_to(nxt), out=closest)
        if distinct:
            closest[nxt] = 0
    return picks


def kmeans_plusplus(x: np.ndarray, k: int, rng: np.random.Generator, *, deadline=None) -> np.ndarray:
    """k-means++ initial centroids ``(k, d)`` float32 of the rows of ``x`` (the first uniform, then D²)."""
    sq = row_sq_norms(x)
    picks = d2_sample(len(x), k, lambda i: sq_distances_to(x, x[i], a_sq=sq), rng, deadline=deadline)
    return np.ascontiguousarray(x[picks], dtype=np.float32)
