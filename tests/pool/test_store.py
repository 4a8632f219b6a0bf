"""The store layout without Ray: canonical file order, versions, footer-only listing, slice reads, the id index,
load_pool, and the writer's names."""

from __future__ import annotations

import os
import tracemalloc
from datetime import UTC, datetime, timedelta

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from raydq.embed.writer import ShardWriter, count_rows
from raydq.pool.ids import IdIndex
from raydq.pool.listing import canonical_key, list_store, part_name
from raydq.pool.reader import read_rows
from raydq.pool.store import Manifest, load_pool, store_schema, write_manifest
from tests.pool.stores import rows_of, write_rows


def _legacy_file(path, start: int, n: int, dim: int = 16, row_group: int | None = None) -> None:
    """A file as stores were written before timestamped names (random run id), or by another tool."""
    ids, X, uris, labels = rows_of(start, n, dim)
    table = pa.table(
        {
            "id": pa.array(list(ids), pa.string()),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(X.reshape(-1)), dim),
            "uri": pa.array(list(uris), pa.string()),
            "label": pa.array(labels, pa.int64()),
        },
        schema=store_schema(dim, "float32"),
    )
    pq.write_table(table, path, row_group_size=row_group)


def test_canonical_order_puts_legacy_names_first_and_timestamps_in_time_order():
    t = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    later = part_name("aaaa", 0, t + timedelta(microseconds=1))
    earlier = part_name("ffff", 7, t)
    assert earlier == "part-20260102T030405678901-ffff-00007.parquet"
    legacy = ["part-fe01ab23-00000.parquet", "other.parquet"]
    names = sorted([later, *legacy, earlier], key=canonical_key)
    assert names == ["other.parquet", "part-fe01ab23-00000.parquet", earlier, later]


def test_listing_counts_rows_from_footers_and_versions_change_on_append_only(tmp_path):
    _legacy_file(tmp_path / "part-0badc0de-00000.parquet", 0, 50, row_group=16)
    (tmp_path / ".part-crashed.parquet.tmp").write_bytes(b"PAR1 half")  # hidden: ignored
    (tmp_path / "_SUCCESS.parquet").write_bytes(b"")  # hidden: ignored
    first = list_store(str(tmp_path))
    assert [f.rows for f in first.files] == [50] and first.n_rows == 50
    assert list_store(str(tmp_path)).version == first.version  # stable while nothing changes

    write_rows(str(tmp_path), 50, 300, rows_per_file=128)  # a later run: three timestamped files after the old one
    grown = list_store(str(tmp_path), previous=first)
    assert [f.rows for f in grown.files] == [50, 128, 128, 44]
    assert grown.files[0].name == "part-0badc0de-00000.parquet"
    assert grown.version != first.version and grown.extends(first) and not first.extends(grown)
    assert list(grown.offsets) == [0, 50, 178, 306, 350]
    assert count_rows(str(tmp_path)) == 350

    _legacy_file(tmp_path / "part-0badc0de-00000.parquet", 0, 60)  # rewritten in place: not an append
    rewritten = list_store(str(tmp_path), previous=grown)
    assert rewritten.files[0].rows == 60 and not rewritten.extends(grown)
    _legacy_file(tmp_path / "part-00000000-00000.parquet", 1000, 5)  # sorts before the old file: renumbers rows
    inserted = list_store(str(tmp_path))
    assert not inserted.extends(rewritten) and inserted.n_rows == 365


def test_listing_of_a_missing_store_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match="no embedding store"):
        list_store(str(tmp_path / "absent"))


@pytest.mark.parametrize("dtype", ["float16", "float32"])
def test_read_rows_returns_exactly_the_slice_across_files_and_row_groups(tmp_path, dtype):
    _legacy_file(tmp_path / "part-0badc0de-00000.parquet", 0, 100, row_group=30)
    write_rows(str(tmp_path), 100, 400, rows_per_file=150, dtype="float32")
    listing = list_store(str(tmp_path))
    ids, X, uris, labels = rows_of(0, 500, 16)
    for start, stop in [(0, 500), (0, 1), (29, 31), (90, 260), (250, 500), (499, 500)]:
        got = read_rows(listing, start, stop, dtype=dtype, with_labels=True)
        assert got.X.dtype == np.dtype(dtype) and got.X.shape == (stop - start, 16)
        np.testing.assert_array_equal(got.X, X[start:stop].astype(dtype))
        assert got.ids.to_pylist() == list(ids[start:stop])
        assert got.uris.to_pylist() == list(uris[start:stop])
        np.testing.assert_array_equal(got.labels, labels[start:stop])
    with pytest.raises(ValueError, match="outside"):
        read_rows(listing, 400, 501)
    with pytest.raises(ValueError, match="dtype"):
        read_rows(listing, 0, 1, dtype="float64")


def test_read_rows_holds_one_float16_array_not_a_float32_copy(tmp_path):
    write_rows(str(tmp_path), 0, 4000, dim=256, rows_per_file=1000, dtype="float32")
    listing = list_store(str(tmp_path))
    tracemalloc.start()
    try:
        got = read_rows(listing, 0, 4000, dtype="float16")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert got.X.nbytes == 4000 * 256 * 2
    assert peak < 1.5 * got.X.nbytes  # the slice, plus one row group in flight (numpy-side allocations)


def test_id_index_finds_ids_verifies_strings_and_reports_duplicates():
    ids = pa.array([f"id-{i}" for i in range(1000)] + ["id-7"], pa.large_string())
    index = IdIndex(ids)
    got = index.positions(["id-999", "missing", "id-0", "id-7"])
    assert list(got) == [999, -1, 0, 7]  # a duplicate answers with its first position
    assert index.duplicates() == ["id-7"]
    assert list(IdIndex(pa.array([], pa.large_string())).positions(["a"])) == [-1]
    assert index.nbytes == 1001 * 12


def test_load_pool_uses_the_canonical_order_with_labels_and_uris(tmp_path):
    write_rows(str(tmp_path), 0, 200, rows_per_file=64)
    write_rows(str(tmp_path), 200, 100, rows_per_file=64)
    pool = load_pool(tmp_path)
    ids, X, uris, labels = rows_of(0, 300, 16)
    assert list(pool.ids) == list(ids) and list(pool.uris) == list(uris)
    np.testing.assert_array_equal(pool.X, X)
    np.testing.assert_array_equal(pool.labels, labels)
    assert pool.manifest.num_rows == 300 and pool.index_of(["img-000250"])[0] == 250
    write_manifest(tmp_path, Manifest(model="m", weights="w", dim=8, num_rows=300))
    with pytest.raises(ValueError, match="dim=8"):
        load_pool(tmp_path)


def test_writer_names_sort_after_every_file_already_in_the_store(tmp_path):
    future = datetime.now(UTC) + timedelta(days=365)
    _legacy_file(tmp_path / part_name("0future0", 0, future), 0, 10)  # e.g. written by a machine with a fast clock
    writer = ShardWriter(str(tmp_path), dim=16, dtype="float16", rows_per_shard=5)
    writer.add(*rows_of(10, 12, 16))
    writer.close()
    names = [f.name for f in list_store(str(tmp_path)).files]
    assert len(names) == 4 and names[0].endswith("-0future0-00000.parquet")
    assert [n.rsplit("-", 1)[1] for n in names[1:]] == ["00000.parquet", "00001.parquet", "00002.parquet"]
    assert list(load_pool(tmp_path).ids) == [f"img-{i:06d}" for i in range(22)]
    assert not [n for n in os.listdir(tmp_path) if n.endswith(".tmp")]
