"""A pool split into shards, as the strategies see it (ARCHITECTURE §4).

Every strategy runs against a ``ShardSet``: an ordered list of ``ArrayShard``s, each holding a contiguous slice of
the pool (global rows ``row_offset .. row_offset + len(X)``) and the status of those rows. The driver side of a
strategy sends small messages: ``shards.map(fn, *args)`` runs the module-level function ``fn(shard, *args)`` on
every shard at once and returns the results in shard order. Only small results (histograms, a few candidate rows
and their embeddings, top-k lists) come back; nothing of size N crosses a process boundary.

The same strategy code runs on one ``ArrayShard`` in this process (``LocalShardSet``: a laptop, the simulation, the
tests) and on shard actors spread over a Ray cluster (``raydq.pool``, which implements ``ShardSet`` with actors
that each hold one ``ArrayShard``). Every random choice that touches rows is keyed by ``(seed, global row)``, so a
pool split into K shards gives exactly the batch the whole pool gives.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np

from raydq.deadline import Deadline
from raydq.estimator import MISSING_LABEL
from raydq.numerics.grid import grid_cells

T = TypeVar("T")

#: Status bits of a pool row. 0 means selectable.
LABELED = np.uint8(1)  # has a label: never selected; label-aware strategies (coreset, TypiClust, ...) use it
UNAVAILABLE = np.uint8(2)  # leased to an annotator, skipped as unanswerable, ...: not selectable, not labeled


@dataclass
class ArrayShard:
    """Rows ``row_offset .. row_offset + len(X)`` of the pool and their status.

    ``X`` may be stored as float16 or float32; per-shard functions do their arithmetic in float32 chunks, so a
    float16 shard never holds a float32 copy of itself. ``cache`` keeps per-shard results between calls (DropQuery's
    phase-1 counts under the head version and seed, for instance); it is dropped whenever the rows change.
    ``deadline`` is set by the shard set for the duration of one ``map`` call: per-shard functions call
    ``shard.check_deadline()`` between chunks. ``n_threads`` is how many row threads the shard's own kernels may run
    (None: ``raydq.numerics.threads.cpu_budget()``, which inside a shard actor is the actor's CPU allotment).
    """

    X: np.ndarray
    row_offset: int = 0
    status: np.ndarray | None = None
    cache: dict[Any, Any] = field(default_factory=dict, repr=False)
    deadline: Deadline | None = field(default=None, repr=False)
    n_threads: int | None = None

    def __post_init__(self) -> None:
        if self.X.ndim != 2:
            raise ValueError(f"X must be 2-D, got shape {self.X.shape}")
        if self.X.dtype not in (np.float16, np.float32):
            raise ValueError(f"X must be float16 or float32, got {self.X.dtype}")
        if self.status is None:
            self.status = np.zeros(len(self.X), dtype=np.uint8)
        elif self.status.shape != (len(self.X),) or self.status.dtype != np.uint8:
            raise ValueError(f"status must be uint8 of shape ({len(self.X)},)")

    def __len__(self) -> int:
        return len(self.X)

    @property
    def dim(self) -> int:
        return int(self.X.shape[1])

    @property
    def selectable(self) -> np.ndarray:
        return self.status == 0

    @property
    def labeled(self) -> np.ndarray:
        return (self.status & LABELED) != 0

    def global_rows(self, local: np.ndarray) -> np.ndarray:
        return np.asarray(local, dtype=np.int64) + self.row_offset

    def local_rows(self, rows: np.ndarray) -> np.ndarray:
        """Positions in this shard of the global ``rows`` that fall inside it (others are dropped)."""
        rows = np.asarray(rows, dtype=np.int64)
        local = rows - self.row_offset
        return local[(local >= 0) & (local < len(self))]

    def set_status(self, rows: np.ndarray, values: np.ndarray | int) -> None:
        """Set the status of global ``rows`` (all inside this shard) to ``values``."""
        local = np.asarray(rows, dtype=np.int64) - self.row_offset
        if len(local) and (local.min() < 0 or local.max() >= len(self)):
            raise IndexError(f"rows outside this shard [{self.row_offset}, {self.row_offset + len(self)})")
        self.status[local] = values

    def chunk(self, start: int, stop: int) -> np.ndarray:
        """Local rows ``start:stop`` as float32 (a view when the shard already stores float32)."""
        return np.asarray(self.X[start:stop], dtype=np.float32)

    def check_deadline(self) -> None:
        if self.deadline is not None:
            self.deadline.check()

    def grid_chunks(self, chunk_rows: int) -> Iterator[tuple[int, int]]:
        """Local ``(start, stop)`` ranges following a global grid of ``chunk_rows`` rows (cut at the shard's edges),
        checking the deadline before each. Every row meets the same chunk whichever shard holds it, so chunked
        arithmetic gives one answer however the pool is split."""
        for _, start, stop in grid_cells(self.row_offset, len(self), chunk_rows):
            self.check_deadline()
            yield start, stop


class ShardSet(Protocol):
    """What a strategy's driver needs: the pool's size and shape, and a way to run a function on every shard."""

    @property
    def n_rows(self) -> int: ...

    @property
    def dim(self) -> int: ...

    def map(self, fn: Callable[..., T], /, *args: Any, deadline: Deadline | None = None, **kwargs: Any) -> list[T]:
        """``[fn(shard, *args, **kwargs) for shard in shards]``, run concurrently where the shards live; ``fn`` must
        be a module-level function (it is shipped by reference). With ``deadline`` each shard's ``check_deadline``
        raises ``DeadlineExceeded`` after it, and so does ``map``."""
        ...


class LocalShardSet:
    """``ArrayShard``s in this process, run one after the other (numpy already uses the cores)."""

    def __init__(self, shards: Sequence[ArrayShard]) -> None:
        self.shards = list(shards)
        dims = {s.dim for s in self.shards}
        if len(dims) > 1:
            raise ValueError(f"shards disagree on the dimension: {sorted(dims)}")
        expected = 0
        for s in self.shards:
            if s.row_offset != expected:
                raise ValueError(f"shards must be contiguous: one starts at {s.row_offset}, expected {expected}")
            expected += len(s)

    @classmethod
    def from_arrays(cls, X: np.ndarray, status: np.ndarray | None = None, *, n_shards: int = 1) -> LocalShardSet:
        """Contiguous views of one pool (no copies of ``X``; each shard gets its own slice of ``status``)."""
        if status is None:
            status = np.zeros(len(X), dtype=np.uint8)
        bounds = np.linspace(0, len(X), n_shards + 1).astype(int)
        return cls(
            [ArrayShard(X[a:e], row_offset=int(a), status=status[a:e].copy()) for a, e in itertools.pairwise(bounds)]
        )

    @property
    def n_rows(self) -> int:
        return sum(len(s) for s in self.shards)

    @property
    def dim(self) -> int:
        return self.shards[0].dim if self.shards else 0

    def map(self, fn, /, *args, deadline=None, **kwargs):
        out = []
        for s in self.shards:
            s.deadline = deadline
            try:
                out.append(fn(s, *args, **kwargs))
            finally:
                s.deadline = None
        return out


def status_from_labels(y: np.ndarray, exclude: np.ndarray | None = None, *, missing: int = MISSING_LABEL) -> np.ndarray:
    """Row status from a label array (``missing`` where unlabeled) and an optional mask of unavailable rows."""
    status = np.where(np.asarray(y) != missing, LABELED, np.uint8(0)).astype(np.uint8)
    if exclude is not None:
        status[np.asarray(exclude, dtype=bool) & (status == 0)] = UNAVAILABLE
    return status


@dataclass(frozen=True)
class Selection:
    """What a strategy chose: global pool rows (distinct, selectable) and how it chose them (``info``: for example
    DropQuery's threshold and candidate count, or ``{"sampled_rows": n}`` when a whole-pool strategy ran on a
    uniform sample of a large pool)."""

    rows: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)


# -- per-shard functions every strategy's driver uses ---------------------------------------------------------------
@dataclass(frozen=True)
class StatusCounts:
    """How many rows a shard holds, how many are selectable and how many labeled."""

    rows: int
    selectable: int
    labeled: int

    def __add__(self, other: StatusCounts) -> StatusCounts:
        return StatusCounts(self.rows + other.rows, self.selectable + other.selectable, self.labeled + other.labeled)


def status_counts(shard: ArrayShard) -> StatusCounts:
    return StatusCounts(len(shard), int(np.count_nonzero(shard.selectable)), int(np.count_nonzero(shard.labeled)))


def count_selectable(shard: ArrayShard, rows: np.ndarray) -> int:
    """How many of the global ``rows`` lie in this shard and are selectable (checks a strategy's answer)."""
    return int(np.count_nonzero(shard.selectable[shard.local_rows(rows)]))
