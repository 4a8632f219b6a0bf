"""The label store against SQLite and a real PostgreSQL server: idempotent upserts with history, all-or-nothing
updates, leases the database refuses to double-book, batches, heads."""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest

from raydq.labels import LabelIn, LabelStore, LeaseConflict, normalise_url
from raydq.labels.models import utcnow


@pytest.fixture
def store(db_url):
    s = LabelStore(db_url)
    yield s
    s.close()


def test_urls_pick_psycopg3():
    assert normalise_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"


def test_sqlite_is_durable_wal(tmp_path):
    s = LabelStore(f"sqlite:///{tmp_path / 'l.db'}")
    with s.db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    s.close()


def test_idempotent_updates_and_history(store):
    first = store.apply_labels([LabelIn(id="a", label="cat", annotator="ann"), LabelIn(id="b", label="dog")])
    assert (first.created, first.updated, first.unchanged, first.labeled) == (2, 0, 0, 2)
    again = store.apply_labels([LabelIn(id="a", label="cat"), LabelIn(id="b", label="dog")])
    assert (again.created, again.updated, again.unchanged) == (0, 0, 2)
    assert again.revision == first.revision  # nothing changed, so the revision stays
    relabel = store.apply_labels([LabelIn(id="b", label="cat", annotator="bob")], batch_id=None)
    assert (relabel.created, relabel.updated, relabel.revision) == (0, 1, first.revision + 1)
    history = store.history("b")
    assert [(e.label, e.previous_label) for e in history] == [("dog", None), ("cat", "dog")]
    assert history[1].annotator == "bob" and history[1].created_at >= history[0].created_at
    assert len(store.history("a")) == 1
    revision, labels = store.current_labels()
    assert labels == {"a": "cat", "b": "cat"} and revision == relabel.revision
    assert store.get_label("a").annotator == "ann"


def test_duplicate_ids_are_refused_whole(store):
    with pytest.raises(ValueError, match="duplicate"):
        store.apply_labels([LabelIn(id="a", label="x"), LabelIn(id="a", label="y")])
    assert store.count_labels() == 0


def test_failed_transaction_writes_nothing(store, monkeypatch):
    from raydq.labels import crud

    def broken(*, session, **kw):  # the labels are added, then the transaction fails before commit
        crud.apply_labels(session=session, **kw)
        raise RuntimeError("disk on fire")

    monkeypatch.setattr("raydq.labels.store.crud.apply_labels", broken)
    with pytest.raises(RuntimeError):
        store.apply_labels([LabelIn(id="a", label="x"), LabelIn(id="b", label="y")])
    monkeypatch.undo()
    assert store.count_labels() == 0 and store.revision() == 0 and store.history("a") == []


def test_leases_conflict_expire_and_release(store):
    now = utcnow()
    store.create_batch(
        batch_id="b1", item_ids=["x", "y"], expires_at=now + timedelta(seconds=60), strategy="random", model_version=0
    )
    with pytest.raises(LeaseConflict) as err:
        store.create_batch(
            batch_id="b2",
            item_ids=["y", "z"],
            expires_at=now + timedelta(seconds=60),
            strategy="random",
            model_version=0,
        )
    assert err.value.item_ids == ["y"]
    assert store.get_batch("b2") is None  # nothing of the refused batch was written
    assert sorted(store.leased_ids()) == ["x", "y"]
    # after expiry the same items can be leased again
    later = now + timedelta(seconds=61)
    assert store.leased_ids(now=later) == []
    store.create_batch(
        batch_id="b3",
        item_ids=["y"],
        expires_at=later + timedelta(seconds=60),
        strategy="random",
        model_version=0,
        now=later,
    )
    assert store.get_batch("b3", now=later).leased_ids == ["y"]
    # labeling an item ends its lease; a labeled item cannot be leased
    store.apply_labels([LabelIn(id="x", label="cat")])
    with pytest.raises(LeaseConflict):
        store.create_batch(
            batch_id="b4", item_ids=["x"], expires_at=now + timedelta(seconds=60), strategy="random", model_version=0
        )
    assert store.release_batch("b3", now=later) == 1
    assert store.leased_ids(now=later) == []
    assert store.release_batch("b3", now=later) == 0  # releasing twice is harmless
    with pytest.raises(LookupError):
        store.release_batch("nope")


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


def test_concurrent_label_writers_lose_nothing(store):
    def worker(n: int) -> None:
        for k in range(5):
            store.apply_labels([LabelIn(id=f"w{n}-{k}", label="cat"), LabelIn(id="shared", label=f"c{n}")])

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    _, labels = store.current_labels()
    assert len(labels) == 6 * 5 + 1
    history = store.history("shared")
    assert 6 <= len(history) <= 30 and {e.label for e in history} == {f"c{n}" for n in range(6)}
    assert [e.revision for e in history] == sorted(e.revision for e in history)
    assert history[-1].label == labels["shared"]


def test_heads_keep_the_newest(store):
    assert store.latest_head() is None and store.max_head_version() == 0
    for v in range(1, 8):
        store.save_head(version=v, revision=v, n_labels=v, classes=["a", "b"], payload={"v": v})
    head = store.latest_head()
    assert head.version == 7 and head.payload == {"v": 7} and head.classes == ["a", "b"]
    assert store.max_head_version() == 7
