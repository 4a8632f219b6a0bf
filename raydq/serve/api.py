"""The FastAPI app of the labeling service: routes, validation, error shapes and the guard, over a ``Backend``.

The app does not know whether its backend runs in this process (``raydq.serve.inprocess``: uvicorn, TestClient)
or behind Ray Serve deployment handles (``raydq.serve.app``); importing this module does not import Ray. Routes are
thin: parse, call the backend with the authenticated ``Identity``, return its model.

Every error is ``{"detail": [{"loc", "msg", "type"}]}``: request validation (422), refusals the service decides
(``ServiceError``), unknown routes and unparseable bodies (Starlette's own 400/404/405, reshaped), and the
last-resort 500, all rendered so that they always encode.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
from collections.abc import Awaitable
from typing import Annotated, Any, Literal, Protocol, TypeVar

from fastapi import APIRouter, FastAPI, Header, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from raydq.deadline import DeadlineExceeded
from raydq.labels import Identity
from raydq.labels.errors import InvalidField
from raydq.serve.errors import ServiceError, error_body, error_response, validation_items
from raydq.serve.guard import GuardMiddleware
from raydq.serve.identity import Authenticator
from raydq.serve.metrics import ServiceMetrics
from raydq.serve.pages import pages_router
from raydq.serve.schemas import (
    BatchList,
    ErrorResponse,
    Health,
    ItemResponse,
    ModelResponse,
    PinHeadRequest,
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

log = logging.getLogger(__name__)
T = TypeVar("T")

_ERROR_TEXT = {
    400: "unreadable request (bad Content-Length, body not UTF-8)",
    401: "missing or wrong bearer token",
    403: "the token's role does not allow this",
    404: "unknown item, batch or route",
    409: "conflict with a concurrent request or an earlier use of the same idempotency key",
    413: "request body too large",
    422: "invalid request; detail names the field",
    502: "the item's image source could not be read (the message names it)",
    503: "temporarily unavailable (selection queue full, shards reloading); see Retry-After",
    504: "selection ran past select_timeout_s and was stopped",
}


def _errors(*codes: int) -> dict[int | str, dict[str, Any]]:
    return {code: {"model": ErrorResponse, "description": _ERROR_TEXT[code]} for code in codes}


_ALWAYS = (400, 401, 413, 422)
ItemPath = Annotated[str, Path(min_length=1, max_length=1024, description="a pool item id, URL-encoded")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=128,
        pattern=r"^[\x21-\x7e]+$",
        description="a retry with the same key returns the first answer and does no new work",
    ),
]


class Backend(Protocol):
    """What the routes call; a refused request raises ``ServiceError`` (and nothing was changed)."""

    async def select_batch(
        self, req: SelectBatchRequest, caller: Identity, key: str | None, *, request_id: str | None
    ) -> SelectBatchResponse: ...
    async def update_labels(
        self, req: UpdateLabelsRequest, caller: Identity, key: str | None, *, request_id: str | None
    ) -> UpdateLabelsResponse: ...
    async def release_batch(
        self, req: ReleaseBatchRequest, caller: Identity, *, request_id: str | None
    ) -> ReleaseBatchResponse: ...
    async def renew_batch(
        self, req: RenewBatchRequest, caller: Identity, *, request_id: str | None
    ) -> RenewBatchResponse: ...
    async def batches(self, caller: Identity, *, open_only: bool, annotator: str | None) -> BatchList: ...
    async def item(self, item_id: str) -> ItemResponse: ...
    async def item_image(self, item_id: str, size: int | None) -> tuple[bytes, str]: ...
    async def export_labels(
        self, *, since_revision: int, cursor: str | None, limit: int, fmt: str
    ) -> tuple[bytes, str | None, int]: ...
    async def strategies(self) -> dict[str, Any]: ...
    async def status(self) -> StatusResponse: ...
    async def model(self) -> ModelResponse: ...
    async def ready(self) -> Readiness: ...
    async def pin_head(self, version: int | None, caller: Identity, *, request_id: str | None) -> TrainingStatus: ...
    async def refresh_pool(self, caller: Identity, *, request_id: str | None) -> PoolStatus: ...
    async def audit(self, *, caller: str | None, action: str | None, limit: int) -> list[dict[str, Any]]: ...


def request_id_of(request: Request) -> str | None:
    return getattr(request.state, "request_id", None)


async def cancel_on_disconnect(request: Request, work: Awaitable[T], *, poll_s: float = 0.25) -> T:
    """Await ``work``, cancelling it if the client goes away first: a selection nobody waits for stops (its
    deadline is cancelled, its thread freed at the next check) instead of holding the queue."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=poll_s)
            if done:
                return task.result()
            if await request.is_disconnected():
                task.cancel()
                raise ServiceError(499, ["request"], "the client closed the connection", "client_closed")
    finally:
        if not task.done():
            task.cancel()


