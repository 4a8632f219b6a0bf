"""What the connector has done, in a small SQLite file, so a restart neither loses nor repeats work.

- ``selections``: a ``select_batch`` request (its idempotency key and body), written *before* it is sent and
  deleted when its batch is recorded, so a lost answer (raydq killed after it leased the batch, or the connector
  killed before it wrote the batch down) is asked again with the same key and raydq replays the same batch: no
  lease is left without a task.
- ``batches``: every batch selected from raydq, written *before* its tasks are created in Label Studio, so a crash
  between the two leaves a record to finish from (its items are pushed, or the batch released, on restart).
- ``tasks``: Label Studio task id -> raydq item and batch, its status (open | labeled | skipped | deleted) and the
  key (annotation id @ updated_at) of the last answer raydq acknowledged.

Losing the file loses little: the tasks in Label Studio carry their raydq id and batch (they are adopted again) and
raydq's ``update_labels`` is idempotent; only leases of batches whose tasks were all deleted meanwhile wait for expiry.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path

OPEN, LABELED, SKIPPED, DELETED = "open", "labeled", "skipped", "deleted"
DONE = (LABELED, SKIPPED, DELETED)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS selections (
    request_key TEXT PRIMARY KEY,      -- the idempotency key sent with the request
    body TEXT NOT NULL                 -- JSON: select_batch's arguments, sent again as they were
);
CREATE TABLE IF NOT EXISTS batches (
    batch_id TEXT PRIMARY KEY,
    item_ids TEXT NOT NULL,            -- JSON list, in selection order
    lease_expires_at REAL NOT NULL,    -- unix seconds
    pushed INTEGER NOT NULL DEFAULT 0, -- its tasks exist in Label Studio
    closed INTEGER NOT NULL DEFAULT 0  -- every task answered or gone, leftover leases released
);
CREATE TABLE IF NOT EXISTS tasks (
    task_id INTEGER PRIMARY KEY,
    item_id TEXT NOT NULL,
    batch_id TEXT NOT NULL,
    status TEXT NOT NULL,
    synced_key TEXT                    -- annotation id @ updated_at that raydq acknowledged
);
CREATE INDEX IF NOT EXISTS tasks_batch ON tasks (batch_id);
"""


@dataclass(frozen=True)
class TaskRecord:
    task_id: int
    item_id: str
    batch_id: str
    status: str
    synced_key: str | None


@dataclass(frozen=True)
class BatchRecord:
    batch_id: str
    item_ids: list[str]
    lease_expires_at: float
    pushed: bool
    closed: bool


class SyncState:
    """The state file; every method is one committed transaction (safe from the sync loop and the webhook thread)."""

    def __init__(self, path: str | Path) -> None:
        if str(path) != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._lock = threading.Lock()
        with self._lock:
            self._db.executescript(_SCHEMA)

    def close(self) -> None:
        self._db.close()

    def _write(self, sql: str, params: tuple = (), *more: tuple[str, tuple]) -> None:
        """Run one or more statements in one committed transaction."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                for statement, values in ((sql, params), *more):
                    self._db.execute(statement, values)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    # -- selections --------------------------------------------------------------------------------------------------
    def begin_selection(self, request_key: str, body: dict) -> None:
        self._write("INSERT INTO selections (request_key, body) VALUES (?, ?)", (request_key, json.dumps(body)))

    def pending_selections(self) -> list[tuple[str, dict]]:
        """Requests sent (or about to be) whose batch was never recorded, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT request_key, body FROM selections ORDER BY rowid").fetchall()
        return [(key, json.loads(body)) for key, body in rows]

    def drop_selection(self, request_key: str) -> None:
        """Forget a request raydq refused (it leased nothing)."""
        self._write("DELETE FROM selections WHERE request_key = ?", (request_key,))

    # -- batches -----------------------------------------------------------------------------------------------------
    def add_batch(
        self, batch_id: str, item_ids: list[str], lease_expires_at: float, *, request_key: str | None = None
    ) -> None:
        """Record a selected batch and, in the same transaction, close the request that selected it."""
        self._write(
            "INSERT OR IGNORE INTO batches (batch_id, item_ids, lease_expires_at) VALUES (?, ?, ?)",
            (batch_id, json.dumps(item_ids), lease_expires_at),
            ("DELETE FROM selections WHERE request_key = ?", (request_key,)),
        )

    def batches(self, *, closed: bool | None = None) -> list[BatchRecord]:
        sql = "SELECT batch_id, item_ids, lease_expires_at, pushed, closed FROM batches"
        params: tuple = ()
        if closed is not None:
            sql, params = sql + " WHERE closed = ?", (int(closed),)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY rowid", params).fetchall()
        return [BatchRecord(b, json.loads(i), float(e), bool(p), bool(c)) for b, i, e, p, c in rows]

    def mark_pushed(self, batch_id: str) -> None:
        self._write("UPDATE batches SET pushed = 1 WHERE batch_id = ?", (batch_id,))

    def mark_closed(self, batch_id: str) -> None:
        self._write("UPDATE batches SET closed = 1 WHERE batch_id = ?", (batch_id,))

    def set_lease(self, batch_id: str, lease_expires_at: float) -> None:
        self._write("UPDATE batches SET lease_expires_at = ? WHERE batch_id = ?", (lease_expires_at, batch_id))

    # -- tasks -------------------------------------------------------------------------------------------------------
    def put_task(self, task_id: int, item_id: str, batch_id: str) -> None:
        """Record a task. Label Studio on SQLite reuses the id of a deleted newest task for the next one, so a
        known id that now holds another item or batch is a new task: its record starts over (open, nothing synced)."""
        self._write(
            "INSERT INTO tasks (task_id, item_id, batch_id, status) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (task_id) DO UPDATE SET item_id = excluded.item_id, batch_id = excluded.batch_id, "
            "status = excluded.status, synced_key = NULL "
            "WHERE tasks.item_id != excluded.item_id OR tasks.batch_id != excluded.batch_id",
            (task_id, item_id, batch_id, OPEN),
        )

    def tasks(self, *, batch_id: str | None = None) -> list[TaskRecord]:
        sql = "SELECT task_id, item_id, batch_id, status, synced_key FROM tasks"
        params: tuple = ()
        if batch_id is not None:
            sql, params = sql + " WHERE batch_id = ?", (batch_id,)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY task_id", params).fetchall()
        return [TaskRecord(*row) for row in rows]

    def forget_task(self, task_id: int) -> None:
        """Drop a task's record (a duplicate copy the connector deleted: it never held an answer)."""
        self._write("DELETE FROM tasks WHERE task_id = ?", (task_id,))

    def set_status(self, task_id: int, status: str, synced_key: str | None = None) -> None:
        self._write("UPDATE tasks SET status = ?, synced_key = ? WHERE task_id = ?", (status, synced_key, task_id))
