"""The audit log on SQLite and PostgreSQL: every kind of action is recorded with its caller, role, request id, time
and batch, in the transaction of the action (an action that fails leaves no entry, and an entry never outlives its
action); filters and keyset pages."""

from __future__ import annotations

from datetime import timedelta

import pytest

from raydq.labels import InvalidField, LabelIn, LeaseConflict
from raydq.labels.models import utcnow
from tests.labels.conftest import ADMIN, ALICE, BOB


def test_every_kind_of_action_is_recorded_with_its_caller(store):
    t0 = utcnow()
    at = [t0 + timedelta(seconds=k) for k in range(10)]
    soon = t0 + timedelta(hours=1)
    store.create_batch(
        batch_id="b1",
        item_ids=["x", "y", "z"],
        expires_at=soon,
        strategy="dropquery",
        model_version=3,
        caller=ALICE,
        request_id="r-select",
        now=at[0],
    )
    store.apply_labels(
        [LabelIn(id="x", label="cat"), LabelIn(id="y", skip=True, reason="dark")],
        caller=ALICE,
        batch_id="b1",
        request_id="r-label",
        now=at[1],
    )
    store.renew_batch("b1", caller=ALICE, seconds=600, request_id="r-renew", now=at[2])
    store.release_batch("b1", caller=ADMIN, request_id="r-release", now=at[3])
    token = store.add_token("bob", caller=ADMIN, now=at[4])
    assert token.token not in str(store.audit_log()[0])  # the secret is never logged
    store.revoke_token("bob", caller=ADMIN, now=at[5])
    version = store.save_head(revision=1, n_labels=1, classes=["cat", "dog"], payload={})
    store.pin_head(version, caller=ADMIN, request_id="r-pin")
    store.unpin_head(caller=ADMIN, request_id="r-unpin")
    store.audit(caller=ADMIN, action="purge_leases", request_id="r-purge", detail={"purged": 0}, now=at[8])

    entries, cursor = store.audit_log()
    assert cursor is None
    assert [(e.action, e.caller, e.role, e.request_id, e.batch_id) for e in entries] == [
        ("select", "alice", "annotator", "r-select", "b1"),
        ("label", "alice", "annotator", "r-label", "b1"),
        ("skip", "alice", "annotator", "r-label", "b1"),
        ("renew", "alice", "annotator", "r-renew", "b1"),
        ("release", "root", "admin", "r-release", "b1"),
        ("token_add", "root", "admin", None, None),
        ("token_revoke", "root", "admin", None, None),
        ("head_pin", "root", "admin", "r-pin", None),
        ("head_unpin", "root", "admin", "r-unpin", None),
        ("purge_leases", "root", "admin", "r-purge", None),
    ]
    assert [e.at for e in entries[:7]] == [at[0], at[1], at[1], at[2], at[3], at[4], at[5]]
    detail = {e.action: e.detail for e in entries}
    assert detail["select"] == {
        "items": 3,
        "strategy": "dropquery",
        "model_version": 3,
        "expires_at": soon.isoformat(),
    }
    assert detail["label"]["item_ids"] == ["x"] and detail["label"]["created"] == 1
    assert detail["skip"]["item_ids"] == ["y"] and detail["skip"]["revision"] == 1
    assert detail["renew"]["leased"] == 1 and detail["renew"]["seconds"] == 600  # z: x and y were answered
    assert detail["release"] == {"released": 1, "owner": "alice"}
    assert detail["token_add"] == {"name": "bob", "role": "annotator", "expires_at": None}
    assert detail["head_pin"] == {"version": version} and detail["head_unpin"] == {"previous": version}


def test_entries_share_the_transaction_of_their_action(store):
    soon = utcnow() + timedelta(minutes=5)
    store.create_batch(batch_id="b1", item_ids=["x"], expires_at=soon, strategy="random", model_version=0, caller=ALICE)
    with pytest.raises(LeaseConflict):  # refused: no batch, no entry
        store.create_batch(
            batch_id="b2", item_ids=["x"], expires_at=soon, strategy="random", model_version=0, caller=BOB
        )
    with pytest.raises(RuntimeError, match="crash"), store.transaction() as tx:  # rolled back after the action
        tx.apply_labels([LabelIn(id="q", label="cat")], caller=BOB)
        raise RuntimeError("crash before commit")
    entries, _ = store.audit_log()
    assert [(e.action, e.caller) for e in entries] == [("select", "alice")]
    assert store.count_labels() == 0 and store.get_batch("b2") is None


def test_filters_and_pages(store):
    t0 = utcnow()
    for k in range(7):
        caller = ALICE if k % 2 == 0 else BOB
        store.apply_labels([LabelIn(id=f"i{k}", label="cat")], caller=caller, now=t0 + timedelta(minutes=k))
    store.apply_labels([LabelIn(id="s", skip=True)], caller=BOB, now=t0 + timedelta(minutes=7))

    def ids(**kw) -> list[list[int]]:
        pages, cursor = [], None
        while True:
            rows, cursor = store.audit_log(cursor=cursor, **kw)
            pages.append([int(r.detail["item_ids"][0][1:]) if r.action == "label" else -1 for r in rows])
            if cursor is None:
                return pages

    assert ids(limit=3) == [[0, 1, 2], [3, 4, 5], [6, -1]]
    assert ids(limit=3, newest_first=True) == [[-1, 6, 5], [4, 3, 2], [1, 0]]
    assert ids(limit=2, caller="alice") == [[0, 2], [4, 6], []]
    assert ids(caller="bob", action="label") == [[1, 3, 5]]
    assert ids(action="skip") == [[-1]]
    assert ids(since=t0 + timedelta(minutes=2), until=t0 + timedelta(minutes=5)) == [[2, 3, 4]]
    assert ids(caller="nobody") == [[]]
    for bad in ("abc", "-1", "1" * 40):
        with pytest.raises(InvalidField, match="cursor"):
            store.audit_log(cursor=bad)
    for limit in (0, 10_001, True):
        with pytest.raises(InvalidField, match="limit"):
            store.audit_log(limit=limit)
    with pytest.raises(InvalidField, match="action: lowercase"):
        store.audit(caller=ADMIN, action="Drop Table")
    with pytest.raises(InvalidField, match="detail: larger than"):
        store.audit(caller=ADMIN, action="note", detail={"x": "y" * 10_000})
