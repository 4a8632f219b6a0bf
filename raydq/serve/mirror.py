"""``PoolState``: what the selector knows about the pool's rows, kept in step with the label store.

The database is the truth; this mirror holds only O(labels + leases) state in pool rows: the class of each labeled
row, the skipped rows, the leased rows. Before each selection it applies what changed in the store since its
revision (labels and skips) and the live leases, then pushes the rows' status to the shards as deltas
(``ShardedPool.sync_status``). Ids the pool does not hold (labels of items since removed from the store, or of rows
not embedded yet) are remembered and resolved again when the pool grows.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class PoolState:
    """Labeled / skipped / leased rows of a pool, and the label revision they reflect."""

    classes: list[str]
    skip_excludes: bool = True
    revision: int = 0
    labeled: dict[int, int] = field(default_factory=dict)  # row -> class index
    foreign: set[int] = field(default_factory=set)  # labeled with a class not configured now: never selected
    skipped: set[int] = field(default_factory=set)
    leased: set[int] = field(default_factory=set)
    unresolved: dict[str, tuple[str | None, bool]] = field(default_factory=dict)  # id -> (label, skipped)
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False)

    def __post_init__(self) -> None:
        self._class_index = {c: i for i, c in enumerate(self.classes)}

    def refresh(self, store: Any, pool: Any) -> int:
        """Apply label changes after ``revision`` and the live leases; push the status to the shards."""
        with self._lock:
            if store.revision() != self.revision:
                changes = store.labels_since(self.revision)
                self._apply({c.item_id: (c.label, c.skipped) for c in changes}, pool)
                if changes:
                    self.revision = max(c.revision for c in changes)
            self.leased = set(_rows(pool, store.leased_ids()).tolist())
            pool.sync_status(self.labeled_rows(), self.unavailable_rows())
            return self.revision

    def reset(self, pool: Any) -> None:
        """The pool's rows were renumbered (the store was rewritten): forget every row; the next refresh reads every
        answer again."""
        with self._lock:
            self.revision = 0
            self.labeled.clear()
            self.foreign.clear()
            self.skipped.clear()
            self.leased.clear()
            self.unresolved.clear()

    def regrow(self, pool: Any) -> None:
        """The pool grew: ids that were unknown may be known now."""
        with self._lock:
            pending, self.unresolved = self.unresolved, {}
            self._apply(pending, pool)

    def _apply(self, changes: dict[str, tuple[str | None, bool]], pool: Any) -> None:
        if not changes:
            return
        ids = list(changes)
        rows = pool.lookup(ids)
        for item_id, row in zip(ids, rows.tolist(), strict=True):
            label, skipped = changes[item_id]
            if row < 0:
                self.unresolved[item_id] = (label, skipped)
                continue
            self.labeled.pop(row, None)
            self.foreign.discard(row)
            self.skipped.discard(row)
            if skipped:
                self.skipped.add(row)
            elif label in self._class_index:
                self.labeled[row] = self._class_index[label]
            elif label is not None:
                self.foreign.add(row)

    # -- views ------------------------------------------------------------------------------------------------------
    def labeled_rows(self) -> np.ndarray:
        """Rows holding a label (configured class or not): never selected; label-aware strategies see them."""
        return np.fromiter(sorted({*self.labeled, *self.foreign}), dtype=np.int64)

    def unavailable_rows(self) -> np.ndarray:
        """Unlabeled rows that must not be selected now: leased, and skipped (unless configured otherwise)."""
        rows = set(self.leased)
        if self.skip_excludes:
            rows |= self.skipped
        rows -= self.labeled.keys() | self.foreign
        return np.fromiter(sorted(rows), dtype=np.int64)

    def training_rows(self, store: Any, pool: Any) -> tuple[int, np.ndarray, np.ndarray]:
        """``(revision, rows, class indices)`` of the labels a head trains on (configured classes, no skips), read
        under the mirror's lock right after a refresh, so the head is never marked as trained on labels it never
        saw."""
        with self._lock:
            self.refresh(store, pool)
            items = sorted(self.labeled.items())
            return (
                self.revision,
                np.fromiter((r for r, _ in items), dtype=np.int64, count=len(items)),
                np.fromiter((c for _, c in items), dtype=np.int64, count=len(items)),
            )

    def counts(self, n_rows: int) -> dict[str, int]:
        labeled = len(self.labeled) + len(self.foreign)
        unavailable = len(self.unavailable_rows())
        return {
            "labeled": labeled,
            "skipped": len(self.skipped),
            "leased": len(self.leased - self.labeled.keys() - self.foreign),
            "unlabeled_available": max(0, n_rows - labeled - unavailable),
        }


def _rows(pool: Any, ids: list[str]) -> np.ndarray:
    if not ids:
        return np.zeros(0, dtype=np.int64)
    rows = pool.lookup(ids)
    return rows[rows >= 0]
