"""The global row grid that chunked kernels follow, so that a pool split into shards computes what the whole pool
computes.

A kernel over rows ``row_offset .. row_offset + n`` of the pool works cell by cell of a grid of ``cell_rows`` global
rows, cut at the slice's edges: every row meets the same cell (the same block shapes, the same random generator)
whichever shard holds it. A cell that draws random numbers draws them for the whole cell from its own generator,
seeded from ``(seed, cell)``, and a shard takes its own rows of them.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np


def grid_cells(row_offset: int, n_rows: int, cell_rows: int) -> Iterator[tuple[int, int, int]]:
    """``(cell, start, stop)`` for every grid cell the rows ``row_offset .. row_offset + n_rows`` touch, in order;
    ``start:stop`` are positions in the slice (not global rows)."""
    if n_rows <= 0:
        return
    end = row_offset + n_rows
    for cell in range(row_offset // cell_rows, -(-end // cell_rows)):
        yield cell, max(cell * cell_rows, row_offset) - row_offset, min((cell + 1) * cell_rows, end) - row_offset


def cell_seed(seed: int, cell: int) -> np.random.SeedSequence:
    """The seed of grid cell ``cell``'s generator: spawned from ``seed``, independent of every other cell's."""
    return np.random.SeedSequence(int(seed), spawn_key=(int(cell),))
