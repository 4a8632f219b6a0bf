"""The array module a kernel computes with: numpy on the host, or cupy on a GPU.

Kernels that may run on a device take it as ``xp`` and call only what numpy and cupy share, so the same lines run on
either; their inputs may stay on the host (each chunk is moved to ``xp`` as it is used), and only small results come
back (``to_host``). Which module a process uses is decided above this layer (``raydq.cluster.choose``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

ArrayModule = Any  # numpy, or cupy on a device


def to_host(a) -> np.ndarray:
    """``a`` as a numpy array (a device array is copied to the host)."""
    return a.get() if hasattr(a, "get") else np.asarray(a)
