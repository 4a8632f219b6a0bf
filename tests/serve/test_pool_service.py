"""The labeling service over a pool held by shard actors, on a three-node Ray cluster on this machine, through Ray
Serve over real HTTP: shards on distinct nodes, a shard killed while annotators work (the service recovers and no
acknowledged label is lost), and a pool that grows while serving (embed, serve, embed more: the new ids get
selected and labeled without a restart)."""

from __future__ import annotations

import os
import signal
import threading
import time

import httpx
import pytest

from raydq.labels import LabelStore
from raydq.pool.store import load_pool
from tests.serve.helpers import CLASSES, free_port, service_args, wait_for, write_store

pytestmark = pytest.mark.slow
APP = "raydq-pool"
N = 1000  # images per embed run in the growth test (the case)


@pytest.fixture(scope="module")
def serve_on_cluster(three_nodes):
    """Serve's HTTP proxy on 127.0.0.1 of the three-node cluster the module runs on."""
    from ray import serve

    port = free_port()
    serve.start(http_options={"host": "127.0.0.1", "port": port})
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        serve.shutdown()


def _deploy(args) -> None:
    from ray import serve

    from raydq.serve.app import build_app

    serve.run(build_app(args), name=APP, route_prefix="/")


def _with_retry(call, *, attempts: int = 60):
    """What a well-behaved client does with 503 + Retry-After (the pool reloading a shard)."""
    for _ in range(attempts):
        r = call()
        if r.status_code != 503:
            return r
        time.sleep(float(r.headers.get("retry-after", "1")))
    return r


def test_a_killed_shard_loses_no_acknowledged_label(serve_on_cluster, tmp_path, strategies):
    store = write_store(tmp_path / "store", n=3000, dim=16, seed=5)
    truth = load_pool(store)
    labels_of = {str(i): CLASSES[int(y)] for i, y in zip(truth.ids, truth.labels, strict=True)}
    args = service_args(store, f"sqlite:///{tmp_path / 'labels.db'}", strategies, max_batch_size=100,
                        pool={"shards": 3, "num_cpus": 0.25, "ready_timeout_s": 60, "load_timeout_s": 120},
                        api_num_cpus=0.1, selector_num_cpus=0.1, trainer_num_cpus=0.1)  # fmt: skip
    _deploy(args)
    client = httpx.Client(base_url=serve_on_cluster, timeout=120)
    status = wait_for(lambda: client.get("/status").json(), timeout=180, what="the service")
    shards = status["pool"]["detail"]
    assert status["pool"]["shards"] == 3 and len({s["node_id"] for s in shards}) == 3  # spread over the nodes

    acked: dict[str, str] = {}
    lock = threading.Lock()
    errors: list[str] = []
    killed = threading.Event()

    def annotator(n: int) -> None:
        with httpx.Client(base_url=serve_on_cluster, timeout=120) as c:
            for _ in range(8):
                r = _with_retry(lambda: c.post("/select_batch", json={"batch_size": 5, "strategy": "random"}))
                if r.status_code != 200:
                    errors.append(f"select {r.status_code} {r.text[:200]}")
                    continue
                batch = r.json()
                body = {"labels": [{"id": x["id"], "label": labels_of[x["id"]]} for x in batch["items"]],
                        "batch_id": batch["batch_id"]}  # fmt: skip
                answers = body["labels"]
                r = _with_retry(lambda body=body: c.post("/update_labels", json=body))
                if r.status_code == 200:
                    with lock:
                        acked.update({a["id"]: a["label"] for a in answers})
                else:
                    errors.append(f"label {r.status_code} {r.text[:200]}")
                if n == 0 and len(acked) >= 40 and not killed.is_set():
                    os.kill(shards[1]["pid"], signal.SIGKILL)  # a shard actor this test's service started
                    killed.set()

    threads = [threading.Thread(target=annotator, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert killed.is_set() and not errors, errors
    after = wait_for(lambda: (s := client.get("/status").json())["pool"]["state"] == "ready" and s, timeout=180,
                     what="the shard to come back")  # fmt: skip
    restarted = {s["pid"] for s in after["pool"]["detail"]}
    assert shards[1]["pid"] not in restarted  # it really was a new process
    labels = LabelStore(args.database_url)
    try:
        stored = {i: labels.get_label(i) for i in acked}
        assert all(stored[i] is not None and stored[i].label == acked[i] for i in acked)  # nothing acknowledged lost
        assert after["labeled"] == len(acked) == labels.count_labels()
    finally:
        labels.close()
    fresh = client.post("/select_batch", json={"batch_size": 20, "strategy": "random"}).json()
    assert not {x["id"] for x in fresh["items"]} & set(acked)  # the restarted shard knows what is labeled
    client.close()


def test_the_pool_grows_while_serving(serve_on_cluster, tmp_path, strategies):
    """Embed 1,000 images, serve them, embed 1,000 more into the same store: the running service picks them up
    (admin endpoint here; it also polls) and the new ids are selected and labeled."""
    from raydq.embed import EmbedConfig, run_embed

    store = tmp_path / "store"
    run_embed(EmbedConfig(source="fashion-mnist", split="train", limit=N, output=str(store), actors=1, progress=False))
    args = service_args(store, f"sqlite:///{tmp_path / 'labels.db'}", strategies, classes=None, max_batch_size=2 * N,
                        pool={"rows_per_shard": 600, "num_cpus": 0.25, "poll_interval_s": 3600},
                        api_num_cpus=0.1, selector_num_cpus=0.1, trainer_num_cpus=0.1)  # fmt: skip
    _deploy(args)
    client = httpx.Client(base_url=serve_on_cluster, timeout=120)
    before = wait_for(lambda: client.get("/status").json(), timeout=180, what="the service")
    assert before["pool_size"] == N
    first = client.post("/select_batch", json={"batch_size": 10}).json()
    assert all(x["id"].startswith("fashion-mnist/train/") for x in first["items"])

    run_embed(EmbedConfig(source="fashion-mnist", split="test", limit=N, output=str(store), actors=1, progress=False))
    grown = client.post("/admin/pool/refresh").json()
    assert grown["rows"] == 2 * N and grown["store_version"] != before["pool"]["store_version"]
    status = client.get("/status").json()
    assert status["pool_size"] == 2 * N and status["unlabeled_available"] == 2 * N - 10
    batch = client.post("/select_batch", json={"batch_size": N, "strategy": "random"}).json()
    new = [x["id"] for x in batch["items"] if x["id"].startswith("fashion-mnist/test/")]
    assert new, "no new id was selected"
    r = client.post("/update_labels", json={"labels": [{"id": i, "label": "Sneaker"} for i in new[:25]],
                                             "batch_id": batch["batch_id"]})  # fmt: skip
    assert r.status_code == 200 and r.json()["created"] == 25
    item = client.get(f"/items/{new[0]}").json()
    assert item["label"] == "Sneaker" and item["row"] >= N  # appended rows come after the old ones
    assert client.get(f"/items/{new[0]}/image").status_code == 200
    client.close()
