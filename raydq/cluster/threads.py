"""BLAS thread control shared by the numeric code (k-means seeding, dropout row threads, head training)."""

from __future__ import annotations

import contextlib


def single_thread_blas() -> contextlib.AbstractContextManager:
    """Single-threaded BLAS within the block: for our own row threads (no oversubscription) and for small problems
    that a BLAS thread pool only slows down."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # without threadpoolctl BLAS keeps its threads; results are the same, only slower
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")
