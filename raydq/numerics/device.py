"""DropQuery's phase 1 in torch, for a pool shard that holds its rows on a GPU.

The same arithmetic as the CPU kernel (``raydq.numerics.dropout_passes``): ``y* = argmax(X @ W + b)``, then
``n_passes`` inverted-dropout passes ``(X * mask) @ (W / keep) + b``, counting per row how many disagree with y*.
Rows are processed in chunks, converted to float32 as they are used (a shard may hold float16), so memory beyond the
outputs stays O(chunk).

Masks come from a torch ``Generator`` on the compute device, one per cell of the global row grid
(``raydq.numerics.grid``, ``chunk_rows`` rows a cell), seeded from ``(seed, cell)``. A cell always draws its whole
mask, and a shard takes its own rows of it, so a row's masks depend only on ``(seed, global row)``: results do not
depend on how the pool is split into shards. They do depend on the device's generator: the masks are not the CPU
kernel's masks (that one draws random bits with numpy), so the same seed gives the same counts in distribution, not
row for row, and CPU and GPU shards must not be mixed in one query.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch

from raydq.deadline import Deadline, check
from raydq.numerics.dropout_passes import check_count_passes, check_dropout, dyadic_keep
from raydq.numerics.grid import cell_seed, grid_cells

DEFAULT_CHUNK_ROWS = 16384


def cell_generator(seed: int, cell: int, device: torch.device) -> torch.Generator:
    """The generator of grid cell ``cell``: a 63-bit seed from the cell's SeedSequence (the CPU kernel's too)."""
    state = cell_seed(seed, cell).generate_state(1, np.uint64)[0]
    return torch.Generator(device=device).manual_seed(int(state) & (2**63 - 1))


def cell_masks(
    seed: int, cell: int, n_passes: int, shape: tuple[int, int], keep: float, device: torch.device
) -> Iterator[torch.Tensor]:
    """The ``n_passes`` keep masks (bool, True = kept with probability ``keep``) of one whole grid cell, drawn one
    at a time.

    The keep rule is the CPU kernel's (``dropout_passes.keep_mask``): exact for a dyadic keep probability
    (``dyadic_keep``), float uniforms otherwise. The mask generator differs because a GPU draws on the device:
    drawing numpy's bits on the host would copy every mask to the device, and torch has neither uniform 64-bit words
    (its integer draws stop below 2**63) nor ``unpackbits`` for ``keep_mask``'s bit-sliced comparison. Instead a
    dyadic ``j / 2**m`` with ``m <= 8`` (the paper's 0.25) compares one random byte with ``j * 2**(8 - m)``, exactly,
    writing a quarter of the memory that float uniforms would; other keep probabilities compare float uniforms."""
    gen = cell_generator(seed, cell, device)
    dyadic = dyadic_keep(keep)
    byte_below = dyadic[0] << (8 - dyadic[1]) if dyadic is not None and dyadic[1] <= 8 else None
    for _ in range(n_passes):
        if keep >= 1.0:
            yield torch.ones(shape, dtype=torch.bool, device=device)
        elif byte_below is not None:
            yield torch.randint(0, 256, shape, generator=gen, device=device, dtype=torch.uint8) < byte_below
        else:
            yield torch.rand(shape, generator=gen, device=device) < keep


def _as_rows(X) -> torch.Tensor:
    if isinstance(X, torch.Tensor):
        return X
    return torch.from_numpy(np.asarray(X))


def mismatch_counts_torch(
    X,
    W,
    b,
    *,
    n_passes: int,
    dropout: float,
    seed: int,
    row_offset: int = 0,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    device: str | torch.device | None = None,
    deadline: Deadline | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(y_star, counts)`` on ``device``: the unperturbed argmax per row (int32) and how many of ``n_passes``
    dropout passes disagree with it (uint8).

    ``X`` (n, D) holds global rows ``row_offset ..``: a torch tensor of any float dtype on any device (a GPU shard's
    float16 rows), or a numpy array. ``W`` (D, C) and ``b`` (C,) are the folded head. ``device`` defaults to
    ``X``'s. ``deadline`` is checked between chunks.
    """
    check_count_passes(n_passes)
    keep = check_dropout(dropout)
    if chunk_rows < 1:
        raise ValueError(f"chunk_rows must be >= 1, got {chunk_rows}")
    X = _as_rows(X)
    if X.ndim != 2 or not X.dtype.is_floating_point:
        raise ValueError(f"X must be a 2-D floating-point array, got {tuple(X.shape)} {X.dtype}")
    device = torch.device(device) if device is not None else X.device
    W = torch.as_tensor(np.asarray(W) if not isinstance(W, torch.Tensor) else W).to(device, torch.float32)
    b = torch.as_tensor(np.asarray(b) if not isinstance(b, torch.Tensor) else b).to(device, torch.float32)
    if W.ndim != 2 or W.shape[0] != X.shape[1] or b.shape != (W.shape[1],):
        raise ValueError(f"W must be (D={X.shape[1]}, C) and b (C,), got {tuple(W.shape)} and {tuple(b.shape)}")
    W_scaled = W / keep
    n, d = X.shape
    y_star = torch.empty(n, dtype=torch.int32, device=device)
    counts = torch.empty(n, dtype=torch.uint8, device=device)
    with torch.inference_mode():
        for cell, a, e in grid_cells(row_offset, n, chunk_rows):
            check(deadline)
            xs = X[a:e].to(device=device, dtype=torch.float32, non_blocking=True)
            y0 = torch.addmm(b, xs, W).argmax(dim=1)
            lo = a + row_offset - cell * chunk_rows  # this shard's rows inside the grid cell
            c = torch.zeros(e - a, dtype=torch.uint8, device=device)
            for mask in cell_masks(seed, cell, n_passes, (chunk_rows, d), keep, device):
                dropped = xs * mask[lo : lo + e - a]
                c += torch.addmm(b, dropped, W_scaled).argmax(dim=1) != y0
            y_star[a:e] = y0.to(torch.int32)
            counts[a:e] = c
    return y_star, counts
