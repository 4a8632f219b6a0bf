"""DropQuery (Gupte et al., TMLR 2024) exactly as ARCHITECTURE §3, run as the two shard phases of §4.

A query over shards is two rounds of small messages:

1. ``phase1_histogram`` on every shard: y*, the dropout passes and the per-row mismatch counts, kept in the shard's
   cache; it returns only a histogram of counts over the shard's selectable rows (M + 1 integers).
2. The driver sums the histograms and picks the threshold (``choose_threshold``). Each shard returns its candidates
   (``phase2_candidates``: global rows and L2-normalised standardised embeddings, thinned by a row-keyed sample when
   there are more than the cap) or, when they are too few, also its share of a random fill (``phase2_fill``).
   k-means runs once on the gathered candidates and the candidate nearest each centroid is picked.

The mismatch counts depend only on the head's ``(W, b)``, the pass seed, the dropout rate, the number of passes and
the chunk grid, so a shard keeps them under that key: a second query with the same head and pass seed (the service
fixes the pass seed between trainings) redoes only phase 2, while the histogram is recounted every time from the
current status (labels and leases move between queries). Every random choice that touches rows is keyed by
``(seed, global row)``, so a pool split into shards gives exactly the batch the whole pool gives.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import Field, model_validator

from raydq.cluster import DEFAULT_TOL, array_module
from raydq.deadline import Deadline, check
from raydq.numerics.dropout_passes import DEFAULT_CHUNK_ROWS, mismatch_counts
from raydq.numerics.nearest import nearest_distinct_rows
from raydq.numerics.norms import l2_normalise
from raydq.numerics.uniforms import row_uniforms
from raydq.strategies.base import QueryStrategy, RandomState, check_seed
from raydq.strategies.gather import join
from raydq.strategies.kmeans import KmeansOptions, fit_kmeans
from raydq.strategies.shards import ArrayShard, Selection

#: The default cap on the candidates k-means clusters. k-means costs candidates x clusters x D per iteration, so the
#: default spends at most ``CANDIDATE_WORK`` candidate-clusters per iteration: 20,000 candidates for the paper's
#: 10-item batches (every candidate of a pool of tens of thousands, as the reference clusters them all), but never
#: fewer than ``MIN_POINTS_PER_CENTROID`` per cluster (faiss warns below 39). Measured on the shared 2-core dev machine
#: (bench/query.py, 100k x 768, B = 100, load average ~4, back to back): 5.1 s per query with the earlier cap of
#: 25,600 candidates, 2.0 s (phase 2: 0.41 s) with 6,400. Quality: on Fashion-MNIST (15k pool, B = 50, 8 rounds,
#: 4 seeds) caps of 800, 3,200 and 20,000 candidates gave 0.821, 0.818 and 0.818 mean accuracy.
MIN_POINTS_PER_CENTROID = 64
MIN_CANDIDATE_CAP = 20_000
CANDIDATE_WORK = 200_000

#: Where a shard keeps its phase-1 counts, and how many times it computed them (tests and benchmarks read it).
CACHE_COUNTS = "dropquery.phase1.counts"
CACHE_RUNS = "dropquery.phase1.runs"
#: Where a shard keeps phase 1's y* (the head's unperturbed argmax per row), under the same key as the counts: free to
#: keep, and what strategies that share the batch out over predicted classes read (``shard_predictions``).
CACHE_PREDICTED = "dropquery.phase1.predicted"

_EMBED_CHUNK = 8192


@dataclass(frozen=True, eq=False)
class DropoutPasses:
    """What phase 1 computes from: the folded head and the pass settings. ``key`` (hashed once, on the driver)
    names the counts they produce, so a shard can tell whether its cached counts still hold."""

    W: np.ndarray
    b: np.ndarray
    dropout: float
    n_passes: int
    seed: int
    chunk_rows: int
    key: str = field(init=False)

    def __post_init__(self) -> None:
        h = hashlib.blake2b(digest_size=16)
        for a in (self.W, self.b):
            a = np.ascontiguousarray(a, dtype=np.float32)
            h.update(repr(a.shape).encode())
            h.update(a.tobytes())
        h.update(repr((float(self.dropout), int(self.n_passes), int(self.seed), int(self.chunk_rows))).encode())
        object.__setattr__(self, "key", h.hexdigest())


# -- per-shard work (runs where the shard lives; small arguments, small results) -----------------------------------
def shard_counts(shard: ArrayShard, passes: DropoutPasses) -> tuple[np.ndarray, bool]:
    """``(counts, cached)``: the shard's per-row mismatch counts under ``passes``, from the cache when it holds them."""
    hit = shard.cache.get(CACHE_COUNTS)
    if hit is not None and hit[0] == passes.key:
        return hit[1], True
    shard.cache.pop(CACHE_COUNTS, None)  # never two pools' worth of counts at once
    shard.cache.pop(CACHE_PREDICTED, None)
    y_star, counts = mismatch_counts(
        shard.X,
        passes.W,
        passes.b,
        dropout=passes.dropout,
        n_passes=passes.n_passes,
        seed=passes.seed,
        row_offset=shard.row_offset,
        chunk_rows=passes.chunk_rows,
        n_threads=shard.n_threads,
        deadline=shard.deadline,
    )
    shard.cache[CACHE_COUNTS] = (passes.key, counts)
    shard.cache[CACHE_PREDICTED] = (passes.key, y_star)
    shard.cache[CACHE_RUNS] = shard.cache.get(CACHE_RUNS, 0) + 1
    return counts, False


