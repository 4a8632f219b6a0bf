"""Lloyd's k-means at the cost of its matrix products, and the kernels every backend shares.

``kmeans_plusplus`` (seeding) and ``nearest_centroid`` (assignment) are written against an array module ``xp``:
numpy here, cupy when the device backend passes it, so the same lines run on the CPU and on a GPU.

``lloyd`` is the numpy loop. One iteration is one assignment pass (``x @ c.T`` in row chunks, with precomputed
norms) followed by the centroid update. The update is incremental: only rows whose cluster changed are added to
their new cluster's sum and taken from their old one. The first iteration touches every row, and after a few
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
from typing import Any

import numpy as np
import scipy.sparse as sp

from raydq.deadline import Deadline, check

ArrayModule = Any  # numpy, or cupy on a device

#: Bytes of the (chunk, k) score block of one assignment step: large enough for an efficient matrix product,
#: small enough to stay in cache for the argmax that follows.
SCORE_BLOCK_BYTES = 4 << 20
MIN_CHUNK_ROWS = 256
DEVICE_CHUNK_ROWS = 1 << 15


def row_norms_sq(x, xp: ArrayModule = np):
    """Squared L2 norm of each row (float32)."""
    return xp.einsum("ij,ij->i", x, x)


def default_chunk_rows(k: int) -> int:
    return max(MIN_CHUNK_ROWS, SCORE_BLOCK_BYTES // (4 * max(1, k)))


def kmeans_plusplus(x, k: int, rng: np.random.Generator, *, xp: ArrayModule = np, deadline: Deadline | None = None):
    """k-means++ seeding (D² sampling) of ``k`` centers among the rows of ``x`` (float32, on ``xp``'s device).

    The random draws come from the host generator ``rng``, so one seed gives one start on either device."""
    n = len(x)
    sq = row_norms_sq(x, xp)
    centers = xp.empty((k, x.shape[1]), dtype=xp.float32)
    first = int(rng.integers(n))
    centers[0] = x[first]
    closest = xp.maximum(sq - 2.0 * (x @ x[first]) + sq[first], 0.0)
    for j in range(1, k):
        check(deadline)
        cdf = xp.cumsum(closest, dtype=xp.float64)
        total = float(cdf[-1])
        if total <= 0:  # every row sits on a center already: any row will do
            nxt = int(rng.integers(n))
        else:
            target = xp.asarray([rng.random() * total])
            nxt = min(int(xp.searchsorted(cdf, target, side="right")[0]), n - 1)
        centers[j] = x[nxt]
        closest = xp.minimum(closest, xp.maximum(sq - 2.0 * (x @ x[nxt]) + sq[nxt], 0.0))
    return centers


def nearest_centroid(
    x,
    c,
    *,
    xp: ArrayModule = np,
    x_sq=None,
    chunk_rows: int | None = None,
    n_threads: int = 1,
    pool: ThreadPoolExecutor | None = None,
):
    """``(dist, idx)``: squared distance to, and index of, the nearest row of ``c`` for each row of ``x``.

    ``x`` may live on the host while ``xp`` is cupy: each row chunk is moved to the device as it is used. ``x_sq``
    (the rows' squared norms, on ``xp``) saves recomputing them on every pass of a loop. Ties go to the lower index.

    With numpy and ``n_threads > 1`` the row chunks run on that many threads, each doing its own products, argmax
    and distances. Run it under single-threaded BLAS then (``single_thread_blas``): the products are as fast as
    with BLAS threads, and the rest of the pass, which BLAS threads would leave to one core, is split too. A loop
    passes its ``pool`` (of ``n_threads`` workers), so that threads start once, not on every pass.
    """
    c = xp.asarray(c, dtype=xp.float32)
    n, k = len(x), len(c)
    c_t = xp.ascontiguousarray(c.T)
    half_c_sq = 0.5 * row_norms_sq(c, xp)
    if xp is np:  # a few chunks per thread, so that threads finish together
        threads = max(1, int(n_threads))
        chunk = chunk_rows or min(default_chunk_rows(k), max(MIN_CHUNK_ROWS, -(-n // (4 * threads))))
    else:  # a device wants large products; its memory holds the score block easily
        threads, chunk = 1, chunk_rows or max(default_chunk_rows(k), DEVICE_CHUNK_ROWS)
    starts = range(0, max(n, 1), chunk)
    threads = min(threads, len(starts))
    dist = xp.empty(n, dtype=xp.float32)
    idx = xp.empty(n, dtype=xp.int64)

    def run(worker: int) -> None:
        scores = xp.empty((min(chunk, n), k), dtype=xp.float32)
        for s in starts[worker::threads]:
            xs = xp.asarray(x[s : s + chunk], dtype=xp.float32)
            m = len(xs)
            block = scores[:m]
            xp.matmul(xs, c_t, out=block)
            block -= half_c_sq  # x.c - |c|²/2 is largest for the nearest c: |x - c|² = |x|² - 2 (x.c - |c|²/2)
            i = block.argmax(axis=1)
            best = block[xp.arange(m), i]
            xs_sq = row_norms_sq(xs, xp) if x_sq is None else x_sq[s : s + m]
            dist[s : s + m] = xp.maximum(xs_sq - 2.0 * best, 0.0)
            idx[s : s + m] = i

    if threads == 1:
        run(0)
    elif pool is not None:
        for f in [pool.submit(run, w) for w in range(threads)]:
            f.result()
    else:
        with ThreadPoolExecutor(threads) as own:
            for f in [own.submit(run, w) for w in range(threads)]:
                f.result()
    return dist, idx


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
    x_sq = row_norms_sq(x)
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
