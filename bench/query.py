"""DropQuery query time against the compute floor, and its peak memory: ``python bench/query.py``.

For synthetic N x 768 float32 embeddings of 100 classes (a head trained on 10 labels per class), one DropQuery with
B = 100 and M = 3 (one shard, as a laptop or one shard actor runs it) is timed against M + 1 plain matrix products
``X @ W`` over the same data in the same process (the floor: y* plus M dropout passes cannot cost less). The query is
split into phase 1 (the dropout passes and the histogram) and phase 2 (threshold, candidates, k-means, picks), and
a second query with the head unchanged (the service fixes the pass seed per head version) shows the cost once the
phase-1 counts are cached. Each size runs in its own subprocess so that its peak resident memory (ru_maxrss) is its
own; it is printed against the embeddings' size. Timings are the best of ``--repeats`` alternating runs (the machine
is shared), printed with the load average. Fixed seeds: every run does the same work.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

import numpy as np

from raydq.cluster import kmeans_backend_name
from raydq.estimator import MISSING_LABEL
from raydq.head import LinearHead
from raydq.numerics.threads import cpu_budget
from raydq.strategies import DropQuery, LocalShardSet
from raydq.strategies.shards import status_from_labels

D, C, B, M = 768, 100, 100, 3


def make_data(n: int, seed: int = 0):
    """Embeddings of C Gaussian classes with overlapping tails (so some rows are uncertain), written chunk by chunk
    into one float32 array (no N-sized temporaries)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((C, D), dtype=np.float32) * np.float32(0.22)
    labels = rng.integers(0, C, n)
    X = np.empty((n, D), dtype=np.float32)
    for s in range(0, n, 8192):
        e = min(n, s + 8192)
        rng.standard_normal(out=X[s:e], dtype=np.float32)
        X[s:e] += centers[labels[s:e]]
    return X, labels


def make_estimator(X, labels, seed: int = 0):
    """A head trained on 10 labels per class, and the pool's label array (those 1000 rows labeled)."""
    rng = np.random.default_rng(seed)
    labeled = np.concatenate([rng.choice(np.flatnonzero(labels == c), 10, replace=False) for c in range(C)])
    y = np.full(len(X), MISSING_LABEL, dtype=np.int64)
    y[labeled] = labels[labeled]
    head = LinearHead(C, random_state=seed).fit(X[labeled], labels[labeled])
    return head, y


def _rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def worker(n: int, repeats: int) -> dict:
    X, labels = make_data(n)
    head, y = make_estimator(X, labels)
    status = status_from_labels(y)
    W, b = head.affine()
    kmeans_backend_name()
    np.dot(X[:4096], W)  # warm BLAS
    rss_before = _rss_mib()
    runs: dict[str, list[float]] = {"query": [], "phase1": [], "phase2": [], "cached": [], "floor": []}
    info = None
    peak_query = None
    for r in range(repeats):
        shards = LocalShardSet.from_arrays(X, status)  # a fresh shard: nothing cached
        q = DropQuery(pass_seed=r)
        t0 = time.perf_counter()
        sel = q.select(shards, batch_size=B, head=head, seed=r)
        runs["query"].append(time.perf_counter() - t0)
        assert len(np.unique(sel.rows)) == B and not sel.info["phase1_cached"]
        runs["phase1"].append(sel.info["phase1_seconds"])
        runs["phase2"].append(sel.info["phase2_seconds"])
        info = sel.info
        if peak_query is None:
            peak_query = _rss_mib()  # before any floor run adds its N x C outputs
        t0 = time.perf_counter()
        again = q.select(shards, batch_size=B, head=head, seed=repeats + r)  # same head, a fresh phase-2 seed
        runs["cached"].append(time.perf_counter() - t0)
        assert again.info["phase1_cached"]
        t0 = time.perf_counter()
        for _ in range(M + 1):
            out = X @ W
            out += b
            del out
        runs["floor"].append(time.perf_counter() - t0)
    best = {k: min(v) for k, v in runs.items()}
    return {
        "n": n,
        **{f"{k}_s": v for k, v in best.items()},
        "embeddings_mib": X.nbytes / 2**20,
        "rss_before_query_mib": rss_before,
        "peak_mib": peak_query,
        "threshold": info["threshold"],
        "candidates": info["candidates"],
        "clustered": info["clustered"],
        "random_fill": info["random_fill"],
        "kmeans": kmeans_backend_name(),
        "threads": cpu_budget(),
        "load": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="100000,1000000", help="comma-separated pool sizes N")
    parser.add_argument("--repeats", type=int, default=3, help="alternating query/floor runs; the best is reported")
    parser.add_argument("--worker", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker is not None:
        print(json.dumps(worker(args.worker, args.repeats)))
        return
    print(f"DropQuery B={B} M={M} on synthetic N x {D} float32, {C} classes; floor = {M + 1} x (X @ W + b)")
    for n in (int(s) for s in args.sizes.split(",")):
        proc = subprocess.run(
            [sys.executable, __file__, "--worker", str(n), "--repeats", str(args.repeats)],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            print(f"N={n}: worker failed\n{proc.stderr[-2000:]}")
            continue
        r = json.loads(proc.stdout.strip().splitlines()[-1])
        print(
            f"N={r['n']:>9,}  query {r['query_s']:.3f}s (phase 1 {r['phase1_s']:.3f}s, phase 2 {r['phase2_s']:.3f}s)"
            f"  floor {r['floor_s']:.3f}s  ratio {r['query_s'] / r['floor_s']:.2f}"
            f"  cached head {r['cached_s']:.3f}s = {r['cached_s'] / r['floor_s']:.2f}x floor"
            f"  peak {r['peak_mib']:.0f} MiB = {r['peak_mib'] / r['embeddings_mib']:.2f}x embeddings"
            f" ({r['embeddings_mib']:.0f} MiB; query added {r['peak_mib'] - r['rss_before_query_mib']:.0f} MiB)"
            f"  [t={r['threshold']} candidates={r['candidates']} clustered={r['clustered']} fill={r['random_fill']}"
            f" k-means={r['kmeans']} threads={r['threads']} load={'/'.join(f'{x:.2f}' for x in r['load'])}]"
        )


if __name__ == "__main__":
    main()
