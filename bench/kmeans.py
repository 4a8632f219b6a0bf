"""k-means backends against their compute floor: ``python bench/kmeans.py``.

For each case (n x d points into k clusters) every CPU backend trains from the same seed, and its time is set
against the floor measured in the same process: the number of assignment passes it actually ran times one
assignment product ``x @ c.T`` of the same shape (Lloyd cannot cost less). Each backend's objective, measured on all
points, is printed relative to the best of the case. ``--sweep`` also varies our backend's stopping tolerance,
training sample and seeding sample, to show what each buys or costs in objective. Fixed seeds and data: every run
does the same work. Timings are the best of ``--repeats``, alternated with the floor's products; the load average
is printed beside them (a shared machine's wall-time ratios are not to be trusted). The CPU-time ratio (CPU seconds
of all threads, against the products' CPU seconds on one thread) is the extra work beyond the products: load
barely moves it, but spinning threads (OpenMP's, faiss's) count in it.

Cases: the DropQuery candidate clustering for B = 100 (25,600 x 768 -> 100) and for B = 1000 (256,000 x 512 ->
1000; 64,000 rows on the CPU unless ``--full``, since 25 passes of the full size take minutes on 2 cores).
``--store DIR`` adds an embedding store's L2-normalised rows (the centroid cold start) as a case.
"""

from __future__ import annotations

import argparse
import os
import time
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits

from raydq.numerics.norms import l2_normalise
from raydq.numerics.threads import cpu_budget, single_thread_blas


@dataclass(frozen=True)
class Case:
    name: str
    n: int
    d: int
    k: int


def cases(full: bool) -> list[Case]:
    n_large = 256_000 if full else 64_000
    return [Case("B=100 candidates", 25_600, 768, 100), Case("B=1000 candidates", n_large, 512, 1000)]


