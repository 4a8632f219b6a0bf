"""Labeling-service latency and throughput over real HTTP against Ray Serve, each beside an in-process baseline.

- ``select_batch``: p50/p99 latency on an N x D synthetic pool (default 100k x 1280) with a trained head, against the
  same strategy's ``query`` called directly on the same arrays in this process (the compute floor); ratio = p50 over
  the floor's p50 (1.0 = the service adds nothing).
- ``update_labels``: labels/s and requests/s with C concurrent clients (default 8), against ``LabelStore.apply_labels``
  called directly, one request's labels at a time, on a fresh database of the same kind; ratio = service / direct.
- ``update_labels`` latency p50/p99 with C clients while nothing else runs, and again while a deliberately slow
  selection (options at their bounds) runs; ratio = during / idle (1.0 = label writes never wait on selection).

    python bench/serve.py [--n 100000] [--dim 1280] [--selects 30] [--clients 8] [--database-url postgresql://...]
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import tempfile
import threading
import time
from pathlib import Path

os.environ.setdefault("RAY_AUTH_MODE", "disabled")
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")


def make_data(directory: Path, *, n: int, dim: int, n_classes: int, seed: int = 0) -> list[str]:
    """A clustered synthetic pool written as an embedding store (4 Parquet shards + manifest); class names."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from raydq.pool.store import Manifest, write_manifest

    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(n_classes, dim)).astype(np.float32)
    labels = rng.integers(0, n_classes, n)
    directory.mkdir(parents=True, exist_ok=True)
    for part, rows in enumerate(np.array_split(np.arange(n), 4)):
        X = centers[labels[rows]] + 2.0 * rng.standard_normal((len(rows), dim), dtype=np.float32)
        table = pa.table(
            {
                "id": [f"item-{i:07d}" for i in rows],
                "embedding": pa.FixedSizeListArray.from_arrays(pa.array(X.ravel()), dim),
                "label": labels[rows],
            }
        )
        pq.write_table(table, directory / f"part-{part}.parquet")
    classes = [f"class-{k}" for k in range(n_classes)]
    write_manifest(directory, Manifest(model="synthetic", weights="none", dim=dim, num_rows=n, class_names=classes))
    return classes


