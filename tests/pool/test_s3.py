"""The object-storage paths for real, against a local S3-compatible server: the embed writer and job write a store
to ``s3://``, and the listing, ``load_pool`` and shard actors read it back (actors with explicit storage options)."""

from __future__ import annotations

import boto3
import numpy as np
import pytest

from raydq.embed import EmbedConfig, run_embed
from raydq.pool import PoolConfig, ShardedPool, StoreChange, list_store, load_pool, read_manifest
from tests.embed.images import encode, rgb, write_folder
from tests.pool.stores import rows_of, write_rows

pytestmark = pytest.mark.slow


def _keys(server, prefix: str) -> list[str]:
    listed = boto3.client("s3", endpoint_url=server["endpoint"]).list_objects_v2(Bucket=server["bucket"], Prefix=prefix)
    return sorted(o["Key"][len(prefix) :] for o in listed.get("Contents", []))


def test_writer_listing_and_load_pool_on_s3(s3_server):
    uri = f"s3://{s3_server['bucket']}/plain/"
    write_rows(uri, 0, 300, rows_per_file=128)
    write_rows(uri, 300, 50, rows_per_file=128)
    keys = _keys(s3_server, "plain/")
    assert keys[0] == "manifest.json" and len(keys) == 5 and all(k.startswith("part-2") for k in keys[1:])
    listing = list_store(uri)
    assert [f.rows for f in listing.files] == [128, 128, 44, 50] and listing.n_rows == 350
    pool = load_pool(uri)
    ids, X, _, _ = rows_of(0, 350, 16)
    assert list(pool.ids) == list(ids) and pool.manifest.num_rows == 350
    np.testing.assert_array_equal(pool.X, X)
    opts = s3_server["storage_options"]
    assert list_store(f"s3://{s3_server['bucket']}/plain", storage_options=opts).version == listing.version
    with pytest.raises(FileNotFoundError, match="not an embedding store"):
        read_manifest(f"s3://{s3_server['bucket']}/absent/")


def test_embed_job_writes_to_s3_and_actor_shards_load_it_and_grow(ray_cluster, s3_server, tmp_path):
    folder = tmp_path / "imgs"
    first = write_folder(folder, {f"a{n:02d}.png": encode(rgb(200 + n, (32, 32)), "PNG") for n in range(10)})
    uri = f"s3://{s3_server['bucket']}/emb/"
    summary = run_embed(EmbedConfig(source=str(folder), output=uri, batch_size=4, rows_per_shard=4, dtype="float16",
                                    progress=False))  # fmt: skip
    assert summary.images == 10 and summary.output == uri and summary.total_rows == 10
    assert read_manifest(uri).num_rows == 10 and "failures.jsonl" in _keys(s3_server, "emb/")
    # The shard actors reserve no CPU: the embed job below sizes its actor pool from the cluster's total CPUs and
    # would wait forever for CPUs the shards hold (Ray #44687).
    config = PoolConfig(shards=2, num_cpus=0, storage_options=s3_server["storage_options"], ready_timeout_s=60)
    with ShardedPool.open(uri, config) as pool:
        assert pool.n_rows == 10 and pool.manifest.model == "efficientnet_lite0"
        rows = pool.lookup([str(p) for p in first])
        assert sorted(rows) == list(range(10))
        np.testing.assert_array_equal(pool.embeddings(rows), load_pool(uri).X[rows].astype(np.float16))

        more = write_folder(folder, {f"b{n:02d}.png": encode(rgb(300 + n, (32, 32)), "PNG") for n in range(6)})
        again = run_embed(EmbedConfig(source=str(folder), output=uri, batch_size=4, rows_per_shard=4,
                                      dtype="float16", progress=False))  # fmt: skip
        assert (again.images, again.skipped, again.total_rows) == (6, 10, 16)
        assert pool.refresh() is StoreChange.APPENDED and pool.n_rows == 16
        new_rows = pool.lookup([str(p) for p in more])
        assert sorted(new_rows) == list(range(10, 16))  # appended rows come after the existing ones
        assert list(pool.lookup([str(p) for p in first])) == list(rows)  # and the old rows kept their numbers
        pool.sync_status(new_rows[:2], [])
        assert {s["state"] for s in pool.status()["shards"]} == {"ready"}