def shard_predictions(shard: ArrayShard, passes: DropoutPasses) -> np.ndarray:
    """y* of every row of the shard under ``passes``' head: phase 1's, from the cache when it holds them, else one
    unperturbed pass (chunked on the same grid, deadline-checked)."""
    hit = shard.cache.get(CACHE_PREDICTED)
    if hit is not None and hit[0] == passes.key:
        return hit[1]
    y_star = np.empty(len(shard), dtype=np.int32)
    for start, stop in shard.grid_chunks(passes.chunk_rows):
        y_star[start:stop] = (shard.chunk(start, stop) @ passes.W + passes.b).argmax(axis=1)
    return y_star


def phase1_histogram(shard: ArrayShard, passes: DropoutPasses) -> tuple[np.ndarray, bool]:
    """``(histogram, cached)``: how many selectable rows have each mismatch count ``0..n_passes``."""
    counts, cached = shard_counts(shard, passes)
    return np.bincount(counts[shard.selectable], minlength=passes.n_passes + 1).astype(np.int64), cached


def normalised_embedding(head: Any, X: np.ndarray, rows: np.ndarray, *, deadline: Deadline | None = None) -> np.ndarray:
    """The head's standardised embedding (``head.transform``) of ``X[rows]``, each row scaled to unit L2 norm; built
    chunk by chunk (float16 rows become float32 per chunk) into one output array."""
    out = np.empty((len(rows), X.shape[1]), dtype=np.float32)
    for s in range(0, len(rows), _EMBED_CHUNK):
        check(deadline)
        Z = np.asarray(head.transform(np.asarray(X[rows[s : s + _EMBED_CHUNK]], dtype=np.float32)), dtype=np.float32)
        out[s : s + len(Z)] = l2_normalise(Z, copy=False)
    return out


