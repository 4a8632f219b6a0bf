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

Discovery (``discovery_share`` > 0, off by default): the rare classes' rows are rarely among DropQuery's candidates
(rows near the head's current boundaries), and quotas over predicted classes cannot help a class with no candidates.
So part of the batch can be chosen over the whole unlabeled pool instead, for the least-labeled predicted classes:
rows near a class's boundary (BASE), the rows the head calls it most surely, nearest neighbours of its labeled rows
(SEALS), and for classes with no labeled row the pool's smallest-margin rows or clusters of a pool sample that no
label covers. Each shard returns its top-k per class (keyed by global row), the driver merges them and fills the slots
round-robin, least-labeled class first. Screened on Fashion-MNIST at imbalance 100 (docs/results/README.md): none
of these beat the defaults, so they stay off.

``prior_adjust`` (1.0 by default) logit-adjusts the candidates' predicted classes (Menon et al. 2021) before the
quotas share them out, so that rows of a rare class the head calls a frequent neighbour count for the rare class.
With the head that standardizes with the pool's statistics it finds every class of a long-tailed pool earlier at no
measured cost in accuracy (Fashion-MNIST, imbalance 100: every class by round 9.4 against 11.0 or later, 5 seeds,
mean balanced accuracy 0.682 against 0.680; 25 seeds 0.675 against 0.678); a balanced pool never reaches the quotas.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
from pydantic import Field, model_validator

from raydq.cluster import DEFAULT_TOL, array_module
from raydq.numerics.distances import min_sq_distances, sq_distances
from raydq.numerics.dropout_passes import DEFAULT_CHUNK_ROWS
from raydq.numerics.nearest import nearest_distinct_rows
from raydq.numerics.norms import l2_normalise
from raydq.numerics.probability import softmax
from raydq.strategies.base import RandomState
from raydq.strategies.dropquery import DropoutPasses, DropQuery, normalised_embedding, shard_predictions
from raydq.strategies.gather import join, sample_rows
from raydq.strategies.kmeans import fit_kmeans
from raydq.strategies.shards import LABELED, ArrayShard
from raydq.strategies.uncertainty import margin_score


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


# -- discovery: rows chosen over the whole pool, outside DropQuery's candidates ---------------------------------------
#: At most this many pool rows (a row-keyed sample) are clustered by ``discovery="coverage"``.
COVERAGE_SAMPLE = 20_000


def _selectable_chunks(shard: ArrayShard, chunk_rows: int) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """``(embeddings, global rows)`` of the shard's selectable rows, chunk by chunk on the global chunk grid (so a
    row's score does not depend on how the pool is split); chunks with no selectable row are skipped."""
    for start, stop in shard.grid_chunks(chunk_rows):
        local = start + np.flatnonzero(shard.selectable[start:stop])
        if len(local):
            yield shard.chunk(start, stop)[local - start], shard.global_rows(local)


def _take_smallest(scores: np.ndarray, rows: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(rows, scores)`` of the ``k`` smallest ``(score, row)`` pairs, in that order (ties broken by the global row,
    so the driver's merge of the shards' lists equals the whole pool's list)."""
    order = np.lexsort((rows, scores))[:k]
    return rows[order], scores[order]


def class_boundary_rows(
    shard: ArrayShard, passes: DropoutPasses, classes: np.ndarray, k: int, *, signed: bool = False
) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each class ``c`` of ``classes``, ``(global rows, scores)`` of this shard's ``k`` selectable rows nearest
    the head's boundary of ``c``: score ``|logit_c - max_{j != c} logit_j|`` (BASE, Emam et al. 2021; the rows the
    head nearly calls ``c`` and the ones it calls ``c`` with the least margin), smallest first. With ``signed`` the
    score is ``max_{j != c} logit_j - logit_c``: the rows the head calls ``c`` most surely come first, then the ones it
    nearly calls ``c``. Logits are computed on the global chunk grid, so a row's score does not depend on how the pool
    is split."""
    classes = np.asarray(classes, dtype=np.int64)
    best_rows = [np.empty(0, np.int64) for _ in classes]
    best_scores = [np.empty(0, np.float32) for _ in classes]
    for X, rows in _selectable_chunks(shard, passes.chunk_rows):
        logits = X @ passes.W + passes.b
        for i, c in enumerate(classes.tolist()):
            others = np.delete(logits, c, axis=1).max(axis=1)
            gap = others - logits[:, c]
            score = (gap if signed else np.abs(gap)).astype(np.float32)
            best_rows[i], best_scores[i] = _take_smallest(
                np.concatenate([best_scores[i], score]), np.concatenate([best_rows[i], rows]), k
            )
    return list(zip(best_rows, best_scores, strict=True))


def margin_rows(shard: ArrayShard, passes: DropoutPasses, k: int) -> tuple[np.ndarray, np.ndarray]:
    """``(global rows, scores)`` of this shard's ``k`` selectable rows with the smallest softmax margin (top-1 minus
    top-2 probability), whichever classes they fall between: where a class nobody has labeled hides when it lies
    between classes the head knows (margin sampling finds such classes early). Chunked on the global grid."""
    best_rows, best_scores = np.empty(0, np.int64), np.empty(0, np.float32)
    for X, rows in _selectable_chunks(shard, passes.chunk_rows):
        logits = X @ passes.W + passes.b
        score = (-margin_score(softmax(logits, out=logits))).astype(np.float32)  # top-1 minus top-2 probability
        best_rows, best_scores = _take_smallest(
            np.concatenate([best_scores, score]), np.concatenate([best_rows, rows]), k
        )
    return best_rows, best_scores


def labeled_anchors(
    shard: ArrayShard, passes: DropoutPasses, head: Any, classes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(global rows, y*, normalised embeddings)`` of this shard's labeled rows that the head predicts as one of
    ``classes`` (the least-labeled classes: few rows by construction)."""
    y_star = shard_predictions(shard, passes)
    local = np.flatnonzero(shard.labeled & np.isin(y_star, np.asarray(classes)))
    return shard.global_rows(local), y_star[local].astype(np.int64), normalised_embedding(head, shard.X, local)


def class_similar_rows(
    shard: ArrayShard, passes: DropoutPasses, head: Any, anchors: list[np.ndarray], k: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """For each entry of ``anchors`` (normalised embeddings of labeled rows of one class), ``(global rows, scores)``
    of this shard's ``k`` selectable rows most similar to any of them: score ``-max cosine`` (similarity search from
    the labeled examples of a rare class, as SEALS, Coleman et al. 2022), smallest first. Chunked on the global
    grid."""
    best_rows = [np.empty(0, np.int64) for _ in anchors]
    best_scores = [np.empty(0, np.float32) for _ in anchors]
    for X, rows in _selectable_chunks(shard, passes.chunk_rows):
        Z = l2_normalise(np.asarray(head.transform(X), np.float32), copy=False)
        for i, A in enumerate(anchors):
            score = -(Z @ A.T).max(axis=1).astype(np.float32)
            best_rows[i], best_scores[i] = _take_smallest(
                np.concatenate([best_scores[i], score]), np.concatenate([best_rows[i], rows]), k
            )
    return list(zip(best_rows, best_scores, strict=True))


def merge_ranked(parts: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
    """The shards' ``(rows, scores)`` lists of one class merged into one ranking, best first."""
    rows = np.concatenate([p[0] for p in parts]).astype(np.int64)
    scores = np.concatenate([p[1] for p in parts])
    return rows[np.lexsort((rows, scores))]


def round_robin(rankings: dict[int, np.ndarray], slots: dict[int, int], taken: set[int]) -> list[int]:
    """Rows from per-class rankings: ``slots[c]`` per class, one class after the other in turn (the classes in the
    order ``slots`` lists them), each class's best row not already ``taken`` (updated in place)."""
    out: list[int] = []
    cursor = dict.fromkeys(rankings, 0)
    left = {c: n for c, n in slots.items() if n > 0}
    while left:
        for c in list(left):
            ranking = rankings[c]
            while cursor[c] < len(ranking) and int(ranking[cursor[c]]) in taken:
                cursor[c] += 1
            if cursor[c] == len(ranking):
                del left[c]
                continue
            row = int(ranking[cursor[c]])
            taken.add(row)
            out.append(row)
            left[c] -= 1
            if not left[c]:
                del left[c]
    return out


def coverage_picks(
    rows: np.ndarray,
    Z: np.ndarray,
    labeled: np.ndarray,
    selectable: np.ndarray,
    n: int,
    n_clusters: int,
    *,
    options: Any,
    seed: int,
    deadline: Any,
) -> np.ndarray:
    """Up to ``n`` of ``rows`` (a pool sample with its normalised embeddings ``Z``) in regions no label covers:
    k-means with ``n_clusters`` clusters over the sample; clusters holding no labeled row are ranked by
    size x squared distance from their centroid to the nearest labeled row (dense and far from every label: where a
    class nobody has labeled would be), and each of the best ``n`` gives its selectable row nearest the centroid."""
    n_clusters = min(n_clusters, int(selectable.sum()))
    if n <= 0 or n_clusters < 1 or not labeled.any():
        return np.empty(0, np.int64)
    km = fit_kmeans(Z, n_clusters, niter=options.kmeans_niter, tol=options.kmeans_tol, seed=seed, deadline=deadline)
    C = np.asarray(km.centroids, dtype=np.float32)
    d2 = sq_distances(Z, C)
    assign = d2.argmin(axis=1)
    size = np.bincount(assign[selectable], minlength=len(C))
    covered = np.zeros(len(C), bool)
    covered[assign[labeled]] = True
    novelty = min_sq_distances(C, Z[labeled], deadline=deadline)
    score = np.where(covered | (size == 0), -np.inf, size * novelty)
    order = np.lexsort((np.arange(len(C)), -score))
    out = []
    for j in order[:n]:
        if not np.isfinite(score[j]):
            break
        members = np.flatnonzero((assign == j) & selectable)
        out.append(int(rows[members[np.argmin(d2[members, j])]]))
    return np.asarray(out, dtype=np.int64)


def adjusted_predictions(shard: ArrayShard, passes: DropoutPasses, rows: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """``argmax(logits - shift)`` of those of the global ``rows`` (ascending) that lie in this shard, in their order:
    post-hoc logit adjustment (Menon et al. 2021) with ``shift = tau * log(prior)``, which widens the regions of the
    classes the head saw few labels of, so that rows of a rare class the head calls a frequent neighbour count for the
    rare class in the quotas."""
    local = shard.local_rows(rows)
    if not len(local):
        return np.empty(0, np.int64)
    logits = np.asarray(shard.X[local], dtype=np.float32) @ passes.W + passes.b
    return (logits - shift.astype(np.float32)).argmax(axis=1).astype(np.int64)


class BalancedDropQuery(DropQuery):
    """DropQuery with a share of the batch given out by class quotas over predicted classes, rarest-labeled first,
    and (``discovery_share``) a part of it found over the whole pool, outside DropQuery's candidates; both grow with
    the skew of the pool's predicted-class distribution (none on a balanced pool).

    Steps 1-4 are DropQuery's (see there). Step 5 on the gathered candidates: ``share = quota_share(skew,
    skew_floor, skew_full)``. First ``round(discovery_share * share * batch_size)`` discovery rows: slots water-filled
    over the predicted labeled counts (the least-labeled classes first) and filled round-robin over those classes
    from rankings over every selectable row of the pool (``discovery``: ``boundary``, ``similar`` or ``coverage``).
    Then, over the candidates left, ``round(share * rest)`` slots are shared out by ``class_quotas`` (labeled counts
    plus the discovery slots per predicted class, each class capped by its candidates, preference = candidate rate **
    ``difficulty_weight``) and filled per class by k-means on that class's candidates, the candidate nearest each
    centroid; k-means over the remaining candidates picks the rest, as DropQuery does.

    Parameters
    ----------
    skew_floor : float, default=0.1
        Pool skew (``distribution_skew`` of y* over the pool) up to which the batch is exactly DropQuery's.
    skew_full : float, default=0.25
        Pool skew from which the whole batch is shared out by quotas (and discovery at its full share).
    difficulty_weight : float, default=0.0
        Exponent of each class's preference in ``class_quotas``: its candidate rate (candidates predicted as the class
        over pool rows predicted as it). 0: labeled counts alone, as BASE.
    discovery_share : float, default=0.0
        Fraction of the batch (times the skew share) chosen over the whole pool rather than among the candidates.
    discovery : {"boundary", "likely", "similar", "off"}, default="boundary"
        Where the discovery rows of a class with labeled rows (predicted as it) come from. ``boundary``: the rows
        nearest the head's boundary of that class (``class_boundary_rows``, BASE). ``likely``: the smallest signed gap
        ``max_{j != c} logit_j - logit_c`` (the rows the head calls it most surely, then those it nearly calls it).
        ``similar``: the rows most similar to its labeled rows (``class_similar_rows``, SEALS). ``off``: discovery
        rows only for classes with no labeled row (all the discovery slots shared among them; none once every class
        has a label).
    discovery_unseen : {"boundary", "coverage", "margin", "kmeans"}, default="boundary"
        Where the discovery rows of a class with no labeled row come from: ``boundary`` as above (the head's logit
        of a class it never saw), ``coverage``: clusters of a pool sample that hold no label (``coverage_picks``),
        ``margin``: the pool's smallest-margin rows (``margin_rows``), shared by all such classes. ``kmeans``: no
        rows outside the candidates; those slots are kept from the quotas and left to DropQuery's k-means over the
        candidates (what finds new classes in plain DropQuery).
    coverage_clusters : int, default=100
        k-means clusters of ``discovery_unseen="coverage"`` (at most the selectable rows of its sample).
    prior_adjust : float, default=1.0
        Logit adjustment ``tau`` of the candidates' predicted classes used by the quotas (``adjusted_predictions``):
        ``argmax(logit - tau * log(p))`` with ``p`` the labeled counts (+1) per predicted class, normalised.
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
        discovery_share: float = Field(
            0.0,
            ge=0.0,
            le=1.0,
            description="fraction of the batch (times the skew share) chosen over the whole pool, least-labeled "
            "predicted classes first, instead of among DropQuery's candidates",
        )
        discovery: Literal["boundary", "likely", "similar", "off"] = Field(
            "boundary",
            description="discovery rows of a class with labeled rows: nearest its boundary (BASE), the rows the head "
            "calls it most surely, most similar to its labeled rows (SEALS), or off (discovery only for classes "
            "with no labeled row)",
        )
        discovery_unseen: Literal["boundary", "coverage", "margin", "kmeans"] = Field(
            "boundary",
            description="discovery rows of a class with no labeled row: nearest its boundary, from pool clusters "
            "no label covers, the smallest-margin rows of the pool, or left to DropQuery's k-means over the "
            "candidates (no quota)",
        )
        prior_adjust: float = Field(
            1.0,
            ge=0.0,
            le=4.0,
            description="logit adjustment tau of the candidates' predicted classes in the quotas: "
            "argmax(logit - tau * log(labeled share))",
        )
        coverage_clusters: int = Field(100, ge=2, le=500, description="k-means clusters of discovery_unseen='coverage'")

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
        discovery_share: float = 0.0,
        discovery: str = "boundary",
        discovery_unseen: str = "boundary",
        coverage_clusters: int = 100,
        prior_adjust: float = 1.0,
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
        self.discovery_share = discovery_share
        self.discovery = discovery
        self.discovery_unseen = discovery_unseen
        self.coverage_clusters = coverage_clusters
        self.prior_adjust = prior_adjust

    def _choose(self, shards, passes, rows, Z, options, *, head, batch_size, seed, deadline, info):
        stats = shards.map(class_statistics, passes, rows, deadline=deadline)
        pool = np.sum([s[0] for s in stats], axis=0)
        labeled = np.sum([s[1] for s in stats], axis=0)
        predicted = np.concatenate([s[2] for s in stats])
        if options.prior_adjust > 0 and len(rows):
            shift = options.prior_adjust * np.log((labeled + 1) / (labeled + 1).sum())
            predicted = np.concatenate(shards.map(adjusted_predictions, passes, rows, shift, deadline=deadline))
            info["prior_adjusted"] = True
        skew = distribution_skew(pool)
        share = quota_share(skew, options.skew_floor, options.skew_full)
        n_discovery = round(options.discovery_share * share * batch_size)
        info.update(pool_skew=skew)
        found = np.empty(0, dtype=np.int64)
        reserved = 0
        if n_discovery:
            found, slots, reserved = self._discover(
                shards, passes, head, labeled, n_discovery, options, seed=seed, deadline=deadline, info=info
            )
            labeled = labeled + slots
            keep = ~np.isin(rows, found)
            rows, Z, predicted = rows[keep], Z[keep], predicted[keep]
        rest = batch_size - len(found)
        n_quota = max(0, min(round(share * rest), rest - reserved))  # reserved: left to k-means over the candidates
        info["quota_slots"] = n_quota
        if n_quota == 0:
            if not rest:
                return found
            return np.concatenate(
                [
                    found,
                    super()._choose(
                        shards,
                        passes,
                        rows,
                        Z,
                        options,
                        head=head,
                        batch_size=rest,
                        seed=seed,
                        deadline=deadline,
                        info=info,
                    ),
                ]
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
        left = rest - len(chosen)
        if left:
            others = np.setdiff1d(np.arange(len(rows)), chosen)
            chosen = np.concatenate(
                [chosen, others[self._nearest_to_centroids(Z[others], left, options, next(seeds), deadline)]]
            )
        return np.concatenate([found, rows[chosen]])

    def _discover(
        self,
        shards: Any,
        passes: DropoutPasses,
        head: Any,
        labeled: np.ndarray,
        n: int,
        options: Any,
        *,
        seed: int,
        deadline: Any,
        info: dict[str, Any],
    ) -> tuple[np.ndarray, np.ndarray, int]:
        """``(global rows, slots per class, reserved)``: up to ``n`` selectable rows chosen over the whole pool for the
        least-labeled predicted classes (fewer if the pool has fewer selectable rows than asked), and how many slots
        of classes with no labeled row are left to DropQuery's k-means over the candidates
        (``discovery_unseen="kmeans"``)."""
        n_classes = len(labeled)
        open_ = labeled == 0 if options.discovery == "off" else np.ones(n_classes, bool)
        slots = class_quotas(labeled, np.where(open_, n, 0), n)
        order = [int(c) for c in np.lexsort((np.arange(n_classes), labeled)) if slots[c]]  # least labeled first
        taken: set[int] = set()
        found: list[int] = []
        seen = {c: int(slots[c]) for c in order if labeled[c] > 0}
        unseen = {c: int(slots[c]) for c in order if labeled[c] == 0}
        rankings: dict[int, np.ndarray] = {}
        k = n  # every ranking holds enough rows for all n slots, whatever the others took
        if unseen and options.discovery_unseen == "coverage":
            n_cover = sum(unseen.values())
            cover_seed, sample_seed = (int(s) for s in np.random.SeedSequence([seed, 0xC0]).generate_state(2))
            fraction = min(1.0, COVERAGE_SAMPLE / max(shards.n_rows, 1))
            s_rows, s_X, s_status = join(
                shards.map(sample_rows, fraction, sample_seed, labeled_fraction=1.0, deadline=deadline)
            )
            s_Z = normalised_embedding(head, s_X, np.arange(len(s_rows)), deadline=deadline)
            picks = coverage_picks(
                s_rows,
                s_Z,
                (s_status & LABELED) != 0,
                s_status == 0,
                n_cover,
                options.coverage_clusters,
                options=options,
                seed=cover_seed,
                deadline=deadline,
            )
            found.extend(int(r) for r in picks)
            taken.update(found)
            info["coverage_rows"] = len(picks)
            left = n_cover - len(picks)  # too few unlabeled clusters: the rest go to the classes' boundaries
            unseen = {c: left // len(unseen) + (i < left % len(unseen)) for i, c in enumerate(unseen)}
        reserved = 0
        if unseen and options.discovery_unseen == "kmeans":
            reserved, unseen = sum(unseen.values()), {}
        if unseen and options.discovery_unseen == "margin":
            ranking = merge_ranked(shards.map(margin_rows, passes, k, deadline=deadline))
            rankings.update(dict.fromkeys(unseen, ranking))
        if seen and options.discovery == "similar":
            _, a_y, a_Z = join(shards.map(labeled_anchors, passes, head, np.asarray(sorted(seen)), deadline=deadline))
            similar = [c for c in seen if np.any(a_y == c)]
            if similar:
                parts = shards.map(
                    class_similar_rows, passes, head, [a_Z[a_y == c] for c in similar], k, deadline=deadline
                )
                for i, c in enumerate(similar):
                    rankings[c] = merge_ranked([p[i] for p in parts])
        slots_left = {c: q for c, q in {**unseen, **seen}.items() if q > 0}
        slots_left = {c: slots_left[c] for c in order if c in slots_left}  # least labeled first
        rest = [c for c in slots_left if c not in rankings]
        if rest:
            signed = [c for c in rest if options.discovery == "likely" and c in seen]
            for group, sign in ((signed, True), ([c for c in rest if c not in signed], False)):
                if not group:
                    continue
                parts = shards.map(class_boundary_rows, passes, np.asarray(group), k, signed=sign, deadline=deadline)
                for i, c in enumerate(group):
                    rankings[c] = merge_ranked([p[i] for p in parts])
        found.extend(round_robin({c: rankings[c] for c in slots_left}, slots_left, taken))
        info.update(discovery_rows=len(found), discovery_slots=slots.tolist())
        info["discovery_reserved"] = reserved
        return np.asarray(found, dtype=np.int64), slots, reserved

    @staticmethod
    def _nearest_to_centroids(Z: np.ndarray, k: int, options: Any, seed: int, deadline) -> np.ndarray:
        """Positions in ``Z`` of the distinct rows nearest ``k`` k-means centroids (every row when there are <= k)."""
        if k >= len(Z):
            return np.arange(len(Z))
        km = fit_kmeans(Z, k, niter=options.kmeans_niter, tol=options.kmeans_tol, seed=seed, deadline=deadline)
        return nearest_distinct_rows(Z, km.centroids, xp=array_module(), deadline=deadline)
