"""``TrainingService``: the head-retraining loop. Plain asyncio (no Ray): the HeadTrainer deployment hosts it, and
so does the in-process app.

``notify(revision)`` says labels changed. One worker task waits ``retrain_delay_s`` (a burst of updates becomes one
training), fetches the training set (labels and their revision read together, embeddings from the pool), fits a
fresh ``LinearHead`` in a thread, checks it, stores it under a version the database allocates (two trainers on one
database never collide) and only then serves it.

A head is served only when it passes ``check_head``: finite weights, at least two classes in its labels, and
accuracy on its own training set of at least ``min_train_accuracy``. A rejected head is stored (marked rejected,
for the record) and the last good head stays; ``/status`` says why. Failed fetches and fits are retried with
exponential backoff (``retry_min_s`` doubling up to ``retry_max_s``) without waiting for another label. An admin may
pin a stored version (roll back); a pinned head is served until unpinned, while training goes on and stores heads.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol

import numpy as np

from raydq.labels import HeadPublic, Identity
from raydq.labels.models import utcnow
from raydq.serve.errors import ServiceError
from raydq.serve.schemas import TrainingStatus
from raydq.serve.snapshots import HeadSnapshot, TrainingSet

log = logging.getLogger(__name__)


class HeadStore(Protocol):
    """Where heads live (the label store): versions allocated by the database, a pin for rollbacks."""

    def save_head(
        self,
        *,
        revision: int,
        n_labels: int,
        classes: list[str],
        payload: dict[str, Any],
        sane: bool,
        reason: str | None,
        now: datetime | None,
    ) -> int: ...
    def latest_good_head(self) -> HeadPublic | None: ...
    def get_head(self, version: int) -> HeadPublic | None: ...
    def pinned_head_version(self) -> int | None: ...
    def pin_head(self, version: int, *, caller: Identity, request_id: str | None) -> None: ...
    def unpin_head(self, *, caller: Identity, request_id: str | None) -> int | None: ...


def snapshot_of(head: HeadPublic | None) -> HeadSnapshot:
    if head is None:
        return HeadSnapshot()
    return HeadSnapshot(
        version=head.version,
        revision=head.revision,
        n_labels=head.n_labels,
        classes=tuple(head.classes),
        trained_at=head.created_at,
        payload=head.payload,
    )


@dataclass(frozen=True)
class TrainingPolicy:
    """How the loop trains and what it accepts."""

    head_params: dict[str, Any]
    seed: int | None = 0
    delay_s: float = 0.5
    min_train_accuracy: float = 0.5
    retry_min_s: float = 0.5
    retry_max_s: float = 60.0


def _newest_sane(store: Any) -> HeadPublic | None:
    """The newest sane head, pinned or not (what is served once an admin unpins)."""
    return next((h for h in store.list_heads() if h.sane), None)  # newest first


def check_head(head: Any, data: TrainingSet, *, min_train_accuracy: float) -> str | None:
    """Why ``head`` must not be served, or None when it may."""
    W, b = head.affine()
    if not (np.isfinite(W).all() and np.isfinite(b).all()):
        return "non-finite weights"
    present = np.unique(data.y)
    if len(present) < 2:
        return f"trained on one class only ({data.classes[int(present[0])]!r}); need at least two"
    accuracy = float((head.predict(np.asarray(data.X, dtype=np.float32)) == data.y).mean())
    if accuracy < min_train_accuracy:
        return f"accuracy {accuracy:.3f} on its own training set is below min_train_accuracy {min_train_accuracy}"
    return None


def fit_head(data: TrainingSet, *, head_params: dict[str, Any], seed: int | None, salt: int) -> Any:
    """A fresh head on ``data``, seeded by ``(seed, salt)`` (the label revision: the same labels, the same head),
    standardized with the pool's statistics."""
    from raydq.head import LinearHead

    rs = None if seed is None else int(np.random.SeedSequence([seed, salt]).generate_state(1)[0])
    head = LinearHead(len(data.classes), random_state=rs, **head_params)
    X, y = np.array(data.X, dtype=np.float32), data.y.astype(np.int64)
    return head.fit(X, y, feature_moments=data.feature_moments)


