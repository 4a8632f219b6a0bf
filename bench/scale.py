"""A pool larger than one process: DropQuery over shard actors at 1M, 4M and 10M x 768 float16 rows,
``python bench/scale.py`` (``--sizes 1000000 --shards 1,2,4`` for the 1M runs only).

Synthetic stores (C Gaussian classes with overlapping tails, as ``bench/query.py``) are written once under
``--data`` as float16 Parquet files and re-used when present (10M is ~15 GB on disk). Each (size, shard count) runs in
its own subprocess with its own local Ray (no dashboard, a small object store, no prestarted workers) and the
machine's CPUs divided among the shard actors. It prints, each with the load average:

- query time per million rows: one cold DropQuery select (phase 1 + phase 2, B = 100, M = 3) with a head trained on
  10 labels per class, divided by N / 1M; the target is 10M within 1.3x of 1M for the same shard count;
- memory: the peak, while querying, of the memory of every process of the run summed (this driver, GCS, raylet,
  Ray's agents, the shard actors: psutil over this process's tree), against the float16 embeddings (N x 768 x 2
  bytes); target at most 1.3x. Both RSS (counts each shared library once per process) and PSS (shares shared pages
  among their users, so it sums to what the machine really spends) are printed; the ratio is taken on PSS. A line
  through the smallest and largest N splits it into what each further float16 byte costs and a fixed part (the
  interpreter and libraries of every process, Ray's own processes), which is what lifts the ratio at small N;
- select p50 with an unchanged head (the pass seed is fixed, so phase 1 comes from the shards' caches) over
  ``--repeats`` selects with different query seeds; target at most 1 s at 1M.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import psutil
import pyarrow as pa
import pyarrow.parquet as pq
import ray

from raydq.head import LinearHead
from raydq.pool import Manifest, PoolConfig, ShardedPool, read_manifest, write_manifest
from raydq.pool.listing import part_name
from raydq.pool.store import PARQUET_OPTIONS, store_schema
from raydq.strategies import DropQuery

D, C, B, M = 768, 100, 100, 3
FILE_ROWS = 262_144  # ~400 MB float16 files, written as the embed writer writes them
PASS_SEED = 12345  # fixed per head, as the service does between trainings
GiB = 2**30


# -- the data -------------------------------------------------------------------------------------------------------
def labels_of(rows: np.ndarray) -> np.ndarray:
    """The class of each global row (a splitmix64 hash: any row's label without reading the store)."""
    with np.errstate(over="ignore"):
        z = np.asarray(rows, dtype=np.uint64) + np.uint64(0x9E3779B97F4A7C15)
        z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(C)).astype(np.int64)


def make_store(path: Path, n: int, seed: int = 0) -> None:
    """Write an N-row float16 store, one row group at a time (no N-sized array); the manifest, written last, marks
    it whole."""
    path.mkdir(parents=True, exist_ok=True)
    if (path / "manifest.json").is_file() and read_manifest(path).num_rows == n:
        return
    for old in path.glob("*.parquet"):
        old.unlink()
    centers = np.random.default_rng(seed).standard_normal((C, D), dtype=np.float32) * np.float32(0.22)
    schema = store_schema(D, "float16")
    group = PARQUET_OPTIONS["row_group_size"]
    options = {k: v for k, v in PARQUET_OPTIONS.items() if k != "row_group_size"}
    stamp = datetime(2026, 1, 1, tzinfo=UTC)
    for k, start in enumerate(range(0, n, FILE_ROWS)):
        name = part_name("scale000", k, stamp + timedelta(seconds=k))
        with pq.ParquetWriter(path / f".{name}.tmp", schema, **options) as writer:
            for g in range(start, min(n, start + FILE_ROWS), group):
                rows = np.arange(g, min(n, start + FILE_ROWS, g + group))
                X = np.random.default_rng([seed, g]).standard_normal((len(rows), D), dtype=np.float32)
                X += centers[labels_of(rows)]
                writer.write_table(
                    pa.Table.from_arrays(
                        [
                            pa.array([f"r{r:09d}" for r in rows], pa.string()),
                            pa.FixedSizeListArray.from_arrays(pa.array(X.astype(np.float16).reshape(-1)), D),
                            pa.nulls(len(rows), pa.string()),
                            pa.array(labels_of(rows), pa.int64()),
                        ],
                        schema=schema,
                    )
                )
        (path / f".{name}.tmp").rename(path / name)
        print(f"  wrote {path / name} ({min(n, start + FILE_ROWS):,} / {n:,} rows)", file=sys.stderr, flush=True)
    write_manifest(path, Manifest(model="synthetic", weights="random", dim=D, dtype="float16", num_rows=n))


