"""``HeadTrainerCore``: the head-retraining loop. Plain asyncio (no Ray), run inside the HeadTrainer deployment or
next to a uvicorn app.

``notify(revision)`` says labels changed. A single worker task waits ``retrain_delay_s`` (so a burst of updates
becomes one training), fetches the newest training set, fits a fresh ``LinearHead`` in a thread, stores it in the
label store under the next model version and only then serves it. A failed training keeps the last good head and is
reported by ``status()``. On start the newest stored head is served at once, and a training is scheduled when the
labels moved past it (recovery after a restart).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

import numpy as np

from raydq.labels import LabelStore
from raydq.labels.models import utcnow
from raydq.serve.heads import HeadSnapshot, TrainingSet
from raydq.serve.schemas import TrainingStatus

log = logging.getLogger(__name__)


class HeadTrainerCore:
    """Keeps the newest good head and retrains it when labels change.

    Parameters
    ----------
    store : LabelStore
        Where heads are kept across restarts (and the label revision is read at start).
    fetch : async callable returning a TrainingSet
        The labeled embeddings (the selector holds the pool).
    head_params : dict
        ``LinearHead`` parameters other than ``n_classes`` and ``random_state``.
    seed : int or None
        Training of model version v is seeded with ``(seed, v)``.
    delay_s : float
        Coalescing window after a change.
    """

    def __init__(
        self,
        *,
        store: LabelStore,
        fetch: Callable[[], Awaitable[TrainingSet]],
        head_params: dict[str, Any] | None = None,
        seed: int | None = 0,
        delay_s: float = 0.5,
    ) -> None:
        self.store = store
        self.fetch = fetch
        self.head_params = dict(head_params or {})
        self.seed = seed
        self.delay_s = delay_s
        stored = store.latest_head()
        if stored is not None:
            self._snapshot = HeadSnapshot(
                version=stored.version,
                revision=stored.revision,
                n_labels=stored.n_labels,
                classes=tuple(stored.classes),
                trained_at=stored.created_at,
                payload=stored.payload,
            )
        else:
            self._snapshot = HeadSnapshot(version=store.max_head_version())
        self._wanted = store.revision()
        self._attempted = max(self._snapshot.revision, 0)  # revision 0: no labels, nothing to train
        self._state = "idle"
        self._task: asyncio.Task | None = None
        self._last_error: str | None = None
        self._last_error_at: datetime | None = None
        self._failures = 0

    # -- public surface (all cheap, called from request handlers) ----------------------------------------------------
    def start(self) -> None:
        """Schedule a training if the labels moved past the stored head (call from a running event loop)."""
        self._ensure_worker()

    def notify(self, revision: int) -> None:
        if revision > self._wanted:
            self._wanted = revision
        self._ensure_worker()

    def snapshot(self) -> HeadSnapshot:
        self._ensure_worker()
        return self._snapshot

    def status(self) -> TrainingStatus:
        self._ensure_worker()
        s = self._snapshot
        return TrainingStatus(
            state=self._state,
            model_version=s.version,
            trained_revision=s.revision,
            n_labels=s.n_labels,
            trained_at=s.trained_at,
            last_error=self._last_error,
            last_error_at=self._last_error_at,
            failures=self._failures,
        )

    async def wait_idle(self, timeout: float = 60.0) -> None:
        """Until no training is scheduled or running (tests and the demo use this)."""
        deadline = asyncio.get_running_loop().time() + timeout
        while self._task is not None and not self._task.done():
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError("the head trainer is still busy")
            await asyncio.sleep(0.05)

    # -- the worker --------------------------------------------------------------------------------------------------
    def _ensure_worker(self) -> None:
        if self._wanted > self._attempted and (self._task is None or self._task.done()):
            self._state = "scheduled"
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            while self._wanted > self._attempted:
                self._state = "scheduled"
                await asyncio.sleep(self.delay_s)
                self._state = "training"
                try:
                    data = await self.fetch()
                    self._attempted = max(self._attempted, data.revision)
                    if len(data) == 0:
                        continue
                    version = self._snapshot.version + 1
                    payload = await asyncio.to_thread(self._fit, data, version)
                    trained_at = utcnow()
                    await asyncio.to_thread(
                        self.store.save_head,
                        version=version,
                        revision=data.revision,
                        n_labels=len(data),
                        classes=data.classes,
                        payload=payload,
                        now=trained_at,
                    )
                except Exception as e:  # keep the last good head; say why in /status
                    self._failures += 1
                    self._last_error = f"{type(e).__name__}: {e}"
                    self._last_error_at = utcnow()
                    log.exception("head training failed; keeping model version %d", self._snapshot.version)
                    continue
                self._snapshot = HeadSnapshot(
                    version=version,
                    revision=data.revision,
                    n_labels=len(data),
                    classes=tuple(data.classes),
                    trained_at=trained_at,
                    payload=payload,
                )
                self._last_error = None
                log.info("trained head v%d on %d labels (revision %d)", version, len(data), data.revision)
        finally:
            self._state = "idle"

    def _fit(self, data: TrainingSet, version: int) -> dict[str, Any]:
        from raydq.head import LinearHead

        seed = None if self.seed is None else int(np.random.SeedSequence([self.seed, version]).generate_state(1)[0])
        head = LinearHead(len(data.classes), random_state=seed, **self.head_params)
        head.fit(np.array(data.X, dtype=np.float32), data.y.astype(np.int64))  # a writable copy
        return head.to_dict()
