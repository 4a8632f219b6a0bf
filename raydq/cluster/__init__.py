"""k-means backends (cuML → faiss → torch, chosen once by probing) and nearest-row helpers."""

from raydq.cluster.backends import (
    BACKENDS,
    CumlKmeans,
    FaissKmeans,
    TorchKmeans,
    kmeans,
    kmeans_backend_name,
    make_kmeans,
    probe_backend,
)
from raydq.cluster.nearest import nearest_distinct

__all__ = [
    "BACKENDS",
    "CumlKmeans",
    "FaissKmeans",
    "TorchKmeans",
    "kmeans",
    "kmeans_backend_name",
    "make_kmeans",
    "nearest_distinct",
    "probe_backend",
]
