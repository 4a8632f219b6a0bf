"""``Endpoints``: what the service does for each request, whichever process it runs in.

The routes (``raydq.serve.api``) call this object with the authenticated caller. It talks to the label store
directly (label writes, batches, items, export, audit, idempotency: all in this process, so they never wait on a
selection) and to two ports: the selector (selection, and which ids the pool holds) and the trainer (the served
head). In one process the ports are the services themselves (``raydq.serve.inprocess``); under Ray Serve they are
deployment handles (``raydq.serve.app``). One implementation of every endpoint either way.
"""

from __future__ import annotations

import asyncio
import io
import logging
from typing import Any, Protocol

from raydq.data.images import ImageSourceError, read_item_image
from raydq.labels import (
    BatchClosed,
    Forbidden,
    IdempotencyConflict,
    Identity,
    InvalidField,
    LabelIn,
    LabelStore,
    NotFound,
)
from raydq.labels.export import write_rows
from raydq.serve.config import ServeArgs
from raydq.serve.errors import ServiceError
from raydq.serve.identity import Authenticator
from raydq.serve.options import describe_strategies
from raydq.serve.responses import make_model
from raydq.serve.schemas import (
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
        self,
        req: SelectBatchRequest,
        head: HeadSnapshot,
        *,
        caller: Identity,
        idempotency_key: str | None,
        request_id: str | None,
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
    async def pin(self, version: int | None, caller: Identity, request_id: str | None) -> TrainingStatus: ...


def _lease_notes(report: Any) -> list[LeaseNote]:
    reasons = (
        ("expired", "expired"),
        ("other_batch", "other_batch"),
        ("other_caller", "other_annotator"),
        ("not_in_batch", "not_leased"),
    )
    return [LeaseNote(id=i, reason=reason) for field, reason in reasons for i in getattr(report, field)]


def _batch_error(e: Exception, batch_id: str) -> ServiceError:
    if isinstance(e, NotFound):
        return ServiceError(404, ["body", "batch_id"], f"unknown batch_id {batch_id!r}")
    if isinstance(e, Forbidden):
        return ServiceError(403, ["body", "batch_id"], f"batch {batch_id!r} is not yours (only an admin may)")
    return ServiceError(409, ["body", "batch_id"], f"batch {batch_id!r} was released; select a new one", "conflict")


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
        self._last_version = 0

    async def classes(self) -> list[str]:
        if self._classes is None:
            self._classes = list(await self.selector.classes())
        return self._classes

    async def _db(self, fn, /, *args, **kwargs):
        return await asyncio.to_thread(fn, *args, **kwargs)

    # -- labeling ----------------------------------------------------------------------------------------------------
    async def select_batch(
        self, req: SelectBatchRequest, caller: Identity, key: str | None, *, request_id: str | None = None
    ) -> SelectBatchResponse:
        body = req.model_dump(mode="json", exclude={"request_id"})
        if key is not None:  # a cheap look first; the selector checks again inside the lease's transaction
            recalled = await self._recall(caller, key, "select_batch", body)
            if recalled is not None:
                return SelectBatchResponse.model_validate(recalled)
        head = await self.trainer.head()
        return await self.selector.select_batch(req, head, caller=caller, idempotency_key=key, request_id=request_id)

    async def _recall(self, caller: Identity, key: str, endpoint: str, body: Any) -> Any | None:
        try:
            return await self._db(self.store.recall, caller=caller, key=key, endpoint=endpoint, request=body)
        except IdempotencyConflict:
            raise ServiceError(
                409, ["header", "Idempotency-Key"], f"this key was used for a different {endpoint} request", "conflict"
            ) from None

    async def update_labels(
        self, req: UpdateLabelsRequest, caller: Identity, key: str | None, *, request_id: str | None = None
    ) -> UpdateLabelsResponse:
        body = req.model_dump(mode="json", exclude={"request_id"})
        if key is not None:
            recalled = await self._recall(caller, key, "update_labels", body)
            if recalled is not None:
                return UpdateLabelsResponse.model_validate({**recalled, "model_version": self._last_version})
        answers = await self._validate_labels(req, caller)
        counts, replayed = await self._db(self._write_answers, answers, caller, req.batch_id, key, body, request_id)
        if replayed is not None:  # a concurrent retry with the same key committed first
            return UpdateLabelsResponse.model_validate({**replayed, "model_version": self._last_version})
        trainer = "notified"
        try:
            self._last_version = await asyncio.wait_for(self.trainer.notify(counts.revision), TRAINER_TIMEOUT_S)
        except Exception as e:  # the labels are committed: say so, never a 5xx; training catches up on its own
            log.warning("trainer unreachable after a committed label write (%s: %s)", type(e).__name__, e)
            trainer = "unreachable"
        return self._update_response(counts, trainer)

    def _update_response(self, counts: Any, trainer: str) -> UpdateLabelsResponse:
        return UpdateLabelsResponse(
            received=counts.received,
            created=counts.created,
            updated=counts.updated,
            unchanged=counts.unchanged,
            skipped=counts.skipped,
            labeled=counts.labeled,
            revision=counts.revision,
            model_version=self._last_version,
            lease_notes=_lease_notes(counts.lease),
            trainer=trainer,
        )

    def _write_answers(
        self,
        answers: list[LabelIn],
        caller: Identity,
        batch_id: str | None,
        key: str | None,
        body: Any,
        request_id: str | None,
    ) -> tuple[Any, dict[str, Any] | None]:
        """Store the answers and, with a key, the response, in one transaction (a retry finds one or neither)."""
        try:
            with self.store.transaction() as tx:
                if key is not None:
                    stored = tx.recall(caller=caller, key=key, endpoint="update_labels", request=body)
                    if stored is not None:
                        return None, stored
                counts = tx.apply_labels(answers, caller=caller, batch_id=batch_id, request_id=request_id)
                if key is not None:
                    response = self._update_response(counts, "notified").model_dump(mode="json")
                    tx.remember(caller=caller, key=key, endpoint="update_labels", request=body, response=response)
                return counts, None
        except InvalidField as e:
            raise ServiceError(422, ["body", *e.field], e.reason) from None
        except IdempotencyConflict:
            raise ServiceError(
                409,
                ["header", "Idempotency-Key"],
                "this key was used for a different update_labels request",
                "conflict",
            ) from None

    async def _validate_labels(self, req: UpdateLabelsRequest, caller: Identity) -> list[LabelIn]:
        """Refuse the whole request on the first bad answer (4xx naming it); nothing is written before this passes."""
        if len(req.labels) > self.args.max_labels_per_request:
            raise ServiceError(
                422,
                ["body", "labels"],
                f"{len(req.labels)} labels exceed max_labels_per_request {self.args.max_labels_per_request}",
            )
        classes = await self.classes()
        known = frozenset(classes)
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
            if x.label is not None and x.label not in known:
                raise ServiceError(
                    422, ["body", "labels", n, "label"], f"label {x.label!r} is not a class; classes: {classes}"
                )
        refs = await self.selector.resolve(list(seen))
        for (item_id, n), ref in zip(seen.items(), refs, strict=True):
            if ref is None:
                raise ServiceError(422, ["body", "labels", n, "id"], f"unknown id {item_id!r}: not in the pool")
        if req.batch_id is not None and not await self._db(self.store.batch_exists, req.batch_id):
            raise ServiceError(422, ["body", "batch_id"], f"unknown batch_id {req.batch_id!r}")
        return [
            LabelIn(id=x.id, label=x.label, skip=x.skip, reason=x.reason, annotator=x.annotator) for x in req.labels
        ]

    async def release_batch(
        self, req: ReleaseBatchRequest, caller: Identity, *, request_id: str | None = None
    ) -> ReleaseBatchResponse:
        try:
            released = await self._db(self.store.release_batch, req.batch_id, caller=caller, request_id=request_id)
        except (NotFound, Forbidden) as e:
            raise _batch_error(e, req.batch_id) from None
        return ReleaseBatchResponse(batch_id=req.batch_id, released=released)

    async def renew_batch(
        self, req: RenewBatchRequest, caller: Identity, *, request_id: str | None = None
    ) -> RenewBatchResponse:
        seconds = float(req.lease_seconds if req.lease_seconds is not None else self.args.lease_seconds)
        if seconds > self.args.max_lease_seconds:
            raise ServiceError(
                422, ["body", "lease_seconds"], f"lease_seconds exceeds max_lease_seconds {self.args.max_lease_seconds}"
            )
        try:
            batch = await self._db(
                self.store.renew_batch, req.batch_id, caller=caller, seconds=seconds, request_id=request_id
            )
        except (NotFound, Forbidden, BatchClosed) as e:
            raise _batch_error(e, req.batch_id) from None
        return RenewBatchResponse(
            batch_id=req.batch_id, renewed=len(batch.leased_ids), lease_expires_at=batch.expires_at
        )

    async def batches(self, caller: Identity, *, open_only: bool, annotator: str | None) -> BatchList:
        if not open_only:
            raise ServiceError(
                422, ["query", "open"], "only open batches are listed; closed ones are in the audit log (/admin/audit)"
            )
        owner = None if annotator == "*" else (annotator or caller.name)
        rows = await self._db(self.store.open_batches, owner)
        return BatchList(batches=rows)

    # -- items -------------------------------------------------------------------------------------------------------
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
            self._db(self.store.leased_ids),
        )
        skipped = current is not None and current.kind == "skip"
        return ItemResponse(
            id=ref.id,
            uri=ref.uri,
            row=ref.row,
            label=None if current is None or skipped else current.label,
            skipped=skipped,
            annotator=None if current is None else current.annotator,
            labeled_at=None if current is None else current.updated_at,
            leased=item_id in set(leased),
            history=[
                LabelEventOut(
                    label=e.label,
                    previous_label=e.previous_label,
                    skipped=e.kind == "skip",
                    reason=e.reason,
                    annotator=e.annotator,
                    batch_id=e.batch_id,
                    created_at=e.created_at,
                    revision=e.revision,
                )
                for e in history
            ],
        )

    async def item_image(self, item_id: str, size: int | None) -> tuple[bytes, str]:
        ref = await self._ref(item_id)
        if ref.uri is None:
            raise ServiceError(404, ["path", "item_id"], f"item {item_id!r} has no image source in the store")
        try:
            image = await asyncio.to_thread(read_item_image, ref.uri, size=size)
        except ImageSourceError as e:  # the source is gone (404) or unreadable (502); the message names it
            status, kind = (404, "source_missing") if e.missing else (502, "source_unreadable")
            raise ServiceError(status, ["path", "item_id"], f"image of {item_id!r}: {e}", kind) from None
        return image.data, image.media_type

    async def export_labels(
        self, *, since_revision: int, cursor: str | None, limit: int, fmt: str
    ) -> tuple[bytes, str | None, int]:
        try:
            rows, next_cursor = await self._db(self.store.export_labels, since_revision, cursor, limit)
        except InvalidField as e:
            raise ServiceError(422, ["query", *e.field], e.reason) from None
        out = io.StringIO()
        write_rows(rows, out, fmt)  # type: ignore[arg-type]
        revision = rows[-1].revision if rows else since_revision
        return out.getvalue().encode("utf-8"), next_cursor, revision

    # -- service -----------------------------------------------------------------------------------------------------
    async def strategies(self) -> dict[str, Any]:
        return describe_strategies(self.args)

    async def status(self) -> StatusResponse:
        counts, training, pool, backend = await asyncio.gather(
            self.selector.counts(), self.trainer.status(), self.selector.pool_status(), self.selector.kmeans_backend()
        )
        described = describe_strategies(self.args)
        return StatusResponse(
            **counts,
            model_version=training.model_version,
            training=training,
            kmeans_backend=backend,
            strategies=sorted(described),
            default_strategy=self.args.default_strategy,
            cold_start=self.args.cold_start,
            auth=await asyncio.to_thread(self.authenticator.mode),
            pool=PoolStatus.model_validate(pool),
            sampled_strategies={
                name: spec["gather_limit"]
                for name, spec in described.items()
                if spec.get("gather_limit") and counts["pool_size"] > spec["gather_limit"]
            },
        )

    async def model(self) -> ModelResponse:
        return make_model(await self.trainer.head(), await self.classes())

    async def ready(self) -> Readiness:
        checks: dict[str, str] = {}

        async def probe(name: str, coro) -> None:
            try:
                await asyncio.wait_for(coro, 5.0)
                checks[name] = "ok"
            except Exception as e:
                checks[name] = f"{type(e).__name__}: {e}"[:200]

        await asyncio.gather(
            probe("database", self._db(self.store.revision)), probe("selector", self.selector.pool_status())
        )
        return Readiness(status="ready" if all(v == "ok" for v in checks.values()) else "unavailable", checks=checks)

    # -- admin -------------------------------------------------------------------------------------------------------
    async def pin_head(self, version: int | None, caller: Identity, *, request_id: str | None = None) -> TrainingStatus:
        return await self.trainer.pin(version, caller, request_id)

    async def refresh_pool(self, caller: Identity, *, request_id: str | None = None) -> PoolStatus:
        status = await self.selector.refresh_pool()
        detail = {"rows": status["rows"], "store_version": status["store_version"]}
        await self._db(self.store.audit, caller=caller, action="refresh_pool", request_id=request_id, detail=detail)
        return PoolStatus.model_validate(status)

    async def audit(self, *, caller: str | None, action: str | None, limit: int) -> list[dict[str, Any]]:
        rows, _ = await self._db(self.store.audit_log, caller=caller, action=action, limit=limit, newest_first=True)
        return [r.model_dump(mode="json") for r in rows]