def percentile(values: list[float], q: float) -> float:
    s = sorted(values)
    return s[min(len(s) - 1, round(q / 100 * (len(s) - 1)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def label_latencies(url: str, pool, classes: list[str], rows, clients: int, requests: int) -> list[float]:
    """Seconds of each ``update_labels`` (5 labels) sent by ``clients`` concurrent clients, ``requests`` each."""
    import httpx
    import numpy as np

    out: list[float] = []
    lock = threading.Lock()
    per = requests * 5

    def client_loop(c: int) -> None:
        rng = np.random.default_rng(c)
        mine = rows[c * per : (c + 1) * per]
        with httpx.Client(base_url=url, timeout=600) as http:
            for k in range(requests):
                chunk = mine[k * 5 : (k + 1) * 5]
                labels = [{"id": str(pool.ids[i]), "label": classes[int(rng.integers(len(classes)))]} for i in chunk]
                t0 = time.perf_counter()
                http.post("/update_labels", json={"labels": labels}).raise_for_status()
                with lock:
                    out.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=client_loop, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return out


class SlowSelection:
    """A selection that runs far longer than the measurement, on a raw connection this benchmark can hang up."""

    def __init__(self, url: str, body: dict) -> None:
        import http.client
        import json
        from urllib.parse import urlsplit

        parts = urlsplit(url)
        self.conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=3600)
        self.conn.request("POST", "/select_batch", json.dumps(body), {"content-type": "application/json"})

    def wait_running(self, client) -> None:
        while client.get("/status").json()["selections"]["running"] != 1:
            time.sleep(0.1)

    def hang_up(self) -> None:
        self.conn.sock.shutdown(socket.SHUT_RDWR)
        self.conn.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1280)
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--strategy", default="dropquery")
    parser.add_argument("--batch-size", type=int, default=20)
    parser.add_argument("--selects", type=int, default=30)
    parser.add_argument("--seed-labels", type=int, default=200, help="labels sent before timing, to train a head")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests-per-client", type=int, default=50)
    parser.add_argument("--labels-per-request", type=int, default=10)
    parser.add_argument("--latency-requests", type=int, default=20, help="update_labels per client, idle and busy")
    parser.add_argument("--database-url", default=None, help="default: an SQLite file in a temporary directory")
    parser.add_argument("--baseline-database-url", default=None, help="fresh database for the direct baseline")
    ns = parser.parse_args()

    import httpx
    import numpy as np
    import ray
    from ray import serve

    from raydq.head import LinearHead
    from raydq.labels import ANONYMOUS, LabelIn, LabelStore
    from raydq.pool.store import MISSING_LABEL, load_pool
    from raydq.serve.app import build_app
    from raydq.serve.config import ServeArgs
    from raydq.strategies import make_strategy

    tmp = Path(tempfile.mkdtemp(prefix="raydq-bench-serve-"))
    t0 = time.perf_counter()
    classes = make_data(tmp / "embeddings", n=ns.n, dim=ns.dim, n_classes=ns.classes)
    print(f"pool: {ns.n} x {ns.dim} float32 written in {time.perf_counter() - t0:.1f}s")
    db_url = ns.database_url or f"sqlite:///{tmp / 'labels.db'}"
    args = ServeArgs(
        embeddings=str(tmp / "embeddings"),
        database_url=db_url,
        default_strategy=ns.strategy,
        api_token_env=None,
        max_batch_size=max(1000, ns.batch_size),
        max_labels_per_request=max(1000, ns.seed_labels),
        retrain_delay_s=0.2,
        select_timeout_s=600,
    )

    ray.init(address="local", num_cpus=os.cpu_count(), include_dashboard=False, log_to_driver=False)
    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port}, logging_config={"enable_access_log": False})
    t0 = time.perf_counter()
    serve.run(build_app(args), name="bench", route_prefix="/")
    print(f"Serve app up in {time.perf_counter() - t0:.1f}s (http://127.0.0.1:{port})")
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600)

    # a trained head, so that select_batch runs the real strategy rather than the cold start
    pool = load_pool(tmp / "embeddings")
    rng = np.random.default_rng(1)
    seed_rows = rng.choice(ns.n, size=ns.seed_labels, replace=False)
    r = client.post(
        "/update_labels",
        json={"labels": [{"id": str(pool.ids[i]), "label": classes[int(pool.labels[i])]} for i in seed_rows]},
    )
    r.raise_for_status()
    while (status := client.get("/status").json())["model_version"] < 1 or status["training"]["state"] != "idle":
        time.sleep(0.2)
    model = client.get("/model").json()

    # select_batch over HTTP (each batch released again, so every call sees the same pool)
    body = {"batch_size": ns.batch_size, "strategy": ns.strategy}
    latencies = []
    for k in range(ns.selects + 1):
        start = time.perf_counter()
        r = client.post("/select_batch", json=body)
        elapsed = time.perf_counter() - start
        r.raise_for_status()
        assert r.json()["strategy"] == ns.strategy, r.json()["strategy"]
        client.post("/release_batch", json={"batch_id": r.json()["batch_id"]}).raise_for_status()
        if k:  # the first call warms caches
            latencies.append(elapsed)

    # the floor: the same strategy on the same arrays with the same head, in this process
    head = LinearHead.from_dict(model["head"])
    y = np.full(ns.n, MISSING_LABEL, dtype=np.int64)
    y[seed_rows] = pool.labels[seed_rows]
    floor = []
    for k in range(min(ns.selects, 10) + 1):
        strategy = make_strategy(ns.strategy, random_state=k)
        start = time.perf_counter()
        strategy.query(pool.X, y, batch_size=ns.batch_size, head=head)
        if k:
            floor.append(time.perf_counter() - start)
    p50, p99, f50 = statistics.median(latencies), percentile(latencies, 99), statistics.median(floor)
    print(
        f"select_batch ({ns.strategy}, batch {ns.batch_size}, {ns.n} x {ns.dim}, {len(latencies)} calls): "
        f"p50 {p50 * 1e3:.0f} ms, p99 {p99 * 1e3:.0f} ms; direct query p50 {f50 * 1e3:.0f} ms; "
        f"ratio p50/direct = {p50 / f50:.2f}"
    )

    # update_labels throughput with concurrent clients (distinct ids per client, random classes)
    free_rows = np.setdiff1d(np.arange(ns.n), seed_rows)
    per_client = ns.requests_per_client * ns.labels_per_request
    rows = rng.choice(free_rows, size=ns.clients * per_client, replace=False)
    errors: list[str] = []

    def annotator(c: int) -> None:
        mine = rows[c * per_client : (c + 1) * per_client]
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=600) as http:
            for k in range(ns.requests_per_client):
                chunk = mine[k * ns.labels_per_request : (k + 1) * ns.labels_per_request]
                labels = [{"id": str(pool.ids[i]), "label": classes[int(rng.integers(ns.classes))]} for i in chunk]
                resp = http.post("/update_labels", json={"labels": labels})
                if resp.status_code != 200:
                    errors.append(resp.text[:200])

    threads = [threading.Thread(target=annotator, args=(c,)) for c in range(ns.clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - start
    assert not errors, errors[:3]
    n_requests = ns.clients * ns.requests_per_client
    service_rate = n_requests * ns.labels_per_request / wall

    baseline_url = ns.baseline_database_url or f"sqlite:///{tmp / 'baseline.db'}"
    store = LabelStore(baseline_url)
    start = time.perf_counter()
    for k in range(n_requests):
        chunk = rows[k * ns.labels_per_request : (k + 1) * ns.labels_per_request]
        store.apply_labels([LabelIn(id=str(pool.ids[i]), label=classes[0]) for i in chunk], caller=ANONYMOUS)
    direct_rate = n_requests * ns.labels_per_request / (time.perf_counter() - start)
    store.close()
    print(
        f"update_labels ({ns.clients} clients x {ns.requests_per_client} requests x {ns.labels_per_request} labels, "
        f"{args.database_url.split(':')[0]}): {service_rate:.0f} labels/s ({n_requests / wall:.0f} requests/s); "
        f"direct LabelStore {direct_rate:.0f} labels/s; ratio service/direct = {service_rate / direct_rate:.2f}"
    )

    # update_labels latency, idle and while a slow selection runs
    url = f"http://127.0.0.1:{port}"
    taken = set(seed_rows.tolist()) | set(rows.tolist())
    spare = np.array([i for i in range(ns.n) if i not in taken])
    idle = label_latencies(url, pool, classes, spare[: len(spare) // 2], ns.clients, ns.latency_requests)
    slow = SlowSelection(
        url, {"batch_size": 1000, "strategy": "centroid", "options": {"n_init": 10, "kmeans_niter": 100}}
    )
    slow.wait_running(client)
    during = label_latencies(url, pool, classes, spare[len(spare) // 2 :], ns.clients, ns.latency_requests)
    still_running = client.get("/status").json()["selections"]["running"] == 1
    slow.hang_up()
    i50, i99, d50, d99 = (statistics.median(idle), percentile(idle, 99), statistics.median(during),
                          percentile(during, 99))  # fmt: skip
    print(
        f"update_labels latency ({ns.clients} clients x {ns.latency_requests} requests x 5 labels): idle p50 "
        f"{i50 * 1e3:.0f} ms p99 {i99 * 1e3:.0f} ms; during a slow selection p50 {d50 * 1e3:.0f} ms p99 "
        f"{d99 * 1e3:.0f} ms (selection still running at the end: {still_running}); ratio p50 during/idle = "
        f"{d50 / i50:.2f}, p99 = {d99 / i99:.2f}"
    )
    print(f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} {os.getloadavg()[2]:.2f}")
    serve.shutdown()
    ray.shutdown()


if __name__ == "__main__":
    main()
