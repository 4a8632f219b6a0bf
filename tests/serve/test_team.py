"""What an annotation team needs day to day, through the HTTP API: identities and roles, the audit log, items and
their images, skip answers, incremental export, idempotent retries, lease renewal and listing."""

from __future__ import annotations

import csv
import io
import json
import threading

import numpy as np
import pytest
from fastapi.testclient import TestClient

from raydq.labels import LabelStore
from raydq.labels.identity import CLI
from raydq.pool.store import load_pool
from raydq.serve.inprocess import create_inprocess_app
from tests.serve.helpers import CLASSES, N_ITEMS, service_args, wait_for


@pytest.fixture
def pool(embedding_store):
    return load_pool(embedding_store)


def truth(pool, ids):
    rows = pool.index_of(ids)
    return [{"id": i, "label": CLASSES[int(pool.labels[r])]} for i, r in zip(ids, rows, strict=True)]


@pytest.fixture
def team(make_args, db_url):
    """A service with an admin and two annotators, each with their own token."""
    store = LabelStore(db_url)
    tokens = {name: store.add_token(name, role=role, caller=CLI).token
              for name, role in (("ada", "admin"), ("alice", "annotator"), ("bob", "annotator"))}  # fmt: skip
    store.close()
    args = make_args(db_url, max_batch_size=N_ITEMS)
    with TestClient(create_inprocess_app(args)) as c:
        yield c, {n: {"authorization": f"Bearer {t}"} for n, t in tokens.items()}, args


def test_identities_roles_and_the_audit_log(team, pool):
    c, auth, _ = team
    assert c.get("/status").status_code == 401  # tokens exist: nothing is open but health and docs
    assert c.get("/status", headers=auth["alice"]).json()["auth"] == "tokens"
    batch = c.post("/select_batch", json={"batch_size": 4}, headers=auth["alice"]).json()
    ids = [x["id"] for x in batch["items"]]

    # alice cannot write as bob, and cannot use admin endpoints
    as_bob = [{**truth(pool, ids[:1])[0], "annotator": "bob"}]
    r = c.post("/update_labels", json={"labels": as_bob}, headers=auth["alice"])
    assert r.status_code == 403 and "annotator" in r.text
    for method, path, body in (
        ("post", "/admin/head", {"version": None}),
        ("post", "/admin/pool/refresh", None),
        ("get", "/admin/audit", None),
    ):
        assert getattr(c, method)(path, headers=auth["alice"], **({"json": body} if body else {})).status_code == 403
    assert c.get("/batches", params={"annotator": "bob"}, headers=auth["alice"]).status_code == 403

    # her labels are recorded as hers; bob may not release or renew her batch
    r = c.post("/update_labels", json={"labels": truth(pool, ids[:2]), "batch_id": batch["batch_id"]},
               headers=auth["alice"])  # fmt: skip
    assert r.status_code == 200, r.text
    item = c.get(f"/items/{ids[0]}", headers=auth["bob"]).json()
    assert item["annotator"] == "alice" and item["history"][-1]["annotator"] == "alice"
    assert c.post("/renew_batch", json={"batch_id": batch["batch_id"]}, headers=auth["bob"]).status_code == 403
    assert c.post("/release_batch", json={"batch_id": batch["batch_id"]}, headers=auth["bob"]).status_code == 403
    renewed = c.post("/renew_batch", json={"batch_id": batch["batch_id"], "lease_seconds": 600}, headers=auth["alice"])
    assert renewed.status_code == 200 and renewed.json()["renewed"] == 2
    mine = c.get("/batches", headers=auth["alice"]).json()["batches"]
    assert [b["batch_id"] for b in mine] == [batch["batch_id"]] and sorted(mine[0]["leased_ids"]) == sorted(ids[2:])
    assert c.get("/batches", headers=auth["bob"]).json()["batches"] == []

    # an admin imports under another name, releases any batch, reads the audit log
    imported = [{**truth(pool, ids[2:3])[0], "annotator": "label-studio:carol"}]
    assert c.post("/update_labels", json={"labels": imported}, headers=auth["ada"]).status_code == 200
    assert c.get(f"/items/{ids[2]}", headers=auth["ada"]).json()["annotator"] == "label-studio:carol"
    released = c.post("/release_batch", json={"batch_id": batch["batch_id"]}, headers=auth["ada"]).json()
    assert released["released"] == 1
    log = c.get("/admin/audit", params={"limit": 100}, headers=auth["ada"]).json()
    kinds = {(e["caller"], e["action"]) for e in log}
    assert {("alice", "select"), ("alice", "label"), ("alice", "renew"), ("ada", "label"), ("ada", "release")} <= kinds
    assert all(e["request_id"] for e in log if e["action"] in ("select", "label"))


def test_shared_token_still_works_as_an_admin(make_args, tmp_path, monkeypatch):
    monkeypatch.setenv("RAYDQ_TEST_TOKEN", "shared-secret")
    args = make_args(f"sqlite:///{tmp_path / 'l.db'}", api_token_env="RAYDQ_TEST_TOKEN")
    with TestClient(create_inprocess_app(args)) as c:
        assert c.get("/status").status_code == 401
        ok = {"authorization": "Bearer shared-secret"}
        assert c.get("/status", headers=ok).json()["auth"] == "shared-token"
        assert c.get("/admin/audit", headers=ok).status_code == 200


