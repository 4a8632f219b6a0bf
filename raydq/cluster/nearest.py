"""The distinct row nearest each centroid: how k-means centroids become a batch of real pool items."""

from __future__ import annotations

import numpy as np


def nearest_distinct(
    x: np.ndarray,
    centroids: np.ndarray,
    *,
    normalize: bool = False,
    allowed: np.ndarray | None = None,
    chunk: int = 65536,
) -> np.ndarray:
    """Row indices into ``x``, one per centroid, all distinct: each centroid gets its nearest row not already taken.

    Centroids whose nearest row is closest choose first, so a row shared by two centroids goes to the one it fits
    best and the other takes its next nearest. Every centroid keeps its ``k`` nearest rows (``k`` = number of
    centroids), which is always enough for distinct picks. With ``normalize`` each row of ``x`` is L2-normalised
    chunk by chunk (no normalised copy of ``x``). Only rows where ``allowed`` is True are eligible (no copy of the
    allowed rows either). Memory stays O(chunk * k).
    """
    x = np.asarray(x)
    c = np.ascontiguousarray(centroids, dtype=np.float32)
    if x.ndim != 2 or c.ndim != 2 or x.shape[1] != c.shape[1]:
        raise ValueError(f"x {x.shape} and centroids {c.shape} must be 2-D with the same width")
    n, k = len(x), len(c)
    n_allowed = n if allowed is None else int(np.count_nonzero(allowed))
    if k > n_allowed:
        raise ValueError(f"{k} centroids need at least {k} eligible rows, got {n_allowed}")
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    keep = min(k, n)
    best_d = np.full((k, 0), np.inf, dtype=np.float32)
    best_i = np.zeros((k, 0), dtype=np.int64)
    cc = (c * c).sum(axis=1)[:, None]
    for s in range(0, n, chunk):
        xs = np.asarray(x[s : s + chunk], dtype=np.float32)
        if normalize:
            xs = xs / np.maximum(np.linalg.norm(xs, axis=1, keepdims=True), np.float32(1e-12))
        d2 = cc - 2.0 * (c @ xs.T) + (xs * xs).sum(axis=1)[None, :]  # (k, chunk) squared distances
        if allowed is not None:
            d2[:, ~allowed[s : s + chunk]] = np.inf
        cand_d = np.concatenate([best_d, d2], axis=1)
        cand_i = np.concatenate([best_i, np.broadcast_to(np.arange(s, s + len(xs)), d2.shape)], axis=1)
        if cand_d.shape[1] > keep:
            part = np.argpartition(cand_d, keep - 1, axis=1)[:, :keep]
            cand_d = np.take_along_axis(cand_d, part, axis=1)
            cand_i = np.take_along_axis(cand_i, part, axis=1)
        best_d, best_i = cand_d, cand_i
    order = np.argsort(best_d, axis=1, kind="stable")
    best_d = np.take_along_axis(best_d, order, axis=1)
    best_i = np.take_along_axis(best_i, order, axis=1)
    taken: set[int] = set()
    out = np.empty(k, dtype=np.int64)
    for j in np.argsort(best_d[:, 0], kind="stable"):
        for i in best_i[j]:
            if int(i) not in taken:
                taken.add(int(i))
                out[j] = i
                break
    return out
