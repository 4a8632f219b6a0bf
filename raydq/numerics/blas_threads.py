"""BLAS thread control for numeric code that runs its own row threads or many tiny products."""

from __future__ import annotations

import contextlib

from threadpoolctl import threadpool_limits


def single_thread_blas() -> contextlib.AbstractContextManager:
    """Single-threaded BLAS within the block: for our own row threads (no oversubscription) and for small problems
    that a BLAS thread pool only slows down (k-means++ seeding's k sequential products, a small head fit)."""
    return threadpool_limits(1, user_api="blas")
