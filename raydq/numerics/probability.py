"""Softmax, log-softmax and entropy over class scores (rows are samples, columns classes)."""

from __future__ import annotations

import numpy as np

_TINY = 1e-12


def log_softmax(logits: np.ndarray) -> np.ndarray:
    """``log softmax`` of each row, computed stably (a new array)."""
    z = logits - logits.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def softmax(logits: np.ndarray, *, out: np.ndarray | None = None) -> np.ndarray:
    """Class probabilities of each row; ``out=logits`` overwrites the logits (no extra N x C array)."""
    z = np.subtract(logits, logits.max(axis=1, keepdims=True), out=out)
    np.exp(z, out=z)
    z /= z.sum(axis=1, keepdims=True)
    return z


def entropy(P: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row of probabilities, in float64 (scores are compared across shards)."""
    P = np.asarray(P, dtype=np.float64)
    return -(P * np.log(np.clip(P, _TINY, None))).sum(axis=1)
