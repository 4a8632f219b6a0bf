"""The label store against SQLite and a real PostgreSQL server: idempotent upserts with history, all-or-nothing
updates, leases the database refuses to double-book, batches."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from raydq.labels import InvalidField, LabelIn, LabelStore, LeaseConflict, NotFound, normalise_url
from raydq.labels.models import utcnow
from tests.labels.conftest import ALICE, BOB


def test_urls_pick_psycopg3_and_refuse_others():
    assert normalise_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"
    with pytest.raises(ValueError, match="not a database URL"):
        normalise_url("labels.db")
    with pytest.raises(ValueError, match="unsupported database 'mysql'"):
        normalise_url("mysql://u@h/db")


def test_sqlite_is_durable_wal(tmp_path):
    s = LabelStore(f"sqlite:///{tmp_path / 'l.db'}")
    with s.db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
    s.close()


def test_idempotent_updates_and_history(store):
    first = store.apply_labels(
        [LabelIn(id="a", label="cat", annotator="imported"), LabelIn(id="b", label="dog")], caller=ALICE
    )
    assert (first.created, first.updated, first.unchanged, first.labeled, first.revision) == (2, 0, 0, 2, 1)
    again = store.apply_labels([LabelIn(id="a", label="cat"), LabelIn(id="b", label="dog")], caller=BOB)
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)
    assert again.revision == first.revision  # nothing changed, so the revision stays
    relabel = store.apply_labels([LabelIn(id="b", label="cat")], caller=BOB)
    assert (relabel.created, relabel.updated, relabel.revision) == (0, 1, first.revision + 1)
    history = store.history("b")
    assert [(e.label, e.previous_label, e.annotator) for e in history] == [
        ("dog", None, "alice"),
        ("cat", "dog", "bob"),
    ]
    assert history[1].created_at >= history[0].created_at and history[1].revision == relabel.revision
    assert len(store.history("a")) == 1 and store.history("nope") == []
    snapshot = store.training_snapshot()
    assert snapshot.labels == {"a": "cat", "b": "cat"} and snapshot.revision == relabel.revision == store.revision()
    a = store.get_label("a")
    assert (a.annotator, a.kind, a.label) == ("imported", "label", "cat")  # the service's annotator, when it set one
    assert store.get_label("nope") is None
    assert [tuple(c) for c in store.labels_since(first.revision)] == [("b", "cat", relabel.revision)]


def test_duplicate_ids_are_refused_whole_naming_the_entry(store):
    with pytest.raises(InvalidField) as err:
        store.apply_labels([LabelIn(id="a", label="x"), LabelIn(id="a", label="y")], caller=ALICE)
    assert err.value.field == ("labels", 1, "id") and "also at labels[0]" in str(err.value)
    with pytest.raises(InvalidField, match="labels: must not be empty"):
        store.apply_labels([], caller=ALICE)
    assert store.count_labels() == 0 and store.audit_log()[0] == []


def test_failed_transaction_writes_nothing(store, monkeypatch):
    from raydq.labels.crud import answers

    real = answers.apply_answers

    def broken(**kw):  # the answers are added, then the transaction fails before commit
        real(**kw)
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(answers, "apply_answers", broken)
    with pytest.raises(RuntimeError):
        store.apply_labels([LabelIn(id="a", label="x"), LabelIn(id="b", label="y")], caller=ALICE)
    monkeypatch.undo()
    assert store.count_labels() == 0 and store.revision() == 0 and store.history("a") == []


def test_leases_conflict_expire_and_release(store):
    now = utcnow()
    kw = {"strategy": "random", "model_version": 0, "caller": ALICE}
    store.create_batch(batch_id="b1", item_ids=["x", "y"], expires_at=now + timedelta(seconds=60), **kw)
    with pytest.raises(LeaseConflict) as err:
        store.create_batch(batch_id="b2", item_ids=["y", "z"], expires_at=now + timedelta(seconds=60), **kw)
    assert err.value.item_ids == ["y"]
    assert store.get_batch("b2") is None  # nothing of the refused batch was written
    assert sorted(store.leased_ids()) == ["x", "y"] and store.get_batch("b1").owner == "alice"
    # after expiry the same items can be leased again
    later = now + timedelta(seconds=61)
    assert store.leased_ids(now=later) == []
    store.create_batch(batch_id="b3", item_ids=["y"], expires_at=later + timedelta(seconds=60), now=later, **kw)
    assert store.get_batch("b3", now=later).leased_ids == ["y"]
    # labeling or skipping an item ends its lease; an answered item cannot be leased
    store.apply_labels([LabelIn(id="x", label="cat"), LabelIn(id="s", skip=True)], caller=ALICE)
    for taken in ("x", "s"):
        with pytest.raises(LeaseConflict):
            store.create_batch(batch_id=f"b-{taken}", item_ids=[taken], expires_at=later + timedelta(1), **kw)
    assert store.release_batch("b3", caller=ALICE, now=later) == 1
    assert store.leased_ids(now=later) == []
    assert store.release_batch("b3", caller=ALICE, now=later) == 0  # releasing twice is harmless
    with pytest.raises(NotFound):
        store.release_batch("nope", caller=ALICE)
    with pytest.raises(InvalidField) as err:
        store.create_batch(batch_id="b9", item_ids=["q"], expires_at=now - timedelta(seconds=1), **kw)
    assert err.value.field == ("expires_at",)


def test_concurrent_leasing_never_overlaps(store):
    """Eight threads lease overlapping candidate sets at once: the database lets each item go to one batch only."""
    won: dict[str, list[str]] = {}
    errors: list[Exception] = []

    def worker(n: int) -> None:
        ids = [f"item-{(n * 3 + k) % 20}" for k in range(6)]
        try:
            store.create_batch(
                batch_id=f"t{n}",
                item_ids=ids,
                expires_at=utcnow() + timedelta(seconds=60),
                strategy="random",
                model_version=0,
                caller=ALICE,
            )
            won[f"t{n}"] = ids
        except LeaseConflict:
            pass
        except Exception as e:  # anything else is a bug
            errors.append(e)

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    leased = [i for ids in won.values() for i in ids]
    assert won and len(leased) == len(set(leased))
    assert sorted(store.leased_ids()) == sorted(leased)
    assert len(store.audit_log(action="select")[0]) == len(won)  # refused batches left no audit row


def test_concurrent_label_writers_lose_nothing(store):
    def worker(n: int) -> None:
        for k in range(5):
            store.apply_labels(
                [LabelIn(id=f"w{n}-{k}", label="cat"), LabelIn(id="shared", label=f"c{n}")], caller=ALICE
            )

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    labels = store.training_snapshot().labels
    assert len(labels) == 6 * 5 + 1
    history = store.history("shared")
    assert 6 <= len(history) <= 30 and {e.label for e in history} == {f"c{n}" for n in range(6)}
    assert [e.revision for e in history] == sorted(e.revision for e in history)
    assert history[-1].label == labels["shared"]
