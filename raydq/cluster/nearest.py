"""The distinct row nearest each centroid: how k-means centroids become a batch of real pool items."""

from __future__ import annotations

import numpy as np

from raydq.cluster.choose import kmeans_backend_name
from raydq.cluster.cuda import cupy_module
from raydq.cluster.lloyd import ArrayModule, row_norms_sq


def _array_module() -> ArrayModule:
    """cupy where k-means runs on the device (the search is the same size as an assignment pass), else numpy."""
    return cupy_module() if kmeans_backend_name() == "cuml" else np


def _host(a) -> np.ndarray:
    return a.get() if hasattr(a, "get") else np.asarray(a)


def nearest_distinct(
    x: np.ndarray,
    centroids: np.ndarray,
    *,
    normalize: bool = False,
    allowed: np.ndarray | None = None,
    chunk: int = 65536,
    xp: ArrayModule | None = None,
) -> np.ndarray:
    """Row indices into ``x``, one per centroid, all distinct: each centroid gets its nearest row not already taken.

    Centroids whose nearest row is closest choose first, so a row shared by two centroids goes to the one it fits
    best and the other takes its next nearest. Every centroid keeps its ``k`` nearest rows (``k`` = number of
    centroids), which is always enough for distinct picks. With ``normalize`` each row of ``x`` is L2-normalised
    chunk by chunk (no normalised copy of ``x``). Only rows where ``allowed`` is True are eligible (no copy of the
    allowed rows either). Memory stays O(chunk * k). The search runs on ``xp`` (default: the device when the k-means
    backend is cuML, chunks of ``x`` moved there as they are used); only the (k, k) shortlist comes back.
    """
    x = np.asarray(x)
    c = np.ascontiguousarray(centroids, dtype=np.float32)
    if x.ndim != 2 or c.ndim != 2 or x.shape[1] != c.shape[1]:
        raise ValueError(f"x {x.shape} and centroids {c.shape} must be 2-D with the same width")
    if allowed is not None and np.shape(allowed) != (len(x),):
        raise ValueError(f"allowed must be a boolean mask of shape ({len(x)},), got {np.shape(allowed)}")
    n, k = len(x), len(c)
    n_allowed = n if allowed is None else int(np.count_nonzero(allowed))
    if k > n_allowed:
        raise ValueError(f"{k} centroids need at least {k} eligible rows, got {n_allowed}")
    if k == 0:
        return np.zeros(0, dtype=np.int64)
    xp = xp or _array_module()
    keep = min(k, n)
    cd = xp.asarray(c)
    best_d = xp.full((k, 0), np.inf, dtype=xp.float32)
    best_i = xp.zeros((k, 0), dtype=xp.int64)
    cc = row_norms_sq(cd, xp)[:, None]
    for s in range(0, n, chunk):
        xs = xp.asarray(x[s : s + chunk], dtype=xp.float32)
        if normalize:
            xs = xs / xp.maximum(xp.linalg.norm(xs, axis=1, keepdims=True), np.float32(1e-12))
        d2 = cc - 2.0 * (cd @ xs.T) + row_norms_sq(xs, xp)[None, :]  # (k, chunk) squared distances
        if allowed is not None:
            d2 = xp.where(xp.asarray(allowed[s : s + chunk], dtype=bool)[None, :], d2, xp.float32(np.inf))
        cand_d = xp.concatenate([best_d, d2], axis=1)
        cand_i = xp.concatenate([best_i, xp.broadcast_to(xp.arange(s, s + len(xs)), d2.shape)], axis=1)
        if cand_d.shape[1] > keep:
            part = xp.argpartition(cand_d, keep - 1, axis=1)[:, :keep]
            cand_d = xp.take_along_axis(cand_d, part, axis=1)
            cand_i = xp.take_along_axis(cand_i, part, axis=1)
        best_d, best_i = cand_d, cand_i
    best_d, best_i = _host(best_d), _host(best_i)
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
