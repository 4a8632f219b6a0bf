"""The labeling service's FastAPI app in-process (TestClient, no Ray): the same routes and cores that Serve runs.

Over-HTTP tests against Ray Serve are in test_serve_http.py; these cover behaviour that needs a controlled process:
training failures, lease expiry, restarts.
"""

from __future__ import annotations

import time
from dataclasses import replace

import numpy as np
import pytest
from fastapi.testclient import TestClient

from raydq.labels import LabelStore
from raydq.pool.store import load_pool
from raydq.serve.inprocess import create_inprocess_app
from tests.serve.cases import check_malformed_requests, state_of
from tests.serve.helpers import CLASSES, N_ITEMS, open_selection, select_now, wait_for


@pytest.fixture
def pool(embedding_store):
    return load_pool(embedding_store)


def true_labels(pool, ids):
    return [{"id": i, "label": CLASSES[int(pool.labels[r])]} for i, r in zip(ids, pool.index_of(ids), strict=True)]


def wait_version(client, version: int, timeout: float = 60) -> dict:
    return wait_for(
        lambda: (
            (s := client.get("/status").json())["training"]["state"] == "idle" and s["model_version"] >= version and s
        ),
        timeout=timeout,
        what=f"model_version {version}",
    )


def test_select_label_retrain_and_model(make_args, db_url, pool):
    """The whole loop, on SQLite and PostgreSQL: cold start, labels, a trained head, selection with it."""
    args = make_args(db_url)
    with TestClient(create_inprocess_app(args)) as c:
        first = c.post("/select_batch", json={"batch_size": 12})
        assert first.status_code == 200, first.text
        body = first.json()
        assert body["model_version"] == 0 and body["strategy"] == args.cold_start
        ids = [x["id"] for x in body["items"]]
        assert len(ids) == len(set(ids)) == 12 and all(x["uri"].endswith(f"{x['id']}.png") for x in body["items"])
        assert c.get("/status").json()["leased"] == 12

        upd = c.post("/update_labels", json={"labels": true_labels(pool, ids), "batch_id": body["batch_id"]})
        assert upd.status_code == 200, upd.text
        assert upd.json()["created"] == 12 and upd.json()["labeled"] == 12
        status = wait_version(c, 1)
        assert status["labeled"] == 12 and status["leased"] == 0 and status["training"]["n_labels"] == 12
        assert status["classes"] == CLASSES and status["pool_size"] == N_ITEMS

        model = c.get("/model").json()
        assert model["model_version"] == 1 and model["classes"] == CLASSES
        W, b = np.asarray(model["W"]), np.asarray(model["b"])
        assert W.shape == (pool.dim, len(CLASSES)) and b.shape == (len(CLASSES),)
        accuracy = float(((pool.X @ W + b).argmax(1) == pool.labels).mean())
        assert accuracy > 0.8, accuracy  # the served head, evaluated the way the demo does
        state = model["head"]["state"]  # standardized with the whole pool's statistics, not its 12 labeled rows'
        np.testing.assert_allclose(state["running_mean"], pool.X.mean(axis=0), rtol=1e-2, atol=1e-3)
        np.testing.assert_allclose(state["running_var"], pool.X.var(axis=0), rtol=1e-2, atol=1e-3)

        second = c.post("/select_batch", json={"batch_size": 5}).json()
        assert second["model_version"] == 1 and second["strategy"] == args.default_strategy
        assert not set(ids) & {x["id"] for x in second["items"]}

        # idempotent repeat, then a relabel
        again = c.post("/update_labels", json={"labels": true_labels(pool, ids[:3])}).json()
        assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 3)
        flip = {"id": ids[0], "label": next(k for k in CLASSES if k != true_labels(pool, ids[:1])[0]["label"])}
        relabel = c.post("/update_labels", json={"labels": [flip]}).json()
        assert relabel["updated"] == 1 and relabel["revision"] == again["revision"] + 1
    store = LabelStore(db_url)
    assert [e.label for e in store.history(ids[0])][-1] == flip["label"] and len(store.history(ids[0])) == 2
    store.close()