def test_skipped_items_are_never_selected_again_nor_trained_on(make_args, db_url, pool):
    args = make_args(db_url, max_batch_size=N_ITEMS)
    app = create_inprocess_app(args)
    with TestClient(app) as c:
        first = c.post("/select_batch", json={"batch_size": 12}).json()
        ids = [x["id"] for x in first["items"]]
        answers = truth(pool, ids[:8]) + [{"id": i, "skip": True, "reason": "blurry"} for i in ids[8:]]
        r = c.post("/update_labels", json={"labels": answers, "batch_id": first["batch_id"]}).json()
        assert (r["created"], r["skipped"], r["labeled"]) == (12, 4, 8)
        status = wait_for(lambda: (s := c.get("/status").json())["training"]["n_labels"] == 8 and s,
                          what="a head on the 8 labels")  # fmt: skip
        assert status["skipped"] == 4 and status["labeled"] == 8
        assert status["unlabeled_available"] == N_ITEMS - 12
        data = app.state.parts.selection.training_set_sync()
        assert len(data) == 8
        rest = c.post("/select_batch", json={"batch_size": N_ITEMS - 12, "strategy": "random"}).json()
        assert not {x["id"] for x in rest["items"]} & set(ids)
        item = c.get(f"/items/{ids[9]}").json()
        assert item["skipped"] and item["label"] is None and item["history"][-1]["reason"] == "blurry"


def test_export_pages_hold_every_label_once_while_labels_are_written(make_args, db_url, pool):
    args = make_args(db_url, max_batch_size=N_ITEMS, max_labels_per_request=10)
    ids = [str(i) for i in pool.ids]
    with TestClient(create_inprocess_app(args)) as c:
        for s in range(0, 50, 10):
            assert c.post("/update_labels", json={"labels": truth(pool, ids[s : s + 10])}).status_code == 200
        stop = threading.Event()

        def writer() -> None:
            for s in range(50, 200, 5):
                if stop.is_set():
                    return
                assert c.post("/update_labels", json={"labels": truth(pool, ids[s : s + 5])}).status_code == 200

        t = threading.Thread(target=writer)
        t.start()
        seen: list[str] = []
        cursor = None
        while True:
            writes_done = not t.is_alive()  # before the read: a write after it would otherwise go unseen
            params = {"limit": 7, **({"cursor": cursor} if cursor else {})}
            page = c.get("/labels", params=params)
            assert page.status_code == 200, page.text
            rows = [json.loads(line) for line in page.text.splitlines()]
            seen += [r["item_id"] for r in rows]
            cursor = page.headers["x-next-cursor"]
            if len(rows) < 7 and writes_done:
                break
        t.join()
        stop.set()
        assert sorted(seen) == sorted(ids[:200]) and len(seen) == len(set(seen))
        as_csv = c.get("/labels", params={"format": "csv", "limit": 1000})
        rows = list(csv.DictReader(io.StringIO(as_csv.text)))
        assert len(rows) == 200 and {r["label"] for r in rows} <= set(CLASSES)
        assert c.get("/labels", params={"cursor": "not-a-cursor"}).status_code == 422


def test_idempotent_retries_return_the_first_answer_and_lease_nothing_new(make_args, db_url, pool):
    args = make_args(db_url, max_batch_size=N_ITEMS)
    with TestClient(create_inprocess_app(args)) as c:
        key = {"Idempotency-Key": "select-7f3a"}
        first = c.post("/select_batch", json={"batch_size": 6}, headers=key).json()
        leased = c.get("/status").json()["leased"]
        again = c.post("/select_batch", json={"batch_size": 6}, headers=key).json()
        assert again == first and c.get("/status").json()["leased"] == leased == 6
        other = c.post("/select_batch", json={"batch_size": 5}, headers=key)
        assert other.status_code == 409 and "key" in other.text.lower()
        body = {"labels": truth(pool, [x["id"] for x in first["items"]]), "request_id": "labels-1"}
        a = c.post("/update_labels", json=body).json()
        b = c.post("/update_labels", json=body).json()
        assert (a["created"], a["revision"]) == (b["created"], b["revision"]) == (6, a["revision"])
        assert c.get("/status").json()["revision"] == a["revision"]


def test_item_endpoint_and_images_for_three_kinds_of_source(ray_cluster, tmp_path, strategies):
    """Images come back decodable from an image folder, a Parquet table of image bytes and Fashion-MNIST."""
    from PIL import Image

    from tests.serve.image_sources import stores_of_three_kinds

    for kind, store_dir, expect in stores_of_three_kinds(tmp_path):
        args = service_args(store_dir, f"sqlite:///{tmp_path / f'{kind}.db'}", strategies)
        with TestClient(create_inprocess_app(args)) as c:
            pool = load_pool(store_dir)
            item_id = str(pool.ids[0])
            meta = c.get(f"/items/{item_id}").json()
            assert meta["id"] == item_id and meta["uri"] and meta["label"] is None
            r = c.get(f"/items/{item_id}/image")
            assert r.status_code == 200, (kind, r.text)
            image = np.asarray(Image.open(io.BytesIO(r.content)))
            assert image.shape[:2] == expect(item_id).shape[:2], kind
            assert np.abs(image.astype(int) - expect(item_id).astype(int)).mean() < 2, kind
            thumb = c.get(f"/items/{item_id}/image", params={"size": 16})
            assert max(Image.open(io.BytesIO(thumb.content)).size) <= 16
            etag = r.headers["etag"]
            assert c.get(f"/items/{item_id}/image", headers={"if-none-match": etag}).status_code == 304
            assert c.get("/items/no-such-item").status_code == 404
            assert c.get("/items/no-such-item/image").status_code == 404
