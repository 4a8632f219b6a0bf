"""Long-tailed pools for the simulation: subsample a labeled pool to an exponential class profile.

Real unlabeled pools are rarely balanced; the paper leaves imbalance open. The profile is the one of the long-tailed
CIFAR benchmarks (Cui et al. 2019): the class at rank ``i`` of ``C`` keeps ``n_max * ratio ** (-i / (C - 1))`` rows,
so the largest class has ``ratio`` times the rows of the smallest. The rank of each class comes from a seeded
permutation, and ``n_max`` is the largest size every class can supply: ``min_c available_c * ratio ** (rank_c /
(C - 1))`` (with equal class sizes that is all rows of the largest class). Only the pool is subsampled; the test set
stays as it is.
"""

from __future__ import annotations

import numpy as np

from raydq.strategies import check_random_state
from raydq.strategies.base import RandomState


def long_tail_counts(available: np.ndarray, ratio: float, order: np.ndarray) -> np.ndarray:
    """Rows to keep per class, indexed like ``available``.

    Parameters
    ----------
    available : ndarray of shape (n_classes,)
        Rows available per class (every class needs at least one).
    ratio : float
        Largest class size over smallest, >= 1 (1 keeps ``min(available)`` rows of every class).
    order : ndarray of shape (n_classes,)
        A permutation of the class indices: ``order[0]`` gets the most rows, ``order[-1]`` the fewest.
    """
    available = np.asarray(available, dtype=np.int64)
    order = np.asarray(order)
    n = len(available)
    if not ratio >= 1:
        raise ValueError(f"imbalance ratio must be >= 1, got {ratio!r}")
    if n == 0 or (available < 1).any():
        raise ValueError(f"every class needs at least one row, got {available.tolist()}")
    if sorted(order.tolist()) != list(range(n)):
        raise ValueError(f"order must be a permutation of 0..{n - 1}, got {order.tolist()}")
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    decay = float(ratio) ** (-rank / max(n - 1, 1))  # 1 for the largest class, 1/ratio for the smallest
    n_max = float(np.min(available / decay))
    counts = np.minimum(np.floor(n_max * decay + 0.5).astype(np.int64), available)
    if counts.min() < 1:
        raise ValueError(f"ratio {ratio} needs at least {ratio:.0f} rows in the largest class, got {n_max:.0f}")
    return counts


def long_tail_subset(y: np.ndarray, ratio: float, *, random_state: RandomState = None) -> np.ndarray:
    """Sorted row indices of a long-tailed subsample of the labeled rows ``y`` (labels ``0..max(y)``, every class
    present): a seeded class order (``long_tail_counts``) and, inside each class, a seeded uniform sample of rows.
    The same seed gives the same subset."""
    y = np.asarray(y)
    if y.ndim != 1 or len(y) == 0 or not np.issubdtype(y.dtype, np.integer) or y.min() < 0:
        raise ValueError("y must be a non-empty 1-D array of non-negative integer labels")
    rng = check_random_state(random_state)
    available = np.bincount(y)
    present = np.flatnonzero(available)
    order = present[rng.permutation(len(present))]
    counts = long_tail_counts(available[present], ratio, np.searchsorted(present, order))
    keep = [rng.choice(np.flatnonzero(y == c), size=k, replace=False) for c, k in zip(present, counts, strict=True)]
    return np.sort(np.concatenate(keep))