class TrainingService:
    """Keeps the newest good head and retrains it when labels change."""

    def __init__(
        self, *, store: HeadStore, fetch: Callable[[], Awaitable[TrainingSet]], policy: TrainingPolicy
    ) -> None:
        self.store = store
        self.fetch = fetch
        self.policy = policy
        pinned = store.pinned_head_version()
        self._pinned: HeadSnapshot | None = None if pinned is None else snapshot_of(store.get_head(pinned))
        self._trained = snapshot_of(store.latest_good_head() if pinned is None else _newest_sane(store))
        self._wanted = 0
        self._attempted = max(self._trained.revision, 0)  # revision 0: no labels, nothing to train
        self._state = "idle"
        self._task: asyncio.Task | None = None
        self._last_error: str | None = None
        self._last_error_at: datetime | None = None
        self._rejected: str | None = None
        self._failures = 0
        self._retry_in: float | None = None

    # -- public surface (cheap; called from request handlers) --------------------------------------------------------
    def start(self, revision: int) -> None:
        """Schedule a training when the labels are past the served head (call from a running event loop)."""
        self.notify(revision)

    def notify(self, revision: int) -> int:
        """Labels reached ``revision``; returns the model version served now."""
        self._wanted = max(self._wanted, revision)
        self._ensure_worker()
        return self.snapshot().version

    def snapshot(self) -> HeadSnapshot:
        return self._pinned if self._pinned is not None else self._trained

    def status(self) -> TrainingStatus:
        s = self.snapshot()
        return TrainingStatus(
            state=self._state,
            model_version=s.version,
            trained_revision=s.revision,
            n_labels=s.n_labels,
            trained_at=s.trained_at,
            last_error=self._last_error,
            last_error_at=self._last_error_at,
            failures=self._failures,
            rejected=self._rejected,
            pinned_version=None if self._pinned is None else self._pinned.version,
            next_retry_s=self._retry_in,
        )

    async def pin(self, version: int | None, caller: Identity, request_id: str | None = None) -> TrainingStatus:
        """Serve stored ``version`` from now on (None: serve the newest good head again)."""
        if version is None:
            await asyncio.to_thread(self.store.unpin_head, caller=caller, request_id=request_id)
            self._pinned = None
            return self.status()
        head = await asyncio.to_thread(self.store.get_head, version)
        if head is None:
            raise ServiceError(404, ["body", "version"], f"no stored head with version {version}")
        if not head.sane:
            raise ServiceError(422, ["body", "version"], f"head {version} failed its checks ({head.reason})")
        await asyncio.to_thread(self.store.pin_head, version, caller=caller, request_id=request_id)
        self._pinned = snapshot_of(head)
        return self.status()

    async def wait_idle(self, timeout: float = 60.0) -> int:
        """Until no training is scheduled or running (tests and the demo use this)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self._task is not None and not self._task.done():
            if loop.time() > deadline:
                raise TimeoutError("the head trainer is still busy")
            await asyncio.sleep(0.05)
        return self.snapshot().version

    # -- the worker --------------------------------------------------------------------------------------------------
    def _ensure_worker(self) -> None:
        if self._wanted > self._attempted and (self._task is None or self._task.done()):
            self._state = "scheduled"
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        backoff = self.policy.retry_min_s
        try:
            while self._wanted > self._attempted:
                self._state = "scheduled"
                await asyncio.sleep(self.policy.delay_s)
                self._state = "training"
                try:
                    await self._train_once()
                except Exception as e:  # keep the last good head; say why; retry later without a new label
                    self._failures += 1
                    self._last_error = f"{type(e).__name__}: {e}"
                    self._last_error_at = utcnow()
                    log.warning("head training failed (%s); retrying in %.1fs", self._last_error, backoff)
                    self._state, self._retry_in = "backoff", backoff
                    await asyncio.sleep(backoff)
                    self._retry_in = None
                    backoff = min(backoff * 2, self.policy.retry_max_s)
                    continue
                backoff = self.policy.retry_min_s
        finally:
            self._state = "idle"

    async def _train_once(self) -> None:
        data = await self.fetch()
        if len(data) == 0:
            self._attempted = max(self._attempted, data.revision)
            return
        p = self.policy
        head = await asyncio.to_thread(fit_head, data, head_params=p.head_params, seed=p.seed, salt=data.revision)
        reason = await asyncio.to_thread(check_head, head, data, min_train_accuracy=p.min_train_accuracy)
        payload = head.to_dict()
        trained_at = utcnow()
        version = await asyncio.to_thread(
            self.store.save_head,
            now=trained_at,
            revision=data.revision,
            n_labels=len(data),
            classes=list(data.classes),
            payload=payload,
            sane=reason is None,
            reason=reason,
        )
        self._attempted = max(self._attempted, data.revision)
        self._last_error = None
        if reason is not None:
            self._rejected = f"version {version}: {reason}"
            log.warning("trained head v%d not served: %s", version, reason)
            return
        self._rejected = None
        self._trained = HeadSnapshot(
            version=version,
            revision=data.revision,
            n_labels=len(data),
            classes=tuple(data.classes),
            trained_at=trained_at,
            payload=payload,
        )
        log.info("trained head v%d on %d labels (revision %d)", version, len(data), data.revision)
