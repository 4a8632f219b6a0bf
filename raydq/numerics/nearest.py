"""The distinct row nearest each centroid, in two steps that a sharded pool can split.

1. ``nearest_keys`` (per shard): for every centroid, the ``keep`` nearest eligible rows of this shard, as sort keys
   that pack the squared distance (its float32 bits, which order like the floats for non-negative values) above the
   global row number. Keys are unique per row, so "the ``keep`` smallest" is the same set however the pool is split,
   even among exactly equal distances (duplicate embeddings), and the lists are small messages.
2. ``resolve_distinct`` (driver): merge the shards' keys (``merge_nearest_keys``) and give each centroid its nearest
   row not already taken, centroids whose nearest row is closest choosing first.

With ``keep`` = the number of centroids every centroid is sure to find a free row, so the result equals the
single-machine answer of "nearest distinct row per centroid": ``nearest_distinct_rows`` runs both steps on one
machine. The search runs on an array module ``xp`` (cupy puts it on the GPU that clustered; rows are moved there
block by block) and only the (k, keep) keys come back to the host.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from raydq.deadline import Deadline, check
from raydq.numerics.array_module import ArrayModule, to_host
from raydq.numerics.distances import sq_distances
from raydq.numerics.grid import grid_cells
from raydq.numerics.norms import l2_normalise, row_sq_norms

_ROW_BITS = np.uint64(32)
_ROW_MASK = np.uint64(0xFFFFFFFF)
_NONE = np.uint64(2**64 - 1)  # an empty slot: larger than every real key


#: Rows per distance block: a global grid, so each row meets the same block shape whichever shard holds it. A block
#: holds a float32 copy of its rows (25 MiB at D = 768) and a (k, rows) distance array (32 MiB at k = 1000).
BLOCK_ROWS = 8192


def pack_keys(d2, rows, xp: ArrayModule = np):
    """uint64 keys ordering first by squared distance ``d2`` (float32, >= 0) and then by global row (< 2**32)."""
    d2 = xp.maximum(d2, xp.float32(0)).astype(xp.float32, copy=False) + xp.float32(0)  # no -0.0
    return (d2.view(xp.uint32).astype(xp.uint64) << _ROW_BITS) | (xp.asarray(rows, dtype=xp.uint64) & _ROW_MASK)


def unpack_keys(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(squared distances, global rows)`` of packed keys; empty slots give ``inf`` and row -1."""
    keys = np.asarray(keys, dtype=np.uint64)
    d2 = (keys >> _ROW_BITS).astype(np.uint32).view(np.float32)
    rows = (keys & _ROW_MASK).astype(np.int64)
    empty = keys == _NONE
    return np.where(empty, np.float32(np.inf), d2), np.where(empty, -1, rows)


def _smallest(keys, keep: int, xp: ArrayModule = np):
    """The ``keep`` smallest keys of every row of a (k, m) key array, sorted."""
    if keys.shape[1] > keep:
        keys = xp.partition(keys, keep - 1, axis=1)[:, :keep]
    return xp.sort(keys, axis=1)


def nearest_keys(
    x: np.ndarray,
    centroids: np.ndarray,
    keep: int,
    *,
    allowed: np.ndarray | None = None,
    normalise: bool = False,
    row_offset: int = 0,
    xp: ArrayModule = np,
    deadline: Deadline | None = None,
) -> np.ndarray:
    """``(k, keep)`` sorted keys (see ``pack_keys``) of the ``keep`` nearest rows of ``x`` per centroid, rows numbered
    from ``row_offset``; only rows where ``allowed`` (a host mask) is True count. ``x`` may be float16 (converted per
    block), rows are L2-normalised per block with ``normalise``, and ``deadline`` is checked between blocks. The
    distances are computed on ``xp``; memory stays O(k x (block + keep))."""
    if x.ndim != 2 or np.ndim(centroids) != 2 or x.shape[1] != np.shape(centroids)[1]:
        raise ValueError(f"x {x.shape} and centroids {np.shape(centroids)} must be 2-D with the same width")
    if row_offset + len(x) > 2**32:
        raise ValueError("nearest_keys numbers rows in 32 bits: a pool of more than 2**32 rows is not supported")
    c = xp.asarray(centroids, dtype=xp.float32)
    k = len(c)
    best = xp.full((k, keep), _NONE, dtype=xp.uint64)
    if k == 0 or keep == 0:
        return to_host(best)
    c_sq = row_sq_norms(c, xp)
    for _, a, e in grid_cells(row_offset, len(x), BLOCK_ROWS):
        check(deadline)
        block = x[a:e]
        xs = xp.asarray(block, dtype=xp.float32)
        rows = xp.arange(a + row_offset, e + row_offset, dtype=xp.int64)
        if allowed is not None:
            ok = np.flatnonzero(allowed[a:e])
            if len(ok) == 0:
                continue
            if len(ok) < e - a:
                ok = xp.asarray(ok)
                xs, rows = xs[ok], rows[ok]
        if normalise:
            xs = l2_normalise(xs, copy=xs is block, xp=xp)  # never scale the caller's rows in place
        d2 = sq_distances(c, xs, a_sq=c_sq, xp=xp)
        keys = pack_keys(d2, xp.broadcast_to(rows, d2.shape), xp)
        best = _smallest(xp.concatenate([best, keys], axis=1), keep, xp)
    return to_host(best)


def merge_nearest_keys(parts: Sequence[np.ndarray], keep: int) -> np.ndarray:
    """The ``keep`` smallest keys per centroid over several shards' ``nearest_keys``."""
    return _smallest(np.concatenate(list(parts), axis=1), keep)


def resolve_distinct(keys: np.ndarray, *, deadline: Deadline | None = None) -> np.ndarray:
    """One distinct global row per centroid from merged sorted keys ``(k, m)``: centroids choose in the order of their
    nearest key (closest first), each taking its nearest row not taken yet."""
    k = len(keys)
    _, rows = unpack_keys(keys)
    taken: set[int] = set()
    out = np.full(k, -1, dtype=np.int64)
    for j in np.argsort(keys[:, 0], kind="stable"):
        if j % 256 == 0:
            check(deadline)
        for r in rows[j]:
            if r >= 0 and int(r) not in taken:
                taken.add(int(r))
                out[j] = r
                break
        else:
            raise ValueError(f"centroid {j} found no free row among its {keys.shape[1]} nearest")
    return out


def nearest_distinct_rows(
    x: np.ndarray,
    centroids: np.ndarray,
    *,
    allowed: np.ndarray | None = None,
    normalise: bool = False,
    xp: ArrayModule = np,
    deadline: Deadline | None = None,
) -> np.ndarray:
    """Rows of an in-memory ``x``, one per centroid, all distinct (both steps on one machine; see ``nearest_keys``
    for the arguments)."""
    k = len(centroids)
    if allowed is not None and np.shape(allowed) != (len(x),):
        raise ValueError(f"allowed must be a boolean mask of shape ({len(x)},), got {np.shape(allowed)}")
    eligible = len(x) if allowed is None else int(np.count_nonzero(allowed))
    if k > eligible:
        raise ValueError(f"{k} centroids need at least {k} eligible rows, got {eligible}")
    keys = nearest_keys(x, centroids, k, allowed=allowed, normalise=normalise, xp=xp, deadline=deadline)
    return resolve_distinct(keys, deadline=deadline)