def test_malformed_requests_change_nothing(make_args, tmp_path, pool):
    args = make_args(f"sqlite:///{tmp_path / 'l.db'}", max_batch_size=N_ITEMS * 2)
    ids = [str(i) for i in pool.ids]
    with TestClient(create_inprocess_app(args)) as c:
        c.post("/update_labels", json={"labels": true_labels(pool, ids[-2:])})
        c.post("/select_batch", json={"batch_size": 3})
        check_malformed_requests(c, args, ids)


def test_leases_release_and_expiry(make_args, tmp_path):
    args = make_args(f"sqlite:///{tmp_path / 'l.db'}", max_batch_size=N_ITEMS)
    with TestClient(create_inprocess_app(args)) as c:
        a = c.post("/select_batch", json={"batch_size": 100}).json()
        b = c.post("/select_batch", json={"batch_size": 100, "lease_seconds": 1}).json()
        a_ids, b_ids = {x["id"] for x in a["items"]}, {x["id"] for x in b["items"]}
        assert not a_ids & b_ids
        rest = N_ITEMS - 200
        assert c.get("/status").json()["unlabeled_available"] == rest
        assert c.post("/select_batch", json={"batch_size": rest + 1}).status_code == 422
        time.sleep(1.2)  # b's leases expire
        assert c.get("/status").json()["unlabeled_available"] == rest + 100
        r = c.post("/release_batch", json={"batch_id": a["batch_id"]})
        assert r.json() == {"batch_id": a["batch_id"], "released": 100}
        everything = c.post("/select_batch", json={"batch_size": N_ITEMS}).json()
        assert len(everything["items"]) == N_ITEMS  # released and expired items are selectable again


def test_failed_training_keeps_last_good_head_and_retries_with_backoff(make_args, tmp_path, pool):
    """A fit that fails keeps the last good head in service, says why, and is retried with backoff without
    waiting for another label; once training works again the retry serves a new head."""
    args = make_args(f"sqlite:///{tmp_path / 'l.db'}")
    ids = [str(i) for i in pool.ids]
    app = create_inprocess_app(args)
    trainer = app.state.parts.trainer
    with TestClient(app) as c:
        c.post("/update_labels", json={"labels": true_labels(pool, ids[:10])})
        good = wait_version(c, 1)["model_version"]
        model = c.get("/model").json()
        working = trainer.policy
        trainer.policy = replace(working, head_params={"lr": -1.0}, retry_min_s=0.05, retry_max_s=0.2)
        c.post("/update_labels", json={"labels": true_labels(pool, ids[10:20])})
        status = wait_for(
            lambda: (s := c.get("/status").json())["training"]["failures"] >= 3 and s, what="failed trainings"
        )
        assert status["model_version"] == good and "lr" in status["training"]["last_error"]
        assert status["training"]["state"] in ("backoff", "training", "scheduled")  # still retrying on its own
        assert c.get("/model").json() == model
        sel = c.post("/select_batch", json={"batch_size": 4}).json()
        assert sel["model_version"] == good and sel["strategy"] == args.default_strategy
        trainer.policy = replace(working, retry_min_s=0.05, retry_max_s=0.2)  # no new label: the retry recovers
        status = wait_for(
            lambda: (s := c.get("/status").json())["training"]["state"] == "idle" and s["model_version"] > good and s,
            what="a retried training",
        )
        assert status["training"]["last_error"] is None and status["training"]["n_labels"] == 20


def test_restart_rebuilds_state_from_the_stores(make_args, db_url, pool):
    args = make_args(db_url)
    ids = [str(i) for i in pool.ids]
    with TestClient(create_inprocess_app(args)) as c:
        c.post("/update_labels", json={"labels": true_labels(pool, ids[:15])})
        wait_version(c, 1)
        leased = {x["id"] for x in c.post("/select_batch", json={"batch_size": 20}).json()["items"]}
        before = c.get("/status").json()
        model = c.get("/model").json()
    with TestClient(create_inprocess_app(args)) as c:  # a new process would see exactly this
        after = c.get("/status").json()
        for key in ("labeled", "leased", "revision", "model_version", "unlabeled_available"):
            assert after[key] == before[key], key
        assert c.get("/model").json() == model
        fresh = {x["id"] for x in c.post("/select_batch", json={"batch_size": 40}).json()["items"]}
        assert not fresh & leased and not fresh & set(ids[:15])  # live leases survived the restart


