"""Row norms and L2 normalisation (cosine geometry for clustering and nearest-row picks)."""

from __future__ import annotations

import numpy as np

_TINY = np.float32(1e-12)  # an all-zero row stays zero instead of becoming NaN


def row_sq_norms(X: np.ndarray) -> np.ndarray:
    """Squared L2 norm of every row, in X's float precision (einsum: no N x D temporary)."""
    return np.einsum("ij,ij->i", X, X)


def l2_normalise(X: np.ndarray, *, copy: bool = True) -> np.ndarray:
    """Rows of ``X`` scaled to unit L2 norm, as float32. With ``copy=False`` a float32 ``X`` is scaled in place."""
    out = np.array(X, dtype=np.float32, copy=copy or None)
    out /= np.maximum(np.sqrt(row_sq_norms(out))[:, None], _TINY)
    return out
