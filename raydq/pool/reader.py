"""Read global rows ``[start, stop)`` of a store into memory, row group by row group, into one preallocated array.

Peak memory is the slice itself plus one row group: each row group's embedding column is converted straight into
its place in the output (float32 -> float16 casts included) and dropped before the next is read, and Arrow's
allocator is asked to hand freed buffers back to the system at the end. Ids and uris stay Arrow string arrays
(offsets + bytes, ~10x smaller than Python strings).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from raydq.estimator import MISSING_LABEL
from raydq.pool.fs import StorageOptions, filesystem_for
from raydq.pool.listing import StoreListing

DTYPES = {"float16": np.float16, "float32": np.float32}


@dataclass(frozen=True)
class RowSlice:
    """Rows ``start .. start + len(X)`` of a store. ``uris``/``labels`` are None when the store has no such column."""

    start: int
    X: np.ndarray
    ids: pa.LargeStringArray
    uris: pa.LargeStringArray | None
    labels: np.ndarray | None


def embedding_values(column: pa.Array | pa.ChunkedArray, n: int) -> np.ndarray:
    """An (n, D) view of a list column's values (fixed-size or regular variable-size lists), copying only if Arrow
    must (nulls, several chunks)."""
    if isinstance(column, pa.ChunkedArray):
        column = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
    if column.null_count:
        raise ValueError("the embedding column holds nulls")
    values = column.flatten().to_numpy(zero_copy_only=False)
    if n == 0:
        return values.reshape(0, 0)
    if values.size % n:
        raise ValueError("embeddings have differing lengths")
    return values.reshape(n, values.size // n)


def store_dim(listing: StoreListing, storage_options: StorageOptions | None = None) -> int:
    """The embedding width, from the first file's schema (or its first row when the lists are not fixed-size)."""
    if not listing.files:
        raise ValueError(f"{listing.location}: the store holds no Parquet files")
    fs, _ = filesystem_for(listing.location, storage_options)
    with fs.open_input_file(listing.path(listing.files[0])) as f:
        pf = pq.ParquetFile(f)
        names = pf.schema_arrow.names
        if not {"id", "embedding"} <= set(names):
            raise ValueError(f"{listing.location}: an embedding store needs 'id' and 'embedding' columns, has {names}")
        kind = pf.schema_arrow.field("embedding").type
        if pa.types.is_fixed_size_list(kind):
            return int(kind.list_size)
        first = pf.read_row_group(0, columns=["embedding"]).column(0)
        return int(embedding_values(first.slice(0, 1), 1).shape[1])


def read_rows(
    listing: StoreListing,
    start: int,
    stop: int,
    *,
    dtype: str = "float32",
    dim: int | None = None,
    with_labels: bool = False,
    storage_options: StorageOptions | None = None,
) -> RowSlice:
    """Global rows ``[start, stop)`` of the store as listed; ``dtype`` is the in-memory embedding dtype."""
    if dtype not in DTYPES:
        raise ValueError(f"dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
    if not 0 <= start <= stop <= listing.n_rows:
        raise ValueError(f"rows [{start}, {stop}) are outside the store's {listing.n_rows} rows")
    dim = store_dim(listing, storage_options) if dim is None else dim
    fs, _ = filesystem_for(listing.location, storage_options)
    X = np.empty((stop - start, dim), dtype=DTYPES[dtype])
    ids: list[pa.Array] = []
    uris: list[pa.Array] = []
    labels = np.full(stop - start, MISSING_LABEL, dtype=np.int64) if with_labels else None
    any_uri = any_label = False
    for f, offset in listing.overlapping(start, stop):
        with fs.open_input_file(listing.path(f)) as handle:
            pf = pq.ParquetFile(handle)
            names = set(pf.schema_arrow.names)
            has_uri, has_label = "uri" in names, "label" in names
            any_uri, any_label = any_uri or has_uri, any_label or has_label
            columns = ["id", "embedding"] + ["uri"] * has_uri + ["label"] * (has_label and with_labels)
            group_start = offset
            for g in range(pf.metadata.num_row_groups):
                n = pf.metadata.row_group(g).num_rows
                lo, hi = max(start, group_start), min(stop, group_start + n)
                if lo < hi:
                    table = pf.read_row_group(g, columns=columns).slice(lo - group_start, hi - lo)
                    values = embedding_values(table.column("embedding"), hi - lo)
                    if values.shape[1] != dim:
                        raise ValueError(f"{f.name}: embeddings have {values.shape[1]} values, the store has {dim}")
                    X[lo - start : hi - start] = values  # casts in place: no float32 copy of a float16 slice
                    ids.extend(table.column("id").cast(pa.large_string()).chunks)
                    if has_uri:
                        uris.extend(table.column("uri").cast(pa.large_string()).chunks)
                    else:
                        uris.append(pa.nulls(hi - lo, pa.large_string()))
                    if labels is not None and has_label:
                        labels[lo - start : hi - start] = table.column("label").fill_null(MISSING_LABEL).to_numpy()
                    del table, values
                group_start += n
                if group_start >= stop:
                    break
    pa.default_memory_pool().release_unused()
    id_array = pa.concat_arrays(ids) if ids else pa.array([], type=pa.large_string())
    if id_array.null_count:
        raise ValueError(f"{listing.location}: the id column holds nulls")
    uri_array = pa.concat_arrays(uris) if any_uri else None
    return RowSlice(start=start, X=X, ids=id_array, uris=uri_array, labels=labels if any_label else None)
