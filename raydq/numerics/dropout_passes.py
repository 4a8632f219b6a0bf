"""Dropout passes through a folded linear head, near the cost of plain matrix products.

Per-element masks drawn as one float per element cost several times the matmul they feed (random-number generation
dominates on a CPU). Here masks come from random bits: an element is kept with probability ``q = j / 2**m`` by
comparing ``m`` independent random bits with ``j`` (bit-sliced over 64-bit words, so for the default ``q = 1/4`` one
keep bit is the AND of two random bits and one pair of 64-bit words gives 64 mask elements). Each element's keep bit
is still an independent Bernoulli(q) draw, exactly as in per-element inverted dropout; the ``1/q`` rescaling is folded
into the weights (``(x * m / q) @ W == (x * m) @ (W / q)``). Keep probabilities that are not dyadic fall back to
float uniforms.

Rows are processed in the cells of a global row grid (``raydq.numerics.grid``), each with its own generator derived
from ``(seed, cell)``, so the result does not depend on how many threads ran the chunks or on how the pool is
sharded, and memory stays O(chunk) beyond the outputs. A GPU shard runs the same passes in torch
(``raydq.numerics.device``). Features may be
stored as float16: each chunk is converted to float32 on its own (a float16 pool never gets a float32 copy), and a
deadline is checked before every chunk.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from fractions import Fraction
from typing import Any

import numpy as np

from raydq.deadline import Deadline, check
from raydq.numerics.grid import cell_seed, grid_cells
from raydq.numerics.threads import cpu_budget, single_thread_blas

_MAX_BITS = 16
DEFAULT_CHUNK_ROWS = 1024


def dyadic_keep(keep_prob: float) -> tuple[int, int] | None:
    """``(j, m)`` with ``keep_prob == j / 2**m`` exactly (m <= 16), or None when the probability is not dyadic."""
    frac = Fraction(float(keep_prob))
    den = frac.denominator
    if den & (den - 1) or den > 2**_MAX_BITS:
        return None
    return frac.numerator, den.bit_length() - 1


def check_dropout(dropout: float) -> float:
    """The keep probability ``1 - dropout``; a clear error unless ``0 <= dropout < 1``."""
    if not 0.0 <= dropout < 1.0:
        raise ValueError(f"dropout must be in [0, 1), got {dropout}")
    return 1.0 - dropout


def check_count_passes(n_passes: int) -> None:
    """Mismatch counts are uint8: 1 to 255 passes."""
    if not 1 <= n_passes <= 255:
        raise ValueError(f"n_passes must be in [1, 255], got {n_passes}")


def _cell_rng(seed: int, cell: int) -> np.random.Generator:
    return np.random.Generator(np.random.SFC64(cell_seed(seed, cell)))


def keep_mask(rng: np.random.Generator, n_rows: int, n_cols: int, keep_prob: float) -> np.ndarray:
    """An ``(n_rows, n_cols)`` uint8 array of independent Bernoulli(``keep_prob``) keep bits (1 = kept)."""
    if not 0.0 < keep_prob <= 1.0:
        raise ValueError(f"keep_prob must be in (0, 1], got {keep_prob}")
    if keep_prob == 1.0:
        return np.ones((n_rows, n_cols), dtype=np.uint8)
    dy = dyadic_keep(keep_prob)
    if dy is None:
        return (rng.random((n_rows, n_cols), dtype=np.float32) < np.float32(keep_prob)).view(np.uint8)
    j, m = dy
    words_per_row = -(-n_cols // 64)
    n_words = n_rows * words_per_row
    bits = rng.integers(0, 2**64 - 1, size=(m, n_words), dtype=np.uint64, endpoint=True)
    # Bit-sliced "u < j" for the m-bit uniform u whose bits are the m rows of `bits` (most significant first).
    lt = np.zeros(n_words, dtype=np.uint64)
    eq = np.full(n_words, np.uint64(2**64 - 1))
    for i in range(m):
        r = bits[i]
        if (j >> (m - 1 - i)) & 1:
            lt |= eq & ~r
            eq &= r
        else:
            eq &= ~r
    mask = np.unpackbits(lt.view(np.uint8)).reshape(n_rows, words_per_row * 64)
    return mask[:, :n_cols] if n_cols != words_per_row * 64 else mask


ChunkFn = Callable[[int, np.ndarray, list[np.ndarray]], None]


def map_dropout_chunks(
    X: np.ndarray,
    W: np.ndarray,
    b: np.ndarray,
    fn: ChunkFn,
    *,
    dropout: float,
    n_passes: int,
    seed: int,
    row_offset: int = 0,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    n_threads: int | None = None,
    deadline: Deadline | None = None,
) -> None:
    """For each row chunk ``X[s:e]`` call ``fn(s, logits, [logits under dropout pass k for k < n_passes])``.

    ``logits = X @ W + b`` (the folded head, ``W`` of shape (D, C)); dropout with rate ``dropout`` (inverted, as
    torch does) is applied to the features in each pass. ``X`` holds global rows ``row_offset ..``; chunks follow a
    global grid of ``chunk_rows`` rows and each grid cell has its own generator, so a row's masks depend only on
    ``(seed, global row)`` and a pool split into shards gets the same masks as the whole pool. ``fn`` must only write
    its own rows of its outputs; chunks run on ``n_threads`` threads (default: ``cpu_budget()``, so a shard actor
    uses its CPU allotment). ``X`` may be float16 or float32 (arithmetic is float32). ``deadline`` (a
    ``raydq.deadline.Deadline``) is checked before each chunk; its ``DeadlineExceeded`` stops every thread at its next
    chunk and propagates.
    """
    keep = check_dropout(dropout)
    X = np.asarray(X)
    if X.dtype not in (np.float16, np.float32):
        raise ValueError(f"X must be float16 or float32, got {X.dtype}")
    if not isinstance(chunk_rows, int | np.integer) or chunk_rows < 1:
        raise ValueError(f"chunk_rows must be a positive integer, got {chunk_rows!r}")
    W = np.ascontiguousarray(W, dtype=np.float32)
    b = np.asarray(b, dtype=np.float32)
    W_scaled = (W / np.float32(keep)).astype(np.float32)
    n, d = X.shape
    cells = list(grid_cells(row_offset, n, chunk_rows))
    threads = max(1, min(n_threads or cpu_budget(), len(cells)))

    def run(worker: int) -> None:
        buf = np.empty((chunk_rows, d), dtype=np.float32)
        for cell, a, e in cells[worker::threads]:
            check(deadline)
            xs = np.asarray(X[a:e], dtype=np.float32)
            out = buf[: e - a]
            logits = xs @ W + b
            rng = _cell_rng(seed, cell)
            lo = a + row_offset - cell * chunk_rows  # this shard's rows inside the grid cell
            passes = []
            for _ in range(n_passes):
                mask = keep_mask(rng, chunk_rows, d, keep)  # always the whole grid cell, then this shard's rows
                np.multiply(xs, mask[lo : lo + e - a], out=out)
                passes.append(out @ W_scaled + b)
            fn(a, logits, passes)

    if threads == 1:
        run(0)
        return
    with single_thread_blas(), ThreadPoolExecutor(threads) as pool:
        for f in [pool.submit(run, w) for w in range(threads)]:
            f.result()


def mismatch_counts(
    X: np.ndarray, W: np.ndarray, b: np.ndarray, *, n_passes: int, **kwargs: Any
) -> tuple[np.ndarray, np.ndarray]:
    """``(y_star, counts)``: the unperturbed argmax per row and how many of ``n_passes`` dropout passes disagree.

    The other keywords (dropout, seed, row_offset, chunk_rows, n_threads, deadline) are ``map_dropout_chunks``'s."""
    check_count_passes(n_passes)
    n = len(X)
    y_star = np.empty(n, dtype=np.int32)
    counts = np.empty(n, dtype=np.uint8)

    def fn(s: int, logits: np.ndarray, passes: list[np.ndarray]) -> None:
        y0 = logits.argmax(axis=1)
        c = np.zeros(len(y0), dtype=np.uint8)
        for lp in passes:
            c += lp.argmax(axis=1) != y0
        y_star[s : s + len(y0)] = y0
        counts[s : s + len(y0)] = c

    map_dropout_chunks(X, W, b, fn, n_passes=n_passes, **kwargs)
    return y_star, counts
