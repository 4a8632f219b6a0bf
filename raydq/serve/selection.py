"""``SelectionService``: the pool (held by shards), the label mirror, and selection with leases. Plain Python and
asyncio (no Ray of its own), so the Selector deployment, the in-process app and the tests run the same code.

A selection runs on one dedicated thread with a time budget (``select_timeout_s``): the strategy's loops and the
shards check the deadline between chunks and iterations, so work past the budget really stops (504), and a client
that goes away cancels it (the thread stops at the next check and the queue moves on). Waiting selections queue
on an asyncio lock, not on threads, and the queue is bounded (``max_queued_selections``; beyond it 503 with
Retry-After). Lookups (which ids exist, their uris and embeddings) run on their own threads and never wait for a
selection.

The database is the source of truth. Before each selection the mirror applies label changes and the live leases,
and the chosen items are leased in one transaction that re-checks, under the database's write lock, that none was
leased or labeled meanwhile (another replica, another request); on a conflict the selection runs again without them.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import numpy as np

from raydq.deadline import CancellableDeadline, DeadlineExceeded
from raydq.labels import IdempotencyConflict, Identity, LabelStore, LeaseConflict
from raydq.labels.models import utcnow
from raydq.pool import PoolUnavailable, StoreChange
from raydq.serve.config import ServeArgs
from raydq.serve.errors import ServiceError, unavailable
from raydq.serve.mirror import PoolState
from raydq.serve.options import build_strategy
from raydq.serve.schemas import Item, SelectBatchRequest, SelectBatchResponse
from raydq.serve.snapshots import HeadSnapshot, ItemRef, TrainingSet
from raydq.strategies import STRATEGIES

log = logging.getLogger(__name__)
_LEASE_RETRIES = 5


def probe_kmeans_backend() -> str:
    """The k-means backend this process uses (probed once; a probe that fails says why in /status)."""
    try:
        from raydq.cluster import kmeans_backend_name

        return kmeans_backend_name()
    except Exception as e:
        return f"unavailable ({type(e).__name__}: {e})"[:200]


def resolve_classes(args: ServeArgs, manifest: Any) -> list[str]:
    if args.classes is not None:
        return list(args.classes)
    if manifest is not None and manifest.class_names:
        return list(manifest.class_names)
    raise ValueError("classes: not configured and the embedding manifest has no class_names")


class SelectionService:
    """Selection and leasing against one pool and one label store."""

    def __init__(self, args: ServeArgs, *, store: LabelStore, pool: Any) -> None:
        self.args = args
        self.store = store
        self.pool = pool
        self.class_names = resolve_classes(args, pool.manifest)
        self.state = PoolState(self.class_names, skip_excludes=args.skip_excludes)
        for name in (args.default_strategy, args.cold_start):
            if name not in STRATEGIES:
                raise ValueError(f"strategy {name!r} is not registered; choose one of {sorted(STRATEGIES)}")
        self._head_cache: tuple[int, Any] = (-1, None)
        self._salt = int(np.random.SeedSequence().entropy)  # stands in for the seed when the service has none
        self._select_thread = ThreadPoolExecutor(1, thread_name_prefix="raydq-select")
        self._lookup_threads = ThreadPoolExecutor(4, thread_name_prefix="raydq-lookup")
        self._select_lock: asyncio.Lock | None = None
        self._queued = 0
        self.tally = {"completed": 0, "refused": 0, "timed_out": 0, "cancelled": 0, "running": 0}
        self.state.refresh(store, pool)
        self._kmeans_backend = probe_kmeans_backend()  # here, in the process that clusters (and warms cuML up)

    # -- async surface -------------------------------------------------------------------------------------------
    async def select_batch(
        self,
        req: SelectBatchRequest,
        head: HeadSnapshot,
        *,
        caller: Identity,
        idempotency_key: str | None = None,
        request_id: str | None = None,
    ) -> SelectBatchResponse:
        """One batch, within ``select_timeout_s``; queued behind at most ``max_queued_selections`` others."""
        if self._select_lock is None:
            self._select_lock = asyncio.Lock()
        if self._queued >= self.args.max_queued_selections:
            raise unavailable(
                f"{self._queued} selections are queued (max_queued_selections); try again shortly",
                retry_after_s=min(self.args.select_timeout_s, 5.0),
            )
        self._queued += 1
        try:
            try:
                await asyncio.wait_for(self._select_lock.acquire(), timeout=self.args.select_timeout_s)
            except TimeoutError:
                raise unavailable("the selection queue did not move within select_timeout_s", retry_after_s=5) from None
        finally:
            self._queued -= 1
        try:
            deadline = CancellableDeadline.after(self.args.select_timeout_s)
            loop = asyncio.get_running_loop()
            work = loop.run_in_executor(
                self._select_thread, self._select_sync, req, head, caller, idempotency_key, request_id, deadline
            )
            self.tally["running"] = 1
            try:
                response = await asyncio.shield(work)
            except asyncio.CancelledError:  # the client went away: stop the work, then free the queue
                deadline.cancel()
                await asyncio.gather(work, return_exceptions=True)
                self.tally["cancelled"] += 1
                raise
            self.tally["completed"] += 1
            return response
        except ServiceError:
            self.tally["refused"] += 1
            raise
        except PoolUnavailable as e:
            raise unavailable(f"the pool is not available: {e}", retry_after_s=e.retry_after_s, loc=["pool"]) from None
        except DeadlineExceeded:
            self.tally["timed_out"] += 1
            raise ServiceError(
                504,
                ["service"],
                f"selection stopped after select_timeout_s={self.args.select_timeout_s:g}s; ask for a smaller batch "
                "or cheaper options",
                "timeout",
            ) from None
        finally:
            self.tally["running"] = 0
            self._select_lock.release()

    async def _on_lookup_thread(self, fn, *args):
        """Run ``fn`` on the lookup threads (never behind a selection); a pool that is reloading is a 503."""
        try:
            return await asyncio.get_running_loop().run_in_executor(self._lookup_threads, fn, *args)
        except PoolUnavailable as e:
            raise unavailable(f"the pool is not available: {e}", retry_after_s=e.retry_after_s, loc=["pool"]) from None

    async def resolve(self, ids: list[str]) -> list[ItemRef | None]:
        """Row and uri of each id (None for an id the pool does not hold)."""
        return await self._on_lookup_thread(self.resolve_sync, ids)

    async def training_set(self) -> TrainingSet:
        return await self._on_lookup_thread(self.training_set_sync)

    async def counts(self) -> dict[str, Any]:
        return await self._on_lookup_thread(self.counts_sync)

    async def classes(self) -> list[str]:
        return list(self.class_names)

    async def kmeans_backend(self) -> str:
        return self._kmeans_backend

    async def pool_status(self) -> dict[str, Any]:
        return await self._on_lookup_thread(self.pool_status_sync)

    async def refresh_pool(self) -> dict[str, Any]:
        return await self._on_lookup_thread(self.refresh_pool_sync)

    def close(self) -> None:
        self._select_thread.shutdown(wait=False, cancel_futures=True)
        self._lookup_threads.shutdown(wait=False, cancel_futures=True)

    # -- sync work ----------------------------------------------------------------------------------------------
    def resolve_sync(self, ids: list[str]) -> list[ItemRef | None]:
        rows = self.pool.lookup(ids)
        known = np.flatnonzero(rows >= 0)
        out: list[ItemRef | None] = [None] * len(ids)
        for n, (item_id, uri) in zip(known.tolist(), self.pool.describe(rows[known]), strict=True):
            out[n] = ItemRef(id=item_id, row=int(rows[n]), uri=uri)
        return out

    def training_set_sync(self) -> TrainingSet:
        revision, rows, y = self.state.training_rows(self.store, self.pool)
        X = self.pool.embeddings(rows) if len(rows) else np.zeros((0, self.pool.dim), np.float32)
        moments = self.pool.feature_moments() if len(rows) else None
        return TrainingSet(revision=revision, classes=tuple(self.class_names), X=X, y=y, feature_moments=moments)

    def counts_sync(self) -> dict[str, Any]:
        revision = self.state.refresh(self.store, self.pool)
        manifest = self.pool.manifest
        return {
            "pool_size": self.pool.n_rows,
            "dim": self.pool.dim,
            **self.state.counts(self.pool.n_rows),
            "classes": list(self.class_names),
            "revision": revision,
            "database": self.store.dialect,
            "embedding_model": manifest.model if manifest else None,
            "selections": {**self.tally, "queued": self._queued},
        }

    def pool_status_sync(self) -> dict[str, Any]:
        """The pool as ``/status`` shows it: size, store version, shards and whether each answers."""
        s = self.pool.status()
        shards = s["shards"]
        return {
            "rows": s["pool_size"],
            "dim": s["dim"],
            "dtype": s["dtype"],
            "shards": len(shards),
            "store_version": s["store_version"],
            "generation": s["generation"],
            "location": s["store"],
            "state": "ready" if all(x.get("state") == "ready" for x in shards) else "degraded",
            "detail": shards,
        }

    def refresh_pool_sync(self) -> dict[str, Any]:
        """Pick up embeddings appended to the store (new rows become selectable and labelable at once)."""
        change = self.pool.refresh()
        if change == StoreChange.APPENDED:
            self.state.regrow(self.pool)
        elif change == StoreChange.RELOADED:  # rows were renumbered: map every answer and lease again
            self.state.reset(self.pool)
        if change != StoreChange.UNCHANGED:
            self.state.refresh(self.store, self.pool)
            log.info("pool %s: %d rows (store version %s)", change, self.pool.n_rows, self.pool.store_version)
        return self.pool_status_sync()

    def _lease(
        self,
        response: SelectBatchResponse,
        req: SelectBatchRequest,
        caller: Identity,
        key: str | None,
        request_id: str | None,
        now: Any,
    ) -> SelectBatchResponse | None:
        """Lease the batch and, with an idempotency key, remember the response, in one transaction. Returns the
        response a concurrent retry with the same key already stored (then nothing new is leased)."""
        body = req.model_dump(mode="json", exclude={"request_id"})
        try:
            with self.store.transaction(now=now) as tx:
                if key is not None:
                    stored = tx.recall(caller=caller, key=key, endpoint="select_batch", request=body)
                    if stored is not None:
                        return SelectBatchResponse.model_validate(stored)
                tx.create_batch(
                    batch_id=response.batch_id,
                    item_ids=[x.id for x in response.items],
                    expires_at=response.lease_expires_at,
                    strategy=response.strategy,
                    model_version=response.model_version,
                    caller=caller,
                    request_id=request_id,
                )
                if key is not None:
                    tx.remember(
                        caller=caller,
                        key=key,
                        endpoint="select_batch",
                        request=body,
                        response=response.model_dump(mode="json"),
                    )
        except IdempotencyConflict:
            raise ServiceError(
                409, ["header", "Idempotency-Key"], "this key was used for a different select_batch request", "conflict"
            ) from None
        return None

    def _head(self, snapshot: HeadSnapshot | None) -> tuple[int, Any]:
        if snapshot is None or snapshot.payload is None or tuple(snapshot.classes) != tuple(self.class_names):
            return 0, None
        if self._head_cache[0] != snapshot.version:
            from raydq.head import LinearHead

            head = LinearHead.from_dict(snapshot.payload)
            if getattr(head, "n_features_in_", self.pool.dim) != self.pool.dim:
                return 0, None
            self._head_cache = (snapshot.version, head)
        return self._head_cache

    def _seed(self, *parts: int) -> int:
        """A 32-bit seed from the service seed and ``parts`` (a per-process random salt when the service has none)."""
        entropy = self._salt if self.args.seed is None else self.args.seed
        return int(np.random.SeedSequence([entropy, *parts]).generate_state(1)[0])

    def _select_sync(
        self,
        req: SelectBatchRequest,
        head_snapshot: HeadSnapshot | None,
        caller: Identity,
        idempotency_key: str | None,
        request_id: str | None,
        deadline: CancellableDeadline,
    ) -> SelectBatchResponse:
        if req.batch_size > self.args.max_batch_size:
            raise ServiceError(
                422,
                ["body", "batch_size"],
                f"batch_size {req.batch_size} exceeds max_batch_size {self.args.max_batch_size}",
            )
        lease_seconds = float(req.lease_seconds if req.lease_seconds is not None else self.args.lease_seconds)
        if lease_seconds > self.args.max_lease_seconds:
            raise ServiceError(
                422, ["body", "lease_seconds"], f"lease_seconds exceeds max_lease_seconds {self.args.max_lease_seconds}"
            )
        version, head = self._head(head_snapshot)
        requested = req.strategy or self.args.default_strategy
        # Options are checked against the strategy that was asked for, even when the cold start runs instead.
        strategy = build_strategy(requested, req.options, args=self.args, seed=None)
        for _ in range(_LEASE_RETRIES):
            deadline.check()
            self.state.refresh(self.store, self.pool)  # a conflict's winners committed: their leases show up here
            available = self.state.counts(self.pool.n_rows)["unlabeled_available"]
            if req.batch_size > available:
                raise ServiceError(
                    422,
                    ["body", "batch_size"],
                    f"batch_size {req.batch_size} exceeds the {available} unlabeled items not leased now",
                )
            n_labeled = len(self.state.labeled) + len(self.state.foreign)
            name = requested
            if (req.strategy is None and n_labeled == 0) or (strategy.needs_head and head is None):
                name = self.args.cold_start
                chosen = build_strategy(name, {}, args=self.args, seed=None)
            else:
                chosen = strategy
            n_batches = self.store.count_batches()
            if hasattr(chosen, "pass_seed") and chosen.pass_seed is None:
                chosen.pass_seed = self._seed(version, 1)  # phase 1 is reused until the next head version
            try:
                selection = chosen.select(
                    self.pool.shards,
                    batch_size=req.batch_size,
                    head=head if chosen.needs_head else None,
                    seed=self._seed(n_batches, 2),
                    deadline=deadline,
                )
            except ValueError as e:
                raise ServiceError(422, ["body", "options"], f"{name} refused the query: {e}") from None
            rows = np.asarray(selection.rows, dtype=np.int64)
            items = [Item(id=i, uri=u) for i, u in self.pool.describe(rows)]
            now = utcnow()
            expires = now + timedelta(seconds=lease_seconds)
            response = SelectBatchResponse(
                batch_id=uuid.uuid4().hex,
                items=items,
                model_version=version,
                strategy=name,
                lease_expires_at=expires,
                selection={k: v for k, v in selection.info.items() if isinstance(v, int | float | str | bool)},
            )
            try:
                stored = self._lease(response, req, caller, idempotency_key, request_id, now)
            except LeaseConflict as e:  # another replica leased or labeled some of them meanwhile
                log.info("lease conflict on %d items; selecting again", len(e.item_ids))
                continue
            return stored if stored is not None else response
        raise ServiceError(409, ["body", "batch_size"], "items kept being leased concurrently; try again")
