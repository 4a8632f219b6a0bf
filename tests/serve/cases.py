"""The malformed-request table, shared by the in-process and the over-HTTP tests.

Each case: (name, path, body, expected status or None for "any 4xx", text the error must contain). ``body`` is a
JSON-able object or raw bytes (sent as application/json).
"""

from __future__ import annotations

import json
from typing import Any

from tests.serve.helpers import CLASSES


def bad_requests(ids: list[str], *, max_batch_size: int, max_labels: int, max_body: int, pool: int) -> list[tuple]:
    a, b = ids[0], ids[1]
    ok = {"id": a, "label": CLASSES[0]}
    return [
        # select_batch
        ("select missing batch_size", "/select_batch", {}, 422, "batch_size"),
        ("select batch_size string", "/select_batch", {"batch_size": "5"}, 422, "batch_size"),
        ("select batch_size bool", "/select_batch", {"batch_size": True}, 422, "batch_size"),
        ("select batch_size float", "/select_batch", {"batch_size": 2.5}, 422, "batch_size"),
        ("select batch_size zero", "/select_batch", {"batch_size": 0}, 422, "batch_size"),
        ("select batch_size negative", "/select_batch", {"batch_size": -4}, 422, "batch_size"),
        ("select batch_size over max", "/select_batch", {"batch_size": max_batch_size + 1}, 422, "batch_size"),
        ("select batch_size over pool", "/select_batch", {"batch_size": pool + 1}, 422, "batch_size"),
        ("select unknown strategy", "/select_batch", {"batch_size": 2, "strategy": "oracle"}, 422, "strategy"),
        ("select strategy not a string", "/select_batch", {"batch_size": 2, "strategy": 7}, 422, "strategy"),
        ("select unknown option", "/select_batch", {"batch_size": 2, "options": {"bogus": 1}}, 422, "bogus"),
        ("select options not an object", "/select_batch", {"batch_size": 2, "options": [1]}, 422, "options"),
        ("select negative lease", "/select_batch", {"batch_size": 2, "lease_seconds": -1}, 422, "lease_seconds"),
        ("select unknown field", "/select_batch", {"batch_size": 2, "bach_size": 3}, 422, "bach_size"),
        ("select body is a list", "/select_batch", [1, 2], 422, "body"),
        ("select invalid JSON", "/select_batch", b'{"batch_size": ', 422, "json"),
        ("select empty body", "/select_batch", b"", 422, "body"),
        # update_labels
        ("update missing labels", "/update_labels", {}, 422, "labels"),
        ("update empty labels", "/update_labels", {"labels": []}, 422, "labels"),
        ("update labels not a list", "/update_labels", {"labels": "circle"}, 422, "labels"),
        ("update missing label", "/update_labels", {"labels": [{"id": a}]}, 422, "label"),
        ("update missing id", "/update_labels", {"labels": [{"label": CLASSES[0]}]}, 422, "id"),
        ("update label wrong type", "/update_labels", {"labels": [{"id": a, "label": 3}]}, 422, "label"),
        ("update id wrong type", "/update_labels", {"labels": [{"id": 12, "label": CLASSES[0]}]}, 422, "id"),
        (
            "update unknown id",
            "/update_labels",
            {"labels": [ok, {"id": "no-such-item", "label": CLASSES[1]}]},
            422,
            "no-such-item",
        ),
        (
            "update label outside classes",
            "/update_labels",
            {"labels": [ok, {"id": b, "label": "hexagon"}]},
            422,
            "hexagon",
        ),
        ("update duplicate ids", "/update_labels", {"labels": [ok, {"id": a, "label": CLASSES[1]}]}, 422, "duplicate"),
        ("update unknown batch", "/update_labels", {"labels": [ok], "batch_id": "no-such-batch"}, 422, "batch_id"),
        ("update unknown field", "/update_labels", {"labels": [{**ok, "colour": "red"}]}, 422, "colour"),
        (
            "update too many labels",
            "/update_labels",
            {"labels": [{"id": i, "label": CLASSES[0]} for i in ids[: max_labels + 1]]},
            422,
            "max_labels_per_request",
        ),
        (
            "update oversize body",
            "/update_labels",
            {"labels": [ok], "batch_id": None, "pad": "x" * (max_body + 10)},
            413,
            "exceeds",
        ),
        ("update invalid JSON", "/update_labels", b'{"labels": [{"id": "a", "label": "circle"}', 422, "json"),
        # release_batch
        ("release missing batch_id", "/release_batch", {}, 422, "batch_id"),
        ("release batch_id wrong type", "/release_batch", {"batch_id": 5}, 422, "batch_id"),
        ("release unknown batch", "/release_batch", {"batch_id": "no-such-batch"}, 404, "batch_id"),
    ]


def encode(body: Any) -> bytes:
    return body if isinstance(body, bytes) else json.dumps(body).encode()


def state_of(store) -> tuple:
    """Everything a request could change in the label store."""
    revision, labels = store.training_snapshot()
    return revision, labels, sorted(store.leased_ids()), store.count_batches()


def check_refusal(name: str, response, status: int | None, needle: str) -> None:
    assert 400 <= response.status_code < 500, f"{name}: {response.status_code} {response.text[:300]}"
    if status is not None:
        assert response.status_code == status, f"{name}: {response.status_code} {response.text[:300]}"
    assert needle.lower() in response.text.lower(), f"{name}: {needle!r} not in {response.text[:300]}"


def check_malformed_requests(client, args, ids: list[str]) -> None:
    """Posts every case of the table through ``client``; each must be refused and leave the label store as it was."""
    from raydq.labels import LabelStore

    store = LabelStore(args.database_url)
    try:
        before = state_of(store)
        table = bad_requests(
            ids,
            max_batch_size=args.max_batch_size,
            max_labels=args.max_labels_per_request,
            max_body=args.max_body_bytes,
            pool=client.get("/status").json()["unlabeled_available"],
        )
        for name, path, body, status, needle in table:
            r = client.post(path, content=encode(body), headers={"content-type": "application/json"})
            check_refusal(name, r, status, needle)
            assert state_of(store) == before, name
    finally:
        store.close()
