"""Squared Euclidean distances in GEMM form: ``|a|² - 2 a·b + |b|²``, one matrix product instead of N x M x D
differences, clipped at 0 (rounding can make the expansion slightly negative). Large problems run in chunks so memory
stays bounded whatever the input size."""

from __future__ import annotations

import numpy as np

from raydq.numerics.norms import row_sq_norms

#: Elements of a distance block computed at once (64 MiB of float32).
BLOCK_ELEMENTS = 1 << 24


def sq_distances(
    A: np.ndarray, B: np.ndarray, *, a_sq: np.ndarray | None = None, b_sq: np.ndarray | None = None
) -> np.ndarray:
    """``(len(A), len(B))`` squared distances; pass ``a_sq``/``b_sq`` (row squared norms) when already known."""
    a_sq = row_sq_norms(A) if a_sq is None else a_sq
    b_sq = row_sq_norms(B) if b_sq is None else b_sq
    d2 = A @ B.T
    d2 *= -2
    d2 += a_sq[:, None]
    d2 += b_sq[None, :]
    return np.maximum(d2, 0, out=d2)


def sq_distances_to(A: np.ndarray, b: np.ndarray, *, a_sq: np.ndarray | None = None) -> np.ndarray:
    """Squared distance of every row of ``A`` to the single point ``b`` (one matrix-vector product)."""
    a_sq = row_sq_norms(A) if a_sq is None else a_sq
    return np.maximum(a_sq - 2 * (A @ b) + b @ b, 0)


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
            if deadline is not None:
                deadline.check()
            d2 = sq_distances(A[r : r + rows], B[s : s + cols], a_sq=a_sq[r : r + rows], b_sq=b_sq[s : s + cols])
            np.minimum(out[r : r + rows], d2.min(axis=1), out=out[r : r + rows])
    return out


def nearest_centroids(x: np.ndarray, c: np.ndarray, *, chunk: int = 65536) -> tuple[np.ndarray, np.ndarray]:
    """``(squared distance, index)`` of the nearest row of ``c`` for every row of ``x`` (k-means' assignment step),
    computed ``chunk`` rows at a time."""
    c_sq = row_sq_norms(c)
    dist = np.empty(len(x), dtype=np.float32)
    idx = np.empty(len(x), dtype=np.int64)
    for s in range(0, len(x), chunk):
        xs = x[s : s + chunk]
        d2 = c_sq - 2 * (xs @ c.T)
        i = d2.argmin(axis=1)
        idx[s : s + len(xs)] = i
        dist[s : s + len(xs)] = np.maximum(d2[np.arange(len(xs)), i] + row_sq_norms(xs), 0)
    return dist, idx
