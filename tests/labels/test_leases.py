"""The lease lifecycle on SQLite and PostgreSQL: batches have owners; renew, open batches, release by the owner or an
admin, purging; and the lease report of a label update (a label is stored whatever its lease says)."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest

from raydq.labels import BatchClosed, Forbidden, Identity, InvalidField, LabelIn, NotFound
from raydq.labels.models import utcnow
from tests.labels.conftest import ADMIN, ALICE, BOB

T0 = utcnow()


def lease(store, batch_id: str, items: list[str], caller: Identity, *, seconds: float = 60, now=T0) -> None:
    store.create_batch(
        batch_id=batch_id,
        item_ids=items,
        expires_at=now + timedelta(seconds=seconds),
        strategy="random",
        model_version=0,
        caller=caller,
        now=now,
    )


def test_renew_extends_revives_and_never_steals(store):
    lease(store, "a1", ["p", "q", "r", "s"], ALICE)
    store.apply_labels([LabelIn(id="p", label="cat")], caller=ALICE, batch_id="a1", now=T0)
    late = T0 + timedelta(seconds=90)  # a1's leases lapsed at +60
    lease(store, "b1", ["q"], BOB, seconds=600, now=late)  # bob took q meanwhile
    assert store.purge_expired_leases(now=late) == 2  # r and s: purged (p was labeled, q re-leased)
    renewed = store.renew_batch("a1", caller=ALICE, seconds=600, now=late)
    assert renewed.leased_ids == ["r", "s"] and renewed.expires_at == late + timedelta(seconds=600)
    assert store.get_batch("b1", now=late).leased_ids == ["q"]  # bob keeps his live lease
    later = late + timedelta(seconds=300)
    again = store.renew_batch("a1", caller=ALICE, seconds=30, now=later)
    assert again.leased_ids == ["r", "s"] and again.expires_at == later + timedelta(seconds=30)
    # once bob lets q go, the batch that handed it out first holds it again on its next renew
    store.release_batch("b1", caller=BOB, now=later)
    assert store.renew_batch("a1", caller=ALICE, seconds=30, now=later).leased_ids == ["q", "r", "s"]


def test_only_the_owner_or_an_admin_renews_or_releases(store):
    lease(store, "a1", ["x", "y"], ALICE)
    with pytest.raises(Forbidden):
        store.renew_batch("a1", caller=BOB, seconds=60, now=T0)
    with pytest.raises(Forbidden):
        store.release_batch("a1", caller=BOB, now=T0)
    assert store.renew_batch("a1", caller=ADMIN, seconds=60, now=T0).owner == "alice"
    assert store.release_batch("a1", caller=ADMIN, now=T0) == 2  # admin release of any batch
    with pytest.raises(BatchClosed):
        store.renew_batch("a1", caller=ALICE, seconds=60, now=T0)
    with pytest.raises(NotFound):
        store.renew_batch("nope", caller=ALICE, seconds=60)
    for bad in (0, -5, math.nan, math.inf, 1e300, True, "60"):
        with pytest.raises(InvalidField) as err:
            store.renew_batch("a1", caller=ALICE, seconds=bad)  # type: ignore[arg-type]
        assert err.value.field == ("seconds",)


def test_open_batches_of_a_caller(store):
    lease(store, "a1", ["x1", "x2"], ALICE, now=T0)
    lease(store, "a2", ["x3"], ALICE, now=T0 + timedelta(seconds=1))
    lease(store, "a3", ["x4"], ALICE, seconds=5, now=T0 + timedelta(seconds=2))
    lease(store, "b1", ["y1"], BOB, now=T0 + timedelta(seconds=3))
    store.release_batch("a2", caller=ALICE, now=T0 + timedelta(seconds=4))
    at = T0 + timedelta(seconds=10)  # a3 has expired
    assert [b.batch_id for b in store.open_batches("alice", now=at)] == ["a1"]
    assert [b.batch_id for b in store.open_batches(now=at)] == ["b1", "a1"]  # everyone's, newest first
    store.apply_labels([LabelIn(id="x1", label="cat"), LabelIn(id="x2", skip=True)], caller=ALICE)
    assert store.open_batches("alice", now=at) == []  # all answered
    (bob,) = store.open_batches("bob", now=at)
    assert (bob.owner, bob.leased_ids, bob.size, bob.released_at) == ("bob", ["y1"], 1, None)


def test_label_updates_report_items_their_lease_did_not_cover(store):
    lease(store, "a1", ["mine", "late", "moved"], ALICE, seconds=60)
    lease(store, "a2", ["other"], ALICE, seconds=600)
    lease(store, "b1", ["bobs"], BOB, seconds=600)
    at = T0 + timedelta(seconds=120)  # a1 lapsed
    lease(store, "a3", ["moved"], ALICE, seconds=600, now=at)
    store.renew_batch("a1", caller=ALICE, seconds=600, now=at)  # a1 holds "mine" and "late" again ...
    store.release_batch("a1", caller=ALICE, now=at)  # ... and then lets them go
    lease(store, "a4", ["mine"], ALICE, seconds=600, now=at)
    answers = [LabelIn(id=i, label="cat") for i in ("mine", "late", "moved", "other", "bobs", "stranger")]
    counts = store.apply_labels(answers, caller=ALICE, batch_id="a1", now=at)
    assert counts.lease.model_dump() == {
        "expired": ["late"],
        "other_batch": ["mine", "moved", "other"],
        "other_caller": ["bobs"],
        "not_in_batch": ["stranger"],
    }
    assert counts.lease.count == 6 and counts.created == 6  # stored all the same
    assert store.leased_ids(now=at) == []  # and no longer leased by anyone
    (entry,) = store.audit_log(action="label")[0]
    assert entry.detail["lease_not_covering"] == 6

    lease(store, "b2", ["b-item"], BOB, seconds=600, now=at)
    lease(store, "a5", ["a-item"], ALICE, seconds=600, now=at)
    free = store.apply_labels([LabelIn(id=i, label="dog") for i in ("b-item", "a-item", "free")], caller=ALICE, now=at)
    assert free.lease.model_dump() == {"expired": [], "other_batch": [], "other_caller": ["b-item"], "not_in_batch": []}
    with pytest.raises(InvalidField, match="batch_id: unknown batch"):
        store.apply_labels([LabelIn(id="z", label="dog")], caller=ALICE, batch_id="no-such-batch")


def test_purge_expired_leases(store):
    lease(store, "a1", ["x", "y"], ALICE, seconds=10)
    lease(store, "a2", ["z"], ALICE, seconds=100)
    assert store.purge_expired_leases(now=T0 + timedelta(seconds=5)) == 0
    assert store.purge_expired_leases(now=T0 + timedelta(seconds=10)) == 2  # expiry is exclusive
    assert store.count_leased(now=T0) == 1 and store.purge_expired_leases(now=T0 + timedelta(seconds=10)) == 0
    assert store.get_batch("a1").size == 2  # the batch and its items stay for the record
