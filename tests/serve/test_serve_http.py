"""The labeling service on a real local Ray + Serve, over real HTTP on 127.0.0.1: the loop, the malformed-request
table, 20 concurrent annotators, a restart with live leases, and bearer-token auth."""

from __future__ import annotations

import threading

import httpx
import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis.generation.modes import GenerationMode

from raydq.labels import LabelStore
from raydq.pool.store import load_pool
from tests.serve.cases import check_malformed_requests, state_of
from tests.serve.helpers import CLASSES, service_args, wait_for, write_store

pytestmark = pytest.mark.slow
APP = "raydq"
N_POOL = 600


def deploy(args) -> None:
    from ray import serve

    from raydq.serve.app import build_app

    serve.run(build_app(args), name=APP, route_prefix="/")


@pytest.fixture(scope="module")
def service(serve_http, strategies, tmp_path_factory):
    root = tmp_path_factory.mktemp("serve-http")
    store_dir = write_store(root / "embeddings", n=N_POOL, seed=1)
    args = service_args(store_dir, f"sqlite:///{root / 'labels.db'}", strategies, max_batch_size=N_POOL * 2)
    deploy(args)
    client = httpx.Client(base_url=serve_http, timeout=60)
    wait_for(lambda: client.get("/healthz").status_code == 200, timeout=120, what="the Serve app")
    yield {"args": args, "client": client, "pool": load_pool(store_dir), "url": serve_http, "root": root}
    client.close()
    from ray import serve

    serve.delete(APP)


def true_labels(pool, ids):
    return [{"id": i, "label": CLASSES[int(pool.labels[r])]} for i, r in zip(ids, pool.index_of(ids), strict=True)]


def test_loop_over_http(service):
    c, pool, args = service["client"], service["pool"], service["args"]
    r = c.post("/select_batch", json={"batch_size": 9})
    assert r.status_code == 200, r.text
    batch = r.json()
    assert batch["model_version"] == 0 and batch["strategy"] == args.cold_start and len(batch["items"]) == 9
    ids = [x["id"] for x in batch["items"]]
    r = c.post("/update_labels", json={"labels": true_labels(pool, ids), "batch_id": batch["batch_id"]})
    assert r.status_code == 200 and r.json()["created"] == 9, r.text
    status = wait_for(
        lambda: (s := c.get("/status").json())["model_version"] >= 1 and s["training"]["state"] == "idle" and s,
        what="the first head",
    )
    assert status["labeled"] == 9 and status["leased"] == 0 and status["pool_size"] == N_POOL
    assert status["kmeans_backend"] and args.default_strategy in status["strategies"]
    model = c.get("/model").json()
    W, b = np.asarray(model["W"]), np.asarray(model["b"])
    assert float(((pool.X @ W + b).argmax(1) == pool.labels).mean()) > 0.7
    nxt = c.post("/select_batch", json={"batch_size": 4}).json()
    assert nxt["model_version"] == model["model_version"] and nxt["strategy"] == args.default_strategy
    assert c.get("/healthz").json() == {"status": "ok"}
    docs = c.get("/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    schema = c.get("/openapi.json").json()
    assert {"/select_batch", "/update_labels", "/release_batch", "/status", "/healthz", "/model"} <= set(
        schema["paths"]
    )
    c.post("/release_batch", json={"batch_id": nxt["batch_id"]})


def test_malformed_requests_over_http(service):
    c, pool, args = service["client"], service["pool"], service["args"]
    check_malformed_requests(c, args, [str(i) for i in pool.ids])


def test_twenty_concurrent_annotators_never_share_items(service):
    url = service["url"]
    n_clients, batch = 20, 6
    results: dict[tuple[int, int], list[str]] = {}
    failures: list[str] = []

    def annotator(n: int, rounds: int, barrier: threading.Barrier) -> None:
        with httpx.Client(base_url=url, timeout=120) as client:
            for k in range(rounds):
                barrier.wait()
                r = client.post("/select_batch", json={"batch_size": batch, "lease_seconds": 600})
                if r.status_code != 200:
                    failures.append(f"{n}/{k}: {r.status_code} {r.text[:200]}")
                    continue
                results[(n, k)] = [x["id"] for x in r.json()["items"]]

    barrier = threading.Barrier(n_clients)
    threads = [threading.Thread(target=annotator, args=(n, 2, barrier)) for n in range(n_clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not failures, failures
    handed_out = [i for ids in results.values() for i in ids]
    assert len(results) == 2 * n_clients and len(handed_out) == 2 * n_clients * batch
    assert len(set(handed_out)) == len(handed_out), "an item was leased to two annotators"
    store = LabelStore(service["args"].database_url)
    assert set(handed_out) <= set(store.leased_ids())
    store.close()


def test_restart_keeps_labels_and_leases_then_token_auth(service, serve_http):
    c, pool, args = service["client"], service["pool"], service["args"]
    ids = [str(i) for i in pool.ids]
    c.post("/update_labels", json={"labels": true_labels(pool, ids[-5:])})
    leased = {x["id"] for x in c.post("/select_batch", json={"batch_size": 10}).json()["items"]}
    before = c.get("/status").json()

    from ray import serve

    serve.delete(APP)
    token_file = service["root"] / "token"
    token_file.write_text("tok-" + "x" * 40)
    deploy(args.model_copy(update={"api_token_file": str(token_file)}))
    auth = {"authorization": f"Bearer {token_file.read_text()}"}
    service["auth"] = auth
    wait_for(lambda: c.get("/healthz").status_code == 200, timeout=120, what="the restarted app")

    after = c.get("/status", headers=auth).json()
    for key in ("labeled", "leased", "revision", "unlabeled_available"):
        assert after[key] == before[key], key
    assert after["model_version"] >= before["model_version"] >= 1
    store = LabelStore(args.database_url)
    state = state_of(store)
    for headers in ({}, {"authorization": "Bearer nope"}):
        assert c.post("/update_labels", json={"labels": true_labels(pool, ids[:3])}, headers=headers).status_code == 401
        assert c.post("/select_batch", json={"batch_size": 3}, headers=headers).status_code == 401
        assert c.post("/release_batch", json={"batch_id": "x"}, headers=headers).status_code == 401
        assert c.get("/model", headers=headers).status_code == 401
    assert state_of(store) == state  # a request without the token wrote nothing
    fresh = c.post("/select_batch", json={"batch_size": 30}, headers=auth).json()["items"]
    assert not leased & {x["id"] for x in fresh}  # leases from before the restart are still live
    store.close()


def test_schema_fuzz_finds_no_server_error(service):
    """Property-based requests built from the served OpenAPI schema, valid and invalid by it, never get a 5xx.

    schemathesis generates the cases; hypothesis drives them directly (schemathesis's own pytest plugin does not
    load under pytest 9)."""
    auth = service.get("auth", {})
    schema = schemathesis.openapi.from_url(service["url"] + "/openapi.json", headers=auth)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/select_batch", "/update_labels", "/release_batch", "/status", "/model"}
    strategy = st.one_of([op.as_strategy(generation_mode=mode) for op in operations for mode in GenerationMode])
    seen: dict[str, int] = {}

    @given(case=strategy)
    @settings(
        max_examples=250,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
    )
    def fuzz(case) -> None:
        response = case.call(headers=auth, timeout=60)
        seen[case.path] = seen.get(case.path, 0) + 1
        assert response.status_code < 500, f"{case.method} {case.path}: {response.status_code} {response.text[:500]}"

    fuzz()
    assert len(seen) >= 5 and sum(seen.values()) >= 200, seen
