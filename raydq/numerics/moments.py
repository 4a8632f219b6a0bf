"""Per-feature first and second moments of a pool, mergeable across shards.

The head standardizes its inputs with the mean and variance of the whole unlabeled pool (see ``raydq.head``); a
sharded pool computes them as one ``FeatureMoments`` per shard, summed on the driver. Sums are float64: at 10M rows
of values near 1 the sum of squares keeps about 9 significant digits, far more than a float32 head needs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

_CHUNK_ROWS = 4_096  # float64 copies of 4,096 x D at a time (42 MB at D=1280), whatever the storage dtype


@dataclass(frozen=True)
class FeatureMoments:
    """Row count, per-feature sum and sum of squares: add two to get those of the union of their rows."""

    count: int
    total: np.ndarray  # (D,) float64
    total_sq: np.ndarray  # (D,) float64

    @classmethod
    def of(cls, X: np.ndarray) -> FeatureMoments:
        """The moments of the rows of ``X`` (any float dtype, e.g. a float16 shard), read in chunks."""
        d = X.shape[1]
        total, total_sq = np.zeros(d, np.float64), np.zeros(d, np.float64)
        for start in range(0, len(X), _CHUNK_ROWS):
            chunk = np.asarray(X[start : start + _CHUNK_ROWS], dtype=np.float64)
            total += chunk.sum(axis=0)
            total_sq += np.einsum("ij,ij->j", chunk, chunk)
        return cls(len(X), total, total_sq)

    def __add__(self, other: FeatureMoments) -> FeatureMoments:
        return FeatureMoments(self.count + other.count, self.total + other.total, self.total_sq + other.total_sq)

    @property
    def mean(self) -> np.ndarray:
        """Per-feature mean, float32."""
        if self.count == 0:
            raise ValueError("no rows: the mean of an empty pool is undefined")
        return (self.total / self.count).astype(np.float32)

    @property
    def var(self) -> np.ndarray:
        """Per-feature population variance, float32 (never negative, whatever the rounding)."""
        if self.count == 0:
            raise ValueError("no rows: the variance of an empty pool is undefined")
        mean = self.total / self.count
        return np.maximum(self.total_sq / self.count - mean * mean, 0.0).astype(np.float32)