def caller_of(request: Request) -> Identity:
    caller = getattr(request.state, "caller", None)
    if caller is None:  # an open path reached a route that needs a caller: a wiring bug, never user input
        raise ServiceError(401, ["header", "authorization"], "missing or wrong bearer token", "unauthorized")
    return caller


def require_admin(caller: Identity) -> None:
    if not caller.is_admin:
        raise ServiceError(403, ["header", "authorization"], f"{caller.name!r} is an annotator; this needs admin")


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ServiceError)
    async def _service_error(_: Request, exc: ServiceError):
        return error_response(exc.status, exc.to_json(), exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError):
        return error_response(422, error_body(validation_items(exc.errors())))

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException):
        if exc.status_code == 400:  # FastAPI could not read the body (not UTF-8): invalid JSON, like any other
            return error_response(422, error_body([(["body"], f"invalid JSON body: {exc.detail}", "json_invalid")]))
        where = {400: ["body"], 404: ["path"], 405: ["method"]}.get(exc.status_code, ["request"])
        kind = {400: "body_unreadable", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http")
        return error_response(exc.status_code, error_body([(where, str(exc.detail), kind)]), exc.headers)

    @app.exception_handler(InvalidField)
    async def _refused_by_store(_: Request, exc: InvalidField):  # a value only the store could judge: still a 422
        return error_response(422, error_body([(["body", *exc.field], exc.reason, "value_error")]))

    @app.exception_handler(DeadlineExceeded)
    async def _deadline(_: Request, exc: DeadlineExceeded):
        return error_response(504, error_body([(["service"], f"selection stopped: {exc}", "timeout")]))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception):  # still a 500, but one that encodes and names no internals
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(500, error_body([(["service"], "internal error; see the service log", "internal")]))


def _labeling_routes(backend: Backend) -> APIRouter:
    router = APIRouter(tags=["labeling"])

    @router.post("/select_batch", response_model=SelectBatchResponse, responses=_errors(*_ALWAYS, 409, 503, 504))
    async def select_batch(
        req: SelectBatchRequest, request: Request, idempotency_key: IdempotencyKey = None
    ) -> SelectBatchResponse:
        """Choose ``batch_size`` unlabeled items with the newest head and lease them to the caller."""
        work = backend.select_batch(
            req, caller_of(request), idempotency_key or req.request_id, request_id=request_id_of(request)
        )
        return await cancel_on_disconnect(request, work)

    @router.post("/update_labels", response_model=UpdateLabelsResponse, responses=_errors(*_ALWAYS, 403, 409))
    async def update_labels(
        req: UpdateLabelsRequest, request: Request, idempotency_key: IdempotencyKey = None
    ) -> UpdateLabelsResponse:
        """Store labels and skip answers, all or nothing; the answer comes after the commit."""
        return await backend.update_labels(
            req, caller_of(request), idempotency_key or req.request_id, request_id=request_id_of(request)
        )

    @router.post("/release_batch", response_model=ReleaseBatchResponse, responses=_errors(*_ALWAYS, 403, 404))
    async def release_batch(req: ReleaseBatchRequest, request: Request) -> ReleaseBatchResponse:
        """End a batch's leases early (your own batch; an admin may release any)."""
        return await backend.release_batch(req, caller_of(request), request_id=request_id_of(request))

    @router.post("/renew_batch", response_model=RenewBatchResponse, responses=_errors(*_ALWAYS, 403, 404))
    async def renew_batch(req: RenewBatchRequest, request: Request) -> RenewBatchResponse:
        """Extend the lease of a batch's still-open items (your own batch; an admin may renew any)."""
        return await backend.renew_batch(req, caller_of(request), request_id=request_id_of(request))

    @router.get("/batches", response_model=BatchList, responses=_errors(*_ALWAYS, 403))
    async def batches(
        request: Request,
        open_: Annotated[bool, Query(alias="open", description="only batches with leased items")] = True,
        annotator: Annotated[str | None, Query(max_length=256, description="admin only: whose batches")] = None,
    ) -> BatchList:
        """Your batches (an admin may ask for anyone's, or everyone's with annotator=*)."""
        caller = caller_of(request)
        if annotator is not None and annotator != caller.name:
            require_admin(caller)
        return await backend.batches(caller, open_only=open_, annotator=annotator)

    return router


