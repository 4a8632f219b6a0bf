"""Small helpers shared by the strategies: normalised features, chunked head outputs, seeded top-k."""

from __future__ import annotations

from typing import Any

import numpy as np

_CHUNK = 65536


def l2_normalise(X: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (float32 copy)."""
    X = np.asarray(X, dtype=np.float32)
    return X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), np.float32(1e-12))


def predict_proba_chunked(head: Any, X: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``head.predict_proba(X[rows])`` in row chunks, so no (len(rows), D) copy of X is made."""
    out = [
        np.asarray(head.predict_proba(X[rows[s : s + _CHUNK]]), dtype=np.float32) for s in range(0, len(rows), _CHUNK)
    ]
    return np.concatenate(out) if out else np.zeros((0, 0), np.float32)


def top_k(scores: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Positions of the ``k`` largest scores, ties broken at random (seeded)."""
    return np.lexsort((rng.random(len(scores)), -np.asarray(scores, dtype=np.float64)))[:k]


def entropy(P: np.ndarray) -> np.ndarray:
    """Shannon entropy (nats) of each row of probabilities."""
    P = np.asarray(P, dtype=np.float64)
    return -(P * np.log(np.clip(P, 1e-12, None))).sum(axis=1)
