"""The per-shard work of a DropQuery (ARCHITECTURE §4) as pure functions, and the driver that joins them.

A query over shards is two rounds of small messages:

1. ``phase1`` on every shard: y*, the dropout passes and the per-row mismatch counts (kept on the shard); it returns
   only a histogram of counts over the shard's selectable rows (M + 1 integers).
2. The driver sums the histograms and picks the threshold (``choose_threshold``). Each shard returns its candidates
   (``phase2_candidates``: global row ids and L2-normalised standardised embeddings, thinned by sampling when the
   total is huge) or, when the candidates are too few, also its share of a random fill (``random_fill_keys``).
   k-means runs once on the gathered candidates.

Every random choice that touches rows is keyed by ``(seed, global row)`` (dropout masks by row chunk, sampling and
fill by a counter-based hash), so a pool split into shards gives exactly the batch the whole pool gives. The same
code runs with one shard (``LocalShard``) on a laptop; a Ray actor is a thin shell around a ``LocalShard``.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from raydq.cluster import make_kmeans, nearest_distinct
from raydq.strategies.dropout import DEFAULT_CHUNK_ROWS, mismatch_counts

#: The default cap on candidates fed to k-means: 256 per cluster (faiss's own sampling), but never below 20,000, so
#: a pool of tens of thousands clusters every candidate, as the reference does.
MAX_POINTS_PER_CENTROID = 256
MIN_CANDIDATE_CAP = 20_000


# -- counter-based uniforms: a row's random key depends only on (seed, global row) --------------------------------
def row_uniforms(seed: int, rows: np.ndarray) -> np.ndarray:
    """Uniform [0, 1) floats from splitmix64 of ``rows`` under ``seed``: the same row always gets the same value."""
    with np.errstate(over="ignore"):
        z = np.asarray(rows, dtype=np.uint64) + np.uint64((seed * 0x9E3779B97F4A7C15) % 2**64)
        z = z + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z >> np.uint64(11)).astype(np.float64) / float(2**53)


# -- phase 1 ------------------------------------------------------------------------------------------------------
def phase1(
    X: np.ndarray, selectable: np.ndarray, W: np.ndarray, b: np.ndarray, *, n_passes: int, **dropout_kwargs: Any
) -> tuple[np.ndarray, np.ndarray]:
    """``(counts, histogram)``: per-row mismatch counts (keep them on the shard) and, over selectable rows, how many
    rows have each count ``0..n_passes`` (send this). ``dropout_kwargs`` (dropout, seed, row_offset, chunk_rows,
    n_threads) go to ``mismatch_counts``."""
    _, counts = mismatch_counts(X, W, b, n_passes=n_passes, **dropout_kwargs)
    hist = np.bincount(counts[selectable], minlength=n_passes + 1).astype(np.int64)
    return counts, hist


def n_above(histogram: np.ndarray, threshold: int) -> int:
    """How many rows have a count strictly above ``threshold``."""
    return int(np.asarray(histogram)[threshold + 1 :].sum())


def choose_threshold(
    histogram: np.ndarray,
    *,
    batch_size: int,
    candidate_factor: float = 25,
    start: int | None = None,
    relax: bool = True,
) -> int:
    """ARCHITECTURE §3 step 3: start at ``start`` (default ``M // 2``); candidates are rows with count > t; while
    fewer than ``candidate_factor * batch_size`` candidates and ``t > 0``, lower ``t`` (only when ``relax``)."""
    n_passes = len(histogram) - 1
    t = n_passes // 2 if start is None else int(start)
    if not 0 <= t <= n_passes:
        raise ValueError(f"threshold must be in [0, {n_passes}], got {t}")
    while relax and t > 0 and n_above(histogram, t) < candidate_factor * batch_size:
        t -= 1
    return t


# -- phase 2 ------------------------------------------------------------------------------------------------------
def normalised_embedding(head: Any, X: np.ndarray, rows: np.ndarray, *, chunk: int = 8192) -> np.ndarray:
    """The head's standardised (BatchNorm-output) embedding of ``X[rows]``, each row scaled to unit L2 norm; built
    chunk by chunk into one output array, so memory beyond the result stays O(chunk)."""
    out = np.empty((len(rows), X.shape[1]), dtype=np.float32)
    for s in range(0, len(rows), chunk):
        Z = np.asarray(head.transform(X[rows[s : s + chunk]]), dtype=np.float32)
        Z /= np.maximum(np.linalg.norm(Z, axis=1, keepdims=True), np.float32(1e-12))
        out[s : s + len(Z)] = Z
    return out


def phase2_candidates(
    X: np.ndarray,
    selectable: np.ndarray,
    counts: np.ndarray,
    threshold: int,
    head: Any,
    *,
    keep_fraction: float = 1.0,
    seed: int = 0,
    row_offset: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(global rows, normalised embeddings)`` of this shard's candidates (selectable, count > threshold).

    With ``keep_fraction < 1`` each candidate is kept when its row key is below the fraction: a uniform thinning that
    does not depend on how the pool is sharded.
    """
    rows = np.flatnonzero(selectable & (counts > threshold))
    if keep_fraction < 1.0:
        rows = rows[row_uniforms(seed, rows + row_offset) < keep_fraction]
    return rows + row_offset, normalised_embedding(head, X, rows)


def random_fill_keys(
    selectable: np.ndarray,
    counts: np.ndarray,
    threshold: int,
    n: int,
    *,
    seed: int,
    row_offset: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(global rows, keys)`` of the ``n`` non-candidate selectable rows with the smallest random keys; the driver
    keeps the globally smallest ``n``, which is a uniform sample without replacement over all shards."""
    rows = np.flatnonzero(selectable & (counts <= threshold))
    keys = row_uniforms(seed, rows + row_offset)
    if len(rows) > n:
        part = np.argpartition(keys, n - 1)[:n]
        rows, keys = rows[part], keys[part]
    return rows + row_offset, keys


def cluster_pick(Z: np.ndarray, batch_size: int, *, seed: int, niter: int = 25) -> np.ndarray:
    """Positions in ``Z`` of the distinct row nearest each of ``batch_size`` k-means centroids (trained on every row
    of ``Z``: the candidates were already capped)."""
    km = make_kmeans(Z.shape[1], batch_size, niter=niter, seed=seed, max_points_per_centroid=None)
    km.train(Z)
    return nearest_distinct(Z, km.centroids)


# -- the driver over shards ---------------------------------------------------------------------------------------
class Shard(Protocol):
    """What the driver needs from a shard (a ``LocalShard``, or an adapter around a Ray actor holding one)."""

    def phase1(self, W: np.ndarray, b: np.ndarray, *, dropout: float, n_passes: int, seed: int) -> np.ndarray: ...

    def candidates(
        self, threshold: int, head: Any, *, keep_fraction: float, seed: int
    ) -> tuple[np.ndarray, np.ndarray]: ...

    def random_fill(self, threshold: int, n: int, *, seed: int) -> tuple[np.ndarray, np.ndarray]: ...


@dataclass
class LocalShard:
    """Rows ``row_offset .. row_offset + len(X)`` of the pool, with the phase-1 counts kept between the phases."""

    X: np.ndarray
    selectable: np.ndarray
    row_offset: int = 0
    chunk_rows: int = DEFAULT_CHUNK_ROWS
    n_threads: int | None = None
    counts: np.ndarray | None = None

    def phase1(self, W, b, *, dropout, n_passes, seed):
        self.counts, hist = phase1(
            self.X,
            self.selectable,
            W,
            b,
            dropout=dropout,
            n_passes=n_passes,
            seed=seed,
            row_offset=self.row_offset,
            chunk_rows=self.chunk_rows,
            n_threads=self.n_threads,
        )
        return hist

    def _counts(self) -> np.ndarray:
        if self.counts is None:
            raise RuntimeError("phase1 must run on this shard before phase 2")
        return self.counts

    def candidates(self, threshold, head, *, keep_fraction, seed):
        return phase2_candidates(
            self.X,
            self.selectable,
            self._counts(),
            threshold,
            head,
            keep_fraction=keep_fraction,
            seed=seed,
            row_offset=self.row_offset,
        )

    def random_fill(self, threshold, n, *, seed):
        return random_fill_keys(self.selectable, self._counts(), threshold, n, seed=seed, row_offset=self.row_offset)


@dataclass(frozen=True)
class DropQueryResult:
    """Global rows chosen, and how: the threshold, the candidate count, and how many rows came from random fill."""

    rows: np.ndarray
    threshold: int
    n_candidates: int
    n_random: int


def dropquery_over_shards(
    shards: Sequence[Shard],
    head: Any,
    *,
    batch_size: int,
    dropout: float = 0.75,
    n_passes: int = 3,
    candidate_factor: float = 25,
    threshold: int | None = None,
    relax: bool = True,
    random_fill: bool = True,
    max_candidates: int | None = None,
    kmeans_niter: int = 25,
    seed: int = 0,
) -> DropQueryResult:
    """DropQuery (ARCHITECTURE §3) over shards in two phases (§4). Returns ``batch_size`` distinct global rows."""
    seeds = np.random.SeedSequence(seed).generate_state(4)
    mask_seed, sample_seed, fill_seed, kmeans_seed = (int(s) for s in seeds)
    W, b = head.affine()
    hists = [np.asarray(s.phase1(W, b, dropout=dropout, n_passes=n_passes, seed=mask_seed)) for s in shards]
    total = np.sum(hists, axis=0)
    n_selectable = int(total.sum())
    if batch_size > n_selectable:
        raise ValueError(f"batch_size={batch_size} exceeds the {n_selectable} selectable rows")
    t = choose_threshold(total, batch_size=batch_size, candidate_factor=candidate_factor, start=threshold, relax=relax)
    n_cand = n_above(total, t)
    if n_cand < batch_size and not random_fill:
        t, n_cand = -1, n_selectable  # too few uncertain rows: cluster the whole selectable pool instead
    if n_cand < batch_size:
        rows = [s.candidates(t, head, keep_fraction=1.0, seed=sample_seed)[0] for s in shards]
        need = batch_size - n_cand
        fills = [s.random_fill(t, need, seed=fill_seed) for s in shards]
        fill_rows = np.concatenate([f[0] for f in fills])
        fill_keys = np.concatenate([f[1] for f in fills])
        fill = fill_rows[np.argsort(fill_keys, kind="stable")[:need]]
        return DropQueryResult(np.concatenate([*rows, fill]).astype(np.int64), t, n_cand, need)
    cap = max_candidates if max_candidates is not None else max(MAX_POINTS_PER_CENTROID * batch_size, MIN_CANDIDATE_CAP)
    keep_fraction = min(1.0, cap / n_cand)
    rows, Z = _gather([s.candidates(t, head, keep_fraction=keep_fraction, seed=sample_seed) for s in shards])
    if len(rows) < batch_size:  # thinning left too few (only possible for a tiny cap): keep every candidate
        rows, Z = _gather([s.candidates(t, head, keep_fraction=1.0, seed=sample_seed) for s in shards])
    picked = cluster_pick(Z, batch_size, seed=kmeans_seed, niter=kmeans_niter)
    return DropQueryResult(rows[picked], t, n_cand, 0)


def _gather(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """Join the shards' (rows, embeddings); one shard's arrays are used as they are (no copy)."""
    if len(parts) == 1:
        return parts[0][0].astype(np.int64, copy=False), parts[0][1]
    return np.concatenate([p[0] for p in parts]).astype(np.int64), np.concatenate([p[1] for p in parts])


def split_into_shards(
    X: np.ndarray, selectable: np.ndarray, n_shards: int, *, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> list[LocalShard]:
    """Contiguous ``LocalShard`` views of one pool (no copies)."""
    bounds = np.linspace(0, len(X), n_shards + 1).astype(int)
    return [
        LocalShard(X[a:e], selectable[a:e], row_offset=int(a), chunk_rows=chunk_rows)
        for a, e in itertools.pairwise(bounds)
    ]
