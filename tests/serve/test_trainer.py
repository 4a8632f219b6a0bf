"""The head-retraining loop against real label stores: versions come from the database (two trainers never collide
and keep serving rising versions), a head trained on one class is never served, an admin can roll back, and a
trainer that cannot be reached never turns a committed label write into an error."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest
from fastapi.testclient import TestClient

from raydq.labels import LabelStore
from raydq.pool.store import load_pool
from raydq.serve.inprocess import create_inprocess_app
from raydq.serve.snapshots import TrainingSet
from raydq.serve.training import TrainingPolicy, TrainingService
from tests.serve.helpers import CLASSES, wait_for


@pytest.fixture
def pool(embedding_store):
    return load_pool(embedding_store)


def truth(pool, ids):
    return [{"id": i, "label": CLASSES[int(pool.labels[r])]} for i, r in zip(ids, pool.index_of(ids), strict=True)]


def _training_set(pool, n: int, revision: int, *, classes: int = 3) -> TrainingSet:
    rows = np.flatnonzero(pool.labels < classes)[:n]
    return TrainingSet(revision=revision, classes=tuple(CLASSES), X=pool.X[rows], y=pool.labels[rows].astype(np.int64))


def test_two_trainers_on_one_database_serve_distinct_rising_versions(db_url, pool):
    """Overlapping deployments during an upgrade: both trainers store heads; the database hands out versions, so
    neither collides with the other nor stops saving."""
    stores = [LabelStore(db_url), LabelStore(db_url)]
    revision = {"r": 0}

    async def run() -> list[list[int]]:
        async def fetch() -> TrainingSet:
            return _training_set(pool, 30, revision["r"])

        policy = TrainingPolicy(head_params={"max_epochs": 40}, delay_s=0.0)
        trainers = [TrainingService(store=s, fetch=fetch, policy=policy) for s in stores]
        served: list[list[int]] = [[], []]
        for r in range(1, 6):
            revision["r"] = r
            for t in trainers:
                t.notify(r)
            await asyncio.gather(*(t.wait_idle(60) for t in trainers))
            for k, t in enumerate(trainers):
                served[k].append(t.snapshot().version)
        return served

    served = asyncio.run(run())
    for versions in served:
        assert versions == sorted(versions) and len(set(versions)) == 5  # each one keeps saving and serving
    assert not set(served[0]) & set(served[1])  # and never under the other's version
    assert stores[0].max_head_version() == 10
    for s in stores:
        s.close()


def test_a_head_trained_on_one_class_never_replaces_a_good_head(make_args, tmp_path, pool):
    args = make_args(f"sqlite:///{tmp_path / 'l.db'}")
    ids = [str(i) for i in pool.ids]
    with TestClient(create_inprocess_app(args)) as c:
        one_class = [x for x in truth(pool, ids) if x["label"] == CLASSES[0]][:6]
        c.post("/update_labels", json={"labels": one_class})
        status = wait_for(lambda: (s := c.get("/status").json())["training"]["rejected"] and s,
                          what="a rejected head")  # fmt: skip
        assert status["model_version"] == 0 and "one class" in status["training"]["rejected"]
        assert c.get("/model").json()["head"] is None  # nothing was served
        good = [x for x in truth(pool, ids) if x["label"] != CLASSES[0]][:12]
        c.post("/update_labels", json={"labels": good})
        status = wait_for(lambda: (s := c.get("/status").json())["model_version"] > 0 and s["training"]["state"]
                          == "idle" and s, what="a good head")  # fmt: skip
        good_version = status["model_version"]
        assert status["training"]["rejected"] is None

        # an admin rolls back to the good head while later heads keep being trained and stored
        more = [x for x in truth(pool, ids) if x not in one_class + good][:9]
        c.post("/update_labels", json={"labels": more})
        newer = wait_for(lambda: (s := c.get("/status").json())["model_version"] > good_version and s,
                         what="a newer head")["model_version"]  # fmt: skip
        pinned = c.post("/admin/head", json={"version": good_version}).json()
        assert pinned["model_version"] == good_version and pinned["pinned_version"] == good_version
        assert c.post("/select_batch", json={"batch_size": 3}).json()["model_version"] == good_version
        assert c.post("/admin/head", json={"version": 999}).status_code == 404
        back = c.post("/admin/head", json={"version": None}).json()
        assert back["model_version"] >= newer and back["pinned_version"] is None


def test_a_trainer_that_is_down_never_turns_a_committed_write_into_an_error(make_args, tmp_path, pool):
    args = make_args(f"sqlite:///{tmp_path / 'l.db'}")
    app = create_inprocess_app(args)
    ids = [str(i) for i in pool.ids]

    async def unreachable(revision: int) -> int:
        raise ConnectionError("trainer is gone")

    with TestClient(app) as c:
        endpoints = app.state.endpoints
        endpoints.trainer.notify = unreachable
        r = c.post("/update_labels", json={"labels": truth(pool, ids[:4])})
        assert r.status_code == 200 and r.json()["trainer"] == "unreachable" and r.json()["created"] == 4
        store = LabelStore(args.database_url)
        assert store.count_labels() == 4  # committed, and said so
        store.close()
