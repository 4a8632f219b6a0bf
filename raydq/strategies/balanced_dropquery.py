"""Class-balanced DropQuery for long-tailed pools: DropQuery's candidates, part of the batch shared out over predicted
classes, and how large that part is set by how skewed the pool looks.

On a long-tailed pool DropQuery's candidates (rows whose dropout predictions disagree) are mostly rows of the frequent
classes, simply because those classes fill the pool, and k-means over them spends most of the batch there: rare
classes are labeled late and the head stays biased. Class quotas fix that: each predicted class gets slots of the
batch, the classes with the fewest labels first (water-filling the labeled counts, as class-balanced selection does in
BASE, Emam et al. 2021, and GALAXY, Zhang et al. 2022), each quota capped by the candidates predicted as that class,
and inside a class k-means picks the candidate nearest each centroid, as DropQuery does for the whole batch.

On a balanced pool quotas cost accuracy (they equalise labels where DropQuery rightly spends more of the batch on the
classes that are hard to tell apart), so the quota's share of the batch follows the skew of the pool's predicted-class
distribution ``p`` (y* over every pool row): ``skew = 1 - H(p) / log C`` (0 for a uniform ``p``; 0.10 for an
exponential profile with ratio 10, 0.29 with ratio 100). Below ``skew_floor`` the batch is exactly DropQuery's; above
``skew_full`` all of it goes to quotas; in between, that fraction of it, and k-means over the other candidates picks
the rest. Measured skews of y* on Fashion-MNIST: balanced pool 0.08 after round 0, below 0.03 from round 2 on;
ratio 10: 0.08-0.15; ratio 100: 0.16 after round 0, then about 0.3. The defaults (0.1, 0.25) leave a balanced pool
to DropQuery in every round; the runs behind them are in docs/results/README.md.

A strategy sees no labels, only which rows are labeled; the labeled count of a class is taken as the number of
labeled rows the head predicts as that class (a head fitted on those rows predicts nearly all of them right).
Everything else is DropQuery's: its two shard phases and phase-1 cache, its threshold, thinning and random fill; this
class replaces only the final choice among the gathered candidates (``DropQuery._choose``), plus one small message per
shard (per-class counts and the y* of the gathered candidates).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field, model_validator

from raydq.cluster import DEFAULT_TOL, array_module
from raydq.numerics.dropout_passes import DEFAULT_CHUNK_ROWS
from raydq.numerics.nearest import nearest_distinct_rows
from raydq.strategies.base import RandomState
from raydq.strategies.dropquery import DropoutPasses, DropQuery, shard_predictions
from raydq.strategies.kmeans import fit_kmeans
from raydq.strategies.shards import ArrayShard


def class_quotas(
    labeled: np.ndarray, capacity: np.ndarray, budget: int, *, preference: np.ndarray | None = None
) -> np.ndarray:
    """Slots per class, summing to ``min(budget, capacity.sum())`` with ``quota <= capacity``: each slot goes to the
    open class with the smallest ``(labeled + slots + 1) / preference`` (ties: more capacity, then the lower class
    index). With equal preferences this water-fills the labeled counts; otherwise it aims at (labels + 1) in
    proportion to the preferences.

    >>> class_quotas(np.array([5, 0, 1]), np.array([9, 9, 1]), 4).tolist()
    [0, 3, 1]
    """
    labeled = np.asarray(labeled, dtype=np.int64)
    capacity = np.asarray(capacity, dtype=np.int64)
    pref = np.ones(len(capacity)) if preference is None else np.asarray(preference, dtype=np.float64)
    if labeled.shape != capacity.shape or pref.shape != capacity.shape or labeled.ndim != 1:
        raise ValueError(
            f"labeled {labeled.shape}, capacity {capacity.shape} and preference {pref.shape} must be equal 1-D shapes"
        )
    pref = np.maximum(pref, 1e-12)
    quota = np.zeros_like(capacity)
    for _ in range(int(min(budget, capacity.sum()))):
        open_ = np.flatnonzero(quota < capacity)
        need = (labeled[open_] + quota[open_] + 1) / pref[open_]
        c = open_[np.lexsort((open_, -capacity[open_], need))[0]]
        quota[c] += 1
    return quota


def distribution_skew(counts: np.ndarray) -> float:
    """``1 - H(p) / log C`` of the distribution ``p`` proportional to ``counts`` over ``C`` classes: 0 when uniform,
    1 when one class holds everything (0 for fewer than two classes or no counts)."""
    counts = np.asarray(counts, dtype=np.float64)
    if len(counts) < 2 or counts.sum() <= 0:
        return 0.0
    p = counts[counts > 0] / counts.sum()
    return float(1.0 - -(p * np.log(p)).sum() / np.log(len(counts)))


def quota_share(skew: float, floor: float, full: float) -> float:
    """The fraction of the batch shared out by class quotas: 0 at or below ``floor``, 1 at or above ``full``, linear
    in between."""
    if skew <= floor:
        return 0.0
    if skew >= full:
        return 1.0
    return (skew - floor) / (full - floor)


# -- per-shard work --------------------------------------------------------------------------------------------------
def class_statistics(
    shard: ArrayShard, passes: DropoutPasses, rows: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(pool, labeled, predicted)``: how many of the shard's rows, and of its labeled rows, y* puts in each class,
    and y* of those of the global ``rows`` (ascending) that lie in this shard, in their order."""
    y_star = shard_predictions(shard, passes)
    n_classes = passes.W.shape[1]
    pool = np.bincount(y_star, minlength=n_classes).astype(np.int64)
    labeled = np.bincount(y_star[shard.labeled], minlength=n_classes).astype(np.int64)
    return pool, labeled, y_star[shard.local_rows(rows)].astype(np.int64)


