"""The unlabeled pool: embeddings loaded from the embedding store, and the per-shard work of a query."""

from raydq.pool.store import MANIFEST_NAME, Manifest, Pool, load_pool, read_manifest, write_manifest

__all__ = ["MANIFEST_NAME", "Manifest", "Pool", "load_pool", "read_manifest", "write_manifest"]
