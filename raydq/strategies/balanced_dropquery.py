"""Class-balanced DropQuery: DropQuery's uncertain candidates, the batch shared out over predicted classes.

On a long-tailed pool, DropQuery's candidates (rows whose dropout predictions disagree) are mostly rows of the
frequent classes, simply because those classes fill the pool, and k-means over them spends most of the batch there:
rare classes are labeled late and the head stays biased. This variant keeps DropQuery's candidate set and its
k-means diversity, but first gives each predicted class a quota of the batch, filling up the classes with the fewest
labels first (water-filling the labeled counts, as class-balanced selection does in BASE, Emam et al. 2021, and
GALAXY, Zhang et al. 2022), each quota capped by the candidates predicted as that class. Inside a class, k-means
with ``quota`` clusters on the candidates' standardised embeddings picks the candidate nearest each centroid, as
DropQuery does for the whole batch.

Pure water-filling equalises labels even on a balanced pool, where DropQuery rightly spends more of the batch on the
classes that are hard to tell apart. So each class's claim is weighed by its candidate rate, the fraction of the
rows predicted as the class that are candidates: a property of how uncertain the class is, not of how large it is.
``class_quotas`` aims at (labels + 1) in proportion to rate ** ``difficulty_weight``. ``prior_correction`` optionally
adjusts y* and the dropout passes by the labeled class prior, ``logit_c - tau * log(pi_c)`` with ``pi_c = (n_c + 1) /
(n + C)`` (post-hoc logit adjustment, Menon et al. 2021); measured, it did not help, so it is off by default. The
measurements behind the defaults are in docs/results/README.md.

What crosses shards (for the port onto the sharded API): phase 1 as DropQuery's plus each shard's count of
candidates per predicted class (a C-length histogram per threshold) and of selectable rows per predicted class;
phase 2 returns, per class, a uniform sample of at most ``max(256 * quota, 20000)`` candidates with their
embeddings. k-means runs on the driver per class.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raydq.cluster import make_kmeans, nearest_distinct
from raydq.strategies._utils import l2_normalise
from raydq.strategies.base import MISSING_LABEL, QueryStrategy, RandomState
from raydq.strategies.dropout import DEFAULT_CHUNK_ROWS, mismatch_counts

#: Candidates that one k-means trains on: 256 per centroid (faiss's own subsample size) but never fewer than 20,000,
#: as DropQuery does, so a pool of tens of thousands clusters every candidate.
POINTS_PER_CENTROID = 256
MIN_POINTS = 20_000


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


@dataclass(frozen=True)
class BalancedResult:
    """How the last batch was chosen: the threshold, the candidate count, candidates and slots per predicted class,
    and how many rows came from random fill."""

    threshold: int
    n_candidates: int
    capacity: np.ndarray
    quotas: np.ndarray
    n_random: int


class BalancedDropQuery(QueryStrategy):
    """DropQuery with the batch shared out over predicted classes, rarest-labeled first.

    1. y* and ``n_passes`` dropout passes as DropQuery, on logits corrected by the labeled class prior; candidates
       are selectable rows with more than t disagreeing passes, t lowered from ``n_passes // 2`` while fewer than
       ``candidate_factor * batch_size`` remain;
    2. fewer candidates than ``batch_size``: all of them plus random selectable rows (as DropQuery);
    3. otherwise ``class_quotas`` over the candidates' predicted classes, from the labeled counts in ``y`` weighed
       against each class's candidate rate (``difficulty_weight``);
    4. per class, k-means with ``quota`` clusters on the L2-normalised standardised embeddings of that class's
       candidates (a seeded sample of at most ``max(256 * quota, 20000)``), and the candidate nearest each centroid.

    Parameters
    ----------
    dropout : float, default=0.75
    n_passes : int, default=3
    candidate_factor : float, default=25
    kmeans_niter : int, default=25
    prior_correction : float, default=0.0
        tau of the logit adjustment by the labeled class prior (0: off).
    difficulty_weight : float, default=0.5
        Exponent alpha of each class's preference in ``class_quotas``: its candidate rate (candidates predicted as
        the class over all selectable rows predicted as it) to the power alpha. 0: labeled counts alone, as BASE.
    discover_first : bool, default=True
        While some class has no label yet, choose the batch as DropQuery does (k-means over all candidates: quotas
        found new classes no sooner and cost accuracy in the early rounds); quotas start once every class has a
        label.
    chunk_rows : int, default=1024
        Rows per dropout chunk (bounds memory; part of what a seed reproduces).
    random_state : None, int or Generator

    Attributes
    ----------
    last_result_ : BalancedResult
    """

    needs_head = True

    def __init__(
        self,
        *,
        dropout: float = 0.75,
        n_passes: int = 3,
        candidate_factor: float = 25,
        kmeans_niter: int = 25,
        prior_correction: float = 0.0,
        difficulty_weight: float = 0.5,
        discover_first: bool = True,
        chunk_rows: int = DEFAULT_CHUNK_ROWS,
        random_state: RandomState = None,
    ) -> None:
        self.dropout = dropout
        self.n_passes = n_passes
        self.candidate_factor = candidate_factor
        self.kmeans_niter = kmeans_niter
        self.prior_correction = prior_correction
        self.difficulty_weight = difficulty_weight
        self.discover_first = discover_first
        self.chunk_rows = chunk_rows
        self.random_state = random_state

    def _validate(self) -> None:
        if not 0.0 <= float(self.dropout) < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        if not isinstance(self.n_passes, int | np.integer) or not 1 <= self.n_passes <= 255:
            raise ValueError(f"n_passes must be an integer in [1, 255], got {self.n_passes!r}")
        if float(self.candidate_factor) < 0:
            raise ValueError(f"candidate_factor must be >= 0, got {self.candidate_factor!r}")
        if not isinstance(self.kmeans_niter, int | np.integer) or self.kmeans_niter < 1:
            raise ValueError(f"kmeans_niter must be a positive integer, got {self.kmeans_niter!r}")
        if not float(self.prior_correction) >= 0:
            raise ValueError(f"prior_correction must be >= 0, got {self.prior_correction!r}")
        if not float(self.difficulty_weight) >= 0:
            raise ValueError(f"difficulty_weight must be >= 0, got {self.difficulty_weight!r}")
        if not isinstance(self.chunk_rows, int | np.integer) or self.chunk_rows < 1:
            raise ValueError(f"chunk_rows must be a positive integer, got {self.chunk_rows!r}")

    def _query(self, X, y, selectable, *, batch_size, head, rng):
        self._validate()
        W, b = head.affine()
        n_classes = W.shape[1]
        labeled = np.bincount(y[(y != MISSING_LABEL) & (y < n_classes)], minlength=n_classes)
        prior = (labeled + 1.0) / (labeled.sum() + n_classes)
        b = (b - float(self.prior_correction) * np.log(prior)).astype(np.float32)
        y_star, counts = mismatch_counts(
            np.ascontiguousarray(X, dtype=np.float32),
            W,
            b,
            n_passes=int(self.n_passes),
            dropout=float(self.dropout),
            seed=int(rng.integers(2**63)),
            chunk_rows=int(self.chunk_rows),
        )
        hist = np.bincount(counts[selectable], minlength=self.n_passes + 1)
        t = int(self.n_passes) // 2
        while t > 0 and hist[t + 1 :].sum() < float(self.candidate_factor) * batch_size:
            t -= 1
        candidates = np.flatnonzero(selectable & (counts > t))
        if len(candidates) < batch_size:
            rest = np.flatnonzero(selectable & (counts <= t))
            fill = rng.choice(rest, size=batch_size - len(candidates), replace=False)
            none = np.zeros(n_classes, np.int64)
            self.last_result_ = BalancedResult(t, len(candidates), none, none, len(fill))
            return np.concatenate([candidates, fill])
        predicted = y_star[candidates]
        if self.discover_first and (labeled == 0).any():  # a class not found yet: one k-means over all candidates
            chosen = self._pick(X, candidates, batch_size, head, rng)
            none = np.zeros(n_classes, np.int64)
            self.last_result_ = BalancedResult(t, len(candidates), none, none, 0)
            return chosen
        capacity = np.bincount(predicted, minlength=n_classes)
        predicted_pool = np.bincount(y_star[selectable], minlength=n_classes)
        rate = capacity / np.maximum(predicted_pool, 1)  # how uncertain the class is, whatever its size
        quotas = class_quotas(labeled, capacity, batch_size, preference=rate ** float(self.difficulty_weight))
        chosen = [self._pick(X, candidates[predicted == c], int(q), head, rng) for c, q in enumerate(quotas) if q]
        self.last_result_ = BalancedResult(t, len(candidates), capacity, quotas, 0)
        return np.concatenate(chosen)

    def _pick(self, X: np.ndarray, rows: np.ndarray, k: int, head, rng: np.random.Generator) -> np.ndarray:
        """``k`` of ``rows``: the row nearest each of ``k`` k-means centroids of their normalised embeddings."""
        if k >= len(rows):
            return rows
        cap = max(POINTS_PER_CENTROID * k, MIN_POINTS)
        if len(rows) > cap:
            rows = np.sort(rng.choice(rows, size=cap, replace=False))
        Z = l2_normalise(head.transform(X[rows]))
        km = make_kmeans(
            Z.shape[1], k, niter=int(self.kmeans_niter), seed=int(rng.integers(2**31)), max_points_per_centroid=None
        )
        km.train(Z)
        return rows[nearest_distinct(Z, km.centroids)]