class BalancedDropQuery(DropQuery):
    """DropQuery with a share of the batch given out by class quotas over predicted classes, rarest-labeled first;
    the share grows with the skew of the pool's predicted-class distribution (none on a balanced pool).

    Steps 1-4 are DropQuery's (see there). Step 5 on the gathered candidates: ``share = quota_share(skew,
    skew_floor, skew_full)``; ``round(share * batch_size)`` slots are shared out by ``class_quotas`` (labeled counts
    per predicted class, each class capped by its candidates, preference = candidate rate ** ``difficulty_weight``)
    and filled per class by k-means on that class's candidates, the candidate nearest each centroid; k-means over the
    remaining candidates picks the rest, as DropQuery does.

    Parameters
    ----------
    skew_floor : float, default=0.1
        Pool skew (``distribution_skew`` of y* over the pool) up to which the batch is exactly DropQuery's.
    skew_full : float, default=0.25
        Pool skew from which the whole batch is shared out by quotas.
    difficulty_weight : float, default=0.0
        Exponent of each class's preference in ``class_quotas``: its candidate rate (candidates predicted as the class
        over pool rows predicted as it). 0: labeled counts alone, as BASE.
    The other parameters are DropQuery's.
    """

    class Options(DropQuery.Options):
        skew_floor: float = Field(
            0.1, ge=0.0, le=1.0, description="pool skew up to which the batch is exactly DropQuery's (no quotas)"
        )
        skew_full: float = Field(
            0.25, ge=0.0, le=1.0, description="pool skew from which the whole batch is shared out by class quotas"
        )
        difficulty_weight: float = Field(
            0.0, ge=0.0, le=4.0, description="weight of each class's candidate rate against its labeled count"
        )

        @model_validator(mode="after")
        def _floor_below_full(self):
            if self.skew_floor > self.skew_full:
                raise ValueError(f"skew_floor ({self.skew_floor}) must not exceed skew_full ({self.skew_full})")
            return self

    def __init__(
        self,
        *,
        skew_floor: float = 0.1,
        skew_full: float = 0.25,
        difficulty_weight: float = 0.0,
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
        super().__init__(
            dropout=dropout,
            n_passes=n_passes,
            candidate_factor=candidate_factor,
            threshold=threshold,
            relax=relax,
            random_fill=random_fill,
            max_candidates=max_candidates,
            kmeans_niter=kmeans_niter,
            kmeans_tol=kmeans_tol,
            chunk_rows=chunk_rows,
            pass_seed=pass_seed,
            random_state=random_state,
        )
        self.skew_floor = skew_floor
        self.skew_full = skew_full
        self.difficulty_weight = difficulty_weight

    def _choose(self, shards, passes, rows, Z, options, *, batch_size, seed, deadline, info):
        stats = shards.map(class_statistics, passes, rows, deadline=deadline)
        pool = np.sum([s[0] for s in stats], axis=0)
        labeled = np.sum([s[1] for s in stats], axis=0)
        predicted = np.concatenate([s[2] for s in stats])
        skew = distribution_skew(pool)
        n_quota = round(quota_share(skew, options.skew_floor, options.skew_full) * batch_size)
        info.update(pool_skew=skew, quota_slots=n_quota)
        if n_quota == 0:
            return super()._choose(
                shards, passes, rows, Z, options, batch_size=batch_size, seed=seed, deadline=deadline, info=info
            )
        capacity = np.bincount(predicted, minlength=len(pool))
        rate = capacity / np.maximum(pool - labeled, 1)  # how uncertain the class is, whatever its size
        quotas = class_quotas(labeled, capacity, n_quota, preference=rate**options.difficulty_weight)
        info["quotas"] = quotas.tolist()
        seeds = (int(s) for s in np.random.SeedSequence(seed).generate_state(len(quotas) + 1))
        picked = []
        for c, q in enumerate(quotas.tolist()):
            class_seed = next(seeds)
            if q:
                members = np.flatnonzero(predicted == c)
                picked.append(members[self._nearest_to_centroids(Z[members], q, options, class_seed, deadline)])
        chosen = np.concatenate(picked)
        rest = batch_size - len(chosen)
        if rest:
            others = np.setdiff1d(np.arange(len(rows)), chosen)
            chosen = np.concatenate(
                [chosen, others[self._nearest_to_centroids(Z[others], rest, options, next(seeds), deadline)]]
            )
        return chosen

    @staticmethod
    def _nearest_to_centroids(Z: np.ndarray, k: int, options: Any, seed: int, deadline) -> np.ndarray:
        """Positions in ``Z`` of the distinct rows nearest ``k`` k-means centroids (every row when there are <= k)."""
        if k >= len(Z):
            return np.arange(len(Z))
        km = fit_kmeans(Z, k, niter=options.kmeans_niter, tol=options.kmeans_tol, seed=seed, deadline=deadline)
        return nearest_distinct_rows(Z, km.centroids, xp=array_module(), deadline=deadline)
