"""Squared Euclidean distances in GEMM form: ``|a|² - 2 a·b + |b|²``, one matrix product instead of N x M x D
differences, clipped at 0 (rounding can make the expansion slightly negative). Large problems run in chunks so memory
stays bounded whatever the input size.

``nearest_centroid`` is k-means' assignment step (every backend's, and Lloyd's loop in ``raydq.cluster.lloyd``):
written against an array module ``xp``, so the same lines run on the CPU (on row threads) and on a GPU.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from raydq.deadline import check
from raydq.numerics.array_module import ArrayModule
from raydq.numerics.norms import row_sq_norms

#: Elements of a distance block computed at once (64 MiB of float32).
BLOCK_ELEMENTS = 1 << 24

#: Bytes of the (chunk, k) score block of one assignment step: large enough for an efficient matrix product,
#: small enough to stay in cache for the argmax that follows.
SCORE_BLOCK_BYTES = 4 << 20
MIN_CHUNK_ROWS = 256
DEVICE_CHUNK_ROWS = 1 << 15


def sq_distances(A, B, *, a_sq=None, b_sq=None, xp: ArrayModule = np):
    """``(len(A), len(B))`` squared distances; pass ``a_sq``/``b_sq`` (row squared norms) when already known."""
    a_sq = row_sq_norms(A, xp) if a_sq is None else a_sq
    b_sq = row_sq_norms(B, xp) if b_sq is None else b_sq
    d2 = A @ B.T
    d2 *= -2
    d2 += a_sq[:, None]
    d2 += b_sq[None, :]
    return xp.maximum(d2, 0, out=d2)


def sq_distances_to(A, b, *, a_sq=None, xp: ArrayModule = np):
    """Squared distance of every row of ``A`` to the single point ``b`` (one matrix-vector product)."""
    a_sq = row_sq_norms(A, xp) if a_sq is None else a_sq
    return xp.maximum(a_sq - 2 * (A @ b) + b @ b, 0)


def min_sq_distances(A: np.ndarray, B: np.ndarray, *, deadline=None) -> np.ndarray:
    """For each row of ``A``, the squared distance to its nearest row of ``B`` (``inf`` when ``B`` is empty), in
    blocks of at most ``BLOCK_ELEMENTS`` distances; ``deadline`` (a ``raydq.deadline.Deadline``) is checked between
    blocks."""
    out = np.full(len(A), np.inf, dtype=np.result_type(A.dtype, B.dtype, np.float32))
    if len(B) == 0 or len(A) == 0:
        return out
    a_sq, b_sq = row_sq_norms(A), row_sq_norms(B)
    cols = max(1, min(len(B), BLOCK_ELEMENTS // max(1, len(A))))
    rows = max(1, BLOCK_ELEMENTS // cols)
    for s in range(0, len(B), cols):
        for r in range(0, len(A), rows):
            check(deadline)
            d2 = sq_distances(A[r : r + rows], B[s : s + cols], a_sq=a_sq[r : r + rows], b_sq=b_sq[s : s + cols])
            np.minimum(out[r : r + rows], d2.min(axis=1), out=out[r : r + rows])
    return out


def default_chunk_rows(k: int) -> int:
    """Rows per assignment chunk against ``k`` centroids: a score block of about ``SCORE_BLOCK_BYTES``."""
    return max(MIN_CHUNK_ROWS, SCORE_BLOCK_BYTES // (4 * max(1, k)))


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
    and distances. Run it under single-threaded BLAS then (``raydq.numerics.threads.single_thread_blas``): the
    products are as fast as with BLAS threads, and the rest of the pass, which BLAS threads would leave to one core,
    is split too. A loop passes its ``pool`` (of ``n_threads`` workers), so that threads start once, not on every
    pass.
    """
    c = xp.asarray(c, dtype=xp.float32)
    n, k = len(x), len(c)
    c_t = xp.ascontiguousarray(c.T)
    half_c_sq = 0.5 * row_sq_norms(c, xp)
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
            xs_sq = row_sq_norms(xs, xp) if x_sq is None else x_sq[s : s + m]
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