def _item_routes(backend: Backend) -> APIRouter:
    router = APIRouter(tags=["items"])

    @router.get(
        "/items/{item_id:path}/image", responses={**_errors(*_ALWAYS, 404, 502), 200: {"content": {"image/*": {}}}}
    )
    async def item_image(
        item_id: ItemPath,
        request: Request,
        size: Annotated[int | None, Query(ge=16, le=1024, description="longest side of a thumbnail")] = None,
    ) -> Response:
        """The item's image, read from its source (folder, object store, Parquet bytes, Fashion-MNIST)."""
        caller_of(request)
        etag = '"' + hashlib.sha256(f"{item_id}\x00{size}".encode("utf-8", "surrogatepass")).hexdigest()[:32] + '"'
        if request.headers.get("if-none-match") == etag:
            return Response(status_code=304, headers={"ETag": etag})
        data, media_type = await backend.item_image(item_id, size)
        headers = {"ETag": etag, "Cache-Control": "private, max-age=86400"}
        return Response(content=data, media_type=media_type, headers=headers)

    @router.get("/items/{item_id:path}", response_model=ItemResponse, responses=_errors(*_ALWAYS, 404))
    async def item(item_id: ItemPath, request: Request) -> ItemResponse:
        """An item's metadata, current label and label history."""
        caller_of(request)
        return await backend.item(item_id)

    @router.get(
        "/labels",
        responses={**_errors(*_ALWAYS), 200: {"content": {"application/x-ndjson": {}, "text/csv": {}}}},
    )
    async def export_labels(
        request: Request,
        since_revision: Annotated[int, Query(ge=0, le=2**62, description="labels changed after this revision")] = 0,
        cursor: Annotated[str | None, Query(max_length=2048, description="X-Next-Cursor of the last page")] = None,
        limit: Annotated[int, Query(ge=1, le=100_000)] = 10_000,
        format: Annotated[Literal["jsonl", "csv"], Query()] = "jsonl",
    ) -> Response:
        """Current labels changed after ``since_revision``, ordered by (revision, id), a page at a time: follow
        ``X-Next-Cursor`` until it is absent. ``X-Revision`` is the revision the export has reached."""
        caller_of(request)
        data, next_cursor, revision = await backend.export_labels(
            since_revision=since_revision, cursor=cursor, limit=limit, fmt=format
        )
        headers = {"X-Revision": str(revision)}
        if next_cursor is not None:
            headers["X-Next-Cursor"] = next_cursor
        media = "application/x-ndjson" if format == "jsonl" else "text/csv"
        return Response(content=data, media_type=media, headers=headers)

    return router