# -- memory of this process tree ---------------------------------------------------------------------------------------
def tree_memory() -> tuple[int, int, list[tuple[str, int]]]:
    """``(rss, pss, [(process name, pss)])`` in bytes, summed over this process and all its descendants."""
    me = psutil.Process()
    rss = pss = 0
    each = []
    for p in [me, *me.children(recursive=True)]:
        try:
            info, name = p.memory_full_info(), p.name()
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        rss += info.rss
        pss += info.pss
        each.append((name if p is not me else "driver", info.pss))
    return rss, pss, sorted(each, key=lambda e: -e[1])


class PeakMemory:
    """Samples ``tree_memory`` on a thread; ``peak`` is the sample with the largest PSS sum."""

    def __init__(self, interval_s: float = 0.2) -> None:
        self.interval_s = interval_s
        self.peak: tuple[int, int, list[tuple[str, int]]] = (0, 0, [])
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            sample = tree_memory()
            if sample[1] > self.peak[1]:
                self.peak = sample
            self._stop.wait(self.interval_s)

    def __enter__(self) -> PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


# -- one run ----------------------------------------------------------------------------------------------------------
def labeled_rows() -> np.ndarray:
    """10 rows per class among the first rows of the pool (the head's training set)."""
    rows = np.arange(20_000)
    labels = labels_of(rows)
    return np.concatenate([rows[labels == c][:10] for c in range(C)])


def worker(store: Path, n: int, shards: int, repeats: int, object_store_mb: int) -> dict:
    """One run: ``shards`` actors, or with ``shards == 0`` the whole pool as one shard in this process (no Ray)."""
    cpus = os.cpu_count() or 1
    if shards:
        ray.init(
            address="local",
            num_cpus=cpus,
            include_dashboard=False,
            log_to_driver=False,
            object_store_memory=object_store_mb * 2**20,
            _system_config={"enable_worker_prestart": False, "prestart_worker_first_driver": False},
        )
    config = PoolConfig(shards=max(1, shards), dtype="float16", use_actors=shards > 0, num_cpus=cpus / max(1, shards),
                        ready_timeout_s=600)  # fmt: skip
    t0 = time.perf_counter()
    pool = ShardedPool.open(str(store), config)
    load_s = time.perf_counter() - t0
    assert pool.n_rows == n
    rows = labeled_rows()
    head = LinearHead(C, random_state=0).fit(pool.embeddings(rows), labels_of(rows))
    pool.sync_status(rows, [])
    steady = tree_memory()
    with PeakMemory() as peak:
        t0 = time.perf_counter()
        cold = DropQuery(pass_seed=PASS_SEED).select(pool.shards, batch_size=B, head=head, seed=0)
        cold_s = time.perf_counter() - t0
        warm = []
        for r in range(repeats):
            t0 = time.perf_counter()
            sel = DropQuery(pass_seed=PASS_SEED).select(pool.shards, batch_size=B, head=head, seed=r + 1)
            warm.append(time.perf_counter() - t0)
            assert sel.info["phase1_cached"]
    pool.close()
    if shards:
        ray.shutdown()
    return {
        "n": n,
        "shards": shards,
        "load_s": load_s,
        "query_s": cold_s,
        "phase1_s": cold.info.get("phase1_seconds"),
        "phase2_s": cold.info.get("phase2_seconds"),
        "candidates": cold.info.get("candidates"),
        "warm_p50_s": statistics.median(warm),
        "steady_rss": steady[0],
        "steady_pss": steady[1],
        "peak_rss": peak.peak[0],
        "peak_pss": peak.peak[1],
        "peak_by_process": [(name, round(b / 2**20)) for name, b in peak.peak[2][:6]],
        "embeddings_bytes": n * D * 2,
        "cpus": cpus,
    }


def _where(shards: int) -> str:
    return f"shards={shards}" if shards else "in-process"


