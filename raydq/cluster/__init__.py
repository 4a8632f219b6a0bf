"""k-means backends (cuML on a GPU, our numpy Lloyd or faiss on the CPU; chosen once by probing), the threads
numeric work may use, and the nearest-row search that turns centroids into pool items."""

from raydq.cluster.backends import DEFAULT_TOL, FaissKmeans, KmeansBase, NumpyKmeans
from raydq.cluster.choose import BACKENDS, kmeans, kmeans_backend_name, make_kmeans, probe_backend
from raydq.cluster.cuda import CumlKmeans
from raydq.cluster.lloyd import kmeans_plusplus, lloyd, nearest_centroid
from raydq.cluster.nearest import nearest_distinct
from raydq.cluster.threads import cpu_budget

__all__ = [
    "BACKENDS",
    "DEFAULT_TOL",
    "CumlKmeans",
    "FaissKmeans",
    "KmeansBase",
    "NumpyKmeans",
    "cpu_budget",
    "kmeans",
    "kmeans_backend_name",
    "kmeans_plusplus",
    "lloyd",
    "make_kmeans",
    "nearest_centroid",
    "nearest_distinct",
    "probe_backend",
]
