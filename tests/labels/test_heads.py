"""Trainer storage on SQLite and PostgreSQL: model versions allocated by the database (two trainers never collide),
sanity verdicts, the newest good head, an admin pin (rollback), retention, and a training snapshot that reads the
labels and their revision atomically while labels are written."""

from __future__ import annotations

import threading

import pytest

from raydq.labels import Forbidden, InvalidField, LabelIn, LabelStore, NotFound
from tests.labels.conftest import ADMIN, ALICE

CLASSES = ["cat", "dog"]


def save(store, *, sane: bool = True, version: int | None = None) -> int:
    return store.save_head(
        revision=1,
        n_labels=2,
        classes=CLASSES,
        payload={"w": [1.0]},
        version=version,
        sane=sane,
        reason=None if sane else "one class",
    )


def test_two_trainers_on_one_database_never_collide(store_url):
    trainers = [LabelStore(store_url), LabelStore(store_url)]
    saved: list[list[int]] = [[], []]
    errors: list[BaseException] = []

    def train(n: int) -> None:
        try:
            for _ in range(10):
                version = trainers[n].allocate_head_version()  # seeds the fit
                saved[n].append(save(trainers[n], version=version))
                saved[n].append(save(trainers[n]))  # or allocated while saving
        except BaseException as e:
            errors.append(e)

    threads = [threading.Thread(target=train, args=(n,)) for n in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        assert not errors
        every = saved[0] + saved[1]
        assert sorted(every) == list(range(1, 41))  # distinct, no gaps (no training failed)
        assert all(v == sorted(v) for v in saved)  # each trainer's versions increase
        assert trainers[0].max_head_version() == 40 and trainers[1].latest_head().version == 40
        assert [h.version for h in trainers[0].list_heads()] == [40, 39, 38, 37, 36]
    finally:
        for t in trainers:
            t.close()


def test_insane_heads_are_kept_but_never_served(store):
    assert store.latest_good_head() is None and store.latest_head() is None and store.max_head_version() == 0
    good = save(store)
    bad = save(store, sane=False)
    assert store.latest_head().version == bad and not store.latest_head().sane
    assert store.latest_head().reason == "one class"
    served = store.latest_good_head()
    assert (served.version, served.sane, served.payload, served.classes) == (good, True, {"w": [1.0]}, CLASSES)
    for _ in range(6):  # many failed trainings: the last good head survives pruning
        save(store, sane=False)
    versions = [h.version for h in store.list_heads()]
    assert good in versions and len(versions) == 6 and store.latest_good_head().version == good
    assert (
        save(store, version=20) == 20 and store.allocate_head_version() == 21
    )  # an explicit version moves the counter


def test_pin_rolls_back_and_unpin_returns_to_the_newest(store):
    v1, v2 = save(store), save(store)
    bad = save(store, sane=False)
    with pytest.raises(Forbidden):
        store.pin_head(v1, caller=ALICE)
    with pytest.raises(NotFound):
        store.pin_head(99, caller=ADMIN)
    with pytest.raises(InvalidField, match="sanity check"):
        store.pin_head(bad, caller=ADMIN)
    store.pin_head(v1, caller=ADMIN)
    assert store.pinned_head_version() == v1 and store.latest_good_head().version == v1
    for _ in range(7):  # newer heads are stored, the pin holds, and the pinned head is never pruned
        save(store)
    assert store.latest_good_head().version == v1 and store.get_head(v1) is not None
    assert store.get_head(v2) is None  # neither among the newest five, nor pinned, nor the newest sane: pruned
    recent = store.list_heads()[2].version
    store.pin_head(recent, caller=ADMIN)
    assert store.latest_good_head().version == recent
    assert store.unpin_head(caller=ADMIN) == recent and store.pinned_head_version() is None
    assert store.latest_good_head().version == store.max_head_version()
    assert store.unpin_head(caller=ADMIN) is None


def test_training_snapshot_is_atomic_while_labels_are_written(store):
    """Each write adds one label and raises the revision by one, so a consistent snapshot at revision r holds
    exactly the r labels written so far (a skip is written beside every fifth and never counted)."""
    stop = threading.Event()
    errors: list[BaseException] = []

    def writer() -> None:
        k = 0
        try:
            while not stop.is_set() and k < 400:
                k += 1
                answers = [LabelIn(id=f"i{k:04d}", label=CLASSES[k % 2])]
                if k % 5 == 0:
                    answers.append(LabelIn(id=f"s{k:04d}", skip=True))
                store.apply_labels(answers, caller=ALICE)
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=writer)
    thread.start()
    snapshots = []
    try:
        while thread.is_alive():  # until all 400 writes are in (a cap on reads once ended it before the first)
            snapshots.append(store.training_snapshot())
    finally:
        stop.set()
        thread.join()
    assert not errors
    assert len({s.revision for s in snapshots}) > 5  # the reads really overlapped the writes
    for s in snapshots:
        assert sorted(s.labels) == [f"i{k:04d}" for k in range(1, s.revision + 1)]
    final = store.training_snapshot()
    assert final.revision == store.revision() and len(final.labels) == final.revision
