"""A compact index from string ids to row positions: sorted 64-bit hashes and a permutation, 12 bytes a row.

A Python dict of millions of ids costs ~100 bytes a row and minutes of pickling; this index costs 12 (uint64 hash +
int32 position) and is built vectorised (pandas' SipHash ``hash_array``, in chunks so no full object array of the
ids ever exists). A lookup hashes the query, binary-searches the hashes and verifies the string itself, so a hash
collision can never answer with the wrong row.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
from pandas.util import hash_array

_HASH_CHUNK = 65_536


def hash_ids(ids: Sequence[str] | np.ndarray) -> np.ndarray:
    """uint64 hash of each id (the same in every process: a fixed SipHash key)."""
    return hash_array(np.asarray(ids, dtype=object), categorize=False)


class IdIndex:
    """Positions of ids in an Arrow string array (``ids[i]`` is at position ``i``)."""

    def __init__(self, ids: pa.Array) -> None:
        n = len(ids)
        hashes = np.empty(n, dtype=np.uint64)
        for a in range(0, n, _HASH_CHUNK):
            hashes[a : a + _HASH_CHUNK] = hash_ids(ids.slice(a, _HASH_CHUNK).to_numpy(zero_copy_only=False))
        order = np.argsort(hashes, kind="stable")
        self._ids = ids
        self._order = order.astype(np.int32 if n < 2**31 else np.int64)
        self._hashes = hashes[order]

    def __len__(self) -> int:
        return len(self._hashes)

    @property
    def nbytes(self) -> int:
        return self._hashes.nbytes + self._order.nbytes

    def positions(self, query: Sequence[str] | np.ndarray) -> np.ndarray:
        """Position of each queried id, -1 where it is not in the index."""
        query = np.asarray(query, dtype=object)
        out = np.full(len(query), -1, dtype=np.int64)
        if not len(query) or not len(self):
            return out
        qh = hash_ids(query)
        lo = np.searchsorted(self._hashes, qh, side="left")
        hi = np.searchsorted(self._hashes, qh, side="right")
        single = np.flatnonzero(hi - lo == 1)
        if len(single):  # the common case, verified in one vectorised take
            pos = self._order[lo[single]]
            found = np.asarray(self._ids.take(pa.array(pos)).to_pylist(), dtype=object)
            ok = found == query[single]
            out[single[ok]] = pos[ok]
        for q in np.flatnonzero(hi - lo > 1):  # equal hashes: a collision or a duplicate id
            for pos in self._order[lo[q] : hi[q]]:
                if self._ids[int(pos)].as_py() == query[q]:
                    out[q] = pos
                    break
        return out

    def duplicates(self, limit: int = 5) -> list[str]:
        """Up to ``limit`` ids that occur more than once (checked on equal hashes only: cheap)."""
        same = np.flatnonzero(self._hashes[1:] == self._hashes[:-1])
        dupes: list[str] = []
        for k in same:
            a, b = self._ids[int(self._order[k])].as_py(), self._ids[int(self._order[k + 1])].as_py()
            if a == b and a not in dupes:
                dupes.append(a)
                if len(dupes) >= limit:
                    break
        return dupes