def test_token_required_and_nothing_written(make_args, tmp_path, pool):
    token_file = tmp_path / "token"
    token_file.write_text("s3cret-token\n")
    args = make_args(f"sqlite:///{tmp_path / 'l.db'}", api_token_file=str(token_file))
    ids = [str(i) for i in pool.ids]
    with TestClient(create_inprocess_app(args)) as c:
        store = LabelStore(args.database_url)
        before = state_of(store)
        for headers in ({}, {"authorization": "Bearer wrong"}, {"authorization": "s3cret-token"}):
            assert (
                c.post("/update_labels", json={"labels": true_labels(pool, ids[:2])}, headers=headers).status_code
                == 401
            )
            assert c.post("/select_batch", json={"batch_size": 2}, headers=headers).status_code == 401
            assert c.get("/status", headers=headers).status_code == 401
            # auth comes before parsing: a malformed body without a token is still a 401
            assert c.post("/select_batch", content=b"{", headers=headers).status_code == 401
        assert state_of(store) == before
        assert c.get("/healthz").status_code == 200 and c.get("/openapi.json").status_code == 200
        ok = {"authorization": "Bearer s3cret-token"}
        assert c.post("/update_labels", json={"labels": true_labels(pool, ids[:2])}, headers=ok).status_code == 200
        assert store.count_labels() == 2
        store.close()


def test_label_mirror_follows_relabels_and_foreign_classes(make_args, tmp_path, pool):
    """The selector applies only what changed since its revision; relabels move an item's class, and a label with a
    class that is not configured (an old class list) keeps the item out of selection and training."""
    from raydq.labels import ANONYMOUS, LabelIn
    from raydq.serve.schemas import SelectBatchRequest

    args = make_args(f"sqlite:///{tmp_path / 'l.db'}", max_batch_size=N_ITEMS)
    core = open_selection(args)
    ids = [str(i) for i in pool.ids]
    core.store.apply_labels(
        [LabelIn(id=ids[0], label=CLASSES[0]), LabelIn(id=ids[1], label=CLASSES[1])], caller=ANONYMOUS
    )
    assert core.training_set_sync().y.tolist() == [0, 1]
    core.store.apply_labels(
        [LabelIn(id=ids[1], label=CLASSES[2]), LabelIn(id=ids[2], label="retired-class")], caller=ANONYMOUS
    )
    data = core.training_set_sync()
    assert data.y.tolist() == [0, 2] and data.revision == core.store.revision()
    counts = core.counts_sync()
    assert counts["labeled"] == 3 and counts["unlabeled_available"] == N_ITEMS - 3
    chosen = select_now(core, SelectBatchRequest(batch_size=N_ITEMS - 3, strategy="random"))
    assert not {x.id for x in chosen.items} & set(ids[:3])
    core.store.close()


def test_two_selector_replicas_never_lease_the_same_item(make_args, db_url):
    """Two selector processes' worth of cores on one database, selecting at once with the same seed (so they want
    the same items): the database's lock and lease key make one of them choose again."""
    import threading

    from raydq.serve.schemas import SelectBatchRequest

    args = make_args(db_url, max_batch_size=N_ITEMS)
    cores = [open_selection(args), open_selection(args)]
    got: list[list[str]] = []
    barrier = threading.Barrier(len(cores))

    def run(core) -> None:
        for _ in range(3):
            barrier.wait()
            batch = select_now(core, SelectBatchRequest(batch_size=20, strategy="random"))
            got.append([x.id for x in batch.items])

    threads = [threading.Thread(target=run, args=(c,)) for c in cores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ids = [i for batch in got for i in batch]
    assert len(got) == 6 and len(ids) == len(set(ids)) == 120
    assert sorted(cores[0].store.leased_ids()) == sorted(ids)
    for c in cores:
        c.store.close()


def test_metrics_go_through_ray(ray_cluster):
    from raydq.serve.metrics import ServiceMetrics, endpoint_tag

    metrics = ServiceMetrics()
    assert metrics.enabled
    metrics.request(path="/select_batch", method="POST", status=200, seconds=0.01)
    metrics.labels_stored(created=3, updated=1)
    metrics.model_version(2)
    assert endpoint_tag("/update_labels") == "/update_labels" and endpoint_tag("/../etc/passwd") == "other"
