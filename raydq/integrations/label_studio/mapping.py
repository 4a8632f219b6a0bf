"""Pure translation between raydq items/labels and Label Studio projects/tasks/annotations (no I/O)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass
from typing import Any
from xml.sax.saxutils import quoteattr

IMAGE_FIELD = "image"  # the task data key the <Image> tag shows
CHOICES_NAME = "label"  # the <Choices> control's name in annotation results
ID_FIELD = "raydq_id"
BATCH_FIELD = "raydq_batch"


def labeling_config(classes: list[str]) -> str:
    """An image and one single choice per class; skipping uses Label Studio's own skip button
    (``show_skip_button``), which stores a cancelled annotation."""
    if not classes:
        raise ValueError("classes must not be empty")
    choices = "\n".join(f"    <Choice value={quoteattr(c)}/>" for c in classes)
    return (
        "<View>\n"
        f'  <Image name="{IMAGE_FIELD}" value="${IMAGE_FIELD}" zoom="true"/>\n'
        f'  <Choices name="{CHOICES_NAME}" toName="{IMAGE_FIELD}" choice="single-radio" showInLine="true" '
        'required="true">\n'
        f"{choices}\n"
        "  </Choices>\n"
        "</View>"
    )


def config_choices(label_config: str) -> list[str]:
    """The choice values of a project's labeling config (to check an existing project matches the pool)."""
    try:
        root = ET.fromstring(label_config)
    except ET.ParseError as e:
        raise ValueError(f"unparsable labeling config: {e}") from None
    return [c.get("value", "") for c in root.iter("Choice")]


def task_payload(item_id: str, batch_id: str, image_url: str, *, model_version: int, strategy: str) -> dict:
    """One Label Studio task for one leased item; the raydq id and batch travel in the task data."""
    return {
        "data": {
            IMAGE_FIELD: image_url,
            ID_FIELD: item_id,
            BATCH_FIELD: batch_id,
            "raydq_model_version": model_version,
            "raydq_strategy": strategy,
        }
    }


@dataclass(frozen=True)
class Answer:
    """What a task's annotations say: ``label`` (a class) or ``skip``; ``annotation_id`` + ``updated_at`` identify
    the annotation it came from, so a sync can tell an answer it already sent from a new or edited one."""

    annotation_id: int
    updated_at: str
    user_id: int | None
    label: str | None = None
    skip: bool = False
    problem: str | None = None  # an annotation raydq cannot take (no choice, an unknown class)

    @property
    def key(self) -> str:
        return f"{self.annotation_id}@{self.updated_at}"


def _user_id(annotation: dict[str, Any]) -> int | None:
    who = annotation.get("completed_by")
    if isinstance(who, dict):
        who = who.get("id")
    return int(who) if who is not None else None


def task_answer(task: dict[str, Any], classes: set[str]) -> Answer | None:
    """The task's current answer: its most recently updated annotation (a submitted choice beats a skip by the
    same recency rule); None while it has no annotation."""
    annotations = [a for a in task.get("annotations") or [] if a.get("id") is not None]
    if not annotations:
        return None
    latest = max(annotations, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), int(a["id"])))
    base = {
        "annotation_id": int(latest["id"]),
        "updated_at": str(latest.get("updated_at") or latest.get("created_at") or ""),
        "user_id": _user_id(latest),
    }
    if latest.get("was_cancelled"):
        return Answer(**base, skip=True)
    picked = [
        choice
        for r in latest.get("result") or []
        if r.get("type") == "choices" and r.get("from_name") == CHOICES_NAME
        for choice in (r.get("value") or {}).get("choices") or []
    ]
    if len(picked) != 1:
        return Answer(**base, problem=f"annotation {latest['id']} has {len(picked)} choices, expected one")
    if picked[0] not in classes:
        return Answer(**base, problem=f"annotation {latest['id']} chose {picked[0]!r}, not a class")
    return Answer(**base, label=picked[0])


def duplicate_tasks(tasks: dict[int, dict[str, Any]]) -> list[int]:
    """Ids of unannotated extra copies of one item of one batch, oldest copy kept (an annotated copy is kept before
    an unannotated one; annotated copies are never dropped). Copies appear when the connector is killed while
    Label Studio is still importing its tasks: the restarted connector reads the project before that import commits
    and imports the batch again.

    >>> duplicate_tasks({3: {"data": {"raydq_id": "a", "raydq_batch": "b"}, "annotations": []},
    ...                  5: {"data": {"raydq_id": "a", "raydq_batch": "b"}, "annotations": [{"id": 1}]}})
    [3]
    """
    copies: dict[tuple[str, str], list[int]] = {}
    for task_id, task in tasks.items():
        data = task.get("data") or {}
        copies.setdefault((str(data.get(ID_FIELD)), str(data.get(BATCH_FIELD))), []).append(task_id)
    extra: list[int] = []
    for ids in copies.values():
        if len(ids) > 1:
            keep = min(ids, key=lambda t: (not tasks[t].get("annotations"), t))
            extra += [t for t in ids if t != keep and not tasks[t].get("annotations")]
    return sorted(extra)
