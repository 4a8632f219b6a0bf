"""D² sampling (k-means++ seeding, Arthur & Vassilvitskii 2007): each next point is drawn with probability
proportional to its squared distance to the nearest point drawn so far.

``kmeans_plusplus`` seeds every k-means backend (so one seed means one start, whatever the backend: on the CPU, or
on a GPU with cupy as ``xp``), and BADGE seeds on gradient embeddings through ``d2_sample`` with its own distance.
The random draws always come from a host generator, so they do not depend on the device.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from raydq.deadline import Deadline, check
from raydq.numerics.array_module import ArrayModule
from raydq.numerics.distances import sq_distances_to
from raydq.numerics.norms import row_sq_norms


def d2_sample(
    n: int,
    k: int,
    sq_dist_to: Callable[[int], object],
    rng: np.random.Generator,
    *,
    first: int | None = None,
    distinct: bool = False,
    xp: ArrayModule = np,
    deadline: Deadline | None = None,
) -> np.ndarray:
    """``k`` row indices (a host array) out of ``n`` by D² sampling. ``sq_dist_to(i)`` gives the squared distance
    of every row to row ``i``, as a new array on ``xp``; ``first`` is the first pick (default: uniform). When every
    remaining distance is zero the next pick is uniform: over all rows, or over the rows not picked yet with
    ``distinct`` (which then never repeats a row). ``deadline`` is checked before every pick after the first."""
    picks = np.empty(k, dtype=np.int64)
    picks[0] = int(rng.integers(n)) if first is None else int(first)
    closest = sq_dist_to(int(picks[0]))
    if distinct:
        closest[picks[0]] = 0
    for j in range(1, k):
        check(deadline)
        cdf = xp.cumsum(closest, dtype=xp.float64)
        total = float(cdf[-1])
        if total > 0:
            target = xp.asarray([rng.random() * total])
            nxt = min(int(xp.searchsorted(cdf, target, side="right")[0]), n - 1)
        elif distinct:
            rest = np.setdiff1d(np.arange(n), picks[:j])
            nxt = int(rest[rng.integers(len(rest))])
        else:  # every row sits on a pick already: any row will do
            nxt = int(rng.integers(n))
        picks[j] = nxt
        xp.minimum(closest, sq_dist_to(nxt), out=closest)
        if distinct:
            closest[nxt] = 0
    return picks


def kmeans_plusplus(x, k: int, rng: np.random.Generator, *, xp: ArrayModule = np, deadline: Deadline | None = None):
    """k-means++ initial centroids ``(k, d)`` float32 on ``xp`` of the rows of ``x`` (float32, on ``xp``'s
    device): the first uniform, then D²."""
    sq = row_sq_norms(x, xp)
    picks = d2_sample(len(x), k, lambda i: sq_distances_to(x, x[i], a_sq=sq, xp=xp), rng, xp=xp, deadline=deadline)
    return xp.ascontiguousarray(x[xp.asarray(picks)], dtype=xp.float32)
