"""Label export on SQLite and PostgreSQL: keyset pages by (revision, item_id) give every answer exactly once per
change even while a writer adds, relabels and skips; skips are flagged (or left out on request); JSONL and CSV
round-trip any text."""

from __future__ import annotations

import csv
import io
import json
import random
import threading

import pytest

from raydq.labels import ExportRow, InvalidField, LabelIn
from raydq.labels.export import decode_cursor, encode_cursor, write_csv, write_jsonl, write_rows
from tests.labels.conftest import ALICE, BOB


def seed(store, n: int, *, per_request: int = 10) -> None:
    for start in range(0, n, per_request):
        store.apply_labels(
            [LabelIn(id=f"seed-{k:04d}", label="cat") for k in range(start, start + per_request)], caller=ALICE
        )


def test_pages_are_ordered_and_complete(store):
    seed(store, 25, per_request=5)
    store.apply_labels([LabelIn(id="seed-0003", skip=True, reason="two cats")], caller=BOB)
    rows, sizes = [], []
    cursor = None
    while True:
        page, cursor = store.export_labels(cursor=cursor, limit=4)
        rows += page
        sizes.append(len(page))
        if len(page) < 4:
            break
    assert sizes == [4, 4, 4, 4, 4, 4, 1]
    assert len(rows) == 25 and len({r.item_id for r in rows}) == 25
    assert [(r.revision, r.item_id) for r in rows] == sorted((r.revision, r.item_id) for r in rows)
    assert rows[-1].item_id == "seed-0003" and (rows[-1].kind, rows[-1].label, rows[-1].reason) == (
        "skip",
        None,
        "two cats",
    )
    # the last cursor is where to continue: nothing new yet, then exactly what came after
    assert store.export_labels(cursor=cursor, limit=4) == ([], cursor)
    store.apply_labels([LabelIn(id="late", label="dog")], caller=BOB)
    late, after = store.export_labels(cursor=cursor, limit=4)
    assert [r.item_id for r in late] == ["late"] and after != cursor
    assert [r.item_id for r in store.iter_export(page_size=3)] == [r.item_id for r in [*rows, *late]]
    assert [r.item_id for r in store.iter_export(page_size=26)] == [r.item_id for r in [*rows, *late]]
    assert len(list(store.iter_export(include_skips=False))) == 25
    since = store.export_labels(since_revision=4, limit=100)[0]
    assert {r.revision for r in since} == {5, 6, 7} and len(since) == 7
    assert store.export_labels(since_revision=7) == ([], encode_cursor(7, None))


def test_every_answer_once_per_change_while_labels_are_written(store):
    """A writer adds new labels, relabels and skips old ones while a reader pages with small pages and, when it
    reaches the end, polls again from the last revision it saw (as an incremental training pipeline does)."""
    seed(store, 200)
    initial = {r.item_id: r for r in store.iter_export()}
    stop = threading.Event()
    errors: list[BaseException] = []
    changed: set[str] = set()

    def writer() -> None:
        rng = random.Random(0)
        k = 0
        try:
            while not stop.is_set() or k < 40:
                batch = [LabelIn(id=f"new-{k:04d}-{j}", label="dog") for j in range(3)]
                old = rng.sample(sorted(initial), 2)
                batch.append(LabelIn(id=old[0], label=rng.choice(["bird", "fish"])))
                batch.append(LabelIn(id=old[1], skip=True, reason=f"round {k}"))
                changed.update(old)
                store.apply_labels(batch, caller=BOB)
                k += 1
        except BaseException as e:
            errors.append(e)

    thread = threading.Thread(target=writer)
    thread.start()
    seen: list[ExportRow] = []
    cursor, polls = None, 0
    while True:  # the consumer keeps only the cursor, as an incremental training pipeline would
        writer_done = stop.is_set() and not thread.is_alive()  # before the read: a short page after it is the end
        page, cursor = store.export_labels(cursor=cursor, limit=7)
        seen += page
        if len(page) < 7:  # caught up for now
            polls += 1
            if polls == 3:
                stop.set()
            if writer_done:
                break
    thread.join()
    assert not errors

    pairs = [(r.item_id, r.revision) for r in seen]
    assert len(pairs) == len(set(pairs)), "a row came twice"
    last: dict[str, ExportRow] = {}
    for r in seen:
        assert r.item_id not in last or last[r.item_id].revision < r.revision
        last[r.item_id] = r
    current = {r.item_id: r for r in store.iter_export()}
    assert last == current  # every item's newest answer arrived, and nothing else is missing
    for item, row in initial.items():  # a label nobody changed came exactly once
        if item not in changed:
            assert [r for r in seen if r.item_id == item] == [row]
    assert sum(1 for r in current.values() if r.kind == "skip") > 0
    assert len(seen) > len(current)  # the reader did see changes of items it had already read


def test_writers_round_trip_any_text(store):
    store.apply_labels(
        [
            LabelIn(id="plain", label="cat"),
            LabelIn(id='quo"te,comma', label="čáp 🐦"),
            LabelIn(id="multi", skip=True, reason='line one\nline "two", with comma'),
        ],
        caller=ALICE,
    )
    rows = list(store.iter_export())
    jsonl, table = io.StringIO(), io.StringIO()
    assert write_jsonl(rows, jsonl) == 3 and write_rows(rows, table, "csv") == 3
    assert [json.loads(line) for line in jsonl.getvalue().splitlines()] == [r.model_dump(mode="json") for r in rows]
    parsed = list(csv.DictReader(io.StringIO(table.getvalue())))
    expected = [{k: "" if v is None else str(v) for k, v in r.model_dump(mode="json").items()} for r in rows]
    assert parsed == expected
    assert list(parsed[0]) == ["item_id", "kind", "label", "reason", "annotator", "revision", "updated_at"]
    empty = io.StringIO()
    assert write_csv([], empty) == 0 and empty.getvalue().count("\n") == 1  # the header alone
    with pytest.raises(InvalidField, match="format"):
        write_rows(rows, io.StringIO(), "xml")  # type: ignore[arg-type]


def test_bad_cursors_and_bounds_are_refused(store):
    assert decode_cursor(encode_cursor(12, "a:b/c")) == (12, "a:b/c")
    assert decode_cursor(encode_cursor(3, None)) == (3, None)
    bad_cursors = ["", "!!!", encode_cursor(1, "x")[:-3] + "@@@", encode_cursor(-1, None), encode_cursor(True, "x")]
    bad_cursors += ["WzEsMiwzXQ", "eyJhIjoxfQ", "WyIxIiwieCJd"]  # [1,2,3], {"a":1}, ["1","x"]
    for bad in bad_cursors:
        with pytest.raises(InvalidField) as err:
            store.export_labels(cursor=bad)
        assert err.value.field == ("cursor",)
    for bad in (-1, 1.5, True):
        with pytest.raises(InvalidField, match="since_revision"):
            store.export_labels(since_revision=bad)
    for bad in (0, 10_001):
        with pytest.raises(InvalidField, match="limit"):
            store.export_labels(limit=bad)
