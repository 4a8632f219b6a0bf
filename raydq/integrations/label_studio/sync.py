"""The sync loop between raydq and one Label Studio project.

One ``sync_once`` pass, repeated every ``poll_interval_s`` and at once when a webhook arrives:

1. read every task of the project (with annotations); tasks that carry a raydq id are ours (adopted into the state
   if a crash lost them); an unannotated second copy of an item of the same batch (an import still running in
   Label Studio when the connector was killed, committed after its successor read the project) is deleted;
2. send answers raydq has not acknowledged yet: labels through ``update_labels`` with the annotator's Label Studio
   email, skips as skip answers where the service supports them; an answer is marked synced only after raydq
   acknowledged it, and re-sending is harmless (``update_labels`` is idempotent), so a crash or restart of either
   side loses nothing and duplicates nothing;
3. tasks deleted in Label Studio are marked deleted; a batch whose every task is answered or gone has its leftover
   leases released (skipped and deleted items become selectable again);
4. renew the leases of batches with open tasks before they expire (where the service offers ``/renew_batch``);
5. top the queue up: select whole batches while there is room for one, so between ``queue_size - batch_size + 1``
   and ``queue_size`` tasks are open. Each ``select_batch`` carries an idempotency key recorded before it is sent,
   so an answer lost to a crash of either side is asked for again and raydq replays the batch it leased (no lease
   is orphaned); a batch is recorded before its tasks are created, so a crash in between is finished on the next
   pass.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import quote

import httpx

from raydq.client import Capabilities, RaydqClient, RaydqError
from raydq.integrations.label_studio.config import SyncSettings
from raydq.integrations.label_studio.ls_api import LabelStudioClient, LabelStudioError
from raydq.integrations.label_studio.mapping import (
    BATCH_FIELD,
    ID_FIELD,
    Answer,
    config_choices,
    duplicate_tasks,
    labeling_config,
    task_answer,
    task_payload,
)
from raydq.integrations.label_studio.signing import sign_image
from raydq.integrations.label_studio.state import DELETED, DONE, LABELED, OPEN, SKIPPED, SyncState

log = logging.getLogger(__name__)
WEBHOOK_ACTIONS = ["ANNOTATION_CREATED", "ANNOTATION_UPDATED", "ANNOTATIONS_DELETED", "TASKS_DELETED"]
REMOTE_SCHEMES = ("http://", "https://", "s3://", "gs://")


@dataclass
class PassReport:
    """What one sync pass did (logged, and what the tests check)."""

    labels_sent: int = 0
    skips_sent: int = 0
    skips_recorded: int = 0
    deleted: int = 0
    released: int = 0
    renewed: int = 0
    batches_selected: int = 0
    tasks_created: int = 0
    open_tasks: int = 0
    problems: list[str] = field(default_factory=list)


class LabelStudioSync:
    """Keeps one Label Studio project and one raydq service in step (see the module docstring)."""

    def __init__(
        self, settings: SyncSettings, *, raydq: RaydqClient | None = None, ls: LabelStudioClient | None = None
    ) -> None:
        self.settings = settings
        self.raydq = raydq or RaydqClient(settings.raydq_url, token=settings.raydq_token, timeout=60.0)
        self.ls = ls or LabelStudioClient(settings.label_studio_url, settings.label_studio_token or "")
        self.state = SyncState(settings.state_path)
        self.project_id: int | None = None
        self.classes: list[str] = []
        self.capabilities = Capabilities(skip=False, renew=False, item_image=False)
        self._emails: dict[int, str] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._lock = threading.Lock()  # one pass at a time (loop thread and a webhook-triggered pass)

    def close(self) -> None:
        self.state.close()
        self.ls.close()
        self.raydq.close()

    # -- set-up ------------------------------------------------------------------------------------------------------
    def setup(self) -> int:
        """Read raydq's classes and capabilities; create or reuse the project (and its webhook). Idempotent."""
        status = self.raydq.status()
        self.classes = list(status["classes"])
        self.capabilities = self.raydq.capabilities()
        self.project_id = self._ensure_project()
        if self.settings.public_url and self.settings.webhook_secret:
            self._ensure_webhook()
        log.info(
            "label studio project %s (%d classes); raydq skip=%s renew=%s",
            self.project_id, len(self.classes), self.capabilities.skip, self.capabilities.renew,
        )  # fmt: skip
        return self.project_id

    def _ensure_project(self) -> int:
        s = self.settings
        config = labeling_config(self.classes)
        if s.project_id is not None:
            project = self.ls.project(s.project_id)
        else:
            project = next((p for p in self.ls.projects() if p.get("title") == s.project_title), None)
        if project is None:
            project = self.ls.create_project(
                title=s.project_title, label_config=config, show_skip_button=True, maximum_annotations=1,
                description="Active learning with raydq: tasks are chosen by the model and added as you label.",
            )  # fmt: skip
            return int(project["id"])
        if config_choices(project.get("label_config") or "<View/>") != self.classes:
            log.info("project %s: setting its labeling config to raydq's classes", project["id"])
            self.ls.update_project(int(project["id"]), label_config=config, show_skip_button=True)
        return int(project["id"])

    def _ensure_webhook(self) -> None:
        url = self.settings.public_url.rstrip("/") + "/webhook"  # type: ignore[union-attr]
        fields = {
            "project": self.project_id, "url": url, "send_payload": True, "send_for_all_actions": False,
            "is_active": True, "actions": WEBHOOK_ACTIONS,
            "headers": {"Authorization": f"Bearer {self.settings.webhook_secret}"},
        }  # fmt: skip
        existing = [w for w in self.ls.webhooks(self.project_id or 0) if w.get("url") == url]
        if existing:
            self.ls.update_webhook(int(existing[0]["id"]), **fields)
        else:
            self.ls.create_webhook(**fields)

    # -- running -----------------------------------------------------------------------------------------------------
    def poke(self) -> None:
        """Run a pass now (a webhook arrived)."""
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._wake.set()

    def run_forever(self) -> None:
        """Passes every ``poll_interval_s`` (sooner when poked) until ``stop``; an unreachable side is retried."""
        while not self._stop.is_set():
            try:
                if self.project_id is None:
                    self.setup()
                report = self.sync_once()
                if any(v for k, v in vars(report).items() if k != "open_tasks"):
                    log.info("sync: %s", report)
            except (httpx.HTTPError, RaydqError, LabelStudioError) as e:
                log.warning("sync pass failed, retrying in %.0f s: %s", self.settings.poll_interval_s, e)
            self._wake.wait(self.settings.poll_interval_s)
            self._wake.clear()

    def sync_once(self) -> PassReport:
        with self._lock:
            if self.project_id is None:
                self.setup()
            report = PassReport()
            tasks = self._read_tasks()
            self._send_answers(tasks, report)
            self._close_batches(tasks, report)
            self._renew(tasks, report)
            self._refill(tasks, report)
            return report

    # -- 1. reading --------------------------------------------------------------------------------------------------
    def _read_tasks(self) -> dict[int, dict[str, Any]]:
        """Our tasks in Label Studio by id; tasks the state does not know (lost state, crash after import) are
        adopted."""
        ours: dict[int, dict[str, Any]] = {}
        known = {t.task_id: (t.item_id, t.batch_id) for t in self.state.tasks()}
        for task in self.ls.iter_tasks(self.project_id or 0):
            data = task.get("data") or {}
            if ID_FIELD not in data or BATCH_FIELD not in data:
                continue
            task_id, mapping = int(task["id"]), (str(data[ID_FIELD]), str(data[BATCH_FIELD]))
            ours[task_id] = task
            if known.get(task_id) != mapping:  # unknown, or an id Label Studio reused for another task
                self.state.put_task(task_id, *mapping)
        for task_id in duplicate_tasks(ours):
            self.ls.delete_task(task_id)
            self.state.forget_task(task_id)
            del ours[task_id]
            log.info("deleted task %d: a second copy of an item of its batch (an import a crash cut short)", task_id)
        return ours

    def _email(self, user_id: int | None) -> str | None:
        if user_id is None:
            return None
        if user_id not in self._emails:
            try:
                self._emails.update({int(u["id"]): u.get("email") or u.get("username") for u in self.ls.users()})
            except LabelStudioError as e:  # a token without the right to list users
                log.warning("cannot list Label Studio users: %s", e)
        return self._emails.get(user_id) or f"label-studio-user-{user_id}"

    # -- 2. answers --------------------------------------------------------------------------------------------------
    def _send_answers(self, tasks: dict[int, dict[str, Any]], report: PassReport) -> None:
        classes = set(self.classes)
        labels: dict[str, list[tuple[int, Answer, dict[str, Any]]]] = defaultdict(list)
        skips: dict[str, list[tuple[int, Answer, dict[str, Any]]]] = defaultdict(list)
        for record in self.state.tasks():
            task = tasks.get(record.task_id)
            if task is None:
                if record.status != DELETED:
                    self.state.set_status(record.task_id, DELETED, record.synced_key)
                    report.deleted += 1
                continue
            answer = task_answer(task, classes)
            if answer is None:
                if record.status != OPEN:  # its annotations were deleted: open again (raydq keeps the last label)
                    self.state.set_status(record.task_id, OPEN, record.synced_key)
                continue
            if answer.key == record.synced_key:
                continue
            if answer.problem:
                report.problems.append(f"task {record.task_id}: {answer.problem}")
                continue
            entry = {"id": record.item_id, "annotator": self._email(answer.user_id)}
            if answer.skip:
                skips[record.batch_id].append((record.task_id, answer, {**entry, "reason": "skipped in Label Studio"}))
            else:
                labels[record.batch_id].append((record.task_id, answer, {**entry, "label": answer.label}))
        for batch_id, entries in labels.items():
            self._send(batch_id, entries, LABELED, report)
        for batch_id, entries in skips.items():
            if self.capabilities.skip:
                self._send(batch_id, entries, SKIPPED, report)
            else:  # an older service has no skip answer: record it; the batch's lease is released when it closes
                for task_id, answer, _ in entries:
                    self.state.set_status(task_id, SKIPPED, answer.key)
                    report.skips_recorded += 1

    def _send(self, batch_id: str, entries: list[tuple[int, Answer, dict[str, Any]]], status: str,
              report: PassReport) -> None:  # fmt: skip
        """One all-or-nothing update per batch; if raydq refuses it, one by one, so a bad answer blocks only itself.
        A 5xx or an unreachable raydq propagates: the pass is retried and nothing is marked synced."""
        try:
            self._post(batch_id, entries, status)
            self._count(status, len(entries), report)
            return
        except RaydqError as e:
            if e.status >= 500:
                raise
            if len(entries) == 1:
                report.problems.append(f"task {entries[0][0]}: raydq refused {entries[0][2]}: {e}")
                return
        for single in entries:
            try:
                self._post(batch_id, [single], status)
            except RaydqError as e:
                if e.status >= 500:
                    raise
                report.problems.append(f"task {single[0]}: raydq refused {single[2]}: {e}")
                continue
            self._count(status, 1, report)

    def _post(self, batch_id: str, group: list[tuple[int, Answer, dict[str, Any]]], status: str) -> None:
        body = [entry for _, _, entry in group]
        send = self.raydq.skip_items if status == SKIPPED else self.raydq.update_labels
        try:
            send(body, batch_id=batch_id)
        except RaydqError as e:
            if not _names_batch_id(e):
                raise
            # raydq does not know the batch (its database was replaced): the answer still counts, without it
            log.warning("raydq does not know batch %s; sending its answers without it", batch_id)
            send(body, batch_id=None)
        for task_id, answer, _ in group:  # acknowledged: only now is it synced
            self.state.set_status(task_id, status, answer.key)

    @staticmethod
    def _count(status: str, n: int, report: PassReport) -> None:
        if status == SKIPPED:
            report.skips_sent += n
        else:
            report.labels_sent += n

    # -- 3. closing batches ------------------------------------------------------------------------------------------
    def _close_batches(self, tasks: dict[int, dict[str, Any]], report: PassReport) -> None:
        now = time.time()
        for batch in self.state.batches(closed=False):
            records = self.state.tasks(batch_id=batch.batch_id)
            if not batch.pushed:
                continue  # finished by _refill (pushed or released)
            if all(r.status in DONE for r in records):
                if any(r.status != LABELED for r in records) and batch.lease_expires_at > now:
                    try:
                        report.released += self.raydq.release_batch(batch.batch_id)["released"]
                    except RaydqError as e:
                        if e.status != 404:  # 404: raydq does not know it (a replaced database): nothing to release
                            raise
                self.state.mark_closed(batch.batch_id)

    # -- 4. renewing -------------------------------------------------------------------------------------------------
    def _renew(self, tasks: dict[int, dict[str, Any]], report: PassReport) -> None:
        if not self.capabilities.renew:
            return
        horizon = time.time() + self.settings.renew_before_s
        for batch in self.state.batches(closed=False):
            if batch.pushed and batch.lease_expires_at < horizon:
                answer = self.raydq.renew_batch(batch.batch_id, lease_seconds=self.settings.lease_seconds)
                expires = answer.get("lease_expires_at")
                if expires:
                    self.state.set_lease(batch.batch_id, _timestamp(expires))
                report.renewed += 1

    # -- 5. refilling ------------------------------------------------------------------------------------------------
    def _refill(self, tasks: dict[int, dict[str, Any]], report: PassReport) -> None:
        present = {str(t["data"][ID_FIELD]): tid for tid, t in tasks.items()}
        records = {r.task_id: r for r in self.state.tasks()}
        open_tasks = sum(1 for tid, r in records.items() if r.status == OPEN and tid in tasks)
        for request_key, body in self.state.pending_selections():  # its answer was lost: raydq replays the batch
            open_tasks += self._select(request_key, body, present, report)
        for batch in self.state.batches(closed=False):  # a crash between select and import: finish it
            if batch.pushed:
                continue
            if batch.lease_expires_at > time.time():
                open_tasks += self._push(batch.batch_id, batch.item_ids, present, report, model_version=-1,
                                         strategy="")  # fmt: skip
            else:  # its lease ran out: the items may be someone else's now
                self.state.mark_closed(batch.batch_id)
        while open_tasks + self.settings.batch_size <= self.settings.queue_size:  # room for a whole batch
            available = int(self.raydq.status()["unlabeled_available"])
            size = min(self.settings.batch_size, available)
            if size <= 0:
                break
            body: dict[str, Any] = {"batch_size": size, "strategy": self.settings.strategy}
            if self.settings.lease_seconds is not None:
                body["lease_seconds"] = self.settings.lease_seconds
            request_key = uuid.uuid4().hex
            self.state.begin_selection(request_key, body)
            open_tasks += self._select(request_key, body, present, report)
        report.open_tasks = open_tasks

    def _select(self, request_key: str, body: dict[str, Any], present: dict[str, int], report: PassReport) -> int:
        """Send one ``select_batch`` with its idempotency key (recorded before), record the batch and push its tasks;
        returns how many tasks were created. A lost answer (5xx, no connection) leaves the request pending: the next
        pass sends it again and raydq answers with the batch it already leased."""
        try:
            batch = self.raydq.select_batch(**body, request_id=request_key)
        except RaydqError as e:
            if e.status < 500:  # refused: nothing was leased under this key
                self.state.drop_selection(request_key)
            raise
        item_ids = [item["id"] for item in batch["items"]]
        expires = _timestamp(batch["lease_expires_at"])
        self.state.add_batch(batch["batch_id"], item_ids, expires, request_key=request_key)
        report.batches_selected += 1
        if expires <= time.time():  # a replay that came too late: the items may be someone else's now
            self.state.mark_closed(batch["batch_id"])
            return 0
        uris = {item["id"]: item.get("uri") for item in batch["items"]}
        return self._push(
            batch["batch_id"], item_ids, present, report,
            model_version=batch["model_version"], strategy=batch["strategy"], uris=uris,
        )  # fmt: skip

    def _push(self, batch_id: str, item_ids: list[str], present: dict[str, int], report: PassReport, *,
              model_version: int, strategy: str, uris: dict[str, str | None] | None = None) -> int:  # fmt: skip
        """Create the batch's tasks that Label Studio does not hold yet; returns how many were created."""
        todo = [i for i in item_ids if i not in present]
        if todo:
            urls = {i: self.image_url(i, (uris or {}).get(i)) for i in todo}
            payloads = [
                task_payload(i, batch_id, url, model_version=model_version, strategy=strategy)
                for i, url in urls.items()
            ]
            task_ids = self.ls.import_tasks(self.project_id or 0, payloads)
            for item_id, task_id in zip(todo, task_ids, strict=True):
                self.state.put_task(task_id, item_id, batch_id)
                present[item_id] = task_id
        self.state.mark_pushed(batch_id)
        report.tasks_created += len(todo)
        return len(todo)

    def image_url(self, item_id: str, uri: str | None) -> str:
        """The URL Label Studio shows for an item (see ``SyncSettings.image_urls``)."""
        s = self.settings
        if s.image_urls == "source" and uri and uri.startswith(REMOTE_SCHEMES):
            return uri
        if s.image_urls == "raydq":
            base = (s.raydq_public_url or "").rstrip("/")
            return f"{base}/items/{quote(item_id, safe='')}/image?size={s.image_size}"
        if not s.public_url:
            raise ValueError(f"item {item_id!r}: no image URL (image_urls={s.image_urls}, uri={uri!r}, no public_url)")
        sig = sign_image(self.settings.signing_key(), item_id, s.image_size)
        return f"{s.public_url.rstrip('/')}/images/{quote(item_id, safe='')}?size={s.image_size}&sig={sig}"


def _names_batch_id(error: RaydqError) -> bool:
    """A refusal of the request's batch_id (a 4xx whose detail points at it)."""
    detail = error.detail if isinstance(error.detail, list) else []
    return 400 <= error.status < 500 and any("batch_id" in (d.get("loc") or []) for d in detail if isinstance(d, dict))


def _timestamp(value: str) -> float:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
