"""Idempotency records on SQLite and PostgreSQL: a retry gets the original response and does no new work, even when
the retries race; a key reused with another body is a conflict; keys are per caller and endpoint; purging by age."""

from __future__ import annotations

import math
import threading
import uuid
from datetime import timedelta

import pytest

from raydq.labels import IdempotencyConflict, InvalidField, LabelIn
from raydq.labels.models import utcnow
from tests.labels.conftest import ALICE, BOB


def update_labels(store, caller, key: str, body: dict) -> dict:
    """What the service does for an idempotent ``update_labels``: recall, act, remember, in one transaction."""
    with store.transaction() as tx:
        stored = tx.recall(caller=caller, key=key, endpoint="update_labels", request=body)
        if stored is not None:
            return stored
        counts = tx.apply_labels([LabelIn.model_validate(x) for x in body["labels"]], caller=caller)
        response = {"created": counts.created, "revision": counts.revision, "note": "stored ✓"}
        tx.remember(caller=caller, key=key, endpoint="update_labels", request=body, response=response)
        return response


def select_batch(store, caller, key: str, body: dict) -> dict:
    with store.transaction() as tx:
        stored = tx.recall(caller=caller, key=key, endpoint="select_batch", request=body)
        if stored is not None:
            return stored
        batch_id = uuid.uuid4().hex
        tx.create_batch(
            batch_id=batch_id,
            item_ids=body["items"],
            expires_at=tx.now + timedelta(minutes=5),
            strategy="random",
            model_version=0,
            caller=caller,
        )
        response = {"batch_id": batch_id, "items": body["items"]}
        tx.remember(caller=caller, key=key, endpoint="select_batch", request=body, response=response)
        return response


def test_a_retry_replays_the_response_and_does_no_work(store):
    body = {"labels": [{"id": "a", "label": "cat"}, {"id": "b", "skip": True}]}
    first = update_labels(store, ALICE, "k1", body)
    assert first == {"created": 2, "revision": 1, "note": "stored ✓"}
    reordered = {"labels": [{"label": "cat", "id": "a"}, {"skip": True, "id": "b"}]}  # same JSON, other key order
    assert update_labels(store, ALICE, "k1", reordered) == first
    assert store.recall(caller=ALICE, key="k1", endpoint="update_labels", request=body) == first
    assert store.revision() == 1 and len(store.audit_log()[0]) == 2  # one label and one skip entry, once
    with pytest.raises(IdempotencyConflict):
        update_labels(store, ALICE, "k1", {"labels": [{"id": "a", "label": "dog"}]})
    with pytest.raises(IdempotencyConflict):
        store.recall(caller=ALICE, key="k1", endpoint="update_labels", request={"labels": []})
    assert store.get_label("a").label == "cat"
    # keys belong to a caller and an endpoint
    assert store.recall(caller=BOB, key="k1", endpoint="update_labels", request=body) is None
    assert store.recall(caller=ALICE, key="k1", endpoint="select_batch", request=body) is None
    bob = update_labels(store, BOB, "k1", {"labels": [{"id": "c", "label": "dog"}]})
    assert bob["revision"] == 2


@pytest.mark.parametrize("endpoint", ["update_labels", "select_batch"])
def test_racing_retries_do_the_work_once(store, endpoint):
    act = update_labels if endpoint == "update_labels" else select_batch
    body = (
        {"labels": [{"id": f"x{k}", "label": "cat"} for k in range(5)]}
        if act is update_labels
        else {"items": [f"x{k}" for k in range(5)]}
    )
    results, errors = [], []

    def retry() -> None:
        try:
            results.append(act(store, ALICE, "same-key", body))
        except Exception as e:
            errors.append(e)

    threads = [threading.Thread(target=retry) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(results) == 6 and all(r == results[0] for r in results)
    if act is update_labels:
        assert store.revision() == 1 and store.count_labels() == 5
    else:
        assert store.count_batches() == 1 and sorted(store.leased_ids()) == body["items"]
    assert len(store.audit_log()[0]) == 1


def test_purge_by_age_and_request_checks(store):
    t0 = utcnow()
    for k, age in enumerate((7200, 60)):
        with store.transaction(now=t0 - timedelta(seconds=age)) as tx:
            tx.remember(caller=ALICE, key=f"k{k}", endpoint="e", request={"n": k}, response={"v": "\x00"})
    assert store.purge_idempotency(max_age_s=3600, now=t0) == 1
    assert store.recall(caller=ALICE, key="k0", endpoint="e", request={"n": 0}) is None
    assert store.recall(caller=ALICE, key="k1", endpoint="e", request={"n": 1}) == {"v": "\x00"}  # replayed exactly
    with pytest.raises(InvalidField) as err:
        store.recall(caller=ALICE, key="k", endpoint="e", request={"x": math.nan})
    assert err.value.field == ("request",)
    with pytest.raises(InvalidField) as err:
        store.recall(caller=ALICE, key="k" * 257, endpoint="e", request={})
    assert err.value.field == ("idempotency_key",)
    with pytest.raises(InvalidField) as err, store.transaction() as tx:
        tx.remember(caller=ALICE, key="k9", endpoint="e", request={}, response={"x": math.inf})
    assert err.value.field == ("response",)
    with pytest.raises(InvalidField, match="max_age_s"):
        store.purge_idempotency(max_age_s=-1)


def test_the_service_maintenance_purges_records_past_their_retention(store):
    """``maintain`` (the service's background loop) deletes idempotency records older than
    ``idempotency_retention_s`` and keeps younger ones, so the table does not grow with every keyed request."""
    import asyncio
    from types import SimpleNamespace

    from raydq.serve.builder import maintain
    from raydq.serve.config import ServeArgs

    t0 = utcnow()
    for k, age in enumerate((7200, 60)):
        with store.transaction(now=t0 - timedelta(seconds=age)) as tx:
            tx.remember(caller=ALICE, key=f"k{k}", endpoint="e", request={}, response={"k": k})
    args = ServeArgs(embeddings="e", idempotency_retention_s=3600)
    args.pool.poll_interval_s = 0

    async def one_round() -> None:
        task = asyncio.create_task(maintain(SimpleNamespace(store=store), args))
        await asyncio.sleep(0.5)
        task.cancel()

    asyncio.run(one_round())
    assert store.recall(caller=ALICE, key="k0", endpoint="e", request={}) is None
    assert store.recall(caller=ALICE, key="k1", endpoint="e", request={}) == {"k": 1}
