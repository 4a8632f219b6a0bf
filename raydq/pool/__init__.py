"""The unlabeled pool: the embedding store, and the shards that hold it in memory (ARCHITECTURE §4).

The driver API (what a service holds)::

    pool = ShardedPool.open("s3://bucket/emb/", PoolConfig(shards=4, dtype="float16"))
    pool.n_rows, pool.dim, pool.manifest, pool.store_version   # size, width, what made it, a version of its files
    pool.shards                                  # a ShardSet: strategy.select(pool.shards, batch_size=..., ...)
    rows = pool.lookup(["id-1", "id-2"])         # global rows, -1 for unknown ids
    pool.describe(rows)                          # [(id, uri), ...]
    pool.embeddings(rows)                        # float32 (n, dim), e.g. a head's training set
    pool.sync_status(labeled_rows, leased_rows)  # before each query: only changed rows travel, as deltas
    change = pool.refresh()                      # on a poll interval / admin call: StoreChange.UNCHANGED,
                                                 #   APPENDED (new rows after the old) or RELOADED (rewritten:
                                                 #   map ids to rows again and sync the status anew;
                                                 #   pool.generation counts these renumberings)
    pool.status()                                # pool size, store version, per shard: rows, node, state
    pool.close()

A query on ``pool.shards`` raises ``PoolUnavailable`` (503 with ``Retry-After: retry_after_s``) when a shard did not
come back from a restart within ``PoolConfig.ready_timeout_s``, and ``DeadlineExceeded`` past its deadline.
``PoolConfig(use_actors=False)`` keeps every shard in the calling process (no Ray): same API, same answers.

Small tools load a whole store into one float32 ``Pool`` with ``load_pool`` (same row order).
"""

from raydq.pool.config import PoolConfig
from raydq.pool.errors import PoolUnavailable
from raydq.pool.listing import StoreListing, list_store
from raydq.pool.sharded import ShardedPool, StoreChange
from raydq.pool.store import MANIFEST_NAME, Manifest, Pool, load_pool, read_manifest, write_manifest

__all__ = [
    "MANIFEST_NAME",
    "Manifest",
    "Pool",
    "PoolConfig",
    "PoolUnavailable",
    "ShardedPool",
    "StoreChange",
    "StoreListing",
    "list_store",
    "load_pool",
    "read_manifest",
    "write_manifest",
]
