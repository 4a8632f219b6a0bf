"""Shared pieces of the strategy tests: a clock-free deadline and a small pool with a trained head."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raydq.deadline import Deadline, DeadlineExceeded
from raydq.head import LinearHead
from raydq.strategies.shards import LABELED, UNAVAILABLE, ArrayShard, LocalShardSet


class CountingDeadline(Deadline):
    """A deadline that passes after ``allowed`` checks: stops a loop in its middle without depending on the clock."""

    def __init__(self, allowed: int) -> None:
        super().__init__(float("inf"))
        object.__setattr__(self, "checks", [])
        object.__setattr__(self, "allowed", allowed)

    def check(self) -> None:
        self.checks.append(1)
        if len(self.checks) > self.allowed:
            raise DeadlineExceeded("test deadline")


@dataclass
class Pool:
    X: np.ndarray  # float32
    status: np.ndarray  # uint8
    truth: np.ndarray
    head: LinearHead


def make_pool(n: int = 3000, d: int = 32, c: int = 6, *, n_labeled: int = 24, n_unavailable: int = 40, seed=0) -> Pool:
    """Gaussian classes that overlap enough for DropQuery to find uncertain rows; some rows labeled, some leased."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(c, d)) * 1.5
    truth = rng.integers(0, c, n)
    X = (centers[truth] + rng.normal(size=(n, d))).astype(np.float32)
    status = np.zeros(n, np.uint8)
    labeled = rng.choice(n, n_labeled, replace=False)
    status[labeled] = LABELED
    status[rng.choice(np.flatnonzero(status == 0), n_unavailable, replace=False)] = UNAVAILABLE
    head = LinearHead(c, random_state=0).fit(X[labeled], truth[labeled])
    return Pool(X, status, truth, head)


class ShardHolder:
    """One ArrayShard in an actor; ``run`` applies a strategy's per-shard function to it."""

    def __init__(self, X, row_offset, status):
        self.shard = ArrayShard(X, row_offset=row_offset, status=status, n_threads=1)

    def run(self, fn, args, kwargs, deadline):
        self.shard.deadline = deadline
        try:
            return fn(self.shard, *args, **kwargs)
        finally:
            self.shard.deadline = None

    def cache_value(self, key):
        return self.shard.cache.get(key)


class ActorShardSet:
    """A ShardSet whose shards live in Ray actors, one each (importable here so that workers can load it)."""

    def __init__(self, ray, local: LocalShardSet):
        actor = ray.remote(num_cpus=0)(ShardHolder)
        self.ray = ray
        self.actors = [actor.remote(s.X, s.row_offset, s.status) for s in local.shards]
        self.n_rows = local.n_rows
        self.dim = local.dim

    def map(self, fn, /, *args, deadline=None, **kwargs):
        return self.ray.get([a.run.remote(fn, args, kwargs, deadline) for a in self.actors])
