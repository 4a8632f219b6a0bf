"""``Endpoints``: what the service does for each request, whichever process it runs in.

The routes (``raydq.serve.api``) call this object with the authenticated caller. It talks to the label store
directly (label writes, batches, items, export, audit, idempotency: all in this process, so they never wait on a
selection) and to two ports: the selector (selection, and which ids the pool holds) and the trainer (the served
head). In one process the ports are the services themselves (``raydq.serve.inprocess``); under Ray Serve they are
deployment handles (``raydq.serve.app``). One implementation of every endpoint either way.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Protocol

from raydq.labels import LabelStore
from raydq.serve.config import ServeArgs
from raydq.serve.errors import ServiceError
from raydq.serve.identity import Authenticator, Caller
from raydq.serve.options import describe_strategies
from raydq.serve.schemas import (
    BatchInfo,
    BatchList,
    ItemResponse,
    LabelEventOut,
    LeaseNote,
    ModelResponse,
    PoolStatus,
    Readiness,
    ReleaseBatchRequest,
    ReleaseBatchResponse,
    RenewBatchRequest,
    RenewBatchResponse,
    SelectBatchRequest,
    SelectBatchResponse,
    StatusResponse,
    TrainingStatus,
    UpdateLabelsRequest,
    UpdateLabelsResponse,
)
from raydq.serve.snapshots import HeadSnapshot, ItemRef

log = logging.getLogger(__name__)
TRAINER_TIMEOUT_S = 5.0  # a label write waits at most this long to tell the trainer; the labels are committed already


class SelectorPort(Protocol):
    async def select_batch(
        self, req: SelectBatchRequest, head: HeadSnapshot, *, caller: str, idempotency_key: str | None
    ) -> SelectBatchResponse: ...
    async def resolve(self, ids: list[str]) -> list[ItemRef | None]: ...
    async def counts(self) -> dict[str, Any]: ...
    async def pool_status(self) -> dict[str, Any]: ...
    async def refresh_pool(self) -> dict[str, Any]: ...
    async def kmeans_backend(self) -> str: ...
    async def classes(self) -> list[str]: ...


class TrainerPort(Protocol):
    async def notify(self, revision: int) -> int: ...
    async def head(self) -> HeadSnapshot: ...
    async def status(self) -> TrainingStatus: ...
    async def pin(self, version: int | None) -> TrainingStatus: ...


class Endpoints:
    """The ``Backend`` of ``raydq.serve.api``."""

    def __init__(
        self,
        args: ServeArgs,
        *,
        store: LabelStore,
        selector: SelectorPort,
        trainer: TrainerPort,
        authenticator: Authenticator,
    ) -> None:
        self.args = args
        self.store = store
        self.selector = selector
        self.trainer = trainer
        self.authenticator = authenticator
        self._classes: list[str] | None = None
        self._class_set: frozenset[str] = frozenset()
        self._last_version = 0

    async def classes(self) -> list[str]:
        if self._classes is None:
            self._classes = list(await self.selector.classes())
            self._class_set = frozenset(self._classes)
        return self._classes

    async def _db(self, fn, /, *args, **kwargs):
        return await asyncio.to_thread(fn, *args, **kwargs)

    # -- labeling -------------------------------------------------------------------------------------------------------
    async def select_batch(self, req: SelectBatchRequest, caller: Caller, key: str | None) -> SelectBatchResponse:
        if key is not None:
            recalled = await self._db(self.store.recall, caller=caller.name, key=key, endpoint="select_batch",
                                      request=req.model_dump_json(exclude={"request_id"}))  # fmt: skip
            if recalled is not None:
                return SelectBatchResponse.model_validate(recalled)
        head = await self.trainer.head()
        return await self.selector.select_batch(req, head, caller=caller.name, idempotency_key=key)

    async def update_labels(self, req: UpdateLabelsRequest, caller: Caller, key: str | None) -> UpdateLabelsResponse:
        request_text = req.model_dump_json(exclude={"request_id"})
        if key is not None:
            recalled = await self._db(
                self.store.recall, caller=caller.name, key=key, endpoint="update_labels", request=request_text
            )
            if recalled is not None:
                return UpdateLabelsResponse.model_validate({**recalled, "model_version": self._last_version})
        await self._validate_labels(req, caller)
        counts = await self._db(
            self.store.apply_answers,
            [a.model_dump() for a in req.labels],
            caller=caller.name,
            batch_id=req.batch_id,
            idempotency=None if key is None else (key, request_text),
        )
        trainer = "notified"
        try:
            self._last_version = await asyncio.wait_for(self.trainer.notify(counts.revision), TRAINER_TIMEOUT_S)
        except Exception as e:  # the labels are committed: say so, never a 5xx; training catches up on its own
            log.warning("trainer unreachable after a committed label write (%s: %s)", type(e).__name__, e)
            trainer = "unreachable"
        return UpdateLabelsResponse(
            received=counts.received,
            created=counts.created,
            updated=counts.updated,
            unchanged=counts.unchanged,
            skipped=counts.skipped,
            labeled=counts.labeled,
            revision=counts.revision,
            model_version=self._last_version,
            lease_notes=[LeaseNote(id=i, reason=r) for i, r in counts.lease_notes],
            trainer=trainer,
        )

    async def _validate_labels(self, req: UpdateLabelsRequest, caller: Caller) -> None:
        """Refuse the whole request on the first bad answer (422 naming it); nothing is written before this passes."""
        if len(req.labels) > self.args.max_labels_per_request:
            raise ServiceError(
                422,
                ["body", "labels"],
                f"{len(req.labels)} labels exceed max_labels_per_request {self.args.max_labels_per_request}",
            )
        classes = await self.classes()
        seen: dict[str, int] = {}
        for n, x in enumerate(req.labels):
            if x.annotator is not None and not caller.is_admin:
                raise ServiceError(
                    403, ["body", "labels", n, "annotator"], "only an admin token may name the annotator (imports)"
                )
            if x.id in seen:
                raise ServiceError(
                    422, ["body", "labels", n, "id"], f"duplicate id {x.id!r} (also at labels[{seen[x.id]}])"
                )
            seen[x.id] = n
            if x.label is not None and x.label not in self._class_set:
                raise ServiceError(422, ["body", "labels", n, "label"], f"label {x.label!r} is not a class; classes: {classes}")
        refs = await self.selector.resolve(list(seen))
        for (item_id, n), ref in zip(seen.items(), refs, strict=True):
            if ref is None:
                raise ServiceError(422, ["body", "labels", n, "id"], f"unknown id {item_id!r}: not in the pool")
        if req.batch_id is not None and not await self._db(self.store.batch_exists, req.batch_id):
            raise ServiceError(422, ["body", "batch_id"], f"unknown batch_id {req.batch_id!r}")

    async def release_batch(self, req: ReleaseBatchRequest, caller: Caller) -> ReleaseBatchResponse:
        released = await self._db(self._owned(self.store.release_batch), req.batch_id, caller)
        return ReleaseBatchResponse(batch_id=req.batch_id, released=released)

    async def renew_batch(self, req: RenewBatchRequest, caller: Caller) -> RenewBatchResponse:
        seconds = float(req.lease_seconds if req.lease_seconds is not None else self.args.lease_seconds)
        if seconds > self.args.max_lease_seconds:
            raise ServiceError(
                422, ["body", "lease_seconds"], f"lease_seconds exceeds max_lease_seconds {self.args.max_lease_seconds}"
            )
        renewed, expires = await self._db(self._owned(self.store.renew_batch), req.batch_id, caller, seconds=seconds)
        return RenewBatchResponse(batch_id=req.batch_id, renewed=renewed, lease_expires_at=expires)

    def _owned(self, fn):
        """Run a batch operation as ``caller``: 404 for an unknown batch, 403 for someone else's (unless admin)."""

        def call(batch_id: str, caller: Caller, **kwargs):
            batch = self.store.get_batch(batch_id)
            if batch is None:
                raise ServiceError(404, ["body", "batch_id"], f"unknown batch_id {batch_id!r}")
            if batch.owner not in (None, caller.name) and not caller.is_admin:
                raise ServiceError(403, ["body", "batch_id"], f"batch {batch_id!r} belongs to {batch.owner!r}")
            return fn(batch_id, caller=caller.name, **kwargs)

        return call

    async def batches(self, caller: Caller, *, open_only: bool, annotator: str | None) -> BatchList:
        owner = None if annotator == "*" else (annotator or caller.name)
        rows = await self._db(self.store.list_batches, owner=owner, open_only=open_only)
        return BatchList(batches=[BatchInfo.model_validate(b, from_attributes=True) for b in rows])

    # -- items ----------------------------------------------------------------------------------------------------------
    async def _ref(self, item_id: str) -> ItemRef:
        (ref,) = await self.selector.resolve([item_id])
        if ref is None:
            raise ServiceError(404, ["path", "item_id"], f"unknown id {item_id!r}: not in the pool")
        return ref

    async def item(self, item_id: str) -> ItemResponse:
        ref = await self._ref(item_id)
        current, history, leased = await asyncio.gather(
            self._db(self.store.get_label, item_id),
            self._db(self.store.history, item_id),
            self._db(self.store.is_leased, item_id),
        )
        return ItemResponse(
            id=ref.id,
            uri=ref.uri,
            row=ref.row,
            label=None if current is None or current.skipped else current.label,
            skipped=bool(current is not None and current.skipped),
            annotator=None if current is None else current.annotator,
            labeled_at=None if current is None else current.updated_at,
            leased=leased,
            history=[LabelEventOut.model_validate(e, from_attributes=True) for e in history],
        )

    async def item_image(self, item_id: str, size: int | None) -> tuple[bytes, str]:
        from raydq.data.images import ImageUnavailable, read_item_image

        ref = await self._ref(item_id)
        if ref.uri is None:
            raise ServiceError(404, ["path", "item_id"], f"item {item_id!r} has no image source in the store")
        try:
            return await asyncio.to_thread(read_item_image, ref.uri, size=size)
        except ImageUnavailable as e:
            raise ServiceError(e.status, ["path", "item_id"], f"cannot read the image of {item_id!r}: {e}") from None

    async def export_labels(
        self, *, since_revision: int, cursor: str | None, limit: int, fmt: str
    ) -> tuple[bytes, str | None, int]:
        try:
            page = await self._db(self.store.export_labels, since_revision=since_revision, cursor=cursor, limit=limit)
        except ValueError as e:
            raise ServiceError(422, ["query", "cursor"], str(e)) from None
        from raydq.labels.export import render

        return render(page.rows, fmt), page.next_cursor, page.revision

    # -- service ---------------------------------------------------------------------------------------------------------
    async def strategies(self) -> dict[str, Any]:
        return describe_strategies(self.args)

    async def status(self) -> StatusResponse:
        counts, training, pool, backend = await asyncio.gather(
            self.selector.counts(), self.trainer.status(), self.selector.pool_status(), self.selector.kmeans_backend()
        )
        return StatusResponse(
            **counts,
            model_version=training.model_version,
            training=training,
            kmeans_backend=backend,
            strategies=sorted(describe_strategies(self.args)),
            default_strategy=self.args.default_strategy,
            cold_start=self.args.cold_start,
            auth=await asyncio.to_thread(self.authenticator.mode),
            pool=PoolStatus.model_validate(pool),
            sampled_strategies={
                name: spec["gather_limit"]
                for name, spec in describe_strategies(self.args).items()
                if spec.get("gather_limit") and pool["rows"] > spec["gather_limit"]
            },
        )

    async def model(self) -> ModelResponse:
        from raydq.serve.responses import make_model

        return make_model(await self.trainer.head(), await self.classes())

    async def ready(self) -> Readiness:
        checks: dict[str, str] = {}

        async def probe(name: str, coro) -> None:
            try:
                await asyncio.wait_for(coro, 5.0)
                checks[name] = "ok"
            except Exception as e:
                checks[name] = f"{type(e).__name__}: {e}"[:200]

        await asyncio.gather(probe("database", self._db(self.store.revision)), probe("selector", self.selector.counts()))
        return Readiness(status="ready" if all(v == "ok" for v in checks.values()) else "unavailable", checks=checks)

    # -- admin ------------------------------------------------------------------------------------------------------------
    async def pin_head(self, version: int | None, caller: Caller) -> TrainingStatus:
        status = await self.trainer.pin(version)
        await self._db(self.store.record_audit, caller=caller.name, action="admin.pin_head", detail={"version": version})
        return status

    async def refresh_pool(self, caller: Caller) -> PoolStatus:
        status = await self.selector.refresh_pool()
        await self._db(self.store.record_audit, caller=caller.name, action="admin.refresh_pool",
                       detail={"rows": status["rows"], "store_version": status["store_version"]})  # fmt: skip
        return PoolStatus.model_validate(status)

    async def audit(self, *, caller: str | None, action: str | None, limit: int) -> list[dict[str, Any]]:
        rows = await self._db(self.store.audit_log, caller=caller, action=action, limit=limit)
        return [r.model_dump(mode="json") for r in rows]
