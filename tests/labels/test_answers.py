"""Skips and the text the store refuses, on SQLite and PostgreSQL: a skip is stored, kept in the history, shown to the
selector as "no label", never trained on and never leased; a later label replaces it. NUL characters and lone
surrogates are refused in every text field before they reach the database, with the field's path."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from raydq.labels import Identity, InvalidField, LabelChange, LabelIn
from raydq.labels.models import utcnow
from raydq.labels.text import check_text
from tests.labels.conftest import ADMIN, ALICE, BOB

BAD_TEXT = {"nul": "a\x00b", "surrogate": "a\ud800b"}


def test_skips_are_stored_kept_in_history_and_never_trained(store):
    first = store.apply_labels(
        [LabelIn(id="a", label="cat"), LabelIn(id="b", skip=True, reason="blurry"), LabelIn(id="c", skip=True)],
        caller=ALICE,
    )
    assert (first.received, first.created, first.skipped, first.labeled) == (3, 3, 2, 1)
    b = store.get_label("b")
    assert (b.kind, b.label, b.reason, b.annotator) == ("skip", None, "blurry", "alice")
    assert store.training_snapshot().labels == {"a": "cat"}
    assert store.skipped_ids() == ["b", "c"] and store.count_skipped() == 2 and store.count_labels() == 1
    changes = store.labels_since(0)
    assert changes == [LabelChange("a", "cat", 1), LabelChange("b", None, 1), LabelChange("c", None, 1)]
    assert [c.skipped for c in changes] == [False, True, True]

    same = store.apply_labels([LabelIn(id="b", skip=True, reason="blurry")], caller=BOB)
    assert (same.unchanged, same.revision) == (1, first.revision)  # the same skip again changes nothing
    reason = store.apply_labels([LabelIn(id="b", skip=True, reason="two animals")], caller=BOB)
    assert (reason.updated, reason.revision) == (1, first.revision + 1)
    # a later real label replaces the skip; a skip withdraws a label
    later = store.apply_labels([LabelIn(id="b", label="dog"), LabelIn(id="a", skip=True)], caller=BOB)
    assert (later.updated, later.skipped, later.labeled) == (2, 1, 1)
    assert store.training_snapshot().labels == {"b": "dog"}
    assert store.labels_since(reason.revision) == [LabelChange("a", None, later.revision), LabelChange("b", "dog", 3)]
    assert [(e.kind, e.label, e.reason, e.previous_label, e.annotator) for e in store.history("b")] == [
        ("skip", None, "blurry", None, "alice"),
        ("skip", None, "two animals", None, "bob"),
        ("label", "dog", None, None, "bob"),
    ]
    assert [(e.kind, e.previous_label) for e in store.history("a")] == [("label", None), ("skip", "cat")]
    assert store.skipped_ids() == ["a", "c"]


def test_skipped_items_are_never_leased(store):
    store.apply_labels([LabelIn(id="s", skip=True)], caller=ALICE)
    store.create_batch(
        batch_id="b1",
        item_ids=["t"],
        expires_at=utcnow() + timedelta(seconds=60),
        strategy="random",
        model_version=0,
        caller=ALICE,
    )
    renewed = store.renew_batch("b1", caller=ALICE, seconds=60)
    assert renewed.leased_ids == ["t"]
    store.apply_labels([LabelIn(id="t", skip=True, reason="not an animal")], caller=ALICE, batch_id="b1")
    assert store.leased_ids() == [] and store.renew_batch("b1", caller=ALICE, seconds=60).leased_ids == []


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"id": "x"}, "label is required unless skip is true"),
        ({"id": "x", "skip": True, "label": "cat"}, "a skip carries no label"),
        ({"id": "x", "label": "cat", "reason": "why"}, "reason is for skips only"),
        ({"id": "", "label": "cat"}, "at least 1 character"),
        ({"id": "x", "label": "cat", "colour": "red"}, "Extra inputs are not permitted"),
    ],
)
def test_label_in_refuses_malformed_answers(body, message):
    with pytest.raises(ValidationError, match=message):
        LabelIn.model_validate(body)


@pytest.mark.parametrize("bad", BAD_TEXT.values(), ids=BAD_TEXT.keys())
@pytest.mark.parametrize("field", ["id", "label", "reason", "annotator"])
def test_label_in_refuses_unstorable_text_naming_the_field(field, bad):
    body = {"id": "x", "skip": True} if field == "reason" else {"id": "x", "label": "cat"}
    body[field] = bad
    with pytest.raises(ValidationError) as err:
        LabelIn.model_validate(body)
    (error,) = err.value.errors()
    assert error["loc"] == (field,)
    # pydantic itself refuses a lone surrogate in a str; the NUL is ours
    assert ("NUL" if "\x00" in bad else "unicode") in error["msg"]


@pytest.mark.parametrize("bad", BAD_TEXT.values(), ids=BAD_TEXT.keys())
@pytest.mark.parametrize("field", ["id", "label", "reason", "annotator"])
def test_store_refuses_unstorable_text_before_the_database(store, field, bad):
    """A LabelIn built without validation (``model_construct``) still never reaches the database: PostgreSQL would
    refuse a NUL with a server error, and neither driver can encode a lone surrogate."""
    values = {"id": "x", "label": "cat", "skip": False, "reason": None, "annotator": None}
    if field == "reason":
        values.update(label=None, skip=True)
    values[field] = bad
    good = LabelIn(id="ok", label="dog")
    with pytest.raises(InvalidField) as err:
        store.apply_labels([good, LabelIn.model_construct(**values)], caller=ALICE)
    assert err.value.field == ("labels", 1, field)
    str(err.value).encode("utf-8")  # the message itself is encodable: it does not repeat the value
    assert store.count_labels() == 0 and store.revision() == 0


@pytest.mark.parametrize("bad", BAD_TEXT.values(), ids=BAD_TEXT.keys())
def test_every_entry_point_refuses_unstorable_text(store, bad):
    soon = utcnow() + timedelta(seconds=60)
    batch = {"expires_at": soon, "strategy": "random", "model_version": 0, "caller": ALICE}
    cases = [
        (("caller", "name"), lambda: store.apply_labels([LabelIn(id="x", label="c")], caller=Identity(bad))),
        (("batch_id",), lambda: store.apply_labels([LabelIn(id="x", label="c")], caller=ALICE, batch_id=bad)),
        (("request_id",), lambda: store.apply_labels([LabelIn(id="x", label="c")], caller=ALICE, request_id=bad)),
        (("item_ids", 1), lambda: store.create_batch(batch_id="b", item_ids=["ok", bad], **batch)),
        (("batch_id",), lambda: store.create_batch(batch_id=bad, item_ids=["ok"], **batch)),
        (("strategy",), lambda: store.create_batch(batch_id="b", item_ids=["ok"], **{**batch, "strategy": bad})),
        (("batch_id",), lambda: store.renew_batch(bad, caller=ALICE, seconds=5)),
        (("batch_id",), lambda: store.release_batch(bad, caller=ALICE)),
        (("name",), lambda: store.add_token(bad, caller=ADMIN)),
        (("name",), lambda: store.revoke_token(bad, caller=ADMIN)),
        (("detail", "note"), lambda: store.audit(caller=ADMIN, action="note", detail={"note": bad})),
        (("detail", "k", 1), lambda: store.audit(caller=ADMIN, action="note", detail={"k": ["fine", bad]})),
        (("idempotency_key",), lambda: store.recall(caller=ALICE, key=bad, endpoint="update_labels", request={})),
        (("reason",), lambda: store.save_head(revision=0, n_labels=0, classes=[], payload={}, reason=bad)),
    ]
    for field, call in cases:
        with pytest.raises(InvalidField) as err:
            call()
        assert err.value.field == field, (field, err.value)
    assert store.count_labels() == 0 and store.count_batches() == 0 and store.list_tokens() == []
    assert store.audit_log()[0] == [] and store.list_heads() == []


def test_check_text_limits():
    assert check_text("tab\tand newline\n are fine", ("f",)) == "tab\tand newline\n are fine"
    with pytest.raises(InvalidField, match="f: must not be empty"):
        check_text("", ("f",))
    with pytest.raises(InvalidField, match=r"labels\[2\]\.id: longer than 3 characters"):
        check_text("abcd", ("labels", 2, "id"), max_length=3)
    with pytest.raises(InvalidField, match="must be a string, not int"):
        check_text(5, ("f",))  # type: ignore[arg-type]
    with pytest.raises(InvalidField, match="NUL character at position 1"):
        check_text("a\x00", ("f",))
