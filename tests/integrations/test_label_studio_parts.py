"""The connector's parts without services: labeling config, reading annotations, settings, signed URLs and the
state file (the whole connector runs against real services in test_label_studio.py)."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from raydq.integrations.label_studio.config import SyncSettings
from raydq.integrations.label_studio.mapping import config_choices, labeling_config, task_answer
from raydq.integrations.label_studio.signing import sign_image, verify_image
from raydq.integrations.label_studio.state import LABELED, OPEN, SyncState

CLASSES = ["T-shirt/top", 'say "cheese"', "A & B <c>", "Ankle boot"]


def _annotation(n: int, updated: str, *, choices=None, cancelled=False, user=3) -> dict:
    result = [] if choices is None else [
        {"from_name": "label", "to_name": "image", "type": "choices", "value": {"choices": choices}}
    ]  # fmt: skip
    return {"id": n, "updated_at": updated, "completed_by": user, "was_cancelled": cancelled, "result": result}


def test_labeling_config_round_trips_any_class_name():
    config = labeling_config(CLASSES)
    assert config_choices(config) == CLASSES  # quotes, ampersands and brackets are escaped
    assert '<Image name="image" value="$image"' in config
    with pytest.raises(ValueError, match="empty"):
        labeling_config([])
    with pytest.raises(ValueError, match="unparsable"):
        config_choices("<View><Choice")


def test_task_answer_takes_the_latest_annotation():
    classes = set(CLASSES)
    assert task_answer({"annotations": []}, classes) is None
    first = _annotation(1, "2026-01-01T10:00:00Z", choices=["Ankle boot"])
    answer = task_answer({"annotations": [first]}, classes)
    assert (answer.label, answer.skip, answer.user_id, answer.key) == ("Ankle boot", False, 3, "1@2026-01-01T10:00:00Z")
    edited = {**_annotation(1, "2026-01-01T11:00:00Z", choices=["A & B <c>"])}
    assert task_answer({"annotations": [edited]}, classes).label == "A & B <c>"  # an edit is a new answer (new key)
    skip = _annotation(2, "2026-01-01T12:00:00Z", cancelled=True, user={"id": 5})
    later = task_answer({"annotations": [first, skip]}, classes)
    assert later.skip and later.label is None and later.user_id == 5
    bad = task_answer({"annotations": [_annotation(4, "2026-01-02", choices=["Cat"])]}, classes)
    assert bad.problem and "not a class" in bad.problem
    none = task_answer({"annotations": [_annotation(5, "2026-01-02", choices=[])]}, classes)
    assert none.problem and "0 choices" in none.problem


def test_settings_environment_over_file_and_flags_over_both(tmp_path, monkeypatch):
    config = tmp_path / "ls.yaml"
    config.write_text("label_studio_url: http://ls:8080\nlabel_studio_token: from-file\nraydq_url: http://r:8000\n"
                      "queue_size: 20\nbatch_size: 5\nimage_urls: raydq\nraydq_public_url: https://raydq.example\n")
    monkeypatch.setenv("RAYDQ_LS_QUEUE_SIZE", "30")
    settings = SyncSettings.load(str(config))
    assert (settings.queue_size, settings.batch_size, settings.label_studio_token) == (30, 5, "from-file")
    assert SyncSettings.load(str(config), queue_size=12).queue_size == 12
    token = tmp_path / "token"
    token.write_text("from-secret\n")
    monkeypatch.setenv("RAYDQ_LS_LABEL_STUDIO_TOKEN_FILE", str(token))
    assert SyncSettings.load(str(config)).label_studio_token == "from-secret"
    with pytest.raises(ValidationError, match="batch_size 40 exceeds queue_size 30"):
        SyncSettings.load(str(config), batch_size=40)
    with pytest.raises(ValidationError, match="image_urls=proxy needs listen_port and public_url"):
        SyncSettings.load(str(config), image_urls="proxy")
    with pytest.raises(ValidationError, match="listen_port needs webhook_secret"):
        SyncSettings.load(str(config), listen_port=0)
    with pytest.raises(ValueError, match="does not exist"):
        SyncSettings.load(str(tmp_path / "missing.yaml"))


def test_signed_image_urls():
    key = b"k" * 32
    sig = sign_image(key, "fashion-mnist/test/000001", 64)
    assert verify_image(key, "fashion-mnist/test/000001", 64, sig)
    assert not verify_image(key, "fashion-mnist/test/000001", 128, sig)  # another size is another URL
    assert not verify_image(key, "fashion-mnist/test/000002", 64, sig)
    assert not verify_image(b"x" * 32, "fashion-mnist/test/000001", 64, sig)


def test_state_survives_a_reopen(tmp_path):
    path = tmp_path / "state.db"
    state = SyncState(path)
    state.add_batch("b1", ["x", "y"], 1e10)
    state.add_batch("b1", ["ignored"], 0)  # recorded once
    state.put_task(7, "x", "b1")
    state.set_status(7, LABELED, "3@t")
    state.put_task(8, "y", "b1")
    state.mark_pushed("b1")
    state.close()
    again = SyncState(path)
    [batch] = again.batches(closed=False)
    assert (batch.item_ids, batch.pushed, batch.closed) == (["x", "y"], True, False)
    assert [(t.task_id, t.status, t.synced_key) for t in again.tasks(batch_id="b1")] == [(7, LABELED, "3@t"),
                                                                                        (8, OPEN, None)]  # fmt: skip
    again.mark_closed("b1")
    assert again.batches(closed=False) == []
    again.put_task(7, "x", "b1")  # the same task again: its sync record is kept
    assert again.tasks()[0].synced_key == "3@t"
    again.put_task(8, "z", "b2")  # Label Studio reused id 8 for another task: a fresh record
    assert [(t.item_id, t.batch_id, t.status, t.synced_key) for t in again.tasks()][1] == ("z", "b2", OPEN, None)
    again.close()


def test_a_refused_batch_id_is_recognised():
    from raydq.client import RaydqError
    from raydq.integrations.label_studio.sync import _names_batch_id

    unknown = [{"loc": ["body", "batch_id"], "msg": "unknown batch_id 'x'", "type": "value_error"}]
    assert _names_batch_id(RaydqError(422, unknown))
    assert not _names_batch_id(RaydqError(422, [{"loc": ["body", "labels", 0, "label"], "msg": "no", "type": "v"}]))
    assert not _names_batch_id(RaydqError(503, unknown)) and not _names_batch_id(RaydqError(422, "text detail"))


def test_duplicate_copies_of_an_item_are_found_and_answered_copies_kept():
    from raydq.integrations.label_studio.mapping import duplicate_tasks

    def task(item: str, batch: str, *, answered: bool = False) -> dict:
        return {"data": {"raydq_id": item, "raydq_batch": batch}, "annotations": [{"id": 1}] if answered else []}

    assert duplicate_tasks({1: task("a", "b"), 2: task("c", "b"), 3: task("a", "b2")}) == []  # another batch
    assert duplicate_tasks({1: task("a", "b"), 2: task("a", "b"), 3: task("a", "b")}) == [2, 3]  # oldest kept
    assert duplicate_tasks({1: task("a", "b"), 2: task("a", "b", answered=True)}) == [1]  # the answered one kept
    both = {1: task("a", "b", answered=True), 2: task("a", "b", answered=True), 3: task("a", "b")}
    assert duplicate_tasks(both) == [3]  # answers are never deleted
