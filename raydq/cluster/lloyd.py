"""Lloyd's k-means at the cost of its matrix products: the numpy backend's loop.

One iteration is one assignment pass (``raydq.numerics.distances.nearest_centroid``: ``x @ c.T`` in row chunks, with
precomputed norms) followed by the centroid update. The update is incremental: only rows whose cluster changed are
added to their new cluster's sum and taken from their old one. The first iteration touches every row, and after a few
iterations only a few percent do, so the update costs almost nothing beside the matrix product. It runs as a sparse
(k x n) +1/-1 matrix times ``x`` (scipy), which needs no gathered copy of the moved rows. Measured on 25,600 x 768
into 100 clusters (the shared 2-core machine, loaded): 18 ms for all rows, against 300 ms for sort +
``np.add.reduceat`` (which copies the rows), 0.95 s for ``np.add.at`` and 1.5 s for a dense one-hot product.

The assignment runs on row threads over single-threaded BLAS: each thread multiplies, takes the argmax and the
distances of its own chunks, so the work around the products is split over the cores as well.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from raydq.deadline import Deadline, check
from raydq.numerics.distances import nearest_centroid
from raydq.numerics.norms import row_sq_norms


@dataclass(frozen=True)
class LloydResult:
    """``centroids`` (k, d) float32; ``labels`` (n,) their assignment of the training rows; ``obj`` the objective
    (sum of squared distances) of each assignment pass, ``obj[-1]`` being that of ``centroids`` and ``labels``."""

    centroids: np.ndarray
    labels: np.ndarray
    obj: np.ndarray


def _moved_sums(x: np.ndarray, rows: np.ndarray, new: np.ndarray, old: np.ndarray, k: int) -> np.ndarray:
    """(k, d) float32: for each cluster, the sum of the rows that joined it minus those that left it (``old`` = -1:
    the row was in no cluster yet)."""
    was = old >= 0
    groups = np.concatenate([new, old[was]])
    cols = np.concatenate([rows, rows[was]])
    signs = np.concatenate([np.ones(len(rows), np.float32), np.full(int(was.sum()), -1.0, np.float32)])
    order = np.argsort(groups, kind="stable")
    indptr = np.zeros(k + 1, dtype=np.int64)
    np.cumsum(np.bincount(groups, minlength=k), out=indptr[1:])
    moves = sp.csr_matrix((signs[order], cols[order], indptr), shape=(k, len(x)))
    return np.asarray(moves @ x)


def _relocate_empty(
    x: np.ndarray, c: np.ndarray, dist: np.ndarray, labels: np.ndarray, sums: np.ndarray, counts: np.ndarray
) -> None:
    """Give each empty cluster the row farthest from its centroid (scikit-learn's rule), in place.

    This lowers the objective by that row's distance, where faiss's split of a large cluster adds a random
    perturbation. A row is taken only from a cluster that keeps other rows and only if it differs from its centroid,
    so fewer distinct rows than clusters leave the surplus clusters empty (their centroids stay) instead of
    shuffling duplicates between them forever."""
    empty = np.flatnonzero(counts == 0)
    if len(empty) == 0:
        return
    n_look = min(len(x), 4 * len(empty) + 16)
    far = np.argpartition(dist, len(x) - n_look)[len(x) - n_look :]
    far = far[np.argsort(-dist[far], kind="stable")]
    targets = iter(empty)
    target = next(targets)
    for p in far:
        src = labels[p]
        diff = x[p] - c[src]
        if counts[src] <= 1 or not float(diff @ diff) > 0.0:
            continue
        sums[src] -= x[p]
        counts[src] -= 1
        sums[target] = x[p]
        counts[target] = 1
        labels[p] = target
        target = next(targets, None)
        if target is None:
            return


def lloyd(
    x: np.ndarray,
    init: np.ndarray,
    *,
    niter: int,
    tol: float,
    deadline: Deadline | None = None,
    chunk_rows: int | None = None,
    n_threads: int = 1,
) -> LloydResult:
    """Lloyd's iterations from ``init`` on the float32 rows of ``x``.

    Each of at most ``niter`` iterations assigns every row to its nearest centroid (one matrix product, whose
    objective is recorded) and then moves the centroids to their rows' means. The move after the last assignment is
    skipped: the returned centroids are the ones the last pass measured, so ``obj[-1]`` is exactly their objective
    (faiss reports the objective of the centroids before its last move). With ``tol > 0`` the loop also stops as
    soon as no row changes cluster (a fixed point) or the objective fell by less than ``tol`` relative to itself;
    ``tol = 0`` runs exactly ``niter`` iterations. ``deadline`` is checked before every iteration. The assignment
    runs on ``n_threads`` row threads (see ``nearest_centroid``).
    """
    n, _ = x.shape
    k = len(init)
    x_sq = row_sq_norms(x)
    c = np.array(init, dtype=np.float32)
    labels = np.full(n, -1, dtype=np.int64)  # -1: in no cluster yet
    sums = np.zeros(c.shape, dtype=np.float64)
    counts = np.zeros(k, dtype=np.int64)
    obj: list[float] = []
    with ThreadPoolExecutor(max(1, n_threads)) as pool:
        for it in range(niter):
            check(deadline)
            dist, new = nearest_centroid(x, c, x_sq=x_sq, chunk_rows=chunk_rows, n_threads=n_threads, pool=pool)
            obj.append(float(dist.sum(dtype=np.float64)))
            moved = np.flatnonzero(new != labels)
            old = labels[moved]
            labels = new
            if it == niter - 1:
                break
            if tol > 0 and (len(moved) == 0 or (it > 0 and obj[-2] - obj[-1] <= tol * obj[-1])):
                break
            if len(moved):
                sums += _moved_sums(x, moved, new[moved], old, k)
                counts += np.bincount(new[moved], minlength=k) - np.bincount(old[old >= 0], minlength=k)
            _relocate_empty(x, c, dist, labels, sums, counts)
            full = counts > 0
            c[full] = (sums[full] / counts[full, None]).astype(np.float32)
    return LloydResult(centroids=c, labels=labels, obj=np.asarray(obj))