def _load() -> str:
    return "load {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000000,4000000,10000000", help="comma-separated pool sizes N")
    parser.add_argument(
        "--shards", default="0,1,2,4", help="comma-separated shard actor counts; 0: one in-process shard (no Ray)"
    )
    parser.add_argument("--data", default="/tmp/raydq-scale", help="folder of the synthetic stores (re-used)")
    parser.add_argument("--repeats", type=int, default=5, help="selects with an unchanged head for the p50")
    parser.add_argument("--object-store-mb", type=int, default=256, help="Ray object store size of each run")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if not hasattr(DropQuery, "select"):
        sys.exit("bench/scale.py runs the strategies' select(shards, ...) API, which this checkout does not have yet")
    sizes = [int(s) for s in args.sizes.split(",")]
    counts = [int(s) for s in args.shards.split(",")]
    if args.worker is not None:
        n, shards = (int(v) for v in args.worker.split(","))
        store = Path(args.data) / f"n{n}"
        print(json.dumps(worker(store, n, shards, args.repeats, args.object_store_mb)))
        return
    print(f"DropQuery B={B} M={M} over shard actors, synthetic N x {D} float16, {C} classes; {os.cpu_count()} CPUs")
    results: dict[tuple[int, int], dict] = {}
    for n in sizes:
        make_store(Path(args.data) / f"n{n}", n)
        for shards in counts:
            proc = subprocess.run(
                [sys.executable, __file__, "--worker", f"{n},{shards}", "--data", args.data,
                 "--repeats", str(args.repeats), "--object-store-mb", str(args.object_store_mb)],
                capture_output=True, text=True, check=False,
            )  # fmt: skip
            if proc.returncode != 0:
                print(f"N={n:,} {_where(shards)}: worker failed ({_load()})\n{proc.stderr[-3000:]}", flush=True)
                continue
            r = json.loads(proc.stdout.strip().splitlines()[-1])
            results[(n, shards)] = r
            emb = r["embeddings_bytes"]
            print(
                f"N={n:>10,} {_where(shards)}  query {r['query_s']:.2f}s = {r['query_s'] / (n / 1e6):.2f} s/M rows"
                f" (phase 1 {r['phase1_s']:.2f}s, phase 2 {r['phase2_s']:.2f}s, {r['candidates']:,} candidates)"
                f"  cached-head p50 {r['warm_p50_s']:.3f}s  memory peak pss {r['peak_pss'] / GiB:.2f} GiB"
                f" = {r['peak_pss'] / emb:.2f}x float16 ({emb / GiB:.2f} GiB; rss {r['peak_rss'] / GiB:.2f} GiB"
                f" = {r['peak_rss'] / emb:.2f}x)  load {r['load_s']:.0f}s  ({_load()})",
                flush=True,
            )
            print("    peak PSS by process (MiB): " + ", ".join(f"{k} {v}" for k, v in r["peak_by_process"]))
    print("targets:")
    for (n, shards), r in sorted(results.items()):
        base = results.get((n, 0))
        if shards and base:
            print(f"  N={n:,} shards={shards}: query over actors / in-process = {r['query_s'] / base['query_s']:.2f},"
                  f" cached-head select {r['warm_p50_s'] / base['warm_p50_s']:.2f}  ({_load()})")  # fmt: skip
    for shards in counts:
        small, big = results.get((min(sizes), shards)), results.get((max(sizes), shards))
        if not (small and big and big is not small):
            continue
        ratio = (big["query_s"] / big["n"]) / (small["query_s"] / small["n"])
        print(f"  {_where(shards)}: query per M rows at N={big['n']:,} / at N={small['n']:,} = {ratio:.2f}"
              f" (target <= 1.3)  ({_load()})")  # fmt: skip
        # A straight line through the two sizes splits the memory into a part that grows with the pool and a part
        # that does not (the interpreter and its libraries in each process, Ray's own processes).
        slope = (big["peak_pss"] - small["peak_pss"]) / (big["embeddings_bytes"] - small["embeddings_bytes"])
        fixed = small["peak_pss"] - slope * small["embeddings_bytes"]
        print(f"  {_where(shards)}: memory per added float16 byte {slope:.2f}x, fixed part {fixed / GiB:.2f} GiB"
              f" (from N={small['n']:,} and N={big['n']:,})  ({_load()})")  # fmt: skip
    for (n, shards), r in sorted(results.items()):
        memory = r["peak_pss"] / r["embeddings_bytes"]
        print(f"  N={n:,} {_where(shards)}: memory {memory:.2f}x float16 (target <= 1.3); cached-head select p50"
              f" {r['warm_p50_s']:.3f}s (target <= 1 s at 1M)  ({_load()})")  # fmt: skip


if __name__ == "__main__":
    main()