def _service_routes(backend: Backend) -> APIRouter:
    router = APIRouter(tags=["service"])

    @router.get("/status", response_model=StatusResponse, responses=_errors(401))
    async def status(request: Request) -> StatusResponse:
        caller_of(request)
        return await backend.status()

    @router.get("/model", response_model=ModelResponse, responses=_errors(401))
    async def model(request: Request) -> ModelResponse:
        """The served head: the folded affine map ``logits = X @ W + b`` and ``LinearHead.to_dict()``."""
        caller_of(request)
        return await backend.model()

    @router.get("/strategies", responses=_errors(401))
    async def strategies(request: Request) -> dict[str, Any]:
        """Every strategy with the options a request may set, their bounds and the operator's fixed settings."""
        caller_of(request)
        return await backend.strategies()

    @router.get("/healthz", response_model=Health)
    async def healthz() -> Health:
        """Liveness: the process answers."""
        return Health(status="ok")

    @router.get("/readyz", response_model=Readiness, responses={503: {"model": Readiness}})
    async def readyz() -> Response:
        """Readiness: the database and the selector (pool loaded) answer."""
        ready = await backend.ready()
        return Response(
            content=ready.model_dump_json(), media_type="application/json", status_code=200 if ready.status == "ready"
            else 503,
        )  # fmt: skip

    return router


def _admin_routes(backend: Backend) -> APIRouter:
    router = APIRouter(prefix="/admin", tags=["admin"])

    @router.post("/head", response_model=TrainingStatus, responses=_errors(*_ALWAYS, 403, 404))
    async def pin_head(req: PinHeadRequest, request: Request) -> TrainingStatus:
        """Serve a stored head version (roll back), or ``{"version": null}`` to follow training again."""
        caller = caller_of(request)
        require_admin(caller)
        return await backend.pin_head(req.version, caller, request_id=request_id_of(request))

    @router.post("/pool/refresh", response_model=PoolStatus, responses=_errors(401, 403, 503))
    async def refresh_pool(request: Request) -> PoolStatus:
        """Look for embeddings appended to the store now (the service also polls)."""
        caller = caller_of(request)
        require_admin(caller)
        return await backend.refresh_pool(caller, request_id=request_id_of(request))

    @router.get("/audit", responses=_errors(*_ALWAYS, 403))
    async def audit(
        request: Request,
        who: Annotated[str | None, Query(alias="caller", max_length=256)] = None,
        action: Annotated[str | None, Query(max_length=64)] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> list[dict[str, Any]]:
        """The newest audit records (every select, label, skip, release, renew and admin action)."""
        require_admin(caller_of(request))
        return await backend.audit(caller=who, action=action, limit=limit)

    return router


def _publish_strategy_options(app: FastAPI) -> None:
    """Put every strategy's ``Options`` model (types and bounds) into the OpenAPI schema, as the schema of
    ``select_batch``'s ``options``: what a request may set is published where clients and validators look."""
    from fastapi.openapi.utils import get_openapi

    from raydq.strategies import STRATEGIES

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, description=app.description, routes=app.routes)
            components = schema.setdefault("components", {}).setdefault("schemas", {})
            refs = []
            for name, cls in sorted(STRATEGIES.items()):
                model = cls.Options.model_json_schema(ref_template="#/components/schemas/{model}")
                components.update(model.pop("$defs", {}))
                title = f"{cls.__name__}Options"
                model["title"] = title
                model["description"] = f"options of strategy {name!r}"
                components[title] = model
                refs.append({"$ref": f"#/components/schemas/{title}"})
            options = components["SelectBatchRequest"]["properties"]["options"]
            options.pop("additionalProperties", None)
            options.pop("propertyNames", None)
            options.pop("type", None)
            options["anyOf"] = refs
            app.openapi_schema = schema
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(
    backend: Backend,
    *,
    authenticator: Authenticator,
    max_body_bytes: int = 1 << 20,
    metrics: ServiceMetrics | None = None,
    lifespan=None,
    extra_routers: tuple[APIRouter, ...] = (),
) -> FastAPI:
    """The labeling service's FastAPI app over ``backend``."""
    app = FastAPI(
        title="raydq labeling service",
        version="2",
        description="DropQuery active learning: lease batches to annotators, store labels, retrain the head.",
        lifespan=lifespan,
    )
    _install_error_handlers(app)
    for router in (
        _labeling_routes(backend),
        _item_routes(backend),
        _service_routes(backend),
        _admin_routes(backend),
        pages_router(),
        *extra_routers,
    ):
        app.include_router(router)
    _publish_strategy_options(app)
    app.add_middleware(
        GuardMiddleware, authenticator=authenticator, max_body_bytes=max_body_bytes, metrics=metrics or ServiceMetrics()
    )
    return app