def make_data(case: Case, seed: int = 0) -> np.ndarray:
    """Unit-norm rows around ``k`` overlapping centers (like DropQuery's normalised candidates: clustered, but not
    cleanly), written chunk by chunk."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((case.k, case.d), dtype=np.float32) * np.float32(0.35)
    x = np.empty((case.n, case.d), dtype=np.float32)
    for s in range(0, case.n, 16384):
        e = min(case.n, s + 16384)
        rng.standard_normal(out=x[s:e], dtype=np.float32)
        x[s:e] += centers[rng.integers(0, case.k, e - s)]
    return l2_normalise(x, copy=False)


def load_store(directory: str) -> np.ndarray:
    from raydq.pool.store import load_pool

    return l2_normalise(load_pool(directory).X)


@dataclass(frozen=True)
class Timing:
    """Best wall time and best CPU time (all threads of the process) of a piece of work."""

    wall: float
    cpu: float


def timed(fn) -> Timing:
    w, c = time.perf_counter(), time.process_time()
    fn()
    return Timing(time.perf_counter() - w, time.process_time() - c)


def best(timings: list[Timing]) -> Timing:
    return Timing(min(t.wall for t in timings), min(t.cpu for t in timings))


def train_and_floor(km, x: np.ndarray, repeats: int) -> tuple[Timing, Timing]:
    """Training and one assignment product of the same shape (the training rows against ``k`` centroids),
    alternated so that both see the same machine. The product's wall time is with the process's BLAS threads;
    its CPU time is taken on one thread (the arithmetic alone, no thread spinning), so that the CPU-time ratio is
    the work done beyond the products, which other processes on a shared machine do not change."""
    n_train = min(len(x), (km.max_points_per_centroid or len(x)) * km.k)
    rows, c = x[:n_train], x[np.random.default_rng(1).choice(len(x), km.k, replace=False)]
    rows @ c.T  # warm the BLAS threads
    train, gemm_wall, gemm_cpu = [], [], []
    for _ in range(repeats):
        train.append(timed(lambda: km.train(x)))
        gemm_wall.extend(timed(lambda: rows @ c.T) for _ in range(2))
        with single_thread_blas():
            gemm_cpu.append(timed(lambda: rows @ c.T))
    return best(train), Timing(best(gemm_wall).wall, best(gemm_cpu).cpu)


def make_estimator(backend: str, case: Case, **params):
    from raydq.cluster import make_kmeans

    return make_kmeans(case.d, case.k, backend=backend, seed=1234, **params)


def run_case(case: Case, x: np.ndarray, configs: list[tuple[str, str, dict]], repeats: int) -> None:
    rows = []
    for label, backend, params in configs:
        seed_rows = params.pop("seed_rows_per_centroid", None)
        km = make_estimator(backend, case, **params)
        if seed_rows is not None:
            km.SEED_ROWS_PER_CENTROID = seed_rows
        spent, gemm = train_and_floor(km, x, repeats)
        objective = float(km.assign(x)[0].sum(dtype=np.float64))
        rows.append((label, spent, km.iterations, gemm, objective))
    least = min(r[4] for r in rows)
    print(f"{case.name}: {case.n:,} x {case.d} -> {case.k}   load {fmt_load()}")
    for label, spent, passes, gemm, objective in rows:
        print(
            f"  {label:<34} {spent.wall:7.3f}s  floor {passes * gemm.wall:7.3f}s ({passes:2d} x"
            f" {gemm.wall * 1e3:6.1f} ms)  ratio {spent.wall / (passes * gemm.wall):5.2f}"
            f"  cpu-time ratio {spent.cpu / (passes * gemm.cpu):5.2f}  objective {objective / least:.4f} x best"
        )


def fmt_load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def backend_configs(niter: int) -> list[tuple[str, str, dict]]:
    return [
        ("numpy (default tol)", "numpy", {"niter": niter}),
        ("numpy tol=0", "numpy", {"niter": niter, "tol": 0.0}),
        ("faiss", "faiss", {"niter": niter}),
    ]


def sweep_configs(niter: int) -> list[tuple[str, str, dict]]:
    out = [("numpy tol=0 (reference)", "numpy", {"niter": niter, "tol": 0.0})]
    out += [(f"numpy tol={tol:g}", "numpy", {"niter": niter, "tol": tol}) for tol in (1e-3, 3e-4, 1e-4, 3e-5)]
    out += [(f"numpy {p} points/centroid", "numpy", {"niter": niter, "max_points_per_centroid": p}) for p in (64, 128)]
    out += [
        (f"numpy seeding {r} rows/centroid", "numpy", {"niter": niter, "seed_rows_per_centroid": r}) for r in (4, 32)
    ]
    out += [(f"numpy niter={n}", "numpy", {"niter": n, "tol": 0.0}) for n in (5, 10, 15)]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per configuration; the best is reported")
    parser.add_argument("--niter", type=int, default=25, help="iteration cap (today's callers use 25)")
    parser.add_argument("--full", action="store_true", help="the B=1000 case at its real size, 256,000 rows")
    parser.add_argument("--only", choices=["small", "large"], help="run one case only")
    parser.add_argument("--sweep", action="store_true", help="also vary tol, training sample and seeding sample")
    parser.add_argument("--store", help="an embedding store directory to cluster as an extra case (k=100)")
    parser.add_argument("--threads", type=int, default=None, help="BLAS/OpenMP threads (default: cpu_budget())")
    args = parser.parse_args()
    if args.threads:
        threadpool_limits(args.threads)
        os.environ["OMP_NUM_THREADS"] = str(args.threads)  # what cpu_budget() reads
    print(f"k-means on the CPU, {cpu_budget()} threads; floor = assignment passes x one (n x d) @ (d x k) product")
    todo = cases(args.full)
    if args.only:
        todo = [todo[0] if args.only == "small" else todo[1]]
    if not args.full and (args.only != "small"):
        print("  (B=1000 case reduced to 64,000 rows on the CPU; --full for 256,000)")
    for case in todo:
        x = make_data(case)
        run_case(case, x, backend_configs(args.niter), args.repeats)
        if args.sweep:
            run_case(case, x, sweep_configs(args.niter), args.repeats)
    if args.store:
        x = load_store(args.store)
        case = Case(f"store {os.path.basename(args.store.rstrip('/'))}", len(x), x.shape[1], 100)
        run_case(case, x, backend_configs(args.niter) + (sweep_configs(args.niter) if args.sweep else []), 1)
    print(f"load average at the end: {fmt_load()}")


if __name__ == "__main__":
    main()
