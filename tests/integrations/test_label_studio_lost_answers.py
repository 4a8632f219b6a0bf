"""The connector's selections when an answer is lost, against a real raydq (``python -m raydq.serve.local`` on
127.0.0.1): raydq leases a batch, then the answer never reaches the connector (raydq killed as it answered, or the
connector killed before it wrote the batch down). The connector asks again with the same idempotency key, so raydq
replays the batch it leased: every lease ends up with a Label Studio task and none is orphaned.

Label Studio is an in-memory stand-in here (the calls ``sync_once`` makes when nobody annotates); the full round trip
against a real Label Studio, with kills of every side, is test_label_studio.py."""

from __future__ import annotations

import itertools
from typing import Any

import httpx
import pytest

from raydq.client import RaydqClient, RaydqError
from raydq.data.fashion_mnist import CLASS_NAMES
from raydq.integrations.label_studio.config import SyncSettings
from raydq.integrations.label_studio.mapping import ID_FIELD
from raydq.integrations.label_studio.sync import LabelStudioSync
from raydq.labels import LabelStore
from tests.integrations.services import RaydqServer, write_fmnist_store

TOKEN = "raydq-token-for-lost-answers"
QUEUE, BATCH = 8, 4


class TaskList:
    """Label Studio's task list for one project: import, list, delete."""

    def __init__(self) -> None:
        self.tasks: dict[int, dict[str, Any]] = {}
        self._ids = itertools.count(1)

    def import_tasks(self, project_id: int, payloads: list[dict[str, Any]]) -> list[int]:
        ids = [next(self._ids) for _ in payloads]
        self.tasks.update({i: {"id": i, "annotations": [], **p} for i, p in zip(ids, payloads, strict=True)})
        return ids

    def iter_tasks(self, project_id: int, **_: Any):
        yield from list(self.tasks.values())

    def delete_task(self, task_id: int) -> None:
        self.tasks.pop(task_id, None)

    def close(self) -> None:
        pass

    def items(self) -> list[str]:
        return [t["data"][ID_FIELD] for t in self.tasks.values()]


class LosingClient(RaydqClient):
    """A raydq client whose next ``lose`` select_batch answers are lost after raydq has leased the batch."""

    def __init__(self, *args: Any, lose: int, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.lose, self.sent = lose, []

    def select_batch(self, batch_size: int, **kw: Any) -> dict[str, Any]:
        answer = super().select_batch(batch_size, **kw)
        self.sent.append(kw.get("request_id"))
        if self.lose:
            self.lose -= 1
            raise httpx.ReadError("connection closed before the answer arrived")
        return answer


@pytest.fixture
def raydq(tmp_path):
    store, _ = write_fmnist_store(tmp_path / "store", n=40)
    server = RaydqServer(store, tmp_path / "labels.db", token=TOKEN, log=tmp_path / "raydq.log").start()
    yield server
    server.stop()


def connector(raydq: RaydqServer, tmp_path, ls: TaskList, *, lose: int) -> LabelStudioSync:
    settings = SyncSettings(
        label_studio_url="http://127.0.0.1:9", label_studio_token="unused", raydq_url=raydq.url, raydq_token=TOKEN,
        queue_size=QUEUE, batch_size=BATCH, state_path=str(tmp_path / "sync-state.db"),
        image_urls="raydq", raydq_public_url=raydq.url,
    )  # fmt: skip
    sync = LabelStudioSync(settings, raydq=LosingClient(raydq.url, token=TOKEN, lose=lose), ls=ls)  # type: ignore[arg-type]
    sync.project_id, sync.classes = 1, list(CLASS_NAMES)
    return sync


def leased(tmp_path) -> list[str]:
    store = LabelStore(f"sqlite:///{tmp_path / 'labels.db'}")
    try:
        return store.leased_ids()
    finally:
        store.close()


def test_a_lost_select_answer_is_asked_again_and_replayed(raydq, tmp_path):
    ls = TaskList()
    first = connector(raydq, tmp_path, ls, lose=1)
    with pytest.raises(httpx.ReadError):
        first.sync_once()
    assert len(leased(tmp_path)) == BATCH and ls.tasks == {}  # raydq leased a batch the connector never saw
    first.close()  # the connector dies; its successor reads the same state file

    second = connector(raydq, tmp_path, ls, lose=0)
    report = second.sync_once()
    assert second.raydq.sent[0] == first.raydq.sent[0]  # the same request, so the same batch
    assert report.batches_selected == QUEUE // BATCH and len(ls.tasks) == QUEUE
    assert sorted(leased(tmp_path)) == sorted(ls.items())  # every lease has its task, none twice
    assert second.state.pending_selections() == []
    assert second.sync_once().batches_selected == 0  # a full queue: nothing more leased
    second.close()


def test_a_lost_answer_in_the_middle_of_a_refill(raydq, tmp_path):
    """The second batch of a refill is lost: that pass fails after pushing the first; the next pass finishes it."""
    ls = TaskList()
    sync = connector(raydq, tmp_path, ls, lose=0)
    sync.raydq.select_batch = _lose_the_nth(sync.raydq.select_batch, 2)  # type: ignore[method-assign]
    with pytest.raises(httpx.ReadError):
        sync.sync_once()
    assert len(ls.tasks) == BATCH and len(leased(tmp_path)) == 2 * BATCH
    sync.sync_once()
    assert len(ls.tasks) == QUEUE and sorted(leased(tmp_path)) == sorted(ls.items())
    sync.close()


def test_a_refused_selection_is_not_asked_again(raydq, tmp_path):
    """raydq refuses a request (4xx: nothing leased): it is dropped, not sent again on every pass."""
    ls = TaskList()
    sync = connector(raydq, tmp_path, ls, lose=0)
    sync.state.begin_selection("refused-request", {"batch_size": 10_000})
    with pytest.raises(RaydqError) as refused:
        sync.sync_once()
    assert refused.value.status == 422 and sync.state.pending_selections() == []
    assert sync.sync_once().batches_selected == QUEUE // BATCH
    sync.close()


def _lose_the_nth(select_batch, n: int):
    calls = itertools.count(1)

    def wrapped(*args: Any, **kw: Any) -> dict[str, Any]:
        answer = select_batch(*args, **kw)
        if next(calls) == n:
            raise httpx.ReadError("connection closed before the answer arrived")
        return answer

    return wrapped
