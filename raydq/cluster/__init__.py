"""k-means backends (cuML on a GPU, our numpy Lloyd or faiss on the CPU; chosen once by probing) and the array
module work beside k-means runs on. The kernels they share (seeding, assignment, nearest rows, threads) live in
``raydq.numerics``."""

from raydq.cluster.backends import DEFAULT_TOL, FaissKmeans, KmeansBase, NumpyKmeans
from raydq.cluster.choose import BACKENDS, array_module, kmeans, kmeans_backend_name, make_kmeans, probe_backend
from raydq.cluster.cuda import CumlKmeans
from raydq.cluster.lloyd import lloyd

__all__ = [
    "BACKENDS",
    "DEFAULT_TOL",
    "CumlKmeans",
    "FaissKmeans",
    "KmeansBase",
    "NumpyKmeans",
    "array_module",
    "kmeans",
    "kmeans_backend_name",
    "lloyd",
    "make_kmeans",
    "probe_backend",
]
