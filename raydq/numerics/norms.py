"""Row norms and L2 normalisation (cosine geometry for clustering and nearest-row picks), on numpy or cupy."""

from __future__ import annotations

import numpy as np

from raydq.numerics.array_module import ArrayModule

_TINY = np.float32(1e-12)  # an all-zero row stays zero instead of becoming NaN


def row_sq_norms(X, xp: ArrayModule = np):
    """Squared L2 norm of every row, in X's float precision (einsum: no N x D temporary)."""
    return xp.einsum("ij,ij->i", X, X)


def l2_normalise(X, *, copy: bool = True, xp: ArrayModule = np):
    """Rows of ``X`` scaled to unit L2 norm, as float32 on ``xp``. With ``copy=False`` a float32 ``X`` already on
    ``xp`` is scaled in place."""
    out = xp.array(X, dtype=xp.float32) if copy else xp.asarray(X, dtype=xp.float32)
    out /= xp.maximum(xp.sqrt(row_sq_norms(out, xp))[:, None], _TINY)
    return out
