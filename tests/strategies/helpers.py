"""Shared pieces of the strategy tests: a clock-free deadline and a small pool with a trained head."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from raydq.deadline import Deadline, DeadlineExceeded
from raydq.head import LinearHead
from raydq.strategies.shards import LABELED, UNAVAILABLE


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