def phase2_candidates(
    shard: ArrayShard, passes: DropoutPasses, threshold: int, head: Any, *, keep_fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(global rows, normalised embeddings)`` of this shard's candidates (selectable, count > threshold). With
    ``keep_fraction < 1`` a candidate is kept when its row key is below the fraction: a uniform thinning that does not
    depend on how the pool is sharded."""
    counts, _ = shard_counts(shard, passes)  # recomputed only if the shard lost its cache between the phases
    local = np.flatnonzero(shard.selectable & (counts > threshold))
    if keep_fraction < 1.0:
        local = local[row_uniforms(seed, shard.global_rows(local)) < keep_fraction]
    return shard.global_rows(local), normalised_embedding(head, shard.X, local, deadline=shard.deadline)


def phase2_fill(
    shard: ArrayShard, passes: DropoutPasses, threshold: int, n: int, *, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """``(global rows, keys)`` of the ``n`` non-candidate selectable rows with the smallest row keys; the driver keeps
    the globally smallest ``n``: a uniform sample without replacement over all shards."""
    counts, _ = shard_counts(shard, passes)
    local = np.flatnonzero(shard.selectable & (counts <= threshold))
    keys = row_uniforms(seed, shard.global_rows(local))
    if len(local) > n:
        part = np.argpartition(keys, n - 1)[:n]
        local, keys = local[part], keys[part]
    return shard.global_rows(local), keys


# -- the driver ------------------------------------------------------------------------------------------------------
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


def candidate_cap(batch_size: int, max_candidates: int | None) -> int:
    """How many candidates k-means clusters at most (the rest are thinned by a uniform row-keyed sample)."""
    if max_candidates is not None:
        return int(max_candidates)
    return max(MIN_POINTS_PER_CENTROID * batch_size, min(MIN_CANDIDATE_CAP, CANDIDATE_WORK // batch_size))


class DropQuery(QueryStrategy):
    """Uncertain rows by dropout disagreement, made diverse by k-means.

    1. y* = the head's argmax on the unperturbed pool; 2. ``n_passes`` passes with inverted dropout on the features,
    counting per row the passes that disagree with y*; 3. candidates are rows with count > t, t starting at
    ``threshold`` (default ``n_passes // 2``) and lowered while fewer than ``candidate_factor * batch_size`` remain
    and t > 0 (when ``relax``); 4. fewer than ``batch_size`` candidates: all of them plus random selectable rows
    (``random_fill``; without it the whole selectable pool is clustered instead); 5. otherwise k-means with
    ``batch_size`` clusters on the candidates' L2-normalised standardised embeddings (``head.transform``), and the
    candidate nearest each centroid.

    Parameters
    ----------
    dropout : float, default=0.75
    n_passes : int, default=3
    candidate_factor : float, default=25
    threshold : int or None, default=None
        Starting threshold; None means ``n_passes // 2``.
    relax : bool, default=True
        Lower the threshold while candidates are too few.
    random_fill : bool, default=True
    max_candidates : int or None, default=None
        Candidates beyond this are thinned by uniform sampling before k-means; None means
        ``max(64 * batch_size, min(20000, 200000 // batch_size))`` (``candidate_cap``).
    kmeans_niter : int, default=25
    kmeans_tol : float, default=1e-4
        k-means on the candidates stops early once an iteration gains less than this fraction of its objective.
    chunk_rows : int, default=1024
        Rows per dropout chunk (bounds memory; part of what a seed reproduces).
    pass_seed : int or None, default=None
        Seed of the dropout masks. None draws it from the query's seed (fresh passes every query); the service sets
        it per head version so that phase 1 is computed once per training and only phase 2 runs per batch.
    random_state : None, int or Generator
    """

    needs_head = True
    not_request_settable = frozenset({"random_state", "pass_seed"})

    class Options(KmeansOptions):
        dropout: float = Field(0.75, ge=0.0, le=0.95, description="dropout rate of the passes")
        n_passes: int = Field(3, ge=1, le=32, description="dropout passes M (each costs one pass over the pool)")
        candidate_factor: float = Field(
            25.0, ge=0.0, le=1000.0, description="relax the threshold until this many candidates per batch item"
        )
        threshold: int | None = Field(None, ge=0, le=32, description="starting threshold; default n_passes // 2")
        relax: bool = Field(True, description="lower the threshold while candidates are too few")
        random_fill: bool = Field(True, description="fill with random rows when candidates are fewer than the batch")
        max_candidates: int | None = Field(
            None, ge=1, le=100_000, description="cap on the candidates k-means clusters (default: automatic)"
        )
        chunk_rows: int = Field(DEFAULT_CHUNK_ROWS, ge=64, le=16384, description="rows per dropout chunk")

        @model_validator(mode="after")
        def _threshold_within_passes(self):
            if self.threshold is not None and self.threshold > self.n_passes:
                raise ValueError(f"threshold ({self.threshold}) must not exceed n_passes ({self.n_passes})")
            return self

    def __init__(
        self,
        *,
        dropout: float = 0.75,
        n_passes: int = 3,
        candidate_factor: float = 25,
        threshold: int | None = None,
        relax: bool = True,
        random_fill: bool = True,
        max_candidates: int | None = None,
        kmeans_niter: int = 25,
        kmeans_tol: float = DEFAULT_TOL,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        pass_seed: int | None = None,
        random_state: RandomState = None,
    ) -> None:
        self.dropout = dropout
        self.n_passes = n_passes
        self.candidate_factor = candidate_factor
        self.threshold = threshold
        self.relax = relax
        self.random_fill = random_fill
        self.max_candidates = max_candidates
        self.kmeans_niter = kmeans_niter
        self.kmeans_tol = kmeans_tol
        self.chunk_rows = chunk_rows
        self.pass_seed = pass_seed
        self.random_state = random_state

    def _select(self, shards, options, *, batch_size, head, seed, deadline, counts):
        mask_seed, sample_seed, fill_seed, kmeans_seed = (
            int(s) for s in np.random.SeedSequence(seed).generate_state(4)
        )
        if self.pass_seed is not None:
            mask_seed = check_seed(self.pass_seed, "pass_seed")
        W, b = head.affine()
        passes = DropoutPasses(W, b, options.dropout, options.n_passes, mask_seed, options.chunk_rows)
        t0 = time.perf_counter()
        phase1 = shards.map(phase1_histogram, passes, deadline=deadline)
        total = np.sum([h for h, _ in phase1], axis=0)
        t1 = time.perf_counter()
        t = choose_threshold(
            total,
            batch_size=batch_size,
            candidate_factor=options.candidate_factor,
            start=options.threshold,
            relax=options.relax,
        )
        n_cand = n_above(total, t)
        if n_cand < batch_size and not options.random_fill:
            t, n_cand = -1, int(total.sum())  # too few uncertain rows: cluster the whole selectable pool instead
        info: dict[str, Any] = {
            "threshold": t,
            "candidates": n_cand,
            "phase1_cached": all(c for _, c in phase1),
            "phase1_seconds": t1 - t0,
        }
        if n_cand < batch_size:
            parts = shards.map(
                phase2_candidates, passes, t, head, keep_fraction=1.0, seed=sample_seed, deadline=deadline
            )
            need = batch_size - n_cand
            fills = shards.map(phase2_fill, passes, t, need, seed=fill_seed, deadline=deadline)
            fill_rows = np.concatenate([f[0] for f in fills])
            fill_keys = np.concatenate([f[1] for f in fills])
            fill = fill_rows[np.lexsort((fill_rows, fill_keys))[:need]]
            rows = np.concatenate([*(p[0] for p in parts), fill]).astype(np.int64)
            info.update(random_fill=need, clustered=0, phase2_seconds=time.perf_counter() - t1)
            return Selection(rows, info)
        keep_fraction = min(1.0, candidate_cap(batch_size, options.max_candidates) / n_cand)
        rows, Z = join(
            shards.map(
                phase2_candidates, passes, t, head, keep_fraction=keep_fraction, seed=sample_seed, deadline=deadline
            )
        )
        if len(rows) < batch_size:  # thinning left too few (only possible for a tiny cap): keep every candidate
            rows, Z = join(
                shards.map(phase2_candidates, passes, t, head, keep_fraction=1.0, seed=sample_seed, deadline=deadline)
            )
        info.update(random_fill=0, clustered=len(rows))
        chosen = self._choose(
            shards,
            passes,
            rows,
            Z,
            options,
            head=head,
            batch_size=batch_size,
            seed=kmeans_seed,
            deadline=deadline,
            info=info,
        )
        info["phase2_seconds"] = time.perf_counter() - t1
        return Selection(chosen, info)

    def _choose(
        self,
        shards: Any,
        passes: DropoutPasses,
        rows: np.ndarray,
        Z: np.ndarray,
        options: Any,
        *,
        head: Any,
        batch_size: int,
        seed: int,
        deadline: Deadline | None,
        info: dict[str, Any],
    ) -> np.ndarray:
        """The batch as global rows, from ``rows`` (the gathered candidates, at least ``batch_size``, with their
        normalised embeddings ``Z``): the candidate nearest each of ``batch_size`` k-means centroids (step 5). The one
        step a variant that shares the batch out differently overrides (it may also take selectable rows outside the
        candidates, asking the shards for them); it may add to ``info``."""
        km = fit_kmeans(Z, batch_size, niter=options.kmeans_niter, tol=options.kmeans_tol, seed=seed, deadline=deadline)
        info["kmeans_iterations"] = km.iterations
        return rows[nearest_distinct_rows(Z, km.centroids, xp=array_module(), deadline=deadline)]
